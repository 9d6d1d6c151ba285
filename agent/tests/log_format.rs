//! `--log-format json`: the agent's own logs are one JSON object per line on
//! stderr, events stay on stdout, so a log shipper tells them apart by
//! stream. Run as the pod runs it: `agent.events.jsonl: "-"`.
mod harness;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use harness::*;
use serde_json::Value;

fn status_ok(socket: &Path) -> bool {
    Command::new(WARDEN).args(["status", "--json", "--socket"]).arg(socket).output().is_ok_and(|o| o.status.success())
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
}

/// Every line is a log record: an object with level, target and fields
/// (with the message), and none is an event.
fn assert_log_records(lines: &[String]) -> Vec<Value> {
    assert!(!lines.is_empty(), "no log lines");
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            assert!(v["level"].is_string() && v["target"].is_string(), "{l}");
            assert!(v["fields"].is_object() && v["timestamp"].is_string(), "{l}");
            assert!(v.get("seq").is_none() && v.get("verdict").is_none(), "an event on stderr: {l}");
            v
        })
        .collect()
}

#[test]
fn json_logs_go_to_stderr_and_events_to_stdout() {
    let tree = TestTree::new("logjson");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let dir = TempDir::new("logjson");
    let config = dir.0.join("warden.yaml");
    let yaml = format!(
        "version: 1\nagent:\n  events: {{ jsonl: \"-\" }}\n{}workloads:\n  - name: other\n    selector: {{ cgroup: other }}\n",
        store_segment(port)
    );
    std::fs::write(&config, &yaml).unwrap();
    let (socket, stdout, stderr) = (dir.0.join("s.sock"), dir.0.join("stdout"), dir.0.join("stderr"));
    let child = Command::new(WARDEN)
        .args(["agent", "--log-format", "json", "--config"])
        .arg(&config)
        .args(["--cgroup-root", &tree.rel, "--node-name", "test-node", "--metrics-address", "127.0.0.1:0"])
        .arg("--socket")
        .arg(&socket)
        // Debug: the libraries' records too must come out as JSON.
        .env("WARDEN_LOG", "debug")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status_ok(&socket) {
        assert!(child.0.try_wait().unwrap().is_none(), "agent exited:\n{}", lines(&stderr).join("\n"));
        assert!(Instant::now() < deadline, "agent did not come up:\n{}", lines(&stderr).join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    let reload = Command::new(WARDEN).args(["reload", "--socket"]).arg(&socket).output().unwrap();
    assert!(reload.status.success(), "{reload:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines(&stdout).iter().any(|l| l.contains("\"kind\":\"policy\"")) {
        assert!(Instant::now() < deadline, "no policy event on stdout: {:?}", lines(&stdout));
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM: a clean stop, whose own log lines are checked too.
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }

    let logs = assert_log_records(&lines(&stderr));
    let message = |m: &str| logs.iter().any(|v| v["fields"]["message"] == m);
    assert!(message("warden enforcing") && message("policy reloaded"), "{logs:?}");
    assert!(logs.iter().any(|v| v["level"] == "DEBUG"), "debug records of the libraries");
    let reloaded = logs.iter().find(|v| v["fields"]["message"] == "policy reloaded").unwrap();
    assert_eq!(reloaded["fields"]["trigger"], "command", "fields stay typed: {reloaded}");

    let events: Vec<Value> = lines(&stdout)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not an event ({e}): {l}")))
        .collect();
    assert!(events.iter().all(|e| e["seq"].is_u64() && e["kind"].is_string()), "{events:?}");
    let denied = events.iter().find(|e| e["kind"] == "network").expect("the deny on stdout");
    assert_eq!((denied["verdict"].as_str(), denied["workload"].as_str()), (Some("denied"), Some("other")));
    assert!(events.iter().all(|e| e.get("level").is_none()), "a log record on stdout");
}

#[test]
fn the_environment_sets_the_format_and_a_refused_start_is_logged_as_json() {
    let tree = TestTree::new("logjsonbad");
    let dir = TempDir::new("logjsonbad");
    let config = dir.0.join("bad.yaml");
    std::fs::write(&config, "version: 1\nsegments: [{name: s, network: [{cidr: 10.0.0.300/8}]}]\n").unwrap();
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .args(["--cgroup-root", &tree.rel, "--socket"])
        .arg(dir.0.join("s.sock"))
        .env("WARDEN_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{out:?}");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().map(String::from).collect();
    let logs = assert_log_records(&lines);
    let last = logs.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    let error = last["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("invalid policy, not starting") && error.contains(":2:"), "{last}");

    // Text stays the default; a wrong value is refused by name.
    let out = Command::new(WARDEN).args(["--log-format", "xml", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: text, json"), "{out:?}");
}
