//! Decision records in `EVENTS`: the header every record starts with, the
//! reservation that keeps room for denies and the submit that wakes the agent.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    maps::ring_buf::RingBufEntry,
};
use warden_common::{
    DecisionHeader, HEADER_VERSION, STAT_ALLOWED_SHED, STAT_DENIES_DROPPED, STAT_EVENTS_DROPPED, VERDICT_ALLOWED,
};

use crate::maps::{EVENTS, REPORTED, STATS, Set, bump};

/// Queued bytes at which a submit wakes the agent (set by the loader).
#[unsafe(no_mangle)]
static EVENTS_WAKEUP_BYTES: u32 = 64 * 1024;

/// Queued bytes at which allowed-decision records wake the agent.
#[inline(always)]
fn wakeup_bytes() -> u64 {
    // SAFETY: reading a static the loader may patch.
    unsafe { core::ptr::read_volatile(&EVENTS_WAKEUP_BYTES) as u64 }
}

/// Whom a decision was about, and by which policy set and rule.
pub struct Who {
    pub set: Set,
    pub workload: u32,
    pub rule: u32,
    pub cgroup_id: u64,
}

/// The header of a decision record of the current task.
#[inline(always)]
pub fn header(kind: u8, verdict: u8, segment_id: u16, who: &Who) -> DecisionHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    DecisionHeader {
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        comm: bpf_get_current_comm().unwrap_or([0u8; 16]),
        ..task_free_header(kind, verdict, segment_id, who)
    }
}

/// The header of a decision with no task behind it (a packet: it may leave
/// from softirq context, and cgroup_skb programs on 6.1 and 6.12 may not
/// ask for the current task): pid, tgid and comm stay 0; the cgroup names
/// the workload.
#[inline(always)]
pub fn task_free_header(kind: u8, verdict: u8, segment_id: u16, who: &Who) -> DecisionHeader {
    DecisionHeader {
        version: HEADER_VERSION,
        kind,
        verdict,
        policy_set: who.set.0,
        segment_id,
        _pad: 0,
        workload_id: who.workload,
        rule_id: who.rule,
        pid: 0,
        tgid: 0,
        // SAFETY: helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: who.cgroup_id,
        comm: [0u8; 16],
    }
}

/// Reserves a decision record in `EVENTS`. Allowed decisions may use only
/// the first half of the ring: under an allowed-flow flood the rest stays
/// free for denies, so a deny is never lost to allowed traffic (the
/// agent's own queues apply the same rule: oldest allowed dropped first).
#[inline(always)]
pub fn reserve_decision<T>(verdict: u8) -> Option<RingBufEntry<T>> {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE};
    if verdict == VERDICT_ALLOWED && EVENTS.query(BPF_RB_AVAIL_DATA as u64) * 2 >= EVENTS.query(BPF_RB_RING_SIZE as u64)
    {
        bump(&STATS, STAT_ALLOWED_SHED);
        return None;
    }
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        bump(&STATS, STAT_EVENTS_DROPPED);
        if verdict != VERDICT_ALLOWED {
            bump(&STATS, STAT_DENIES_DROPPED);
        }
    }
    entry
}

/// Ring-buffer submit flags for a decision record. Waking the consumer on
/// every record costs microseconds per call (irq_work + scheduler), so
/// allowed decisions only wake it once a batch is queued; the agent also
/// drains on a short timer. Denies and audits use the kernel's normal
/// wake-up so the agent attributes them (reads /proc/<pid>/exe) before a
/// short-lived process exits.
#[inline(always)]
pub fn submit_flags(verdict: u8) -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    if verdict != VERDICT_ALLOWED {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// At most one event per (operation, set, workload, segment, verdict) a
/// second: a flood of raw packets or socket() calls is counted one by one
/// but reported once a second.
const REPORT_GAP_NS: u64 = 1_000_000_000;

/// Whether this key's last event is more than `REPORT_GAP_NS` old (and if
/// so, records now as its last).
#[inline(always)]
pub fn due(op: u8, set: Set, workload: u32, segment: u16, verdict: u8) -> bool {
    let key = (u64::from(workload) << 32)
        | (u64::from(segment) << 16)
        | (u64::from(op) << 10)
        | (u64::from(set.0) << 8)
        | u64::from(verdict);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: values are plain u64.
    if let Some(last) = unsafe { REPORTED.get(key) }
        && now.saturating_sub(*last) < REPORT_GAP_NS
    {
        return false;
    }
    let _ = REPORTED.insert(key, now, 0);
    true
}
