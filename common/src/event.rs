//! Records the kernel writes into ring buffers.
//!
//! Decision records (network, file, device) start with one
//! [`DecisionHeader`]; cgroup records (their own ring) with their kind.
//! The event ring is pinned and outlives an agent: after an upgrade the new
//! agent drains records the old programs wrote, so byte 0 tells the layout.

/// Kind tag: `DecisionHeader::kind` of decision records, byte 0 of cgroup
/// records (and of decision records written before the header had a version).
pub const EVENT_NET: u8 = 1;
pub const EVENT_CGROUP_MKDIR: u8 = 2;
pub const EVENT_CGROUP_RMDIR: u8 = 3;
pub const EVENT_FILE: u8 = 4;
pub const EVENT_DEVICE: u8 = 5;

/// Set in byte 0 of every versioned decision record. Records of the layout
/// before the version (version 0) carry their kind there, 1..=5, which never
/// has this bit: an old record cannot read as a new one, nor a new one as old.
pub const VERSION_FLAG: u8 = 0x80;
/// Byte 0 of a version-1 decision record.
pub const HEADER_V1: u8 = VERSION_FLAG | 1;
/// The header version the kernel programs of this build write.
pub const HEADER_VERSION: u8 = HEADER_V1;

/// What byte 0 of a ring record says about its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordLayout {
    /// A cgroup record, or a decision record of version 0: byte 0 is the kind.
    Unversioned { kind: u8 },
    /// A decision record with a [`DecisionHeader`] of this version (1..=127).
    Versioned { version: u8 },
}

impl RecordLayout {
    pub const fn of(first_byte: u8) -> Self {
        if first_byte & VERSION_FLAG == 0 {
            Self::Unversioned { kind: first_byte }
        } else {
            Self::Versioned { version: first_byte & !VERSION_FLAG }
        }
    }
}

/// The fields every decision record starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionHeader {
    /// `HEADER_VERSION` (see `VERSION_FLAG`). First: it decides how the
    /// rest is read. The agent sets 0 in records it read from version 0.
    pub version: u8,
    /// `EVENT_NET`, `EVENT_FILE` or `EVENT_DEVICE`.
    pub kind: u8,
    /// `VERDICT_*`.
    pub verdict: u8,
    /// Policy set (0 or 1) the decision read: names its ids.
    pub policy_set: u8,
    pub segment_id: u16,
    pub _pad: u16,
    pub workload_id: u32,
    pub rule_id: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

/// Network operations.
pub const OP_CONNECT: u8 = 1;
pub const OP_SENDMSG: u8 = 2;
/// A packet judged by the egress backstop.
pub const OP_PACKET: u8 = 3;
/// A raw or packet socket's creation (`cgroup/sock_create`).
pub const OP_SOCKET: u8 = 4;

/// Address families as in the kernel.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// A network decision. Fixed size so the ring buffer reservation is static.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetEvent {
    pub header: DecisionHeader,
    pub op: u8,
    /// `PROTO_TCP`, `PROTO_UDP` or `PROTO_OTHER`.
    pub proto: u8,
    /// `AF_INET` or `AF_INET6` (IPv4-mapped IPv6 is reported as `AF_INET`).
    pub family: u8,
    /// The IP protocol number of a backstop packet (0 from the sock_addr hooks).
    pub ip_proto: u8,
    /// Destination port, host order.
    pub dport: u16,
    pub _pad2: u16,
    /// Destination address, network order; IPv4 uses the first 4 bytes.
    pub daddr: [u8; 16],
}

/// Longest cgroup path (relative to the hierarchy root) carried in a record.
pub const CGROUP_PATH_MAX: usize = 256;

/// A cgroup was created or removed (from the cgroup tracepoints).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Hierarchy id from the tracepoint (cgroup v1 controllers fire too).
    pub hierarchy: u32,
    pub cgroup_id: u64,
    pub ktime_ns: u64,
    /// NUL-terminated path relative to the hierarchy root, e.g. `/a/b`.
    pub path: [u8; CGROUP_PATH_MAX],
}

// Layout checks: the kernel writes these, the agent reads them (possibly an
// agent of another build), so every offset is pinned down.
mod layout {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    const _: () = assert!(size_of::<DecisionHeader>() == 56);
    const _: () = assert!(align_of::<DecisionHeader>() == 8);
    const _: () = assert!(offset_of!(DecisionHeader, version) == 0);
    const _: () = assert!(offset_of!(DecisionHeader, kind) == 1);
    const _: () = assert!(offset_of!(DecisionHeader, verdict) == 2);
    const _: () = assert!(offset_of!(DecisionHeader, policy_set) == 3);
    const _: () = assert!(offset_of!(DecisionHeader, segment_id) == 4);
    const _: () = assert!(offset_of!(DecisionHeader, workload_id) == 8);
    const _: () = assert!(offset_of!(DecisionHeader, rule_id) == 12);
    const _: () = assert!(offset_of!(DecisionHeader, pid) == 16);
    const _: () = assert!(offset_of!(DecisionHeader, tgid) == 20);
    const _: () = assert!(offset_of!(DecisionHeader, ktime_ns) == 24);
    const _: () = assert!(offset_of!(DecisionHeader, cgroup_id) == 32);
    const _: () = assert!(offset_of!(DecisionHeader, comm) == 40);

    const _: () = assert!(size_of::<NetEvent>() == 80);
    const _: () = assert!(offset_of!(NetEvent, header) == 0);
    const _: () = assert!(offset_of!(NetEvent, op) == 56);
    const _: () = assert!(offset_of!(NetEvent, dport) == 60);
    const _: () = assert!(offset_of!(NetEvent, daddr) == 64);

    const _: () = assert!(size_of::<CgroupEvent>() == 24 + CGROUP_PATH_MAX);
    const _: () = assert!(offset_of!(CgroupEvent, path) == 24);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_zero_tells_layout() {
        // Every kind of the unversioned layout stays unversioned.
        for kind in [EVENT_NET, EVENT_CGROUP_MKDIR, EVENT_CGROUP_RMDIR, EVENT_FILE, EVENT_DEVICE] {
            assert_eq!(RecordLayout::of(kind), RecordLayout::Unversioned { kind });
        }
        assert_eq!(RecordLayout::of(HEADER_V1), RecordLayout::Versioned { version: 1 });
        assert_eq!(RecordLayout::of(0xff), RecordLayout::Versioned { version: 127 });
        assert_eq!(RecordLayout::of(VERSION_FLAG), RecordLayout::Versioned { version: 0 });
    }
}
