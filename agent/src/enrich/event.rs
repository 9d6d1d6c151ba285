//! The event every sink receives.
use serde::Serialize;

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
    /// Per-node sequence number: gaps downstream mean loss.
    pub seq: u64,
    pub node: String,
    pub kind: &'static str,
    pub workload: String,
    /// matched | unmatched | unresolved.
    pub identity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    pub cgroup: Option<String>,
    /// Who: k8s.namespace.name, k8s.pod.name, k8s.pod.uid, container.id,
    /// slurm.job.id, systemd.unit... (each only when known).
    #[serde(flatten)]
    pub who: std::sync::Arc<crate::identity::meta::WorkloadIdentity>,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub exe: Option<String>,
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
    pub segment: Option<String>,
    /// allowed | denied | audited.
    pub verdict: &'static str,
    pub rule: Option<String>,
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
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceTarget {
    /// The node's path where the agent resolved it, else `char 511:0`.
    pub path: String,
    /// char | block
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub major: u32,
    pub minor: u32,
    /// Access asked for: `read`, `write`, `mknod`, comma-separated.
    pub access: String,
}
