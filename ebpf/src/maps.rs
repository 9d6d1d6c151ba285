//! Maps shared between the hooks. Names are the contract with the agent
//! (`agent/src/hooks/maps.rs`), sizes can be overridden by the loader.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
};
use warden_common::{
    AllowKey, AllowValue, MAX_SEGMENTS, MAX_WORKLOADS, STAT_ALLOWED_SHED, STAT_DENIES_DROPPED, STAT_EVENTS_DROPPED,
    STAT_SLOTS, SegmentEntries, SegmentInfo, Settings, VERDICT_SLOTS,
};

/// cgroup id → workload id. Absent means unidentified (fail closed).
#[map]
pub static CGROUP_WORKLOADS: HashMap<u64, u32> = HashMap::with_max_entries(65536, 0);

/// Destination prefix → segments covering it (most specific first).
#[map]
pub static SEGMENTS_V4: LpmTrie<[u8; 4], SegmentEntries> = LpmTrie::with_max_entries(65536, 0);
#[map]
pub static SEGMENTS_V6: LpmTrie<[u8; 16], SegmentEntries> = LpmTrie::with_max_entries(65536, 0);

/// Per-segment settings, indexed by segment id.
#[map]
pub static SEGMENT_INFO: Array<SegmentInfo> = Array::with_max_entries(MAX_SEGMENTS + 1, 0);

/// (workload, segment) → allowed port windows.
#[map]
pub static ALLOW: HashMap<AllowKey, AllowValue> = HashMap::with_max_entries(65536, 0);

/// Global settings at index 0.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Decision counters: `workload_id * VERDICT_SLOTS + verdict`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries((MAX_WORKLOADS + 1) * VERDICT_SLOTS, 0);

/// Pipeline statistics (`STAT_*` indices), notably ring-buffer drops.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

/// Decision events. Size set by the agent at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// cgroup lifecycle events, separate so a flood of decisions can never
/// starve identity updates.
#[map]
pub static CGROUP_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// The verdict of a refused access under a mode.
#[inline(always)]
pub fn deny_or_audit(mode: u8) -> u8 {
    if mode == warden_common::MODE_AUDIT { warden_common::VERDICT_AUDITED } else { warden_common::VERDICT_DENIED }
}

/// Reserves a decision record in `EVENTS`. Allowed decisions may use only
/// the first half of the ring: under an allowed-flow flood the rest stays
/// free for denies, so a deny is never lost to allowed traffic (the
/// agent's own queues apply the same rule: oldest allowed dropped first).
#[inline(always)]
pub fn reserve_decision<T>(verdict: u8) -> Option<RingBufEntry<T>> {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE};
    if verdict == warden_common::VERDICT_ALLOWED
        && EVENTS.query(BPF_RB_AVAIL_DATA as u64) * 2 >= EVENTS.query(BPF_RB_RING_SIZE as u64)
    {
        bump(&STATS, STAT_ALLOWED_SHED);
        return None;
    }
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        bump(&STATS, STAT_EVENTS_DROPPED);
        if verdict != warden_common::VERDICT_ALLOWED {
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
    if verdict != warden_common::VERDICT_ALLOWED {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= crate::net::wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
