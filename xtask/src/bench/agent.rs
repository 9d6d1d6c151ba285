//! A release `warden agent` started for a benchmark, stopped on drop.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::util::{self, cargo, workspace};

pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    text.lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(_, post)| post.starts_with("cgroup2 "))
        .and_then(|(pre, _)| pre.split(' ').nth(4).map(PathBuf::from))
        .context("no cgroup2 mount")
}

/// A line of `/proc/<pid>/status` after `key` (e.g. `VmRSS:` → `5120 kB`).
pub fn status_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

pub struct Agent {
    child: Child,
    cgroup_root: String,
    pub warden: PathBuf,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Agent {
    /// Builds the release binary and starts it at `cgroup_root` (relative to
    /// the cgroup2 mount); events go to `events` (`off`: none) or
    /// target/bench/events.jsonl.
    pub fn start(cgroup_root: &str, policy: &str, events: Option<PathBuf>) -> anyhow::Result<Self> {
        util::run(cargo().args(["build", "--release", "-p", "warden", "--bin", "warden"]))?;
        let warden = workspace().join("target/release/warden");
        let dir = workspace().join("target/bench");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("policy.yaml");
        std::fs::write(&config, policy)?;
        let socket = dir.join("warden.sock");
        let events = events.unwrap_or_else(|| dir.join("events.jsonl"));
        if events != Path::new("off") {
            let _ = std::fs::remove_file(&events);
        }
        let child = Command::new(&warden)
            .args(["agent", "--config"])
            .arg(&config)
            .args(["--cgroup-root", cgroup_root, "--socket"])
            .arg(&socket)
            .arg("--events")
            .arg(&events)
            .args(["--metrics-address", "off"])
            .stderr(std::fs::File::create(dir.join("agent.log"))?)
            .spawn()?;
        let agent = Self { child, cgroup_root: cgroup_root.to_string(), warden, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent.status().is_err() {
            if Instant::now() > deadline {
                bail!("agent did not start; see {}", agent.dir.join("agent.log").display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(&self.warden).args(["status", "--json", "--socket"]).arg(&self.socket).output()?;
        if !out.status.success() {
            bail!("warden status: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Enforcement outlives the agent (pinned links): remove it too.
        let _ = Command::new(&self.warden)
            .args(["uninstall", "--cgroup-root", &self.cgroup_root, "--socket"])
            .arg(&self.socket)
            .stdout(std::process::Stdio::null())
            .status();
    }
}
