//! Decodes kernel records. Input comes from the kernel, so it is still
//! checked: wrong sizes and unknown kinds are rejected, never trusted.
use warden_common::{
    CgroupEvent, DeviceEvent, EVENT_CGROUP_MKDIR, EVENT_CGROUP_RMDIR, EVENT_DEVICE, EVENT_FILE, EVENT_NET, FileEvent,
    NetEvent,
};

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
    let kind = *bytes.first().ok_or(DecodeError::Empty)?;
    match kind {
        EVENT_NET => read_exact::<NetEvent>(bytes, kind).map(Record::Net),
        EVENT_FILE => read_exact::<FileEvent>(bytes, kind).map(|e| Record::File(Box::new(e))),
        EVENT_DEVICE => read_exact::<DeviceEvent>(bytes, kind).map(Record::Device),
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
    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }.to_vec()
    }

    #[test]
    fn net_round_trip() {
        let ev = NetEvent { kind: EVENT_NET, dport: 443, workload_id: 7, cgroup_id: 99, ..Default::default() };
        assert_eq!(decode(&bytes_of(&ev)), Ok(Record::Net(ev)));
    }

    #[test]
    fn device_round_trip() {
        let ev = DeviceEvent { kind: EVENT_DEVICE, major: 195, minor: 3, access: 6, ..Default::default() };
        assert_eq!(decode(&bytes_of(&ev)), Ok(Record::Device(ev)));
        assert_eq!(decode(&bytes_of(&ev)[..63]), Err(DecodeError::Size { kind: EVENT_DEVICE, got: 63, want: 64 }));
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
        assert_eq!(decode(&[200; 80]), Err(DecodeError::Kind(200)));
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
            let buf: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            fuzz(&buf);
        }
    }
}
