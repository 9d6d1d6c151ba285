//! Decodes kernel records. Input comes from the kernel, so it is still
//! checked: wrong sizes, unknown kinds and versions are rejected, never
//! trusted (the caller counts them as decode errors, shown by status).
//!
//! Byte 0 tells the layout (`RecordLayout`): decision records of the
//! current header version, or of version 0 (before the header had one; an
//! earlier agent's programs may have left them in the pinned ring), and
//! cgroup records. A decision record of an unknown (newer) version is
//! dropped, never read with the wrong layout.
use warden_common::{
    CgroupEvent, DecisionHeader, DeviceEvent, EVENT_CGROUP_MKDIR, EVENT_CGROUP_RMDIR, EVENT_DEVICE, EVENT_FILE,
    EVENT_NET, FileEvent, HEADER_V1, NetEvent, RecordLayout,
};

use super::legacy::{DeviceEventV0, FileEventV0, NetEventV0};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Net(NetEvent),
    File(Box<FileEvent>),
    Device(DeviceEvent),
    CgroupMkdir { cgroup_id: u64, hierarchy: u32, ktime_ns: u64, path: String },
    CgroupRmdir { cgroup_id: u64, hierarchy: u32, path: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record of kind {kind} has {got} bytes, expected {want}")]
    Size { kind: u8, got: usize, want: usize },
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("decision record of unknown header version {0}")]
    Version(u8),
}

/// Reads a `T` from the start of `bytes` if the length is exactly right.
fn read_exact<T: Copy>(bytes: &[u8], kind: u8) -> Result<T, DecodeError> {
    let want = core::mem::size_of::<T>();
    if bytes.len() != want {
        return Err(DecodeError::Size { kind, got: bytes.len(), want });
    }
    // SAFETY: length checked; T is a repr(C) plain-data type for which every
    // bit pattern is valid; read_unaligned copes with any alignment.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    match RecordLayout::of(first) {
        RecordLayout::Versioned { .. } if first == HEADER_V1 => decode_v1(bytes),
        RecordLayout::Versioned { version } => Err(DecodeError::Version(version)),
        RecordLayout::Unversioned { kind } => decode_unversioned(bytes, kind),
    }
}

/// A decision record with a version-1 header: the kind is in the header.
fn decode_v1(bytes: &[u8]) -> Result<Record, DecodeError> {
    let kind = bytes.get(core::mem::offset_of!(DecisionHeader, kind)).copied().ok_or(DecodeError::Size {
        kind: 0,
        got: bytes.len(),
        want: core::mem::size_of::<DecisionHeader>(),
    })?;
    match kind {
        EVENT_NET => read_exact::<NetEvent>(bytes, kind).map(Record::Net),
        EVENT_FILE => read_exact::<FileEvent>(bytes, kind).map(|e| Record::File(Box::new(e))),
        EVENT_DEVICE => read_exact::<DeviceEvent>(bytes, kind).map(Record::Device),
        other => Err(DecodeError::Kind(other)),
    }
}

/// Cgroup records, and decision records of version 0.
fn decode_unversioned(bytes: &[u8], kind: u8) -> Result<Record, DecodeError> {
    match kind {
        EVENT_NET => read_exact::<NetEventV0>(bytes, kind).map(|e| Record::Net(e.into())),
        EVENT_FILE => read_exact::<FileEventV0>(bytes, kind).map(|e| Record::File(Box::new(e.into()))),
        EVENT_DEVICE => read_exact::<DeviceEventV0>(bytes, kind).map(|e| Record::Device(e.into())),
        EVENT_CGROUP_MKDIR | EVENT_CGROUP_RMDIR => {
            let ev: CgroupEvent = read_exact(bytes, kind)?;
            let path = c_string(&ev.path);
            Ok(if kind == EVENT_CGROUP_MKDIR {
                Record::CgroupMkdir { cgroup_id: ev.cgroup_id, hierarchy: ev.hierarchy, ktime_ns: ev.ktime_ns, path }
            } else {
                Record::CgroupRmdir { cgroup_id: ev.cgroup_id, hierarchy: ev.hierarchy, path }
            })
        }
        other => Err(DecodeError::Kind(other)),
    }
}

/// Bytes up to the first NUL, lossily as UTF-8.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Entry point for fuzzing: any input must decode or error, never panic.
pub fn fuzz(bytes: &[u8]) {
    let _ = decode(bytes);
}

