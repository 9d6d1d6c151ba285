//! `StatusReport` as Prometheus text exposition format 0.0.4. Every family
//! is written in one piece (HELP, TYPE, then all its samples), counters end
//! in `_total`, and states are labels on a gauge of 1 so alerts can match
//! on them.
use std::fmt::{Display, Write};

use super::process::{self, Process};
use crate::report::{
    AssignmentReport, EnforcementStatus, EventStatus, IdentityStatus, IntegrityStatus, OtlpStatus, PolicyStatus,
    ProgramStatus, SourceStatus, StatusReport, WorkloadStatus,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

type Labels<'a> = &'a [(&'a str, &'a str)];

struct Out<'a>(&'a mut String);

impl Out<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        };
        let _ = write!(self.0, "# HELP {name} ");
        escape(self.0, help, false);
        let _ = writeln!(self.0, "\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels, value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"");
                escape(self.0, v, true);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family of one unlabelled sample.
    fn one(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// HELP text escapes `\` and newlines; label values also `"`.
fn escape(out: &mut String, s: &str, quotes: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends the metrics of `report` and of this process (/proc/self) to `out`.
pub fn render(report: &StatusReport, out: &mut String) {
    render_report(report, out);
    render_process(&process::read(), out);
}

/// The metrics of `report` alone: deterministic, for tests.
pub fn render_report(r: &StatusReport, out: &mut String) {
    use Kind::*;
    let mut o = Out(out);
    o.family("warden_build_info", Gauge, "Agent version, node, kernel and mode (always 1).");
    let labels = [
        ("version", r.version.as_str()),
        ("node", &r.node),
        ("kernel", &r.kernel),
        ("mode", &r.mode),
        ("default_action", &r.default_action),
    ];
    o.sample("warden_build_info", &labels, 1);
    policy(&mut o, &r.policy);
    programs(&mut o, &r.programs);
    integrity(&mut o, &r.integrity);
    enforcement(&mut o, &r.enforcement);
    workloads(&mut o, &r.workloads);
    if let Some(a) = &r.gpu_assignment {
        gpu_assignment(&mut o, a);
    }
    events(&mut o, &r.events);
    if let Some(x) = &r.events.otlp {
        otlp(&mut o, x);
    }
    identity(&mut o, &r.identity);
}

fn policy(o: &mut Out, p: &PolicyStatus) {
    use Kind::*;
    o.family("warden_policy_info", Gauge, "Policy file and its sha256 (always 1).");
    o.sample("warden_policy_info", &[("file", &p.file), ("sha256", &p.sha256)], 1);
    o.one("warden_policy_segments", Gauge, "Segments in the loaded policy.", p.segments);
    o.one("warden_policy_workloads", Gauge, "Workloads in the loaded policy.", p.workloads);
    o.one("warden_policy_rules", Gauge, "Rules in the loaded policy.", p.rules);
    o.family("warden_policy_prefixes", Gauge, "Destination prefixes in the kernel maps.");
    o.sample("warden_policy_prefixes", &[("family", "ipv4")], p.prefixes_v4);
    o.sample("warden_policy_prefixes", &[("family", "ipv6")], p.prefixes_v6);
    o.one(
        "warden_policy_generation",
        Gauge,
        "Policy generation in force (1 at start, +1 per applied reload).",
        p.generation,
    );
    o.one("warden_policy_reloads_total", Counter, "Reload attempts (signal, command, file change).", p.reload.attempts);
    o.one(
        "warden_policy_reload_failures_total",
        Counter,
        "Reloads refused; the last good policy stayed in force.",
        p.reload.failures,
    );
    // A gauge, not only the counter: an alert on it stays firing while the
    // file on disk is still refused, however long ago the attempt was.
    o.one(
        "warden_policy_last_reload_successful",
        Gauge,
        "0 if the last reload was refused (the file on disk is not in force), else 1.",
        u8::from(p.reload.last_result.as_deref() != Some("refused")),
    );
    o.one(
        "warden_policy_last_reload_duration_seconds",
        Gauge,
        "Duration of the last reload attempt (read, compile, switch).",
        p.reload.last_duration_us as f64 / 1e6,
    );
}

fn integrity(o: &mut Out, i: &IntegrityStatus) {
    use Kind::*;
    o.one(
        "warden_enforcement_verified",
        Gauge,
        "1 while every link and pin was verified whole within the last second.",
        u8::from(i.verified),
    );
    o.one(
        "warden_tamper_events_total",
        Counter,
        "Links or pins found detached, replaced or removed by someone else (each repaired and reported).",
        i.tamper_events,
    );
}

fn programs(o: &mut Out, programs: &[ProgramStatus]) {
    o.family("warden_program_info", Kind::Gauge, "eBPF programs loaded and where they are attached (always 1).");
    for pr in programs {
        let id = pr.program_id.to_string();
        let labels = [("name", pr.name.as_str()), ("kind", &pr.kind), ("attached_to", &pr.attached_to), ("id", &id)];
        o.sample("warden_program_info", &labels, 1);
    }
}

fn enforcement(o: &mut Out, enforcement: &[EnforcementStatus]) {
    use Kind::*;
    o.family("warden_enforcement", Gauge, "Enforcement state and backend per segment kind (always 1).");
    for e in enforcement {
        o.sample("warden_enforcement", &[("kind", &e.kind), ("state", &e.state), ("backend", &e.backend)], 1);
    }
    o.family("warden_enforcement_not_enforced", Gauge, "Operations this node cannot block, per segment kind.");
    for e in enforcement {
        o.sample("warden_enforcement_not_enforced", &[("kind", &e.kind)], e.not_enforced.len());
    }
    o.family("warden_enforcement_missing", Gauge, "Configured roots or devices that do not exist (unprotected).");
    for e in enforcement {
        o.sample("warden_enforcement_missing", &[("kind", &e.kind)], e.missing.len());
    }
}

fn workloads(o: &mut Out, workloads: &[WorkloadStatus]) {
    use Kind::*;
    o.family("warden_decisions_total", Counter, "Decisions per workload, segment kind and verdict.");
    for w in workloads {
        for (kind, counts) in [
            ("network", [w.allowed, w.denied, w.audited]),
            ("file", [w.file_allowed, w.file_denied, w.file_audited]),
            ("device", [w.device_allowed, w.device_denied, w.device_audited]),
        ] {
            for (verdict, n) in ["allowed", "denied", "audited"].into_iter().zip(counts) {
                o.sample("warden_decisions_total", &[("workload", &w.name), ("kind", kind), ("verdict", verdict)], n);
            }
        }
    }
    o.family("warden_workload_cgroups", Gauge, "Cgroups identified as each workload.");
    for w in workloads {
        o.sample("warden_workload_cgroups", &[("workload", &w.name)], w.cgroups);
    }
}

fn gpu_assignment(o: &mut Out, a: &AssignmentReport) {
    use Kind::*;
    o.one(
        "warden_gpu_assignment_containers",
        Gauge,
        "Containers with GPUs in the last good kubelet read.",
        a.containers,
    );
    o.one("warden_gpu_assignment_cgroups", Gauge, "Container cgroups with a GPU assignment in the kernel.", a.cgroups);
    o.one("warden_gpu_assignment_refreshes_total", Counter, "Kubelet GPU assignment reads.", a.refreshes);
    o.one(
        "warden_gpu_assignment_up",
        Gauge,
        "1 if the last kubelet GPU assignment read worked.",
        u8::from(a.last_error.is_none()),
    );
    o.one("warden_gpu_assignment_problems", Gauge, "GPU assignment problems reported.", a.problems.len());
}

fn events(o: &mut Out, e: &EventStatus) {
    use Kind::*;
    o.one(
        "warden_events_kernel_emitted_total",
        Counter,
        "Records the kernel put in the ring buffer.",
        e.kernel_emitted,
    );
    let name = "warden_events_kernel_dropped_total";
    o.family(name, Counter, "Records lost because the ring buffer was full (denied: denies and audits).");
    o.sample(name, &[("class", "denied")], e.kernel_dropped_denies);
    o.sample(name, &[("class", "allowed")], e.kernel_dropped.saturating_sub(e.kernel_dropped_denies));
    let name = "warden_events_kernel_dropped_cpu_total";
    o.family(name, Counter, "Records lost because the ring buffer was full, per CPU.");
    for (cpu, n) in e.kernel_dropped_per_cpu.iter().enumerate() {
        o.sample(name, &[("cpu", &cpu.to_string())], n);
    }
    let help = "Allowed decisions not queued because the ring buffer was over half full.";
    o.one("warden_events_kernel_allowed_shed_total", Counter, help, e.kernel_allowed_shed);
    let help = "Packets the egress backstop dropped (every packet; its events are rate-limited).";
    o.one("warden_network_backstop_drops_total", Counter, help, e.backstop_drops);
    o.family("warden_events_written_total", Counter, "Events written, per sink.");
    o.sample("warden_events_written_total", &[("sink", "jsonl")], e.written);
    o.family("warden_events_write_errors_total", Counter, "Event writes that failed, per sink.");
    o.sample("warden_events_write_errors_total", &[("sink", "jsonl")], e.write_errors);
    o.one("warden_events_decode_errors_total", Counter, "Ring buffer records that did not decode.", e.decode_errors);
    let name = "warden_events_pipeline_dropped_total";
    o.family(name, Counter, "Events dropped inside the agent because a queue was full, per stage.");
    o.sample(name, &[("stage", "file_queue")], e.file_events_dropped);
    o.one("warden_events_summarized_total", Counter, "Allowed decisions folded into summary events.", e.summarized);
    o.one("warden_events_summaries_total", Counter, "Summary events emitted.", e.summaries);
    o.one("warden_events_loss_reports_total", Counter, "In-band loss events emitted.", e.loss_events);
    o.one("warden_events_last_seq", Gauge, "Sequence number of the last event.", e.last_seq);
    o.one("warden_kernel_decisions_total", Counter, "Decisions the kernel programs made.", e.decisions);
    o.one(
        "warden_cgroup_events_total",
        Counter,
        "Cgroup creation and removal records from the kernel.",
        e.cgroup_events,
    );
    let help = "Cgroup records lost because the ring buffer was full.";
    o.one("warden_cgroup_events_dropped_total", Counter, help, e.cgroup_events_dropped);
    let help = "File decisions that failed inside the agent (answered deny).";
    o.one("warden_file_decision_errors_total", Counter, help, e.file_errors);
    o.one("warden_jsonl_rotations_total", Counter, "JSON lines file rotations.", e.jsonl_rotations);
    o.one("warden_tail_subscribers", Gauge, "Connected `warden events --follow` clients.", e.tail.subscribers);
    let help = "Events not delivered to a follow client that read too slowly.";
    o.one("warden_tail_dropped_total", Counter, help, e.tail.dropped);
}

fn otlp(o: &mut Out, x: &OtlpStatus) {
    use Kind::*;
    o.one("warden_otlp_up", Gauge, "1 if the OTLP exporter is connected.", u8::from(x.state == "connected"));
    o.one("warden_otlp_exported_total", Counter, "Log records the collector accepted.", x.exported);
    let name = "warden_otlp_dropped_total";
    o.family(name, Counter, "Events dropped on OTLP queue overflow (denied: denies, audits, loss reports).");
    o.sample(name, &[("class", "allowed")], x.dropped_allowed);
    o.sample(name, &[("class", "denied")], x.dropped_denies);
    o.one("warden_otlp_failed_exports_total", Counter, "OTLP export requests that failed.", x.failed_exports);
    o.one("warden_otlp_rejected_total", Counter, "Log records the collector refused.", x.rejected);
    o.one("warden_otlp_queue_length", Gauge, "Events waiting for export.", x.queued);
    o.one("warden_otlp_queue_capacity", Gauge, "Capacity of the export queue.", x.queue_capacity);
}

fn identity(o: &mut Out, i: &IdentityStatus) {
    use Kind::*;
    o.one("warden_cgroups_tracked", Gauge, "Cgroups tracked.", i.cgroups_tracked);
    o.one("warden_cgroups_identified", Gauge, "Cgroups identified as a workload.", i.cgroups_identified);
    o.one("warden_identity_map_entries", Gauge, "Entries in the kernel cgroup identity map.", i.map_entries);
    o.one(
        "warden_cgroups_carried_over",
        Gauge,
        "Cgroups identified as the previous agent pinned them, waiting for their metadata.",
        i.carried_over,
    );
    let name = "warden_identity_delay_seconds";
    o.family(name, Summary, "Delay from a new cgroup to its identity in the kernel.");
    for (q, us) in [("0.5", i.delay_p50_us), ("0.99", i.delay_p99_us), ("1", i.delay_max_us)] {
        o.sample(name, &[("quantile", q)], us as f64 / 1e6);
    }
    o.sample("warden_identity_delay_seconds_count", &[], i.delay_samples);

    let sources: [(&str, &SourceStatus); 2] = [("kubernetes", &i.kubernetes), ("slurm", &i.slurm)];
    let on = || sources.iter().filter(|(_, s)| s.state != "off");
    o.family("warden_metadata_source_up", Gauge, "1 if a metadata source (when on) is in sync.");
    for &(name, s) in on() {
        let up = matches!(s.state.as_str(), "synced" | "ok" | "idle");
        o.sample("warden_metadata_source_up", &[("source", name)], u8::from(up));
    }
    o.family("warden_metadata_source_state", Gauge, "State of each metadata source (always 1).");
    for &(name, s) in &sources {
        o.sample("warden_metadata_source_state", &[("source", name), ("state", &s.state)], 1);
    }
    o.family("warden_metadata_source_objects", Gauge, "Pods or jobs a metadata source knows.");
    for &(name, s) in on() {
        o.sample("warden_metadata_source_objects", &[("source", name)], s.objects);
    }
    for (metric, help, get) in [
        (
            "warden_metadata_source_updates_total",
            "Metadata updates received.",
            (|s| s.updates) as fn(&SourceStatus) -> u64,
        ),
        ("warden_metadata_source_relists_total", "Full relists of a metadata source.", |s| s.relists),
        ("warden_metadata_source_errors_total", "Metadata source errors.", |s| s.errors),
    ] {
        o.family(metric, Counter, help);
        for &(name, s) in on() {
            o.sample(metric, &[("source", name)], get(s));
        }
    }
}

pub fn render_process(p: &Process, out: &mut String) {
    use Kind::*;
    let mut o = Out(out);
    if let Some(v) = p.cpu_seconds {
        o.one("process_cpu_seconds_total", Counter, "Total user and system CPU time spent in seconds.", v);
    }
    if let Some(v) = p.resident_bytes {
        o.one("process_resident_memory_bytes", Gauge, "Resident memory size in bytes.", v);
    }
    if let Some(v) = p.virtual_bytes {
        o.one("process_virtual_memory_bytes", Gauge, "Virtual memory size in bytes.", v);
    }
    if let Some(v) = p.start_time_seconds {
        o.one("process_start_time_seconds", Gauge, "Start time of the process since unix epoch in seconds.", v);
    }
    if let Some(v) = p.open_fds {
        o.one("process_open_fds", Gauge, "Number of open file descriptors.", v);
    }
}
