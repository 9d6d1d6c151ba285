//! `warden status` report and `warden reload` outcome: built by the daemon,
//! served by the control socket and metrics, printed by the CLI. Types only
//! (their JSON is the control protocol), so every layer above may use them.
use serde::{Deserialize, Serialize};

mod text;
pub mod words;

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
    /// `host`, `entered the host's`, or why the agent's view of cgroups
    /// stayed a container's own (then processes outside it are unidentified).
    #[serde(default)]
    pub cgroup_namespace: String,
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
    /// The guard's last verification of links and pins.
    #[serde(default)]
    pub integrity: IntegrityStatus,
}

/// What the guard verified: every link attached and running the agent's
/// program, every pin present and the agent's own object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IntegrityStatus {
    /// Whole and checked at most `max_age_ms` ago: only then does any
    /// enforcement say `enforced`.
    pub verified: bool,
    /// Since the last pass (none yet: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_ms_ago: Option<u64>,
    pub max_age_ms: u64,
    /// Links and pinned maps watched.
    pub links: usize,
    pub maps: usize,
    /// Changes found (each also a `tamper` event) since start.
    pub tamper_events: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tamper: Option<String>,
    /// What is wrong now (a repair failed, or the guard could not start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken: Vec<String>,
}

/// Where the agent pinned its maps and links (`warden uninstall` removes them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinStatus {
    pub dir: String,
    /// Pinned maps from an earlier agent were taken over at start.
    pub adopted: bool,
    /// Programs attached through pinned links (they outlive the agent).
    pub links: Vec<String>,
    /// The pins are on the host's bpffs, so they outlive the agent's mount
    /// namespace (false: a pod's own bpffs, or it could not be told).
    #[serde(default)]
    pub host_bpffs: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_bpffs_detail: String,
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
    /// enforced | partial | audit | not-configured | failed | unverified (the
    /// guard has not verified this kind whole in the last second)
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
    /// fanotify: filesystems whose every open waits for the agent
    /// (`<mount point> (<fstype>, device M:m)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marked: Vec<String>,
    /// Operations this node cannot block but reports as events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detected: Vec<String>,
    /// Files: the protection that follows files out of their trees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowStatus>,
    /// What happens while the agent restarts or is down (`words::RESTART_*`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart: String,
}

/// Files kept protected after leaving their tree, and the tree scans that
/// find those with names elsewhere already.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FollowStatus {
    /// scanning | done
    pub scan: String,
    pub files_scanned: u64,
    pub multi_linked: u64,
    pub scan_errors: u64,
    /// Entries of the kernel's escaped-file map.
    pub escaped: u64,
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
            detected: vec![],
            follow: None,
            restart: String::new(),
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
    /// Packets the egress backstop dropped (raw, ICMP, unspecified address,
    /// sockets made in another workload). Its events are one per second
    /// per workload and segment; this counts every packet.
    #[serde(default)]
    pub backstop_drops: u64,
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
    /// Names of the headers sent (inline and `headersFile`); their values
    /// are credentials and never shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_file: Option<String>,
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
