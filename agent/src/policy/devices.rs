//! Device segments: which device nodes each segment protects and what each
//! (workload, segment) pair may do with them.
//!
//! Nodes are resolved on the node, not here (`crate::devices`): dynamic
//! majors (nvidia-uvm) and path patterns depend on the running system.
//! GPUs are NVIDIA char 195 minors; a rule's GPU set is either listed (the
//! `DEVICE_ALLOW` entry carries it) or `assigned` (the kernel checks the
//! container's `DEVICE_ASSIGNED` entry, written from kubelet's assignment).
//!
//! MIG capability nodes borrow GPU-set bits that name no GPU of the node
//! (`crate::devices::mig`): a rule granting every GPU of a `gpus: all`
//! segment holds all 256 bits, so it reaches every MIG instance too; the
//! indices a policy names (`reserved`) are never lent, so a listed rule
//! reaches only its whole GPUs.

use warden_common::{
    AllowKey, DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, DeviceAllowValue, GPUS_ASSIGNED, GPUS_LISTED, GpuSet,
};

use super::model::{Access, DeviceSpec, GpuSelection, Policy, RuleGpus};

/// A segment's device spec with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSegmentSpec {
    pub segment_id: u16,
    pub spec: DeviceSpec,
    /// GPU indices this segment or a rule on it names explicitly: a listed
    /// rule's set holds them, so no MIG capability may borrow their bits.
    pub reserved: Vec<u16>,
}

/// What a grant of `access` means for device nodes.
pub fn device_access(access: Option<Access>) -> u8 {
    match access {
        Some(Access::Read) => DEV_ACC_READ,
        // Creating a node for a device one may use gives nothing new.
        Some(Access::ReadWrite) | None => DEV_ACC_READ | DEV_ACC_WRITE | DEV_ACC_MKNOD,
    }
}

/// Device segments, and `DEVICE_ALLOW` entries sorted by (workload, segment).
pub(super) fn compile_devices(policy: &Policy) -> (Vec<DeviceSegmentSpec>, Vec<(AllowKey, DeviceAllowValue)>) {
    let rules = super::allow::rule_pairs(policy);
    let specs = policy
        .segments
        .iter()
        .enumerate()
        .filter_map(|(si, s)| {
            let d = s.devices.as_ref()?;
            let mut reserved: Vec<u16> = match &d.gpus {
                Some(GpuSelection::Indices(v)) => v.clone(),
                Some(GpuSelection::All) | None => vec![],
            };
            for (_, rule, _, _) in rules.iter().filter(|(_, _, _, rsi)| *rsi == si) {
                if let Some(RuleGpus::Listed(list)) = &rule.gpus {
                    reserved.extend(list);
                }
            }
            reserved.sort_unstable();
            reserved.dedup();
            Some(DeviceSegmentSpec { segment_id: (si + 1) as u16, spec: d.clone(), reserved })
        })
        .collect();

    let allow = super::allow::allow_table(
        policy,
        |s| s.devices.is_some(),
        |rule, rule_id, segment, deny_mode| {
            let segment_gpus =
                segment.devices.as_ref().and_then(|d| d.gpus.as_ref()).map(|g| g.indices()).unwrap_or_default();
            let mut value = DeviceAllowValue {
                access: device_access(rule.access),
                deny_mode,
                gpus_from: GPUS_LISTED,
                rule_id,
                ..Default::default()
            };
            match &rule.gpus {
                Some(RuleGpus::Assigned) => value.gpus_from = GPUS_ASSIGNED,
                // Only GPUs of this segment: a listed index it lacks grants nothing here.
                Some(RuleGpus::Listed(list)) => value.gpus = gpu_set(list.iter().filter(|g| segment_gpus.contains(g))),
                // Every GPU, and with them every MIG capability (bits no GPU uses).
                None if matches!(segment.devices.as_ref().and_then(|d| d.gpus.as_ref()), Some(GpuSelection::All)) => {
                    value.gpus = GpuSet { bits: [u64::MAX; 4] }
                }
                None => value.gpus = gpu_set(segment_gpus.iter()),
            }
            value
        },
        |deny_mode| DeviceAllowValue { deny_mode, ..Default::default() },
    );
    (specs, allow)
}

fn gpu_set<'a>(gpus: impl Iterator<Item = &'a u16>) -> GpuSet {
    let mut set = GpuSet::default();
    for g in gpus {
        set.insert(*g);
    }
    set
}
