//! Hot reload, end to end: the real agent, real cgroups and connects, the
//! config file changed the ways users change it (an editor's rename, a
//! Kubernetes ConfigMap's `..data` symlink swap, SIGHUP, `warden reload`).
mod harness;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use harness::*;

/// One protected segment; `allowed` is the workload with a rule for it.
fn policy(port: u16, allowed: &str) -> String {
    format!(
        "version: 1\nagent:\n  events: {{ allowed: each }}\n{}workloads:\n  - name: trainer\n    selector: {{ cgroup: \"trainer/*\" }}\n  \
         - name: other\n    selector: {{ cgroup: \"other/*\" }}\nallow:\n  - workload: {allowed}\n    segment: store\n",
        store_segment(port)
    )
}

/// Replaces `path` the way editors and `kubectl cp` do: write aside, rename.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn generation(agent: &Agent) -> u64 {
    agent.status()["policy"]["generation"].as_u64().unwrap()
}

fn wait_generation(agent: &Agent, want: u64) {
    agent.eventually(&format!("policy generation {want}"), || generation(agent) >= want);
    assert_eq!(generation(agent), want, "exactly one reload per change");
}

fn reload_cli(agent: &Agent) -> (bool, String) {
    let out = Command::new(WARDEN).args(["reload", "--socket"]).arg(&agent.socket).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Who can reach the segment now: (trainer, other).
fn access(trainer: &Path, other: &Path, port: u16) -> (bool, bool) {
    let t = netprobe(trainer, "tcp", "127.0.0.2", port);
    let o = netprobe(other, "tcp", "127.0.0.2", port);
    assert!(t.ok() || t.eperm(), "{t:?}");
    assert!(o.ok() || o.eperm(), "{o:?}");
    (t.ok(), o.ok())
}

#[test]
fn file_changes_signal_and_command_switch_policy_and_bad_files_change_nothing() {
    let tree = TestTree::new("reload");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port, "trainer"));
    assert_eq!(generation(&agent), 1);
    assert_eq!(access(&trainer, &other, port), (true, false));

    // An editor's save (write aside, rename): picked up by the watch.
    replace(&agent.config, &policy(port, "other"));
    wait_generation(&agent, 2);
    assert_eq!(access(&trainer, &other, port), (false, true), "the new rule applies, the old one is gone");
    let st = agent.status();
    assert_eq!(st["policy"]["reload"]["last_result"], "applied");
    assert_eq!(st["policy"]["reload"]["last_trigger"], "file");
    assert_eq!(workload(&st, "trainer")["allowed"], 1, "counts from before the reload are kept");
    assert_eq!(workload(&st, "trainer")["denied"], 1);

    // A broken file: refused, the last good policy stays, status and an
    // event say where and why.
    let bad = policy(port, "other").replace("127.0.0.2/32", "127.0.0.300/32");
    replace(&agent.config, &bad);
    agent.eventually("the refusal in status", || agent.status()["policy"]["reload"]["failures"] == 1);
    let st = agent.status();
    let err = st["policy"]["reload"]["last_error"].as_str().unwrap();
    assert!(err.contains("warden.yaml:") && err.contains("cidr") && err.contains("127.0.0.300"), "{err}");
    assert_eq!(st["policy"]["reload"]["last_result"], "refused");
    assert_eq!(generation(&agent), 2, "nothing switched");
    assert_eq!(access(&trainer, &other, port), (false, true), "the last good policy is still enforced");
    let (ok, text) = reload_cli(&agent);
    assert!(!ok && text.contains("refused") && text.contains("cidr"), "warden reload must fail loudly: {text}");
    let refused = agent.wait_events(2, |e| e["kind"] == "policy" && e["result"] == "refused");
    assert!(refused[0]["error"].as_str().unwrap().contains("cidr"), "{refused:?}");
    assert_eq!(refused[0]["generation"], 2);

    // Fixed, then applied by SIGHUP (the file watch sees the fix too, so
    // wait for either and check the signal path on its own below).
    std::fs::write(&agent.config, policy(port, "trainer")).unwrap();
    wait_generation(&agent, 3);
    // SAFETY: kill(2) on the agent, our child.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    wait_generation(&agent, 4);
    assert_eq!(agent.status()["policy"]["reload"]["last_trigger"], "signal");
    assert_eq!(access(&trainer, &other, port), (true, false));

    // `warden reload` re-applies on demand.
    let (ok, text) = reload_cli(&agent);
    assert!(ok && text.contains("generation 5"), "{text}");
    assert_eq!(generation(&agent), 5);

    let applied = agent.wait_events(4, |e| e["kind"] == "policy" && e["result"] == "applied");
    let gens: Vec<u64> = applied.iter().map(|e| e["generation"].as_u64().unwrap()).collect();
    assert_eq!(gens, [2, 3, 4, 5]);
    // Decisions carry the names of the policy that made them.
    let st = agent.status();
    assert_eq!(workload(&st, "trainer")["allowed"], 2);
    assert_eq!(workload(&st, "other")["allowed"], 2);
}

