//! `cargo xtask bench files`: open() latency with the fanotify backend.
//!
//! Rounds alternate three phases on the same files: no listener, a minimal
//! allow-all fanotify listener (the platform floor: two context switches per
//! open), and warden. Paths: inside a segment, outside it on the same
//! (marked) tmpfs, and on a second, unmarked tmpfs. Also 4 KiB writes with
//! and without the agent, whose change watcher sees every write on a marked
//! filesystem (FAN_MODIFY).
use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Context;

use super::{
    agent::{Agent, cgroup2_mount},
    stats::percentile,
};
use crate::util::workspace;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 2000)]
    opens: usize,
    /// Access granted to the measuring workload: `read` makes the agent read
    /// the opener's flags; `read-write` needs no flags.
    #[arg(long, default_value = "read")]
    access: String,
    /// Where the agent writes its events (default: target/bench/files/events.jsonl).
    #[arg(long)]
    events: Option<PathBuf>,
}

fn mount_tmpfs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let src = CString::new("tmpfs")?;
    let target = CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        anyhow::bail!("mount tmpfs at {}: {}", dir.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

fn umount(dir: &Path) {
    if let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// open()+close() latencies in ns.
fn measure(path: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        v.push(t.elapsed().as_nanos() as u64);
        drop(f);
    }
    Ok(v)
}

/// 4 KiB pwrite() latencies in ns, to one open file: the cost of the
/// agent's change watcher (FAN_MODIFY on every marked filesystem) to writers.
fn measure_writes(path: &Path, n: usize) -> anyhow::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).with_context(|| format!("open {}", path.display()))?;
    let block = [7u8; 4096];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all_at(&block, 0)?;
        v.push(t.elapsed().as_nanos() as u64);
    }
    Ok(v)
}

/// The smallest useful permission listener: answers FAN_ALLOW to everything.
struct MinimalListener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// A file on the marked filesystem: opening it wakes the blocked read.
    poke: PathBuf,
}

impl MinimalListener {
    fn start(fs: &Path) -> anyhow::Result<Self> {
        // SAFETY: plain syscalls; the fd is owned below.
        let fd = unsafe { libc::fanotify_init(libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC, libc::O_RDONLY as u32) };
        anyhow::ensure!(fd >= 0, "fanotify_init: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let p = CString::new(fs.as_os_str().as_encoded_bytes())?;
        let flags = libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM;
        // SAFETY: valid fd and path.
        let r = unsafe { libc::fanotify_mark(fd.as_raw_fd(), flags, libc::FAN_OPEN_PERM, libc::AT_FDCWD, p.as_ptr()) };
        anyhow::ensure!(r == 0, "fanotify_mark: {}", std::io::Error::last_os_error());
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
            // Blocking read, as a real listener does: no extra wake-up hop.
            while !s.load(Ordering::Relaxed) {
                // SAFETY: buf is valid.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                let mut off = 0;
                while n > 0 && off + meta <= n as usize {
                    // SAFETY: bounds checked above.
                    let m: libc::fanotify_event_metadata =
                        unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                    if m.fd >= 0 {
                        let resp = libc::fanotify_response { fd: m.fd, response: libc::FAN_ALLOW };
                        // SAFETY: writing a valid response; closing the event fd we own.
                        unsafe {
                            libc::write(fd.as_raw_fd(), (&resp as *const libc::fanotify_response).cast(), 8);
                            libc::close(m.fd);
                        }
                    }
                    off += (m.event_len as usize).max(meta);
                }
            }
        });
        Ok(Self { stop, thread: Some(thread), poke: fs.join("poke") })
    }
}

