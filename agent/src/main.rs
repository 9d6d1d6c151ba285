use std::process::ExitCode;

use clap::Parser;
use warden::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so stdout can carry JSON events.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let result = match cli.command {
        Command::Agent(args) => cli::agent::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Probe(args) => cli::probe::run(args),
        Command::Reload(args) => cli::reload::run(args),
        Command::Uninstall(args) => cli::uninstall::run(args),
        Command::FanKeeper(args) => cli::fan_keeper::run(args),
        Command::Events(args) => cli::events::run(args),
        Command::Policy(command) => cli::policy::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}
