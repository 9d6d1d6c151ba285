//! End to end against a real collector (rotel): what `OtlpSink` sends is
//! what the collector prints having decoded it. Rotel missing fails these
//! tests (see `warden_testkit::rotel`).
use std::{sync::Arc, time::Duration};

use super::OtlpSink;
use crate::{
    enrich::{Event, LossEvent},
    report::OtlpStatus,
    settings::OtlpConfig,
    sinks::{otlp::convert::tests::deny, queue::tests::event},
};
use warden_testkit::rotel::{self, Rotel};

const WAIT: Duration = Duration::from_secs(40);

fn config(endpoint: String) -> OtlpConfig {
    OtlpConfig {
        endpoint,
        headers: vec![("authorization".into(), "Bearer test".into())],
        resource: vec![("k8s.cluster.name".into(), "gpu-a".into())],
        timeout_ms: 2_000,
        ..Default::default()
    }
}

fn decision(seq: u64, verdict: &'static str) -> Arc<Event> {
    Arc::new(Event::Decision(crate::enrich::DecisionEvent { verdict, ..deny(seq, "10.0.0.1") }))
}

fn loss(seq: u64) -> Arc<Event> {
    Arc::new(Event::Loss(LossEvent {
        time: String::new(),
        time_unix_ns: 1_795_327_200_000_000_000,
        seq,
        agent_id: "a-1".into(),
        node: "gpu-node-1".into(),
        kind: "loss",
        stage: "kernel",
        count: 17,
        denied: 3,
        reason: "ring buffer full",
    }))
}

