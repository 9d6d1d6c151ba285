//! `warden probe` tells the truth about this node: each check it reports is
//! compared with what a running agent actually does here.
mod harness;

use std::process::Command;

use harness::*;
use serde_json::Value;

fn probe() -> (i32, Value, String) {
    let out = Command::new(WARDEN).args(["probe", "--json"]).output().unwrap();
    let human = Command::new(WARDEN).arg("probe").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&human.stdout).into(),
    )
}

#[test]
fn probe_agrees_with_the_agent() {
    require_root();
    let (code, report, human) = probe();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {report}"))
            .clone()
    };
    for name in [
        "BTF",
        "cgroup v2",
        "bpffs (restart safety)",
        "hook: cgroup sock_addr",
        "hook: cgroup_skb",
        "hook: cgroup/sock_create",
        "hook: BPF-LSM socket_create",
        "hook: cgroup/dev",
        "hook: tracepoint",
        "hook: BPF-LSM",
        "fanotify permission events",
    ] {
        assert!(check(name)["detail"].as_str().is_some_and(|d| !d.is_empty()), "{name}");
    }
    let lsms: Vec<&str> = report["active_lsms"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let on_node = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap();
    assert_eq!(lsms.join(","), on_node.trim(), "active LSMs as the kernel lists them");
    let kind = |k: &str| report["segments"].as_array().unwrap().iter().find(|s| s["kind"] == k).unwrap().clone();
    let all = ["network", "files", "devices"].iter().all(|k| kind(k)["enforced"] == true);
    assert_eq!(code, if all { 0 } else { 3 }, "exit status says whether every kind is enforceable");
    assert!(human.contains("SEGMENT KIND") && human.contains("hook: BPF-LSM"), "{human}");

    // An agent with every segment kind: each hook it attaches is one the
    // probe found loadable, and the file backend is the one it predicted.
    let tree = TestTree::new("probe");
    let fs = Tmpfs::new("probe");
    let yaml = format!(
        "version: 1\nsegments:\n  - name: d\n    paths: [\"{}\"]\n  - name: gpus\n    devices: {{ paths: [/dev/null] }}\n{}workloads: []\nallow: []\n",
        fs.0.0.display(),
        store_segment(tcp_listener("127.0.0.2")).trim_start_matches("segments:\n"),
    );
    let agent = Agent::start(&tree, &yaml);
    let st = agent.status();
    let row = |k: &str| st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == k).unwrap().clone();
    let enforced = |k: &str| row(k)["state"] == "enforced";
    let network = row("network");
    let network_on = network["state"] == "enforced" || network["state"] == "partial";
    assert_eq!(check("hook: cgroup sock_addr")["ok"] == true, network_on, "{network}");
    // Partial exactly where the probe says a way around cannot be closed,
    // and the agent names it (packet sockets without BPF-LSM).
    assert_eq!(
        network["state"] == "partial",
        kind("network")["partial"] == true,
        "{network}
{}",
        kind("network")
    );
    let lsm_socket = check("hook: BPF-LSM socket_create")["ok"] == true;
    let not_enforced = network["not_enforced"].to_string();
    assert_eq!(!lsm_socket, not_enforced.contains("packet sockets"), "{network}");
    assert_eq!(check("hook: cgroup/dev")["ok"] == true, enforced("devices"), "{}", row("devices"));
    let programs: Vec<&str> = st["programs"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(check("hook: tracepoint")["ok"] == true, programs.contains(&"cgroup_mkdir"), "{programs:?}");
    let files = row("files");
    if files["backend"] == "fanotify" {
        assert_eq!(check("fanotify permission events")["ok"], true, "the agent runs fanotify: {files}");
    }
    // Probe and status agree that files are partial where only opens are
    // blocked, and the probe names what protects memory there.
    assert_eq!(files["state"] == "partial", kind("files")["partial"] == true, "{files}\n{}", kind("files"));
    if files["backend"] == "fanotify" {
        assert!(kind("files")["notes"].to_string().contains("other processes' memory"), "{}", kind("files"));
    }
    let lsm_ok = check("hook: BPF-LSM")["ok"] == true;
    assert_eq!(files["backend"], if lsm_ok { "lsm" } else { "fanotify" }, "probe: {}\nagent: {files}", kind("files"));
    // Field by field, in the same words: state, backend, restart behaviour.
    for k in ["network", "files", "devices"] {
        for field in ["state", "backend", "restart"] {
            assert_eq!(kind(k)[field], row(k)[field], "{k}.{field}: probe {}\nstatus {}", kind(k), row(k));
        }
    }
    // The text status names the filesystems whose opens wait for the agent
    // (a mount and its device, not a root), the pins and the restart rows.
    let text = String::from_utf8_lossy(
        &Command::new(WARDEN).args(["status", "--socket"]).arg(&agent.socket).output().unwrap().stdout,
    )
    .into_owned();
    if files["backend"] == "fanotify" {
        let marked = files["marked"][0].as_str().unwrap();
        assert!(marked.contains("(tmpfs, device "), "{marked}");
        assert!(text.contains(marked), "{text}");
    }
    for needle in ["restart:", "PINS", st["pins"]["dir"].as_str().unwrap(), "INTEGRITY", "verified"] {
        assert!(text.contains(needle), "status text shows {needle}:\n{text}");
    }
    // Network enforcement works exactly when the probe says so.
    assert_eq!(kind("network")["enforced"], true, "this test runs only where the agent can start: {report}");
    assert_eq!(st["pins"]["links"].as_array().unwrap().is_empty(), check("bpffs (restart safety)")["ok"] != true);
}
