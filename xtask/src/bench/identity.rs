//! `cargo xtask bench identity`: delay from cgroup creation to identity in
//! the kernel map, under a burst of new cgroups, as the agent measures it
//! (kernel timestamp of cgroup_mkdir → map write), read from `warden status`.
//!
//! Two bursts in one run, each under a fresh agent: flat cgroups (the
//! baseline) and kubelet-shaped pods (pod slice + container scope, systemd
//! driver), whose identity comes from parsing the path.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::agent::{Agent, cgroup2_mount};

#[derive(clap::Args)]
pub struct Args {
    /// New cgroups (flat) and new pods (two cgroups each) per burst.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
}

const CID: &str = "3f1c9a7e5b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f";

/// The cgroups of pod `i`, parents first.
fn pod_dirs(i: usize) -> [String; 2] {
    let uid = format!("6b1d3c1e_6a8e_4c63_9f0a_{i:012x}");
    let pod = format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice");
    [pod.clone(), format!("{pod}/cri-containerd-{CID}{i:04x}.scope")]
}

/// Creates `dirs` under a fresh agent; returns (creation time, identity status).
fn burst(tree: &Path, rel: &str, policy: &str, dirs: &[String]) -> anyhow::Result<(Duration, Value)> {
    let agent = Agent::start(rel, policy, None)?;
    let t = Instant::now();
    for d in dirs {
        std::fs::create_dir(tree.join(d)).with_context(|| format!("mkdir {d}"))?;
    }
    let created = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = agent.status()?;
        if st["identity"]["delay_samples"].as_u64().unwrap_or(0) >= dirs.len() as u64 {
            break st;
        }
        if Instant::now() > deadline {
            bail!("only {} of {} cgroups identified", st["identity"]["delay_samples"], dirs.len());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(agent);
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(tree.join(d));
    }
    Ok((created, st["identity"].clone()))
}

fn report(label: &str, created: Duration, id: &Value) {
    println!(
        "{label:<34} created in {:>6.1} ms; mkdir → identity in map: p50 {:>5} µs, p99 {:>6} µs, max {:>6} µs; \
         identified {}/{} tracked",
        created.as_secs_f64() * 1e3,
        id["delay_p50_us"],
        id["delay_p99_us"],
        id["delay_max_us"],
        id["cgroups_identified"],
        id["cgroups_tracked"],
    );
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rel = format!("warden-bench-id-{}", std::process::id());
    let tree: PathBuf = cgroup2_mount()?.join(&rel);
    std::fs::create_dir_all(tree.join("kubepods.slice/kubepods-burstable.slice"))?;
    let flat: Vec<String> = (0..a.burst).map(|i| format!("pod-{i}")).collect();
    let flat_policy = "version: 1\nworkloads:\n  - name: pods\n    selector: { cgroup: \"pod-*\" }\n";
    let pods: Vec<String> = (0..a.burst).flat_map(pod_dirs).collect();
    // Path-derived identity plus a metadata workload that never matches
    // (no API configured): every cgroup is judged on both.
    let pod_policy = "version: 1\nworkloads:\n  - name: ml\n    selector: { namespace: ml }\n  \
                      - name: pods\n    selector: { cgroup: \"kubepods.slice/**\" }\n";
    let base = burst(&tree, &rel, flat_policy, &flat);
    let shaped = base.as_ref().ok().map(|_| burst(&tree, &rel, pod_policy, &pods));
    let _ = std::fs::remove_dir(tree.join("kubepods.slice/kubepods-burstable.slice"));
    let _ = std::fs::remove_dir(tree.join("kubepods.slice"));
    std::fs::remove_dir(&tree).context("removing bench cgroup")?;
    let (bc, bid) = base?;
    let (pc, pid) = shaped.expect("ran after the baseline")?;
    println!("\nwarden bench identity — bursts under a fresh agent each (target: p99 ≤ 10 ms)");
    report(&format!("baseline: {} flat cgroups", a.burst), bc, &bid);
    report(&format!("{} pods ({} cgroups)", a.burst, pods.len()), pc, &pid);
    let ratio = |k: &str| pid[k].as_f64().unwrap_or(0.0) / bid[k].as_f64().unwrap_or(1.0).max(1.0);
    println!("pods / baseline: p50 ×{:.2}, p99 ×{:.2}", ratio("delay_p50_us"), ratio("delay_p99_us"));
    Ok(())
}
