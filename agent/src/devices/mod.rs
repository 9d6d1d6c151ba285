//! Device segments on this node: policy device specs → the device numbers
//! the cgroup/dev hook protects (`DEVICE_SEGMENTS`), and the GPUs kubelet
//! assigned to each container (`DEVICE_ASSIGNED`, see `assigned`). MIG
//! capability nodes (`mig`) belong to the segment of their GPU.
pub mod assigned;
mod grants;
mod id_map;
pub mod mig;

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use warden_common::{DEV_TYPE_BLOCK, DEV_TYPE_CHAR, DeviceKey, DeviceSegment, GPU_NONE, GpuSet, NVIDIA_MAJOR};

pub use grants::{ContainerGrant, Grants};

use crate::{
    kube::nvidia_caps::{self, CapTable, MigCap},
    policy::DeviceSegmentSpec,
};

/// Entries `DEVICE_SEGMENTS` holds (its size in ebpf/src/devices.rs).
pub const DEVICE_NODES_CAPACITY: usize = 4096;

/// Protected nodes, each with its segment and a name for events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTable {
    pub nodes: BTreeMap<DeviceKey, (DeviceSegment, String)>,
    /// What could not be resolved (not protected until it can be).
    pub missing: Vec<String>,
    /// MIG capability minor → the GPU-set bit it borrows (existing
    /// instances of protected GPUs); non-empty: the table follows the
    /// driver's MIG layout, which can change at any time.
    pub cap_slots: BTreeMap<u32, u16>,
    /// The driver lists MIG capabilities for protected GPUs.
    pub mig: bool,
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
/// `slots` lends MIG capabilities their GPU-set bits (see `mig`).
pub fn resolve(specs: &[DeviceSegmentSpec], proc_root: &Path, slots: &mut mig::MigSlots) -> DeviceTable {
    let mut t = DeviceTable::default();
    let devices_text = std::fs::read_to_string(proc_root.join("devices")).unwrap_or_default();
    let uvm_major = crate::kube::nvidia::proc_devices_major(&devices_text, "nvidia-uvm");
    let caps = MigView::read(proc_root, &devices_text, specs, &mut t.missing);
    let mut cap_nodes: Vec<(DeviceKey, u16, u32)> = Vec::new();
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
        let gpus = s.spec.gpus.as_ref().map(|g| g.indices()).unwrap_or_default();
        for gpu in &gpus {
            add(&mut t, char_dev(NVIDIA_MAJOR, *gpu as u32), *gpu, format!("/dev/nvidia{gpu}"));
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
        if let Some(major) = caps.major {
            for (cap, minor) in caps.covered(&gpus, s.spec.nvidia_control) {
                // The first segment keeps a node, as for the others.
                if cap_nodes.iter().any(|(k, _, _)| k.minor == minor) {
                    t.missing.push(format!("{} ({cap}, already in another segment)", cap_path(minor)));
                    continue;
                }
                cap_nodes.push((char_dev(major, minor), s.segment_id, minor));
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
    // Existing instances borrow bits; the others stay protected from everyone.
    let wanted: BTreeSet<u32> =
        cap_nodes.iter().map(|(_, _, m)| *m).filter(|m| caps.existing.cap(*m).is_some()).collect();
    t.cap_slots = slots.bind(&wanted, &caps.reserved);
    t.mig = !cap_nodes.is_empty();
    for m in wanted.iter().filter(|m| !t.cap_slots.contains_key(m)) {
        t.missing.push(format!("{} (MIG capability with no free GPU-set bit: denied to all)", cap_path(*m)));
    }
    // Existing instances first: a full table leaves out only instances to come.
    cap_nodes.sort_by_key(|(_, _, m)| !wanted.contains(m));
    let room = DEVICE_NODES_CAPACITY.saturating_sub(t.nodes.len());
    let left_out = cap_nodes.len().saturating_sub(room);
    for (key, segment_id, minor) in cap_nodes.into_iter().take(room) {
        let gpu = t.cap_slots.get(&minor).copied().unwrap_or(mig::NO_SLOT);
        t.nodes.entry(key).or_insert_with(|| (DeviceSegment { segment_id, gpu }, cap_path(minor)));
    }
    if left_out > 0 {
        t.missing.push(format!(
            "{left_out} MIG capability nodes of instances not created yet (the table holds {DEVICE_NODES_CAPACITY} nodes)"
        ));
    }
    t
}

/// Where nvidia-modprobe makes a capability's node (named by its minor).
pub fn cap_path(minor: u32) -> String {
    format!("/dev/nvidia-caps/nvidia-cap{minor}")
}

/// The driver's MIG view, as far as device segments need it.
struct MigView {
    /// `nvidia-caps` major; `None`: no MIG capability nodes on this node.
    major: Option<u32>,
    existing: CapTable,
    possible: CapTable,
    /// GPU minors the driver reports.
    present: BTreeSet<u32>,
    /// Bits no capability may borrow: present GPUs and indices the policy names.
    reserved: GpuSet,
}

impl MigView {
    fn read(proc_root: &Path, devices_text: &str, specs: &[DeviceSegmentSpec], missing: &mut Vec<String>) -> Self {
        let driver = proc_root.join("driver/nvidia");
        let mut note = |what: String| missing.push(what);
        let existing = nvidia_caps::existing(&driver).unwrap_or_else(|e| {
            note(format!("MIG capabilities: {e}"));
            CapTable::default()
        });
        let possible = nvidia_caps::possible(&proc_root.join("driver/nvidia-caps")).unwrap_or_else(|e| {
            note(format!("MIG capabilities: {e}"));
            CapTable::default()
        });
        let present: BTreeSet<u32> = if driver.join("gpus").exists() {
            crate::kube::nvidia::gpu_minors(&driver).map(|m| m.into_values().collect()).unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        let major = crate::kube::nvidia::proc_devices_major(devices_text, nvidia_caps::CAPS_DEVICE);
        if major.is_none() && !(existing.is_empty() && possible.is_empty()) {
            note(format!(
                "/dev/nvidia-caps/* (MIG capabilities listed, but no {} in {}/devices)",
                nvidia_caps::CAPS_DEVICE,
                proc_root.display()
            ));
        }
        let mut reserved = GpuSet::default();
        for g in present.iter().map(|g| *g as u16).chain(specs.iter().flat_map(|s| s.reserved.iter().copied())) {
            reserved.insert(g);
        }
        MigView { major, existing, possible, present, reserved }
    }

    /// Capabilities a segment with `gpus` (and the node-wide ones with the
    /// control nodes) protects: existing instances of its GPUs, and every
    /// instance the driver could create on its GPUs present here. A minor is
    /// named once; where the two files disagree, the existing one counts.
    fn covered(&self, gpus: &[u16], control: bool) -> Vec<(MigCap, u32)> {
        let mine = |c: &MigCap, any_gpu: bool| match c.gpu() {
            Some(g) => gpus.contains(&(g as u16)) && (any_gpu || self.present.contains(&g)),
            None => control,
        };
        let mut out: Vec<(MigCap, u32)> = self.existing.iter().filter(|(c, _)| mine(c, true)).collect();
        let taken: BTreeSet<u32> = self.existing.iter().map(|(_, m)| m).collect();
        out.extend(self.possible.iter().filter(|(c, m)| mine(c, false) && !taken.contains(m)));
        out
    }
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

#[cfg(test)]
mod tests;
