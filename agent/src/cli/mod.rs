//! Command line: `warden agent | status | probe | reload | uninstall | events | policy check`.
pub mod events;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{control, daemon};

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Zero-trust host agent for GPU / AI training nodes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the enforcing daemon (as root).
    Agent(AgentArgs),
    /// Show what the running daemon loaded, enforces and counted.
    Status {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Control socket of the daemon.
        #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// What this node can enforce: kernel, BTF, cgroup v2, bpffs, each hook
    /// type loaded for real, active LSMs, and the segment kinds that follow.
    Probe {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the daemon's config file and apply it atomically; an invalid
    /// file is refused (exit 1) and the last good policy stays in force.
    Reload {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Control socket of the daemon.
        #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Detach every program and remove every map warden pinned in bpffs:
    /// enforcement stops. Refused while an agent answers on the socket.
    Uninstall {
        /// The instance of this cgroup root (as given to `agent`).
        #[arg(long, conflicts_with = "all")]
        cgroup_root: Option<String>,
        /// Every instance on the node.
        #[arg(long)]
        all: bool,
        /// Control socket of a running agent to check for.
        #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Uninstall even though an agent is running.
        #[arg(long)]
        force: bool,
    },
    /// Recent and live decision events from the daemon (like `tail [-f]`).
    Events(events::EventsArgs),
    /// Policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

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
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; exits non-zero with file:line:column, field and reason.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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
        }
    }
}
