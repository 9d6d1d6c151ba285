//! The event every sink receives.

use serde::Serialize;

pub use crate::name::Name;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Destination {
    pub address: String,
    pub port: u16,
}

/// One decision on a protected segment (or a default-action deny).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DecisionEvent {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    /// The same instant in Unix nanoseconds (OTLP's timeUnixNano).
    #[serde(skip)]
    pub time_unix_ns: u64,
    /// Per-node sequence number, continued across agent restarts: a gap
    /// downstream is an event lost (see `enrich::seq`).
    pub seq: u64,
    /// The agent process that numbered it.
    pub agent_id: Name,
    pub node: Name,
    pub kind: &'static str,
    pub workload: Name,
    /// matched | unmatched | unresolved.
    pub identity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    pub cgroup: Option<Name>,
    /// Who: k8s.namespace.name, k8s.pod.name, k8s.pod.uid, container.id,
    /// slurm.job.id, systemd.unit... (each only when known).
    #[serde(flatten)]
    pub who: std::sync::Arc<crate::identity::meta::WorkloadIdentity>,
    /// Thread, process and command of the actor; absent when the kernel did
    /// not tell (packets) or the process was gone before it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tgid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    pub exe: Option<Name>,
    /// connect | sendmsg (network); open, create, … (file); open | mknod (device).
    pub operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceTarget>,
    pub segment: Option<Name>,
    /// allowed | denied | audited.
    pub verdict: &'static str,
    pub rule: Option<Name>,
    /// Enforcement backend for file decisions (lsm | fanotify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileTarget {
    pub path: String,
    /// read | write | any (the verdict did not depend on the mode, so the
    /// fanotify backend did not read it)
    pub access: &'static str,
    /// Why, beyond the rules: `escaped` (protected after leaving its tree),
    /// `disconnected` / `too deep` (place unknown: denied), `mode unknown`
    /// (flags the opener could still change: judged a write), `detected`
    /// (seen, not prevented).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceTarget {
    /// The node's path where the agent resolved it, else `char 511:0`.
    pub path: String,
    /// What `path` is: `canonical` (the node under /dev the agent resolved
    /// for this major:minor: the cgroup device hook is told only the
    /// number, not the node that was opened) or `number` (none found).
    pub path_is: &'static str,
    /// char | block
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub major: u32,
    pub minor: u32,
    /// Access asked for: `read`, `write`, `mknod`, comma-separated.
    pub access: String,
}

/// Allowed decisions folded into one record per (workload, segment, rule)
/// and interval (`agent.events.allowed: summary`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SummaryEvent {
    /// End of the window, RFC 3339.
    pub time: String,
    #[serde(skip)]
    pub time_unix_ns: u64,
    pub seq: u64,
    pub agent_id: Name,
    pub node: Name,
    /// network | file | device
    pub kind: &'static str,
    /// Always `summary`: tells summaries from single decisions.
    pub operation: &'static str,
    pub workload: Name,
    pub identity: &'static str,
    pub segment: Option<Name>,
    pub verdict: &'static str,
    pub rule: Option<Name>,
    /// Decisions in the window.
    pub count: u64,
    pub window_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
}

/// Records lost before they got a sequence number (the kernel's ring was
/// full, or a userspace backend's queue): reported in-band so collectors
/// see loss that `seq` gaps cannot show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LossEvent {
    pub time: String,
    #[serde(skip)]
    pub time_unix_ns: u64,
    pub seq: u64,
    pub agent_id: Name,
    pub node: Name,
    /// Always `loss`.
    pub kind: &'static str,
    /// kernel | pipeline
    pub stage: &'static str,
    /// Records lost since the previous loss event of this stage.
    pub count: u64,
    /// Of which denies or audits (kernel stage; 0 where unknown).
    pub denied: u64,
    pub reason: &'static str,
}

/// The policy changed (a reload was applied) or a change was refused: the
/// rules every later decision follows are part of the audit trail.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyEvent {
    pub time: String,
    #[serde(skip)]
    pub time_unix_ns: u64,
    pub seq: u64,
    pub agent_id: Name,
    pub node: Name,
    /// Always `policy`.
    pub kind: &'static str,
    /// Always `reload`.
    pub operation: &'static str,
    /// applied | refused
    pub result: &'static str,
    /// The policy generation in force after this event.
    pub generation: u64,
    /// SHA-256 of the file read.
    pub sha256: String,
    /// Time to read, check and switch (or refuse) the policy.
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A device kubelet assigned to a container that this node cannot map to
/// device nodes (an unknown MIG UUID, a MIG device by index...): the
/// container does not get it. Emitted once when the refusal appears.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GpuAssignmentEvent {
    pub time: String,
    #[serde(skip)]
    pub time_unix_ns: u64,
    pub seq: u64,
    pub agent_id: Name,
    pub node: Name,
    /// Always `gpu_assignment`.
    pub kind: &'static str,
    /// Always `refused`.
    pub result: &'static str,
    #[serde(rename = "k8s.namespace.name")]
    pub namespace: String,
    #[serde(rename = "k8s.pod.name")]
    pub pod: String,
    #[serde(rename = "k8s.container.name")]
    pub container: String,
    /// The extended resource, e.g. `nvidia.com/mig-1g.10gb`.
    pub resource: String,
    /// As kubelet reported it (a MIG UUID, `GPU-…::2`...).
    pub device_id: String,
    pub reason: String,
}

