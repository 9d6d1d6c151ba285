//! MIG capabilities from the NVIDIA driver's procfs. A process using a MIG
//! device opens its parent GPU (`/dev/nvidia<N>`) and two capability nodes,
//! `/dev/nvidia-caps/nvidia-cap<M>` (char major `nvidia-caps` in
//! `/proc/devices`): one for its GPU instance, one for its compute instance.
//! The driver publishes each existing instance's minor in
//! `<driver>/capabilities/gpu<N>/mig/gi<G>/access` and
//! `.../gi<G>/ci<C>/access` (`DeviceFileMinor: <m>`, `DeviceFileMode: <mode>`;
//! N is the GPU's device minor), the node-wide ones in
//! `<driver>/capabilities/mig/config` and `mig/monitor`, and every minor it
//! could ever hand out in `/proc/driver/nvidia-caps/mig-minors`
//! (`gpu0/gi1/ci0/access 13`). nvidia-container-toolkit and the NVIDIA
//! device plugin read the same files (`internal/nvcaps`, `GetPaths`).
//!
//! Parsed defensively: a malformed entry is skipped with a warning, and a
//! minor claimed by two capabilities is dropped on both, since a wrong
//! capability → minor pair would hand one container another's instance.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use super::{KubeError, nvidia::read_at_most};

/// The char device `/proc/devices` lists for capability nodes.
pub const CAPS_DEVICE: &str = "nvidia-caps";

/// Largest access file read; real ones are about 60 bytes.
const MAX_ACCESS_BYTES: u64 = 4 << 10;
/// Largest mig-minors file read; 32 GPUs' worth is about 100 KiB.
const MAX_MINORS_BYTES: u64 = 1 << 20;
/// Linux minors are 20 bits.
const MAX_MINOR: u32 = (1 << 20) - 1;
/// GPU minors 0..=253 (254 and 255 are control nodes).
const MAX_GPU: u32 = 253;
/// Far above any GPU/compute instance id a driver uses (A100/H100: < 15).
const MAX_INSTANCE: u32 = 255;

/// One MIG capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MigCap {
    /// `mig/config`: create and destroy instances (mig-manager's).
    Config,
    /// `mig/monitor`: read every instance's state (DCGM's).
    Monitor,
    /// Access to GPU instance `gi` of GPU minor `gpu`.
    Gi { gpu: u32, gi: u32 },
    /// Access to compute instance `ci` of that GPU instance.
    Ci { gpu: u32, gi: u32, ci: u32 },
}

impl MigCap {
    /// The parent GPU's minor, for instance capabilities.
    pub fn gpu(&self) -> Option<u32> {
        match self {
            MigCap::Gi { gpu, .. } | MigCap::Ci { gpu, .. } => Some(*gpu),
            MigCap::Config | MigCap::Monitor => None,
        }
    }
}

impl std::fmt::Display for MigCap {
    /// As mig-minors names it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigCap::Config => f.write_str("config"),
            MigCap::Monitor => f.write_str("monitor"),
            MigCap::Gi { gpu, gi } => write!(f, "gpu{gpu}/gi{gi}/access"),
            MigCap::Ci { gpu, gi, ci } => write!(f, "gpu{gpu}/gi{gi}/ci{ci}/access"),
        }
    }
}

/// Capabilities and their minors, one-to-one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapTable {
    by_cap: BTreeMap<MigCap, u32>,
    by_minor: BTreeMap<u32, MigCap>,
}

impl CapTable {
    /// Keeps only capabilities and minors that appear once in `found`.
    fn unique(found: Vec<(MigCap, u32)>, source: &Path) -> Self {
        let (mut caps, mut minors) = (HashMap::<MigCap, usize>::new(), HashMap::<u32, usize>::new());
        for (cap, minor) in &found {
            *caps.entry(*cap).or_default() += 1;
            *minors.entry(*minor).or_default() += 1;
        }
        let mut t = CapTable::default();
        for (cap, minor) in found {
            if caps[&cap] > 1 || minors[&minor] > 1 {
                let src = source.display();
                tracing::warn!(source = %src, %cap, minor, "nvidia-caps: capability or minor listed twice; ignoring");
                continue;
            }
            t.by_cap.insert(cap, minor);
            t.by_minor.insert(minor, cap);
        }
        t
    }

    pub fn minor(&self, cap: &MigCap) -> Option<u32> {
        self.by_cap.get(cap).copied()
    }

    pub fn cap(&self, minor: u32) -> Option<MigCap> {
        self.by_minor.get(&minor).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_cap.is_empty()
    }

    /// (capability, minor) in capability order.
    pub fn iter(&self) -> impl Iterator<Item = (MigCap, u32)> + '_ {
        self.by_cap.iter().map(|(c, m)| (*c, *m))
    }
}

