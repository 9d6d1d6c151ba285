//! `cargo xtask bench events`: events per second from the kernel to the
//! JSON lines sink (and, with `--otlp`, to a real OTLP collector) with zero
//! loss, and the agent's CPU and RSS at that rate.
//!
//! Baseline, measured in the same run: the rate at which one producer
//! workload makes denied connects with the agent attached (the kernel's
//! decision rate). The sink rate is found by a ladder of paced floods,
//! each under the same agent; the highest step where every decision
//! reached the sink is reported, as a ratio to the baseline.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::agent::{Agent, cgroup2_mount, status_field};
use crate::util::{self, cargo, workspace};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per step.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// First step, events/s; each next step is 1.25× higher.
    #[arg(long, default_value_t = 100_000)]
    start: u64,
    /// Also measure delivery to an OTLP collector (`rotel`, from
    /// target/tools/rotel; scripts/setup.sh installs it).
    #[arg(long)]
    otlp: bool,
    /// First step of the OTLP ladder, events/s.
    #[arg(long, default_value_t = 50_000)]
    otlp_start: u64,
    /// Skip the JSON lines ladder (with `--otlp`).
    #[arg(long, requires = "otlp")]
    otlp_only: bool,
}

/// Producer processes: the pace is split between them.
const PRODUCERS: u64 = 2;

struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.0.join("flood"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn policy(port: u16, sink: &str) -> String {
    format!(
        "version: 1\nagent:\n  ringBufferBytes: 16777216\n  events:\n{sink}\
         segments:\n  - name: store\n    network:\n      - cidr: 127.0.0.2/32\n        ports: [{port}]\n\
         workloads:\n  - name: flood\n    selector: {{ cgroup: flood }}\n"
    )
}

/// (utime + stime) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_bytes(pid: u32) -> u64 {
    status_field(pid, "VmRSS:").trim_end_matches(" kB").parse::<u64>().unwrap_or(0) * 1024
}

