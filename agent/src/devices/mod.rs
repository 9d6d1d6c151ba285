//! Device segments on this node: policy device specs → the device numbers
//! the cgroup/dev hook protects (`DEVICE_SEGMENTS`), and the GPUs kubelet
//! assigned to each container (`DEVICE_ASSIGNED`, see `assigned`).
pub mod assigned;

use std::{
    collections::BTreeMap,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use warden_common::{DEV_TYPE_BLOCK, DEV_TYPE_CHAR, DeviceKey, DeviceSegment, GPU_NONE, NVIDIA_MAJOR};

use crate::policy::DeviceSegmentSpec;

/// Protected nodes, each with its segment and a name for events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTable {
    pub nodes: BTreeMap<DeviceKey, (DeviceSegment, String)>,
    /// What could not be resolved (not protected until it can be).
    pub missing: Vec<String>,
}

impl DeviceTable {
    /// Name for an event: the node's path where known, else `char 511:0`.
    /// The node to name a device by, and what it is (`canonical` | `number`).
    pub fn name(&self, key: &DeviceKey) -> (String, &'static str) {
        match self.nodes.get(key) {
            Some((_, name)) => (name.clone(), "canonical"),
            None => (format!("{} {}:{}", type_name(key.kind), key.major, key.minor), "number"),
        }
    }

    pub fn entries(&self) -> Vec<(DeviceKey, DeviceSegment)> {
        self.nodes.iter().map(|(k, (s, _))| (*k, *s)).collect()
    }
}

pub fn type_name(kind: u8) -> &'static str {
    match kind {
        DEV_TYPE_BLOCK => "block",
        DEV_TYPE_CHAR => "char",
        _ => "any",
    }
}

pub fn char_dev(major: u32, minor: u32) -> DeviceKey {
    DeviceKey { kind: DEV_TYPE_CHAR, _pad: [0; 3], major, minor }
}

/// NVIDIA nodes with a fixed number: (minor, name).
const NVIDIA_FIXED_CONTROL: [(u32, &str); 2] = [(255, "/dev/nvidiactl"), (254, "/dev/nvidia-modeset")];
/// Nodes of the nvidia-uvm driver, whose major is dynamic: (minor, name).
const NVIDIA_UVM: [(u32, &str); 2] = [(0, "/dev/nvidia-uvm"), (1, "/dev/nvidia-uvm-tools")];

/// Resolves every device segment against this node. The first segment to
/// claim a node keeps it (validation rejects overlapping GPUs and control
/// nodes; overlapping path patterns are reported as missing for the later one).
pub fn resolve(specs: &[DeviceSegmentSpec], proc_root: &Path) -> DeviceTable {
    let mut t = DeviceTable::default();
    let devices_text = std::fs::read_to_string(proc_root.join("devices")).unwrap_or_default();
    let uvm_major = crate::kube::nvidia::proc_devices_major(&devices_text, "nvidia-uvm");
    for s in specs {
        let seg = |gpu: u16| DeviceSegment { segment_id: s.segment_id, gpu };
        let add = |t: &mut DeviceTable, key: DeviceKey, gpu: u16, name: String| match t.nodes.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => {
                t.missing.push(format!("{name} (already in another segment)"))
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((seg(gpu), name));
            }
        };
        for gpu in s.spec.gpus.as_ref().map(|g| g.indices()).unwrap_or_default() {
            add(&mut t, char_dev(NVIDIA_MAJOR, gpu as u32), gpu, format!("/dev/nvidia{gpu}"));
        }
        if s.spec.nvidia_control {
            for (minor, name) in NVIDIA_FIXED_CONTROL {
                add(&mut t, char_dev(NVIDIA_MAJOR, minor), GPU_NONE, name.into());
            }
            match uvm_major {
                Some(major) => {
                    for (minor, name) in NVIDIA_UVM {
                        add(&mut t, char_dev(major, minor), GPU_NONE, name.into());
                    }
                }
                None => t.missing.push(format!(
                    "/dev/nvidia-uvm, /dev/nvidia-uvm-tools (no nvidia-uvm in {}/devices: driver not loaded)",
                    proc_root.display()
                )),
            }
        }
        for p in &s.spec.paths {
            let found = expand(&p.pattern);
            if found.is_empty() {
                t.missing.push(format!("{} (no device node matches)", p.pattern.display()));
            }
            for (key, path) in found {
                add(&mut t, key, GPU_NONE, path.display().to_string());
            }
        }
    }
    t
}

/// Device nodes matching a pattern (wildcards in the last component only).
fn expand(pattern: &Path) -> Vec<(DeviceKey, PathBuf)> {
    let (Some(dir), Some(last)) = (pattern.parent(), pattern.file_name().and_then(|n| n.to_str())) else {
        return vec![];
    };
    let candidates: Vec<PathBuf> = if last.contains(['*', '?', '[']) {
        let Ok(glob) = globset::Glob::new(last).map(|g| g.compile_matcher()) else { return vec![] };
        let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
        let mut v: Vec<PathBuf> =
            entries.filter_map(Result::ok).filter(|e| glob.is_match(e.file_name())).map(|e| e.path()).collect();
        v.sort();
        v
    } else {
        vec![pattern.to_path_buf()]
    };
    candidates.into_iter().filter_map(|p| node_key(&p).map(|k| (k, p))).collect()
}

/// The device number of a node (following symlinks); `None` for other files.
pub fn node_key(path: &Path) -> Option<DeviceKey> {
    let md = std::fs::metadata(path).ok()?;
    let kind = if md.file_type().is_char_device() {
        DEV_TYPE_CHAR
    } else if md.file_type().is_block_device() {
        DEV_TYPE_BLOCK
    } else {
        return None;
    };
    let rdev = md.rdev();
    Some(DeviceKey { kind, _pad: [0; 3], major: libc::major(rdev), minor: libc::minor(rdev) })
}
