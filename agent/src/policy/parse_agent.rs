//! Reading the `agent:` section (daemon settings, typed apart from the
//! policy in `crate::settings`).
use std::path::{Path, PathBuf};

use super::error::quoted;
use super::reader::Reader;
use super::yaml::Node;
use crate::settings::{AgentConfig, ApiServer, DevicesConfig, FileBackend, KubernetesConfig, SlurmConfig};

const AGENT_KEYS: &[&str] = &[
    "cgroupRoot",
    "socket",
    "nodeName",
    "events",
    "ringBufferBytes",
    "files",
    "devices",
    "kubernetes",
    "slurm",
    "metrics",
];
const KUBERNETES_KEYS: &[&str] = &["apiServer", "tokenFile"];
const SLURM_AGENT_KEYS: &[&str] = &["scontrol"];
const AGENT_DEVICES_KEYS: &[&str] =
    &["procRoot", "kubeletSocket", "criSocket", "gpuResource", "gpuResources", "cdiSpecDirs", "refreshMs"];
/// More would only slow the match of every container's devices.
const MAX_GPU_RESOURCES: usize = 64;
const MAX_CDI_SPEC_DIRS: usize = 16;
const FILES_KEYS: &[&str] = &["backend"];
pub const MIN_RING_BUFFER_BYTES: i64 = 64 << 10;
pub const MAX_RING_BUFFER_BYTES: i64 = 1 << 30;

