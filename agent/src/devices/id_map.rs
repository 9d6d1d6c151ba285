//! A device id kubelet reports (see `kube::device_ids`) → what the kernel
//! must let its container open: a GPU minor, or a MIG device's parent GPU
//! and its two capability minors.
//!
//! Where each answer comes from:
//! - `GPU-<uuid>`: the driver's `gpus/<bus>/information` (UUID → minor);
//! - an index: the minor itself;
//! - a replica (`…::n`): the device it replicates;
//! - `MIG-GPU-<uuid>/<gi>/<ci>`: the GPU as above, the capability minors
//!   from `capabilities/gpu<N>/mig/gi<G>[/ci<C>]/access`;
//! - `MIG-<uuid>`: only NVML knows which GPU instance a MIG UUID is, and
//!   NVML is not loaded here; the CDI spec NVIDIA's tools wrote from NVML
//!   names its device nodes, which are then checked against the driver's
//!   capability files (same GPU, one GPU instance, one of its compute
//!   instances). No spec: refused;
//! - `<gpu>:<mig>` (MIG by index): NVML's enumeration order, in no file:
//!   refused.
//!
//! A refusal is never partial: the id grants nothing.
use std::{collections::HashMap, path::Path};

use crate::kube::{
    cdi::{CdiDevices, CdiNode},
    device_ids::{self, DeviceId},
    nvidia_caps::{CapTable, MigCap},
};

/// Minors 0..=253 are GPUs.
const MAX_GPU_MINOR: u32 = 253;

/// What one device id grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapped {
    Gpu(u16),
    Mig { gpu: u16, gi_cap: u32, ci_cap: u32 },
}

/// The driver's view the mapping reads; CDI specs are read on first need.
pub struct DriverView<'a> {
    /// GPU UUID → minor.
    pub gpu_minors: &'a HashMap<String, u32>,
    /// Existing MIG capabilities.
    pub caps: &'a CapTable,
    pub cdi: &'a dyn Fn() -> &'a CdiDevices,
    /// Where capability files live, for messages.
    pub driver_root: &'a Path,
}

/// Maps one id; the error says why it grants nothing.
pub fn map(id: &str, v: &DriverView<'_>) -> Result<Mapped, String> {
    let parsed = device_ids::parse(id).map_err(|e| format!("unknown device id form: {e}"))?;
    match parsed.device {
        DeviceId::GpuUuid(uuid) => gpu_by_uuid(uuid, v).map(Mapped::Gpu),
        DeviceId::Index(i) if i <= MAX_GPU_MINOR => Ok(Mapped::Gpu(i as u16)),
        DeviceId::Index(i) => Err(format!("GPU index {i} is out of range (0..={MAX_GPU_MINOR})")),
        DeviceId::MigLegacy { gpu_uuid, gi, ci } => {
            let gpu = gpu_by_uuid(gpu_uuid, v)?;
            let g = gpu as u32;
            let cap = |c: MigCap| {
                v.caps.minor(&c).ok_or_else(|| {
                    format!("MIG {c} does not exist (no {}/capabilities/{})", v.driver_root.display(), proc_path(&c))
                })
            };
            Ok(Mapped::Mig {
                gpu,
                gi_cap: cap(MigCap::Gi { gpu: g, gi })?,
                ci_cap: cap(MigCap::Ci { gpu: g, gi, ci })?,
            })
        }
        DeviceId::MigUuid(uuid) => mig_by_cdi(uuid, v),
        DeviceId::MigIndex { gpu, mig } => Err(format!(
            "MIG device {gpu}:{mig} is named by NVML's enumeration order, which no file records; \
             run the device plugin with deviceIDStrategy=uuid"
        )),
    }
}

fn gpu_by_uuid(uuid: &str, v: &DriverView<'_>) -> Result<u16, String> {
    match v.gpu_minors.get(uuid) {
        Some(m) if *m <= MAX_GPU_MINOR => Ok(*m as u16),
        _ => Err(format!("no GPU {uuid} on this node (per {}/gpus/*/information)", v.driver_root.display())),
    }
}

/// `gpu0/mig/gi1/ci0/access`, as the capabilities tree spells it.
fn proc_path(c: &MigCap) -> String {
    match c {
        MigCap::Config => "mig/config".into(),
        MigCap::Monitor => "mig/monitor".into(),
        MigCap::Gi { gpu, gi } => format!("gpu{gpu}/mig/gi{gi}/access"),
        MigCap::Ci { gpu, gi, ci } => format!("gpu{gpu}/mig/gi{gi}/ci{ci}/access"),
    }
}

