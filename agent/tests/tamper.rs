//! Self-verification on real hooks: a live agent's links detached with
//! bpf(2) (and bpftool where installed), its pins deleted, or its whole
//! instance removed by another `uninstall --force` come back within a
//! second; each change is a `tamper` event and a counter, readiness drops
//! until the repair is confirmed, and denied flows stay denied throughout
//! (the listener receives nothing from the denied workload).
mod harness;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use harness::*;
use serde_json::Value;
use warden::hooks::bpf_obj;

/// A network segment (the listener) and a device segment (so the device
/// hook is attached too; its nodes need not exist).
fn policy(port: u16) -> String {
    format!(
        "version: 1\nagent:\n  events: {{ allowed: each }}\n{}  - name: gpus\n    devices:\n      paths: [\"/dev/warden-tamper-*\"]\nworkloads:\n  - name: trainer\n    selector: {{ cgroup: \"trainer/*\" }}\n  \
         - name: other\n    selector: {{ cgroup: \"other/*\" }}\nallow:\n  - workload: trainer\n    segment: store\n",
        store_segment(port)
    )
}

fn pin_dir(tree: &TestTree) -> PathBuf {
    warden::hooks::pins::abi_dir(Path::new("/sys/fs/bpf")).join(warden::hooks::pins::instance_name(&tree.rel))
}

fn tamper_events(agent: &Agent, target: &str, change: &str) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "tamper" && e["target"] == target && e["change"] == change)
        .collect()
}