impl Drop for MinimalListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // One more open: the listener answers it, sees `stop` and exits.
        let _ = std::fs::write(&self.poke, "");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Cleanup {
    dirs: Vec<PathBuf>,
    cgroup: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Leave the bench cgroup, then remove it.
        if let Ok(root) = cgroup2_mount() {
            let _ = std::fs::write(root.join("cgroup.procs"), "0");
        }
        let _ = std::fs::remove_dir(self.cgroup.join("reader"));
        let _ = std::fs::remove_dir(&self.cgroup);
        for d in &self.dirs {
            umount(d);
        }
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let base = workspace().join("target/bench/files");
    let (marked, plain) = (base.join("marked"), base.join("plain"));
    let rel = format!("warden-bench-files-{}", std::process::id());
    let cg = cgroup2_mount()?.join(&rel);
    std::fs::create_dir_all(cg.join("reader"))?;
    let _guard = Cleanup { dirs: vec![marked.clone(), plain.clone()], cgroup: cg.clone() };
    mount_tmpfs(&marked)?;
    mount_tmpfs(&plain)?;
    for d in [marked.join("data/sub"), marked.join("other"), plain.clone()] {
        std::fs::create_dir_all(d)?;
    }
    let inside = marked.join("data/sub/f");
    let outside = marked.join("other/f");
    let unmarked = plain.join("f");
    for f in [&inside, &outside, &unmarked] {
        std::fs::write(f, "payload")?;
    }
    let policy = format!(
        "version: 1\nagent:\n  files: {{ backend: fanotify }}\nsegments:\n  - name: data\n    paths: [{}]\n\
         workloads:\n  - name: reader\n    selector: {{ cgroup: reader }}\nallow:\n  - workload: reader\n    segment: data\n    access: {}\n",
        marked.join("data").display(),
        a.access
    );
    // This process is the client: it runs in the workload's cgroup.
    std::fs::write(cg.join("reader/cgroup.procs"), "0")?;

    let paths = [("inside segment", &inside), ("outside, same fs", &outside), ("unmarked fs", &unmarked)];
    // samples[phase][path]
    let mut samples = vec![vec![Vec::new(); 3]; 3];
    // Per round and path: warden p99 - minimal-listener p99 (paired, so slow
    // drift of this shared machine cancels out).
    let mut paired = vec![Vec::new(); 3];
    let p99 = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        percentile(&v, 0.99) as f64 / 1e3
    };
    let mut rss = String::new();
    // writes[phase: none, warden][path: outside same fs, unmarked fs]
    let write_paths = [("outside, same fs", &outside), ("unmarked fs", &unmarked)];
    let mut writes = vec![vec![Vec::new(); 2]; 2];
    for _ in 0..a.rounds {
        for (i, (_, p)) in paths.iter().enumerate() {
            samples[0][i].extend(measure(p, a.opens)?);
        }
        for (i, (_, p)) in write_paths.iter().enumerate() {
            writes[0][i].extend(measure_writes(p, a.opens)?);
        }
        let mut floor = Vec::new();
        {
            let _l = MinimalListener::start(&marked)?;
            for (i, (_, p)) in paths.iter().enumerate() {
                let v = measure(p, a.opens)?;
                floor.push(p99(&v));
                samples[1][i].extend(v);
            }
        }
        let agent = Agent::start(&rel, &policy, Some(a.events.clone().unwrap_or_else(|| base.join("events.jsonl"))))?;
        for (i, (_, p)) in paths.iter().enumerate() {
            let v = measure(p, a.opens)?;
            paired[i].push(p99(&v) - floor[i]);
            samples[2][i].extend(v);
        }
        for (i, (_, p)) in write_paths.iter().enumerate() {
            writes[1][i].extend(measure_writes(p, a.opens)?);
        }
        rss = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))?
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
            .unwrap_or_default();
        let st = agent.status()?;
        anyhow::ensure!(
            st["enforcement"][1]["backend"] == "fanotify",
            "expected the fanotify backend: {}",
            st["enforcement"][1]
        );
    }
    println!(
        "\nwarden bench files — fanotify backend, access {}, {} rounds x {} opens per path and phase",
        a.access, a.rounds, a.opens
    );
    println!(
        "{:<18}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>14}",
        "path", "none p50", "none p99", "min p50", "min p99", "warden p50", "warden p99", "vs min p99"
    );
    for (i, (name, _)) in paths.iter().enumerate() {
        let q = |ph: usize, p: f64| {
            let mut v = samples[ph][i].clone();
            v.sort_unstable();
            percentile(&v, p) as f64 / 1e3
        };
        println!(
            "{:<18}{:>9.1}µs{:>9.1}µs{:>9.1}µs{:>9.1}µs{:>9.1}µs{:>9.1}µs{:>+12.1}µs",
            name,
            q(0, 0.5),
            q(0, 0.99),
            q(1, 0.5),
            q(1, 0.99),
            q(2, 0.5),
            q(2, 0.99),
            q(2, 0.99) - q(1, 0.99)
        );
    }
    let paired: Vec<String> = paths
        .iter()
        .zip(&mut paired)
        .map(|((name, _), d)| {
            d.sort_by(f64::total_cmp);
            format!("{name} {:+.1}µs", d[d.len() / 2])
        })
        .collect();
    println!("paired p99 excess over the minimal listener (median of per-round differences): {}", paired.join(", "));
    println!("agent peak RSS {rss}; 'min' = minimal allow-all fanotify listener on the same filesystem");
    println!("4 KiB pwrite() to an open file (the change watcher's FAN_MODIFY), none -> warden:");
    for (i, (name, _)) in write_paths.iter().enumerate() {
        let q = |ph: usize, p: f64| {
            let mut v = writes[ph][i].clone();
            v.sort_unstable();
            percentile(&v, p) as f64 / 1e3
        };
        println!(
            "  {name:<18} p50 {:.2}µs -> {:.2}µs (ratio {:.2}), p99 {:.2}µs -> {:.2}µs (ratio {:.2})",
            q(0, 0.5),
            q(1, 0.5),
            q(1, 0.5) / q(0, 0.5),
            q(0, 0.99),
            q(1, 0.99),
            q(1, 0.99) / q(0, 0.99)
        );
    }
    Ok(())
}
