//! Device segments on real hooks: the cgroup/dev program decides opens and
//! mknods of real device nodes (made with mknod on a tmpfs of the test's
//! own; there is no GPU here). A denied open fails with EPERM in the hook;
//! an allowed one passes every hook and reaches the absent driver, which
//! answers ENXIO: that tells allowed from denied on real kernel paths.
mod harness;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use harness::*;

/// NVIDIA nodes (195:minor) and two more, on a tmpfs that allows device nodes.
struct DevFs {
    dir: TempDir,
}

/// nvidia-uvm's dynamic major as the fixture /proc/devices states it.
const UVM_MAJOR: u32 = 509;

impl DevFs {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        nix::mount::mount(Some("tmpfs"), &dir.0, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m"))
            .expect("mount tmpfs");
        let fs = Self { dir };
        for gpu in 0..4 {
            fs.node(&format!("nvidia{gpu}"), 195, gpu);
        }
        fs.node("nvidiactl", 195, 255);
        fs.node("nvidia-uvm", UVM_MAJOR, 0);
        fs.node("uverbs0", 231, 192);
        fs.node("uverbs1", 231, 193);
        std::fs::create_dir(fs.dir.0.join("made")).unwrap();
        // The driver's view, as procfs would show it.
        let proc = fs.dir.0.join("proc");
        std::fs::create_dir_all(&proc).unwrap();
        let devices = format!(
            "Character devices:\n  1 mem\n  4 tty\n195 nvidia-frontend\n231 infiniband_verbs\n{UVM_MAJOR} nvidia-uvm\n\n\
             Block devices:\n  7 loop\n{UVM_MAJOR} blkext\n"
        );
        std::fs::write(proc.join("devices"), devices).unwrap();
        fs
    }

    fn node(&self, name: &str, major: u32, minor: u32) {
        let path = std::ffi::CString::new(self.path(name).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: valid path; the test runs as root.
        let r = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) };
        assert_eq!(r, 0, "mknod {name}: {}", std::io::Error::last_os_error());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A GPU as the driver reports it under `<proc>/driver/nvidia/gpus/`.
    fn gpu_info(&self, bus: &str, uuid: &str, minor: u32) {
        let dir = self.dir.0.join("proc/driver/nvidia/gpus").join(bus);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t {uuid}\nVideo BIOS: \t 96.00.99.00.01\n\
             Bus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t {bus}\n\
             Device Minor: \t {minor}\nGPU Excluded:\t No\n"
        );
        std::fs::write(dir.join("information"), text).unwrap();
    }
}

impl Drop for DevFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn open(cgroup: &Path, mode: &str, node: &str) -> Probe {
    fileprobe(cgroup, &[mode, node])
}

fn policy(fs: &DevFs, mode: &str) -> String {
    format!(
        r#"
version: 1
mode: {mode}
agent:
  devices: {{ procRoot: {proc} }}
  events: {{ allowed: each }}
segments:
  - name: gpus
    devices:
      gpus: all
      paths: ["{base}/uverbs*"]
workloads:
  - name: trainer
    selector: {{ cgroup: "trainer/*" }}
  - name: viewer
    selector: {{ cgroup: "viewer/*" }}
  - name: other
    selector: {{ cgroup: "other/*" }}
allow:
  - workload: trainer
    segment: gpus
    gpus: [1, 2]
  - workload: viewer
    segment: gpus
    gpus: [3]
    access: read
"#,
        proc = fs.dir.0.join("proc").display(),
        base = fs.dir.0.display(),
    )
}