#[test]
fn configmap_symlink_swap_is_one_reload() {
    let tree = TestTree::new("reload-cm");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port, "trainer"));
    // Kubelet's layout: warden.yaml -> ..data/warden.yaml, ..data -> ..v1.
    let dir = agent.dir.0.clone();
    let version = |name: &str, text: &str| {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("warden.yaml"), text).unwrap();
    };
    let point_data_at = |target: &str| {
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    version("..v1", &policy(port, "trainer"));
    point_data_at("..v1");
    let link = dir.join("warden.yaml.link");
    std::os::unix::fs::symlink("..data/warden.yaml", &link).unwrap();
    std::fs::rename(&link, &agent.config).unwrap();
    // Same content as loaded: no reload.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(generation(&agent), 1, "a layout change with the same content is not a reload");

    let t0 = Instant::now();
    version("..v2", &policy(port, "other"));
    point_data_at("..v2");
    wait_generation(&agent, 2);
    let took = t0.elapsed();
    assert_eq!(access(&trainer, &other, port), (false, true));
    assert!(took < Duration::from_secs(5), "reload took {took:?}");
    // Exactly one reload happened in all: the layout change made none, late or not.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(generation(&agent), 2);
    assert_eq!(agent.status()["policy"]["reload"]["attempts"], 1, "one swap, one reload");
}

/// File segments (fanotify on this kernel) switch with the rest: roots,
/// grants and identities change together; a reload that would need a
/// backend the agent did not start is refused.
#[test]
fn file_segments_follow_reloads() {
    let tree = TestTree::new("reload-files");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let fs = Tmpfs::new("reload-files");
    let base = fs.0.0.clone();
    for d in ["weights", "data"] {
        std::fs::create_dir(base.join(d)).unwrap();
        std::fs::write(base.join(d).join("f"), "payload").unwrap();
    }
    let files = |dir: &str, allowed: &str| {
        format!(
            "version: 1\nsegments:\n  - name: tree\n    paths: [\"{}\"]\nworkloads:\n  - name: trainer\n    selector: {{ cgroup: \"trainer/*\" }}\n  \
             - name: other\n    selector: {{ cgroup: \"other/*\" }}\nallow:\n  - workload: {allowed}\n    segment: tree\n    access: read\n",
            base.join(dir).display()
        )
    };
    let read = |cg: &Path, dir: &str| {
        let p = fileprobe(cg, &["read", base.join(dir).join("f").to_str().unwrap()]);
        assert!(p.ok() || p.eperm(), "{p:?}");
        p.ok()
    };
    let agent = Agent::start(&tree, &files("weights", "trainer"));
    assert_eq!(agent.status()["enforcement"][1]["backend"], "fanotify");
    assert!(read(&trainer, "weights") && !read(&other, "weights") && read(&other, "data"));
    assert!(read(&trainer, "weights"));

    // The segment moves to data/ and to the other workload.
    replace(&agent.config, &files("data", "other"));
    wait_generation(&agent, 2);
    assert!(read(&other, "data") && !read(&trainer, "data"), "new root, new grant");
    assert!(read(&other, "weights") && read(&trainer, "weights"), "the old root is no longer a segment");

    // Device segments cannot be added by a reload: no device hook was
    // attached at start. Refused, and the last good policy stays.
    let devices = files("data", "other").replacen(
        "segments:\n",
        "segments:\n  - name: gpus\n    devices: { paths: [/dev/null] }\n",
        1,
    );
    replace(&agent.config, &devices);
    agent.eventually("the refusal", || agent.status()["policy"]["reload"]["failures"] == 1);
    let err = agent.status()["policy"]["reload"]["last_error"].as_str().unwrap().to_string();
    assert!(err.contains("device segments") && err.contains("restart"), "{err}");
    assert_eq!(generation(&agent), 2);
    assert!(read(&other, "data") && !read(&trainer, "data"), "the last good policy still holds");

    // File decisions are counted per workload by the agent (fanotify): a
    // reload that swaps the workloads' ids keeps each count with its name.
    let counts = |name: &str| {
        let s = agent.status();
        let w = workload(&s, name);
        (w["file_allowed"].as_u64().unwrap(), w["file_denied"].as_u64().unwrap())
    };
    agent.eventually("every decision counted", || counts("trainer") == (2, 2) && counts("other") == (2, 1));
    let swapped = files("data", "other").replace(
        "  - name: trainer\n    selector: { cgroup: \"trainer/*\" }\n  - name: other\n    selector: { cgroup: \"other/*\" }\n",
        "  - name: other\n    selector: { cgroup: \"other/*\" }\n  - name: trainer\n    selector: { cgroup: \"trainer/*\" }\n",
    );
    assert_ne!(swapped, files("data", "other"));
    replace(&agent.config, &swapped);
    wait_generation(&agent, 3);
    assert_eq!(workload(&agent.status(), "other")["id"], 1, "the ids did swap");
    assert_eq!((counts("trainer"), counts("other")), ((2, 2), (2, 1)), "counts stay with their workload");
    assert!(read(&other, "data") && !read(&trainer, "data"));
    agent.eventually("new decisions add to the same rows", || counts("trainer") == (2, 3) && counts("other") == (3, 1));
}

