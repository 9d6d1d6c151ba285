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
    if mounts::ensure("bpf", "bpf", mounts::BPFFS)? {
        println!("mounted bpffs at {}", mounts::BPFFS);
    } else {
        println!("bpffs already mounted at {}", mounts::BPFFS);
    }
    Ok(ExitCode::SUCCESS)
}
