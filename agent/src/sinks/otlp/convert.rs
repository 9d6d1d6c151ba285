//! `Event` → OTLP `LogRecord`. Attribute names follow OpenTelemetry semantic
//! conventions where one exists (process.*, network.*, server.*, file.path,
//! k8s.*, container.*), else live under `warden.*`. Records are written
//! field by field straight into the protobuf request (`wire`): this runs for
//! every event, at 100k/s and more.
use std::{io::Write, sync::Arc};

use super::{
    proto::{
        common::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
        logs::SeverityNumber,
        resource::Resource,
    },
    wire,
};
use crate::{
    enrich::{DecisionEvent, Event, GpuAssignmentEvent, LossEvent, Outcome, PolicyEvent, SummaryEvent, TamperEvent},
    identity::meta::WorkloadIdentity,
};

/// Instrumentation scope of every record.
pub const SCOPE: &str = "warden";

/// `LogRecord` fields (opentelemetry/proto/logs/v1/logs.proto).
mod field {
    pub const TIME: u32 = 1;
    pub const SEVERITY_NUMBER: u32 = 2;
    pub const SEVERITY_TEXT: u32 = 3;
    pub const BODY: u32 = 5;
    pub const ATTRIBUTES: u32 = 6;
    pub const OBSERVED_TIME: u32 = 11;
    pub const EVENT_NAME: u32 = 12;
    /// `AnyValue.string_value`.
    pub const STRING_VALUE: u32 = 1;
}

/// Attributes of the record being written; empty strings are left out.
struct Attrs<'a>(&'a mut Vec<u8>);

impl Attrs<'_> {
    fn str(&mut self, key: &str, v: &str) {
        if !v.is_empty() {
            wire::key_string(self.0, field::ATTRIBUTES, key, v);
        }
    }

    fn opt(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    fn int(&mut self, key: &str, v: i64) {
        wire::key_int(self.0, field::ATTRIBUTES, key, v);
    }

    /// u64 counters and ids as OTLP's int64 (saturating: no wrap to negative).
    fn uint(&mut self, key: &str, v: u64) {
        self.int(key, i64::try_from(v).unwrap_or(i64::MAX));
    }

    /// Every known field of the workload identity, under its OTel name (the
    /// serde names of `WorkloadIdentity`).
    fn who(&mut self, w: &WorkloadIdentity) {
        self.opt("k8s.namespace.name", w.namespace.as_deref());
        self.opt("k8s.pod.name", w.pod_name.as_deref());
        self.opt("k8s.pod.uid", w.pod_uid.as_deref());
        self.opt("k8s.pod.qos_class", w.qos.as_deref());
        self.opt("k8s.serviceaccount.name", w.service_account.as_deref());
        self.opt("k8s.container.name", w.container_name.as_deref());
        self.opt("container.id", w.container_id.as_deref());
        self.opt("container.runtime", w.runtime.as_deref());
        self.opt("container.image.name", w.image.as_deref());
        if let Some(j) = w.slurm_job {
            self.uint("slurm.job.id", j);
        }
        self.opt("slurm.step", w.slurm_step.as_deref());
        if let Some(u) = w.slurm_uid {
            self.int("slurm.uid", u.into());
        }
        self.opt("slurm.user", w.slurm_user.as_deref());
        self.opt("slurm.account", w.slurm_account.as_deref());
        self.opt("slurm.partition", w.slurm_partition.as_deref());
        self.opt("systemd.unit", w.unit.as_deref());
    }
}

fn severity(ev: &Event) -> (SeverityNumber, &'static str) {
    match ev {
        Event::Policy(p) if p.error.is_some() => (SeverityNumber::Error, "ERROR"),
        // Someone changed what enforces: always worth a page.
        Event::Tamper(_) => (SeverityNumber::Error, "ERROR"),
        // A container was given a device it will be denied.
        Event::Gpu(_) => (SeverityNumber::Warn, "WARN"),
        _ => match ev.verdict() {
            "denied" | "audited" => (SeverityNumber::Warn, "WARN"),
            "loss" => (SeverityNumber::Error, "ERROR"),
            _ => (SeverityNumber::Info, "INFO"),
        },
    }
}

fn segment_note(out: &mut Vec<u8>, segment: Option<&str>) {
    let _ = match segment {
        Some(s) => write!(out, "(segment {s})"),
        None => write!(out, "(no segment)"),
    };
}

