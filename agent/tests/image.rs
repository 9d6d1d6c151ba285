//! The container image, as CI builds it (`cargo xtask image`: buildah from scratch, no daemon, no registry) and as
//! a node runs it: podman with the chart's capabilities, mounts, read-only root and no network. `--version`,
//! `policy check` and `probe` work in it; it has no shell and nothing but the agent and its libraries.
//!
//! The image is built once per test process (the release build is cached in target/). Each test loads it into
//! podman storage of its own under target/tmp, with a tag and container names unique to the process; all of it is
//! removed on drop, after a failed assertion too.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Instant,
};

use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const ENTRYPOINT: &str = "/usr/local/bin/warden";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// target/image/warden-<version>-<arch>.tar from `cargo xtask image`, once per process. A failed build fails
/// every test with the same message.
fn archive() -> &'static Path {
    static ARCHIVE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ARCHIVE.get_or_init(build) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the image tests run podman as root (CI does)".into());
    }
    // runc: crun refuses this machine's hybrid cgroup layout.
    for tool in ["buildah", "podman", "runc"] {
        if !on_path(tool) {
            return Err(format!("{tool} is missing: run scripts/setup.sh (installs buildah, podman and runc)"));
        }
    }
    let started = Instant::now();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace()).args(["xtask", "image"]);
    // As from a shell, so the release build CI's VM tests made is reused: cargo compares build scripts'
    // rerun-if-env-changed variables (ring's include OUT_DIR and CARGO_MANIFEST_DIR) with its own environment, and
    // this process has the ones cargo sets for tests.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("CARGO_") && k != "CARGO_HOME") || k == "OUT_DIR" || k == "LD_LIBRARY_PATH" {
            cmd.env_remove(&*k);
        }
    }
    let out = cmd.output().map_err(|e| format!("running cargo xtask image: {e}"))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("cargo xtask image failed ({}):\n{}", out.status, tail.join("\n")));
    }
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !path.is_file() {
        return Err(format!("cargo xtask image printed no archive path: {stdout}{stderr}"));
    }
    eprintln!("cargo xtask image: {} in {:.1}s", path.display(), started.elapsed().as_secs_f64());
    Ok(path)
}

/// podman on storage of its own, with the image loaded under a tag unique to this process and test.
struct Podman {
    /// Image storage, and the test's files.
    dir: PathBuf,
    /// podman's runtime state: short, podman refuses a run root of over 50 characters.
    run: PathBuf,
    image: String,
    name: String,
    runs: AtomicU32,
}

impl Podman {
    fn new(test: &str) -> Podman {
        let archive = archive();
        let (pid, seq) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let name = format!("warden-it-{pid}-{seq}-{test}");
        let p = Podman {
            dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name),
            run: std::env::temp_dir().join(format!("warden-img-{pid}-{seq}")),
            image: format!("localhost/{name}:test"),
            name,
            runs: AtomicU32::new(0),
        };
        for d in [&p.dir, &p.run] {
            let _ = std::fs::remove_dir_all(d);
        }
        let load = p.podman(&["load", "--quiet", "--input", archive.to_str().unwrap()]);
        assert!(load.status.success(), "podman load {}: {}", archive.display(), text(&load));
        // "Loaded image: localhost/warden:0.1.0"
        let stdout = String::from_utf8_lossy(&load.stdout);
        let loaded = stdout.lines().last().and_then(|l| l.rsplit(' ').next()).unwrap_or_default().to_string();
        let tag = p.podman(&["tag", &loaded, &p.image]);
        assert!(tag.status.success(), "podman tag {loaded}: {}", text(&tag));
        p
    }

    fn cmd(&self) -> Command {
        // Bounded: a hung container fails the test instead of the whole run.
        let mut c = Command::new("timeout");
        c.args(["--kill-after=10", "180", "podman"]);
        c.arg("--root").arg(self.dir.join("root"));
        c.arg("--runroot").arg(self.run.join("run")).arg("--tmpdir").arg(self.run.join("tmp"));
        // vfs: no overlay or FUSE needed; runc: crun refuses hybrid cgroups (v2 at /sys/fs/cgroup/unified).
        c.args(["--storage-driver", "vfs", "--runtime", "runc"]);
        c.args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"]);
        c
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawning podman")
    }

    /// `podman run` as the DaemonSet runs the agent: host PID namespace, read-only root, no privilege escalation,
    /// no network (the smoke commands need none), then `opts` and the image's entrypoint with `args`.
    fn run(&self, opts: &[&str], args: &[&str]) -> Output {
        let name = format!("{}-{}", self.name, self.runs.fetch_add(1, Ordering::Relaxed));
        let mut c = self.cmd();
        c.args(["run", "--rm", "--name", &name, "--network", "none", "--pid", "host", "--read-only"]);
        c.args(["--security-opt", "no-new-privileges", "--cap-drop", "all"]);
        // podman's default limits (1048576 open files) need CAP_SYS_RESOURCE, which this VM lacks: lower is allowed.
        for (flag, res) in [("nofile", libc::RLIMIT_NOFILE), ("nproc", libc::RLIMIT_NPROC)] {
            c.arg("--ulimit").arg(format!("{flag}={0}:{0}", hard_limit(res).min(4096)));
        }
        c.args(opts).arg(&self.image).args(args);
        c.output().expect("spawning podman run")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.podman(&["rmi", "--all", "--force"]);
        for d in [&self.dir, &self.run] {
            match std::fs::remove_dir_all(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => eprintln!("removing {}: {e}", d.display()),
                _ => {}
            }
        }
    }
}

