//! CDI specs (Container Device Interface) written by NVIDIA's tools: the
//! device plugin (`/var/run/cdi/k8s.device-plugin.nvidia.com-gpu.json`, with
//! a CDI device-list strategy) and `nvidia-ctk cdi generate`
//! (`/etc/cdi/nvidia.yaml`). Each device is named by the plugin's device id
//! (`MIG-<uuid>` with `deviceIDStrategy: uuid`, or nvidia-ctk's
//! `--device-name-strategy=uuid`) and lists the device nodes a container
//! using it gets: for a MIG device its parent `/dev/nvidia<N>` and its two
//! `/dev/nvidia-caps/nvidia-cap<M>` nodes. The tools fill these in from
//! NVML, which this agent cannot load; the spec is the file-based record of
//! what NVML said, and the only one that maps a modern MIG UUID.
//!
//! JSON is YAML, so one parser reads both. Specs are parsed defensively: a
//! file that does not parse is reported and skipped, and a device two specs
//! describe differently is dropped (ambiguous), never guessed at.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use yaml_rust2::{Yaml, YamlLoader};

use super::nvidia::read_at_most;

/// Largest spec read (a full node's spec is tens of KiB).
const MAX_SPEC_BYTES: u64 = 4 << 20;
/// Files looked at per directory.
const MAX_SPECS_PER_DIR: usize = 256;

/// One `deviceNodes` entry: the host's node (`hostPath`, else `path`) and
/// the minor the spec states, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdiNode {
    pub path: PathBuf,
    pub minor: Option<u32>,
}

/// NVIDIA GPU-class devices by name, from every spec found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdiDevices {
    pub nodes: HashMap<String, Vec<CdiNode>>,
    /// Specs that could not be read, devices dropped as ambiguous.
    pub problems: Vec<String>,
}

/// Reads the specs in `dirs` (`*.json`, `*.yaml`, `*.yml`, in name order; a
/// missing directory is no spec). Only NVIDIA GPU kinds count
/// (`nvidia.com/gpu`, `<x>.nvidia.com/gpu`).
pub fn read(dirs: &[PathBuf]) -> CdiDevices {
    let mut seen: BTreeMap<String, (Vec<CdiNode>, PathBuf)> = BTreeMap::new();
    let mut ambiguous = std::collections::BTreeSet::new();
    let mut out = CdiDevices::default();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")))
            .collect();
        files.sort();
        files.truncate(MAX_SPECS_PER_DIR);
        for file in files {
            let devices = match read_at_most(&file, MAX_SPEC_BYTES).and_then(|t| parse_spec(&t)) {
                Ok(d) => d,
                Err(why) => {
                    out.problems.push(format!("CDI spec {}: {why}", file.display()));
                    continue;
                }
            };
            for (name, nodes) in devices {
                match seen.get(&name) {
                    Some((prev, _)) if *prev != nodes => {
                        ambiguous.insert(name);
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(name, (nodes, file.clone()));
                    }
                }
            }
        }
    }
    for name in ambiguous {
        seen.remove(&name);
        out.problems.push(format!("CDI device `{name}`: specs disagree on its device nodes; not used"));
    }
    out.nodes = seen.into_iter().map(|(name, (nodes, _))| (name, nodes)).collect();
    out
}

/// The NVIDIA GPU devices of one spec: (name, device nodes). A spec of
/// another kind yields nothing.
pub fn parse_spec(text: &str) -> Result<Vec<(String, Vec<CdiNode>)>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not JSON or YAML: {e}"))?;
    let [doc] = docs.as_slice() else { return Err(format!("{} documents; a spec is one", docs.len())) };
    let kind = doc["kind"].as_str().ok_or("no `kind`")?;
    if !is_nvidia_gpu_kind(kind) {
        return Ok(vec![]);
    }
    let devices = doc["devices"].as_vec().ok_or("no `devices` list")?;
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let name = d["name"].as_str().ok_or(format!("devices[{i}] has no name"))?;
        let nodes = match &d["containerEdits"]["deviceNodes"] {
            Yaml::BadValue | Yaml::Null => vec![],
            Yaml::Array(items) => items
                .iter()
                .enumerate()
                .map(|(j, n)| node(n).map_err(|why| format!("devices[{i}] ({name}).deviceNodes[{j}]: {why}")))
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("devices[{i}] ({name}): deviceNodes is not a list")),
        };
        out.push((name.to_string(), nodes));
    }
    Ok(out)
}

fn node(n: &Yaml) -> Result<CdiNode, String> {
    let path = match (&n["hostPath"], &n["path"]) {
        (Yaml::String(h), _) => h,
        (_, Yaml::String(p)) => p,
        _ => return Err("no path".into()),
    };
    if !Path::new(path).is_absolute() {
        return Err(format!("path {path:?} is not absolute"));
    }
    let minor = match &n["minor"] {
        Yaml::BadValue | Yaml::Null => None,
        Yaml::Integer(m) => Some(u32::try_from(*m).map_err(|_| format!("minor {m} out of range"))?),
        _ => return Err("minor is not an integer".into()),
    };
    Ok(CdiNode { path: PathBuf::from(path), minor })
}