fn mig_by_cdi(uuid: &str, v: &DriverView<'_>) -> Result<Mapped, String> {
    let cdi = (v.cdi)();
    let Some(nodes) = cdi.nodes.get(uuid) else {
        return Err("no mapping for this MIG UUID: no CDI spec names it (NVIDIA's device plugin writes one with \
                    a CDI device-list strategy, `nvidia-ctk cdi generate --device-name-strategy=uuid` another; \
                    see agent.devices.cdiSpecDirs)"
            .into());
    };
    let bad = |why: String| Err(format!("its CDI spec does not match the driver: {why}"));
    let (mut gpus, mut caps) = (Vec::new(), Vec::new());
    for n in nodes {
        match node_minor(n) {
            Ok(Some(NodeKind::Gpu(m))) => gpus.push(m),
            Ok(Some(NodeKind::Cap(m))) => caps.push(m),
            Ok(None) => {}
            Err(why) => return bad(why),
        }
    }
    let [gpu] = gpus[..] else { return bad(format!("{} GPU nodes, expected one", gpus.len())) };
    let [a, b] = caps[..] else { return bad(format!("{} capability nodes, expected two", caps.len())) };
    let which = |m: u32| v.caps.cap(m).ok_or(format!("nvidia-cap{m} is no MIG instance the driver lists"));
    let (ca, cb) = match (which(a), which(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    match (ca, cb) {
        (MigCap::Gi { gpu: g1, gi }, MigCap::Ci { gpu: g2, gi: gi2, .. })
        | (MigCap::Ci { gpu: g2, gi: gi2, .. }, MigCap::Gi { gpu: g1, gi })
            if g1 == gpu && g2 == gpu && gi == gi2 =>
        {
            let (gi_cap, ci_cap) = if matches!(ca, MigCap::Gi { .. }) { (a, b) } else { (b, a) };
            Ok(Mapped::Mig { gpu: gpu as u16, gi_cap, ci_cap })
        }
        _ => bad(format!("nvidia{gpu} with {ca} and {cb} is not one GPU instance and one of its compute instances")),
    }
}

enum NodeKind {
    Gpu(u32),
    Cap(u32),
}

/// `/dev/nvidia<N>` and `/dev/nvidia-caps/nvidia-cap<M>` by name (how
/// nvidia-modprobe names them), cross-checked with a stated minor.
fn node_minor(n: &CdiNode) -> Result<Option<NodeKind>, String> {
    let name = n.path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    let in_caps = n.path.parent().and_then(|p| p.file_name()).is_some_and(|d| d == "nvidia-caps");
    let digits =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u32>().ok()).flatten();
    let kind = match (in_caps, name.strip_prefix("nvidia-cap"), name.strip_prefix("nvidia")) {
        (true, Some(m), _) => digits(m).map(NodeKind::Cap),
        (false, _, Some(m)) => digits(m).filter(|m| *m <= MAX_GPU_MINOR).map(NodeKind::Gpu),
        _ => None,
    };
    let Some(kind) = kind else { return Ok(None) };
    let named = match kind {
        NodeKind::Gpu(m) | NodeKind::Cap(m) => m,
    };
    match n.minor {
        Some(stated) if stated != named => Err(format!("{} states minor {stated}", n.path.display())),
        _ => Ok(Some(kind)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const GPU0: &str = "GPU-aaaaaaaa-1111-2222-3333-444444444444";
    const GPU1: &str = "GPU-bbbbbbbb-1111-2222-3333-444444444444";
    const MIG_A: &str = "MIG-11111111-aaaa-bbbb-cccc-000000000001";

    fn caps() -> CapTable {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let text = "DeviceFileMinor: {}\n";
        let root = std::env::temp_dir().join(format!("warden-idmap-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (rel, m) in [
            ("gpu0/mig/gi1/access", 12),
            ("gpu0/mig/gi1/ci0/access", 13),
            ("gpu1/mig/gi2/access", 156),
            ("gpu1/mig/gi2/ci0/access", 157),
        ] {
            let p = root.join("capabilities").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text.replace("{}", &m.to_string())).unwrap();
        }
        let t = crate::kube::nvidia_caps::existing(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        t
    }

    fn nodes(paths: &[&str]) -> Vec<CdiNode> {
        paths.iter().map(|p| CdiNode { path: PathBuf::from(p), minor: None }).collect()
    }

    fn with_view<T>(cdi: CdiDevices, f: impl FnOnce(&DriverView<'_>) -> T) -> T {
        let minors = HashMap::from([(GPU0.to_string(), 0), (GPU1.to_string(), 1)]);
        let caps = caps();
        let cdi_fn = || &cdi;
        let v = DriverView {
            gpu_minors: &minors,
            caps: &caps,
            cdi: &cdi_fn,
            driver_root: Path::new("/proc/driver/nvidia"),
        };
        f(&v)
    }

    #[test]
    fn whole_gpus_and_replicas() {
        with_view(CdiDevices::default(), |v| {
            assert_eq!(map(GPU1, v), Ok(Mapped::Gpu(1)));
            assert_eq!(map(&format!("{GPU1}::4"), v), Ok(Mapped::Gpu(1)));
            assert_eq!(map("0::2", v), Ok(Mapped::Gpu(0)));
            assert!(map("GPU-cccccccc-1111-2222-3333-444444444444", v).unwrap_err().contains("no GPU"));
            assert!(map("254", v).is_err());
            assert!(map("bogus", v).unwrap_err().contains("unknown device id form"));
        });
    }

    #[test]
    fn legacy_mig_ids_from_the_capability_files() {
        with_view(CdiDevices::default(), |v| {
            let legacy = "MIG-GPU-bbbbbbbb-1111-2222-3333-444444444444/2/0";
            assert_eq!(map(legacy, v), Ok(Mapped::Mig { gpu: 1, gi_cap: 156, ci_cap: 157 }));
            assert_eq!(map(&format!("{legacy}::1"), v), Ok(Mapped::Mig { gpu: 1, gi_cap: 156, ci_cap: 157 }));
            let e = map("MIG-GPU-bbbbbbbb-1111-2222-3333-444444444444/2/1", v).unwrap_err();
            assert!(e.contains("gpu1/gi2/ci1/access does not exist"), "{e}");
            assert!(map("MIG-GPU-aaaaaaaa-1111-2222-3333-444444444444/2/0", v).is_err(), "GI 2 is on GPU 1");
        });
    }

    #[test]
    fn modern_mig_ids_through_cdi() {
        let mut cdi = CdiDevices::default();
        cdi.nodes.insert(
            MIG_A.into(),
            nodes(&["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap13", "/dev/nvidia-caps/nvidia-cap12"]),
        );
        // Mismatches: wrong GPU, caps of two GPUs, an unknown cap, a stated minor that differs.
        cdi.nodes.insert(
            "MIG-00000000-0000-0000-0000-000000000002".into(),
            nodes(&["/dev/nvidia1", "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap13"]),
        );
        cdi.nodes.insert(
            "MIG-00000000-0000-0000-0000-000000000003".into(),
            nodes(&["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap157"]),
        );
        cdi.nodes.insert(
            "MIG-00000000-0000-0000-0000-000000000004".into(),
            nodes(&["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap99"]),
        );
        let mut stated = nodes(&["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap13"]);
        stated[1].minor = Some(14);
        cdi.nodes.insert("MIG-00000000-0000-0000-0000-000000000005".into(), stated);
        cdi.nodes.insert(
            "MIG-00000000-0000-0000-0000-000000000006".into(),
            nodes(&["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap12"]),
        );
        with_view(cdi, |v| {
            assert_eq!(map(MIG_A, v), Ok(Mapped::Mig { gpu: 0, gi_cap: 12, ci_cap: 13 }));
            assert_eq!(map(&format!("{MIG_A}::0"), v), Ok(Mapped::Mig { gpu: 0, gi_cap: 12, ci_cap: 13 }));
            for (n, why) in [
                (2, "is not one GPU instance"),
                (3, "is not one GPU instance"),
                (4, "nvidia-cap99 is no MIG instance"),
                (5, "states minor 14"),
                (6, "1 capability nodes"),
            ] {
                let e = map(&format!("MIG-00000000-0000-0000-0000-00000000000{n}"), v).unwrap_err();
                assert!(e.contains("does not match the driver") && e.contains(why), "{n}: {e}");
            }
            let e = map("MIG-99999999-0000-0000-0000-000000000000", v).unwrap_err();
            assert!(e.contains("no CDI spec names it"), "{e}");
            assert!(map("0:1", v).unwrap_err().contains("deviceIDStrategy=uuid"));
        });
    }
}
