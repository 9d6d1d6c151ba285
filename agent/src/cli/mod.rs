//! Command line: `warden agent | status | probe | reload | uninstall | events | policy check`.
//! One file per command, each with its arguments and a `run` returning the
//! exit status; `main.rs` parses and dispatches.
pub mod agent;
pub mod events;
pub mod fan_keeper;
pub mod mount_bpffs;
pub mod policy;
pub mod probe;
pub mod reload;
pub mod status;
pub mod uninstall;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Zero-trust host agent for GPU / AI training nodes")]
pub struct Cli {
    /// Format of the agent's own logs on stderr: `json` (one object per line,
    /// for log shippers) or `text`. Events never go to stderr.
    #[arg(long, global = true, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the enforcing daemon (as root).
    Agent(agent::AgentArgs),
    /// Show what the running daemon loaded, enforces and counted.
    Status(status::StatusArgs),
    /// What this node can enforce: kernel, BTF, cgroup v2, bpffs, each hook
    /// type loaded for real, active LSMs, and the segment kinds that follow.
    Probe(probe::ProbeArgs),
    /// Re-read the daemon's config file and apply it atomically; an invalid
    /// file is refused (exit 1) and the last good policy stays in force.
    Reload(reload::ReloadArgs),
    /// Detach every program and remove every map warden pinned in bpffs:
    /// enforcement stops. Refused while an agent answers on the socket.
    Uninstall(uninstall::UninstallArgs),
    /// Recent and live decision events from the daemon (like `tail [-f]`).
    Events(events::EventsArgs),
    /// Policy tools.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Started by the agent (fanotify nodes): holds the permission group
    /// across agent crashes and restarts.
    #[command(hide = true)]
    FanKeeper(fan_keeper::FanKeeperArgs),
    /// Mount bpffs at /sys/fs/bpf if it is not there (the chart's init
    /// container: with Bidirectional propagation the mount is the host's).
    MountBpffs(mount_bpffs::MountBpffsArgs),
}
