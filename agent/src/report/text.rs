//! The text `warden status` prints.
use std::fmt;

use super::{
    AssignmentReport, EnforcementStatus, EventStatus, IdentityStatus, IntegrityStatus, PolicyStatus, SourceStatus,
    StatusReport, WorkloadStatus,
};

impl fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.state)?;
        if !self.endpoint.is_empty() {
            write!(f, " ({})", self.endpoint)?;
        }
        write!(
            f,
            ": {} known, {} updates, {} relists, {} errors",
            self.objects, self.updates, self.relists, self.errors
        )?;
        if let Some(e) = &self.last_error {
            write!(f, "; last error {}: {e}", self.last_error_at.as_deref().unwrap_or("?"))?;
        }
        Ok(())
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "warden {} (pid {}) on {} — kernel {}, up since {}",
            self.version, self.pid, self.node, self.kernel, self.started_at
        )?;
        writeln!(f, "mode: {}   default for non-segment destinations: {}", self.mode, self.default_action)?;
        write!(f, "{}", self.policy)?;
        writeln!(f, "cgroup root: {}", self.cgroup_root)?;
        if !matches!(self.cgroup_namespace.as_str(), "" | "host") {
            writeln!(f, "cgroup namespace: {}", self.cgroup_namespace)?;
        }
        writeln!(f, "\nENFORCEMENT")?;
        for e in &self.enforcement {
            write!(f, "{e}")?;
        }
        writeln!(f, "\nPROGRAMS")?;
        for pr in &self.programs {
            writeln!(f, "  {:<14} {:<17} id {:<6} {}", pr.name, pr.kind, pr.program_id, pr.attached_to)?;
        }
        writeln!(f, "\nPINS")?;
        let p = &self.pins;
        let origin = if p.adopted { "taken over from an earlier agent" } else { "made by this agent" };
        writeln!(f, "  {} ({origin})", p.dir)?;
        writeln!(f, "  links: {}", if p.links.is_empty() { "none".into() } else { p.links.join(", ") })?;
        write!(f, "\nINTEGRITY\n{}", self.integrity)?;
        if let Some(a) = &self.gpu_assignment {
            write!(f, "{a}")?;
        }
        writeln!(f)?;
        WorkloadStatus::header(f)?;
        for w in &self.workloads {
            write!(f, "{w}")?;
        }
        writeln!(f, "\nEVENTS")?;
        write!(f, "{}", self.events)?;
        if let Some(m) = &self.metrics {
            writeln!(f, "  metrics http://{m}/metrics (/healthz, /readyz)")?;
        }
        writeln!(f, "\nIDENTITY")?;
        write!(f, "{}", self.identity)
    }
}

impl fmt::Display for IntegrityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self;
        let when = i.checked_ms_ago.map_or("never".to_string(), |ms| format!("{ms} ms ago"));
        let what = format!("{} links, {} pinned maps", i.links, i.maps);
        if i.verified {
            writeln!(f, "  verified whole {when} ({what})")?;
        } else {
            writeln!(f, "  NOT VERIFIED (last check {when}; {what})")?;
        }
        for b in &i.broken {
            writeln!(f, "    {b}")?;
        }
        write!(f, "  tamper events: {}", i.tamper_events)?;
        match &i.last_tamper {
            Some(t) => writeln!(f, " (last: {t})"),
            None => writeln!(f),
        }
    }
}

