use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use warden::cli::{self, Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    if !matches!(cli.command, Command::Agent(_) | Command::FanKeeper(_)) {
        // A command printing into a closed pipe (`warden probe --json | head`)
        // ends quietly as other tools do; Rust ignores SIGPIPE and panics.
        // Not the daemons: a reader going away must not end enforcement.
        // SAFETY: restoring a signal's default disposition before any thread.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if matches!(cli.command, Command::Agent(_) | Command::FanKeeper(_)) {
        // Before any thread: cgroup paths in /proc must be the host's.
        warden::system::cgroupns::enter_host();
        tracing::info!(cgroup_namespace = warden::system::cgroupns::state(), "cgroup view");
    }
    let result = match cli.command {
        Command::Agent(args) => cli::agent::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Probe(args) => cli::probe::run(args),
        Command::Reload(args) => cli::reload::run(args),
        Command::Uninstall(args) => cli::uninstall::run(args),
        Command::FanKeeper(args) => cli::fan_keeper::run(args),
        Command::MountBpffs(args) => cli::mount_bpffs::run(args),
        Command::Events(args) => cli::events::run(args),
        Command::Policy(command) => cli::policy::run(command),
    };
    match result {
        Ok(code) => code,
        // A log shipper reading JSON must see the reason the agent stopped too.
        Err(e) if cli.log_format == LogFormat::Json => {
            tracing::error!(error = %format!("{e:#}"), "warden: exiting");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr so stdout can carry JSON events; a shipper tells the
/// two apart by stream.
fn init_logs(format: LogFormat) {
    // The fan-keeper child inherits the environment: it logs the same way
    // to the same stderr, whether the format came from the flag or the env.
    // SAFETY: no other thread exists yet (the runtime starts later).
    unsafe { std::env::set_var("WARDEN_LOG_FORMAT", format.name()) };
    let filter = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        // {"timestamp","level","fields":{"message",...},"target"}: one object per line.
        LogFormat::Json => builder.json().init(),
    }
}