/// Whether an open of `path` by this (unconfined) test process waits for
/// the agent: with the agent stopped, it is still pending after 300 ms.
fn open_waits_for(agent: &Agent, path: &Path) -> bool {
    agent.freeze();
    let p = path.to_path_buf();
    let open = std::thread::spawn(move || std::fs::File::open(p).is_ok());
    std::thread::sleep(Duration::from_millis(300));
    let waited = !open.is_finished();
    agent.thaw();
    assert!(open.join().unwrap(), "the open completes once the agent runs");
    waited
}

#[test]
fn a_reload_moves_fanotify_marks_with_the_roots() {
    let tree = TestTree::new("reload-marks");
    let (a, b) = (Tmpfs::new("reload-marks-a"), Tmpfs::new("reload-marks-b"));
    for fs in [&a, &b] {
        std::fs::create_dir(fs.0.0.join("d")).unwrap();
        std::fs::write(fs.0.0.join("d/f"), "payload").unwrap();
    }
    let on = |fs: &Tmpfs| {
        format!(
            "version: 1\nsegments:\n  - name: tree\n    paths: [\"{}\"]\nworkloads:\n  - name: trainer\n    \
             selector: {{ cgroup: \"trainer/*\" }}\nallow:\n  - workload: trainer\n    segment: tree\n    access: read\n",
            fs.0.0.join("d").display()
        )
    };
    let marked = |agent: &Agent| agent.status()["enforcement"][1]["marked"].clone();
    // A marked filesystem is named by its mount point, type and device.
    let named = |fs: &Tmpfs| {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(&fs.0.0).unwrap().dev();
        serde_json::json!([format!("{} (tmpfs, device {}:{})", fs.0.0.display(), libc::major(dev), libc::minor(dev))])
    };
    let agent = Agent::start(&tree, &on(&a));
    assert_eq!(marked(&agent), named(&a));
    assert!(open_waits_for(&agent, &a.0.0.join("d/f")), "a marked filesystem's opens wait for the agent");
    assert!(!open_waits_for(&agent, &b.0.0.join("d/f")), "another filesystem's do not");

    // The only root moves to the other filesystem: its mark goes with it.
    replace(&agent.config, &on(&b));
    wait_generation(&agent, 2);
    assert_eq!(marked(&agent), named(&b));
    assert!(!open_waits_for(&agent, &a.0.0.join("d/f")), "unmarked: no longer waits for the agent");
    assert!(open_waits_for(&agent, &b.0.0.join("d/f")), "newly marked");

    // No file segment at all, then one again: the backend started with the
    // agent still runs, so the second reload is not refused.
    let none = "version: 1\nworkloads:\n  - name: trainer\n    selector: { cgroup: \"trainer/*\" }\n";
    replace(&agent.config, none);
    wait_generation(&agent, 3);
    assert_eq!(marked(&agent), serde_json::Value::Null, "nothing marked");
    assert!(!open_waits_for(&agent, &b.0.0.join("d/f")));
    replace(&agent.config, &on(&a));
    wait_generation(&agent, 4);
    assert_eq!(agent.status()["policy"]["reload"]["failures"], 0);
    assert!(open_waits_for(&agent, &a.0.0.join("d/f")), "marked again");
    let trainer = tree.mkdir("trainer/a");
    let p = fileprobe(&trainer, &["read", a.0.0.join("d/f").to_str().unwrap()]);
    assert!(p.ok(), "the grant holds again: {p:?}");
    let other = tree.mkdir("other/a");
    let p = fileprobe(&other, &["read", a.0.0.join("d/f").to_str().unwrap()]);
    assert!(p.eperm(), "and the segment is closed to others: {p:?}");
}