/// The capabilities that exist now, from `<driver_root>/capabilities`
/// (`driver_root` is `/proc/driver/nvidia` on a node). No such directory:
/// no MIG on this node (an empty table).
pub fn existing(driver_root: &Path) -> Result<CapTable, KubeError> {
    let root = driver_root.join("capabilities");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CapTable::default()),
        Err(source) => return Err(KubeError::Io { path: root, source }),
    };
    for (cap, file) in [(MigCap::Config, "mig/config"), (MigCap::Monitor, "mig/monitor")] {
        access_entry(&root.join(file), cap, &mut found);
    }
    for entry in entries.filter_map(Result::ok) {
        let Some(gpu) = numbered(&entry.file_name(), "gpu").filter(|g| *g <= MAX_GPU) else { continue };
        let mig = entry.path().join("mig");
        for (gi, gi_dir) in numbered_dirs(&mig, "gi") {
            access_entry(&gi_dir.join("access"), MigCap::Gi { gpu, gi }, &mut found);
            for (ci, ci_dir) in numbered_dirs(&gi_dir, "ci") {
                access_entry(&ci_dir.join("access"), MigCap::Ci { gpu, gi, ci }, &mut found);
            }
        }
    }
    Ok(CapTable::unique(found, &root))
}

/// Every capability the driver can create, from its `mig-minors` file
/// (`nvcaps_root` is `/proc/driver/nvidia-caps`). Absent: an empty table
/// (a driver without MIG support).
pub fn possible(nvcaps_root: &Path) -> Result<CapTable, KubeError> {
    let path = nvcaps_root.join("mig-minors");
    if !path.exists() {
        return Ok(CapTable::default());
    }
    let text = read_at_most(&path, MAX_MINORS_BYTES)
        .map_err(|e| KubeError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
    Ok(CapTable::unique(parse_mig_minors(&text, &path), &path))
}

/// `<name> <minor>` lines; malformed ones are skipped with a warning.
fn parse_mig_minors(text: &str, path: &Path) -> Vec<(MigCap, u32)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let parsed = match (fields.next(), fields.next(), fields.next()) {
            (Some(name), Some(minor), None) => parse_cap_name(name).zip(decimal(minor).filter(|m| *m <= MAX_MINOR)),
            _ => None,
        };
        match parsed {
            Some(entry) => out.push(entry),
            None => tracing::warn!(file = %path.display(), line, "nvidia-caps: skipping malformed mig-minors line"),
        }
    }
    out
}

/// `config`, `monitor`, `gpu<N>/gi<G>/access`, `gpu<N>/gi<G>/ci<C>/access`.
pub fn parse_cap_name(name: &str) -> Option<MigCap> {
    match name {
        "config" => return Some(MigCap::Config),
        "monitor" => return Some(MigCap::Monitor),
        _ => {}
    }
    let parts: Vec<&str> = name.split('/').collect();
    let id = |s: &str, prefix: &str, max: u32| s.strip_prefix(prefix).and_then(decimal).filter(|v| *v <= max);
    match parts.as_slice() {
        [gpu, gi, "access"] => Some(MigCap::Gi { gpu: id(gpu, "gpu", MAX_GPU)?, gi: id(gi, "gi", MAX_INSTANCE)? }),
        [gpu, gi, ci, "access"] => Some(MigCap::Ci {
            gpu: id(gpu, "gpu", MAX_GPU)?,
            gi: id(gi, "gi", MAX_INSTANCE)?,
            ci: id(ci, "ci", MAX_INSTANCE)?,
        }),
        _ => None,
    }
}

/// The minor an access file states: its one `DeviceFileMinor:` line.
pub fn parse_access(text: &str) -> Result<u32, String> {
    let mut minor = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        if key.trim() != "DeviceFileMinor" {
            continue;
        }
        if minor.is_some() {
            return Err("two DeviceFileMinor lines".into());
        }
        let value = value.trim();
        minor = Some(decimal(value).filter(|m| *m <= MAX_MINOR).ok_or(format!("bad DeviceFileMinor {value:?}"))?);
    }
    minor.ok_or_else(|| "no DeviceFileMinor line".into())
}

fn access_entry(path: &Path, cap: MigCap, found: &mut Vec<(MigCap, u32)>) {
    if !path.exists() {
        return;
    }
    match read_at_most(path, MAX_ACCESS_BYTES).and_then(|t| parse_access(&t)) {
        Ok(minor) => found.push((cap, minor)),
        Err(why) => tracing::warn!(file = %path.display(), %why, "nvidia-caps: skipping capability file"),
    }
}

/// Subdirectories named `<prefix><id>`, by id.
fn numbered_dirs(dir: &Path, prefix: &str) -> Vec<(u32, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut v: Vec<(u32, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| numbered(&e.file_name(), prefix).filter(|id| *id <= MAX_INSTANCE).map(|id| (id, e.path())))
        .filter(|(_, p)| p.is_dir())
        .collect();
    v.sort();
    v
}

