//! A GPU node made of fixtures: NVIDIA device nodes (mknod on a tmpfs of the
//! test's own), the driver's procfs files (GPU information, MIG capability
//! files, mig-minors, /proc/devices), CDI specs, and fake kubelet and CRI
//! servers speaking the real protos. There is no GPU here: an open the hooks
//! allow reaches the absent driver (ENXIO), a denied one gets EPERM.
use std::path::{Path, PathBuf};

use crate::harness::{TempDir, fileprobe};
use warden_testkit::kube::{ContainerDevices, ContainerInfo, FakeCri, FakeKubelet, ServerHandle};

/// `nvidia-caps` major as the fixture /proc/devices states it (no driver has it here).
pub const CAPS_MAJOR: u32 = 507;
/// `nvidia-uvm` major, likewise.
pub const UVM_MAJOR: u32 = 506;

pub struct GpuNode {
    pub dir: TempDir,
    pub kubelet: FakeKubelet,
    pub cri: FakeCri,
    rt: tokio::runtime::Runtime,
    servers: Vec<ServerHandle>,
}

impl GpuNode {
    /// GPUs `0..gpus` (UUID `uuid(i)`), nvidiactl and nvidia-uvm, with the
    /// capability nodes and files added by `mig_instance`.
    pub fn new(name: &str, gpus: u32) -> Self {
        let dir = TempDir::new(name);
        nix::mount::mount(Some("tmpfs"), &dir.0, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=2m"))
            .expect("mount tmpfs");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let mut node = Self { dir, kubelet: FakeKubelet::new(), cri: FakeCri::new(), rt, servers: vec![] };
        std::fs::create_dir_all(node.path("dev/nvidia-caps")).unwrap();
        std::fs::create_dir_all(node.path("cdi")).unwrap();
        for gpu in 0..gpus {
            node.mknod(&format!("dev/nvidia{gpu}"), 195, gpu);
            let bus = format!("0000:{:02x}:00.0", 0x18 + gpu);
            node.write(
                &format!("proc/driver/nvidia/gpus/{bus}/information"),
                &format!(
                    "Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t {}\nBus Location: \t {bus}\nDevice Minor: \t {gpu}\n",
                    uuid(gpu)
                ),
            );
        }
        node.mknod("dev/nvidiactl", 195, 255);
        node.mknod("dev/nvidia-uvm", UVM_MAJOR, 0);
        node.write(
            "proc/devices",
            &format!(
                "Character devices:\n  1 mem\n195 nvidia-frontend\n{CAPS_MAJOR} nvidia-caps\n{UVM_MAJOR} nvidia-uvm\n\nBlock devices:\n  7 loop\n"
            ),
        );
        let kubelet = node.kubelet.clone();
        let cri = node.cri.clone();
        let (k, c) = (node.path("kubelet.sock"), node.path("cri.sock"));
        node.servers.push(node.rt.block_on(kubelet.serve(&k)).unwrap());
        node.servers.push(node.rt.block_on(cri.serve(&c)).unwrap());
        node
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn mknod(&self, rel: &str, major: u32, minor: u32) {
        let path = std::ffi::CString::new(self.path(rel).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: valid path; the test runs as root.
        let r = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) };
        assert_eq!(r, 0, "mknod {rel}: {}", std::io::Error::last_os_error());
    }

    /// The driver's mig/config and mig/monitor capabilities (minors 1, 2),
    /// and the full mig-minors table of GPUs `0..gpus` (9 minors per GPU
    /// instance, 15 instances per GPU, as the driver numbers them).
    pub fn mig_enabled(&self, gpus: u32) {
        self.capability("mig/config", 1);
        self.capability("mig/monitor", 2);
        let mut minors = String::from("config 1\nmonitor 2\n");
        for gpu in 0..gpus {
            for gi in 0..15 {
                let base = cap_minor(gpu, gi, None);
                minors += &format!("gpu{gpu}/gi{gi}/access {base}\n");
                for ci in 0..8 {
                    minors += &format!("gpu{gpu}/gi{gi}/ci{ci}/access {}\n", base + 1 + ci);
                }
            }
        }
        self.write("proc/driver/nvidia-caps/mig-minors", &minors);
    }

    /// A GPU instance with one compute instance, as the driver shows it once
    /// created; returns the two capability minors.
    pub fn mig_instance(&self, gpu: u32, gi: u32, ci: u32) -> (u32, u32) {
        let (g, c) = (cap_minor(gpu, gi, None), cap_minor(gpu, gi, Some(ci)));
        self.capability(&format!("gpu{gpu}/mig/gi{gi}/access"), g);
        self.capability(&format!("gpu{gpu}/mig/gi{gi}/ci{ci}/access"), c);
        (g, c)
    }

    /// A capability file and its node (nvidia-modprobe names it by minor).
    fn capability(&self, rel: &str, minor: u32) {
        self.write(
            &format!("proc/driver/nvidia/capabilities/{rel}"),
            &format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n"),
        );
        self.cap_node(minor);
    }

    /// A capability node alone: one left from an instance since destroyed,
    /// or made ahead of one (`nvidia-modprobe -f`).
    pub fn cap_node(&self, minor: u32) {
        let node = format!("dev/nvidia-caps/nvidia-cap{minor}");
        if !self.path(&node).exists() {
            self.mknod(&node, CAPS_MAJOR, minor);
        }
    }

    /// A CDI spec as the device plugin writes it, naming MIG UUIDs' nodes.
    pub fn cdi_spec(&self, devices: &[(&str, u32, u32, u32)]) {
        let devs: Vec<String> = devices
            .iter()
            .map(|(name, gpu, gi_cap, ci_cap)| {
                format!(
                    r#"{{"name":"{name}","containerEdits":{{"deviceNodes":[{{"path":"/dev/nvidia{gpu}"}},{{"path":"/dev/nvidia-caps/nvidia-cap{gi_cap}"}},{{"path":"/dev/nvidia-caps/nvidia-cap{ci_cap}"}}]}}}}"#
                )
            })
            .collect();
        self.write(
            "cdi/k8s.device-plugin.nvidia.com-gpu.json",
            &format!(
                r#"{{"cdiVersion":"0.5.0","kind":"k8s.device-plugin.nvidia.com/gpu","devices":[{}]}}"#,
                devs.join(",")
            ),
        );
    }

    /// kubelet's assignment: (container, resource, device ids), all in pod
    /// `ns/<container>-pod`; the runtime knows each container by `id_of`.
    pub fn assign(&self, list: &[(&str, &str, &[&str])]) {
        self.kubelet.set(
            list.iter()
                .map(|(c, resource, ids)| ContainerDevices {
                    namespace: "ml".into(),
                    pod: format!("{c}-pod"),
                    container: c.to_string(),
                    resource: resource.to_string(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        );
        let mut names: Vec<&str> = list.iter().map(|(c, _, _)| *c).collect();
        names.dedup();
        self.cri.set(
            names
                .iter()
                .map(|c| ContainerInfo {
                    id: id_of(c),
                    namespace: "ml".into(),
                    pod: format!("{c}-pod"),
                    pod_uid: format!("6b1d3c1e-0000-4000-8000-{:012x}", c.len()),
                    container: c.to_string(),
                })
                .collect(),
        );
    }

    /// `agent.devices` pointing at this node's fixtures.
    pub fn agent_devices(&self) -> String {
        format!(
            "  devices:\n    procRoot: {}\n    kubeletSocket: {}\n    criSocket: {}\n    cdiSpecDirs: [{}]\n    refreshMs: 200\n",
            self.s("proc"),
            self.s("kubelet.sock"),
            self.s("cri.sock"),
            self.s("cdi")
        )
    }

    /// Whether an open for writing in `cgroup` passed the hooks (ENXIO from
    /// the absent driver), was denied (EPERM), or neither (a test bug).
    pub fn reaches(&self, cgroup: &Path, node: &str) -> bool {
        let p = fileprobe(cgroup, &["write", &self.s(node)]);
        assert!(p.nodev() || p.eperm(), "open {node}: neither allowed nor denied: {p:?}");
        p.nodev()
    }
}

impl Drop for GpuNode {
    fn drop(&mut self) {
        for s in self.servers.drain(..) {
            let _ = self.rt.block_on(s.shutdown());
        }
        let _ = nix::mount::umount2(&self.dir.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The fixture GPU `i`'s UUID.
pub fn uuid(i: u32) -> String {
    format!("GPU-{i:08x}-1111-2222-3333-444444444444")
}

/// A container id (64 hex digits) derived from its name.
pub fn id_of(container: &str) -> String {
    let hex: String = container.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0>64}")
}

/// mig-minors' numbering: 3 + 135 per GPU + 9 per GPU instance (its own,
/// then 8 compute instances).
pub fn cap_minor(gpu: u32, gi: u32, ci: Option<u32>) -> u32 {
    3 + gpu * 135 + gi * 9 + ci.map_or(0, |c| 1 + c)
}
