//! Bench client: alternates batches of loopback connect() between a
//! baseline cgroup (no warden hooks) and the agent's cgroup, so both see the
//! same machine conditions. Prints one JSON object with all latencies.
use super::stats::percentile;
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    time::Instant,
};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub baseline_cgroup: PathBuf,
    /// name=cgroup pairs measured against the baseline.
    #[arg(long = "case", value_parser = parse_case)]
    pub cases: Vec<(String, PathBuf, String)>,
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

/// `name:cgroup_dir:listen_ip`
fn parse_case(s: &str) -> Result<(String, PathBuf, String), String> {
    let mut it = s.splitn(3, ':');
    match (it.next(), it.next(), it.next()) {
        (Some(n), Some(c), Some(ip)) => Ok((n.into(), c.into(), ip.into())),
        _ => Err("expected name:cgroup:ip".into()),
    }
}

fn join(cgroup: &std::path::Path) -> anyhow::Result<()> {
    std::fs::write(cgroup.join("cgroup.procs"), "0")?;
    Ok(())
}

fn listener(ip: &str) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind((ip, 0))?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    Ok(addr)
}

/// connect() latency in ns; the socket is closed with RST (linger 0) so
/// tens of thousands of connects leave no TIME_WAIT behind.
fn connect_once(addr: &SocketAddr) -> anyhow::Result<u64> {
    let t = Instant::now();
    let s = TcpStream::connect(addr)?;
    let ns = t.elapsed().as_nanos() as u64;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid fd and struct for SO_LINGER.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    Ok(ns)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cases = Vec::new();
    for (name, cg, ip) in &a.cases {
        cases.push((name.clone(), cg.clone(), listener(ip)?, listener(ip)?));
    }
    let mut results: Vec<(String, Vec<u64>, Vec<u64>)> = cases.iter().map(|c| (c.0.clone(), vec![], vec![])).collect();
    // Per-round p50 ratios: a paired statistic that cancels slow drift.
    let mut round_ratios: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    // Warm-up outside the timings.
    for (_, _, addr, base_addr) in &cases {
        for _ in 0..200 {
            connect_once(addr)?;
            connect_once(base_addr)?;
        }
    }
    for _ in 0..a.rounds {
        for (i, (_, cg, addr, base_addr)) in cases.iter().enumerate() {
            // The baseline connects to the same kind of listener from a cgroup
            // without warden's programs.
            join(&a.baseline_cgroup)?;
            let mut base: Vec<u64> = (0..a.batch).map(|_| connect_once(base_addr)).collect::<Result<_, _>>()?;
            join(cg)?;
            let mut with: Vec<u64> = (0..a.batch).map(|_| connect_once(addr)).collect::<Result<_, _>>()?;
            results[i].2.extend_from_slice(&base);
            results[i].1.extend_from_slice(&with);
            base.sort_unstable();
            with.sort_unstable();
            round_ratios[i].push(percentile(&with, 0.5) as f64 / percentile(&base, 0.5).max(1) as f64);
        }
    }
    let out: Vec<serde_json::Value> = results
        .into_iter()
        .zip(round_ratios)
        .map(|((name, mut with, mut base), mut ratios)| {
            with.sort_unstable();
            base.sort_unstable();
            ratios.sort_by(f64::total_cmp);
            serde_json::json!({
                "name": name,
                "n": with.len(),
                "with_p50_ns": super::stats::percentile(&with, 0.5),
                "with_p99_ns": super::stats::percentile(&with, 0.99),
                "base_p50_ns": super::stats::percentile(&base, 0.5),
                "base_p99_ns": super::stats::percentile(&base, 0.99),
                "paired_p50_ratio": ratios.get(ratios.len() / 2).copied().unwrap_or(0.0),
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}
