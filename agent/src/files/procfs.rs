//! Allocation-free reads of small /proc files on the decision path: one
//! openat on a pre-opened /proc fd, one read into a stack buffer, close.
use std::{
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

pub struct Proc {
    dir: OwnedFd,
}

impl Proc {
    pub fn open() -> std::io::Result<Self> {
        // SAFETY: plain open of a constant NUL-terminated path.
        let fd = unsafe { libc::open(c"/proc".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        Ok(Self { dir: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Reads `/proc/<tid>/<file>` into `buf`; returns the bytes read.
    pub fn read<'a>(&self, tid: i32, file: &str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let mut path = [0u8; 64];
        let mut w = &mut path[..];
        write!(w, "{tid}/{file}\0").ok()?;
        // SAFETY: `path` is NUL-terminated; dir is a valid directory fd.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: buf is valid for its length; fd is closed right after.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        unsafe { libc::close(fd) };
        (n >= 0).then(|| &buf[..n as usize])
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
        assert_eq!(Some(cg), crate::files::cgroup_path_of(me));
        let mut buf = [0u8; 256];
        assert!(p.read(me, "syscall", &mut buf).is_some());
        assert!(p.read(i32::MAX, "cgroup", &mut buf).is_none());
    }
}
