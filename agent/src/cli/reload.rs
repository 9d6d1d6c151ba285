//! `warden reload`: the daemon re-reads its config file and applies it.
use std::{path::PathBuf, process::ExitCode};

use crate::control::{self, Request};

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// Control socket of the daemon.
    #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Exit status 1 when the daemon refused the file.
pub fn run(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let resp = control::client::request(&args.socket, &Request::Reload)?;
    let o = resp.reload.ok_or_else(|| anyhow::anyhow!("daemon sent no reload outcome"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else if let Some(e) = &o.error {
        eprintln!("reload refused; policy generation {} stays in force:\n{e}", o.generation);
    } else {
        println!(
            "policy reloaded: generation {} (sha256 {}…) in {} µs",
            o.generation,
            &o.sha256[..o.sha256.len().min(12)],
            o.duration_us
        );
    }
    for p in &o.pending_restart {
        eprintln!("note: {p} changed; it takes effect when the agent restarts");
    }
    Ok(if o.applied { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
