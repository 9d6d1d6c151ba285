//! Harness for privileged integration tests: real cgroups, the real
//! `warden` binary, real client processes. Each test owns a cgroup subtree,
//! a temp dir, a control socket and an agent; all are cleaned up on drop,
//! including after a failed assertion.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Fails (never skips) without root: CI runs these as root.
pub fn require_root() {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "privileged integration tests must run as root (CI does)");
}

fn unique(name: &str) -> String {
    format!("warden-it-{}-{}-{name}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The cgroup2 mount point, found as the agent finds it (never assumed).
pub fn cgroup2_mount() -> PathBuf {
    let mounts = warden::system::mountinfo::current().expect("read mountinfo");
    warden::system::mountinfo::cgroup2(&mounts).expect("no cgroup2 mount").mount_point.clone()
}

/// A test-owned cgroup subtree.
pub struct TestTree {
    /// Relative to the cgroup2 mount: what `--cgroup-root` takes.
    pub rel: String,
    pub abs: PathBuf,
}

impl TestTree {
    pub fn new(name: &str) -> Self {
        require_root();
        let rel = unique(name);
        let abs = cgroup2_mount().join(&rel);
        std::fs::create_dir(&abs).unwrap_or_else(|e| panic!("mkdir {}: {e}", abs.display()));
        Self { rel, abs }
    }

    /// Detaches the programs and removes the maps agents on this tree pinned.
    pub fn remove_pins(&self) {
        let instance = warden::hooks::pins::instance_name(&self.rel);
        if let Err(e) = warden::hooks::pins::uninstall(Path::new("/sys/fs/bpf"), Some(&instance), false) {
            eprintln!("warning: could not remove the pins of {instance}: {e}");
        }
    }

    /// Creates (nested) child cgroups; returns the absolute path.
    pub fn mkdir(&self, sub: &str) -> PathBuf {
        let p = self.abs.join(sub);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

fn kill_all(dir: &Path) {
    if dir.join("cgroup.kill").exists() {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    } else if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn remove_tree(dir: &Path) {
    kill_all(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("warning: could not remove cgroup {}", dir.display());
}

impl Drop for TestTree {
    /// The tree's agents are gone by now (declared later, dropped first):
    /// their pinned programs and maps go with the tree.
    fn drop(&mut self) {
        self.remove_pins();
        remove_tree(&self.abs);
    }
}

/// The `segments:` block of most tests: one segment `store`, 127.0.0.2:`port`.
pub fn store_segment(port: u16) -> String {
    format!("segments:\n  - name: store\n    network:\n      - cidr: 127.0.0.2/32\n        ports: [{port}]\n")
}

/// A tmpfs of a test's own, mounted on a temp dir and unmounted on drop:
/// the fanotify backend marks whole filesystems, so each test's agent sees
/// only its own files.
pub struct Tmpfs(pub TempDir);

impl Tmpfs {
    pub fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        nix::mount::mount(Some("tmpfs"), &dir.0, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=16m"))
            .expect("mount tmpfs");
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Unmounts a mount a test made when dropped (also when the test panics).
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `warden agent`, scoped to one test tree.
pub struct Agent {
    child: Option<Child>,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub events: PathBuf,
    pub stderr: PathBuf,
    pub config: PathBuf,
}

impl Agent {
    /// Starts the agent and waits until its control socket answers.
    pub fn start(tree: &TestTree, yaml: &str) -> Self {
        Self::start_with_env(tree, yaml, &[])
    }

    /// As `start`, with extra environment for the agent (e.g. `SLURM_CONF`).
    pub fn start_with_env(tree: &TestTree, yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(tree, yaml, env, |_| {})
    }

    /// As `start_with_env`, with `setup` run on the command (e.g. `private_bpffs`).
    pub fn start_with(tree: &TestTree, yaml: &str, env: &[(&str, &str)], setup: impl FnOnce(&mut Command)) -> Self {
        let dir = TempDir::new("agent");
        let config = dir.0.join("warden.yaml");
        std::fs::write(&config, yaml).unwrap();
        let socket = dir.0.join("warden.sock");
        let events = dir.0.join("events.jsonl");
        let stderr = dir.0.join("agent.log");
        let mut cmd = Command::new(WARDEN);
        setup(&mut cmd);
        let child = cmd
            .arg("agent")
            .arg("--config")
            .arg(&config)
            .args(["--cgroup-root", &tree.rel])
            .arg("--socket")
            .arg(&socket)
            .arg("--events")
            .arg(&events)
            .args(["--node-name", "test-node"])
            // Tests run in parallel: never the fixed default port.
            .args(["--metrics-address", "127.0.0.1:0"])
            .env("WARDEN_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn warden");
        let mut agent = Self { child: Some(child), dir, socket, events, stderr, config };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = agent.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("warden exited early ({st}):\n{}", agent.log());
            }
            if agent.try_status().is_some() {
                return agent;
            }
            assert!(Instant::now() < deadline, "warden did not come up:\n{}", agent.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn try_status(&self) -> Option<Value> {
        let out = Command::new(WARDEN).args(["status", "--json", "--socket"]).arg(&self.socket).output().ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    /// `warden status --json`, run as users run it.
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or_else(|| panic!("warden status failed; agent log:\n{}", self.log()))
    }

    /// Every complete event line so far, rotated files (`events.jsonl.N`,
    /// oldest first) included. A line still being written (no newline yet)
    /// is left for the next read; any complete line must parse.
    pub fn events(&self) -> Vec<Value> {
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", self.events.display()));
        let oldest = (1..).take_while(|&n| rotated(n).exists()).last().unwrap_or(0);
        let mut text: String =
            (1..=oldest).rev().map(|n| std::fs::read_to_string(rotated(n)).unwrap_or_default()).collect();
        text.push_str(&std::fs::read_to_string(&self.events).unwrap_or_default());
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
            .collect()
    }

    /// Waits until at least `n` events satisfy `pred`.
    pub fn wait_events(&self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(|e| pred(e)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(Instant::now() < deadline, "expected {n} events, got {found:?}\nall: {:?}", self.events());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Events matching `pred` within `wait` (empty when none came).
    pub fn wait_events_for(&self, wait: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let found: Vec<Value> = self.events().into_iter().filter(|e| pred(e)).collect();
            if !found.is_empty() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `f` until it holds (15 s at most); on timeout shows the
    /// identity status and the agent's non-debug log.
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f() {
            if Instant::now() >= deadline {
                let log: Vec<String> = self.log().lines().filter(|l| !l.contains("DEBUG")).map(String::from).collect();
                panic!("timed out waiting until {what}: {}\n{}", self.status()["identity"], log.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGSTOP, returning once every thread (the decision threads too) is
    /// stopped: from then on nothing the agent must answer is answered.
    /// `thaw` resumes it.
    pub fn freeze(&self) {
        let pid = self.pid() as i32;
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stopped() {
            assert!(Instant::now() < deadline, "the agent did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn thaw(&self) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGCONT) };
    }

    /// SIGKILL and wait: the agent dies without any cleanup of its own.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// A child process killed and reaped when dropped (also when a test panics).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Outcome of one netprobe run.
#[derive(Debug)]
pub struct Probe {
    pub code: i32,
    pub pid: u32,
    pub output: String,
}

impl Probe {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    pub fn eperm(&self) -> bool {
        self.code == 2
    }
    /// ENXIO/ENODEV: the open passed every hook and found no driver.
    pub fn nodev(&self) -> bool {
        self.code == 4
    }
}

pub const NETPROBE: &str = env!("CARGO_BIN_EXE_warden-netprobe");
pub const FILEPROBE: &str = env!("CARGO_BIN_EXE_warden-fileprobe");

/// Runs the real client inside `cgroup`: mode is tcp | udp-connect | udp-sendto.
pub fn netprobe(cgroup: &Path, mode: &str, addr: &str, port: u16) -> Probe {
    run_netprobe(cgroup, 150, &[mode, addr, &port.to_string()])
}

fn run_netprobe(cgroup: &Path, linger_ms: u32, args: &[&str]) -> Probe {
    let child = Command::new(NETPROBE)
        .arg("--cgroup")
        .arg(cgroup)
        .args(["--linger-ms", &linger_ms.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    Probe { code: out.status.code().unwrap_or(-1), pid, output: String::from_utf8_lossy(&out.stdout).into_owned() }
}

/// Runs `warden-fileprobe` inside `cgroup` (see its docs for ops and codes).
pub fn fileprobe(cgroup: &Path, args: &[&str]) -> Probe {
    let child = Command::new(FILEPROBE)
        .arg("--cgroup")
        .arg(cgroup)
        .args(["--linger-ms", "100"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    Probe { code: out.status.code().unwrap_or(-1), pid, output: String::from_utf8_lossy(&out.stdout).into_owned() }
}

/// A TCP listener that accepts in the background (so connects complete).
pub fn tcp_listener(addr: &str) -> u16 {
    let l = std::net::TcpListener::bind((addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    port
}

/// Runs `cmd` in a mount namespace of its own with a fresh bpffs at
/// /sys/fs/bpf: what a pod that mounts its own bpffs sees.
pub fn private_bpffs(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let null = std::ptr::null();
            let ok = |r: i32| if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            ok(libc::unshare(libc::CLONE_NEWNS))?;
            ok(libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
            ok(libc::mount(c"bpf".as_ptr(), c"/sys/fs/bpf".as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()))
        })
    };
}

/// A TCP listener that counts the connections it accepted: a denial holds
/// only if this stays put.
pub fn counting_listener(addr: &str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind((addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            if s.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, count)
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The `workloads` row named `name` of a status report.
pub fn workload<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no workload {name} in {status}"))
}

/// `warden-netprobe flood|flood-udp` to 127.0.0.2:`port` from `cgroup`
/// for `secs` at `rate` per second (0: as fast as it can): its counts
/// (`attempts`, `denied`, `ok`, `other`).
pub fn flood(cgroup: &Path, mode: &str, port: u16, secs: f64, rate: u64) -> Value {
    let out = Command::new(NETPROBE)
        .arg("--cgroup")
        .arg(cgroup)
        .args([mode, "127.0.0.2", &port.to_string(), &secs.to_string(), &rate.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "flood failed: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `RssAnon`...) in bytes;
/// 0 once the process is gone.
pub fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// The anonymous mappings of `pid` holding more than 256 KiB resident, for
/// a failure message that says where memory stayed.
pub fn anon_mappings(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = String::new();
    let mut head = "";
    for line in smaps.lines() {
        if line.split_whitespace().next().is_some_and(|f| f.contains('-')) {
            head = line;
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            let kib: u64 = v.trim().trim_end_matches(" kB").parse().unwrap_or(0);
            if kib > 256 {
                out.push_str(&format!("\n  {kib:>7} KiB  {head}"));
            }
        }
    }
    out
}

/// Runs `warden-netprobe` in `cgroup` with any arguments (the bypass modes).
pub fn netprobe_args(cgroup: &Path, args: &[&str]) -> Probe {
    run_netprobe(cgroup, 50, args)
}
