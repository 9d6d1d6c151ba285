//! Events as JSON, written by hand: byte for byte what serde_json writes for
//! `Event` (the tests hold the two equal), without serde's per-field
//! dispatch and with the constant keys copied rather than escaped. The JSON
//! lines sink runs this for every event (500k/s and more); serde remains
//! the format's definition and serves the control socket.
use crate::{
    enrich::{DecisionEvent, Event, GpuAssignmentEvent, LossEvent, PolicyEvent, SummaryEvent, TamperEvent},
    identity::meta::WorkloadIdentity,
};

/// Appends one event as a JSON object (no newline).
pub fn write_event(out: &mut Vec<u8>, ev: &Event) {
    let mut o = Obj::open(out);
    match ev {
        Event::Decision(e) => decision(&mut o, e),
        Event::Summary(e) => summary(&mut o, e),
        Event::Loss(e) => loss(&mut o, e),
        Event::Policy(e) => policy(&mut o, e),
        Event::Tamper(e) => tamper(&mut o, e),
        Event::Gpu(e) => gpu(&mut o, e),
    }
    o.close();
}

/// The fields every event starts with.
fn header(o: &mut Obj, time: &str, seq: u64, agent_id: &str, node: &str, kind: &str) {
    o.str("time", time);
    o.uint("seq", seq);
    o.str("agent_id", agent_id);
    o.str("node", node);
    o.str("kind", kind);
}

fn decision(o: &mut Obj, e: &DecisionEvent) {
    header(o, &e.time, e.seq, &e.agent_id, &e.node, e.kind);
    o.str("workload", &e.workload);
    o.str("identity", e.identity);
    if let Some(id) = e.cgroup_id {
        o.uint("cgroup_id", id);
    }
    o.nullable("cgroup", e.cgroup.as_deref());
    who(o, &e.who);
    if let Some(pid) = e.pid {
        o.uint("pid", pid.into());
    }
    if let Some(tgid) = e.tgid {
        o.uint("tgid", tgid.into());
    }
    if let Some(comm) = &e.comm {
        o.str("comm", comm);
    }
    o.nullable("exe", e.exe.as_deref());
    o.str("operation", e.operation);
    if let Some(p) = e.protocol {
        o.str("protocol", p);
    }
    if let Some(d) = &e.destination {
        o.key("destination");
        let mut n = Obj::open(o.out);
        n.str("address", &d.address);
        n.uint("port", d.port.into());
        n.close();
    }
    if let Some(f) = &e.file {
        o.key("file");
        let mut n = Obj::open(o.out);
        n.str("path", &f.path);
        n.str("access", f.access);
        if let Some(r) = f.reason {
            n.str("reason", r);
        }
        n.close();
    }
    if let Some(d) = &e.device {
        o.key("device");
        let mut n = Obj::open(o.out);
        n.str("path", &d.path);
        n.str("path_is", d.path_is);
        n.str("type", d.kind);
        n.uint("major", d.major.into());
        n.uint("minor", d.minor.into());
        n.str("access", &d.access);
        n.close();
    }
    o.nullable("segment", e.segment.as_deref());
    o.str("verdict", e.verdict);
    o.nullable("rule", e.rule.as_deref());
    if let Some(b) = e.backend {
        o.str("backend", b);
    }
}

