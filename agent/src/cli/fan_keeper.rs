//! `warden fan-keeper`: the process the agent starts on fanotify nodes to
//! hold the permission group (see `files::fanotify::keeper`), or, with
//! `--standby`, the chart's sidecar container that the agent gives it to.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FanKeeperArgs {
    /// The agent's instance (its bpffs directory name).
    #[arg(long)]
    pub instance: String,
    /// The governed cgroup root as /proc/<pid>/cgroup names it; with
    /// `--standby`, as the agent's `--cgroup-root` (relative to the cgroup2
    /// mount).
    #[arg(long)]
    pub cgroup_root: String,
    /// Run as a sidecar: wait for an agent to give the group (the agent
    /// runs with WARDEN_FAN_KEEPER=sidecar).
    #[arg(long)]
    pub standby: bool,
}

pub fn run(args: FanKeeperArgs) -> anyhow::Result<ExitCode> {
    if args.standby {
        crate::files::fanotify::keeper::run_standby(&args.instance, &args.cgroup_root)?;
    } else {
        crate::files::fanotify::keeper::run(&args.instance, &args.cgroup_root)?;
    }
    Ok(ExitCode::SUCCESS)
}
