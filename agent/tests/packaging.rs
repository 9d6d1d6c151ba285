//! The packaging users deploy: the Helm chart rendered and linted by Helm's
//! own SDK with the value sets users have (scripts/manifests.py), every
//! object validated against the oldest and newest Kubernetes OpenAPI schemas
//! the chart claims, the committed plain manifests in sync with the chart,
//! and the systemd unit checked by systemd itself.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn chart_renders_lints_and_validates_against_kubernetes_schemas() {
    let python = root().join("target/tools/k8s/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/setup.sh (installs helm-python-sdk and kubernetes-validate from PyPI)",
        python.display()
    );
    let out = Command::new(&python).arg(root().join("scripts/manifests.py")).args(["check", WARDEN]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "manifests check failed:\n{stdout}\n{stderr}");
    // Every value set users have was rendered and validated against the
    // oldest and newest Kubernetes the chart claims, and the rest checked.
    for variant in [
        "defaults",
        "oldest Kubernetes",
        "AppArmor field",
        "GPU pool",
        "GKE",
        "OpenShift",
        "k3s/RKE2",
        "cluster policy",
        "observability",
        "privileged, kept on uninstall",
        "extras",
    ] {
        assert!(stdout.contains(&format!("ok: {variant}: ")), "{variant} not checked:\n{stdout}");
    }
    assert!(stdout.contains("1.25") && stdout.contains("1.37"), "{stdout}");
    for check in [
        "values.schema.json refuses mistyped values",
        "two releases share no object",
        "the agent-settings checksum follows the agent: section only",
        "NOTES.txt",
        "config/kubernetes/warden.yaml is the chart's rendering, Namespace first",
    ] {
        assert!(stdout.contains(check), "{check}:\n{stdout}");
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze() {
    // `verify` needs the ExecStart binary to exist: point it at the one built.
    let unit = std::fs::read_to_string(root().join("config/systemd/warden.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/warden agent --config /etc/warden/policy.yaml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"), "reload is SIGHUP");
    let dir = std::env::temp_dir().join(format!("warden-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("warden.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/warden", WARDEN)).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    // verify exits 0 on unknown keys and bad values, printing them: any
    // line about the unit is a failure.
    assert!(out.status.success() && !stderr.contains("warden.service"), "{stderr}");
}
