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
    /// Instead of connects: bulk TCP throughput, this many bytes per side
    /// and round.
    #[arg(long)]
    pub bulk_bytes: Option<u64>,
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

/// A listener that reads and discards everything it is sent.
fn sink(ip: &str) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind((ip, 0))?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
        }
    });
    Ok(addr)
}

/// Seconds to send `bytes` over one loopback TCP connection.
fn bulk_once(addr: &SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    use std::io::Write;
    let buf = vec![0x5au8; 256 << 10];
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    // Wait for the reader to finish: it closes after reading everything.
    let mut end = [0u8; 1];
    let _ = std::io::Read::read(&mut s, &mut end);
    Ok(t.elapsed().as_secs_f64())
}

/// Bulk throughput, alternating the baseline cgroup and the case's.
fn bulk(a: &Args, bytes: u64) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for (name, cg, ip) in &a.cases {
        let (addr, base_addr) = (sink(ip)?, sink(ip)?);
        let (mut with, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.rounds {
            join(&a.baseline_cgroup)?;
            let b = bulk_once(&base_addr, bytes)?;
            join(cg)?;
            let w = bulk_once(&addr, bytes)?;
            let gib = bytes as f64 / (1u64 << 30) as f64;
            base.push(gib / b);
            with.push(gib / w);
            ratios.push(b / w);
        }
        for v in [&mut with, &mut base, &mut ratios] {
            v.sort_by(f64::total_cmp);
        }
        out.push(serde_json::json!({
            "name": name,
            "with_gib_s": with[with.len() / 2],
            "base_gib_s": base[base.len() / 2],
            "paired_ratio": ratios[ratios.len() / 2],
        }));
    }
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(bytes) = a.bulk_bytes {
        return bulk(&a, bytes);
    }
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
