//! cgroup/dev hook: every open and mknod of a device node by a process in
//! the governed subtree. Nodes outside every device segment pass untouched
//! (ttys, /dev/null...); protected ones need a rule granting the access
//! and, for GPUs, the GPU index. Attached with a bpf_link, so the container
//! runtime's own device programs keep running: all of them must allow.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{cgroup_device, map},
    maps::{HashMap, PerCpuArray},
    programs::DeviceContext,
};
use warden_common::{
    AllowKey, DeviceAllowValue, DeviceEvent, DeviceKey, DeviceSegment, EVENT_DEVICE, GPU_NONE, GPUS_ASSIGNED, GpuSet,
    MAX_WORKLOADS, STAT_DECISIONS, STAT_EVENTS, VERDICT_ALLOWED, VERDICT_DENIED, VERDICT_SLOTS, WORKLOAD_UNIDENTIFIED,
};

use crate::maps::{CGROUP_WORKLOADS, SEGMENT_INFO, STATS, bump, deny_or_audit, reserve_decision, submit_flags};

/// Protected device nodes → their segment (and GPU index).
#[map]
static DEVICE_SEGMENTS: HashMap<DeviceKey, DeviceSegment> = HashMap::with_max_entries(4096, 0);

/// (workload, segment) → granted access and GPUs.
#[map]
static DEVICE_ALLOW: HashMap<AllowKey, DeviceAllowValue> = HashMap::with_max_entries(65536, 0);

/// cgroup id of a container → the GPUs kubelet assigned to it.
#[map]
static DEVICE_ASSIGNED: HashMap<u64, GpuSet> = HashMap::with_max_entries(65536, 0);

/// Device decision counters: `workload_id * VERDICT_SLOTS + verdict`.
#[map]
static DEVICE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries((MAX_WORKLOADS + 1) * VERDICT_SLOTS, 0);

#[cgroup_device]
pub fn device(ctx: DeviceContext) -> i32 {
    // SAFETY: ctx points at the kernel's bpf_cgroup_dev_ctx for this call.
    let (access_type, major, minor) = unsafe { ((*ctx.device).access_type, (*ctx.device).major, (*ctx.device).minor) };
    let dev_type = (access_type & 0xffff) as u8;
    let access = (access_type >> 16) as u8;
    let key = DeviceKey { kind: dev_type, _pad: [0; 3], major, minor };
    // SAFETY: values are written whole by the agent.
    let Some(seg) = (unsafe { DEVICE_SEGMENTS.get(key) }).copied() else { return 1 };
    bump(&STATS, STAT_DECISIONS);
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are plain u32 written whole by the agent.
    let workload = unsafe { CGROUP_WORKLOADS.get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let (verdict, rule) = decide(workload, cgroup_id, &seg, access);
    if workload <= MAX_WORKLOADS {
        bump(&DEVICE_COUNTERS, workload * VERDICT_SLOTS + verdict as u32);
    }
    emit(&key, &seg, access, verdict, workload, rule, cgroup_id);
    if verdict == VERDICT_DENIED { 0 } else { 1 }
}

/// Same table as `CompiledPolicy::device_verdict` in the agent.
#[inline(always)]
fn decide(workload: u32, cgroup_id: u64, seg: &DeviceSegment, access: u8) -> (u8, u32) {
    if workload != WORKLOAD_UNIDENTIFIED {
        let key = AllowKey { workload_id: workload, segment_id: seg.segment_id, _pad: 0 };
        // SAFETY: values are written whole by the agent.
        if let Some(a) = unsafe { DEVICE_ALLOW.get(key) } {
            let gpu_ok = seg.gpu == GPU_NONE
                || if a.gpus_from == GPUS_ASSIGNED {
                    // SAFETY: as above.
                    unsafe { DEVICE_ASSIGNED.get(cgroup_id) }.is_some_and(|s| s.contains(seg.gpu))
                } else {
                    a.gpus.contains(seg.gpu)
                };
            if gpu_ok && a.access & access == access {
                return (VERDICT_ALLOWED, a.rule_id);
            }
            return (deny_or_audit(a.deny_mode), a.rule_id);
        }
    }
    let mode = SEGMENT_INFO.get(seg.segment_id as u32).map(|i| i.mode).unwrap_or(0);
    (deny_or_audit(mode), 0)
}

#[inline(always)]
fn emit(key: &DeviceKey, seg: &DeviceSegment, access: u8, verdict: u8, workload: u32, rule: u32, cgroup_id: u64) {
    let Some(mut entry) = reserve_decision::<DeviceEvent>(verdict) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    entry.write(DeviceEvent {
        kind: EVENT_DEVICE,
        verdict,
        access,
        dev_type: key.kind,
        segment_id: seg.segment_id,
        _pad: 0,
        workload_id: workload,
        rule_id: rule,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        major: key.major,
        minor: key.minor,
        // SAFETY: helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id,
        comm: bpf_get_current_comm().unwrap_or([0u8; 16]),
    });
    entry.submit(submit_flags(verdict));
    bump(&STATS, STAT_EVENTS);
}