fn hard_limit(res: libc::__rlimit_resource_t) -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(res, &mut l) }, 0);
    l.rlim_max
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn version_names_the_crate_version() {
    let p = Podman::new("version");
    let out = p.run(&[], &["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("warden {VERSION}"), "{}", text(&out));
    // By name, as `kubectl debug node/… --image=… -- warden uninstall --all` runs it (README).
    let out = p.run(&["--entrypoint", "warden"], &["--version"]);
    assert!(out.status.success(), "`warden` is not on the image's PATH: {}", text(&out));
}

const BAD: &str = "version: 1
segments:
  - name: store
    network:
      - cidr: 10.0.0.300/8
workloads: []
allow: []
";

#[test]
fn policy_check_accepts_the_example_and_names_file_and_line_of_an_error() {
    let p = Podman::new("policy");
    let example = workspace().join("config/example.yaml");
    let mount = format!("{}:/etc/warden/policy.yaml:ro", example.display());
    let out = p.run(&["--volume", &mount], &["policy", "check", "/etc/warden/policy.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/etc/warden/policy.yaml: ok ("), "{}", text(&out));

    let bad = p.dir.join("bad.yaml");
    std::fs::write(&bad, BAD).unwrap();
    let mount = format!("{}:/etc/warden/bad.yaml:ro", bad.display());
    let out = p.run(&["--volume", &mount], &["policy", "check", "/etc/warden/bad.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/etc/warden/bad.yaml:5:") && err.contains("segments[0].network[0].cidr"), "{}", text(&out));
}

/// The pseudo-filesystems a node has mounted at boot (systemd mounts them; this VM does not): the chart mounts
/// /sys/kernel read-only, so the agent in the pod cannot mount them itself.
fn host_mounts() {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for (fstype, target) in
        [("bpf", "/sys/fs/bpf"), ("securityfs", "/sys/kernel/security"), ("tracefs", "/sys/kernel/tracing")]
    {
        let mounted = info.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(f.len());
            f.get(4) == Some(&target) && f.get(sep + 1) == Some(&fstype)
        });
        if !mounted {
            let ok = Command::new("mount").args(["-t", fstype, fstype, target]).status().unwrap().success();
            assert!(ok || std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(target), "mount {target}");
        }
    }
}

/// What the chart adds after dropping ALL: `securityContext.capabilities` in its values.yaml (a flow list).
fn chart_caps() -> Vec<String> {
    let values = std::fs::read_to_string(workspace().join("config/helm/warden/values.yaml")).unwrap();
    let list = values
        .lines()
        .find_map(|l| l.trim().strip_prefix("capabilities: ["))
        .expect("config/helm/warden/values.yaml: no `capabilities: [...]` line");
    let caps: Vec<String> = list.trim_end_matches(']').split(',').map(|c| c.trim().to_string()).collect();
    assert!(caps.iter().any(|c| c == "BPF") && caps.iter().any(|c| c == "SYS_ADMIN"), "chart capabilities: {caps:?}");
    caps
}