/// `denied connect tcp 10.0.0.1:443 by trainer (segment object-store)`.
fn decision_body(out: &mut Vec<u8>, e: &DecisionEvent) {
    let _ = write!(out, "{} {} ", e.verdict, e.operation);
    let _ = if let Some(d) = &e.destination {
        let proto = e.protocol.unwrap_or("ip");
        if d.address.contains(':') {
            write!(out, "{proto} [{}]:{}", d.address, d.port)
        } else {
            write!(out, "{proto} {}:{}", d.address, d.port)
        }
    } else if let Some(f) = &e.file {
        write!(out, "{} ({})", f.path, f.access)
    } else if let Some(d) = &e.device {
        write!(out, "{} ({})", d.path, d.access)
    } else {
        write!(out, "{}", e.kind)
    };
    let _ = write!(out, " by {} ", e.workload);
    segment_note(out, e.segment.as_deref());
}

/// The attributes decisions and summaries share.
fn outcome_attrs(o: &Outcome, a: &mut Attrs) {
    a.str("warden.verdict", o.verdict);
    a.str("warden.operation", o.operation);
    a.str("warden.workload", o.workload);
    a.str("warden.identity", o.identity);
    a.opt("warden.segment", o.segment);
    a.opt("warden.rule", o.rule);
    a.opt("warden.backend", o.backend);
}

fn decision_attrs(e: &DecisionEvent, a: &mut Attrs) {
    a.opt("warden.cgroup", e.cgroup.as_deref());
    if let Some(id) = e.cgroup_id {
        a.uint("warden.cgroup.id", id);
    }
    if let Some(tgid) = e.tgid {
        a.int("process.pid", tgid.into());
    }
    if let Some(pid) = e.pid {
        a.int("thread.id", pid.into());
    }
    a.opt("process.executable.name", e.comm.as_deref());
    a.opt("process.executable.path", e.exe.as_deref());
    a.opt("network.transport", e.protocol);
    if let Some(d) = &e.destination {
        a.str("network.type", if d.address.contains(':') { "ipv6" } else { "ipv4" });
        a.str("network.peer.address", &d.address);
        a.int("network.peer.port", d.port.into());
        // The workload is the client: the destination is the server side.
        a.str("server.address", &d.address);
        a.int("server.port", d.port.into());
    }
    if let Some(f) = &e.file {
        a.str("file.path", &f.path);
        a.str("warden.file.access", f.access);
        a.opt("warden.file.reason", f.reason);
    }
    if let Some(d) = &e.device {
        a.str("warden.device.path", &d.path);
        a.str("warden.device.path_is", d.path_is);
        a.str("warden.device.type", d.kind);
        a.int("warden.device.major", d.major.into());
        a.int("warden.device.minor", d.minor.into());
        a.str("warden.device.access", &d.access);
    }
    a.who(&e.who);
}

fn summary_body(out: &mut Vec<u8>, e: &SummaryEvent) {
    let _ = write!(out, "{} {} {} decisions by {} ", e.count, e.verdict, e.kind, e.workload);
    segment_note(out, e.segment.as_deref());
}

fn summary_attrs(e: &SummaryEvent, a: &mut Attrs) {
    a.uint("warden.count", e.count);
    a.str("warden.window_start", &e.window_start);
}

fn loss_body(out: &mut Vec<u8>, e: &LossEvent) {
    let _ =
        write!(out, "lost {} events at the {} stage ({} denies or audits): {}", e.count, e.stage, e.denied, e.reason);
}

fn policy_body(out: &mut Vec<u8>, e: &PolicyEvent) {
    let _ = match &e.error {
        None => write!(out, "policy reload applied: generation {}", e.generation),
        Some(err) => write!(out, "policy reload refused, generation {} stays: {err}", e.generation),
    };
}

fn tamper_body(out: &mut Vec<u8>, e: &TamperEvent) {
    let _ = match &e.error {
        None => write!(out, "{} {} {}: {}", e.object, e.target, e.change, e.result),
        Some(err) => write!(out, "{} {} {}: repair failed: {err}", e.object, e.target, e.change),
    };
}

fn gpu_body(out: &mut Vec<u8>, e: &GpuAssignmentEvent) {
    let _ = write!(
        out,
        "{}/{}/{}: {} `{}` refused: {}",
        e.namespace, e.pod, e.container, e.resource, e.device_id, e.reason
    );
}

