//! `warden uninstall`: detach the programs and remove the maps warden pinned.
use std::{path::PathBuf, process::ExitCode};

use crate::{control, hooks::pins, system};

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The instance of this cgroup root (as given to `agent`).
    #[arg(long, conflicts_with = "all")]
    pub cgroup_root: Option<String>,
    /// Every instance on the node.
    #[arg(long)]
    pub all: bool,
    /// Control socket of a running agent to check for.
    #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Uninstall even though an agent is running.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    system::require_root()?;
    if !args.all && args.cgroup_root.is_none() {
        anyhow::bail!("give --cgroup-root ROOT (one instance) or --all");
    }
    if !args.force && std::os::unix::net::UnixStream::connect(&args.socket).is_ok() {
        anyhow::bail!("an agent is running (it answers on {}): stop it first, or pass --force", args.socket.display());
    }
    let instance = args.cgroup_root.as_deref().map(pins::instance_name);
    let removed = pins::uninstall(std::path::Path::new(system::mounts::BPFFS), instance.as_deref())?;
    let links = removed.iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("links"))).count();
    println!("detached {links} programs and removed {} pinned maps", removed.len() - links);
    Ok(ExitCode::SUCCESS)
}