#[cfg(test)]
mod tests {
    use warden_common::{DEV_ACC_READ, DEV_ACC_WRITE, FILE_EVENT_COMPONENTS, FILE_EVENT_NAME_LEN, HEADER_VERSION};

    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }.to_vec()
    }

    fn header(kind: u8) -> DecisionHeader {
        DecisionHeader {
            version: HEADER_VERSION,
            kind,
            verdict: 2,
            policy_set: 1,
            segment_id: 3,
            _pad: 0,
            workload_id: 7,
            rule_id: 9,
            pid: 11,
            tgid: 10,
            ktime_ns: 12345,
            cgroup_id: 99,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    /// The header a version-0 record with `header(kind)`'s values reads as.
    fn from_v0(kind: u8) -> DecisionHeader {
        DecisionHeader { version: 0, ..header(kind) }
    }

    #[test]
    fn net_round_trip() {
        let ev = NetEvent { header: header(EVENT_NET), dport: 443, op: 1, proto: 1, family: 2, ..Default::default() };
        assert_eq!(decode(&bytes_of(&ev)), Ok(Record::Net(ev)));
        assert_eq!(decode(&bytes_of(&ev)[..79]), Err(DecodeError::Size { kind: EVENT_NET, got: 79, want: 80 }));
    }

    #[test]
    fn device_round_trip() {
        let ev = DeviceEvent { header: header(EVENT_DEVICE), major: 195, minor: 3, access: 6, ..Default::default() };
        assert_eq!(decode(&bytes_of(&ev)), Ok(Record::Device(ev)));
        assert_eq!(decode(&bytes_of(&ev)[..71]), Err(DecodeError::Size { kind: EVENT_DEVICE, got: 71, want: 72 }));
    }

    fn names() -> [[u8; FILE_EVENT_NAME_LEN]; FILE_EVENT_COMPONENTS] {
        let mut names = [[0u8; FILE_EVENT_NAME_LEN]; FILE_EVENT_COMPONENTS];
        names[0][..5].copy_from_slice(b"x.bin");
        names[1][..3].copy_from_slice(b"sub");
        names
    }

    #[test]
    fn file_round_trip() {
        let ev = FileEvent {
            header: header(EVENT_FILE),
            op: 1,
            write: 1,
            components: 2,
            truncated: 0,
            root_index: 4,
            reason: 0,
            _pad: 0,
            dev: 0x800001,
            ino: 77,
            names: names(),
        };
        assert_eq!(decode(&bytes_of(&ev)), Ok(Record::File(Box::new(ev))));
    }

    #[test]
    fn version_0_records_read_as_current() {
        let h = header(0);
        let net = NetEventV0 {
            kind: EVENT_NET,
            op: 2,
            proto: 2,
            family: 10,
            verdict: h.verdict,
            policy_set: h.policy_set,
            dport: 53,
            segment_id: h.segment_id,
            workload_id: h.workload_id,
            rule_id: h.rule_id,
            pid: h.pid,
            tgid: h.tgid,
            ktime_ns: h.ktime_ns,
            cgroup_id: h.cgroup_id,
            daddr: [0xfd; 16],
            comm: h.comm,
            ..Default::default()
        };
        let want = NetEvent {
            header: from_v0(EVENT_NET),
            op: 2,
            proto: 2,
            family: 10,
            dport: 53,
            daddr: [0xfd; 16],
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&net)), Ok(Record::Net(want)));

        let file = FileEventV0 {
            kind: EVENT_FILE,
            op: 3,
            verdict: h.verdict,
            write: 1,
            segment_id: h.segment_id,
            root_index: 5,
            components: 2,
            truncated: 1,
            policy_set: h.policy_set,
            _pad: [0; 3],
            // Unwritten by the kernel: anything.
            _pad2: [0xaa; 2],
            workload_id: h.workload_id,
            rule_id: h.rule_id,
            pid: h.pid,
            tgid: h.tgid,
            ktime_ns: h.ktime_ns,
            cgroup_id: h.cgroup_id,
            dev: 0x800001,
            ino: 78,
            comm: h.comm,
            names: names(),
        };
        let want = FileEvent {
            header: from_v0(EVENT_FILE),
            op: 3,
            write: 1,
            components: 2,
            truncated: 1,
            root_index: 5,
            reason: 0,
            _pad: 0,
            dev: 0x800001,
            ino: 78,
            names: names(),
        };
        assert_eq!(decode(&bytes_of(&file)), Ok(Record::File(Box::new(want))));

        let dev = DeviceEventV0 {
            kind: EVENT_DEVICE,
            verdict: h.verdict,
            access: DEV_ACC_READ | DEV_ACC_WRITE,
            dev_type: 2,
            segment_id: h.segment_id,
            policy_set: h.policy_set,
            _pad: 0,
            workload_id: h.workload_id,
            rule_id: h.rule_id,
            pid: h.pid,
            tgid: h.tgid,
            major: 195,
            minor: 3,
            ktime_ns: h.ktime_ns,
            cgroup_id: h.cgroup_id,
            comm: h.comm,
        };
        let want = DeviceEvent {
            header: from_v0(EVENT_DEVICE),
            access: DEV_ACC_READ | DEV_ACC_WRITE,
            dev_type: 2,
            major: 195,
            minor: 3,
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&dev)), Ok(Record::Device(want)));
        assert_eq!(decode(&bytes_of(&dev)[..63]), Err(DecodeError::Size { kind: EVENT_DEVICE, got: 63, want: 64 }));
    }

    #[test]
    fn unknown_versions_are_dropped() {
        // A newer header version, even of a size and kind this agent knows.
        let mut raw = bytes_of(&NetEvent { header: header(EVENT_NET), ..Default::default() });
        raw[0] = warden_common::VERSION_FLAG | 2;
        assert_eq!(decode(&raw), Err(DecodeError::Version(2)));
        raw[0] = warden_common::VERSION_FLAG;
        assert_eq!(decode(&raw), Err(DecodeError::Version(0)));
        // Version 1 of an unknown kind, and a cgroup kind in a header.
        raw[0] = HEADER_V1;
        raw[1] = 77;
        assert_eq!(decode(&raw), Err(DecodeError::Kind(77)));
        raw[1] = EVENT_CGROUP_MKDIR;
        assert_eq!(decode(&raw), Err(DecodeError::Kind(EVENT_CGROUP_MKDIR)));
        assert!(matches!(decode(&[HEADER_V1]), Err(DecodeError::Size { got: 1, .. })));
        assert_eq!(decode(&[HEADER_V1, EVENT_FILE]), Err(DecodeError::Size { kind: EVENT_FILE, got: 2, want: 464 }));
    }

    #[test]
    fn cgroup_record_path() {
        let mut ev = CgroupEvent {
            kind: EVENT_CGROUP_MKDIR,
            _pad: [0; 3],
            hierarchy: 0,
            cgroup_id: 5,
            ktime_ns: 1,
            path: [0; warden_common::CGROUP_PATH_MAX],
        };
        ev.path[..6].copy_from_slice(b"/a/b/c");
        match decode(&bytes_of(&ev)).unwrap() {
            Record::CgroupMkdir { cgroup_id, path, .. } => {
                assert_eq!(cgroup_id, 5);
                assert_eq!(path, "/a/b/c");
            }
            r => panic!("unexpected {r:?}"),
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[EVENT_NET, 0, 0]), Err(DecodeError::Size { kind: EVENT_NET, got: 3, want: 80 }));
        assert_eq!(decode(&[100; 80]), Err(DecodeError::Kind(100)));
        assert_eq!(decode(&[0; 80]), Err(DecodeError::Kind(0)));
        // High bit set: a header version this agent does not know.
        assert_eq!(decode(&[200; 80]), Err(DecodeError::Version(200 & 0x7f)));
        // Unterminated path: still decodes, bounded by the array.
        let mut raw = vec![0u8; core::mem::size_of::<CgroupEvent>()];
        raw[0] = EVENT_CGROUP_RMDIR;
        raw[24..].fill(b'x');
        assert!(matches!(decode(&raw), Ok(Record::CgroupRmdir { path, .. }) if path.len() == 256));
    }

    #[test]
    fn fuzz_smoke() {
        // Cheap in-tree fuzz: pseudo-random lengths and contents never panic.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 400) as usize;
            let mut buf: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            fuzz(&buf);
            // Garbage behind a valid version-1 header start.
            if buf.len() >= 2 {
                buf[0] = HEADER_V1;
                buf[1] = (x % 6) as u8;
                fuzz(&buf);
            }
        }
    }
}
