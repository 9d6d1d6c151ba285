//! `cargo xtask bench reload`: config file change → new policy enforced,
//! p50/p99 over many reloads, for a small policy and a 10,000-prefix one.
//!
//! Each step rewrites the file the way editors do (write aside, rename) and
//! waits for the agent's `policy` event: it is written after the kernel's
//! policy set has flipped, so its arrival means the new policy is enforced.
//! Consecutive policies shift every workload id, so each reload rewrites
//! every table. Baseline, same run: the same rename seen by an inotify watch
//! in this process, the floor any file-watching agent pays.
use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{
    agent::{Agent, cgroup2_mount},
    stats::percentile,
};
use crate::util::workspace;

#[derive(clap::Args)]
pub struct Args {
    /// Reloads per policy size.
    #[arg(long, default_value_t = 100)]
    reloads: usize,
    /// Prefixes of the large policy.
    #[arg(long, default_value_t = 10_000)]
    prefixes: usize,
}

/// The net bench's policy, with every workload id shifted when `shift`.
fn variant(prefixes: usize, shift: bool) -> String {
    let p = super::net::policy(prefixes);
    if shift { p.replace("workloads:\n", "workloads:\n  - name: shift\n    selector: { cgroup: shift }\n") } else { p }
}

fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads JSON lines appended to a file since the last call.
struct Tail {
    file: std::fs::File,
    pos: u64,
    partial: String,
}

impl Tail {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let mut file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        let pos = file.seek(SeekFrom::End(0))?;
        Ok(Self { file, pos, partial: String::new() })
    }

    fn lines(&mut self) -> Vec<Value> {
        let mut buf = String::new();
        let _ = self.file.seek(SeekFrom::Start(self.pos));
        if let Ok(n) = self.file.read_to_string(&mut buf) {
            self.pos += n as u64;
        }
        self.partial.push_str(&buf);
        let Some(end) = self.partial.rfind('\n') else { return Vec::new() };
        let complete: String = self.partial.drain(..=end).collect();
        complete.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

/// (end-to-end µs, in-agent µs) of each reload.
fn measure(agent: &Agent, events: &Path, prefixes: usize, reloads: usize) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let config = agent.dir.join("policy.yaml");
    let mut tail = Tail::open(events)?;
    let (mut e2e, mut inside) = (Vec::new(), Vec::new());
    for i in 0..reloads {
        let want = i as u64 + 2;
        let text = variant(prefixes, i % 2 == 0);
        let t0 = Instant::now();
        replace_file(&config, &text)?;
        let event = loop {
            if let Some(e) = tail.lines().into_iter().find(|e| e["kind"] == "policy" && e["generation"] == want) {
                break e;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("no policy event for generation {want} within 10 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        e2e.push(t0.elapsed().as_micros() as u64);
        if event["result"] != "applied" {
            bail!("reload {i} refused: {event}");
        }
        inside.push(event["duration_us"].as_u64().unwrap_or(0));
    }
    Ok((e2e, inside))
}

/// Rename → IN_MOVED_TO on a watch of the directory, in this process.
fn inotify_floor(dir: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(dir)?;
    // SAFETY: plain syscalls; the fd is closed below.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        bail!("inotify_init1: {}", std::io::Error::last_os_error());
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: valid fd and path.
    if unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE) } < 0 {
        bail!("inotify_add_watch: {}", std::io::Error::last_os_error());
    }
    let file = dir.join("policy.yaml");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..n {
        let t0 = Instant::now();
        replace_file(&file, &format!("version: 1 # {i}\n"))?;
        loop {
            // SAFETY: reading into our buffer.
            let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r < 0 {
                bail!("reading inotify: {}", std::io::Error::last_os_error());
            }
            // IN_CLOSE_WRITE of the temp file comes first, the rename last.
            if moved_in(&buf[..r as usize]) {
                break;
            }
        }
        out.push(t0.elapsed().as_micros() as u64);
    }
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    let _ = std::fs::remove_dir_all(dir);
    Ok(out)
}

/// Whether a read of inotify records holds an IN_MOVED_TO.
fn moved_in(mut b: &[u8]) -> bool {
    while b.len() >= 16 {
        let mask = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
        if mask & libc::IN_MOVED_TO != 0 {
            return true;
        }
        b = b.get(16 + len..).unwrap_or_default();
    }
    false
}

fn row(label: &str, mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "  {label:<44} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        v.last().copied().unwrap_or(0) as f64 / 1e3
    );
    (p50, p99)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rel = format!("warden-bench-reload-{}", std::process::id());
    let tree = cgroup2_mount()?.join(&rel);
    std::fs::create_dir_all(tree.join("bench"))?;
    let result = (|| -> anyhow::Result<()> {
        let floor = inotify_floor(&workspace().join("target/bench/reload-floor"), a.reloads)?;
        println!("{} reloads per policy; each shifts every workload id", a.reloads);
        let (f50, f99) = row("baseline: rename seen by inotify (floor)", floor);
        for prefixes in [10, a.prefixes] {
            let events = workspace().join("target/bench/reload-events.jsonl");
            let agent = Agent::start(&rel, &variant(prefixes, false), Some(events.clone()))?;
            let (e2e, inside) = measure(&agent, &events, prefixes, a.reloads)?;
            drop(agent);
            println!("policy of {prefixes} prefixes:");
            let (p50, p99) = row("file change → new policy enforced", e2e);
            row("  of which reading, checking, switching", inside);
            println!(
                "  ratio to the floor: p50 ×{:.1}, p99 ×{:.1}; target ≤ 100 ms: {}",
                p50 as f64 / f50.max(1) as f64,
                p99 as f64 / f99.max(1) as f64,
                if p99 <= 100_000 { "met" } else { "NOT met" }
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(tree.join("bench"));
    let _ = std::fs::remove_dir(&tree);
    result
}
