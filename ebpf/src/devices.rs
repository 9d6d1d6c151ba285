//! cgroup/dev hook: every open and mknod of a device node by a process in
//! the governed subtree. Nodes outside every device segment pass untouched
//! (ttys, /dev/null...); protected ones need a rule granting the access
//! and, for GPUs, the GPU index. Attached with a bpf_link, so the container
//! runtime's own device programs keep running: all of them must allow.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{cgroup_device, map},
    maps::{HashMap, PerCpuArray},
    programs::DeviceContext,
};
use warden_common::{
    AllowKey, COUNTER_SLOTS, DeviceAllowValue, DeviceEvent, DeviceKey, DeviceSegment, EVENT_DEVICE, GpuSet,
    MAX_WORKLOADS, POLICY_SETS, STAT_DECISIONS, STAT_EVENTS, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED, device_verdict,
};

use crate::maps::{STATS, Set, bump, cgroups, per_set};
use crate::record::{Who, header, reserve_decision, submit_flags};

per_set! {
    /// Protected device nodes → their segment (and GPU index).
    fn device_segments -> HashMap<DeviceKey, DeviceSegment>: DEV_SEGS_0, DEV_SEGS_1 = HashMap::pinned(4096, 0)
}
per_set! {
    /// (workload, segment) → granted access and GPUs.
    fn device_allow -> HashMap<AllowKey, DeviceAllowValue>: DEV_ALLOW_0, DEV_ALLOW_1 =
        HashMap::pinned(65536, BPF_F_NO_PREALLOC)
}

/// cgroup id of a container → the GPUs kubelet assigned to it (not policy:
/// one map for both sets).
#[map]
static DEVICE_ASSIGNED: HashMap<u64, GpuSet> = HashMap::pinned(65536, 0);

/// Device decision counters, `Set::counter` slots of both sets.
#[map]
static DEVICE_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(POLICY_SETS * COUNTER_SLOTS, 0);

#[cgroup_device]
pub fn device(ctx: DeviceContext) -> i32 {
    // SAFETY: ctx points at the kernel's bpf_cgroup_dev_ctx for this call.
    let (access_type, major, minor) = unsafe { ((*ctx.device).access_type, (*ctx.device).major, (*ctx.device).minor) };
    let dev_type = (access_type & 0xffff) as u8;
    let access = (access_type >> 16) as u8;
    let key = DeviceKey { kind: dev_type, _pad: [0; 3], major, minor };
    let set = Set::active();
    // SAFETY: values are written whole by the agent.
    let Some(seg) = (unsafe { device_segments(set).get(key) }).copied() else { return 1 };
    bump(&STATS, STAT_DECISIONS);
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are plain u32 written whole by the agent.
    let workload = unsafe { cgroups(set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let (verdict, rule) = decide(set, workload, cgroup_id, &seg, access);
    if workload <= MAX_WORKLOADS {
        bump(&DEVICE_COUNTERS, set.counter(workload, verdict));
    }
    let who = Who { set, workload, rule, cgroup_id };
    emit(&key, &seg, access, verdict, &who);
    if verdict == VERDICT_DENIED { 0 } else { 1 }
}

/// `warden_common::device_verdict` over this set's maps.
#[inline(always)]
fn decide(set: Set, workload: u32, cgroup_id: u64, seg: &DeviceSegment, access: u8) -> (u8, u32) {
    let entry = if workload != WORKLOAD_UNIDENTIFIED {
        let key = AllowKey { workload_id: workload, segment_id: seg.segment_id, _pad: 0 };
        // SAFETY: values are written whole by the agent.
        unsafe { device_allow(set).get(key) }
    } else {
        None
    };
    // SAFETY: values are written whole by the agent.
    let assigned = || unsafe { DEVICE_ASSIGNED.get(cgroup_id) };
    device_verdict(entry, seg.gpu, access, assigned, || set.segment_mode(seg.segment_id))
}

#[inline(always)]
fn emit(key: &DeviceKey, seg: &DeviceSegment, access: u8, verdict: u8, who: &Who) {
    let Some(mut entry) = reserve_decision::<DeviceEvent>(verdict) else { return };
    entry.write(DeviceEvent {
        header: header(EVENT_DEVICE, verdict, seg.segment_id, who),
        access,
        dev_type: key.kind,
        _pad: [0; 2],
        major: key.major,
        minor: key.minor,
        _pad2: 0,
    });
    entry.submit(submit_flags(verdict));
    bump(&STATS, STAT_EVENTS);
}