fn gpu_attrs(e: &GpuAssignmentEvent, a: &mut Attrs) {
    a.str("warden.result", e.result);
    a.str("k8s.namespace.name", &e.namespace);
    a.str("k8s.pod.name", &e.pod);
    a.str("k8s.container.name", &e.container);
    a.str("warden.resource", &e.resource);
    a.str("warden.device_id", &e.device_id);
    a.str("warden.reason", &e.reason);
}

fn tamper_attrs(e: &TamperEvent, a: &mut Attrs) {
    a.str("warden.target", &e.target);
    a.str("warden.object", e.object);
    a.str("warden.change", e.change);
    a.str("warden.result", e.result);
    a.opt("warden.error", e.error.as_deref());
}

fn policy_attrs(e: &PolicyEvent, a: &mut Attrs) {
    a.str("warden.operation", e.operation);
    a.str("warden.result", e.result);
    a.uint("warden.generation", e.generation);
    a.str("warden.sha256", &e.sha256);
    a.uint("warden.duration_us", e.duration_us);
    a.opt("warden.error", e.error.as_deref());
}

fn loss_attrs(e: &LossEvent, a: &mut Attrs) {
    a.str("warden.stage", e.stage);
    a.uint("warden.count", e.count);
    a.uint("warden.denied", e.denied);
    a.str("warden.reason", e.reason);
}

/// One `LogRecord`'s fields, appended to `out`; `observed_ns` is when the
/// exporter took the event.
pub fn log_record(out: &mut Vec<u8>, ev: &Event, observed_ns: u64) {
    let (number, text) = severity(ev);
    wire::fixed64(out, field::TIME, ev.time_unix_ns());
    wire::uint(out, field::SEVERITY_NUMBER, number as u64);
    wire::bytes(out, field::SEVERITY_TEXT, text.as_bytes());
    wire::message(out, field::BODY, |out| {
        wire::message(out, field::STRING_VALUE, |out| match ev {
            Event::Decision(e) => decision_body(out, e),
            Event::Summary(e) => summary_body(out, e),
            Event::Loss(e) => loss_body(out, e),
            Event::Policy(e) => policy_body(out, e),
            Event::Tamper(e) => tamper_body(out, e),
            Event::Gpu(e) => gpu_body(out, e),
        })
    });
    let mut a = Attrs(out);
    a.str("warden.kind", ev.kind());
    a.uint("warden.seq", ev.seq());
    a.str("warden.agent_id", ev.agent_id());
    if let Some(o) = ev.outcome() {
        outcome_attrs(&o, &mut a);
    }
    let event_name = match ev {
        Event::Decision(e) => {
            decision_attrs(e, &mut a);
            "warden.decision"
        }
        Event::Summary(e) => {
            summary_attrs(e, &mut a);
            "warden.summary"
        }
        Event::Loss(e) => {
            loss_attrs(e, &mut a);
            "warden.loss"
        }
        Event::Policy(e) => {
            policy_attrs(e, &mut a);
            "warden.policy"
        }
        Event::Tamper(e) => {
            tamper_attrs(e, &mut a);
            "warden.tamper"
        }
        Event::Gpu(e) => {
            gpu_attrs(e, &mut a);
            "warden.gpu_assignment"
        }
    };
    wire::fixed64(out, field::OBSERVED_TIME, observed_ns);
    wire::bytes(out, field::EVENT_NAME, event_name.as_bytes());
}

/// The agent as an OTLP resource: `service.*`, `host.name`, `k8s.node.name`,
/// then the configured pairs (which replace a default of the same name).
pub fn resource(node: &str, host: &str, extra: &[(String, String)]) -> Resource {
    let mut pairs: Vec<(&str, &str)> =
        vec![("service.name", "warden"), ("service.version", env!("CARGO_PKG_VERSION")), ("host.name", host)];
    pairs.push(("k8s.node.name", node));
    for (k, v) in extra {
        pairs.retain(|(key, _)| key != k);
        pairs.push((k, v));
    }
    let attributes = pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }) })
        .collect();
    Resource { attributes, dropped_attributes_count: 0 }
}

/// What every request of an exporter starts with, encoded once.
#[derive(Clone, Debug)]
pub struct Prelude {
    /// `ResourceLogs.resource`, tag and length included.
    resource: Vec<u8>,
    /// `ScopeLogs.scope`, tag and length included.
    scope: Vec<u8>,
}

