//! `warden events`: recent and live events from the daemon, filtered.
use std::{io::Write, process::ExitCode};

use serde_json::Value;

use crate::{
    control::{self, Request},
    sinks::tail::Filter,
};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep printing new events as they happen.
    #[arg(long, short)]
    pub follow: bool,
    /// Print each event as its JSON line.
    #[arg(long)]
    pub json: bool,
    /// Recent events to print first (the daemon keeps the last 1024).
    #[arg(long, short = 'n', default_value_t = 10)]
    pub tail: usize,
    /// Only this workload (`*` wildcards allowed).
    #[arg(long)]
    pub workload: Option<String>,
    /// Only this verdict.
    #[arg(long, value_parser = ["allowed", "denied", "audited", "loss"])]
    pub verdict: Option<String>,
    /// Only this segment.
    #[arg(long)]
    pub segment: Option<String>,
    /// Only this kind.
    #[arg(long, value_parser = ["network", "file", "device", "loss"])]
    pub kind: Option<String>,
    /// Control socket of the daemon.
    #[arg(long, env = "WARDEN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
}

pub fn run(a: EventsArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter { workload: a.workload, verdict: a.verdict, segment: a.segment, kind: a.kind };
    let req = Request::Events { filter, tail: a.tail, follow: a.follow };
    let mut out = std::io::stdout().lock();
    let on_line = |line: &str| -> anyhow::Result<()> {
        if a.json {
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", human(&serde_json::from_str(line)?))?;
        }
        // Line by line, so `| grep` sees events as they come.
        out.flush()?;
        Ok(())
    };
    let on_notice = |n: &Value| eprintln!("warden: {} events dropped: this reader fell behind", n["count"]);
    match control::client::stream(&a.socket, &req, on_line, on_notice) {
        // A closed pipe (`| head`) ends the tail quietly.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        r => r.map(|()| ExitCode::SUCCESS),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// One line per event: time and `#seq`, then `key=value` fields in a
/// fixed order (verdict, kind, workload, what, where, who), each only when
/// the event has it. Labels keep a workload named `allowed` from reading
/// as a verdict; values with spaces, quotes or control characters are
/// quoted and escaped, so a file name cannot forge fields or drive the
/// terminal.
pub fn human(e: &Value) -> String {
    let mut line = format!("{} #{}", e["time"].as_str().unwrap_or(""), e["seq"]);
    let mut field = |key: &str, value: &Value| {
        let text = match value {
            Value::Null => return,
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        line.push(' ');
        line.push_str(key);
        line.push('=');
        line.push_str(&quoted(&text));
    };
    for key in ["verdict", "kind", "workload"] {
        field(key, &e[key]);
    }
    if e["identity"].as_str().is_some_and(|i| i != "matched") {
        field("identity", &e["identity"]);
    }
    field("op", &e["operation"]);
    field("protocol", &e["protocol"]);
    if let Some(d) = e["destination"].as_object() {
        let addr = d["address"].as_str().unwrap_or("");
        let addr = if addr.contains(':') { format!("[{addr}]") } else { addr.to_string() };
        field("dest", &Value::String(format!("{addr}:{}", d["port"])));
    }
    for object in ["file", "device"] {
        for key in ["path", "access", "reason"] {
            field(key, &e[object][key]);
        }
    }
    for (key, json) in [
        ("stage", "stage"),
        ("count", "count"),
        ("since", "window_start"),
        ("denies", "denied"),
        ("reason", "reason"),
        ("target", "target"),
        ("object", "object"),
        ("change", "change"),
        ("result", "result"),
        ("generation", "generation"),
        ("error", "error"),
        ("segment", "segment"),
        ("rule", "rule"),
        ("backend", "backend"),
    ] {
        field(key, &e[json]);
    }
    if let (Some(ns), Some(pod)) = (e["k8s.namespace.name"].as_str(), e["k8s.pod.name"].as_str()) {
        field("pod", &Value::String(format!("{ns}/{pod}")));
    } else {
        field("slurm.job", &e["slurm.job.id"]);
    }
    field("pid", &e["tgid"]);
    field("comm", &e["comm"]);
    line
}

/// A value as it is: quoted and escaped (Rust's `{:?}`) when it is empty
/// or holds a space, a quote, `=`, a backslash or a control character.
fn quoted(v: &str) -> String {
    let plain = !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control() || "\"'=\\".contains(c));
    if plain { v.to_string() } else { format!("{v:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_label_every_field() {
        let deny = serde_json::json!({"time": "T", "seq": 7, "verdict": "denied", "kind": "network", "workload": "trainer",
            "identity": "matched", "operation": "connect", "protocol": "tcp", "destination": {"address": "::1", "port": 443},
            "segment": "s3", "rule": null, "tgid": 42, "comm": "curl", "k8s.namespace.name": "ml", "k8s.pod.name": "p0"});
        assert_eq!(
            human(&deny),
            "T #7 verdict=denied kind=network workload=trainer op=connect protocol=tcp dest=[::1]:443 segment=s3 \
             pod=ml/p0 pid=42 comm=curl"
        );
        let sum = serde_json::json!({"time": "T", "seq": 8, "verdict": "allowed", "kind": "file", "workload": "reader",
            "operation": "summary", "count": 3000, "window_start": "S", "segment": "data", "rule": "allow[0] reader->data"});
        assert_eq!(
            human(&sum),
            "T #8 verdict=allowed kind=file workload=reader op=summary count=3000 since=S segment=data \
             rule=\"allow[0] reader->data\""
        );
        let loss = serde_json::json!({"time": "T", "seq": 9, "kind": "loss", "stage": "kernel", "count": 5, "denied": 2, "reason": "ring buffer full"});
        assert_eq!(human(&loss), "T #9 kind=loss stage=kernel count=5 denies=2 reason=\"ring buffer full\"");
    }

    #[test]
    fn a_workload_named_like_a_verdict_is_still_a_workload() {
        // The line that prompted labels: `#7512 denied file allowed open …`.
        let e = serde_json::json!({"time": "T", "seq": 7512, "verdict": "denied", "kind": "file", "workload": "allowed",
            "identity": "matched", "operation": "open", "file": {"path": "/data/w b\u{1b}[2J", "access": "read", "reason": "escaped"},
            "segment": "weights", "rule": null, "backend": "fanotify", "tgid": 5, "comm": "cat"});
        assert_eq!(
            human(&e),
            "T #7512 verdict=denied kind=file workload=allowed op=open path=\"/data/w b\\u{1b}[2J\" access=read \
             reason=escaped segment=weights backend=fanotify pid=5 comm=cat"
        );
        let unknown = serde_json::json!({"time": "T", "seq": 1, "verdict": "denied", "kind": "device",
            "workload": "(unresolved)", "identity": "unresolved", "operation": "open",
            "device": {"path": "/dev/nvidia0", "type": "char", "major": 195, "minor": 0, "access": "read"}, "segment": "gpus"});
        assert_eq!(
            human(&unknown),
            "T #1 verdict=denied kind=device workload=(unresolved) identity=unresolved op=open path=/dev/nvidia0 \
             access=read segment=gpus"
        );
        let reload = serde_json::json!({"time": "T", "seq": 2, "kind": "policy", "operation": "reload", "result": "refused",
            "generation": 1, "sha256": "ab", "duration_us": 5, "error": "p.yaml:1:1: version: missing"});
        assert_eq!(
            human(&reload),
            "T #2 kind=policy op=reload result=refused generation=1 error=\"p.yaml:1:1: version: missing\""
        );
    }
}
