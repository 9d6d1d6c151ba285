//! The event stream end to end on real hooks: summaries of allowed flows,
//! the live tail with filters, JSON lines rotation, and loss accounting
//! under a flood (every decision is either written or counted as dropped;
//! a deny is never lost to an allowed-flow flood).
mod harness;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use harness::*;
use serde_json::Value;

/// `store` (127.0.0.2:port) granted to `trainer`, not to `other`.
fn policy(port: u16, events: &str) -> String {
    format!(
        "version: 1\nagent:\n  events: {{ {events} }}\n{}workloads:\n  - name: trainer\n    selector: {{ cgroup: \"trainer\" }}\n  - name: other\n    selector: {{ cgroup: \"other\" }}\nallow:\n  - workload: trainer\n    segment: store\n",
        store_segment(port)
    )
}

fn events_cli(agent: &Agent, args: &[&str]) -> Command {
    let mut c = Command::new(WARDEN);
    c.arg("events").arg("--socket").arg(&agent.socket).args(args);
    c
}

#[test]
fn allowed_flows_are_summarized_and_the_tail_follows_with_filters() {
    let tree = TestTree::new("tail");
    let trainer = tree.mkdir("trainer");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port, "allowed: summary, summaryIntervalMs: 300"));

    // A follower of denies by `oth*`, started before anything happens.
    let mut follower = KillOnDrop(
        events_cli(&agent, &["--follow", "--json", "--tail", "0", "--verdict", "denied", "--workload", "oth*"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read on a thread: a broken tail fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    agent.eventually("the follower is subscribed", || agent.status()["events"]["tail"]["subscribers"] == 1);

    for _ in 0..3 {
        assert!(netprobe(&trainer, "tcp", "127.0.0.2", port).ok());
    }
    let denied = netprobe(&other, "tcp", "127.0.0.2", port);
    assert!(denied.eperm());

    let first = rx.recv_timeout(Duration::from_secs(15)).expect("the follower printed the deny");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!((str_of(&first, "workload"), str_of(&first, "verdict")), ("other", "denied"));
    assert_eq!(first["tgid"], denied.pid);
    drop(follower);

    // Three allowed connects: summaries (one per window they fell in)
    // adding up to 3, no single events.
    let summed = || -> u64 {
        agent.events().iter().filter(|e| e["operation"] == "summary").map(|e| e["count"].as_u64().unwrap()).sum()
    };
    agent.eventually("summaries count the 3 allowed connects", || summed() == 3);
    let sums: Vec<Value> = agent.events().into_iter().filter(|e| e["operation"] == "summary").collect();
    for s in &sums {
        assert_eq!((str_of(s, "kind"), str_of(s, "workload"), str_of(s, "verdict")), ("network", "trainer", "allowed"));
        assert_eq!(str_of(s, "segment"), "store");
        assert!(str_of(s, "rule").starts_with("allow[0]"), "{s}");
        assert!(str_of(s, "window_start") < str_of(s, "time"), "{s}");
    }
    assert!(!agent.events().iter().any(|e| e["verdict"] == "allowed" && e["operation"] == "connect"));
    let st = agent.status();
    assert_eq!(st["events"]["summarized"].as_u64(), Some(3));
    assert_eq!(st["events"]["summaries"].as_u64(), Some(sums.len() as u64));
    assert_eq!(workload(&st, "trainer")["allowed"], 3, "counters still count every decision");

    // Without --follow: the recent history, filtered, then exit.
    let out = events_cli(&agent, &["--json", "--tail", "5"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let past: Vec<Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let seqs: Vec<u64> = past.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=1 + sums.len() as u64).collect::<Vec<_>>(), "the deny and the summaries: {past:?}");
    let out = events_cli(&agent, &["--segment", "store", "--kind", "network"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Labelled fields: a workload name cannot pass for a verdict.
    assert!(
        text.contains(" verdict=denied kind=network workload=other op=connect protocol=tcp dest=127.0.0.2:"),
        "{text}"
    );
    assert!(text.contains(" verdict=allowed kind=network workload=trainer op=summary count="), "{text}");
    assert!(text.contains(" since=") && text.contains(" segment=store rule=\"allow[0]"), "{text}");
    let none = events_cli(&agent, &["--workload", "nobody"]).output().unwrap();
    assert!(none.status.success() && none.stdout.is_empty(), "{none:?}");
    agent.eventually("the follower is gone", || agent.status()["events"]["tail"]["subscribers"] == 0);
}

#[test]
fn jsonl_rotation_keeps_every_event_in_order() {
    let tree = TestTree::new("rotate");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port, "rotate: { maxBytes: 8192, keep: 1000 }"));
    let n = flood(&other, "flood", port, 0.5, 1000)["denied"].as_u64().unwrap();
    assert!(n >= 100, "{n} denies");
    agent.eventually("every deny is written", || agent.status()["events"]["written"].as_u64() == Some(n));
    let st = agent.status();
    let rotations = st["events"]["jsonl_rotations"].as_u64().unwrap();
    assert!(rotations >= 3, "{rotations} rotations for {n} events");
    // Oldest file first: .rotations … .1, then the live file.
    let mut seqs = Vec::new();
    for k in (0..=rotations).rev() {
        let path = if k == 0 { agent.events.clone() } else { agent.events.with_extension(format!("jsonl.{k}")) };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(k == 0 || text.len() as u64 >= 8192, "{} rotated early", path.display());
        seqs.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap()));
    }
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "no event lost or reordered across files");
}