#[test]
fn gpus_by_index_control_nodes_and_paths() {
    require_root();
    let fs = DevFs::new("gpus");
    let tree = TestTree::new("gpus");
    let trainer = tree.mkdir("trainer/job");
    let viewer = tree.mkdir("viewer/job");
    let other = tree.mkdir("other/job");
    let stranger = tree.mkdir("stranger");
    let agent = Agent::start(&tree, &policy(&fs, "enforce"));

    // Granted GPUs and the segment's other nodes reach the (absent) driver.
    for node in ["nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "uverbs0", "uverbs1"] {
        let p = open(&trainer, "write", &fs.s(node));
        assert!(p.nodev(), "trainer must reach {node}: {p:?}");
    }
    for node in ["nvidia0", "nvidia3"] {
        let p = open(&trainer, "write", &fs.s(node));
        assert!(p.eperm(), "trainer must not open {node}: {p:?}");
    }
    // Read-only grant: opens for read pass, for write are denied.
    assert!(open(&viewer, "read", &fs.s("nvidia3")).nodev());
    assert!(open(&viewer, "write", &fs.s("nvidia3")).eperm());
    // No rule, or no identity: nothing in the segment (fail closed)...
    for who in [&other, &stranger] {
        for node in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "uverbs0"] {
            let p = open(who, "read", &fs.s(node));
            assert!(p.eperm(), "{} must not open {node}: {p:?}", who.display());
        }
        // ...while devices outside every segment stay untouched.
        for node in ["/dev/null", "/dev/zero", "/dev/urandom"] {
            let p = open(who, "write", node);
            assert!(p.ok(), "{} must keep {node}: {p:?}", who.display());
        }
    }
    // mknod of a protected device number is checked too, wherever the node is made.
    let made = fs.s("made/gpu0");
    assert!(fileprobe(&other, &["mknod", &made, "195:0"]).eperm());
    assert!(!fs.path("made/gpu0").exists());
    assert!(fileprobe(&trainer, &["mknod", &fs.s("made/gpu1"), "195:1"]).ok());
    assert!(fileprobe(&other, &["mknod", &fs.s("made/null"), "1:3"]).ok(), "unprotected numbers may be made");

    let denied = open(&other, "read", &fs.s("nvidia2"));
    let events = agent.wait_events(1, |e| e["kind"] == "device" && e["tgid"] == denied.pid);
    let e = &events[0];
    assert_eq!((str_of(e, "workload"), str_of(e, "verdict")), ("other", "denied"));
    assert_eq!(str_of(e, "operation"), "open");
    assert_eq!(str_of(e, "segment"), "gpus");
    // The node opened was a copy elsewhere: the hook is told only 195:2, so
    // the event names the canonical node and says that it does.
    assert_eq!(e["device"]["path"], "/dev/nvidia2");
    assert_eq!(e["device"]["path_is"], "canonical");
    assert_eq!((e["device"]["major"].as_u64(), e["device"]["minor"].as_u64()), (Some(195), Some(2)));
    assert_eq!(e["device"]["type"], "char");
    assert_eq!(e["device"]["access"], "read");
    assert_eq!(str_of(e, "comm"), "warden-fileprob");
    assert_eq!(str_of(e, "cgroup"), other.to_str().unwrap());
    let ok = open(&trainer, "write", &fs.s("uverbs1"));
    let e = &agent.wait_events(1, |e| e["kind"] == "device" && e["tgid"] == ok.pid)[0];
    assert_eq!((str_of(e, "workload"), str_of(e, "verdict")), ("trainer", "allowed"));
    assert_eq!(e["device"]["path"], fs.s("uverbs1"));
    assert_eq!(e["device"]["access"], "write");
    assert!(str_of(e, "rule").starts_with("allow[0]"), "rule: {e}");
    let mk = agent.wait_events(1, |e| e["operation"] == "mknod" && e["verdict"] == "denied");
    assert_eq!(mk[0]["device"]["access"], "mknod");

    let st = agent.status();
    let row = st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "devices").unwrap().clone();
    assert_eq!(row["state"], "enforced", "{row}");
    let net = st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "network").unwrap().clone();
    assert_eq!(net["state"], "not-configured", "a policy without network segments enforces none: {net}");
    assert!(st["programs"].as_array().unwrap().iter().any(|p| p["kind"] == "cgroup_device"), "{st}");
    // 5 nodes x 1 read by `other`, the denied mknod and the denied nvidia2 read.
    assert_eq!(workload(&st, "other")["device_denied"], 7, "{st}");
    assert_eq!(workload(&st, "trainer")["device_denied"], 2, "{st}");
    assert_eq!(workload(&st, "(unidentified)")["device_denied"], 5, "{st}");
}

