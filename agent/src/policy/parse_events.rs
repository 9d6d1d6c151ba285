//! Reading `agent.events` and `agent.metrics`.
use std::path::{Path, PathBuf};

use super::error::{Loc, quoted};
use super::headers_file;
use super::reader::Reader;
use super::yaml::{Node, Value};
use crate::settings::{AllowedEvents, EventsConfig, MetricsConfig, OtlpConfig};

const EVENTS_KEYS: &[&str] = &["jsonl", "rotate", "logUnprotected", "allowed", "summaryIntervalMs", "otlp"];
const ROTATE_KEYS: &[&str] = &["maxBytes", "keep"];
const OTLP_KEYS: &[&str] = &[
    "endpoint",
    "caFile",
    "certFile",
    "keyFile",
    "headers",
    "headersFile",
    "resource",
    "batchSize",
    "concurrency",
    "queueSize",
    "timeoutMs",
];
const METRICS_KEYS: &[&str] = &["address"];

impl Reader<'_> {
    pub(super) fn agent_events(&mut self, node: &Node) -> EventsConfig {
        let mut ev = EventsConfig::default();
        let Some(e) = self.map(node, "agent.events", EVENTS_KEYS) else { return ev };
        if let Some(n) = e.get("jsonl")
            && let Some(s) = self.nonempty_string(n, &e.field("jsonl"))
        {
            if s != "-" && s != "off" && !Path::new(&s).is_absolute() {
                let reason = format!("{}: expected \"-\" (stdout), off or an absolute path", quoted(&s));
                self.err(n, &e.field("jsonl"), reason);
            }
            ev.jsonl = s;
        }
        if let Some(n) = e.get("rotate")
            && let Some(r) = self.map(n, "agent.events.rotate", ROTATE_KEYS)
        {
            if let Some(v) = self.bounded(&r.get("maxBytes"), &r.field("maxBytes"), 4096, 1 << 40) {
                ev.rotate.max_bytes = v;
            }
            if let Some(v) = self.bounded(&r.get("keep"), &r.field("keep"), 1, 1000) {
                ev.rotate.keep = v as u32;
            }
        }
        if let Some(n) = e.get("logUnprotected") {
            ev.log_unprotected = self.boolean(n, &e.field("logUnprotected")).unwrap_or_default();
        }
        if let Some(n) = e.get("allowed") {
            let options = [("summary", AllowedEvents::Summary), ("each", AllowedEvents::Each)];
            ev.allowed = self.keyword(n, &e.field("allowed"), &options).unwrap_or_default();
        }
        let field = e.field("summaryIntervalMs");
        if let Some(v) = self.bounded(&e.get("summaryIntervalMs"), &field, 100, 3_600_000) {
            ev.summary_interval_ms = v;
        }
        if let Some(n) = e.get("otlp") {
            ev.otlp = self.otlp(n);
        }
        ev
    }

    fn otlp(&mut self, node: &Node) -> Option<OtlpConfig> {
        let m = self.map(node, "agent.events.otlp", OTLP_KEYS)?;
        let mut o = OtlpConfig::default();
        let endpoint = self.required(&m, "endpoint")?;
        let field = m.field("endpoint");
        let url = self.nonempty_string(endpoint, &field)?;
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.parse::<tonic::transport::Uri>().is_err() {
            self.err(
                endpoint,
                &field,
                format!("{}: expected an http:// or https:// URL (e.g. http://127.0.0.1:4317)", quoted(&url)),
            );
        }
        o.endpoint = url;
        let tls = o.endpoint.starts_with("https://");
        for (key, slot) in [("caFile", &mut o.ca_file), ("certFile", &mut o.cert_file), ("keyFile", &mut o.key_file)] {
            let Some(n) = m.get(key) else { continue };
            let Some(s) = self.nonempty_string(n, &m.field(key)) else { continue };
            if !Path::new(&s).is_absolute() {
                self.err(n, &m.field(key), format!("{} must be an absolute path", quoted(&s)));
            } else if !tls {
                self.err(n, &m.field(key), "TLS files need an https:// endpoint");
            }
            *slot = Some(PathBuf::from(s));
        }
        if o.cert_file.is_some() != o.key_file.is_some() {
            let key = if o.cert_file.is_some() { "certFile" } else { "keyFile" };
            let at = m.get(key).unwrap_or(node);
            self.err(at, &m.field(key), "certFile and keyFile go together (mutual TLS)");
        }
        let inline = self.string_map_at(m.get("headers"), &m.field("headers"), true);
        o.headers = inline.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();
        if let Some(n) = m.get("headersFile")
            && let Some(s) = self.nonempty_string(n, &m.field("headersFile"))
        {
            self.headers_file(n, &m.field("headersFile"), &s, &inline, &mut o.headers);
            o.headers_file = Some(PathBuf::from(s));
        }
        o.resource = self.string_map(m.get("resource"), &m.field("resource"), false);
        if let Some(v) = self.bounded(&m.get("batchSize"), &m.field("batchSize"), 1, 10_000) {
            o.batch_size = v as usize;
        }
        if let Some(v) = self.bounded(&m.get("concurrency"), &m.field("concurrency"), 1, 64) {
            o.concurrency = v as usize;
        }
        if let Some(v) = self.bounded(&m.get("queueSize"), &m.field("queueSize"), 1, 10_000_000) {
            o.queue_size = v as usize;
        }
        if let Some(v) = self.bounded(&m.get("timeoutMs"), &m.field("timeoutMs"), 100, 600_000) {
            o.timeout_ms = v;
        }
        if o.batch_size > o.queue_size {
            self.err(
                node,
                &m.field("batchSize"),
                format!("{} is larger than queueSize {}", o.batch_size, o.queue_size),
            );
        }
        Some(o)
    }

    pub(super) fn agent_metrics(&mut self, node: &Node) -> MetricsConfig {
        let mut c = MetricsConfig::default();
        let Some(m) = self.map(node, "agent.metrics", METRICS_KEYS) else { return c };
        if let Some(n) = m.get("address")
            && let Some(s) = self.nonempty_string(n, &m.field("address"))
        {
            c.address = match s.as_str() {
                "off" => None,
                a => match a.parse() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        self.err(
                            n,
                            &m.field("address"),
                            format!("{}: expected IP:port (e.g. 127.0.0.1:9464) or off", quoted(a)),
                        );
                        c.address
                    }
                },
            };
        }
        c
    }

    /// An optional integer in `lo..=hi`.
    fn bounded(&mut self, node: &Option<&Node>, field: &str, lo: i64, hi: i64) -> Option<u64> {
        let n = (*node)?;
        let v = self.integer(n, field, lo..=hi, |v| format!("{v} is out of range ({lo}..={hi})"))?;
        Some(v as u64)
    }

    /// Adds the headers of `headersFile` (`path`) to `headers`. A name also
    /// given inline is an error naming both places: which one wins would be
    /// a guess.
    fn headers_file(
        &mut self,
        node: &Node,
        field: &str,
        path: &str,
        inline: &[(String, String, Loc)],
        headers: &mut Vec<(String, String)>,
    ) {
        if !Path::new(path).is_absolute() {
            let reason =
                format!("{} must be an absolute path (e.g. a Secret mounted at /etc/warden/otlp)", quoted(path));
            self.err(node, field, reason);
            return;
        }
        let from_file = match headers_file::read(Path::new(path)) {
            Ok(h) => h,
            Err(errors) => {
                for e in errors {
                    self.err(node, field, e);
                }
                return;
            }
        };
        for h in from_file {
            if let Some((_, _, at)) = inline.iter().find(|(k, _, _)| *k == h.name) {
                let reason = format!(
                    "header `{}` is given both in {path} (line {}:{}) and in agent.events.otlp.headers (line {}:{}); keep one",
                    h.name, h.loc.line, h.loc.column, at.line, at.column
                );
                self.err(node, field, reason);
                continue;
            }
            headers.push((h.name, h.value));
        }
    }

    /// A mapping of string keys to string values (gRPC headers are
    /// lower-case ASCII tokens; values printable ASCII).
    fn string_map(&mut self, node: Option<&Node>, field: &str, header: bool) -> Vec<(String, String)> {
        self.string_map_at(node, field, header).into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    /// `string_map`, with where each key is written. Values never appear
    /// in messages (headers are credentials).
    pub(super) fn string_map_at(
        &mut self,
        node: Option<&Node>,
        field: &str,
        header: bool,
    ) -> Vec<(String, String, Loc)> {
        let Some(node) = node else { return Vec::new() };
        let Value::Map(pairs) = &node.value else {
            self.expected(node, field, "a mapping");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in pairs {
            let Some(key) = self.nonempty_string(k, field) else { continue };
            let vf = format!("{field}.{key}");
            let Some(value) = self.string(v, &vf) else { continue };
            if header {
                let key_ok = key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
                if !key_ok || key.starts_with("grpc-") {
                    self.err(k, &vf, "header names are lower-case letters, digits, `-`, `_`, `.` (not grpc-*)");
                    continue;
                }
                if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    self.err(v, &vf, "header values must be printable ASCII");
                    continue;
                }
            }
            out.push((key, value, k.loc));
        }
        out
    }
}
