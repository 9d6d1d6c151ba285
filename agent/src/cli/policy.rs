//! `warden policy check`: validate policy files.
use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

use crate::policy;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; exits non-zero with file:line:column, field and reason.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { files } => check(files),
    }
}

/// Exit status 1 when any file is invalid; every file is checked.
fn check(files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for f in files {
        match policy::load_file(&f) {
            Ok(p) => {
                for w in &p.warnings {
                    eprintln!("warning: {w}");
                }
                let c = p.policy.compile();
                println!(
                    "{}: ok ({} segments, {} workloads, {} rules, {} IPv4 + {} IPv6 prefixes)",
                    f.display(),
                    c.segments.len(),
                    c.workloads.len(),
                    c.rules.len(),
                    c.v4.len(),
                    c.v6.len()
                );
            }
            Err(errs) => {
                ok = false;
                eprintln!("{errs}");
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