/// The flattened identity: known fields only.
fn who(o: &mut Obj, w: &WorkloadIdentity) {
    let strings = [
        ("k8s.namespace.name", &w.namespace),
        ("k8s.pod.name", &w.pod_name),
        ("k8s.pod.uid", &w.pod_uid),
        ("k8s.pod.qos_class", &w.qos),
        ("k8s.serviceaccount.name", &w.service_account),
        ("k8s.container.name", &w.container_name),
        ("container.id", &w.container_id),
        ("container.runtime", &w.runtime),
        ("container.image.name", &w.image),
    ];
    for (k, v) in strings {
        if let Some(v) = v {
            o.str(k, v);
        }
    }
    if let Some(j) = w.slurm_job {
        o.uint("slurm.job.id", j);
    }
    if let Some(s) = &w.slurm_step {
        o.str("slurm.step", s);
    }
    if let Some(u) = w.slurm_uid {
        o.uint("slurm.uid", u.into());
    }
    for (k, v) in [
        ("slurm.user", &w.slurm_user),
        ("slurm.account", &w.slurm_account),
        ("slurm.partition", &w.slurm_partition),
        ("systemd.unit", &w.unit),
    ] {
        if let Some(v) = v {
            o.str(k, v);
        }
    }
}

fn summary(o: &mut Obj, e: &SummaryEvent) {
    header(o, &e.time, e.seq, &e.agent_id, &e.node, e.kind);
    o.str("operation", e.operation);
    o.str("workload", &e.workload);
    o.str("identity", e.identity);
    o.nullable("segment", e.segment.as_deref());
    o.str("verdict", e.verdict);
    o.nullable("rule", e.rule.as_deref());
    o.uint("count", e.count);
    o.str("window_start", &e.window_start);
    if let Some(b) = e.backend {
        o.str("backend", b);
    }
}

fn loss(o: &mut Obj, e: &LossEvent) {
    header(o, &e.time, e.seq, &e.agent_id, &e.node, e.kind);
    o.str("stage", e.stage);
    o.uint("count", e.count);
    o.uint("denied", e.denied);
    o.str("reason", e.reason);
}

fn policy(o: &mut Obj, e: &PolicyEvent) {
    header(o, &e.time, e.seq, &e.agent_id, &e.node, e.kind);
    o.str("operation", e.operation);
    o.str("result", e.result);
    o.uint("generation", e.generation);
    o.str("sha256", &e.sha256);
    o.uint("duration_us", e.duration_us);
    if let Some(err) = &e.error {
        o.str("error", err);
    }
}

fn tamper(o: &mut Obj, e: &TamperEvent) {
    header(o, &e.time, e.seq, &e.agent_id, &e.node, e.kind);
    o.str("target", &e.target);
    o.str("object", e.object);
    o.str("change", e.change);
    o.str("result", e.result);
    if let Some(err) = &e.error {
        o.str("error", err);
    }
}

fn gpu(o: &mut Obj, e: &GpuAssignmentEvent) {
    header(o, &e.time, e.seq, &e.agent_id, &e.node, e.kind);
    o.str("result", e.result);
    o.str("k8s.namespace.name", &e.namespace);
    o.str("k8s.pod.name", &e.pod);
    o.str("k8s.container.name", &e.container);
    o.str("resource", &e.resource);
    o.str("device_id", &e.device_id);
    o.str("reason", &e.reason);
}

