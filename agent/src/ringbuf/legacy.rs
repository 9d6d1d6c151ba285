//! Decision records of version 0: the layout before the header had a
//! version (byte 0 is the kind). Kernel programs of an earlier agent may
//! have left them in the pinned event ring; they are read into the current
//! types so an upgrade loses no decision.
use warden_common::{DecisionHeader, DeviceEvent, FILE_EVENT_COMPONENTS, FILE_EVENT_NAME_LEN, FileEvent, NetEvent};

/// Fields of a version-0 record that the header now holds.
struct Common {
    kind: u8,
    verdict: u8,
    policy_set: u8,
    segment_id: u16,
    workload_id: u32,
    rule_id: u32,
    pid: u32,
    tgid: u32,
    ktime_ns: u64,
    cgroup_id: u64,
    comm: [u8; 16],
}

impl Common {
    /// The same fields in their current places; `version` 0 says where
    /// they came from.
    fn header(self) -> DecisionHeader {
        DecisionHeader {
            version: 0,
            kind: self.kind,
            verdict: self.verdict,
            policy_set: self.policy_set,
            segment_id: self.segment_id,
            _pad: 0,
            workload_id: self.workload_id,
            rule_id: self.rule_id,
            pid: self.pid,
            tgid: self.tgid,
            ktime_ns: self.ktime_ns,
            cgroup_id: self.cgroup_id,
            comm: self.comm,
        }
    }
}

macro_rules! common {
    ($ev:expr) => {
        Common {
            kind: $ev.kind,
            verdict: $ev.verdict,
            policy_set: $ev.policy_set,
            segment_id: $ev.segment_id,
            workload_id: $ev.workload_id,
            rule_id: $ev.rule_id,
            pid: $ev.pid,
            tgid: $ev.tgid,
            ktime_ns: $ev.ktime_ns,
            cgroup_id: $ev.cgroup_id,
            comm: $ev.comm,
        }
    };
}

/// Version-0 network record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetEventV0 {
    pub kind: u8,
    pub op: u8,
    pub proto: u8,
    pub family: u8,
    pub verdict: u8,
    pub policy_set: u8,
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
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
}

/// Version-0 file record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEventV0 {
    pub kind: u8,
    pub op: u8,
    pub verdict: u8,
    pub write: u8,
    pub segment_id: u16,
    pub root_index: u16,
    pub components: u8,
    pub truncated: u8,
    pub policy_set: u8,
    pub _pad: [u8; 3],
    /// Implicit in version 0 (the kernel left it unwritten).
    pub _pad2: [u8; 2],
    pub workload_id: u32,
    pub rule_id: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub dev: u64,
    pub ino: u64,
    pub comm: [u8; 16],
    pub names: [[u8; FILE_EVENT_NAME_LEN]; FILE_EVENT_COMPONENTS],
}

/// Version-0 device record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceEventV0 {
    pub kind: u8,
    pub verdict: u8,
    pub access: u8,
    pub dev_type: u8,
    pub segment_id: u16,
    pub policy_set: u8,
    pub _pad: u8,
    pub workload_id: u32,
    pub rule_id: u32,
    pub pid: u32,
    pub tgid: u32,
    pub major: u32,
    pub minor: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

// The version-0 layouts exactly as the earlier kernel programs wrote them.
mod layout {
    use core::mem::{offset_of, size_of};

    use super::*;

    const _: () = assert!(size_of::<NetEventV0>() == 80);
    const _: () = assert!(offset_of!(NetEventV0, verdict) == 4);
    const _: () = assert!(offset_of!(NetEventV0, dport) == 6);
    const _: () = assert!(offset_of!(NetEventV0, workload_id) == 12);
    const _: () = assert!(offset_of!(NetEventV0, ktime_ns) == 32);
    const _: () = assert!(offset_of!(NetEventV0, daddr) == 48);
    const _: () = assert!(offset_of!(NetEventV0, comm) == 64);

    const _: () = assert!(size_of::<FileEventV0>() == 80 + FILE_EVENT_NAME_LEN * FILE_EVENT_COMPONENTS);
    const _: () = assert!(offset_of!(FileEventV0, segment_id) == 4);
    const _: () = assert!(offset_of!(FileEventV0, policy_set) == 10);
    const _: () = assert!(offset_of!(FileEventV0, workload_id) == 16);
    const _: () = assert!(offset_of!(FileEventV0, ktime_ns) == 32);
    const _: () = assert!(offset_of!(FileEventV0, dev) == 48);
    const _: () = assert!(offset_of!(FileEventV0, comm) == 64);
    const _: () = assert!(offset_of!(FileEventV0, names) == 80);

    const _: () = assert!(size_of::<DeviceEventV0>() == 64);
    const _: () = assert!(offset_of!(DeviceEventV0, policy_set) == 6);
    const _: () = assert!(offset_of!(DeviceEventV0, workload_id) == 8);
    const _: () = assert!(offset_of!(DeviceEventV0, major) == 24);
    const _: () = assert!(offset_of!(DeviceEventV0, ktime_ns) == 32);
    const _: () = assert!(offset_of!(DeviceEventV0, comm) == 48);
}

impl From<NetEventV0> for NetEvent {
    fn from(e: NetEventV0) -> Self {
        NetEvent {
            header: common!(e).header(),
            op: e.op,
            proto: e.proto,
            family: e.family,
            ip_proto: 0,
            dport: e.dport,
            _pad2: 0,
            daddr: e.daddr,
        }
    }
}

impl From<FileEventV0> for FileEvent {
    fn from(e: FileEventV0) -> Self {
        FileEvent {
            header: common!(e).header(),
            op: e.op,
            write: e.write,
            components: e.components,
            truncated: e.truncated,
            root_index: e.root_index,
            reason: warden_common::FILE_REASON_NONE,
            _pad: 0,
            dev: e.dev,
            ino: e.ino,
            names: e.names,
        }
    }
}

impl From<DeviceEventV0> for DeviceEvent {
    fn from(e: DeviceEventV0) -> Self {
        DeviceEvent {
            header: common!(e).header(),
            access: e.access,
            dev_type: e.dev_type,
            _pad: [0; 2],
            major: e.major,
            minor: e.minor,
            _pad2: 0,
        }
    }
}
