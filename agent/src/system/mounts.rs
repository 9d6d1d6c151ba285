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

/// bpffs (for pins, later) and tracefs (aya's tracepoint attach needs it).
pub fn ensure_all() -> Result<(), SystemError> {
    ensure("bpf", "bpf", BPFFS)?;
    ensure("tracefs", "nodev", TRACEFS)?;
    Ok(())
}
