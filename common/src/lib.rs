//! Types shared by the kernel programs (`ebpf/`) and the agent (`agent/`).
//!
//! Every type here is `#[repr(C)]`, has explicit padding and a size checked at
//! compile time, so the kernel and userspace layouts can never drift apart.
//! With the `user` feature the types implement `aya::Pod` and can be used as
//! map keys and values by the agent.
#![cfg_attr(not(test), no_std)]

pub mod device;
pub mod event;
pub mod file;
pub mod map_names;
pub mod net;
pub mod verdict;

pub use device::*;
pub use event::*;
pub use file::*;
pub use net::*;
pub use verdict::*;

/// Workload id meaning "no identity": the cgroup is not (yet) mapped.
/// It never gets access to a protected segment (fail closed).
pub const WORKLOAD_UNIDENTIFIED: u32 = 0;

/// Most workloads a policy may define (ids 1..=MAX_WORKLOADS).
pub const MAX_WORKLOADS: u32 = 4096;

/// The policy maps exist twice: hooks read set `POLICY_SET[0] & 1`, the
/// agent fills the other one and then flips that word, so a reload switches
/// the whole policy in one store (no instant with half of each).
pub const POLICY_SETS: u32 = 2;

/// Counter slots of one policy set: `workload_id * VERDICT_SLOTS + verdict`,
/// offset by `set * COUNTER_SLOTS` in the counter arrays.
pub const COUNTER_SLOTS: u32 = (MAX_WORKLOADS + 1) * VERDICT_SLOTS;

/// Index of a decision counter (`COUNTERS`, `FILE_COUNTERS`,
/// `DEVICE_COUNTERS`): the kernel bumps it, the agent sums and zeroes it.
#[inline(always)]
pub const fn counter_slot(set: u8, workload_id: u32, verdict: u8) -> u32 {
    set as u32 * COUNTER_SLOTS + workload_id * VERDICT_SLOTS + verdict as u32
}

// The last slot of the last set is the last element of the counter arrays.
const _: () = assert!(
    counter_slot(POLICY_SETS as u8 - 1, MAX_WORKLOADS, VERDICT_SLOTS as u8 - 1) == POLICY_SETS * COUNTER_SLOTS - 1
);

/// Segment id meaning "destination is in no protected segment".
pub const SEGMENT_NONE: u16 = 0;

/// Most segments a policy may define (ids 1..=MAX_SEGMENTS).
pub const MAX_SEGMENTS: u32 = 4096;

/// Rule id used when a decision was made by the default action, not a rule.
pub const RULE_DEFAULT: u32 = 0;

/// Verdicts. Stored as `u8` in events and counters.
pub const VERDICT_ALLOWED: u8 = 1;
pub const VERDICT_DENIED: u8 = 2;
pub const VERDICT_AUDITED: u8 = 3;
/// Counter slots per workload: index by verdict (slot 0 unused).
pub const VERDICT_SLOTS: u32 = 4;

/// Modes of a rule or segment, as written into maps.
pub const MODE_ENFORCE: u8 = 0;
pub const MODE_AUDIT: u8 = 1;

/// Default action for destinations outside every segment.
pub const DEFAULT_ALLOW: u8 = 0;
pub const DEFAULT_DENY: u8 = 1;

/// Protocol bits used in masks.
pub const PROTO_TCP: u8 = 1;
pub const PROTO_UDP: u8 = 2;
/// Every other IP protocol (ICMP, raw IP, SCTP...). It has no port: it
/// matches only windows open on every port.
pub const PROTO_OTHER: u8 = 4;
pub const PROTO_ANY: u8 = PROTO_TCP | PROTO_UDP | PROTO_OTHER;

/// Indices into the `STATS` per-CPU array.
pub const STAT_EVENTS: u32 = 0;
pub const STAT_EVENTS_DROPPED: u32 = 1;
pub const STAT_CGROUP_EVENTS: u32 = 2;
pub const STAT_CGROUP_EVENTS_DROPPED: u32 = 3;
pub const STAT_DECISIONS: u32 = 4;
/// Of `STAT_EVENTS_DROPPED`: denies and audits.
pub const STAT_DENIES_DROPPED: u32 = 5;
/// Allowed decisions not queued: the ring was over half full, and that
/// half is kept for denies.
pub const STAT_ALLOWED_SHED: u32 = 6;
/// Packets the egress backstop dropped.
pub const STAT_BACKSTOP_DROPS: u32 = 7;
pub const STAT_SLOTS: u32 = 8;

/// Global settings written by the agent into the `SETTINGS` array (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `DEFAULT_ALLOW` or `DEFAULT_DENY` for non-segment destinations.
    pub default_action: u8,
    /// Mode used for default-action denies (`MODE_ENFORCE`/`MODE_AUDIT`).
    pub default_mode: u8,
    /// Emit an event for flows allowed to non-segment destinations (noisy).
    pub log_unprotected: u8,
    /// Refuse raw and packet sockets without a grant (`SOCKET_GRANTS`): on
    /// when the policy has network segments, which such sockets would
    /// otherwise reach around every hook.
    pub guard_sockets: u8,
    pub _pad: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<Settings>() == 8);

#[cfg(feature = "user")]
#[allow(clippy::undocumented_unsafe_blocks, reason = "one SAFETY comment covers every impl")]
mod pod {
    use super::*;
    // SAFETY: all types are repr(C), Copy, have no implicit padding and every
    // bit pattern is a valid value.
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for net::SegmentEntries {}
    unsafe impl aya::Pod for net::SegmentInfo {}
    unsafe impl aya::Pod for net::SocketGrant {}
    unsafe impl aya::Pod for net::AllowKey {}
    unsafe impl aya::Pod for net::AllowValue {}
    unsafe impl aya::Pod for net::Ipv4Key {}
    unsafe impl aya::Pod for net::Ipv6Key {}
    unsafe impl aya::Pod for file::InodeKey {}
    unsafe impl aya::Pod for file::FileAllowValue {}
    unsafe impl aya::Pod for file::EscapedValue {}
    unsafe impl aya::Pod for file::Located {}
    unsafe impl aya::Pod for device::DeviceKey {}
    unsafe impl aya::Pod for device::DeviceSegment {}
    unsafe impl aya::Pod for device::DeviceAllowValue {}
    unsafe impl aya::Pod for device::GpuSet {}
}
