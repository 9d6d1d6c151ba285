//! Allocation-free reads of small /proc files on the decision path: one
//! openat on a pre-opened /proc fd, one read into a stack buffer, close.
use std::{
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

pub struct Proc {
    dir: OwnedFd,
    /// Open /proc/<tid>/<file> descriptors, re-read with pread: a busy
    /// thread costs one syscall per read instead of three. A descriptor of
    /// an exited thread fails (ESRCH) and is reopened, so a reused tid can
    /// never be answered from another task's file.
    cache: std::sync::Mutex<std::collections::HashMap<(i32, &'static str), OwnedFd>>,
}

const MAX_CACHED: usize = 4096;

impl Proc {
    pub fn open() -> std::io::Result<Self> {
        // SAFETY: plain open of a constant NUL-terminated path.
        let fd = unsafe { libc::open(c"/proc".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        Ok(Self { dir: unsafe { OwnedFd::from_raw_fd(fd) }, cache: Default::default() })
    }

    /// Reads `/proc/<tid>/<file>` into `buf`; returns the bytes read.
    pub fn read<'a>(&self, tid: i32, file: &'static str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = cache.get(&(tid, file)) {
            // SAFETY: buf is valid for its length; fd is open.
            let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Some(&buf[..n as usize]);
            }
            cache.remove(&(tid, file));
        }
        let fd = self.open_file(tid, file)?;
        // SAFETY: as above.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return None;
        }
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert((tid, file), fd);
        Some(&buf[..n as usize])
    }

    fn open_file(&self, tid: i32, file: &str) -> Option<OwnedFd> {
        let mut path = [0u8; 64];
        let mut w = &mut path[..];
        write!(w, "{tid}/{file}\0").ok()?;
        // SAFETY: `path` is NUL-terminated; dir is a valid directory fd.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        // SAFETY: a fresh fd we own.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Whether `tid` is a thread of this process (one faccessat, no allocation).
    pub fn is_own_thread(&self, tid: i32) -> bool {
        let mut path = [0u8; 48];
        let mut w = &mut path[..];
        if write!(w, "self/task/{tid}\0").is_err() {
            return false;
        }
        // SAFETY: `path` is NUL-terminated; dir is a valid directory fd.
        unsafe { libc::faccessat(self.dir.as_raw_fd(), path.as_ptr().cast(), libc::F_OK, 0) == 0 }
    }

    /// Process id of a thread (the `Tgid:` line of /proc/<tid>/status).
    pub fn tgid(&self, tid: i32) -> Option<u32> {
        let mut buf = [0u8; 4096];
        let text = std::str::from_utf8(self.read(tid, "status", &mut buf)?).ok()?;
        text.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
    }

    /// The cgroup v2 path of a thread (`0::` line of /proc/<tid>/cgroup).
    pub fn cgroup<'a>(&self, tid: i32, buf: &'a mut [u8]) -> Option<&'a str> {
        let text = std::str::from_utf8(self.read(tid, "cgroup", buf)?).ok()?;
        text.lines().find_map(|l| l.strip_prefix("0::"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_thread() {
        let p = Proc::open().unwrap();
        let me = nix::unistd::gettid().as_raw();
        let mut buf = [0u8; 4096];
        let cg = p.cgroup(me, &mut buf).expect("cgroup line").to_string();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(own.lines().any(|l| l == format!("0::{cg}")), "{cg} vs {own}");
        assert_eq!(p.tgid(me), Some(std::process::id()));
        assert!(p.is_own_thread(me));
        assert!(!p.is_own_thread(1), "pid 1 is not ours");
        let mut buf = [0u8; 256];
        assert!(p.read(me, "syscall", &mut buf).is_some());
        assert!(p.read(i32::MAX, "cgroup", &mut buf).is_none());
    }

    #[test]
    fn cached_descriptor_of_an_exited_thread_is_not_reused() {
        let p = Proc::open().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        let tid = rx.recv().unwrap();
        let mut buf = [0u8; 4096];
        assert!(p.read(tid, "cgroup", &mut buf).is_some(), "live thread, now cached");
        h.join().unwrap();
        // Its task is gone: the cached fd must fail and the read report None.
        assert!(p.read(tid, "cgroup", &mut buf).is_none(), "exited thread must not be answered");
    }
}
