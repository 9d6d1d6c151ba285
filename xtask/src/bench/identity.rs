//! `cargo xtask bench identity`: delay from cgroup creation to identity in
//! the kernel map, under a burst of new cgroups, as the agent measures it
//! (kernel timestamp of cgroup_mkdir → map write), read from `warden status`.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::agent::{Agent, cgroup2_mount};

#[derive(clap::Args)]
pub struct Args {
    /// New cgroups created in the burst.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rel = format!("warden-bench-id-{}", std::process::id());
    let tree: PathBuf = cgroup2_mount()?.join(&rel);
    std::fs::create_dir_all(&tree)?;
    let policy = "version: 1\nworkloads:\n  - name: pods\n    selector: { cgroup: \"pod-*\" }\n";
    let agent = Agent::start(&rel, policy, None)?;
    let t = Instant::now();
    for i in 0..a.burst {
        std::fs::create_dir(tree.join(format!("pod-{i}")))?;
    }
    let created = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = agent.status()?;
        if st["identity"]["delay_samples"].as_u64().unwrap_or(0) >= a.burst as u64 {
            break st;
        }
        if Instant::now() > deadline {
            bail!("only {} of {} cgroups identified", st["identity"]["delay_samples"], a.burst);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let id = &st["identity"];
    println!("\nwarden bench identity — burst of {} cgroups created in {:.1} ms", a.burst, created.as_secs_f64() * 1e3);
    println!(
        "cgroup_mkdir → identity in kernel map: p50 {} µs, p99 {} µs, max {} µs ({} samples)",
        id["delay_p50_us"], id["delay_p99_us"], id["delay_max_us"], id["delay_samples"]
    );
    println!(
        "identified {} of {} tracked; kernel map entries {}",
        id["cgroups_identified"], id["cgroups_tracked"], id["map_entries"]
    );
    drop(agent);
    for i in 0..a.burst {
        let _ = std::fs::remove_dir(tree.join(format!("pod-{i}")));
    }
    std::fs::remove_dir(&tree).context("removing bench cgroup")?;
    Ok(())
}
