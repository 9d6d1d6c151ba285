//! Thin, checked wrappers over the fanotify syscalls and records.
use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

/// One permission event, parsed defensively from the kernel's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct PermEvent {
    pub mask: u64,
    /// File opened for the listener; its number names the event in the
    /// answer, so it must stay open until the event is answered.
    pub fd: RawFd,
    /// Thread id of the opener (FAN_REPORT_TID).
    pub tid: i32,
}

/// A permission event read from a group: its fd is owned (closed on drop).
#[derive(Debug)]
pub struct OwnedEvent {
    pub mask: u64,
    pub fd: OwnedFd,
    pub tid: i32,
}

const META_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

/// The records of a read buffer: each event's metadata and its bytes past
/// the metadata (info records). A malformed record ends the walk: nothing
/// after it is read, nothing is read past the buffer.
pub fn records(buf: &[u8]) -> impl Iterator<Item = (libc::fanotify_event_metadata, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if buf.len() - off < META_LEN {
            return None;
        }
        // SAFETY: at least META_LEN bytes remain; read_unaligned copes with alignment.
        let m: libc::fanotify_event_metadata = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
        let (len, meta) = (m.event_len as usize, m.metadata_len as usize);
        if m.vers != libc::FANOTIFY_METADATA_VERSION || len < META_LEN || len > buf.len() - off {
            return None;
        }
        let info = buf.get(off + meta.clamp(META_LEN, len)..off + len).unwrap_or_default();
        off += len;
        Some((m, info))
    })
}

/// Splits a read buffer into permission events. The caller answers every
/// fd it got, and the kernel's fd values are validated (negative = no fd,
/// e.g. queue overflow).
pub fn parse(buf: &[u8]) -> Vec<PermEvent> {
    records(buf).filter(|(m, _)| m.fd >= 0).map(|(m, _)| PermEvent { mask: m.mask, fd: m.fd, tid: m.pid }).collect()
}

pub struct Group {
    fd: OwnedFd,
}

impl Group {
    /// A content-class group (permission events) reporting thread ids.
    pub fn new() -> io::Result<Self> {
        let flags = libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_REPORT_TID;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor we own.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// A group received from elsewhere (the keeper, or inherited).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Answers the event read as `fd` (a number, possibly another
    /// process's: the kernel matches answers by number only).
    pub fn respond_raw(&self, fd: RawFd, allow: bool) -> io::Result<()> {
        let r = libc::fanotify_response { fd, response: if allow { libc::FAN_ALLOW } else { libc::FAN_DENY } };
        let len = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: writing a valid response struct.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&r as *const libc::fanotify_response).cast(), len) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Marks the whole filesystem holding `path` for open permission events:
    /// every mount of it (bind mounts included) is covered.
    pub fn mark_filesystem(&self, path: &Path) -> io::Result<()> {
        self.filesystem_mark(libc::FAN_MARK_ADD, path)
    }

    fn filesystem_mark(&self, op: libc::c_uint, path: &Path) -> io::Result<()> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))?;
        // SAFETY: valid fd and NUL-terminated path.
        let r = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                op | libc::FAN_MARK_FILESYSTEM,
                libc::FAN_OPEN_PERM,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Removes the filesystem mark `mark_filesystem` placed.
    pub fn unmark_filesystem(&self, path: &Path) -> io::Result<()> {
        self.filesystem_mark(libc::FAN_MARK_REMOVE, path)
    }

    /// Reads pending events; each event's fd is owned from here on.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Vec<OwnedEvent>> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let events = parse(&buf[..n as usize]).into_iter().map(|e| OwnedEvent {
            mask: e.mask,
            // SAFETY: the kernel installed this fd in our table for this
            // event just now (parse drops negative values); nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(e.fd) },
            tid: e.tid,
        });
        Ok(events.collect())
    }

    /// Answers one event. The kernel matches the answer to its pending
    /// event by fd number: `fd` must be the event's, still open.
    pub fn respond(&self, fd: BorrowedFd<'_>, allow: bool) -> io::Result<()> {
        self.respond_raw(fd.as_raw_fd(), allow)
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Fuzzing entry point for the record parser.
pub fn fuzz(buf: &[u8]) {
    let _ = parse(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fd: i32, pid: i32, len: u32) -> Vec<u8> {
        let m = libc::fanotify_event_metadata {
            event_len: len,
            vers: libc::FANOTIFY_METADATA_VERSION,
            reserved: 0,
            metadata_len: META_LEN as u16,
            mask: libc::FAN_OPEN_PERM,
            fd,
            pid,
        };
        // SAFETY: plain-data struct to bytes.
        let mut v =
            unsafe { std::slice::from_raw_parts((&m as *const libc::fanotify_event_metadata).cast::<u8>(), META_LEN) }
                .to_vec();
        v.resize(len.max(META_LEN as u32) as usize, 0);
        v
    }

    #[test]
    fn parses_and_bounds_records() {
        let mut buf = record(5, 100, META_LEN as u32);
        buf.extend(record(6, 101, META_LEN as u32 + 8)); // with trailing info
        buf.extend(record(-1, 0, META_LEN as u32)); // overflow marker: no fd
        let ev = parse(&buf);
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[1].fd, ev[1].tid), (6, 101));
        // Length beyond the buffer or below the header: stop, never overrun.
        assert!(parse(&record(7, 1, 4096)[..META_LEN + 8]).is_empty());
        assert!(parse(&record(7, 1, 3)).is_empty());
        assert!(parse(&buf[..META_LEN - 1]).is_empty());
    }
}
