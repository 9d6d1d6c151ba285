//! `warden probe`: what this node can enforce.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit status 3 when a segment kind cannot be enforced here.
pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    crate::system::require_root()?;
    let report = crate::capability::probe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.segments.iter().all(|s| s.enforced) { ExitCode::SUCCESS } else { ExitCode::from(3) })
}