impl Prelude {
    pub fn new(resource: &Resource) -> Self {
        let scope = InstrumentationScope {
            name: SCOPE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let mut p = Prelude { resource: Vec::new(), scope: Vec::new() };
        prost::encoding::message::encode(1, resource, &mut p.resource);
        prost::encoding::message::encode(1, &scope, &mut p.scope);
        p
    }
}

/// One encoded `ExportLogsServiceRequest`: one resource, one scope, the
/// events in order.
pub fn request(prelude: &Prelude, events: &[Arc<Event>], observed_ns: u64) -> Vec<u8> {
    let mut scope_logs = Vec::with_capacity(prelude.scope.len() + events.len() * 768);
    scope_logs.extend_from_slice(&prelude.scope);
    for ev in events {
        // ScopeLogs.log_records = 2
        wire::message(&mut scope_logs, 2, |out| log_record(out, ev, observed_ns));
    }
    // ExportLogsServiceRequest.resource_logs = 1, holding the resource and
    // ScopeLogs (= 2): lengths known, so the batch is copied once.
    let resource_logs = prelude.resource.len() + 1 + wire::varint_len(scope_logs.len() as u64) + scope_logs.len();
    let mut out = Vec::with_capacity(resource_logs + 11);
    wire::header(&mut out, 1, resource_logs);
    out.extend_from_slice(&prelude.resource);
    wire::bytes(&mut out, 2, &scope_logs);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use prost::Message;

    use super::*;
    use crate::{
        enrich::{Destination, DeviceTarget, FileTarget},
        sinks::otlp::proto::{collector::ExportLogsServiceRequest, logs::LogRecord},
    };

    /// One record as a collector decodes it.
    fn record(ev: &Event, observed_ns: u64) -> LogRecord {
        let mut b = Vec::new();
        log_record(&mut b, ev, observed_ns);
        LogRecord::decode(&b[..]).expect("a valid LogRecord")
    }

    /// A network deny with a full Kubernetes identity.
    pub(crate) fn deny(seq: u64, address: &str) -> DecisionEvent {
        DecisionEvent {
            time: "2026-11-22T06:00:00.000000001Z".into(),
            time_unix_ns: 1_795_327_200_000_000_001,
            seq,
            agent_id: "a-1".into(),
            node: "gpu-1".into(),
            kind: "network",
            workload: "trainer".into(),
            identity: "matched",
            cgroup_id: Some(4242),
            cgroup: Some("/kubepods/pod-u1/abc".into()),
            who: Arc::new(WorkloadIdentity {
                namespace: Some("ml".into()),
                pod_name: Some("trainer-0".into()),
                pod_uid: Some("u1".into()),
                container_id: Some("abc".into()),
                slurm_job: Some(7),
                ..Default::default()
            }),
            pid: Some(101),
            tgid: Some(100),
            comm: Some("python3".into()),
            exe: Some("/usr/bin/python3".into()),
            operation: "connect",
            protocol: Some("tcp"),
            destination: Some(Destination { address: address.into(), port: 443 }),
            file: None,
            device: None,
            segment: Some("object-store".into()),
            verdict: "denied",
            rule: Some("trainer→object-store".into()),
            backend: None,
        }
    }

    fn attrs(r: &LogRecord) -> HashMap<&str, &Value> {
        r.attributes.iter().map(|kv| (kv.key.as_str(), kv.value.as_ref().unwrap().value.as_ref().unwrap())).collect()
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn body(r: &LogRecord) -> &str {
        match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s,
            other => panic!("body {other:?}"),
        }
    }

    #[test]
    fn network_deny_uses_semantic_convention_names() {
        let r = record(&Event::Decision(deny(9, "10.0.0.1")), 5);
        assert_eq!(body(&r), "denied connect tcp 10.0.0.1:443 by trainer (segment object-store)");
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "WARN"));
        assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (1_795_327_200_000_000_001, 5));
        let a = attrs(&r);
        for (k, v) in [
            ("warden.verdict", s("denied")),
            ("warden.kind", s("network")),
            ("warden.operation", s("connect")),
            ("warden.segment", s("object-store")),
            ("warden.rule", s("trainer→object-store")),
            ("warden.workload", s("trainer")),
            ("warden.identity", s("matched")),
            ("warden.seq", Value::IntValue(9)),
            ("warden.cgroup", s("/kubepods/pod-u1/abc")),
            ("warden.cgroup.id", Value::IntValue(4242)),
            ("process.pid", Value::IntValue(100)),
            ("thread.id", Value::IntValue(101)),
            ("process.executable.name", s("python3")),
            ("process.executable.path", s("/usr/bin/python3")),
            ("network.transport", s("tcp")),
            ("network.type", s("ipv4")),
            ("network.peer.address", s("10.0.0.1")),
            ("network.peer.port", Value::IntValue(443)),
            ("server.address", s("10.0.0.1")),
            ("server.port", Value::IntValue(443)),
            ("k8s.namespace.name", s("ml")),
            ("k8s.pod.name", s("trainer-0")),
            ("k8s.pod.uid", s("u1")),
            ("container.id", s("abc")),
            ("slurm.job.id", Value::IntValue(7)),
        ] {
            assert_eq!(a.get(k), Some(&&v), "{k}");
        }
        assert!(!a.contains_key("k8s.container.name"), "unknown identity fields are left out");
        assert!(!a.contains_key("file.path") && !a.contains_key("warden.backend"));
        assert_eq!(a.len(), r.attributes.len(), "no duplicate keys");
    }

    #[test]
    fn ipv6_file_and_device_decisions() {
        let r = record(&Event::Decision(deny(1, "2001:db8::1")), 0);
        assert!(body(&r).contains("tcp [2001:db8::1]:443"), "{}", body(&r));
        assert_eq!(attrs(&r)["network.type"], &s("ipv6"));

        let mut f = deny(2, "x");
        (f.kind, f.operation, f.destination, f.protocol, f.verdict, f.segment) =
            ("file", "open", None, None, "audited", None);
        f.file = Some(FileTarget { path: "/data/train.bin".into(), access: "write", reason: None });
        f.backend = Some("fanotify");
        let r = record(&Event::Decision(f), 0);
        assert_eq!(body(&r), "audited open /data/train.bin (write) by trainer (no segment)");
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        let a = attrs(&r);
        assert_eq!((a["file.path"], a["warden.file.access"]), (&s("/data/train.bin"), &s("write")));
        assert_eq!(a["warden.backend"], &s("fanotify"));
        assert!(!a.contains_key("network.peer.address") && !a.contains_key("warden.segment"));

        let mut d = deny(3, "x");
        (d.kind, d.operation, d.destination, d.protocol, d.verdict) = ("device", "open", None, None, "allowed");
        d.device = Some(DeviceTarget {
            path: "/dev/nvidia0".into(),
            path_is: "canonical",
            kind: "char",
            major: 195,
            minor: 0,
            access: "read".into(),
        });
        let r = record(&Event::Decision(d), 0);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
        let a = attrs(&r);
        assert_eq!(a["warden.device.path"], &s("/dev/nvidia0"));
        assert_eq!(a["warden.device.path_is"], &s("canonical"));
        assert_eq!(a["warden.device.type"], &s("char"));
        assert_eq!((a["warden.device.major"], a["warden.device.minor"]), (&Value::IntValue(195), &Value::IntValue(0)));
        assert_eq!(a["warden.device.access"], &s("read"));
    }

    #[test]
    fn summary_and_loss_records() {
        let sum = Event::Summary(SummaryEvent {
            time: String::new(),
            time_unix_ns: 10,
            seq: 4,
            agent_id: "a-1".into(),
            node: "n".into(),
            kind: "network",
            operation: "summary",
            workload: "trainer".into(),
            identity: "matched",
            segment: Some("object-store".into()),
            verdict: "allowed",
            rule: Some("r".into()),
            count: 42,
            window_start: "2026-11-22T06:00:00Z".into(),
            backend: None,
        });
        let r = record(&sum, 0);
        assert_eq!(body(&r), "42 allowed network decisions by trainer (segment object-store)");
        assert_eq!((r.severity_number, r.event_name.as_str()), (9, "warden.summary"));
        let a = attrs(&r);
        assert_eq!((a["warden.count"], a["warden.window_start"]), (&Value::IntValue(42), &s("2026-11-22T06:00:00Z")));
        assert_eq!(a["warden.operation"], &s("summary"));

        let loss = Event::Loss(LossEvent {
            time: String::new(),
            time_unix_ns: 11,
            seq: 5,
            agent_id: "a-1".into(),
            node: "n".into(),
            kind: "loss",
            stage: "kernel",
            count: 17,
            denied: 3,
            reason: "ring buffer full",
        });
        let r = record(&loss, 0);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(body(&r), "lost 17 events at the kernel stage (3 denies or audits): ring buffer full");
        let a = attrs(&r);
        assert_eq!((a["warden.stage"], a["warden.reason"]), (&s("kernel"), &s("ring buffer full")));
        assert_eq!((a["warden.count"], a["warden.denied"]), (&Value::IntValue(17), &Value::IntValue(3)));
        assert_eq!(a["warden.kind"], &s("loss"));
    }

    #[test]
    fn policy_records() {
        let seq = crate::enrich::Numbering {
            seq: std::sync::Arc::new(crate::enrich::seq::Seq::starting_at(6)),
            agent_id: "a-1".into(),
        };
        let applied = crate::report::ReloadOutcome {
            applied: true,
            generation: 3,
            sha256: "ab".into(),
            duration_us: 42,
            ..Default::default()
        };
        let r = record(&Event::Policy(PolicyEvent::new(&seq, "n", &applied)), 0);
        assert_eq!(body(&r), "policy reload applied: generation 3");
        assert_eq!((r.severity_text.as_str(), r.event_name.as_str()), ("INFO", "warden.policy"));
        let a = attrs(&r);
        assert_eq!((a["warden.kind"], a["warden.result"]), (&s("policy"), &s("applied")));
        assert_eq!((a["warden.generation"], a["warden.duration_us"]), (&Value::IntValue(3), &Value::IntValue(42)));
        assert_eq!(a["warden.seq"], &Value::IntValue(7));
        assert!(!a.contains_key("warden.error"));

        let refused = crate::report::ReloadOutcome {
            applied: false,
            error: Some("p.yaml:4:9: segments[0].name: bad".into()),
            ..applied
        };
        let r = record(&Event::Policy(PolicyEvent::new(&seq, "n", &refused)), 0);
        assert_eq!(body(&r), "policy reload refused, generation 3 stays: p.yaml:4:9: segments[0].name: bad");
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(attrs(&r)["warden.error"], &s("p.yaml:4:9: segments[0].name: bad"));
    }

    #[test]
    fn resource_defaults_and_overrides() {
        let extra = [("k8s.cluster.name".to_string(), "gpu-a".to_string()), ("host.name".into(), "override".into())];
        let r = resource("node-1", "host-1", &extra);
        let a: HashMap<_, _> = r
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_ref().unwrap().value.as_ref().unwrap()))
            .collect();
        assert_eq!(a["service.name"], &s("warden"));
        assert_eq!(a["service.version"], &s(env!("CARGO_PKG_VERSION")));
        assert_eq!(a["k8s.node.name"], &s("node-1"));
        assert_eq!(a["host.name"], &s("override"));
        assert_eq!(a["k8s.cluster.name"], &s("gpu-a"));
        assert_eq!(a.len(), r.attributes.len());
    }

    #[test]
    fn requests_decode_whole() {
        let r = resource("node-1", "host-1", &[]);
        let events: Vec<_> = (1..=300).map(|seq| Arc::new(Event::Decision(deny(seq, "10.0.0.1")))).collect();
        let req = ExportLogsServiceRequest::decode(&request(&Prelude::new(&r), &events, 7)[..]).expect("valid request");
        assert_eq!(req.resource_logs.len(), 1);
        assert_eq!(req.resource_logs[0].resource.as_ref(), Some(&r));
        let scope = &req.resource_logs[0].scope_logs;
        assert_eq!(scope.len(), 1);
        assert_eq!(scope[0].scope.as_ref().unwrap().name, SCOPE);
        assert_eq!(scope[0].scope.as_ref().unwrap().version, env!("CARGO_PKG_VERSION"));
        let records = &scope[0].log_records;
        assert_eq!(records.len(), 300);
        for (seq, rec) in (1..=300).zip(records) {
            assert_eq!(rec, &record(&events[seq as usize - 1], 7));
            assert_eq!(attrs(rec)["warden.seq"], &Value::IntValue(seq));
        }
        let empty = ExportLogsServiceRequest::decode(&request(&Prelude::new(&r), &[], 0)[..]).unwrap();
        assert!(empty.resource_logs[0].scope_logs[0].log_records.is_empty());
    }
}
