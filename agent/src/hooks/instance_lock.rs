//! Whether an instance's agent lives, from the instance itself: the agent
//! holds an exclusive `flock` on its bpffs directory for its whole life.
//! `uninstall` and a second agent ask the lock, not a socket path, so no
//! flag can make them mistake a live agent for a dead one; the kernel drops
//! the lock when the agent dies, however it dies.
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

/// Held while it lives (the descriptor is close-on-exec: a helper process
/// the agent starts must not keep the instance "alive" after it).
#[derive(Debug)]
pub struct InstanceLock(#[allow(dead_code)] OwnedFd);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("an agent of instance {instance} is running{}", holder_text(*.pid))]
    Held { instance: String, pid: Option<u32> },
    #[error("locking {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn holder_text(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Takes the lock of the instance directory `dir` without waiting.
pub fn try_lock(dir: &Path) -> Result<InstanceLock, LockError> {
    let io = |source| LockError::Io { path: dir.display().to_string(), source };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| io(std::io::Error::other(e)))?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: flock on our open descriptor.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let instance = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(LockError::Held { instance, pid: holder(dir) });
        }
        return Err(io(e));
    }
    Ok(InstanceLock(fd))
}

/// Takes the lock, waiting up to `wait` for an agent that is exiting (a
/// restart's old process may still be detaching).
pub fn lock(dir: &Path, wait: Duration) -> Result<InstanceLock, LockError> {
    let deadline = Instant::now() + wait;
    loop {
        match try_lock(dir) {
            Err(LockError::Held { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The process holding the flock on `dir`, from /proc/locks (for messages).
pub fn holder(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&text, &want)
}

/// `/proc/locks` lines: `1: FLOCK  ADVISORY  WRITE 19057 00:28:2323959 0 EOF`
/// (waiters have a `->` after the number and are skipped).
fn holder_in(text: &str, dev_ino: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == dev_ino).then(|| f[4].parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 19057 00:28:2323959 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 7 00:28:2323959 0 EOF\n2: POSIX  ADVISORY  WRITE 88 00:28:5 0 EOF\n";
        assert_eq!(holder_in(text, "00:28:2323959"), Some(19057));
        assert_eq!(holder_in(text, "00:28:5"), None, "POSIX locks are not ours");
        assert_eq!(holder_in(text, "00:29:1"), None);
    }

    #[test]
    fn a_held_instance_names_its_holder_and_frees_on_drop() {
        // A real bpffs directory, like an instance's (tests run as root).
        crate::system::mounts::ensure_all().expect("bpffs");
        let dir = Path::new(crate::system::mounts::BPFFS).join(format!("warden-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = try_lock(&dir).expect("first lock");
        match try_lock(&dir) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        let t = Instant::now();
        assert!(matches!(lock(&dir, Duration::from_millis(300)), Err(LockError::Held { .. })));
        assert!(t.elapsed() >= Duration::from_millis(300), "waited for the holder");
        drop(held);
        let again = try_lock(&dir).expect("free once the holder let go");
        drop(again);
        std::fs::remove_dir(&dir).unwrap();
    }
}
