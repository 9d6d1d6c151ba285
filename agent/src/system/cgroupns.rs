//! The host's cgroup namespace. A container runs in a cgroup namespace of
//! its own (containerd and CRI-O on cgroup v2), where /proc/<pid>/cgroup
//! names every cgroup outside the container's own by climbing out of it
//! (`/../../kubepods.slice/…`) and the mounted hierarchy's root reads as
//! `/../..`: paths that cannot be placed under the cgroup root. Entering
//! the host's namespace (hostPID: PID 1's) makes them the hierarchy's own.
//! Per thread: done first thing, before any thread starts.
use std::{os::fd::AsRawFd, path::Path, sync::OnceLock};

/// Where the host's cgroup namespace is (the test suite points it at its
/// own, having started the agent in a private one).
pub const HOST_NS_ENV: &str = "WARDEN_HOST_CGROUPNS";
const HOST_NS: &str = "/proc/1/ns/cgroup";

static STATE: OnceLock<String> = OnceLock::new();

/// What this process's cgroup view is, for status: `host`, `entered the
/// host's`, or why it stayed private.
pub fn state() -> &'static str {
    STATE.get().map(String::as_str).unwrap_or("host")
}

/// Whether this process's cgroup namespace is not the host's (`host_ns`):
/// another namespace, where it can tell, or a cgroup2 mount whose root lies
/// outside this namespace.
fn private(host_ns: &str) -> bool {
    let ns = |p: &str| std::fs::read_link(p).ok();
    if let (Some(mine), Some(host)) = (ns("/proc/self/ns/cgroup"), ns(host_ns)) {
        return mine != host;
    }
    let Ok(mounts) = super::mountinfo::current() else { return false };
    super::mountinfo::cgroup2(&mounts).is_some_and(|m| m.root.split('/').any(|c| c == ".."))
}

/// Enters the host's cgroup namespace when this one is private. Call before
/// any thread exists: a namespace is a thread's.
pub fn enter_host() {
    let path = std::env::var(HOST_NS_ENV).unwrap_or_else(|_| HOST_NS.into());
    if !private(&path) {
        let _ = STATE.set("host".into());
        return;
    }
    let result = std::fs::File::open(Path::new(&path)).and_then(|ns| {
        // SAFETY: setns on a namespace descriptor we own; this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWCGROUP) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    let state = match result {
        Ok(()) if !private(&path) => "entered the host's".to_string(),
        Ok(()) => format!("private: {path} is private too (processes outside this container are unidentified)"),
        Err(e) => format!("private: cannot enter {path}: {e} (processes outside this container are unidentified)"),
    };
    let _ = STATE.set(state);
}
