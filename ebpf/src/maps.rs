//! Maps shared between the hooks. Names are the contract with the agent
//! (`agent/src/hooks/maps.rs`), sizes can be overridden by the loader.
//!
//! Policy maps exist twice, `NAME_0` and `NAME_1` (see `POLICY_SETS`): a
//! hook reads `POLICY_SET` once and takes every map from that set, so one
//! decision never mixes two policies and a reload is one flip of that word.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
};
use warden_common::{
    AllowKey, AllowValue, COUNTER_SLOTS, MAX_SEGMENTS, POLICY_SETS, STAT_ALLOWED_SHED, STAT_DENIES_DROPPED,
    STAT_EVENTS_DROPPED, STAT_SLOTS, SegmentEntries, SegmentInfo, Settings, VERDICT_SLOTS,
};

/// Which policy set the hooks read (index 0; 0 or 1).
#[map]
pub static POLICY_SET: Array<u32> = Array::pinned(1, 0);

/// A policy set, read once per hook call.
#[derive(Clone, Copy)]
pub struct Set(pub u8);

impl Set {
    #[inline(always)]
    pub fn active() -> Set {
        Set((POLICY_SET.get(0).copied().unwrap_or(0) & 1) as u8)
    }

    /// A counter slot of this set's workload ids.
    #[inline(always)]
    pub fn counter(self, workload: u32, verdict: u8) -> u32 {
        self.0 as u32 * COUNTER_SLOTS + workload * VERDICT_SLOTS + verdict as u32
    }
}

/// Declares a policy map twice (`NAME_0`, `NAME_1`) and an accessor taking
/// the set. Hash maps are not preallocated: two sets of 65,536 entries
/// would pin memory no policy uses.
macro_rules! per_set {
    ($(#[$doc:meta])* $vis:vis fn $get:ident -> $ty:ty: $a:ident, $b:ident = $init:expr) => {
        $(#[$doc])*
        #[map]
        $vis static $a: $ty = $init;
        #[map]
        $vis static $b: $ty = $init;

        #[inline(always)]
        $vis fn $get(set: crate::maps::Set) -> &'static $ty {
            if set.0 == 0 { &$a } else { &$b }
        }
    };
}
pub(crate) use per_set;

per_set! {
    /// cgroup id → workload id. Absent means unidentified (fail closed).
    pub fn cgroups -> HashMap<u64, u32>: CGROUP_WL_0, CGROUP_WL_1 = HashMap::pinned(65536, BPF_F_NO_PREALLOC)
}
per_set! {
    /// Destination prefix → segments covering it (most specific first).
    pub fn segments_v4 -> LpmTrie<[u8; 4], SegmentEntries>: SEG_V4_0, SEG_V4_1 = LpmTrie::pinned(65536, 0)
}
per_set! {
    pub fn segments_v6 -> LpmTrie<[u8; 16], SegmentEntries>: SEG_V6_0, SEG_V6_1 = LpmTrie::pinned(65536, 0)
}
per_set! {
    /// Per-segment settings, indexed by segment id.
    pub fn segment_info -> Array<SegmentInfo>: SEG_INFO_0, SEG_INFO_1 = Array::pinned(MAX_SEGMENTS + 1, 0)
}
per_set! {
    /// (workload, segment) → allowed port windows.
    pub fn allow -> HashMap<AllowKey, AllowValue>: ALLOW_0, ALLOW_1 =
        HashMap::pinned(65536, BPF_F_NO_PREALLOC)
}
per_set! {
    /// Global settings at index 0.
    pub fn settings -> Array<Settings>: SETTINGS_0, SETTINGS_1 = Array::pinned(1, 0)
}

/// sha256 of the policy file each set was filled from (index = set). No
/// hook reads it: a restarted agent compares it with its own policy to
/// know whether the pinned cgroup identities still name its workloads.
#[map]
pub static POLICY_TAG: Array<[u8; 32]> = Array::pinned(POLICY_SETS, 0);

/// Network decision counters, `Set::counter` slots of both sets.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(POLICY_SETS * COUNTER_SLOTS, 0);

/// Pipeline statistics (`STAT_*` indices), notably ring-buffer drops.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(STAT_SLOTS, 0);

/// Decision events. Size set by the agent at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(4 * 1024 * 1024, 0);

/// cgroup lifecycle events, separate so a flood of decisions can never
/// starve identity updates.
#[map]
pub static CGROUP_EVENTS: RingBuf = RingBuf::pinned(256 * 1024, 0);

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

/// Queued bytes at which a submit wakes the agent (set by the loader).
#[unsafe(no_mangle)]
static EVENTS_WAKEUP_BYTES: u32 = 64 * 1024;

/// Queued bytes at which allowed-decision records wake the agent.
#[inline(always)]
pub fn wakeup_bytes() -> u64 {
    // SAFETY: reading a static the loader may patch.
    unsafe { core::ptr::read_volatile(&EVENTS_WAKEUP_BYTES) as u64 }
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
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
