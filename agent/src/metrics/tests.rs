//! Renderer and real-socket tests, with a small exposition-format checker in
//! place of promtool.
use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{Source, render, serve};
use crate::report::*;

fn report() -> StatusReport {
    let workload = |name: &str, cgroups, allowed, denied, audited| WorkloadStatus {
        name: name.into(),
        id: 1,
        cgroups,
        allowed,
        denied,
        audited,
        file_allowed: 10,
        file_denied: 11,
        file_audited: 12,
        device_allowed: 20,
        device_denied: 21,
        device_audited: 22,
        members: vec![],
    };
    StatusReport {
        version: "0.1.0".into(),
        pid: 42,
        node: "gpu-node-1".into(),
        kernel: "6.18.0".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        mode: "enforce".into(),
        default_action: "allow".into(),
        policy: PolicyStatus {
            file: "/etc/warden/policy.yaml".into(),
            sha256: "ab".repeat(32),
            loaded_at: "2026-01-01T00:00:00Z".into(),
            segments: 3,
            workloads: 2,
            rules: 7,
            prefixes_v4: 5,
            prefixes_v6: 1,
            generation: 3,
            kernel_set: 1,
            reload: ReloadStatus {
                attempts: 4,
                failures: 2,
                last_result: Some("refused".into()),
                last_duration_us: 41_500,
                ..Default::default()
            },
        },
        cgroup_root: "/sys/fs/cgroup".into(),
        cgroup_namespace: "host".into(),
        programs: vec![ProgramStatus {
            name: "connect4".into(),
            kind: "cgroup_sock_addr".into(),
            attached_to: "/sys/fs/cgroup".into(),
            program_id: 17,
        }],
        enforcement: vec![
            EnforcementStatus {
                backend: "cgroup sock_addr".into(),
                state: "enforced".into(),
                ..EnforcementStatus::not_configured("network")
            },
            EnforcementStatus {
                not_enforced: vec!["mmap".into()],
                missing: vec!["/data".into(), "/x".into()],
                state: "partial".into(),
                ..EnforcementStatus::not_configured("files")
            },
            EnforcementStatus::not_configured("devices"),
        ],
        workloads: vec![
            workload("trainer", 4, 100, 3, 0),
            workload("we\"ird\\name\nx", 1, 0, 0, 0),
            workload("(unidentified)", 0, 5, 0, 0),
        ],
        events: EventStatus {
            kernel_emitted: 1000,
            kernel_dropped: 9,
            kernel_dropped_denies: 2,
            kernel_allowed_shed: 40,
            backstop_drops: 12,
            kernel_dropped_per_cpu: vec![4, 0, 5],
            written: 990,
            write_errors: 1,
            decode_errors: 0,
            last_seq: 991,
            cgroup_events: 50,
            cgroup_events_dropped: 0,
            decisions: 1200,
            file_events_dropped: 6,
            file_errors: 0,
            summarized: 300,
            summaries: 12,
            loss_events: 2,
            jsonl: "/var/log/warden/events.jsonl".into(),
            jsonl_rotations: 3,
            otlp: Some(OtlpStatus {
                endpoint: "http://collector:4317".into(),
                state: "connected".into(),
                queued: 8,
                queue_capacity: 4096,
                exported: 950,
                dropped_allowed: 7,
                dropped_denies: 1,
                failed_exports: 2,
                rejected: 0,
                last_error: None,
                headers: vec!["authorization".into()],
                headers_file: Some("/etc/warden/otlp/headers.yaml".into()),
            }),
            tail: TailStatus { subscribers: 1, dropped: 4 },
        },
        identity: IdentityStatus {
            cgroups_tracked: 30,
            cgroups_identified: 25,
            map_entries: 25,
            carried_over: 0,
            delay_samples: 40,
            delay_p50_us: 250,
            delay_p99_us: 1500,
            delay_max_us: 2_000_000,
            kubernetes: SourceStatus {
                state: "synced".into(),
                objects: 12,
                updates: 40,
                relists: 1,
                ..Default::default()
            },
            slurm: SourceStatus { state: "off".into(), ..Default::default() },
        },
        gpu_assignment: Some(AssignmentReport { containers: 2, cgroups: 2, refreshes: 9, ..Default::default() }),
        metrics: Some("127.0.0.1:9464".into()),
        pins: PinStatus::default(),
        integrity: IntegrityStatus { verified: true, max_age_ms: 1000, ..Default::default() },
    }
}

