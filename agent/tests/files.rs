//! File segments on the host kernel, which refuses BPF-LSM programs: the
//! agent must pick the fanotify backend, enforce opens, and say which
//! operations it cannot enforce. Real tmpfs, real processes, real cgroups.
mod file_cases;
mod harness;

use std::{path::Path, process::Command, time::Duration};

use file_cases::*;
use harness::*;

/// The case table's tree on a tmpfs of the test's own.
struct TestFs {
    fs: Tmpfs,
}

impl TestFs {
    fn new(name: &str) -> Self {
        let fs = Tmpfs::new(name);
        let dir = &fs.0.0;
        for d in DIRS {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        for f in FILES {
            std::fs::write(dir.join(f), "payload").unwrap();
        }
        std::os::unix::fs::symlink(dir.join("data"), dir.join("outside/link")).unwrap();
        Self { fs }
    }

    fn base(&self) -> &Path {
        &self.fs.0.0
    }
}

fn setup(name: &str, mode: &str) -> (TestTree, TestFs, Agent) {
    let tree = TestTree::new(name);
    for w in [Who::Reader, Who::Writer, Who::Other, Who::Unidentified] {
        tree.mkdir(cgroup_of(w));
    }
    let fs = TestFs::new(name);
    let agent = Agent::start(&tree, &policy(fs.base().to_str().unwrap(), mode));
    (tree, fs, agent)
}

fn run(tree: &TestTree, fs: &TestFs, c: &Case) -> Probe {
    let p = |s: &str| fs.base().join(s).to_string_lossy().into_owned();
    let mut args = vec![c.op.to_string(), p(c.path)];
    if !c.second.is_empty() {
        args.push(p(c.second));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fileprobe(&tree.abs.join(cgroup_of(c.who)), &args)
}

#[test]
fn fanotify_backend_runs_the_shared_case_table() {
    let (tree, fs, agent) = setup("fcases", "enforce");
    let st = agent.status();
    let files = st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "files").unwrap().clone();
    assert_eq!(files["backend"], "fanotify", "{files}");
    assert_eq!(files["state"], "partial", "namespace ops cannot be enforced by fanotify: {files}");
    assert!(files["reason"].as_str().unwrap().contains("BPF-LSM unavailable"), "{files}");
    let blind = files["not_enforced"].to_string();
    for op in ["rename", "unlink", "hard link"] {
        assert!(blind.contains(op), "status must list {op} as not enforced: {blind}");
    }

    let mut failures = Vec::new();
    for c in CASES {
        let r = run(&tree, &fs, c);
        // fanotify cannot block namespace operations: they go through.
        let want_denied = c.denied && !c.namespace_op;
        let ok = if want_denied { r.eperm() } else { r.ok() };
        if !ok {
            failures.push(format!("{}: expected {}, got {r:?}", c.name, if want_denied { "EPERM" } else { "ok" }));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\nagent log:\n{}", agent.log());

    let denied = agent.wait_events(1, |e| e["kind"] == "file" && e["verdict"] == "denied" && e["workload"] == "other");
    let e = &denied[0];
    assert_eq!(e["segment"], "datasets");
    assert_eq!(e["backend"], "fanotify");
    assert_eq!(e["operation"], "open");
    assert_eq!(e["comm"], "warden-fileprob");
    assert_eq!(e["exe"], FILEPROBE);
    assert_eq!(e["cgroup"], tree.abs.join(cgroup_of(Who::Other)).to_str().unwrap(), "same form as network events");
    assert!(e["file"]["path"].as_str().unwrap().starts_with(fs.base().join("data").to_str().unwrap()), "{e}");
    let writes = agent.events();
    let w = writes.iter().find(|e| e["workload"] == "reader" && e["verdict"] == "denied").expect("reader write deny");
    assert_eq!(w["file"]["access"], "write");

    let st = agent.status();
    let w = |name: &str| st["workloads"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap().clone();
    let cases_for = |who: Who, denied: bool| {
        CASES
            .iter()
            .filter(|c| c.who == who && !c.namespace_op && c.denied == denied && c.path.starts_with("data/"))
            .count()
            + CASES
                .iter()
                .filter(|c| c.who == who && !c.namespace_op && c.denied == denied && c.path.starts_with("outside/link"))
                .count()
    };
    assert_eq!(w("other")["file_denied"].as_u64().unwrap() as usize, cases_for(Who::Other, true));
    assert_eq!(w("reader")["file_denied"].as_u64().unwrap() as usize, cases_for(Who::Reader, true));
    assert_eq!(w("(unidentified)")["file_denied"], 1);
    assert_eq!(st["events"]["file_errors"], 0);

    // Restart safety rests on the keeper: status says so, and says when it
    // is gone (killed), never claiming what no longer holds.
    let row = |st: &serde_json::Value| {
        st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "files").unwrap().clone()
    };
    assert!(row(&st)["restart"].as_str().unwrap().contains("keeper decides"), "{}", row(&st));
    let instance = warden::hooks::pins::instance_name(&tree.rel);
    let keeper = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.contains(&&b"fan-keeper"[..]) && args.contains(&instance.as_bytes())
        })
        .expect("the instance's keeper runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(keeper), nix::sys::signal::Signal::SIGKILL).unwrap();
    agent.eventually("status says the keeper is gone", || {
        row(&agent.status())["restart"].as_str().unwrap().contains("no keeper process")
    });
}

#[test]
fn bind_mount_of_the_tree_is_still_enforced() {
    let (tree, fs, _agent) = setup("fbind", "enforce");
    let view = TempDir::new("bindview");
    nix::mount::mount(Some(&fs.base().join("data")), &view.0, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .unwrap();
    let _bind = Unmount(view.0.clone());
    let other = tree.abs.join(cgroup_of(Who::Other));
    let reader = tree.abs.join(cgroup_of(Who::Reader));
    let through_bind = view.0.join("f");
    let denied = fileprobe(&other, &["read", through_bind.to_str().unwrap()]);
    let allowed = fileprobe(&reader, &["read", through_bind.to_str().unwrap()]);
    assert!(denied.eperm(), "other through a bind mount: {denied:?}");
    assert!(allowed.ok(), "reader through a bind mount: {allowed:?}");
}

#[test]
fn audit_mode_logs_and_allows_file_access() {
    let (tree, fs, agent) = setup("faudit", "audit");
    let other = tree.abs.join(cgroup_of(Who::Other));
    let r = fileprobe(&other, &["read", fs.base().join("data/f").to_str().unwrap()]);
    assert!(r.ok(), "audit must not block: {r:?}");
    let ev = agent.wait_events(1, |e| e["kind"] == "file" && e["verdict"] == "audited");
    assert_eq!(ev[0]["workload"], "other");
    assert_eq!(ev[0]["tgid"], r.pid);
}

/// A probe run in the background: (exit code, stdout, how long it took).
fn spawn_probe(cgroup: Option<&Path>, args: &[&str]) -> std::thread::JoinHandle<(i32, String, Duration)> {
    let mut cmd = Command::new(FILEPROBE);
    if let Some(cg) = cgroup {
        cmd.arg("--cgroup").arg(cg);
    }
    cmd.args(args).stdout(std::process::Stdio::piped());
    let started = std::time::Instant::now();
    let child = cmd.spawn().unwrap();
    std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), started.elapsed())
    })
}

