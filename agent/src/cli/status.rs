//! `warden status`: what the running daemon loaded, enforces and counted.
use std::{path::PathBuf, process::ExitCode};

use crate::control::{self, Request};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Control socket of the daemon.
    #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let resp = control::client::request(&args.socket, &Request::Status)?;
    let status = resp.status.ok_or_else(|| anyhow::anyhow!("daemon sent no status"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("{status}");
    }
    Ok(ExitCode::SUCCESS)
}
