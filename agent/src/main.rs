use std::process::ExitCode;

use clap::Parser;
use warden::{
    cli::{Cli, Command, PolicyCommand},
    control::{self, Request},
    daemon, policy,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so stdout can carry JSON events.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(daemon::run(args.into()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, socket } => {
            let resp = control::client::request(&socket, &Request::Status)?;
            let status = resp.status.ok_or_else(|| anyhow::anyhow!("daemon sent no status"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{status}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { json } => {
            warden::system::require_root()?;
            let report = warden::capability::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            // Non-zero when a segment kind cannot be enforced here.
            Ok(if report.segments.iter().all(|s| s.enforced) { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        Command::Reload { json, socket } => {
            let resp = control::client::request(&socket, &Request::Reload)?;
            let o = resp.reload.ok_or_else(|| anyhow::anyhow!("daemon sent no reload outcome"))?;
            if json {
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
        Command::Uninstall { cgroup_root, all, socket, force } => {
            use warden::hooks::pins;
            warden::system::require_root()?;
            if !all && cgroup_root.is_none() {
                anyhow::bail!("give --cgroup-root ROOT (one instance) or --all");
            }
            if !force && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                anyhow::bail!(
                    "an agent is running (it answers on {}): stop it first, or pass --force",
                    socket.display()
                );
            }
            let instance = cgroup_root.as_deref().map(pins::instance_name);
            let removed = pins::uninstall(std::path::Path::new(warden::system::mounts::BPFFS), instance.as_deref())?;
            let links = removed.iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("links"))).count();
            println!("detached {links} programs and removed {} pinned maps", removed.len() - links);
            Ok(ExitCode::SUCCESS)
        }
        Command::Events(args) => {
            warden::cli::events::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Check { files }) => {
            let mut ok = true;
            for f in files {
                match policy::load_file(&f) {
                    Ok(p) => {
                        let c = p.compile();
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
    }
}
