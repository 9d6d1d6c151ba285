//! Records the kernel writes into ring buffers.

/// Kind tag, the first byte of every record.
pub const EVENT_NET: u8 = 1;
pub const EVENT_CGROUP_MKDIR: u8 = 2;
pub const EVENT_CGROUP_RMDIR: u8 = 3;
pub const EVENT_FILE: u8 = 4;
pub const EVENT_DEVICE: u8 = 5;

/// Network operations.
pub const OP_CONNECT: u8 = 1;
pub const OP_SENDMSG: u8 = 2;

/// Address families as in the kernel.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// A network decision. Fixed size so the ring buffer reservation is static.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetEvent {
    pub kind: u8,
    pub op: u8,
    /// `PROTO_TCP` or `PROTO_UDP` (0 if neither).
    pub proto: u8,
    /// `AF_INET` or `AF_INET6` (IPv4-mapped IPv6 is reported as `AF_INET`).
    pub family: u8,
    pub verdict: u8,
    /// Policy set (0 or 1) the decision read: names its ids.
    pub policy_set: u8,
    /// Destination port, host order.
    pub dport: u16,
    pub segment_id: u16,
    pub _pad2: u16,
    pub workload_id: u32,
    pub rule_id: u32,
    pub pid: u32,
    pub tgid: u32,
    pub _pad3: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    /// Destination address, network order; IPv4 uses the first 4 bytes.
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<NetEvent>() == 80);

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

const _: () = assert!(core::mem::size_of::<CgroupEvent>() == 24 + CGROUP_PATH_MAX);