/// An object being written.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    /// Keys are this file's constants: plain ASCII, nothing to escape.
    fn key(&mut self, k: &str) {
        debug_assert!(!k.bytes().any(needs_escape), "{k}");
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        string(self.out, v);
    }

    /// `null` when absent (fields serde writes either way).
    fn nullable(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => {
                self.key(k);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    fn uint(&mut self, k: &str, v: u64) {
        self.key(k);
        self.out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A JSON string, escaped as serde_json does.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        enrich::{DeviceTarget, FileTarget},
        sinks::otlp::convert::tests::deny,
    };

    fn same_as_serde(ev: &Event) {
        let mut ours = Vec::new();
        write_event(&mut ours, ev);
        let theirs = serde_json::to_vec(ev).unwrap();
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
    }

    #[test]
    fn every_kind_of_event_matches_serde() {
        let net = deny(9, "10.0.0.1");
        same_as_serde(&Event::Decision(net.clone()));

        // Every identity field, and nothing optional set.
        let mut full = deny(10, "2001:db8::1");
        full.who = Arc::new(WorkloadIdentity {
            namespace: Some("ml".into()),
            pod_name: Some("p".into()),
            pod_uid: Some("u".into()),
            qos: Some("Guaranteed".into()),
            service_account: Some("sa".into()),
            container_name: Some("c".into()),
            container_id: Some("id".into()),
            runtime: Some("containerd".into()),
            image: Some("img:1".into()),
            slurm_job: Some(u64::MAX),
            slurm_step: Some("batch".into()),
            slurm_uid: Some(1000),
            slurm_user: Some("alice".into()),
            slurm_account: Some("acct".into()),
            slurm_partition: Some("gpu".into()),
            unit: Some("x.service".into()),
        });
        (full.cgroup_id, full.cgroup, full.exe, full.segment, full.rule) = (None, None, None, None, None);
        same_as_serde(&Event::Decision(full));

        let mut file = deny(11, "x");
        (file.kind, file.destination, file.protocol, file.backend) = ("file", None, None, Some("fanotify"));
        file.file = Some(FileTarget {
            path: "/data/a \"quoted\"\\ name\n\t\u{1}\u{7f}é".into(),
            access: "read",
            reason: Some("escaped"),
        });
        same_as_serde(&Event::Decision(file));

        let mut dev = deny(12, "x");
        (dev.kind, dev.destination, dev.protocol) = ("device", None, None);
        dev.device = Some(DeviceTarget {
            path: "char 195:0".into(),
            path_is: "number",
            kind: "char",
            major: 195,
            minor: 0,
            access: "read,write".into(),
        });
        same_as_serde(&Event::Decision(dev));

        same_as_serde(&Event::Summary(SummaryEvent {
            time: "t".into(),
            time_unix_ns: 1,
            seq: 3,
            agent_id: "1f-2a".into(),
            node: "n".into(),
            kind: "file",
            operation: "summary",
            workload: "w\u{8}\u{c}\r".into(),
            identity: "matched",
            segment: None,
            verdict: "allowed",
            rule: Some("r".into()),
            count: 0,
            window_start: "s".into(),
            backend: Some("lsm"),
        }));
        same_as_serde(&crate::sinks::queue::tests::loss(4));
        let seq = crate::enrich::Numbering {
            seq: std::sync::Arc::new(crate::enrich::seq::Seq::starting_at(5)),
            agent_id: "a-1".into(),
        };
        for error in [None, Some("p.yaml:3:1: bad \"field\"\n".to_string())] {
            let o = crate::report::ReloadOutcome {
                applied: error.is_none(),
                generation: 2,
                sha256: "ab".into(),
                error,
                duration_us: 1234,
                ..Default::default()
            };
            same_as_serde(&Event::Policy(PolicyEvent::new(&seq, "n", &o)));
        }
        for repair in [Ok("re-attached"), Err("attaching: \"busy\"".to_string())] {
            let f =
                crate::hooks::guard::Finding { target: "connect4".into(), object: "link", change: "detached", repair };
            same_as_serde(&Event::Tamper(crate::enrich::TamperEvent::new(&seq, "n", &f)));
        }
        let r = crate::devices::assigned::Refusal {
            namespace: "ml".into(),
            pod: "p\"0".into(),
            container: "main".into(),
            resource: "nvidia.com/mig-1g.10gb".into(),
            device_id: "MIG-1234abcd".into(),
            reason: "no mapping\n".into(),
        };
        same_as_serde(&Event::Gpu(GpuAssignmentEvent::refused(&seq, "n", &r)));
    }

    #[test]
    fn arbitrary_strings_escape_as_serde_does() {
        let mut s = String::new();
        for c in (0u32..0x300).filter_map(char::from_u32) {
            s.push(c);
        }
        for text in [s.as_str(), "", "plain", "\"", "\\\\", "\u{2028}\u{2029}", "😀"] {
            let mut ours = Vec::new();
            string(&mut ours, text);
            assert_eq!(ours, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }
}