fn numbered(name: &std::ffi::OsStr, prefix: &str) -> Option<u32> {
    name.to_str()?.strip_prefix(prefix).and_then(decimal)
}

/// Decimal digits only, no sign, no leading zeros.
fn decimal(s: &str) -> Option<u32> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if ok { s.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn access(minor: u32) -> String {
        format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
    }

    fn tree(test: &str, files: &[(&str, String)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("warden-nvcaps-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (rel, text) in files {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn access_files() {
        assert_eq!(parse_access(&access(21)), Ok(21));
        assert_eq!(parse_access("DeviceFileMode: 292\nDeviceFileMinor:\t 0\n"), Ok(0));
        for bad in [
            "",
            "DeviceFileMode: 292\n",
            "DeviceFileMinor: -1\n",
            "DeviceFileMinor: 0x10\n",
            "DeviceFileMinor: 1048576\n",
        ] {
            assert!(parse_access(bad).is_err(), "{bad:?}");
        }
        assert!(parse_access("DeviceFileMinor: 1\nDeviceFileMinor: 2\n").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(parse_cap_name("gpu0/gi1/access"), Some(MigCap::Gi { gpu: 0, gi: 1 }));
        assert_eq!(parse_cap_name("gpu7/gi14/ci3/access"), Some(MigCap::Ci { gpu: 7, gi: 14, ci: 3 }));
        assert_eq!(parse_cap_name("monitor"), Some(MigCap::Monitor));
        for bad in ["gpu0/gi1", "gpu/gi1/access", "gpu0/gi01/access", "gpu254/gi1/access", "gpu0/gi1/ci0/x", "x"] {
            assert_eq!(parse_cap_name(bad), None, "{bad}");
        }
        for cap in [MigCap::Config, MigCap::Gi { gpu: 3, gi: 2 }, MigCap::Ci { gpu: 1, gi: 2, ci: 3 }] {
            assert_eq!(parse_cap_name(&cap.to_string()), Some(cap));
        }
    }

    #[test]
    fn existing_instances_from_the_capabilities_tree() {
        let root = tree(
            "existing",
            &[
                ("capabilities/mig/config", access(1)),
                ("capabilities/mig/monitor", access(2)),
                ("capabilities/gpu0/mig/gi1/access", access(12)),
                ("capabilities/gpu0/mig/gi1/ci0/access", access(13)),
                ("capabilities/gpu1/mig/gi2/access", access(156)),
                ("capabilities/gpu1/mig/gi2/ci0/access", access(157)),
                // Malformed, duplicated or misplaced: skipped.
                ("capabilities/gpu1/mig/gi3/access", "DeviceFileMinor: x\n".into()),
                ("capabilities/gpu2/mig/gi1/access", access(300)),
                ("capabilities/gpu2/mig/gi2/access", access(300)),
                ("capabilities/gpuX/mig/gi1/access", access(400)),
                ("capabilities/gpu0/mig/gi01/access", access(401)),
            ],
        );
        let t = existing(&root).unwrap();
        let got: Vec<(MigCap, u32)> = t.iter().collect();
        assert_eq!(
            got,
            [
                (MigCap::Config, 1),
                (MigCap::Monitor, 2),
                (MigCap::Gi { gpu: 0, gi: 1 }, 12),
                (MigCap::Gi { gpu: 1, gi: 2 }, 156),
                (MigCap::Ci { gpu: 0, gi: 1, ci: 0 }, 13),
                (MigCap::Ci { gpu: 1, gi: 2, ci: 0 }, 157),
            ]
        );
        assert_eq!(t.cap(157), Some(MigCap::Ci { gpu: 1, gi: 2, ci: 0 }));
        assert_eq!(t.minor(&MigCap::Gi { gpu: 0, gi: 1 }), Some(12));
        assert!(existing(&root.join("none")).unwrap().is_empty(), "no capabilities dir: no MIG");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn possible_minors_from_mig_minors() {
        let text = "config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\ngpu0/gi1/access 12\n\
                    bad line here\ngpu0/gi2/access x\ngpu9/gi0/access 4\n";
        let root = tree("possible", &[("mig-minors", text.into())]);
        let t = possible(&root).unwrap();
        // Minor 4 is claimed twice: neither claim is trusted.
        let got: Vec<(MigCap, u32)> = t.iter().collect();
        assert_eq!(
            got,
            [
                (MigCap::Config, 1),
                (MigCap::Monitor, 2),
                (MigCap::Gi { gpu: 0, gi: 0 }, 3),
                (MigCap::Gi { gpu: 0, gi: 1 }, 12)
            ]
        );
        assert!(possible(&root.join("none")).unwrap().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
