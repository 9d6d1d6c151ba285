//! Events to a real OpenTelemetry collector (rotel, from PyPI) over
//! OTLP/gRPC: attributes, and a collector that is down at start, killed
//! mid-stream and restarted while the agent keeps enforcing.
mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;
use warden_testkit::rotel::{Rotel, free_port};

fn policy(port: u16, otlp_port: u16, extra: &str) -> String {
    format!(
        "version: 1\nagent:\n  events:\n    otlp: {{ endpoint: \"http://127.0.0.1:{otlp_port}\", resource: {{ k8s.cluster.name: gpu-a }}{extra} }}\n{}\
         workloads:\n  - name: trainer\n    selector: {{ cgroup: \"trainer\" }}\n  - name: other\n    selector: {{ cgroup: \"other\" }}\n\
         allow:\n  - workload: trainer\n    segment: store\n",
        store_segment(port)
    )
}

fn otlp(agent: &Agent) -> Value {
    agent.status()["events"]["otlp"].clone()
}

#[test]
fn denied_connects_arrive_as_log_records_with_semantic_attributes() {
    let collector = Rotel::start();
    let tree = TestTree::new("otlp");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port, collector.port(), ""));
    let denied = netprobe(&other, "tcp", "127.0.0.2", port);
    assert!(denied.eperm(), "{denied:?}");

    let records = collector.wait_records(1, Duration::from_secs(15));
    let r = records.iter().find(|r| r.str("warden.verdict") == Some("denied")).unwrap();
    assert_eq!(r.str("warden.workload"), Some("other"));
    assert_eq!(r.str("warden.segment"), Some("store"));
    assert_eq!(r.str("warden.kind"), Some("network"));
    assert_eq!(r.str("network.peer.address"), Some("127.0.0.2"));
    assert_eq!(r.int("server.port"), Some(port as i64));
    assert_eq!(r.str("network.transport"), Some("tcp"));
    assert_eq!(r.int("process.pid"), Some(denied.pid as i64));
    assert_eq!(r.str("process.executable.path"), Some(NETPROBE));
    assert_eq!(r.int("warden.seq"), Some(1));
    assert_eq!(r.severity_text, "WARN");
    assert_eq!(r.resource_str("k8s.node.name"), Some("test-node"));
    assert_eq!(r.resource_str("service.name"), Some("warden"));
    assert_eq!(r.resource_str("k8s.cluster.name"), Some("gpu-a"));
    assert!(r.resource_str("host.name").is_some_and(|h| !h.is_empty()), "{:?}", r.resource);
    let st = otlp(&agent);
    assert_eq!((st["state"].as_str(), st["exported"].as_u64()), (Some("connected"), Some(1)), "{st}");
}

#[test]
fn collector_down_killed_and_restarted_loses_nothing_it_does_not_count() {
    let tree = TestTree::new("otlpdown");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let otlp_port = free_port();
    // Collector down at start: the agent starts and enforces anyway.
    let agent = Agent::start(&tree, &policy(port, otlp_port, ", queueSize: 2000, batchSize: 100"));
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    agent.eventually("the exporter reports failures", || otlp(&agent)["failed_exports"].as_u64() > Some(0));
    let st = otlp(&agent);
    assert_eq!(
        (st["state"].as_str(), st["queued"].as_u64(), st["exported"].as_u64()),
        (Some("retrying"), Some(1), Some(0)),
        "{st}"
    );

    // Up: the queued deny is delivered.
    let mut collector = Rotel::start_on(otlp_port);
    collector.wait_records(1, Duration::from_secs(40));
    agent.eventually("delivery resumes", || otlp(&agent)["exported"].as_u64() == Some(1));

    // Killed mid-stream: paced denies keep coming, enforcement goes on, the
    // queue fills to its bound and then drops (counted).
    collector.stop();
    let base_rss = memory(agent.pid(), "VmRSS");
    let n = flood(&other, "flood", port, 3.0, 2000)["denied"].as_u64().unwrap();
    assert!(n > 2000, "{n} denies");
    agent.eventually("the outage is seen", || otlp(&agent)["state"] == "retrying");
    let st = otlp(&agent);
    assert_eq!(st["queued"].as_u64(), Some(2000), "the queue holds its bound: {st}");
    assert!(st["dropped_denies"].as_u64() > Some(0), "{st}");
    assert!(memory(agent.pid(), "VmRSS") < base_rss + (32 << 20), "memory stays bounded while the collector is down");

    // Restarted: the queue drains, and every event is exported or counted.
    collector = Rotel::start_on(otlp_port);
    agent.eventually("the queue drains", || otlp(&agent)["queued"] == 0);
    let st = otlp(&agent);
    let total = 1 + n;
    let accounted = st["exported"].as_u64().unwrap()
        + st["dropped_denies"].as_u64().unwrap()
        + st["dropped_allowed"].as_u64().unwrap();
    assert_eq!(accounted, total, "exported + dropped = events: {st}");
    assert_eq!(st["state"], "connected");
    let deadline = Instant::now() + Duration::from_secs(15);
    while (collector.records().len() as u64) < st["exported"].as_u64().unwrap() - 1 {
        assert!(Instant::now() < deadline, "collector got {} records, exporter says {st}", collector.records().len());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The denies kept are the newest ones (oldest dropped first).
    let last = collector.records().iter().filter_map(|r| r.int("warden.seq")).max();
    assert_eq!(last, Some(total as i64));
}
