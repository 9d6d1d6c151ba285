//! The validated policy, as read from the file. Items keep their `Origin` so
//! cross-item checks (and later tooling) can point back at the source.
use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;
use warden_common::{
    ACCESS_READ, ACCESS_WRITE, DEFAULT_ALLOW, DEFAULT_DENY, MODE_AUDIT, MODE_ENFORCE, PROTO_ANY, PROTO_TCP, PROTO_UDP,
};

use super::error::Origin;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denies are enforced.
    #[default]
    Enforce,
    /// Denies are only reported ("would deny"); the flow goes through.
    Audit,
}

impl Mode {
    pub fn kernel(self) -> u8 {
        match self {
            Mode::Enforce => MODE_ENFORCE,
            Mode::Audit => MODE_AUDIT,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

/// What happens to destinations outside every segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

impl DefaultAction {
    pub fn kernel(self) -> u8 {
        match self {
            DefaultAction::Allow => DEFAULT_ALLOW,
            DefaultAction::Deny => DEFAULT_DENY,
        }
    }
}

impl fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefaultAction::Allow => "allow",
            DefaultAction::Deny => "deny",
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    #[default]
    Any,
}

impl Protocol {
    /// `PROTO_*` bits.
    pub fn mask(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
            Protocol::Any => PROTO_ANY,
        }
    }

    pub fn from_mask(mask: u8) -> Self {
        match mask {
            PROTO_TCP => Protocol::Tcp,
            PROTO_UDP => Protocol::Udp,
            _ => Protocol::Any,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Any => "any",
        })
    }
}

/// Inclusive port window, host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { lo: 0, hi: u16::MAX };

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ALL {
            f.write_str("all ports")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Port windows as written; empty means all ports.
pub fn windows(ports: &[PortRange]) -> Vec<PortRange> {
    if ports.is_empty() { vec![PortRange::ALL] } else { ports.to_vec() }
}

/// A kind of socket that reaches around the connect hooks, granted by
/// `sockets:` in an allow rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    /// Raw IPv4/IPv6 sockets (hand-built packets; the backstop judges them).
    Raw,
    /// Packet sockets (AF_PACKET: whole frames, past every IP-level hook).
    Packet,
}

impl SocketKind {
    /// `SOCK_GRANT_*` bit.
    pub fn bit(self) -> u8 {
        match self {
            SocketKind::Raw => warden_common::SOCK_GRANT_RAW,
            SocketKind::Packet => warden_common::SOCK_GRANT_PACKET,
        }
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Raw => "raw",
            SocketKind::Packet => "packet",
        })
    }
}

/// What an allow rule grants on a segment's paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Open for reading.
    Read,
    /// Open for reading and writing, and change the tree (create, rename, unlink, link).
    ReadWrite,
}

impl Access {
    /// `ACCESS_*` bits.
    pub fn bits(self) -> u8 {
        match self {
            Access::Read => ACCESS_READ,
            Access::ReadWrite => ACCESS_READ | ACCESS_WRITE,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        })
    }
}

/// One `network:` entry of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkEntry {
    /// Network address (host bits clear); IPv4-mapped IPv6 already made IPv4.
    pub cidr: IpNet,
    /// Empty: all ports.
    pub ports: Vec<PortRange>,
    pub protocol: Protocol,
    /// Position of the `cidr` value.
    pub origin: Origin,
}

/// One `paths:` entry of a segment: a protected directory tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    /// Absolute and normalised (no `.`/`..`/empty components, no trailing `/`), never `/`.
    pub path: PathBuf,
    /// Position of the path value.
    pub origin: Origin,
}

/// NVIDIA GPUs of a device segment, by index (= char 195 minor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuSelection {
    /// Every GPU index (0..=253).
    All,
    Indices(Vec<u16>),
}

impl GpuSelection {
    pub fn indices(&self) -> Vec<u16> {
        match self {
            GpuSelection::All => (0..warden_common::NVIDIA_MAX_GPUS as u16).collect(),
            GpuSelection::Indices(v) => v.clone(),
        }
    }
}

/// One `devices.paths` entry: device nodes by path (glob in the last component).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePath {
    pub pattern: PathBuf,
    pub origin: Origin,
}

/// A segment's `devices:` mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub gpus: Option<GpuSelection>,
    /// `gpus` was written, even if its value was invalid (and reported).
    pub gpus_given: bool,
    /// nvidiactl, nvidia-modeset, nvidia-uvm and nvidia-uvm-tools.
    pub nvidia_control: bool,
    pub paths: Vec<DevicePath>,
    /// Position of the `devices` value.
    pub origin: Origin,
}