impl fmt::Display for PolicyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self;
        writeln!(
            f,
            "policy: {} (sha256 {}…) loaded {}: {} segments, {} workloads, {} rules, {} IPv4 + {} IPv6 prefixes",
            p.file,
            &p.sha256[..p.sha256.len().min(12)],
            p.loaded_at,
            p.segments,
            p.workloads,
            p.rules,
            p.prefixes_v4,
            p.prefixes_v6
        )?;
        let r = &p.reload;
        write!(
            f,
            "policy generation {} (kernel set {}); reloads: {} ({} refused)",
            p.generation, p.kernel_set, r.attempts, r.failures
        )?;
        match (&r.last_result, &r.last_at) {
            (Some(res), Some(at)) => {
                writeln!(f, ", last {res} at {at} by {}", r.last_trigger.as_deref().unwrap_or("?"))?
            }
            _ => writeln!(f)?,
        }
        if let Some(e) = &r.last_error {
            writeln!(f, "  LAST RELOAD REFUSED (the last good policy is in force):")?;
            for line in e.lines() {
                writeln!(f, "    {line}")?;
            }
        }
        if !r.pending_restart.is_empty() {
            writeln!(f, "  restart to apply: {}", r.pending_restart.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for EnforcementStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
        writeln!(f, "  {:<10} {:<32} {}", e.kind, e.state, e.backend)?;
        if !e.reason.is_empty() {
            writeln!(f, "  {:<10} why: {}", "", e.reason)?;
        }
        if !e.not_enforced.is_empty() {
            writeln!(f, "  {:<10} NOT enforced on this node: {}", "", e.not_enforced.join(", "))?;
        }
        if !e.missing.is_empty() {
            let what = if e.kind == "devices" { "unresolved nodes" } else { "missing roots" };
            writeln!(f, "  {:<10} {what} (unprotected until they exist): {}", "", e.missing.join(", "))?;
        }
        if !e.restart.is_empty() {
            writeln!(f, "  {:<10} restart: {}", "", e.restart)?;
        }
        if !e.marked.is_empty() {
            writeln!(f, "  {:<10} opens wait for the agent on: {}", "", e.marked.join(", "))?;
        }
        if !e.detected.is_empty() {
            writeln!(f, "  {:<10} detected, not prevented: {}", "", e.detected.join(", "))?;
        }
        if let Some(s) = &e.follow {
            writeln!(
                f,
                "  {:<10} follows files out of their trees: {} kept (tree scan {}: {} files, {} with other links, {} errors)",
                "", s.escaped, s.scan, s.files_scanned, s.multi_linked, s.scan_errors
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for AssignmentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self;
        writeln!(
            f,
            "  {:<10} kubelet GPU assignment: {} containers, {} cgroups, {} refreshes",
            "", a.containers, a.cgroups, a.refreshes
        )?;
        if let Some(e) = &a.last_error {
            writeln!(f, "  {:<10} last read FAILED (last good assignment kept): {e}", "")?;
        }
        for p in &a.problems {
            writeln!(f, "  {:<10} {p}", "")?;
        }
        Ok(())
    }
}

impl WorkloadStatus {
    /// The column titles of the workload table.
    fn header(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "WORKLOADS{:>24}{:>10}{:>10}{:>10}{:>12}{:>12}{:>12}{:>10}{:>10}{:>10}",
            "CGROUPS",
            "NET OK",
            "NET DENY",
            "NET AUDIT",
            "FILE OK",
            "FILE DENY",
            "FILE AUDIT",
            "DEV OK",
            "DEV DENY",
            "DEV AUDIT"
        )
    }
}

impl fmt::Display for WorkloadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self;
        writeln!(
            f,
            "  {:<24}{:>7}{:>10}{:>10}{:>10}{:>12}{:>12}{:>12}{:>10}{:>10}{:>10}",
            w.name,
            w.cgroups,
            w.allowed,
            w.denied,
            w.audited,
            w.file_allowed,
            w.file_denied,
            w.file_audited,
            w.device_allowed,
            w.device_denied,
            w.device_audited
        )?;
        let shown: Vec<String> = w.members.iter().take(4).map(|m| m.label()).collect();
        if !shown.is_empty() {
            let more = w.members.len().saturating_sub(shown.len());
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            writeln!(f, "      {}{more}", shown.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
        writeln!(
            f,
            "  kernel emitted {}, kernel dropped {}, written {}, write errors {}, decode errors {}, last seq {}",
            e.kernel_emitted, e.kernel_dropped, e.written, e.write_errors, e.decode_errors, e.last_seq
        )?;
        writeln!(
            f,
            "  kernel dropped: {} denies, {} per CPU; allowed shed to keep room for denies {}",
            e.kernel_dropped_denies,
            e.kernel_dropped_per_cpu.iter().map(u64::to_string).collect::<Vec<_>>().join("/"),
            e.kernel_allowed_shed
        )?;
        writeln!(f, "  packets dropped by the network backstop {}", e.backstop_drops)?;
        writeln!(
            f,
            "  cgroup events {}, cgroup events dropped {}, decisions {}",
            e.cgroup_events, e.cgroup_events_dropped, e.decisions
        )?;
        writeln!(
            f,
            "  allowed decisions summarized {} into {} summaries; loss reports {}; file queue dropped {}",
            e.summarized, e.summaries, e.loss_events, e.file_events_dropped
        )?;
        writeln!(f, "  jsonl {} (rotations {})", e.jsonl, e.jsonl_rotations)?;
        if let Some(o) = &e.otlp {
            writeln!(
                f,
                "  otlp {} {}: exported {}, queued {}/{}, dropped {} allowed + {} denies, failed exports {}, rejected {}{}",
                o.endpoint,
                o.state,
                o.exported,
                o.queued,
                o.queue_capacity,
                o.dropped_allowed,
                o.dropped_denies,
                o.failed_exports,
                o.rejected,
                o.last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default()
            )?;
            if !o.headers.is_empty() || o.headers_file.is_some() {
                let from = o.headers_file.as_ref().map(|f| format!(" (with {f})")).unwrap_or_default();
                writeln!(f, "  otlp headers {}{from}", o.headers.join(", "))?;
            }
        }
        writeln!(f, "  tail subscribers {}, dropped {}", e.tail.subscribers, e.tail.dropped)?;
        Ok(())
    }
}

impl fmt::Display for IdentityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self;
        writeln!(
            f,
            "  cgroups tracked {}, identified {}, kernel map entries {}",
            i.cgroups_tracked, i.cgroups_identified, i.map_entries
        )?;
        if i.carried_over > 0 {
            writeln!(
                f,
                "  {} cgroups keep the identity the previous agent pinned until their metadata arrives",
                i.carried_over
            )?;
        }
        writeln!(
            f,
            "  cgroup → identity delay: p50 {} µs, p99 {} µs, max {} µs over {} new cgroups",
            i.delay_p50_us, i.delay_p99_us, i.delay_max_us, i.delay_samples
        )?;
        writeln!(f, "  kubernetes: {}", i.kubernetes)?;
        write!(f, "  slurm: {}", i.slurm)
    }
}