impl GpuAssignmentEvent {
    pub fn refused(n: &Numbering, node: &str, r: &crate::devices::assigned::Refusal) -> Self {
        let (time, time_unix_ns) = now();
        GpuAssignmentEvent {
            time,
            time_unix_ns,
            seq: n.seq.next(),
            agent_id: n.agent_id.clone(),
            node: node.into(),
            kind: "gpu_assignment",
            result: "refused",
            namespace: r.namespace.clone(),
            pod: r.pod.clone(),
            container: r.container.clone(),
            resource: r.resource.clone(),
            device_id: r.device_id.clone(),
            reason: r.reason.clone(),
        }
    }
}

/// The numbering every event of an agent shares: the node's sequence and
/// the agent's id.
#[derive(Clone, Default)]
pub struct Numbering {
    pub seq: std::sync::Arc<super::seq::Seq>,
    pub agent_id: Name,
}

/// Now, as (RFC 3339, Unix ns).
fn now() -> (String, u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (crate::clock::rfc3339(now.as_nanos() as i128), now.as_nanos() as u64)
}

/// The guard found an enforcing link, or a pin, changed by someone else,
/// and repaired it (or could not): see `hooks::guard`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TamperEvent {
    pub time: String,
    #[serde(skip)]
    pub time_unix_ns: u64,
    pub seq: u64,
    pub agent_id: Name,
    pub node: Name,
    /// Always `tamper`.
    pub kind: &'static str,
    /// The program or map.
    pub target: String,
    /// link | pin | map pin
    pub object: &'static str,
    /// detached | replaced | unpinned | pin replaced
    pub change: &'static str,
    /// re-attached | re-pinned | failed
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TamperEvent {
    pub fn new(n: &Numbering, node: &str, f: &crate::hooks::guard::Finding) -> Self {
        let (time, time_unix_ns) = now();
        TamperEvent {
            time,
            time_unix_ns,
            seq: n.seq.next(),
            agent_id: n.agent_id.clone(),
            node: node.into(),
            kind: "tamper",
            target: f.target.clone(),
            object: f.object,
            change: f.change,
            result: match &f.repair {
                Ok(done) => done,
                Err(_) => "failed",
            },
            error: f.repair.as_ref().err().cloned(),
        }
    }
}

impl PolicyEvent {
    /// Numbered from the node's event sequence.
    pub fn new(n: &Numbering, node: &str, o: &crate::report::ReloadOutcome) -> Self {
        let (time, time_unix_ns) = now();
        PolicyEvent {
            time,
            time_unix_ns,
            seq: n.seq.next(),
            agent_id: n.agent_id.clone(),
            node: node.into(),
            kind: "policy",
            operation: "reload",
            result: if o.applied { "applied" } else { "refused" },
            generation: o.generation,
            sha256: o.sha256.clone(),
            duration_us: o.duration_us,
            error: o.error.clone(),
        }
    }
}

/// What travels from enrichment to the sinks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
// Decisions are nearly all events: boxing them would cost an allocation
// each, and every event is moved into an `Arc` once anyway.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Decision(DecisionEvent),
    Summary(SummaryEvent),
    Loss(LossEvent),
    Policy(PolicyEvent),
    Tamper(TamperEvent),
    Gpu(GpuAssignmentEvent),
}

/// Who was judged and how: the fields decisions and summaries share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<'a> {
    pub verdict: &'static str,
    pub operation: &'static str,
    pub workload: &'a str,
    pub identity: &'static str,
    pub segment: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub backend: Option<&'static str>,
}

/// The same field of every variant.
macro_rules! each {
    ($ev:expr, $e:ident => $field:expr) => {
        match $ev {
            Event::Decision($e) => $field,
            Event::Summary($e) => $field,
            Event::Loss($e) => $field,
            Event::Policy($e) => $field,
            Event::Tamper($e) => $field,
            Event::Gpu($e) => $field,
        }
    };
}

impl Event {
    pub fn seq(&self) -> u64 {
        each!(self, e => e.seq)
    }

    pub fn time_unix_ns(&self) -> u64 {
        each!(self, e => e.time_unix_ns)
    }

    pub fn kind(&self) -> &'static str {
        each!(self, e => e.kind)
    }

    pub fn agent_id(&self) -> &str {
        each!(self, e => &e.agent_id)
    }

    /// None for loss reports.
    pub fn outcome(&self) -> Option<Outcome<'_>> {
        macro_rules! outcome {
            ($e:expr) => {
                Outcome {
                    verdict: $e.verdict,
                    operation: $e.operation,
                    workload: &$e.workload,
                    identity: $e.identity,
                    segment: $e.segment.as_deref(),
                    rule: $e.rule.as_deref(),
                    backend: $e.backend,
                }
            };
        }
        match self {
            Event::Decision(e) => Some(outcome!(e)),
            Event::Summary(e) => Some(outcome!(e)),
            Event::Loss(_) | Event::Policy(_) | Event::Tamper(_) | Event::Gpu(_) => None,
        }
    }

    /// allowed | denied | audited; the kind (`loss`, `policy`) for reports.
    pub fn verdict(&self) -> &'static str {
        self.outcome().map_or(self.kind(), |o| o.verdict)
    }

    pub fn workload(&self) -> Option<&str> {
        self.outcome().map(|o| o.workload)
    }

    pub fn segment(&self) -> Option<&str> {
        self.outcome().and_then(|o| o.segment)
    }

    /// Kept under overload: everything but allowed decisions and summaries
    /// (denies, audits, loss reports). See `sinks::queue`.
    pub fn must_keep(&self) -> bool {
        self.verdict() != "allowed"
    }
}
