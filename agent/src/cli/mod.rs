//! Command line: `warden agent | status | probe | reload | uninstall | events | policy check`.
//! One file per command, each with its arguments and a `run` returning the
//! exit status; `main.rs` parses and dispatches.
pub mod agent;
pub mod events;
pub mod fan_keeper;
pub mod policy;
pub mod probe;
pub mod reload;
pub mod status;
pub mod uninstall;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Zero-trust host agent for GPU / AI training nodes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
}
