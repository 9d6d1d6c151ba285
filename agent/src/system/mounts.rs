//! Mounts the pseudo-filesystems the agent needs when the host has not.
use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::{SystemError, mountinfo};

pub const BPFFS: &str = "/sys/fs/bpf";
pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const SECURITYFS: &str = "/sys/kernel/security";

/// Ensures a filesystem of `fstype` is mounted at `target`.
pub fn ensure(fstype: &'static str, source: &str, target: &str) -> Result<bool, SystemError> {
    let mounts =
        mountinfo::current().map_err(|source| SystemError::Read { path: "/proc/self/mountinfo".into(), source })?;
    if mounts.iter().any(|m| m.fstype == fstype && m.mount_point == Path::new(target)) {
        return Ok(false);
    }
    std::fs::create_dir_all(target).map_err(|source| SystemError::Mount {
        fs: fstype,
        target: target.into(),
        source,
    })?;
    mount(Some(source), target, Some(fstype), MsFlags::empty(), None::<&str>).map_err(|e| SystemError::Mount {
        fs: fstype,
        target: target.into(),
        source: std::io::Error::from(e),
    })?;
    tracing::info!(fstype, target, "mounted missing filesystem");
    Ok(true)
}

/// Whether `dir` is on the host's bpffs: the one the host's PID 1 has at
/// `BPFFS` (its mountinfo names the instance by device; a bpffs mounted
/// inside a pod's own mount namespace is another instance, and its pins,
/// with the programs they hold, go with the pod). Needs the host's PID
/// namespace (the chart's `hostPID`); `Err` when it cannot be told.
pub fn on_hosts_bpffs(dir: &Path) -> Result<bool, String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?.dev();
    let ours = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let init = std::fs::read_to_string("/proc/1/mountinfo").map_err(|e| format!("/proc/1/mountinfo: {e}"))?;
    Ok(bpffs_device(&init, BPFFS).is_some_and(|d| d == ours))
}

/// The device (`M:m`) of the bpffs mounted at `at` in mountinfo text.
fn bpffs_device<'a>(mountinfo: &'a str, at: &str) -> Option<&'a str> {
    mountinfo.lines().rev().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let fstype = f.iter().skip_while(|x| **x != "-").nth(1)?;
        (f.len() > 4 && f[4] == at && *fstype == "bpf").then_some(f[2])
    })
}

/// bpffs (for pins, later) and tracefs (aya's tracepoint attach needs it).
pub fn ensure_all() -> Result<(), SystemError> {
    ensure("bpf", "bpf", BPFFS)?;
    ensure("tracefs", "nodev", TRACEFS)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_bpffs_device_in_mountinfo() {
        let text = "23 1 0:21 / /sys rw - sysfs sysfs rw\n46 23 0:40 / /sys/fs/bpf rw,relatime shared:9 - bpf bpf rw\n\
                    90 46 0:55 / /sys/fs/bpf rw - bpf bpf rw\n";
        // The last mount at a point is the one in effect.
        assert_eq!(super::bpffs_device(text, "/sys/fs/bpf"), Some("0:55"));
        assert_eq!(super::bpffs_device("46 23 0:40 / /sys/fs/bpf rw - tmpfs t rw\n", "/sys/fs/bpf"), None);
        assert_eq!(super::bpffs_device("", "/sys/fs/bpf"), None);
    }
}
