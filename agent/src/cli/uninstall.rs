//! `warden uninstall`: detach the programs and remove the maps warden pinned.
use std::{path::PathBuf, process::ExitCode};

use crate::{hooks::pins, system};

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The instance of this cgroup root (as given to `agent`).
    #[arg(long, conflicts_with = "all")]
    pub cgroup_root: Option<String>,
    /// Every instance on the node.
    #[arg(long)]
    pub all: bool,
    /// Accepted for older scripts and ignored: whether an agent lives is
    /// asked of the instance itself (the lock its agent holds).
    #[arg(long, env = "WARDEN_SOCKET", hide = true)]
    pub socket: Option<PathBuf>,
    /// Remove the pins even from under a live agent. It keeps enforcing
    /// (it holds its links), restores the pins within a second and reports
    /// `tamper`: stop the agent first to really uninstall.
    #[arg(long)]
    pub force: bool,
    /// Where the host's bpffs is mounted here: `/host/sys/fs/bpf` in a
    /// `kubectl debug node/... --profile=sysadmin` pod, whose own /sys is not
    /// the host's.
    #[arg(long, default_value = system::mounts::BPFFS)]
    pub bpffs: PathBuf,
}

pub fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    system::require_root()?;
    if !args.all && args.cgroup_root.is_none() {
        anyhow::bail!("give --cgroup-root ROOT (one instance) or --all");
    }
    let instance = args.cgroup_root.as_deref().map(pins::instance_name);
    let done = pins::uninstall(&args.bpffs, instance.as_deref(), args.force)?;
    for live in &done.live {
        eprintln!(
            "warning: {live}: its pins were removed anyway (--force); it keeps enforcing, restores them and reports \
             tamper. Stop it to uninstall."
        );
    }
    let removed = &done.removed;
    let links = removed.iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("links"))).count();
    println!("detached {links} programs and removed {} pinned maps", removed.len() - links);
    Ok(ExitCode::SUCCESS)
}