/// Which GPUs of a device segment a rule grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleGpus {
    Listed(Vec<u16>),
    /// Exactly those kubelet assigned to the container.
    Assigned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    pub description: Option<String>,
    pub mode: Option<Mode>,
    /// May be empty when `paths` is not.
    pub network: Vec<NetworkEntry>,
    /// Protected directory trees; may be empty when `network` is not.
    pub paths: Vec<PathEntry>,
    /// Protected device nodes.
    pub devices: Option<DeviceSpec>,
    /// Position of the `name` value.
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub mode: Option<Mode>,
    /// cgroup globs relative to `agent.cgroupRoot`, leading `/` stripped.
    pub cgroup: Vec<String>,
    /// Identity criteria beyond the cgroup path; all given must hold.
    pub meta: MetaSelector,
    pub origin: Origin,
}

/// Who a workload is in Kubernetes, Slurm or systemd terms. Each list is
/// "any of" (strings are globs: `*` matches any run of characters); every
/// non-empty criterion must hold. A criterion whose fact is not known (yet)
/// does not hold: the cgroup stays unidentified (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaSelector {
    pub namespace: Vec<String>,
    pub pod_labels: Option<super::labels::LabelSelector>,
    pub service_account: Vec<String>,
    pub container: Vec<String>,
    pub image: Vec<String>,
    pub slurm_user: Vec<String>,
    pub slurm_account: Vec<String>,
    pub slurm_partition: Vec<String>,
    pub slurm_job: Vec<u64>,
    pub unit: Vec<String>,
}

impl MetaSelector {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether any criterion needs pod metadata from the API or the runtime.
    pub fn needs_pod_metadata(&self) -> bool {
        !(self.namespace.is_empty()
            && self.pod_labels.is_none()
            && self.service_account.is_empty()
            && self.container.is_empty()
            && self.image.is_empty())
    }

    /// Whether any criterion needs Slurm's job records.
    pub fn needs_slurm_metadata(&self) -> bool {
        !(self.slurm_user.is_empty() && self.slurm_account.is_empty() && self.slurm_partition.is_empty())
    }
}

/// A name used by an allow rule, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRef {
    pub name: String,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    pub workloads: Vec<NameRef>,
    pub segments: Vec<NameRef>,
    /// Empty: all ports (the segment's own windows still apply).
    pub ports: Vec<PortRange>,
    pub protocol: Protocol,
    /// Required when a listed segment has paths; optional for devices
    /// (default read-write); `None` otherwise.
    pub access: Option<Access>,
    /// For device segments with GPUs; `None`: every GPU of the segment.
    pub gpus: Option<RuleGpus>,
    /// Position of `gpus` (else the rule).
    pub gpus_origin: Origin,
    pub mode: Option<Mode>,
    /// Raw and packet sockets granted to the rule's workloads (`sockets:`).
    pub sockets: Vec<SocketKind>,
    /// Position of `sockets` (else the rule).
    pub sockets_origin: Origin,
    /// Position of the rule's mapping, field `allow[i]`.
    pub origin: Origin,
    /// Position of `ports` (else `protocol`, else the rule) for narrowing errors.
    pub narrowing_origin: Origin,
    /// Position of `access` (else the rule).
    pub access_origin: Origin,
}

impl AllowRule {
    /// Whether `ports` or `protocol` was written.
    pub fn narrows(&self) -> bool {
        self.narrowing_origin.field != self.origin.field
    }

    /// Human label used in events: `allow[0] trainer->object-store`.
    pub fn label(&self) -> String {
        let join = |refs: &[NameRef]| refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(",");
        if self.segments.is_empty() {
            let kinds: Vec<String> = self.sockets.iter().map(ToString::to_string).collect();
            return format!("{} {} sockets:{}", self.origin.field, join(&self.workloads), kinds.join(","));
        }
        format!("{} {}->{}", self.origin.field, join(&self.workloads), join(&self.segments))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub version: u32,
    pub mode: Mode,
    pub default_action: DefaultAction,
    pub segments: Vec<Segment>,
    pub workloads: Vec<Workload>,
    pub allow: Vec<AllowRule>,
    /// Hex SHA-256 of the file bytes, to tell which policy is loaded.
    pub source_sha256: String,
}
