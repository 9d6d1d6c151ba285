//! `cargo xtask bench net`: connect() latency with warden vs. without, in
//! one run. "Without" is a sibling cgroup outside the agent's root (no
//! warden programs run there); batches alternate between the two.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use super::agent::{Agent, cgroup2_mount, status_field};

#[derive(clap::Args)]
pub struct Args {
    /// Network prefixes in the generated policy.
    #[arg(long, default_value_t = 10_000)]
    prefixes: usize,
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    #[arg(long, default_value_t = 400)]
    batch: usize,
    /// Bytes per side and round of the bulk TCP case.
    #[arg(long, default_value_t = 1 << 30)]
    bulk_bytes: u64,
}

/// Deterministic policy: `n` disjoint /24s in 100 segments, plus the
/// protected segment the allowed-flow case connects to.
pub(super) fn policy(n: usize) -> String {
    let mut y = String::from("version: 1\nmode: enforce\n");
    y.push_str("segments:\n  - name: bench-store\n    network:\n      - cidr: 127.0.0.2/32\n        protocol: tcp\n");
    let per = n.div_ceil(100).max(1);
    for (s, chunk) in (0..n).collect::<Vec<_>>().chunks(per).enumerate() {
        writeln!(y, "  - name: tenant-{s}\n    network:").unwrap();
        for i in chunk {
            writeln!(y, "      - cidr: 10.{}.{}.0/24", i / 256, i % 256).unwrap();
        }
    }
    y.push_str("workloads:\n  - name: bench\n    selector: { cgroup: bench }\n");
    y.push_str("allow:\n  - workload: bench\n    segments: [bench-store]\n");
    y
}

struct Cleanup {
    tree: PathBuf,
    stats_was: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(v) = &self.stats_was {
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", v);
        }
        for sub in ["agent/bench", "agent", "base", ""] {
            let _ = std::fs::remove_dir(self.tree.join(sub));
        }
    }
}

/// (run_time_ns, run_cnt) of a program held open by `pid`, from fdinfo.
fn prog_stats(pid: u32, prog_id: u64) -> Option<(u64, u64)> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?.flatten() {
        let text = std::fs::read_to_string(fd.path()).unwrap_or_default();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
        if field("prog_id:") == Some(prog_id) {
            return Some((field("run_time_ns:")?, field("run_cnt:")?));
        }
    }
    None
}

