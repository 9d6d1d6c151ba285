//! `warden mount-bpffs`: run by the chart's init container (privileged, the
//! host's /sys/fs/bpf mounted with Bidirectional propagation). A node whose
//! host has no bpffs there gets one on the host, so pins outlive the pod and
//! a restarted agent takes over with no gap; mounted by the agent itself it
//! would live in the pod's mount namespace and die with it.
use std::process::ExitCode;

use crate::system::{self, mounts};

#[derive(Debug, clap::Args)]
pub struct MountBpffsArgs {}

pub fn run(_args: MountBpffsArgs) -> anyhow::Result<ExitCode> {
    system::require_root()?;
    let mounted = mounts::ensure("bpf", "bpf", mounts::BPFFS)?;
    // What is visible there now (the last mount on that point) must be bpffs.
    let table = system::mountinfo::current()?;
    let top = table.iter().rev().find(|m| m.mount_point == std::path::Path::new(mounts::BPFFS));
    anyhow::ensure!(
        top.is_some_and(|m| m.fstype == "bpf"),
        "{} is not bpffs after mounting (found {:?})",
        mounts::BPFFS,
        top.map(|m| &m.fstype)
    );
    let how = if mounted { "mounted bpffs at" } else { "bpffs already mounted at" };
    println!("{how} {} (checked in /proc/self/mountinfo)", mounts::BPFFS);
    Ok(ExitCode::SUCCESS)
}