#[test]
fn audit_mode_reports_and_allows() {
    require_root();
    let fs = DevFs::new("gpus-audit");
    let tree = TestTree::new("gpus-audit");
    let other = tree.mkdir("other/job");
    let agent = Agent::start(&tree, &policy(&fs, "audit"));
    let p = open(&other, "write", &fs.s("nvidia0"));
    assert!(p.nodev(), "audit mode must let the open through: {p:?}");
    let e = &agent.wait_events(1, |e| e["kind"] == "device" && e["tgid"] == p.pid)[0];
    assert_eq!(str_of(e, "verdict"), "audited");
    let st = agent.status();
    let row = st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "devices").unwrap().clone();
    assert_eq!(row["state"], "audit", "{row}");
}

/// kubelet's assignment, served by fake kubelet and CRI servers that
/// implement the real v1 protos, decides which GPUs a container may open;
/// a new assignment is enforced without a restart.
#[test]
fn assigned_gpus_follow_kubelet() {
    require_root();
    let fs = DevFs::new("assigned");
    fs.gpu_info("00000000:01:00.0", "GPU-aaaaaaaa-1111-2222-3333-444444444444", 2);
    fs.gpu_info("00000000:02:00.0", "GPU-bbbbbbbb-1111-2222-3333-444444444444", 3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let kubelet = warden_testkit::kube::FakeKubelet::new();
    let cri = warden_testkit::kube::FakeCri::new();
    let (kubelet_sock, cri_sock) = (fs.dir.0.join("kubelet.sock"), fs.dir.0.join("cri.sock"));
    let kubelet_srv = rt.block_on(kubelet.serve(&kubelet_sock)).unwrap();
    let _cri_srv = rt.block_on(cri.serve(&cri_sock)).unwrap();
    let id = "3f1c9a7e5b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";
    let assign = |uuid: &str| {
        kubelet.set(vec![warden_testkit::kube::ContainerDevices {
            namespace: "ml".into(),
            pod: "train-0".into(),
            container: "main".into(),
            resource: "nvidia.com/gpu".into(),
            device_ids: vec![uuid.into()],
        }])
    };
    assign("GPU-aaaaaaaa-1111-2222-3333-444444444444");
    cri.set(vec![warden_testkit::kube::ContainerInfo {
        id: id.into(),
        namespace: "ml".into(),
        pod: "train-0".into(),
        pod_uid: "6b1d3c1e-0000-4000-8000-000000000001".into(),
        container: "main".into(),
    }]);

    let tree = TestTree::new("assigned");
    let yaml = format!(
        r#"
version: 1
agent:
  devices:
    procRoot: {proc}
    kubeletSocket: {kubelet}
    criSocket: {cri}
    refreshMs: 200
segments:
  - name: gpus
    devices: {{ gpus: all }}
workloads:
  - name: pods
    selector: {{ cgroup: "pods/*" }}
allow:
  - workload: pods
    segment: gpus
    gpus: assigned
"#,
        proc = fs.dir.0.join("proc").display(),
        kubelet = kubelet_sock.display(),
        cri = cri_sock.display(),
    );
    let agent = Agent::start(&tree, &yaml);
    // Created after the agent: the new cgroup triggers a read of the assignment.
    let container = tree.mkdir(&format!("pods/cri-containerd-{id}.scope"));
    let sibling =
        tree.mkdir("pods/cri-containerd-0000000000000000000000000000000000000000000000000000000000000001.scope");
    let reaches = |cg: &Path, gpu: u32| open(cg, "write", &fs.s(&format!("nvidia{gpu}"))).nodev();
    // Denied by the hook (EPERM), not failing some other way.
    let denied = |cg: &Path, gpu: u32| open(cg, "write", &fs.s(&format!("nvidia{gpu}"))).eperm();
    wait_until("GPU 2 (assigned) to open", || reaches(&container, 2));
    assert!(denied(&container, 3), "GPU 3 is not assigned");
    assert!(denied(&container, 0));
    assert!(denied(&sibling, 2), "a container without an assignment gets no GPU");

    assign("GPU-bbbbbbbb-1111-2222-3333-444444444444");
    wait_until("the new assignment (GPU 3)", || reaches(&container, 3));
    assert!(denied(&container, 2), "the old GPU is revoked");
    let st = agent.status();
    assert_eq!(st["gpu_assignment"]["containers"], 1, "{st}");
    assert_eq!(st["gpu_assignment"]["cgroups"], 1, "{st}");

    // kubelet goes away: the last good assignment stays, the failure shows.
    rt.block_on(kubelet_srv.shutdown()).unwrap();
    wait_until("status to report the failed read", || agent.status()["gpu_assignment"]["last_error"].is_string());
    assert!(reaches(&container, 3) && !reaches(&container, 2));
    let err = agent.status()["gpu_assignment"]["last_error"].as_str().unwrap().to_string();
    assert!(err.contains(kubelet_sock.to_str().unwrap()), "error names the socket: {err}");
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a container runtime does (runc, crun): its own cgroup/dev program
/// on the container's cgroup, attached with BPF_F_ALLOW_MULTI. This one
/// allows everything except /dev/zero (char 1:5). Returns the program fd.
fn attach_runtime_program(cgroup: &Path) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    // struct bpf_insn: code, dst|src<<4, off, imm.
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| -> u64 {
        (code as u64) | (((dst | (src << 4)) as u64) << 8) | (((off as u16) as u64) << 16) | ((imm as u32 as u64) << 32)
    };
    let prog: [u64; 7] = [
        insn(0x61, 2, 1, 4, 0), // r2 = ctx->major
        insn(0x61, 3, 1, 8, 0), // r3 = ctx->minor
        insn(0xb7, 0, 0, 0, 1), // r0 = 1 (allow)
        insn(0x55, 2, 0, 2, 1), // if r2 != 1 goto exit
        insn(0x55, 3, 0, 1, 5), // if r3 != 5 goto exit
        insn(0xb7, 0, 0, 0, 0), // r0 = 0 (deny /dev/zero)
        insn(0x95, 0, 0, 0, 0), // exit
    ];
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, ...
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&15u32.to_ne_bytes()); // BPF_PROG_TYPE_CGROUP_DEVICE
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: attr is a valid, zero-padded bpf_attr of the size passed.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, 5 /* BPF_PROG_LOAD */, attr.as_ptr(), attr.len())
    };
    assert!(fd >= 0, "load runtime device program: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    let prog_fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(cgroup).unwrap();
    // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog_fd.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&6u32.to_ne_bytes()); // BPF_CGROUP_DEVICE
    attr[12..16].copy_from_slice(&2u32.to_ne_bytes()); // BPF_F_ALLOW_MULTI
    // SAFETY: as above.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, 8 /* BPF_PROG_ATTACH */, attr.as_ptr(), attr.len())
    };
    assert_eq!(r, 0, "attach runtime device program: {}", std::io::Error::last_os_error());
    prog_fd
}

/// warden's hook runs alongside the runtime's device program on the same
/// container: each must allow, so neither can widen the other's rules.
#[test]
fn runtime_device_rules_still_apply() {
    require_root();
    let fs = DevFs::new("gpus-runtime");
    let tree = TestTree::new("gpus-runtime");
    let trainer = tree.mkdir("trainer/ctr");
    let _agent = Agent::start(&tree, &policy(&fs, "enforce"));
    let _prog = attach_runtime_program(&trainer);
    let p = open(&trainer, "read", "/dev/zero");
    assert!(p.eperm(), "the runtime's deny of /dev/zero must hold: {p:?}");
    assert!(open(&trainer, "read", "/dev/null").ok(), "the runtime allows /dev/null and warden does not govern it");
    assert!(open(&trainer, "write", &fs.s("nvidia0")).eperm(), "warden's deny of GPU 0 must hold");
    assert!(open(&trainer, "write", &fs.s("nvidia1")).nodev(), "both allow GPU 1");
}