#[test]
fn a_deny_flood_is_accounted_for_and_memory_stays_bounded() {
    let tree = TestTree::new("flood");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    // A small ring so the flood overruns it: drops must happen and be counted.
    // Rotation at 8 MiB, every file kept: the count spans rotated files.
    let yaml = policy(port, "allowed: each, rotate: { maxBytes: 8388608, keep: 1000 }")
        .replace("agent:\n", "agent:\n  ringBufferBytes: 262144\n");
    let agent = Agent::start(&tree, &yaml);
    let pid = agent.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(memory(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let other = other.clone();
            std::thread::spawn(move || flood(&other, "flood", port, 10.0, 0))
        })
        .collect();
    let attempts: u64 = floods.into_iter().map(|f| f.join().unwrap()["denied"].as_u64().unwrap()).sum();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();

    // Settle: everything the kernel queued is written, and the last drops
    // are reported (loss is checked once a second).
    let reported = |events: &[Value]| -> u64 {
        events.iter().filter(|e| e["kind"] == "loss").map(|e| e["count"].as_u64().unwrap()).sum()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = agent.status();
        let e = &st["events"];
        let losses = e["loss_events"].as_u64().unwrap();
        let written = e["written"].as_u64() == Some(e["kernel_emitted"].as_u64().unwrap() + losses);
        if written && e["kernel_dropped"].as_u64() == Some(reported(&agent.events())) {
            break st;
        }
        assert!(Instant::now() < deadline, "pipeline did not settle: {e}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let e = &st["events"];
    let decisions = workload(&st, "other")["denied"].as_u64().unwrap();
    assert_eq!(decisions, attempts, "the kernel counted every attempt");
    let dropped = e["kernel_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "the flood overran a 256 KiB ring: {e}");
    assert!(e["jsonl_rotations"].as_u64() > Some(0), "the events span rotated files: {e}");
    assert_eq!(e["kernel_dropped_denies"].as_u64(), Some(dropped), "all of them denies");
    assert_eq!(
        e["kernel_dropped_per_cpu"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        dropped
    );

    let events = agent.events();
    let denies = events.iter().filter(|e| e["verdict"] == "denied" && e["workload"] == "other").count() as u64;
    assert_eq!(denies + dropped, decisions, "emitted + dropped = the kernel's decisions");
    assert_eq!(reported(&events), dropped, "loss events in the stream add up to the kernel's drops");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "no gap in seq: loss happened before numbering");
    eprintln!(
        "flood: {attempts} denies in 10 s, {denies} written, {dropped} dropped in the kernel, peak RSS {} MiB",
        peak >> 20
    );
    assert!(peak <= 128 << 20, "agent RSS peaked at {} MiB", peak >> 20);
}

#[test]
fn an_allowed_flood_never_costs_a_deny() {
    let tree = TestTree::new("keepdeny");
    let trainer = tree.mkdir("trainer");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let yaml = policy(port, "allowed: each").replace("agent:\n", "agent:\n  ringBufferBytes: 65536\n");
    let agent = Agent::start(&tree, &yaml);
    let allowed: Vec<_> = (0..2)
        .map(|_| {
            let trainer = trainer.clone();
            std::thread::spawn(move || flood(&trainer, "flood-udp", port, 5.0, 0))
        })
        .collect();
    // Paced denies while the allowed flood runs.
    let d = flood(&other, "flood", port, 4.0, 2000);
    let (denied, attempts) = (d["denied"].as_u64().unwrap(), d["attempts"].as_u64().unwrap());
    assert!(denied > 4000 && denied == attempts, "every paced connect of `other` was denied: {d}");
    let sent: u64 = allowed.into_iter().map(|f| f.join().unwrap()["ok"].as_u64().unwrap()).sum();
    let written = || agent.events().iter().filter(|e| e["verdict"] == "denied").count() as u64;
    agent.eventually("every deny written", || written() == denied);
    let st = agent.status();
    let e = &st["events"];
    assert_eq!(e["kernel_dropped_denies"], 0, "{e}");
    let shed = e["kernel_allowed_shed"].as_u64().unwrap() + e["kernel_dropped"].as_u64().unwrap();
    assert!(shed > 0, "the allowed flood ({sent} datagrams) overran the ring: {e}");
    eprintln!("{sent} allowed datagrams, {shed} allowed records shed, {denied} denies all written");
}

/// `GET path` over plain HTTP/1.1: (status code, body).
#[test]
fn prometheus_metrics_and_probes_on_a_running_agent() {
    let tree = TestTree::new("metrics");
    let other = tree.mkdir("other");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port, "allowed: each"));
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    agent.wait_events(1, |e| e["verdict"] == "denied");
    let st = agent.status();
    let addr = st["metrics"].as_str().expect("status names the metrics address").to_string();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");

    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    let line = |prefix: &str| body.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
    assert_eq!(
        line("warden_decisions_total{workload=\"other\",kind=\"network\",verdict=\"denied\"}").as_deref(),
        Some("warden_decisions_total{workload=\"other\",kind=\"network\",verdict=\"denied\"} 1"),
        "{body}"
    );
    let written = st["events"]["written"].as_u64().unwrap();
    assert!(line("warden_events_written_total").is_some_and(|l| l.ends_with(&format!(" {written}"))), "{body}");
    assert!(line("warden_events_kernel_dropped_total").is_some(), "{body}");
    assert!(line("process_resident_memory_bytes").is_some(), "{body}");
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(&addr, "/readyz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(&addr, "/nope").0, 404);
}