/// Polls the sink's status until `done` holds; panics after `WAIT`.
async fn until(sink: &OtlpSink, what: &str, done: impl Fn(&OtlpStatus) -> bool) -> OtlpStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = sink.status();
        if done(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached in {WAIT:?}; status {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Multi-threaded: the rotel helpers block while the exporter task runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_a_real_collector_with_their_attributes() {
    let rotel = Rotel::start();
    let sink = OtlpSink::start(&config(rotel.endpoint()), "gpu-node-1", "host-1").expect("start");
    sink.push(&[decision(1, "denied"), decision(2, "allowed"), event(3, "allowed"), loss(4)]);
    let recs = tokio::task::block_in_place(|| rotel.wait_records(4, WAIT));
    assert_eq!(recs.len(), 4, "{recs:#?}");

    let d = &recs[0];
    assert_eq!(d.body_str(), Some("denied connect tcp 10.0.0.1:443 by trainer (segment object-store)"));
    assert_eq!((d.severity_text.as_str(), d.severity_number), ("WARN", Some(13)));
    assert_eq!(d.time_unix_nano, Some(1_795_327_200_000_000_001));
    assert!(d.observed_time_unix_nano.is_some_and(|t| t > 0));
    assert_eq!(d.scope, "warden");
    for (k, v) in [
        ("warden.verdict", "denied"),
        ("warden.kind", "network"),
        ("warden.segment", "object-store"),
        ("warden.workload", "trainer"),
        ("network.peer.address", "10.0.0.1"),
        ("network.transport", "tcp"),
        ("process.executable.name", "python3"),
        ("k8s.pod.name", "trainer-0"),
        ("k8s.namespace.name", "ml"),
        ("container.id", "abc"),
    ] {
        assert_eq!(d.str(k), Some(v), "{k} in {d:#?}");
    }
    for (k, v) in [("warden.seq", 1), ("network.peer.port", 443), ("server.port", 443), ("process.pid", 100)] {
        assert_eq!(d.int(k), Some(v), "{k} in {d:#?}");
    }
    for (k, v) in [
        ("host.name", "host-1"),
        ("k8s.node.name", "gpu-node-1"),
        ("service.name", "warden"),
        ("k8s.cluster.name", "gpu-a"),
    ] {
        assert_eq!(d.resource_str(k), Some(v), "resource {k} in {d:#?}");
    }

    assert_eq!((recs[1].str("warden.verdict"), recs[1].severity_number), (Some("allowed"), Some(9)));
    let sum = &recs[2];
    assert_eq!((sum.str("warden.operation"), sum.int("warden.count")), (Some("summary"), Some(1)));
    let l = &recs[3];
    assert_eq!(
        (l.severity_text.as_str(), l.str("warden.stage"), l.int("warden.count")),
        ("ERROR", Some("kernel"), Some(17))
    );
    assert_eq!(l.body_str(), Some("lost 17 events at the kernel stage (3 denies or audits): ring buffer full"));

    let s = until(&sink, "4 exported", |s| s.exported == 4).await;
    assert_eq!((s.state.as_str(), s.queued, s.failed_exports, s.rejected), ("connected", 0, 0, 0), "{s:?}");
    assert_eq!(s.endpoint, rotel.endpoint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_when_the_collector_comes_up() {
    let port = rotel::free_port();
    let sink = OtlpSink::start(&config(format!("http://127.0.0.1:{port}")), "gpu-node-1", "host-1")
        .expect("starts with the collector down");
    assert_eq!(sink.status().state, "connecting");
    sink.push(&(1..=5).map(|s| decision(s, if s % 2 == 0 { "denied" } else { "allowed" })).collect::<Vec<_>>());

    let down = until(&sink, "failed exports", |s| s.failed_exports >= 2).await;
    assert_eq!((down.state.as_str(), down.queued, down.exported), ("retrying", 5, 0), "{down:?}");
    assert!(down.last_error.as_deref().is_some_and(|e| e.contains("Unavailable")), "{down:?}");

    let rotel = tokio::task::block_in_place(|| Rotel::start_on(port));
    let up = until(&sink, "5 exported", |s| s.exported == 5).await;
    assert_eq!((up.state.as_str(), up.queued, up.dropped_allowed + up.dropped_denies), ("connected", 0, 0), "{up:?}");
    let recs = tokio::task::block_in_place(|| rotel.wait_records(5, WAIT));
    let seqs: Vec<_> = recs.iter().filter_map(|r| r.int("warden.seq")).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "each record once, in order");

    // And again after a collector restart.
    let mut rotel = rotel;
    tokio::task::block_in_place(|| rotel.restart());
    sink.push(&[decision(6, "denied")]);
    until(&sink, "6 exported", |s| s.exported == 6).await;
    let recs = tokio::task::block_in_place(|| rotel.wait_records(6, WAIT));
    assert_eq!(recs.last().and_then(|r| r.int("warden.seq")), Some(6));
}

/// A collector that accepts connections but never answers: each export
/// ends at the deadline and is retried; the sink keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_costs_a_timeout_per_attempt() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let cfg = OtlpConfig { timeout_ms: 300, ..config(format!("http://127.0.0.1:{port}")) };
    let sink = OtlpSink::start(&cfg, "gpu-node-1", "host-1").expect("start");
    sink.push(&[decision(1, "denied")]);
    let s = until(&sink, "two timed-out exports", |s| s.failed_exports >= 2).await;
    assert_eq!((s.state.as_str(), s.queued, s.exported), ("retrying", 1, 0), "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("timed out") || e.contains("Cancelled")), "{s:?}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_while_down_stays_bounded_and_keeps_every_deny() {
    let port = rotel::free_port();
    let cfg = OtlpConfig { queue_size: 100, batch_size: 10, ..config(format!("http://127.0.0.1:{port}")) };
    let sink = OtlpSink::start(&cfg, "gpu-node-1", "host-1").expect("start");
    let is_deny = |s: u64| s.is_multiple_of(50);
    let flood = |from: u64, to: u64| -> Vec<Arc<Event>> {
        (from..=to).map(|s| decision(s, if is_deny(s) { "denied" } else { "allowed" })).collect()
    };

    sink.push(&flood(1, 1000));
    let s = sink.status();
    assert_eq!((s.queued, s.queue_capacity, s.dropped_allowed, s.dropped_denies), (100, 100, 900, 0), "{s:?}");
    until(&sink, "failed exports", |s| s.failed_exports >= 1).await;
    // A second flood while a batch is held for retry: still bounded.
    sink.push(&flood(1001, 3000));
    let s = sink.status();
    assert!(s.queued <= s.queue_capacity, "{s:?}");
    assert_eq!(s.dropped_denies, 0, "{s:?}");

    let rotel = tokio::task::block_in_place(|| Rotel::start_on(port));
    assert!(sink.flush(WAIT).await, "drained: {:?}", sink.status());
    let s = sink.status();
    assert_eq!(s.exported, 100, "{s:?}");
    assert_eq!(s.exported + s.dropped_allowed + s.dropped_denies + s.rejected, 3000, "every event accounted: {s:?}");

    let recs = tokio::task::block_in_place(|| rotel.wait_records(100, WAIT));
    let mut denied: Vec<i64> =
        recs.iter().filter(|r| r.str("warden.verdict") == Some("denied")).filter_map(|r| r.int("warden.seq")).collect();
    denied.sort_unstable();
    let expected: Vec<i64> = (1..=3000).filter(|&s| is_deny(s as u64)).collect();
    assert_eq!(denied, expected, "every deny delivered");
    assert_eq!(recs.len(), 100);
}