/// Checks the text format the way Prometheus parses it: every sample line
/// is `name{labels} value`, each family has one TYPE line before its
/// samples, a family's samples are contiguous, no series repeats, and
/// counters end in `_total`. Returns the samples as (series, value).
fn check_format(text: &str) -> Vec<(String, f64)> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut series = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = vec![];
    assert!(text.ends_with('\n'), "no final newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut f = rest.splitn(3, ' ');
            let (keyword, name) = (f.next().unwrap(), f.next().expect(line));
            assert!(valid_name(name), "{line}");
            if keyword == "TYPE" {
                let kind = f.next().expect(line);
                assert!(["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind), "{line}");
                assert!(typed.insert(name.into(), kind.into()).is_none(), "second TYPE: {line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "stray line {line:?}");
        let (series_text, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        let (name, labels) = match series_text.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect(line)),
            None => (series_text, ""),
        };
        assert!(valid_name(name), "{line}");
        check_labels(labels, line);
        let family = [name, name.strip_suffix("_sum").unwrap_or(name), name.strip_suffix("_count").unwrap_or(name)]
            .into_iter()
            .find(|f| typed.get(*f).is_some_and(|k| *f == name || k == "summary" || k == "histogram"))
            .unwrap_or_else(|| panic!("no TYPE before {line}"));
        if current.as_deref() != Some(family) {
            assert!(done.insert(family.to_string()), "family {family} not contiguous");
            current = Some(family.to_string());
        }
        assert!(series.insert(series_text.to_string()), "duplicate series {series_text}");
        samples.push((series_text.to_string(), value));
    }
    samples
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `k="v",k="v"` with `\\`, `\"` and `\n` the only escapes.
fn check_labels(mut s: &str, line: &str) {
    let mut names = HashSet::new();
    while !s.is_empty() {
        let (name, rest) = s.split_once("=\"").expect(line);
        assert!(valid_name(name) && names.insert(name), "label {name} in {line}");
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect(line) {
                (_, '\\') => assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n'))), "escape in {line}"),
                (i, '"') => break i,
                (_, c) => assert!(c != '\n', "{line}"),
            }
        };
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or_else(|| {
            assert!(s.is_empty(), "after label value in {line}");
            s
        });
    }
}

fn rendered() -> String {
    let mut out = String::new();
    render::render(&report(), &mut out);
    out
}

#[test]
fn renders_expected_samples() {
    let text = rendered();
    let samples: HashMap<String, f64> = check_format(&text).into_iter().collect();
    for (series, value) in [
        (r#"warden_decisions_total{workload="trainer",kind="network",verdict="denied"}"#, 3.0),
        (r#"warden_decisions_total{workload="trainer",kind="network",verdict="allowed"}"#, 100.0),
        (r#"warden_decisions_total{workload="trainer",kind="file",verdict="audited"}"#, 12.0),
        (r#"warden_decisions_total{workload="trainer",kind="device",verdict="denied"}"#, 21.0),
        (r#"warden_decisions_total{workload="we\"ird\\name\nx",kind="network",verdict="denied"}"#, 0.0),
        (r#"warden_workload_cgroups{workload="trainer"}"#, 4.0),
        (
            r#"warden_build_info{version="0.1.0",node="gpu-node-1",kernel="6.18.0",mode="enforce",default_action="allow"}"#,
            1.0,
        ),
        (r#"warden_events_kernel_dropped_total{class="denied"}"#, 2.0),
        (r#"warden_events_kernel_dropped_total{class="allowed"}"#, 7.0),
        (r#"warden_events_kernel_dropped_cpu_total{cpu="2"}"#, 5.0),
        ("warden_events_kernel_emitted_total", 1000.0),
        ("warden_events_kernel_allowed_shed_total", 40.0),
        ("warden_network_backstop_drops_total", 12.0),
        (r#"warden_events_written_total{sink="jsonl"}"#, 990.0),
        (r#"warden_events_pipeline_dropped_total{stage="file_queue"}"#, 6.0),
        ("warden_events_loss_reports_total", 2.0),
        ("warden_otlp_up", 1.0),
        (r#"warden_otlp_dropped_total{class="allowed"}"#, 7.0),
        ("warden_otlp_queue_capacity", 4096.0),
        ("warden_tail_dropped_total", 4.0),
        (r#"warden_enforcement{kind="files",state="partial",backend="none"}"#, 1.0),
        (r#"warden_enforcement_missing{kind="files"}"#, 2.0),
        (r#"warden_identity_delay_seconds{quantile="0.99"}"#, 0.0015),
        (r#"warden_identity_delay_seconds{quantile="1"}"#, 2.0),
        ("warden_identity_delay_seconds_count", 40.0),
        (r#"warden_metadata_source_up{source="kubernetes"}"#, 1.0),
        (r#"warden_metadata_source_state{source="slurm",state="off"}"#, 1.0),
        (r#"warden_metadata_source_updates_total{source="kubernetes"}"#, 40.0),
        ("warden_gpu_assignment_up", 1.0),
        ("warden_policy_generation", 3.0),
        ("warden_policy_reloads_total", 4.0),
        ("warden_policy_reload_failures_total", 2.0),
        ("warden_policy_last_reload_successful", 0.0),
        ("warden_policy_last_reload_duration_seconds", 0.0415),
    ] {
        assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
    }
    // The exact line, as a scraper sees it.
    assert!(text.contains("\nwarden_decisions_total{workload=\"trainer\",kind=\"network\",verdict=\"denied\"} 3\n"));
    // A source that is off has no up, object or counter samples.
    assert!(!text.contains(r#"warden_metadata_source_up{source="slurm"}"#));
    for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"] {
        assert!(samples.contains_key(name), "{name}");
    }
}

#[test]
fn every_counter_ends_in_total() {
    let text = rendered();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
}

#[test]
fn empty_report_is_valid() {
    let mut r = report();
    r.workloads.clear();
    r.programs.clear();
    r.enforcement.clear();
    r.events = EventStatus::default();
    r.gpu_assignment = None;
    r.identity.kubernetes.state = "off".into();
    r.policy.reload = ReloadStatus::default();
    let mut out = String::new();
    render::render_report(&r, &mut out);
    check_format(&out);
    // No reload yet: the policy in force is the file's.
    assert!(out.contains("\nwarden_policy_last_reload_successful 1\n"), "{out}");
    assert!(!out.contains("warden_otlp_"));
    assert!(!out.contains("warden_gpu_assignment_"));
}

#[test]
fn escapes_label_values_and_help() {
    let mut r = report();
    r.node = "a\\b\"c\nd".into();
    let mut out = String::new();
    render::render_report(&r, &mut out);
    assert!(out.contains(r#"node="a\\b\"c\nd""#), "{out}");
    check_format(&out);
}

struct TestSource {
    ready: Mutex<Result<(), String>>,
}

impl Source for TestSource {
    fn status(&self) -> StatusReport {
        report()
    }
    fn live(&self) -> Result<(), String> {
        Ok(())
    }
    fn ready(&self) -> Result<(), String> {
        self.ready.lock().unwrap().clone()
    }
}

/// A server on its own runtime, so the tests can use blocking std sockets.
fn start(ready: Result<(), String>) -> (tokio::runtime::Runtime, SocketAddr, Arc<TestSource>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let source = Arc::new(TestSource { ready: Mutex::new(ready) });
    rt.spawn(serve(listener, source.clone()));
    (rt, addr, source)
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    try_exchange(addr, request).unwrap()
}

fn try_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {raw:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = header(head, "content-length").unwrap().parse().unwrap();
    if !request.starts_with(b"HEAD ") {
        assert_eq!(length, body.len(), "{head}");
    }
    assert_eq!(header(head, "connection").as_deref(), Some("close"));
    Ok(Answer { status, head: head.into(), body: body.into() })
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
}

#[test]
fn serves_metrics_and_probes() {
    let (_rt, addr, source) = start(Err("policy not loaded".into()));
    let m = get(addr, "/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(header(&m.head, "content-type").unwrap(), "text/plain; version=0.0.4; charset=utf-8");
    check_format(&m.body);
    assert!(m.body.contains("warden_decisions_total{workload=\"trainer\",kind=\"network\",verdict=\"denied\"} 3\n"));

    let h = get(addr, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let r = get(addr, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "policy not loaded\n"));
    *source.ready.lock().unwrap() = Ok(());
    assert_eq!(get(addr, "/readyz?x=1").status, 200);

    let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(header(&head.head, "content-length").unwrap().parse::<usize>().unwrap() > 1000);

    assert_eq!(get(addr, "/nope").status, 404);
    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(post.status, 405);
    assert_eq!(header(&post.head, "allow").as_deref(), Some("GET, HEAD"));
    assert_eq!(exchange(addr, b"garbage\r\n\r\n").status, 400);
    // Bytes over 0x7e in the path (found by the fuzzer): refused, never
    // handed to a handler.
    let high = exchange(addr, b"GET /metr\xdc\xabcs HTTP/1.1\r\n\r\n");
    assert_eq!((high.status, high.body.as_str()), (400, "bad request: target\n"));
    // Pipelined garbage after a good head: the first is answered, the rest drained.
    let piped = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n\0\xffjunk\r\n\r\nPOST / HTTP/1.1\r\n\r\n");
    assert_eq!((piped.status, piped.body.as_str()), (200, "ok\n"));
    assert_eq!(exchange(addr, b"GET / HTTP/1.1").status, 400); // closed mid-head
    let big = format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024));
    assert_eq!(exchange(addr, big.as_bytes()).status, 431);
}

#[test]
fn silent_client_blocks_no_one_and_times_out() {
    let (_rt, addr, _) = start(Ok(()));
    let mut idle = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    // Closed at the read timeout, with nothing sent.
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(9), "{waited:?}");
    // Half a head by then: answered 408.
    partial.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = String::new();
    partial.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 408 "), "{raw:?}");
}

#[test]
fn excess_connections_are_refused_then_served() {
    let (_rt, addr, _) = start(Ok(()));
    let idle: Vec<TcpStream> = (0..super::http::MAX_CONNECTIONS).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Sends nothing: a request unread at close could turn the answer into a reset.
    let mut refused = TcpStream::connect(addr).unwrap();
    refused.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = String::new();
    refused.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 503 ") && raw.ends_with("\r\n\r\nbusy\n"), "{raw:?}");
    drop(idle);
    let t = Instant::now();
    loop {
        // Until the server has seen the closes, a request may still be
        // refused, and refusing it unread can reset the connection.
        let a = try_exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
        if a.is_ok_and(|a| a.status == 200) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "still refused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn checker_rejects_bad_text() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    check_format(ok);
    for bad in [
        "a_total 1\n",                                                 // no TYPE
        "# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n", // two TYPEs
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n",    // not contiguous
        "# TYPE a counter\na 1\n",                                     // counter without _total
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",                            // bad escape
        "# TYPE a gauge\na{x=\"1\"} one\n",                            // bad value
        "# TYPE a gauge\na 1\na 2\n",                                  // duplicate series
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",                      // duplicate label
    ] {
        let caught = std::panic::catch_unwind(|| check_format(bad));
        assert!(caught.is_err(), "accepted {bad:?}");
    }
}
