//! OTLP headers from a Kubernetes-style Secret volume
//! (`agent.events.otlp.headersFile`): they reach the collector as gRPC
//! metadata, a rotated token (the volume's `..data` symlink swap) applies
//! without a restart, a broken file keeps the last good headers, and no value
//! ever shows in status or the agent's log. rotel neither checks nor prints
//! request metadata, so a recording receiver (`fake_collector`) sees the
//! headers; rotel takes the same exports as a real collector.
mod harness;

use std::{path::Path, process::Command, time::Duration};

use harness::*;
use warden_testkit::{fake_collector::FakeCollector, rotel::Rotel};

const WAIT: Duration = Duration::from_secs(20);

fn policy(port: u16, endpoint: &str, headers_file: &Path) -> String {
    format!(
        "version: 1\nagent:\n  events:\n    otlp:\n      endpoint: \"{endpoint}\"\n      headers: {{ x-tenant: gpu-a }}\n      \
         headersFile: {}\n      timeoutMs: 2000\n{}\
         workloads:\n  - name: other\n    selector: {{ cgroup: \"other\" }}\n",
        headers_file.display(),
        store_segment(port)
    )
}

/// A directory laid out as kubelet mounts a Secret: `headers.yaml ->
/// ..data/headers.yaml`, `..data -> ..<version>`; `update` swaps `..data`
/// in one rename, as kubelet does.
struct SecretVolume {
    dir: TempDir,
    version: u32,
}

impl SecretVolume {
    fn new(text: &str) -> Self {
        let mut v = Self { dir: TempDir::new("otlp-secret"), version: 0 };
        v.update(text);
        std::os::unix::fs::symlink("..data/headers.yaml", v.file()).unwrap();
        v
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.0.join("headers.yaml")
    }

    fn update(&mut self, text: &str) {
        self.version += 1;
        let name = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.0.join(&name)).unwrap();
        std::fs::write(self.dir.0.join(&name).join("headers.yaml"), text).unwrap();
        let tmp = self.dir.0.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.0.join("..data")).unwrap();
    }
}

fn reload_failures(agent: &Agent) -> u64 {
    agent.status()["policy"]["reload"]["failures"].as_u64().unwrap()
}

#[test]
fn secret_headers_reach_the_collector_rotate_without_restart_and_never_show() {
    let collector = FakeCollector::start();
    let tree = TestTree::new("otlphdr");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let mut secret = SecretVolume::new("authorization: Bearer first-s3cr3t\n");
    let agent = Agent::start(&tree, &policy(port, &collector.endpoint(), &secret.file()));

    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    let e = collector.wait_export(WAIT, |e| e.records > 0);
    assert_eq!(e.header("authorization"), Some("Bearer first-s3cr3t"), "{e:?}");
    assert_eq!(e.header("x-tenant"), Some("gpu-a"), "inline and file headers are merged: {e:?}");

    // Status lists the names and the file, never a value.
    let st = agent.status();
    let otlp = &st["events"]["otlp"];
    assert_eq!(otlp["headers"], serde_json::json!(["x-tenant", "authorization"]), "{otlp}");
    assert_eq!(otlp["headers_file"].as_str(), secret.file().to_str());
    let text = Command::new(WARDEN).args(["status", "--socket"]).arg(&agent.socket).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("otlp headers x-tenant, authorization"), "{text}");

    // kubelet swaps the Secret's ..data: the watch reloads, the exporter
    // takes the new token, and nothing waits for a restart.
    secret.update("authorization: Bearer second-s3cr3t\n");
    agent.eventually("the rotated token is applied", || agent.status()["policy"]["reload"]["last_result"] == "applied");
    let st = agent.status();
    assert_eq!(st["policy"]["reload"]["pending_restart"], serde_json::json!([]), "{}", st["policy"]["reload"]);
    assert_eq!(st["policy"]["reload"]["last_trigger"], "file");
    let seen = collector.exports().len();
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    let e = collector.wait_export(WAIT, |e| e.header("authorization") == Some("Bearer second-s3cr3t"));
    assert_eq!(e.header("x-tenant"), Some("gpu-a"));
    assert!(collector.exports()[seen..].iter().all(|e| e.header("authorization") != Some("Bearer first-s3cr3t")));

    // A broken Secret is refused like a broken policy: the error names the
    // field and the file, and the last good headers stay in use.
    secret.update("authorization: Bearer third\nAuthorization: x\n");
    agent.eventually("the refusal in status", || reload_failures(&agent) == 1);
    let st = agent.status();
    let err = st["policy"]["reload"]["last_error"].as_str().unwrap();
    assert!(err.contains("agent.events.otlp.headersFile") && err.contains(":2:1: headers.Authorization"), "{err}");
    assert!(err.contains(secret.file().to_str().unwrap()), "{err}");
    let seen = collector.exports().len();
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    collector.wait_export(WAIT, |e| e.records > 0 && e.header("authorization").is_some());
    for e in &collector.exports()[seen..] {
        assert_eq!(e.header("authorization"), Some("Bearer second-s3cr3t"), "the last good token: {e:?}");
    }

    let log = agent.log();
    let everything = format!("{st}{text}{log}");
    for secret in ["first-s3cr3t", "second-s3cr3t", "Bearer third"] {
        assert!(!everything.contains(secret), "{secret} leaked:\n{everything}");
    }
}

#[test]
fn a_real_collector_takes_exports_sent_with_secret_headers() {
    let rotel = Rotel::start();
    let tree = TestTree::new("otlphdrrotel");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let secret = SecretVolume::new("{\"authorization\": \"Bearer s3cr3t\"}\n");
    let agent = Agent::start(&tree, &policy(port, &rotel.endpoint(), &secret.file()));
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    let records = rotel.wait_records(1, Duration::from_secs(30));
    assert!(records.iter().any(|r| r.str("warden.verdict") == Some("denied")), "{records:?}");
    assert_eq!(agent.status()["events"]["otlp"]["state"], "connected");
}

#[test]
fn a_missing_or_bad_headers_file_stops_the_start_and_fails_policy_check() {
    let tree = TestTree::new("otlphdrbad");
    let dir = TempDir::new("otlphdrbad");
    let missing = dir.0.join("absent.yaml");
    let config = dir.0.join("warden.yaml");
    std::fs::write(&config, policy(9, "http://127.0.0.1:4317", &missing)).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(WARDEN).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let cfg = config.to_str().unwrap();
    let (code, err) = run(&["policy", "check", cfg]);
    assert_eq!(code, Some(1));
    let head = format!("{cfg}:7:20: agent.events.otlp.headersFile: {}: cannot open: ", missing.display());
    assert!(err.starts_with(&head), "{err}");

    let sock = dir.0.join("s.sock");
    let (code, err) = run(&["agent", "--config", cfg, "--cgroup-root", &tree.rel, "--socket", sock.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("invalid policy, not starting") && err.contains(&head), "{err}");
    assert!(!sock.exists());

    std::fs::write(&missing, "authorization: 7\n").unwrap();
    let (code, err) = run(&["policy", "check", cfg]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("{}:1:16: headers.authorization: expected a string", missing.display())), "{err}");
}
