//! Device segments: which device nodes each segment protects and what each
//! (workload, segment) pair may do with them.
//!
//! Nodes are resolved on the node, not here (`crate::devices`): dynamic
//! majors (nvidia-uvm) and path patterns depend on the running system.
//! GPUs are NVIDIA char 195 minors; a rule's GPU set is either listed (the
//! `DEVICE_ALLOW` entry carries it) or `assigned` (the kernel checks the
//! container's `DEVICE_ASSIGNED` entry, written from kubelet's assignment).
use std::collections::BTreeMap;

use warden_common::{
    AllowKey, DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, DeviceAllowValue, GPUS_ASSIGNED, GPUS_LISTED, GpuSet,
};

use super::model::{Access, DeviceSpec, Policy, RuleGpus};

/// A segment's device spec with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSegmentSpec {
    pub segment_id: u16,
    pub spec: DeviceSpec,
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
    let global = policy.mode;
    let specs = policy
        .segments
        .iter()
        .enumerate()
        .filter_map(|(si, s)| {
            s.devices.as_ref().map(|d| DeviceSegmentSpec { segment_id: (si + 1) as u16, spec: d.clone() })
        })
        .collect();

    let mut allow: BTreeMap<(u32, u16), DeviceAllowValue> = BTreeMap::new();
    for (rule_id, rule, wi, si) in super::compile::rule_pairs(policy) {
        let segment = &policy.segments[si];
        let Some(devices) = &segment.devices else { continue };
        let mode = rule.mode.or(policy.workloads[wi].mode).or(segment.mode).unwrap_or(global);
        let mut value = DeviceAllowValue {
            access: device_access(rule.access),
            deny_mode: mode.kernel(),
            gpus_from: GPUS_LISTED,
            rule_id,
            ..Default::default()
        };
        let segment_gpus = devices.gpus.as_ref().map(|g| g.indices()).unwrap_or_default();
        match &rule.gpus {
            Some(RuleGpus::Assigned) => value.gpus_from = GPUS_ASSIGNED,
            // Only GPUs of this segment: a listed index it lacks grants nothing here.
            Some(RuleGpus::Listed(list)) => value.gpus = gpu_set(list.iter().filter(|g| segment_gpus.contains(g))),
            None => value.gpus = gpu_set(segment_gpus.iter()),
        }
        // Validation rejects a second rule for a pair; the first one stands.
        allow.entry(((wi + 1) as u32, (si + 1) as u16)).or_insert(value);
    }
    super::compile::workload_mode_entries(
        policy,
        &mut allow,
        |s| s.devices.is_some(),
        |deny_mode| DeviceAllowValue { deny_mode, ..Default::default() },
    );
    let allow = allow
        .into_iter()
        .map(|((workload_id, segment_id), v)| (AllowKey { workload_id, segment_id, _pad: 0 }, v))
        .collect();
    (specs, allow)
}

fn gpu_set<'a>(gpus: impl Iterator<Item = &'a u16>) -> GpuSet {
    let mut set = GpuSet::default();
    for g in gpus {
        set.insert(*g);
    }
    set
}
