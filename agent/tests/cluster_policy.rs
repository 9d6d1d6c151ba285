//! `config/cluster-policy.yaml`, the policy README and the chart point real
//! GPU clusters at: `warden policy check` accepts it with no warning, the
//! JSON schema accepts it, and it keeps the GPU Operator's pods and GPU
//! sharing working (checked on its parsed content).
mod harness;

use std::{path::Path, process::Command};

use harness::*;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Hash(h) => {
            Value::Object(h.iter().map(|(k, v)| (k.as_str().expect("string keys").to_string(), to_json(v))).collect())
        }
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML value {other:?}"),
    }
}

fn policy() -> Value {
    let text = std::fs::read_to_string(repo_file("config/cluster-policy.yaml")).unwrap();
    to_json(&YamlLoader::load_from_str(&text).unwrap()[0])
}

#[test]
fn policy_check_accepts_it_without_warnings() {
    let file = repo_file("config/cluster-policy.yaml");
    let out = Command::new(WARDEN).args(["policy", "check"]).arg(&file).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(": ok ("), "{stdout}");
    assert!(stderr.is_empty(), "no warnings: {stderr}");
}

#[test]
fn the_schema_accepts_it() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("config/policy.schema.json")).unwrap()).unwrap();
    let v = jsonschema::draft202012::new(&schema).expect("schema compiles");
    let p = policy();
    let errors: Vec<String> = v.iter_errors(&p).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn it_governs_pods_and_keeps_the_gpu_stack_working() {
    let p = policy();
    assert_eq!(p["agent"]["cgroupRoot"], "kubepods.slice");
    let workload = |name: &str| p["workloads"].as_array().unwrap().iter().find(|w| w["name"] == name).cloned().unwrap();
    let operator = workload("gpu-operator");
    assert_eq!(operator["selector"]["namespace"], "gpu-operator");
    let apps = &operator["selector"]["podLabels"]["matchExpressions"][0];
    assert_eq!((&apps["key"], &apps["operator"]), (&Value::from("app"), &Value::from("In")));
    for app in [
        "nvidia-device-plugin-daemonset",
        "nvidia-dcgm-exporter",
        "nvidia-driver-daemonset",
        "nvidia-container-toolkit-daemonset",
        "gpu-feature-discovery",
        "nvidia-operator-validator",
    ] {
        assert!(apps["values"].as_array().unwrap().contains(&Value::from(app)), "{app}");
    }
    let units = workload("host-nvidia")["selector"]["unit"].clone();
    for unit in ["nvidia-persistenced.service", "nvidia-fabricmanager.service", "nvidia-dcgm.service"] {
        assert!(units.as_array().unwrap().contains(&Value::from(unit)), "{unit}");
    }
    let rules = p["allow"].as_array().unwrap();
    let rule = |w: &str, s: &str| rules.iter().find(|r| r["workload"] == w && r["segment"] == s).cloned();
    // The operator's pods and host services: every GPU (no `gpus` key), so
    // every MIG instance and the MIG config/monitor nodes too.
    for w in ["gpu-operator", "host-nvidia"] {
        let r = rule(w, "gpus").unwrap_or_else(|| panic!("{w} has no GPU rule"));
        assert!(r.get("gpus").is_none(), "{w}: {r}");
    }
    for w in ["training", "inference"] {
        assert_eq!(rule(w, "gpus").unwrap()["gpus"], "assigned", "{w}");
    }
    let gpus = p["segments"].as_array().unwrap().iter().find(|s| s["name"] == "gpus").unwrap().clone();
    assert_eq!(gpus["devices"]["gpus"], "all");
    let resources = &p["agent"]["devices"]["gpuResources"];
    assert_eq!(resources, &serde_json::json!(["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*"]));
}

/// The schema refuses what the reader refuses for resource names (editors
/// flag them before `policy check` does).
#[test]
fn the_schema_refuses_bad_resource_names() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("config/policy.schema.json")).unwrap()).unwrap();
    let v = jsonschema::draft202012::new(&schema).expect("schema compiles");
    let with = |devices: Value| serde_json::json!({"version": 1, "agent": {"devices": devices}});
    for good in [
        serde_json::json!({"gpuResources": ["nvidia.com/gpu", "nvidia.com/mig-*"]}),
        serde_json::json!({"gpuResource": "example.com/gpu", "cdiSpecDirs": ["/run/cdi"]}),
    ] {
        assert!(v.is_valid(&with(good.clone())), "{good}");
    }
    for bad in [
        serde_json::json!({"gpuResources": ["gpu"]}),
        serde_json::json!({"gpuResources": ["Nvidia.com/gpu"]}),
        serde_json::json!({"gpuResources": ["nvidia.com/gpu/x"]}),
        serde_json::json!({"gpuResources": ["kubernetes.io/gpu"]}),
        serde_json::json!({"gpuResources": []}),
        serde_json::json!({"gpuResource": "a.com/x", "gpuResources": ["a.com/y"]}),
        serde_json::json!({"cdiSpecDirs": ["etc/cdi"]}),
    ] {
        assert!(!v.is_valid(&with(bad.clone())), "{bad}");
    }
}

#[test]
fn policy_check_names_bad_resource_names() {
    let dir = TempDir::new("resources");
    let file = dir.0.join("p.yaml");
    std::fs::write(
        &file,
        "version: 1\nagent:\n  devices:\n    gpuResources: [nvidia.com/gpu, gpu, \"nvidia.com/mig/*\"]\n",
    )
    .unwrap();
    let out = Command::new(WARDEN).args(["policy", "check"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let f = file.display();
    assert!(err.contains(&format!("{f}:4:36: agent.devices.gpuResources[1]: `gpu`: no `/`")), "{err}");
    assert!(
        err.contains(&format!(
            "{f}:4:41: agent.devices.gpuResources[2]: `nvidia.com/mig/*`: `mig/*` is not a resource name"
        )),
        "{err}"
    );
}