/// Polls /readyz until `deadline`; true if it ever answered not ready.
fn readiness_dropped(addr: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_get(addr, "/readyz").0 != 200 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits (up to `within`) for a pass of the guard that verified everything.
fn verified_again(agent: &Agent, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = agent.status();
        if st["integrity"]["verified"] == true {
            return st;
        }
        assert!(Instant::now() < deadline, "not verified again: {}", st["integrity"]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn detached_links_and_deleted_pins_come_back_and_are_reported() {
    let tree = TestTree::new("tamper");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let (port, accepted) = counting_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port));
    let st = verified_again(&agent, Duration::from_secs(5));
    assert!(st["integrity"]["links"].as_u64().unwrap() >= 6, "{}", st["integrity"]);
    // Verified: the network kind says what it enforces (partial here: no
    // BPF-LSM for packet sockets), not "unverified".
    assert!(["enforced", "partial"].contains(&str_of(&st["enforcement"][0], "state")), "{}", st["enforcement"]);
    let metrics = st["metrics"].as_str().unwrap().to_string();
    let links = pin_dir(&tree).join("links");

    // Every cgroup program kind the host has: sock_addr, skb, sock, device.
    for name in ["connect4", "egress", "sock_create", "device"] {
        let before = accepted.load(Ordering::SeqCst);
        let readiness = {
            let m = metrics.clone();
            std::thread::spawn(move || readiness_dropped(&m, Duration::from_millis(800)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let link = bpf_obj::obj_get(&links.join(name)).unwrap();
        bpf_obj::link_detach(&link).unwrap();
        assert_eq!(bpf_obj::link_state(&link).unwrap().cgroup_id, 0, "{name} detached");
        // Right away, inside the window: the other hooks still deny (the
        // backstop drops the packets of a connect the sock_addr hook missed).
        assert!(!netprobe(&other, "tcp", "127.0.0.2", port).ok(), "{name}: denied during the window");
        let t = Instant::now();
        agent.eventually(&format!("{name} re-attached"), || {
            bpf_obj::obj_get(&links.join(name)).and_then(|l| bpf_obj::link_state(&l)).is_ok_and(|s| s.cgroup_id != 0)
        });
        assert!(t.elapsed() < Duration::from_secs(1), "{name}: repaired in {:?}", t.elapsed());
        assert!(readiness.join().unwrap(), "{name}: /readyz dropped until the repair was confirmed");
        let ev = agent.wait_events(1, |e| e["kind"] == "tamper" && e["target"] == name && e["change"] == "detached");
        assert_eq!((ev[0]["object"].as_str(), ev[0]["result"].as_str()), (Some("link"), Some("re-attached")));
        verified_again(&agent, Duration::from_secs(2));
        assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm(), "{name}: denied after the repair");
        assert!(netprobe(&trainer, "tcp", "127.0.0.2", port).ok(), "{name}: allowed after the repair");
        assert_eq!(accepted.load(Ordering::SeqCst), before + 1, "{name}: only the trainer's connect arrived");
    }
    // The denied connect made inside the window was seen and reported.
    let denies = agent.events().into_iter().filter(|e| e["workload"] == "other" && e["verdict"] == "denied").count();
    assert!(denies >= 8, "every denied connect reported ({denies})");

    // bpftool, where installed, is one more way to do it.
    if Command::new("bpftool").arg("version").output().is_ok_and(|o| o.status.success()) {
        let id = bpf_obj::link_state(bpf_obj::obj_get(&links.join("connect6")).unwrap()).unwrap().id;
        let out = Command::new("bpftool").args(["link", "detach", "id", &id.to_string()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        agent.wait_events(1, |e| e["kind"] == "tamper" && e["target"] == "connect6" && e["change"] == "detached");
    }

    // A deleted link pin: the agent holds the link, so nothing detaches,
    // and the pin is back (the same link) within a second.
    let id = bpf_obj::link_state(bpf_obj::obj_get(&links.join("sendmsg4")).unwrap()).unwrap().id;
    std::fs::remove_file(links.join("sendmsg4")).unwrap();
    assert!(netprobe(&other, "udp-sendto", "127.0.0.2", port).eperm(), "still enforced without its pin");
    agent.eventually("sendmsg4 re-pinned", || {
        bpf_obj::obj_get(&links.join("sendmsg4")).and_then(|l| bpf_obj::link_state(&l)).is_ok_and(|s| s.id == id)
    });
    let ev = agent.wait_events(1, |e| e["kind"] == "tamper" && e["target"] == "sendmsg4");
    assert_eq!((ev[0]["change"].as_str(), ev[0]["result"].as_str()), (Some("unpinned"), Some("re-pinned")));

    // A deleted map pin (a restarted agent would start from empty maps).
    let maps = pin_dir(&tree).join("maps");
    std::fs::remove_file(maps.join("POLICY_SET")).unwrap();
    agent.eventually("POLICY_SET re-pinned", || maps.join("POLICY_SET").exists());
    assert_eq!(tamper_events(&agent, "POLICY_SET", "unpinned")[0]["object"], "map pin");

    let st = verified_again(&agent, Duration::from_secs(2));
    assert!(st["integrity"]["tamper_events"].as_u64().unwrap() >= 5, "{}", st["integrity"]);
    let (_, body) = http_get(&metrics, "/metrics");
    let line = body.lines().find(|l| l.starts_with("warden_tamper_events_total ")).expect("tamper counter");
    assert!(line.split(' ').nth(1).unwrap().parse::<f64>().unwrap() >= 5.0, "{line}");
}

#[test]
fn another_uninstall_cannot_switch_a_live_agent_off() {
    let tree = TestTree::new("tamper-uninstall");
    let other = tree.mkdir("other/a");
    let (port, accepted) = counting_listener("127.0.0.2");
    let mut agent = Agent::start(&tree, &policy(port));
    verified_again(&agent, Duration::from_secs(5));
    let pid = agent.pid().to_string();
    let uninstall = |extra: &[&str]| Command::new(WARDEN).args(["uninstall"]).args(extra).output().unwrap();
    // Without a socket, with someone else's socket, for every instance:
    // refused, naming the live agent, and nothing removed.
    for args in [
        vec!["--cgroup-root", tree.rel.as_str()],
        vec!["--cgroup-root", tree.rel.as_str(), "--socket", "/run/no-such-warden.sock"],
        vec!["--all"],
    ] {
        let out = uninstall(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} refused");
        // (`--all` also names the live agents of tests running alongside.)
        assert!(err.contains("is running") && err.contains(&pid), "{args:?}: {err}");
        assert_eq!(err.matches(&format!("(pid {pid})")).count(), 1, "said once: {err}");
        assert!(pin_dir(&tree).join("links/connect4").exists(), "{args:?}: nothing removed");
    }
    // A second agent of the same cgroup root, on another socket, never starts.
    let dir = TempDir::new("second");
    let config = dir.0.join("warden.yaml");
    std::fs::write(&config, policy(port)).unwrap();
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .args(["--cgroup-root", &tree.rel, "--socket"])
        .arg(dir.0.join("s.sock"))
        .args(["--events", "off", "--metrics-address", "off"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is running"), "second agent refused: {err}");

    // --force removes the pins from under it: it keeps enforcing (it holds
    // its links), restores every pin and reports each one.
    let out = uninstall(&["--cgroup-root", &tree.rel, "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("restores them"));
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm(), "enforced right after the forced uninstall");
    agent.eventually("pins restored", || pin_dir(&tree).join("links/connect4").exists());
    agent.wait_events(1, |e| e["kind"] == "tamper" && e["target"] == "connect4" && e["change"] == "unpinned");
    agent.wait_events(1, |e| e["kind"] == "tamper" && e["object"] == "map pin");
    verified_again(&agent, Duration::from_secs(2));
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the denied workload never reached the listener");

    // Stopped, the instance is free: a plain uninstall works.
    agent.stop();
    let out = uninstall(&["--cgroup-root", &tree.rel]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!pin_dir(&tree).exists());
}