#[test]
fn a_killed_or_stopped_agent_never_lets_a_held_open_through() {
    let (tree, fs, mut agent) = setup("fkill", "enforce");
    std::fs::write(fs.base().join("data/secret"), "SECRET:data/secret").unwrap();
    let (reader, other) = (tree.abs.join(cgroup_of(Who::Reader)), tree.abs.join(cgroup_of(Who::Other)));
    let (secret, plain) = (fs.base().join("data/secret"), fs.base().join("outside/o"));
    let (secret, plain) = (secret.to_str().unwrap(), plain.to_str().unwrap());

    // 1. SIGKILL while opens wait: the held protected opens are denied (the
    // keeper holds the group), never answered "allow" by the kernel.
    agent.freeze();
    let held =
        [spawn_probe(Some(&reader), &["read-bytes", secret]), spawn_probe(Some(&other), &["read-bytes", secret])];
    std::thread::sleep(Duration::from_millis(300));
    assert!(held.iter().all(|h| !h.is_finished()), "opens are held while the agent decides");
    agent.kill9();
    for h in held {
        let (code, out, took) = h.join().unwrap();
        assert_eq!(code, 2, "a held protected open is denied after SIGKILL: {out}");
        assert!(!out.contains("SECRET"), "no protected byte moved: {out}");
        assert!(took < Duration::from_secs(3), "released in {took:?}");
    }

    // 2. No agent: the keeper decides, fail closed. Files outside every
    // segment open at once, for anyone; protected ones are denied to
    // governed openers, also allowed ones, until an agent is back.
    let (code, out, took) = spawn_probe(None, &["read-bytes", plain]).join().unwrap();
    assert!(code == 0 && took < Duration::from_secs(1), "unprotected open with no agent: {code} {out} {took:?}");
    let (code, out, _) = spawn_probe(Some(&other), &["read-bytes", plain]).join().unwrap();
    assert_eq!(code, 0, "a governed workload's unprotected open with no agent: {out}");
    let (code, out, _) = spawn_probe(Some(&reader), &["read-bytes", secret]).join().unwrap();
    assert!(code == 2 && !out.contains("SECRET"), "with no agent a protected open is denied: {code} {out}");

    // 3. A new agent takes the group over and decides again.
    let mut agent = Agent::start(&tree, &policy(fs.base().to_str().unwrap(), "enforce"));
    agent.eventually("the new agent took the keeper's group", || agent.log().contains("took the fanotify group over"));
    let (code, out, _) = spawn_probe(Some(&reader), &["read-bytes", secret]).join().unwrap();
    assert!(code == 0 && out.contains("SECRET"), "the reader reads again: {code} {out}");
    let (code, out, _) = spawn_probe(Some(&other), &["read-bytes", secret]).join().unwrap();
    assert!(code == 2 && !out.contains("SECRET"), "other is still denied: {code} {out}");

    // 4. A stopped agent (SIGSTOP) is ended by its keeper within about a
    // second: an unprotected open by a process outside the cgroup root
    // waits no longer than that, and the protected one is denied.
    agent.freeze();
    let plain_open = spawn_probe(None, &["read-bytes", plain]);
    let protected = spawn_probe(Some(&other), &["read-bytes", secret]);
    let (code, out, took) = plain_open.join().unwrap();
    assert!(
        code == 0 && took < Duration::from_millis(2500),
        "unprotected open on a stopped agent: {code} {out} {took:?}"
    );
    let (code, out, _) = protected.join().unwrap();
    assert!(code == 2 && !out.contains("SECRET"), "protected open on a stopped agent: {code} {out}");
    agent.kill9();
    // The test tree's removal stops the keeper (as `warden uninstall` does).
}

