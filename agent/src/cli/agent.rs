//! `warden agent`: the enforcing daemon.
use std::{path::PathBuf, process::ExitCode};

use crate::daemon;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Policy/config file (YAML).
    #[arg(long, short, env = "WARDEN_CONFIG")]
    pub config: PathBuf,
    /// Attach at this cgroup, relative to the cgroup2 mount (overrides agent.cgroupRoot).
    #[arg(long)]
    pub cgroup_root: Option<String>,
    /// Control socket path (overrides agent.socket).
    #[arg(long, env = "WARDEN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Event output: "-" for stdout or a file path (overrides agent.events.jsonl).
    #[arg(long)]
    pub events: Option<String>,
    /// Node name in events (overrides agent.nodeName; default: $NODE_NAME, then hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Prometheus endpoint, IP:port or `off` (overrides agent.metrics.address;
    /// port 0 picks a free one, shown in `warden status`).
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// NAMESPACE/DAEMONSET running this agent: on SIGTERM, if that DaemonSet
    /// is gone or being deleted (an uninstall), remove enforcement from the
    /// node; otherwise (restart, upgrade, drain) keep it pinned.
    #[arg(long, env = "WARDEN_REMOVE_ON_DELETE")]
    pub remove_on_delete: Option<crate::kube::owner::Owner>,
}

impl From<AgentArgs> for daemon::AgentOptions {
    fn from(a: AgentArgs) -> Self {
        Self {
            config: a.config,
            cgroup_root: a.cgroup_root,
            socket: a.socket,
            events: a.events,
            node_name: a.node_name,
            metrics_address: a.metrics_address,
            remove_on_delete: a.remove_on_delete,
        }
    }
}

/// Runs the daemon until it is told to stop.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(daemon::run(args.into()))?;
    Ok(ExitCode::SUCCESS)
}