fn probe_checks(stdout: &[u8]) -> Vec<(String, bool)> {
    let report: Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("probe --json printed no JSON ({e}):\n{}", String::from_utf8_lossy(stdout)));
    report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {report}"))
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["ok"].as_bool().unwrap()))
        .collect()
}

#[test]
fn probe_in_the_image_sees_the_node_as_the_host_binary_does() {
    host_mounts();
    let p = Podman::new("probe");
    let mut opts = vec![
        // As the chart: seccomp off (bpf(2) and fanotify_init(2)), the node's bpffs, cgroups and /sys/kernel.
        "--security-opt".to_string(),
        "seccomp=unconfined".to_string(),
        "--volume=/sys/fs/bpf:/sys/fs/bpf".to_string(),
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:ro".to_string(),
        "--volume=/sys/kernel:/sys/kernel:ro".to_string(),
    ];
    opts.extend(chart_caps().iter().map(|c| format!("--cap-add={c}")));
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let out = p.run(&opts, &["probe", "--json"]);
    let in_image = probe_checks(&out.stdout);
    // Exit 0 or 3 (a kind not fully enforceable here), as on the host.
    let host = Command::new(WARDEN).args(["probe", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), host.status.code(), "{}", text(&out));
    let on_host = probe_checks(&host.stdout);
    for name in ["BTF", "cgroup v2", "hook: cgroup sock_addr", "hook: tracepoint", "fanotify permission events"] {
        assert!(in_image.iter().any(|(n, ok)| n == name && *ok), "{name} fails in the image:\n{}", text(&out));
    }
    // The chart's capabilities and mounts are enough for everything this node allows.
    let lost: Vec<&String> =
        on_host.iter().filter(|(_, ok)| *ok).filter(|c| !in_image.contains(c)).map(|(n, _)| n).collect();
    assert!(lost.is_empty(), "ok on the host, not in the image: {lost:?}\n{}", text(&out));
}

#[test]
fn no_shell_only_the_agent_and_its_libraries() {
    let p = Podman::new("noshell");
    let out = p.run(&["--entrypoint", "/bin/sh"], &["-c", "true"]);
    assert!(!out.status.success(), "a shell ran in the image: {}", text(&out));

    let mount = p.podman(&["image", "mount", &p.image]);
    assert!(mount.status.success(), "{}", text(&mount));
    let root = PathBuf::from(String::from_utf8_lossy(&mount.stdout).trim());
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let _ = p.podman(&["image", "unmount", &p.image]);
    assert!(files.iter().any(|f| f == ENTRYPOINT), "{files:?}");
    for f in &files {
        let lib = (f.starts_with("/usr/lib/") || f.starts_with("/usr/lib64/")) && f.contains(".so");
        assert!(f == ENTRYPOINT || f == "/etc/passwd" || f == "/etc/group" || lib, "unexpected file {f} in {files:?}");
    }
}

/// Regular files under `dir`, as absolute image paths.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            walk(root, &e.path(), out);
        } else if t.is_file() {
            out.push(format!("/{}", e.path().strip_prefix(root).unwrap().display()));
        }
    }
}

#[test]
fn config_runs_the_agent_as_root_with_labels() {
    let p = Podman::new("config");
    let out = p.podman(&["image", "inspect", &p.image]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = &v[0];
    assert_eq!(img["Config"]["Entrypoint"], serde_json::json!([ENTRYPOINT]), "{img}");
    assert_eq!(img["Config"]["User"], "0:0", "{img}");
    assert_eq!(img["Os"], "linux", "{img}");
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    assert_eq!(img["Architecture"], arch, "{img}");
    let labels = &img["Config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION, "{img}");
    assert!(labels["org.opencontainers.image.source"].as_str().is_some_and(|s| !s.is_empty()), "{img}");
    assert_eq!(img["RootFS"]["Layers"].as_array().map(Vec::len), Some(1), "one layer: {img}");
}