/// Runs the bench client for one case; returns its result object.
fn client(
    tree: &Path,
    cg: &Path,
    name: &str,
    ip: &str,
    rounds: usize,
    batch: usize,
    bulk_bytes: Option<u64>,
) -> anyhow::Result<serde_json::Value> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("bench-client")
        .arg("--baseline-cgroup")
        .arg(tree.join("base"))
        .args(["--case", &format!("{name}:{}:{ip}", cg.display())])
        .args(["--rounds", &rounds.to_string(), "--batch", &batch.to_string()]);
    if let Some(b) = bulk_bytes {
        cmd.args(["--bulk-bytes", &b.to_string()]);
    }
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("bench client failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v[0].clone())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rel = format!("warden-bench-{}", std::process::id());
    let tree = cgroup2_mount()?.join(&rel);
    std::fs::create_dir_all(tree.join("agent/bench"))?;
    std::fs::create_dir_all(tree.join("base"))?;
    let _guard =
        Cleanup { tree: tree.clone(), stats_was: std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").ok() };
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("enabling kernel.bpf_stats_enabled")?;
    let agent = Agent::start(&format!("{rel}/agent"), &policy(a.prefixes), None)?;
    let agent_pid = agent.pid();
    let status = agent.status()?;
    let program = |name: &str| {
        status["programs"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .and_then(|p| p["program_id"].as_u64())
            .with_context(|| format!("{name} not attached"))
    };
    let (connect4, egress) = (program("connect4")?, program("egress")?);
    let rss_idle = status_field(agent_pid, "VmRSS:");
    let bench_cg = tree.join("agent/bench");
    let mut rows = Vec::new();
    // Most destinations share no /16 with a segment prefix (the fast path);
    // 127.0.0.1 shares one with the bench-store segment (full lookups).
    let cases = [("unprotected", "127.1.0.1"), ("unprotected-near", "127.0.0.1"), ("protected-allowed", "127.0.0.2")];
    for (name, ip) in cases {
        // Latency with kernel.bpf_stats_enabled=0, as in production (the
        // stats add two clock reads per program run)...
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0")?;
        let result = client(&tree, &bench_cg, name, ip, a.rounds, a.batch, None)?;
        // ...then a short pass with stats on for the hooks' own ns/call.
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
        let stats = || -> anyhow::Result<[(u64, u64); 2]> {
            let read = |id| prog_stats(agent_pid, id).context("reading program run stats");
            Ok([read(connect4)?, read(egress)?])
        };
        let before = stats()?;
        client(&tree, &bench_cg, name, ip, 5, a.batch, None)?;
        let after = stats()?;
        let ns = |i: usize| (after[i].0 - before[i].0) as f64 / (after[i].1 - before[i].1).max(1) as f64;
        rows.push((result, ns(0), ns(1)));
    }
    // Bulk TCP through the backstop (every packet of an established
    // connection passes it), to a destination in no segment and to the
    // allowed segment: throughput with stats off as in production, then
    // the backstop's ns per packet from a shorter pass with stats on.
    let mut bulk = Vec::new();
    for (name, ip) in [("unprotected", "127.1.0.1"), ("protected-allowed", "127.0.0.2")] {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0")?;
        let r = client(&tree, &bench_cg, name, ip, 5, 1, Some(a.bulk_bytes))?;
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
        let before = prog_stats(agent_pid, egress).context("reading egress run stats")?;
        client(&tree, &bench_cg, name, ip, 1, 1, Some(a.bulk_bytes / 4))?;
        let after = prog_stats(agent_pid, egress).context("reading egress run stats")?;
        bulk.push((r, (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64));
    }
    let rss = status_field(agent_pid, "VmRSS:");
    let hwm = status_field(agent_pid, "VmHWM:");
    let final_status = agent.status()?;

    println!("\nwarden bench net — {} prefixes, {} rounds x {} connects per case", a.prefixes, a.rounds, a.batch);
    println!(
        "{:<20}{:>12}{:>12}{:>8}{:>12}{:>12}{:>8}{:>11}{:>14}",
        "case", "base p50", "warden p50", "ratio", "base p99", "warden p99", "ratio", "hook ns", "backstop ns"
    );
    let mut paired = Vec::new();
    for (r, hook_ns, egress_ns) in &rows {
        let f = |k: &str| r[k].as_u64().unwrap_or(0) as f64;
        println!(
            "{:<20}{:>10.1}µs{:>10.1}µs{:>8.3}{:>10.1}µs{:>10.1}µs{:>8.3}{:>11.0}{:>14.0}",
            r["name"].as_str().unwrap_or(""),
            f("base_p50_ns") / 1e3,
            f("with_p50_ns") / 1e3,
            f("with_p50_ns") / f("base_p50_ns"),
            f("base_p99_ns") / 1e3,
            f("with_p99_ns") / 1e3,
            f("with_p99_ns") / f("base_p99_ns"),
            hook_ns,
            egress_ns,
        );
        paired.push(format!(
            "{} {:.3}",
            r["name"].as_str().unwrap_or(""),
            r["paired_p50_ratio"].as_f64().unwrap_or(0.0)
        ));
    }
    println!("paired p50 ratio (median over rounds of per-round p50 ratios): {}", paired.join(", "));
    println!("hook ns = connect4 run_time_ns / run_cnt from the kernel (kernel.bpf_stats_enabled=1)");
    println!("backstop ns = egress (cgroup_skb) run_time_ns / run_cnt over the same connects' packets");
    println!(
        "bulk TCP over loopback, {:.1} GiB per side and round, median of 5:",
        a.bulk_bytes as f64 / (1u64 << 30) as f64
    );
    for (r, ns) in &bulk {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "  {:<20} base {:.2} GiB/s, warden {:.2} GiB/s, paired ratio {:.3}, backstop {ns:.0} ns/packet",
            r["name"].as_str().unwrap_or(""),
            f("base_gib_s"),
            f("with_gib_s"),
            f("paired_ratio")
        );
    }
    println!("agent RSS: idle {rss_idle}, after {rss}, peak {hwm}");
    println!(
        "events: kernel emitted {}, written {}, dropped {}",
        final_status["events"]["kernel_emitted"],
        final_status["events"]["written"],
        final_status["events"]["kernel_dropped"]
    );
    Ok(())
}