/// `nvidia.com/gpu` and vendor subdomains such as
/// `k8s.device-plugin.nvidia.com/gpu` or `management.nvidia.com/gpu`.
fn is_nvidia_gpu_kind(kind: &str) -> bool {
    kind.split_once('/')
        .is_some_and(|(vendor, class)| class == "gpu" && (vendor == "nvidia.com" || vendor.ends_with(".nvidia.com")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the device plugin writes it (JSON), trimmed to two devices.
    const PLUGIN_SPEC: &str = r#"{"cdiVersion":"0.5.0","kind":"k8s.device-plugin.nvidia.com/gpu","devices":[
      {"name":"MIG-8e9b8a84-52a2-5a3e-9d4b-3c1c7f2e6d10","containerEdits":{"deviceNodes":[
        {"path":"/dev/nvidia0"},{"path":"/dev/nvidia-caps/nvidia-cap21"},{"path":"/dev/nvidia-caps/nvidia-cap22"}]}},
      {"name":"GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6","containerEdits":{"deviceNodes":[
        {"path":"/dev/nvidia1","hostPath":"/run/nvidia/driver/dev/nvidia1","minor":1}]}}],
      "containerEdits":{"deviceNodes":[{"path":"/dev/nvidiactl"}]}}"#;

    /// As `nvidia-ctk cdi generate --device-name-strategy=uuid` writes it (YAML).
    const CTK_SPEC: &str = "---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n\
        - name: MIG-11111111-2222-3333-4444-555555555555\n  containerEdits:\n    deviceNodes:\n\
        \x20   - path: /dev/nvidia1\n    - path: /dev/nvidia-caps/nvidia-cap156\n    - path: /dev/nvidia-caps/nvidia-cap157\n\
        - name: all\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n";

    fn dir(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warden-cdi-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    }

    fn paths(d: &CdiDevices, name: &str) -> Vec<String> {
        d.nodes[name].iter().map(|n| n.path.display().to_string()).collect()
    }

    #[test]
    fn reads_plugin_and_toolkit_specs() {
        let d = dir(
            "both",
            &[
                ("k8s.device-plugin.nvidia.com-gpu.json", PLUGIN_SPEC),
                ("nvidia.yaml", CTK_SPEC),
                ("other.json", r#"{"cdiVersion":"0.5.0","kind":"vendor.com/net","devices":[{"name":"MIG-x"}]}"#),
                ("notes.txt", "ignored"),
            ],
        );
        let got = read(std::slice::from_ref(&d));
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(
            paths(&got, "MIG-8e9b8a84-52a2-5a3e-9d4b-3c1c7f2e6d10"),
            ["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap21", "/dev/nvidia-caps/nvidia-cap22"]
        );
        assert_eq!(paths(&got, "MIG-11111111-2222-3333-4444-555555555555")[2], "/dev/nvidia-caps/nvidia-cap157");
        // hostPath wins; the stated minor is kept.
        let gpu = &got.nodes["GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6"][0];
        assert_eq!((gpu.path.to_str().unwrap(), gpu.minor), ("/run/nvidia/driver/dev/nvidia1", Some(1)));
        assert!(!got.nodes.contains_key("MIG-x"), "other vendors' kinds are not read");
        assert!(read(&[d.join("missing")]).nodes.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_and_conflicting_specs_are_reported() {
        let other = PLUGIN_SPEC.replace("nvidia-cap22", "nvidia-cap30");
        let d = dir(
            "bad",
            &[
                ("a.json", PLUGIN_SPEC),
                ("b.json", &other),
                ("c.json", "{not json"),
                (
                    "d.yaml",
                    "kind: nvidia.com/gpu\ndevices:\n- name: x\n  containerEdits: {deviceNodes: [{path: dev/x}]}\n",
                ),
            ],
        );
        let got = read(std::slice::from_ref(&d));
        assert!(!got.nodes.contains_key("MIG-8e9b8a84-52a2-5a3e-9d4b-3c1c7f2e6d10"), "ambiguous: dropped");
        assert!(got.nodes.contains_key("GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6"), "agreeing devices stay");
        let all = got.problems.join("\n");
        assert!(all.contains("c.json: not JSON or YAML"), "{all}");
        assert!(all.contains("d.yaml: devices[0] (x).deviceNodes[0]: path \"dev/x\" is not absolute"), "{all}");
        assert!(all.contains("specs disagree"), "{all}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn kinds() {
        for ok in ["nvidia.com/gpu", "k8s.device-plugin.nvidia.com/gpu", "management.nvidia.com/gpu"] {
            assert!(is_nvidia_gpu_kind(ok), "{ok}");
        }
        for other in ["nvidia.com/mofed", "evilnvidia.com/gpu", "amd.com/gpu", "gpu"] {
            assert!(!is_nvidia_gpu_kind(other), "{other}");
        }
    }
}
