//! Maps shared between the hooks. Names are the contract with the agent
//! (`warden_common::map_names`, checked against this object by an agent
//! test), sizes can be overridden by the loader.
//!
//! Policy maps exist twice, `NAME_0` and `NAME_1` (see `POLICY_SETS`): a
//! hook reads `POLICY_SET` once and takes every map from that set, so one
//! decision never mixes two policies and a reload is one flip of that word.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use warden_common::{
    AllowKey, AllowValue, COUNTER_SLOTS, DEFAULT_ALLOW, MAX_SEGMENTS, MAX_WORKLOADS, POLICY_SETS, STAT_SLOTS,
    SUMMARY_WORDS, SegmentEntries, SegmentInfo, Settings, SocketGrant, counter_slot, summary_clear,
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
        counter_slot(self.0, workload, verdict)
    }

    /// The segment's mode for denies without a rule (enforce if unset).
    #[inline(always)]
    pub fn segment_mode(self, segment: u16) -> u8 {
        segment_info(self).get(segment as u32).map(|i| i.mode).unwrap_or(0)
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
    /// Raw and packet sockets each workload may create, by workload id
    /// (index 0: unidentified cgroups).
    pub fn socket_grants -> Array<SocketGrant>: SOCKET_GRANTS_0, SOCKET_GRANTS_1 =
        Array::pinned(MAX_WORKLOADS + 1, 0)
}
per_set! {
    /// The /16s (by an address's first 16 bits) no segment prefix reaches
    /// into, one bit each (`warden_common::summary_clear`).
    pub fn clear_v4 -> Array<u64>: CLEAR_V4_0, CLEAR_V4_1 = Array::pinned(SUMMARY_WORDS, 0)
}
per_set! {
    pub fn clear_v6 -> Array<u64>: CLEAR_V6_0, CLEAR_V6_1 = Array::pinned(SUMMARY_WORDS, 0)
}

/// The fast path for destinations in no segment (most traffic): the /16 is
/// clear of segment prefixes, the default action allows and nothing asks
/// for an event. One array word instead of the prefix and identity lookups.
#[inline(always)]
pub fn unprotected_fast(set: Set, v6: bool, top16: u16) -> bool {
    let words = if v6 { clear_v6(set) } else { clear_v4(set) };
    let Some(w) = words.get(u32::from(top16 >> 6)) else { return false };
    if !summary_clear(*w, top16) {
        return false;
    }
    matches!(settings(set).get(0), Some(s) if s.default_action == DEFAULT_ALLOW && s.log_unprotected == 0)
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

/// When the backstop and the socket hook last reported each key
/// (`record::due`); least recently used keys go first.
#[map]
pub static REPORTED: LruHashMap<u64, u64> = LruHashMap::pinned(4096, 0);

/// Sockets whose connect or send to a segment was audited by a sock_addr
/// hook (socket cookie → `net::audited_key`): the backstop does not count their
/// packets to that segment a second time.
#[map]
pub static AUDITED_SOCKETS: LruHashMap<u64, u32> = LruHashMap::pinned(16384, 0);

/// Network decision counters, `Set::counter` slots of both sets.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(POLICY_SETS * COUNTER_SLOTS, 0);

/// Pipeline statistics (`STAT_*` indices), notably ring-buffer drops.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(STAT_SLOTS, 0);

/// Decision events. Size set by the agent at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(4 * 1024 * 1024, 0);

/// The node's event sequence (last number given). Only the agent uses it,
/// through a shared mapping; pinned so the next agent continues it.
#[map]
pub static EVENT_SEQ: Array<u64> = Array::pinned(1, BPF_F_MMAPABLE);

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