fn flood(netprobe: &Path, cg: &Path, port: u16, secs: f64, rate: u64) -> anyhow::Result<Vec<Child>> {
    (0..PRODUCERS)
        .map(|_| {
            Command::new(netprobe)
                .arg("--cgroup")
                .arg(cg)
                .args(["flood", "127.0.0.2", &port.to_string(), &secs.to_string(), &(rate / PRODUCERS).to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting warden-netprobe")
        })
        .collect()
}

fn attempts(children: Vec<Child>) -> anyhow::Result<u64> {
    let mut n = 0;
    for c in children {
        let out = c.wait_with_output()?;
        let v: Value = serde_json::from_slice(&out.stdout).context("flood output")?;
        n += v["attempts"].as_u64().unwrap_or(0);
    }
    Ok(n)
}

struct Step {
    rate: f64,
    lost: u64,
    cpu: f64,
    rss: u64,
}

/// One paced flood; waits for the sink to catch up, then counts loss:
/// kernel drops plus whatever did not reach `delivered`.
fn step(
    agent: &Agent,
    netprobe: &Path,
    cg: &Path,
    port: u16,
    secs: f64,
    rate: u64,
    delivered: &dyn Fn(&Value) -> u64,
) -> anyhow::Result<Step> {
    let before = agent.status()?;
    let (pid, ticks0, t0) = (agent.pid(), cpu_ticks(agent.pid()), Instant::now());
    let children = flood(netprobe, cg, port, secs, rate)?;
    let mut rss = 0;
    while t0.elapsed().as_secs_f64() < secs {
        rss = rss.max(rss_bytes(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = attempts(children)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / 100.0 / wall;
    let want = delivered(&before) + n;
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let st = agent.status()?;
        let dropped = st["events"]["kernel_dropped"].as_u64().unwrap_or(0)
            - before["events"]["kernel_dropped"].as_u64().unwrap_or(0);
        if delivered(&st) + dropped >= want || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lost = want.saturating_sub(delivered(&after));
    Ok(Step { rate: n as f64 / wall, lost, cpu, rss })
}

/// Climbs the ladder until a step loses events; returns the best clean step.
fn ladder(
    label: &str,
    agent: &Agent,
    netprobe: &Path,
    cg: &Path,
    port: u16,
    (start, a): (u64, &Args),
    delivered: &dyn Fn(&Value) -> u64,
) -> anyhow::Result<Option<Step>> {
    let mut best = None;
    let mut rate = start;
    loop {
        let s = step(agent, netprobe, cg, port, a.seconds, rate, delivered)?;
        println!(
            "  {label:<6} paced {:>8}/s: achieved {:>8.0}/s, lost {:>8}, agent CPU {:>4.0}%, RSS {:>4} MiB",
            rate,
            s.rate,
            s.lost,
            s.cpu * 100.0,
            s.rss >> 20
        );
        if s.lost > 0 {
            return Ok(best);
        }
        // The producers cannot go faster: the pipeline kept up with all of it.
        let saturated = s.rate < rate as f64 * 0.9;
        best = Some(s);
        if saturated {
            return Ok(best);
        }
        rate = rate * 5 / 4;
    }
}

fn rotel_binary() -> anyhow::Result<PathBuf> {
    let p = std::env::var_os("WARDEN_ROTEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/tools/rotel/bin/rotel-agent"));
    if !p.exists() {
        bail!("{} not found: run scripts/setup.sh (installs rotel) or set WARDEN_ROTEL", p.display());
    }
    Ok(p)
}

fn summary(label: &str, best: Option<Step>, baseline: f64, target: f64) {
    match best {
        Some(s) => println!(
            "{label}: {:.0} events/s with zero loss = {:.2}× the producers' rate ({:.0}/s), {:.2}× the {:.0}/s target; agent CPU {:.0}%, RSS {} MiB",
            s.rate,
            s.rate / baseline,
            baseline,
            s.rate / target,
            target,
            s.cpu * 100.0,
            s.rss >> 20
        ),
        None => println!("{label}: lost events even at the first step"),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    util::run(cargo().args(["build", "--release", "-p", "warden", "--bin", "warden-netprobe"]))?;
    let netprobe = workspace().join("target/release/warden-netprobe");
    let rel = format!("warden-bench-ev-{}", std::process::id());
    let tree = Tree(cgroup2_mount()?.join(&rel));
    let cg = tree.0.join("flood");
    std::fs::create_dir_all(&cg)?;
    let listener = std::net::TcpListener::bind("127.0.0.2:0")?;
    let port = listener.local_addr()?.port();

    let agent =
        Agent::start(&rel, &policy(port, "    jsonl: \"-\"\n"), Some(workspace().join("target/bench/events.jsonl")))?;
    // Baseline: the producers unpaced, with the agent's hooks deciding.
    let t0 = Instant::now();
    let n = attempts(flood(&netprobe, &cg, port, a.seconds, 0)?)?;
    let baseline = n as f64 / t0.elapsed().as_secs_f64();
    println!("baseline: {PRODUCERS} producers make {baseline:.0} denied connects/s with the agent attached");
    if !a.otlp_only {
        let jsonl = |st: &Value| st["events"]["written"].as_u64().unwrap_or(0);
        let best = ladder("jsonl", &agent, &netprobe, &cg, port, (a.start, &a), &jsonl)?;
        summary("JSON lines", best, baseline, 500_000.0);
    }
    drop(agent);

    if a.otlp {
        let rotel = rotel_binary()?;
        let free = || -> anyhow::Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
        let (grpc, http) = (free()?, free()?);
        let dir = workspace().join("target/bench");
        let mut collector = Command::new(&rotel)
            .args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}"), "--exporter", "blackhole"])
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rotel")?;
        std::thread::sleep(Duration::from_secs(1));
        let sink = format!("    jsonl: \"off\"\n    otlp: {{ endpoint: \"http://127.0.0.1:{grpc}\" }}\n");
        // JSON lines off: only the exporter's cost is measured.
        let agent = Agent::start(&rel, &policy(port, &sink), Some(PathBuf::from("off")))?;
        let otlp = |st: &Value| st["events"]["otlp"]["exported"].as_u64().unwrap_or(0);
        let best = ladder("otlp", &agent, &netprobe, &cg, port, (a.otlp_start, &a), &otlp);
        drop(agent);
        let _ = collector.kill();
        let _ = collector.wait();
        summary("OTLP", best?, baseline, 100_000.0);
    }
    drop(listener);
    Ok(())
}
