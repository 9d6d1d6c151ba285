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

/// One line per event: time, seq, verdict, kind, workload, what, where, who.
pub fn human(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("");
    let mut line = format!("{} #{} {:<7} {:<7} {}", s("time"), e["seq"], s("verdict"), s("kind"), s("workload"));
    if s("kind") == "loss" {
        let reason = s("reason");
        return format!(
            "{} #{} LOSS {}: {} records ({} denies): {reason}",
            s("time"),
            e["seq"],
            s("stage"),
            e["count"],
            e["denied"]
        );
    }
    let what = if s("operation") == "summary" {
        format!("{}× since {}", e["count"], s("window_start"))
    } else if let Some(d) = e["destination"].as_object() {
        let addr = d["address"].as_str().unwrap_or("");
        let addr = if addr.contains(':') { format!("[{addr}]") } else { addr.to_string() };
        format!("{} {} {addr}:{}", s("operation"), s("protocol"), d["port"])
    } else if let Some(f) = e["file"].as_object() {
        format!("{} {} ({})", s("operation"), f["path"].as_str().unwrap_or(""), f["access"].as_str().unwrap_or(""))
    } else if let Some(d) = e["device"].as_object() {
        format!("{} {} ({})", s("operation"), d["path"].as_str().unwrap_or(""), d["access"].as_str().unwrap_or(""))
    } else {
        s("operation").to_string()
    };
    line.push(' ');
    line.push_str(&what);
    if let Some(seg) = e["segment"].as_str() {
        line.push_str(&format!(" segment={seg}"));
    }
    if let Some(rule) = e["rule"].as_str() {
        line.push_str(&format!(" rule={rule:?}"));
    }
    if let (Some(ns), Some(pod)) = (e["k8s.namespace.name"].as_str(), e["k8s.pod.name"].as_str()) {
        line.push_str(&format!(" pod={ns}/{pod}"));
    } else if let Some(job) = e["slurm.job.id"].as_u64() {
        line.push_str(&format!(" slurm.job={job}"));
    }
    if let Some(pid) = e["tgid"].as_u64() {
        line.push_str(&format!(" pid={pid} comm={}", s("comm")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines() {
        let deny = serde_json::json!({"time": "T", "seq": 7, "verdict": "denied", "kind": "network", "workload": "trainer",
            "operation": "connect", "protocol": "tcp", "destination": {"address": "::1", "port": 443},
            "segment": "s3", "rule": null, "tgid": 42, "comm": "curl", "k8s.namespace.name": "ml", "k8s.pod.name": "p0"});
        assert_eq!(
            human(&deny),
            "T #7 denied  network trainer connect tcp [::1]:443 segment=s3 pod=ml/p0 pid=42 comm=curl"
        );
        let sum = serde_json::json!({"time": "T", "seq": 8, "verdict": "allowed", "kind": "file", "workload": "reader",
            "operation": "summary", "count": 3000, "window_start": "S", "segment": "data", "rule": "allow[0] reader->data"});
        assert_eq!(
            human(&sum),
            "T #8 allowed file    reader 3000× since S segment=data rule=\"allow[0] reader->data\""
        );
        let loss = serde_json::json!({"time": "T", "seq": 9, "kind": "loss", "stage": "kernel", "count": 5, "denied": 2, "reason": "ring buffer full"});
        assert_eq!(human(&loss), "T #9 LOSS kernel: 5 records (2 denies): ring buffer full");
    }
}
