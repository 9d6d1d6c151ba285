//! The `agent:` section of the config file: how the daemon runs (sockets,
//! sinks, backends, metadata sources). Typed apart from the policy proper:
//! the policy says what is protected and who may reach it; these say how
//! this node's agent runs, and take effect at its next start.
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

mod events;

pub use events::{AllowedEvents, DEFAULT_METRICS_ADDRESS, EventsConfig, MetricsConfig, OtlpConfig, Rotate};

/// Default ring buffer size (4 MiB).
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 4 << 20;
pub const DEFAULT_SOCKET: &str = "/run/warden/warden.sock";

/// Which kernel mechanism enforces file segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileBackend {
    /// The strongest backend that works on the node (BPF-LSM, else fanotify).
    #[default]
    Auto,
    /// BPF-LSM hooks: sees opens, creates, renames, unlinks and links.
    Lsm,
    /// fanotify permission events: sees opens (read/write) only.
    Fanotify,
}

impl fmt::Display for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileBackend::Auto => "auto",
            FileBackend::Lsm => "lsm",
            FileBackend::Fanotify => "fanotify",
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesConfig {
    pub backend: FileBackend,
}

/// Where the agent learns about devices and their assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicesConfig {
    /// procfs root: `devices` (dynamic majors), `driver/nvidia/gpus/*/information`
    /// (GPU UUID → minor), `driver/nvidia/capabilities` and `driver/nvidia-caps`
    /// (MIG capability minors) are read below it. Tests point it at fixtures.
    pub proc_root: PathBuf,
    /// kubelet pod-resources socket, for `gpus: assigned`.
    pub kubelet_socket: PathBuf,
    /// CRI runtime socket (container id → pod and container names); `None`:
    /// the first of containerd's, CRI-O's and k3s/RKE2's default sockets that exists.
    pub cri_socket: Option<PathBuf>,
    /// Extended resources whose device ids are GPUs, time-sliced replicas
    /// or MIG devices: exact names, or `*` globs in the part after `/`.
    pub gpu_resources: Vec<String>,
    /// CDI spec directories: the map from modern MIG UUIDs (`MIG-<uuid>`)
    /// to their device nodes, as NVIDIA's tools wrote it.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// How often assignments are re-read.
    pub refresh_ms: u32,
}

pub const DEFAULT_KUBELET_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
pub const DEFAULT_CRI_SOCKETS: [&str; 3] =
    ["/run/containerd/containerd.sock", "/run/crio/crio.sock", "/run/k3s/containerd/containerd.sock"];
/// What the NVIDIA device plugin advertises: whole GPUs (also MIG devices
/// with the single strategy), time-sliced replicas renamed by
/// `renameByDefault`, and MIG profiles with the mixed strategy.
pub const DEFAULT_GPU_RESOURCES: [&str; 3] = ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*"];
/// Where CDI specs live (the CDI specification's defaults).
pub const DEFAULT_CDI_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            kubelet_socket: PathBuf::from(DEFAULT_KUBELET_SOCKET),
            cri_socket: None,
            gpu_resources: DEFAULT_GPU_RESOURCES.iter().map(|r| r.to_string()).collect(),
            cdi_spec_dirs: DEFAULT_CDI_SPEC_DIRS.iter().map(PathBuf::from).collect(),
            refresh_ms: 5000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Relative to the cgroup2 mount; `/` is the whole hierarchy.
    pub cgroup_root: String,
    pub socket: PathBuf,
    /// `None`: use the hostname.
    pub node_name: Option<String>,
    pub events: EventsConfig,
    pub ring_buffer_bytes: u32,
    pub files: FilesConfig,
    pub devices: DevicesConfig,
    pub kubernetes: KubernetesConfig,
    pub slurm: SlurmConfig,
    pub metrics: MetricsConfig,
}

/// Where pod metadata (namespace, labels, service account...) comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ApiServer {
    /// In-cluster (service account) when `KUBERNETES_SERVICE_HOST` is set, else off.
    #[default]
    Auto,
    InCluster,
    Off,
    /// An explicit URL, e.g. `http://127.0.0.1:8001` behind `kubectl proxy`.
    Url(String),
}

/// `agent.kubernetes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub api_server: ApiServer,
    /// Bearer token for an explicit URL.
    pub token_file: Option<PathBuf>,
}

/// `agent.slurm`: job owner, account and partition from `scontrol`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SlurmConfig {
    /// `scontrol` from PATH when a job cgroup appears and it is installed.
    #[default]
    Auto,
    Off,
    Scontrol(PathBuf),
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            cgroup_root: "/".into(),
            socket: PathBuf::from(DEFAULT_SOCKET),
            node_name: None,
            events: EventsConfig::default(),
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            files: FilesConfig::default(),
            devices: DevicesConfig::default(),
            kubernetes: KubernetesConfig::default(),
            slurm: SlurmConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}
