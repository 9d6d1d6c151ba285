//! `warden status` report: built by the daemon, printed by the CLI.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub node: String,
    pub kernel: String,
    pub started_at: String,
    pub mode: String,
    pub default_action: String,
    pub policy: PolicyStatus,
    pub cgroup_root: String,
    pub programs: Vec<ProgramStatus>,
    pub enforcement: Vec<EnforcementStatus>,
    pub workloads: Vec<WorkloadStatus>,
    pub events: EventStatus,
    pub identity: IdentityStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_assignment: Option<AssignmentReport>,
    /// Where /metrics, /healthz and /readyz are served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// bpffs pins that keep enforcement up while the agent restarts.
    #[serde(default)]
    pub pins: PinStatus,
}

/// Where the agent pinned its maps and links (`warden uninstall` removes them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinStatus {
    pub dir: String,
    /// Pinned maps from an earlier agent were taken over at start.
    pub adopted: bool,
    /// Programs attached through pinned links (they outlive the agent).
    pub links: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStatus {
    pub file: String,
    pub sha256: String,
    pub loaded_at: String,
    /// 1 at start, +1 per applied reload.
    #[serde(default)]
    pub generation: u64,
    /// Which kernel policy set the hooks read (0 or 1).
    #[serde(default)]
    pub kernel_set: u8,
    #[serde(default)]
    pub reload: ReloadStatus,
    pub segments: usize,
    pub workloads: usize,
    pub rules: usize,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
}

/// What one reload attempt did (the reply to `warden reload`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub applied: bool,
    /// The policy generation in force after the attempt.
    pub generation: u64,
    pub sha256: String,
    /// Why it was refused (the last good policy stays in force).
    pub error: Option<String>,
    /// `agent:` settings changed in the file that apply at the next restart.
    pub pending_restart: Vec<String>,
    pub duration_us: u64,
}

/// Reloads of the config file (SIGHUP, `warden reload`, file changes).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadStatus {
    pub attempts: u64,
    pub failures: u64,
    pub last_at: Option<String>,
    /// signal | command | file
    pub last_trigger: Option<String>,
    /// applied | refused
    pub last_result: Option<String>,
    /// Why the last attempt was refused (the last good policy stayed).
    pub last_error: Option<String>,
    /// SHA-256 of the file the last attempt read.
    pub last_sha256: Option<String>,
    pub last_duration_us: u64,
    /// `agent:` settings changed in the file that apply at the next restart.
    pub pending_restart: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgramStatus {
    pub name: String,
    pub kind: String,
    pub attached_to: String,
    pub program_id: u32,
}

/// What is enforced, per segment kind: never silently degraded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnforcementStatus {
    pub kind: String,
    /// enforced | partial | audit | not-configured | failed
    pub state: String,
    pub backend: String,
    /// Why this backend (or why none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Operations this node cannot block for this kind: never hidden.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_enforced: Vec<String>,
    /// Configured roots that do not exist (not protected until they do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// fanotify: filesystems whose every open waits for the agent (named
    /// by a root on each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marked: Vec<String>,
}

