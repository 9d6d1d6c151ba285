//! `warden fan-keeper`: the process the agent starts on fanotify nodes to
//! hold the permission group (see `files::fanotify::keeper`). Not for users.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FanKeeperArgs {
    /// The agent's instance (its bpffs directory name).
    #[arg(long)]
    pub instance: String,
    /// The governed cgroup root as /proc/<pid>/cgroup names it.
    #[arg(long)]
    pub cgroup_root: String,
}

pub fn run(args: FanKeeperArgs) -> anyhow::Result<ExitCode> {
    crate::files::fanotify::keeper::run(&args.instance, &args.cgroup_root)?;
    Ok(ExitCode::SUCCESS)
}
