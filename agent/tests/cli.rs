//! The `warden` binary's behaviour on bad input and wrong privileges,
//! run as users run it.
mod harness;

use std::{os::unix::process::CommandExt, process::Command};

use harness::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(WARDEN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const BAD: &str = "version: 1
segments:
  - name: store
    network:
      - cidr: 10.0.0.300/8
workloads: []
allow:
  - workload: trainer
    segments: [store]
";

#[test]
fn policy_check_reports_file_line_field_reason() {
    let dir = TempDir::new("check");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();
    let (code, _, err) = run(&["policy", "check", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    let f = file.display().to_string();
    assert!(err.contains(&format!("{f}:5:")) && err.contains("segments[0].network[0].cidr"), "{err}");
    assert!(err.contains(&format!("{f}:8:")) && err.contains("allow[0].workload"), "{err}");
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/example.yaml");
    let (code, out, err) = run(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    assert!(err.is_empty(), "no warnings for the example: {err}");
    // Valid, with a warning naming the rule: packet sockets for a
    // workload denied a network segment.
    let risky = dir.0.join("risky.yaml");
    let grant = "version: 1\nsegments: [{name: s, network: [{cidr: 10.0.0.0/8}]}]\n\
                 workloads: [{name: w, selector: {cgroup: w}}]\nallow:\n  - workload: w\n    sockets: [packet]\n";
    std::fs::write(&risky, grant).unwrap();
    let (code, out, err) = run(&["policy", "check", risky.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let r = risky.display().to_string();
    assert!(err.contains(&format!("warning: {r}:6:14: allow[0].sockets: grants packet sockets to `w`")), "{err}");
}

#[test]
fn agent_refuses_invalid_policy_and_touches_nothing() {
    let tree = TestTree::new("badcfg");
    let dir = TempDir::new("badcfg");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();
    let sock = dir.0.join("s.sock");
    let (code, _, err) = run(&[
        "agent",
        "--config",
        file.to_str().unwrap(),
        "--cgroup-root",
        &tree.rel,
        "--socket",
        sock.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid policy, not starting") && err.contains(":5:"), "{err}");
    assert!(!sock.exists(), "no control socket for a refused start");
}

#[test]
fn agent_names_a_missing_cgroup_root() {
    let dir = TempDir::new("noroot");
    let file = dir.0.join("ok.yaml");
    std::fs::write(&file, "version: 1\n").unwrap();
    let (code, _, err) = run(&[
        "agent",
        "--config",
        file.to_str().unwrap(),
        "--cgroup-root",
        "warden-no-such-cgroup-xyz",
        "--socket",
        dir.0.join("s").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cgroup root") && err.contains("warden-no-such-cgroup-xyz") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn status_without_daemon_says_so() {
    let dir = TempDir::new("nodaemon");
    let (code, _, err) = run(&["status", "--socket", dir.0.join("none.sock").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no warden daemon is running"), "{err}");
}

/// Runs a copy of the binary as `nobody` from a world-readable directory
/// (the checkout itself may sit below a directory `nobody` cannot enter).
fn run_as_nobody(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("warden-nobody");
    if !bin.exists() {
        std::fs::copy(WARDEN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(&bin).args(args).uid(65534).gid(65534).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn non_root_agent_is_refused_and_socket_is_root_only() {
    require_root();
    // /tmp may be 0700 (it is on the CI machines): use a world-traversable place.
    let dir = TempDir(std::path::PathBuf::from(format!("/var/tmp/warden-it-nonroot-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    // World-readable config so only the uid check can refuse.
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = dir.0.join("ok.yaml");
    std::fs::write(&file, "version: 1\n").unwrap();
    let (code, err) = run_as_nobody(&dir.0, &["agent", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("must run as root"), "{err}");

    let tree = TestTree::new("sockperm");
    let agent = Agent::start(&tree, "version: 1\n");
    let mode = std::fs::metadata(&agent.socket).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    let (code, err) = run_as_nobody(&dir.0, &["status", "--socket", agent.socket.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("permission denied") || err.contains("root-only"), "{err}");
}

#[test]
fn second_agent_on_the_same_socket_is_refused() {
    let tree = TestTree::new("dupe");
    let agent = Agent::start(&tree, "version: 1\n");
    let (code, _, err) = run(&[
        "agent",
        "--config",
        agent.config.to_str().unwrap(),
        "--cgroup-root",
        &tree.rel,
        "--socket",
        agent.socket.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("already listening"), "{err}");
    // The first agent is unaffected.
    assert_eq!(agent.status()["mode"], "enforce");
}