#[test]
fn forced_backend_that_cannot_work_refuses_to_start() {
    // This host refuses BPF-LSM programs: forcing `lsm` in enforce mode must
    // refuse to start with the reason, never fall back or silently audit.
    let tree = TestTree::new("fforce");
    let fs = TestFs::new("fforce");
    let yaml = policy(fs.base().to_str().unwrap(), "enforce")
        .replace("version: 1\n", "version: 1\nagent:\n  files:\n    backend: lsm\n");
    let dir = TempDir::new("fforce-cfg");
    let cfg = dir.0.join("p.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(WARDEN)
        .args(["agent", "--config", cfg.to_str().unwrap(), "--cgroup-root", &tree.rel, "--socket"])
        .arg(dir.0.join("s.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse: {err}");
    assert!(err.contains("refusing to start in enforce mode") && err.contains("BPF-LSM unavailable"), "{err}");
}

#[test]
fn a_root_that_appears_later_is_protected_without_restart() {
    // A dataset volume mounted after the agent started: its root is missing
    // at start (reported), then protected once it exists, on a filesystem
    // the agent had not marked before.
    let tree = TestTree::new("flate");
    for w in [Who::Reader, Who::Other] {
        tree.mkdir(cgroup_of(w));
    }
    let fs = TestFs::new("flate");
    let later = TempDir::new("flate-vol");
    let late_root = later.0.join("mnt/datasets");
    let yaml = policy(fs.base().to_str().unwrap(), "enforce")
        .replace("    paths: [\"", &format!("    paths: [\"{}\", \"", late_root.display()));
    let agent = Agent::start(&tree, &yaml);
    let missing = |st: &serde_json::Value| {
        st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "files").unwrap()["missing"].clone()
    };
    assert_eq!(missing(&agent.status())[0], late_root.to_str().unwrap(), "reported while missing");

    std::fs::create_dir_all(later.0.join("mnt")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &later.0.join("mnt"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4m"),
    )
    .unwrap();
    let _late = Unmount(later.0.join("mnt"));
    std::fs::create_dir_all(&late_root).unwrap();
    std::fs::write(late_root.join("f"), "payload").unwrap();
    agent.eventually("the late root is picked up", || missing(&agent.status()).is_null());
    let f = late_root.join("f");
    let other = fileprobe(&tree.abs.join(cgroup_of(Who::Other)), &["read", f.to_str().unwrap()]);
    let reader = fileprobe(&tree.abs.join(cgroup_of(Who::Reader)), &["read", f.to_str().unwrap()]);
    assert!(other.eperm(), "other on the late root: {other:?}");
    assert!(reader.ok(), "reader on the late root: {reader:?}");
}

/// The fanotify event writer runs at idle priority (raised while a deny is
/// queued): with every CPU busy, a deny behind a backlog of 3,000 allowed
/// events is still logged promptly, and none of the backlog is lost.
#[test]
fn denies_are_logged_while_every_cpu_is_busy() {
    let tree = TestTree::new("fbusy");
    for w in [Who::Reader, Who::Other] {
        tree.mkdir(cgroup_of(w));
    }
    let fs = TestFs::new("fbusy");
    // Every allowed open as its own event: the backlog this test needs.
    let yaml = policy(fs.base().to_str().unwrap(), "enforce")
        .replace("version: 1\n", "version: 1\nagent:\n  events:\n    allowed: each\n");
    let agent = Agent::start(&tree, &yaml);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Stopped on every exit, a failed assert included: spinning threads
    // left behind would starve the other tests of this binary.
    struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _stop = StopOnDrop(stop.clone());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let spinners: Vec<_> = (0..cpus * 2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    // A backlog of allowed events: 3,000 opens by the reader (shell builtin
    // `read` opens the file in the shell itself, no process per open).
    let file = fs.base().join("data/f");
    let script = format!(
        "echo $$ > {}/cgroup.procs; i=0; while [ $i -lt 3000 ]; do read x < {}; i=$((i+1)); done",
        tree.abs.join(cgroup_of(Who::Reader)).display(),
        file.display()
    );
    let flood = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(flood.success());
    let denied = fileprobe(&tree.abs.join(cgroup_of(Who::Other)), &["read", file.to_str().unwrap()]);
    assert!(denied.eperm(), "{denied:?}");
    let started = std::time::Instant::now();
    // `pid` (the opener's thread id) is in the decision itself; tgid and exe
    // are read from /proc when the event is written.
    let found = agent.wait_events(1, |e| e["pid"] == denied.pid && e["verdict"] == "denied");
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    assert_eq!(found[0]["workload"], "other");
    assert!(waited < Duration::from_secs(3), "deny logged only after {waited:?} with busy CPUs");
    let allowed = agent.events().iter().filter(|e| e["workload"] == "reader" && e["verdict"] == "allowed").count();
    assert_eq!(allowed, 3000, "every allowed open before the deny is logged too");
}

/// Runs one attack; `Err` says what went wrong.
fn run_attack(tree: &TestTree, fs: &TestFs, agent: &Agent, a: &Attack, expect: Expect) -> Result<(), String> {
    let args = attack_args(a, fs.base());
    let guard = |a: &Attack| (!a.guard.is_empty()).then(|| std::fs::read_to_string(fs.base().join(a.guard)).unwrap());
    let before = guard(a);
    let mut argv = vec![a.op];
    argv.extend(args.iter().map(String::as_str));
    let r = fileprobe(&tree.abs.join(cgroup_of(a.who)), &argv);
    judge(a, expect, r.code, &r.output, guard(a) != before)?;
    let Expect::Detected(op) = expect else { return Ok(()) };
    let who = match a.who {
        Who::Reader => "reader",
        Who::Writer => "writer",
        Who::Other => "other",
        Who::Unidentified => "(unidentified)",
    };
    let seen = agent.wait_events_for(Duration::from_secs(5), |e| {
        e["kind"] == "file"
            && e["operation"] == op
            && e["workload"] == who
            && e["verdict"] == "audited"
            && e["file"]["reason"] == "detected"
            && e["file"]["path"].as_str().is_some_and(|p| p.ends_with(a.args[0].trim_start_matches("data")))
    });
    if seen.is_empty() { Err(format!("no `detected` {op} event by {who}")) } else { Ok(()) }
}

#[test]
fn fanotify_backend_holds_against_the_attack_table() {
    let tree = TestTree::new("fattack");
    for w in [Who::Reader, Who::Writer, Who::Other, Who::Unidentified] {
        tree.mkdir(cgroup_of(w));
    }
    let fs = TestFs::new("fattack");
    make_attack_files(fs.base());
    let agent = Agent::start(&tree, &policy(fs.base().to_str().unwrap(), "enforce"));
    let st = agent.status();
    let files = st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "files").unwrap().clone();
    assert!(
        files["detected"].to_string().contains("truncate(2) by path"),
        "status lists what is only detected: {files}"
    );
    // The scan found the link made before the start.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while agent.status()["enforcement"].as_array().unwrap().iter().any(|e| e["follow"]["scan"] == "scanning") {
        assert!(std::time::Instant::now() < deadline, "tree scan did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut failures = Vec::new();
    for a in ATTACKS {
        if let Err(e) = run_attack(&tree, &fs, &agent, a, a.fanotify) {
            failures.push(format!("{}: {e}", a.name));
        }
    }
    let files: Vec<String> = agent
        .events()
        .iter()
        .filter(|e| e["kind"] == "file" && e["file"]["path"].as_str().is_some_and(|p| !p.ends_with("a-race")))
        .map(|e| e.to_string())
        .collect();
    let files_status = agent.status()["enforcement"].to_string();
    let log: Vec<String> = agent.log().lines().filter(|l| !l.contains("DEBUG")).map(String::from).collect();
    assert!(
        failures.is_empty(),
        "{failures:#?}\nstatus: {files_status}\nfile events:\n{}\nlog:\n{}",
        files.join("\n"),
        log.join("\n")
    );
    assert_eq!(agent.status()["events"]["file_errors"], 0);
}

/// Starts an agent as a container runtime would: in a cgroup of its own
/// (`home`) and a cgroup namespace of its own (containerd on cgroup v2), in
/// which /proc names every workload's cgroup `/../…`. `host_ns`: what it
/// may enter as the host's cgroup namespace.
fn agent_in_cgroupns(tree: &TestTree, home: &TestTree, yaml: &str, host_ns: &str) -> Agent {
    Agent::start_with(tree, yaml, &[(warden::system::cgroupns::HOST_NS_ENV, host_ns)], |cmd| in_own_cgroupns(cmd, home))
}

/// `cmd` starts in cgroup `home` and a cgroup namespace of its own, as a
/// container's process does.
fn in_own_cgroupns(cmd: &mut Command, home: &TestTree) {
    let procs = std::ffi::CString::new(home.abs.join("cgroup.procs").to_str().unwrap()).unwrap();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            let moved = fd >= 0 && libc::write(fd, c"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if !moved || libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// An agent in a cgroup namespace of its own enters the host's and places
/// every opener as the host does. Judged from its private view every
/// workload would be "outside the cgroup root" and read the dataset; where
/// it cannot enter the host's, they are unidentified and denied (fail
/// closed), and status says why.
#[test]
fn an_agent_in_a_private_cgroup_namespace_still_places_every_opener() {
    let tree = TestTree::new("fcgns");
    for w in [Who::Reader, Who::Other] {
        tree.mkdir(cgroup_of(w));
    }
    let home = TestTree::new("fcgns-home");
    let fs = TestFs::new("fcgns");
    std::fs::write(fs.base().join("data/secret"), "SECRET:data/secret").unwrap();
    let secret = fs.base().join("data/secret");
    let secret = secret.to_str().unwrap();
    let (reader, other) = (tree.abs.join(cgroup_of(Who::Reader)), tree.abs.join(cgroup_of(Who::Other)));
    let yaml = policy(fs.base().to_str().unwrap(), "enforce");

    let host = format!("/proc/{}/ns/cgroup", std::process::id());
    let mut agent = agent_in_cgroupns(&tree, &home, &yaml, &host);
    assert_eq!(agent.status()["cgroup_namespace"], "entered the host's", "{}", agent.log());
    let (code, out, _) = spawn_probe(Some(&reader), &["read-bytes", secret]).join().unwrap();
    assert!(code == 0 && out.contains("SECRET"), "the reader reads: {code} {out}");
    let (code, out, _) = spawn_probe(Some(&other), &["read-bytes", secret]).join().unwrap();
    assert!(code == 2 && !out.contains("SECRET"), "other is denied: {code} {out}");
    agent.stop();

    let mut agent = agent_in_cgroupns(&tree, &home, &yaml, "/nonexistent/ns/cgroup");
    let ns = agent.status()["cgroup_namespace"].as_str().unwrap_or_default().to_string();
    assert!(ns.starts_with("private: cannot enter /nonexistent/ns/cgroup"), "{ns}");
    for cg in [&reader, &other] {
        let (code, out, _) = spawn_probe(Some(cg), &["read-bytes", secret]).join().unwrap();
        assert!(code == 2 && !out.contains("SECRET"), "unplaced: unidentified, denied: {code} {out}");
    }
    agent.stop();
}

/// A standby keeper, started as the chart's sidecar container is: its own
/// process tree, cgroup (`home`) and cgroup namespace.
fn sidecar_keeper(tree: &TestTree, home: &TestTree) -> KillOnDrop {
    let instance = warden::hooks::pins::instance_name(&tree.rel);
    let socket = warden::files::fanotify::keeper::socket_path(&instance);
    let _ = std::fs::remove_file(&socket);
    let mut cmd = Command::new(WARDEN);
    cmd.args(["fan-keeper", "--standby", "--instance", &instance, "--cgroup-root", &tree.rel])
        .env(warden::system::cgroupns::HOST_NS_ENV, format!("/proc/{}/ns/cgroup", std::process::id()))
        .stdout(std::process::Stdio::null());
    in_own_cgroupns(&mut cmd, home);
    let keeper = KillOnDrop(cmd.spawn().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "the standby keeper did not listen at {}", socket.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    keeper
}

/// In Kubernetes the keeper is a sidecar container: a restart of the
/// agent's container ends every process in it, a spawned keeper too, while
/// the sidecar keeps the group. A restarted sidecar is given it again.
#[test]
fn a_keeper_sidecar_keeps_held_opens_denied_across_agent_and_sidecar_restarts() {
    let tree = TestTree::new("fside");
    for w in [Who::Reader, Who::Other] {
        tree.mkdir(cgroup_of(w));
    }
    let home = TestTree::new("fside-home");
    let fs = TestFs::new("fside");
    std::fs::write(fs.base().join("data/secret"), "SECRET:data/secret").unwrap();
    let (secret, plain) = (fs.base().join("data/secret"), fs.base().join("outside/o"));
    let (secret, plain) = (secret.to_str().unwrap(), plain.to_str().unwrap());
    let (reader, other) = (tree.abs.join(cgroup_of(Who::Reader)), tree.abs.join(cgroup_of(Who::Other)));
    let yaml = policy(fs.base().to_str().unwrap(), "enforce");
    let env = [("WARDEN_FAN_KEEPER", "sidecar")];
    let held_denied = |agent: &mut Agent, what: &str| {
        agent.freeze();
        let held =
            [spawn_probe(Some(&reader), &["read-bytes", secret]), spawn_probe(Some(&other), &["read-bytes", secret])];
        std::thread::sleep(Duration::from_millis(300));
        assert!(held.iter().all(|h| !h.is_finished()), "{what}: opens are held while the agent decides");
        agent.kill9();
        for h in held {
            let (code, out, took) = h.join().unwrap();
            assert!(code == 2 && !out.contains("SECRET"), "{what}: a held open is denied: {code} {out}");
            assert!(took < Duration::from_secs(3), "{what}: released in {took:?}");
        }
    };

    let mut keeper = sidecar_keeper(&tree, &home);
    let mut agent = Agent::start_with_env(&tree, &yaml, &env);
    agent.eventually("the agent gave the sidecar its group", || {
        agent.log().contains("gave the fanotify group to the keeper sidecar")
    });
    let (code, out, _) = spawn_probe(Some(&reader), &["read-bytes", secret]).join().unwrap();
    assert!(code == 0 && out.contains("SECRET"), "the reader reads: {code} {out}");
    // 1. The agent's container restarts: the sidecar denies what was held.
    held_denied(&mut agent, "agent killed");
    // 2. No agent: the sidecar decides, in its own cgroup namespace, fail
    // closed: outside every segment opens; protected is denied to governed.
    let (code, out, took) = spawn_probe(None, &["read-bytes", plain]).join().unwrap();
    assert!(code == 0 && took < Duration::from_secs(1), "unprotected open with no agent: {code} {out} {took:?}");
    let (code, out, _) = spawn_probe(Some(&reader), &["read-bytes", secret]).join().unwrap();
    assert!(code == 2 && !out.contains("SECRET"), "no agent: a governed protected open is denied: {code} {out}");
    // 3. The next agent takes the group from the sidecar.
    let mut agent = Agent::start_with_env(&tree, &yaml, &env);
    agent.eventually("the new agent took the group", || agent.log().contains("took the fanotify group over"));
    let (code, out, _) = spawn_probe(Some(&reader), &["read-bytes", secret]).join().unwrap();
    assert!(code == 0 && out.contains("SECRET"), "the reader reads again: {code} {out}");
    // 4. The sidecar restarts while the agent lives: it is given the group
    // again, and covers the next crash.
    drop(keeper);
    keeper = sidecar_keeper(&tree, &home);
    agent.eventually("the agent gave the restarted sidecar its group", || {
        agent.log().contains("the keeper sidecar was restarted")
    });
    held_denied(&mut agent, "agent killed after a sidecar restart");
    drop(keeper);
}