impl Reader<'_> {
    pub(super) fn agent(&mut self, node: &Node) -> AgentConfig {
        let mut agent = AgentConfig::default();
        let Some(m) = self.map(node, "agent", AGENT_KEYS) else {
            return agent;
        };
        if let Some(n) = m.get("cgroupRoot") {
            let field = m.field("cgroupRoot");
            if let Some(s) = self.nonempty_string(n, &field) {
                if s.split('/').any(|c| c == "..") {
                    self.err(n, &field, "must stay inside the cgroup2 mount (no `..`)");
                }
                agent.cgroup_root = s;
            }
        }
        if let Some(n) = m.get("socket") {
            let field = m.field("socket");
            if let Some(s) = self.nonempty_string(n, &field) {
                if !Path::new(&s).is_absolute() {
                    self.err(n, &field, format!("{} must be an absolute path", quoted(&s)));
                }
                agent.socket = PathBuf::from(s);
            }
        }
        if let Some(n) = m.get("nodeName") {
            agent.node_name = self.nonempty_string(n, &m.field("nodeName"));
        }
        if let Some(n) = m.get("events") {
            agent.events = self.agent_events(n);
        }
        if let Some(n) = m.get("metrics") {
            agent.metrics = self.agent_metrics(n);
        }
        if let Some(n) = m.get("ringBufferBytes") {
            let field = m.field("ringBufferBytes");
            let why = |v: &str| {
                format!(
                    "{v} must be a power of two between {MIN_RING_BUFFER_BYTES} (64 KiB) and {MAX_RING_BUFFER_BYTES} (1 GiB)"
                )
            };
            match self.integer(n, &field, MIN_RING_BUFFER_BYTES..=MAX_RING_BUFFER_BYTES, why) {
                Some(v) if (v as u64).is_power_of_two() => agent.ring_buffer_bytes = v as u32,
                Some(v) => self.err(n, &field, why(&v.to_string())),
                None => {}
            }
        }
        if let Some(n) = m.get("files")
            && let Some(f) = self.map(n, "agent.files", FILES_KEYS)
            && let Some(n) = f.get("backend")
        {
            let options = [("auto", FileBackend::Auto), ("lsm", FileBackend::Lsm), ("fanotify", FileBackend::Fanotify)];
            agent.files.backend = self.keyword(n, &f.field("backend"), &options).unwrap_or_default();
        }
        if let Some(n) = m.get("devices") {
            agent.devices = self.agent_devices(n);
        }
        if let Some(n) = m.get("kubernetes") {
            agent.kubernetes = self.agent_kubernetes(n);
        }
        if let Some(n) = m.get("slurm")
            && let Some(s) = self.map(n, "agent.slurm", SLURM_AGENT_KEYS)
            && let Some(n) = s.get("scontrol")
            && let Some(v) = self.nonempty_string(n, &s.field("scontrol"))
        {
            agent.slurm = match v.as_str() {
                "auto" => SlurmConfig::Auto,
                "off" => SlurmConfig::Off,
                p if Path::new(p).is_absolute() => SlurmConfig::Scontrol(PathBuf::from(p)),
                _ => {
                    self.err(
                        n,
                        &s.field("scontrol"),
                        format!("{}: expected auto, off or an absolute path", quoted(&v)),
                    );
                    SlurmConfig::Auto
                }
            };
        }
        agent
    }

    fn agent_kubernetes(&mut self, node: &Node) -> KubernetesConfig {
        let mut k = KubernetesConfig::default();
        let Some(m) = self.map(node, "agent.kubernetes", KUBERNETES_KEYS) else { return k };
        if let Some(n) = m.get("apiServer")
            && let Some(v) = self.nonempty_string(n, &m.field("apiServer"))
        {
            k.api_server = match v.as_str() {
                "auto" => ApiServer::Auto,
                "in-cluster" => ApiServer::InCluster,
                "off" => ApiServer::Off,
                u if (u.starts_with("https://") || u.starts_with("http://"))
                    && u.parse::<tonic::transport::Uri>().is_ok() =>
                {
                    ApiServer::Url(u.trim_end_matches('/').to_string())
                }
                _ => {
                    let reason = format!("{}: expected auto, in-cluster, off or an http(s):// URL", quoted(&v));
                    self.err(n, &m.field("apiServer"), reason);
                    ApiServer::Auto
                }
            };
        }
        if let Some(n) = m.get("tokenFile")
            && let Some(s) = self.nonempty_string(n, &m.field("tokenFile"))
        {
            if !Path::new(&s).is_absolute() {
                self.err(n, &m.field("tokenFile"), format!("{} must be an absolute path", quoted(&s)));
            }
            k.token_file = Some(PathBuf::from(s));
        }
        k
    }

    fn agent_devices(&mut self, node: &Node) -> DevicesConfig {
        let mut d = DevicesConfig::default();
        let Some(m) = self.map(node, "agent.devices", AGENT_DEVICES_KEYS) else { return d };
        let abs = |r: &mut Self, key: &str| -> Option<PathBuf> {
            let n = m.get(key)?;
            let field = m.field(key);
            let s = r.nonempty_string(n, &field)?;
            if !Path::new(&s).is_absolute() {
                r.err(n, &field, format!("{} must be an absolute path", quoted(&s)));
                return None;
            }
            Some(PathBuf::from(s))
        };
        if let Some(p) = abs(self, "procRoot") {
            d.proc_root = p;
        }
        if let Some(p) = abs(self, "kubeletSocket") {
            d.kubelet_socket = p;
        }
        d.cri_socket = abs(self, "criSocket");
        match (m.get("gpuResource"), m.get("gpuResources")) {
            (Some(_), Some(n)) => self.err(n, &m.field("gpuResources"), "give gpuResource or gpuResources, not both"),
            (Some(n), None) => {
                if let Some(r) = self.resource_pattern(n, &m.field("gpuResource")) {
                    d.gpu_resources = vec![r];
                }
            }
            (None, Some(n)) => {
                let field = m.field("gpuResources");
                if let Some(items) = self.list(n, &field) {
                    if items.len() > MAX_GPU_RESOURCES {
                        self.err(n, &field, format!("{} entries; at most {MAX_GPU_RESOURCES}", items.len()));
                    }
                    d.gpu_resources = items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| self.resource_pattern(item, &format!("{field}[{i}]")))
                        .collect();
                }
            }
            (None, None) => {}
        }
        if let Some(n) = m.get("cdiSpecDirs") {
            let field = m.field("cdiSpecDirs");
            if let Some(items) = self.list(n, &field) {
                if items.len() > MAX_CDI_SPEC_DIRS {
                    self.err(n, &field, format!("{} entries; at most {MAX_CDI_SPEC_DIRS}", items.len()));
                }
                let mut dirs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    if let Some(s) = self.nonempty_string(item, &f) {
                        if Path::new(&s).is_absolute() {
                            dirs.push(PathBuf::from(s));
                        } else {
                            self.err(item, &f, format!("{} must be an absolute path", quoted(&s)));
                        }
                    }
                }
                d.cdi_spec_dirs = dirs;
            }
        }
        if let Some(n) = m.get("refreshMs") {
            let field = m.field("refreshMs");
            if let Some(v) =
                self.integer(n, &field, 100..=600_000, |v| format!("{v} must be between 100 and 600000 (ms)"))
            {
                d.refresh_ms = v as u32;
            }
        }
        d
    }

    /// One `gpuResource(s)` entry: a resource name, or one with `*` in the name.
    fn resource_pattern(&mut self, node: &Node, field: &str) -> Option<String> {
        let s = self.nonempty_string(node, field)?;
        match crate::kube::resources::pattern_error(&s) {
            None => Some(s),
            Some(why) => {
                self.err(node, field, format!("{}: {why}", quoted(&s)));
                None
            }
        }
    }
}