impl EnforcementStatus {
    /// The row of a kind the policy does not use.
    pub fn not_configured(kind: &str) -> Self {
        Self {
            kind: kind.into(),
            state: "not-configured".into(),
            backend: "none".into(),
            reason: String::new(),
            not_enforced: vec![],
            missing: vec![],
            marked: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkloadStatus {
    pub name: String,
    pub id: u32,
    pub cgroups: usize,
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
    #[serde(default)]
    pub file_allowed: u64,
    #[serde(default)]
    pub file_denied: u64,
    #[serde(default)]
    pub file_audited: u64,
    #[serde(default)]
    pub device_allowed: u64,
    #[serde(default)]
    pub device_denied: u64,
    #[serde(default)]
    pub device_audited: u64,
    /// Who is in it: up to `MAX_MEMBERS` pods, Slurm jobs or units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<crate::identity::meta::WorkloadIdentity>,
}

/// Members listed per workload in status (the counts cover all).
pub const MAX_MEMBERS: usize = 16;

/// kubelet GPU assignments in the kernel (`gpus: assigned`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssignmentReport {
    /// Containers with GPUs in the last good read.
    pub containers: usize,
    /// Container cgroups with an assignment in the kernel.
    pub cgroups: usize,
    pub refreshes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventStatus {
    /// Records the kernel put in the ring buffer.
    pub kernel_emitted: u64,
    /// Records the kernel could not reserve (ring full): lost, but counted.
    pub kernel_dropped: u64,
    pub written: u64,
    pub write_errors: u64,
    pub decode_errors: u64,
    pub last_seq: u64,
    pub cgroup_events: u64,
    pub cgroup_events_dropped: u64,
    pub decisions: u64,
    /// File decisions not written because the queue to the sink was full.
    #[serde(default)]
    pub file_events_dropped: u64,
    /// File decisions that failed internally (answered deny).
    #[serde(default)]
    pub file_errors: u64,
    /// Of `kernel_dropped`: denies and audits (the rest were allowed).
    #[serde(default)]
    pub kernel_dropped_denies: u64,
    /// Allowed decisions the kernel did not queue because the ring was
    /// over half full: that half is kept for denies.
    #[serde(default)]
    pub kernel_allowed_shed: u64,
    /// `kernel_dropped` per CPU.
    #[serde(default)]
    pub kernel_dropped_per_cpu: Vec<u64>,
    /// Allowed decisions folded into summary events.
    #[serde(default)]
    pub summarized: u64,
    #[serde(default)]
    pub summaries: u64,
    /// In-band `loss` events emitted.
    #[serde(default)]
    pub loss_events: u64,
    /// JSON lines sink: where, and rotations done (`written` and
    /// `write_errors` above are its counts).
    #[serde(default)]
    pub jsonl: String,
    #[serde(default)]
    pub jsonl_rotations: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpStatus>,
    #[serde(default)]
    pub tail: TailStatus,
}

/// The OTLP/gRPC logs exporter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OtlpStatus {
    pub endpoint: String,
    /// connecting | connected | retrying
    pub state: String,
    /// Events waiting in the queue, and its capacity.
    pub queued: u64,
    pub queue_capacity: u64,
    /// Log records the collector accepted.
    pub exported: u64,
    /// Queue overflow: allowed events and summaries dropped (oldest first).
    pub dropped_allowed: u64,
    /// Queue overflow with no allowed event left to drop: denies, audits
    /// and loss reports dropped (oldest first).
    pub dropped_denies: u64,
    /// Export requests that failed (each is retried with backoff).
    pub failed_exports: u64,
    /// Records the collector refused in a partial success.
    pub rejected: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `warden events --follow` subscribers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TailStatus {
    pub subscribers: u64,
    /// Events not delivered to a subscriber that read too slowly.
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityStatus {
    pub cgroups_tracked: usize,
    pub cgroups_identified: usize,
    pub map_entries: usize,
    /// cgroups still identified as an earlier agent pinned them (same
    /// policy file), waiting for their pod or Slurm job metadata.
    #[serde(default)]
    pub carried_over: usize,
    pub delay_samples: u64,
    pub delay_p50_us: u64,
    pub delay_p99_us: u64,
    pub delay_max_us: u64,
    /// Pod metadata from the Kubernetes API server.
    #[serde(default)]
    pub kubernetes: SourceStatus,
    /// Job records from Slurm (`scontrol`).
    #[serde(default)]
    pub slurm: SourceStatus,
}

/// One metadata source: whether it is on, in sync, and its last failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceStatus {
    /// off | connecting | synced | retrying | failed (Kubernetes);
    /// off | idle | ok | unavailable (Slurm).
    pub state: String,
    #[serde(default)]
    pub endpoint: String,
    /// Pods (or jobs) known.
    pub objects: usize,
    pub updates: u64,
    pub relists: u64,
    pub errors: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<String>,
}

impl Default for SourceStatus {
    fn default() -> Self {
        Self {
            state: "idle".into(),
            endpoint: String::new(),
            objects: 0,
            updates: 0,
            relists: 0,
            errors: 0,
            last_error: None,
            last_error_at: None,
        }
    }
}

impl std::fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "warden {} (pid {}) on {} — kernel {}, up since {}",
            self.version, self.pid, self.node, self.kernel, self.started_at
        )?;
        writeln!(f, "mode: {}   default for non-segment destinations: {}", self.mode, self.default_action)?;
        let p = &self.policy;
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
        writeln!(f, "cgroup root: {}", self.cgroup_root)?;
        writeln!(f, "\nENFORCEMENT")?;
        for e in &self.enforcement {
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
            if !e.marked.is_empty() {
                writeln!(f, "  {:<10} opens wait for the agent on the filesystems of: {}", "", e.marked.join(", "))?;
            }
        }
        writeln!(f, "\nPROGRAMS")?;
        for pr in &self.programs {
            writeln!(f, "  {:<14} {:<17} id {:<6} {}", pr.name, pr.kind, pr.program_id, pr.attached_to)?;
        }
        if let Some(a) = &self.gpu_assignment {
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
        }
        writeln!(
            f,
            "\nWORKLOADS{:>24}{:>10}{:>10}{:>10}{:>12}{:>12}{:>12}{:>10}{:>10}{:>10}",
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
        )?;
        for w in &self.workloads {
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
        }
        let e = &self.events;
        writeln!(f, "\nEVENTS")?;
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
        }
        writeln!(f, "  tail subscribers {}, dropped {}", e.tail.subscribers, e.tail.dropped)?;
        if let Some(m) = &self.metrics {
            writeln!(f, "  metrics http://{m}/metrics (/healthz, /readyz)")?;
        }
        let i = &self.identity;
        writeln!(f, "\nIDENTITY")?;
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
