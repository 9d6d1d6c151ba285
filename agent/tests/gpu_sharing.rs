//! `gpus: assigned` with shared GPUs, on real hooks and the agent binary:
//! time-sliced replicas (`GPU-…::n`, `nvidia.com/gpu.shared`) reach their
//! GPU only; MIG devices (mixed and single strategy, both id forms) reach
//! their parent GPU and exactly their two capability nodes; ids the node
//! cannot map are refused with a status line and one event. Fixture driver
//! files and device nodes (`gpu_node`), fake kubelet and CRI servers.
mod gpu_node;
mod harness;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use gpu_node::{GpuNode, cap_minor, id_of, uuid};
use harness::*;

fn policy(node: &GpuNode, extra_workloads: &str, extra_rules: &str) -> String {
    format!(
        "version: 1\nagent:\n{}  events: {{ allowed: each }}\nsegments:\n  - name: gpus\n    devices: {{ gpus: all }}\n\
         workloads:\n  - name: pods\n    selector: {{ cgroup: \"pods/*\" }}\n{extra_workloads}\
         allow:\n  - workload: pods\n    segment: gpus\n    gpus: assigned\n{extra_rules}",
        node.agent_devices()
    )
}

fn container(tree: &TestTree, name: &str) -> std::path::PathBuf {
    tree.mkdir(&format!("pods/cri-containerd-{}.scope", id_of(name)))
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cap(minor: u32) -> String {
    format!("dev/nvidia-caps/nvidia-cap{minor}")
}

#[test]
fn time_sliced_replicas_reach_their_gpu_only() {
    require_root();
    let node = GpuNode::new("timeslice", 4);
    let (g1, g2) = (uuid(1), uuid(2));
    let (r0, r3, r1) = (format!("{g1}::0"), format!("{g1}::3"), format!("{g1}::1"));
    node.assign(&[
        // renameByDefault: the replicas are `nvidia.com/gpu.shared`.
        ("shared", "nvidia.com/gpu.shared", &[&r0, &r3]),
        // Without it they keep the plain name; a second tenant of GPU 1.
        ("plain", "nvidia.com/gpu", &[&r1]),
        // Not a GPU resource: ignored, whatever its ids look like.
        ("other", "example.com/fpga", &[&g2]),
    ]);
    let tree = TestTree::new("timeslice");
    let agent = Agent::start(&tree, &policy(&node, "", ""));
    let (shared, plain, other) = (container(&tree, "shared"), container(&tree, "plain"), container(&tree, "other"));
    wait_until("the replicas' GPU to open", || node.reaches(&shared, "dev/nvidia1"));
    assert!(node.reaches(&plain, "dev/nvidia1"), "two tenants share GPU 1");
    for gpu in [0, 2, 3] {
        assert!(!node.reaches(&shared, &format!("dev/nvidia{gpu}")), "GPU {gpu} is not shared with `shared`");
        assert!(!node.reaches(&plain, &format!("dev/nvidia{gpu}")));
    }
    assert!(!node.reaches(&other, "dev/nvidia2"), "only GPU resources grant GPUs");
    assert!(node.reaches(&shared, "dev/nvidiactl"), "the control nodes come with the segment");
    let st = agent.status();
    assert_eq!(st["gpu_assignment"]["containers"], 2, "{st}");
    assert!(st["gpu_assignment"]["problems"].is_null(), "replicas are no problem: {st}");
}

#[test]
fn mig_devices_reach_exactly_their_capabilities() {
    require_root();
    let node = GpuNode::new("mig", 2);
    node.mig_enabled(2);
    let legacy = node.mig_instance(0, 1, 0); // 12, 13
    let modern = node.mig_instance(0, 2, 0); // 21, 22
    let single = node.mig_instance(1, 7, 0); // GPU 1's
    let mig_modern = "MIG-8e9b8a84-52a2-5a3e-9d4b-3c1c7f2e6d10";
    let mig_unknown = "MIG-00000000-dead-beef-0000-000000000000";
    node.cdi_spec(&[(mig_modern, 0, modern.0, modern.1)]);
    let legacy_id = format!("MIG-{}/1/0", uuid(0));
    let single_id = format!("MIG-{}/7/0::2", uuid(1));
    node.assign(&[
        // Mixed strategy: a profile resource; pre-R470 id form.
        ("legacy", "nvidia.com/mig-1g.10gb", &[&legacy_id]),
        // Modern MIG UUID, mapped through the plugin's CDI spec.
        ("modern", "nvidia.com/mig-1g.10gb", &[mig_modern]),
        // Single strategy: `nvidia.com/gpu` carries MIG ids (here a time-sliced one).
        ("single", "nvidia.com/gpu", &[&single_id]),
        // No CDI spec names it, and a MIG device by index: refused.
        ("unknown", "nvidia.com/mig-1g.10gb", &[mig_unknown, "0:1"]),
    ]);
    let tree = TestTree::new("mig");
    let workloads = "  - name: dcgm\n    selector: { cgroup: \"dcgm/*\" }\n  - name: listed\n    selector: { cgroup: \"listed/*\" }\n";
    let rules = "  - workload: dcgm\n    segment: gpus\n  - workload: listed\n    segment: gpus\n    gpus: [0]\n";
    let agent = Agent::start(&tree, &policy(&node, workloads, rules));
    let c = |name: &str| container(&tree, name);
    let (l, m, s, u) = (c("legacy"), c("modern"), c("single"), c("unknown"));
    // An instance not created yet is protected too.
    let absent = cap_minor(0, 3, None);
    node.cap_node(absent);
    let all_caps = [1, 2, legacy.0, legacy.1, modern.0, modern.1, single.0, single.1, absent];
    let check = |cg: &Path, gpus: &[u32], caps: &[u32], who: &str| {
        for gpu in 0..2 {
            let want = gpus.contains(&gpu);
            assert_eq!(node.reaches(cg, &format!("dev/nvidia{gpu}")), want, "{who}: GPU {gpu}");
        }
        for minor in all_caps {
            assert_eq!(node.reaches(cg, &cap(minor)), caps.contains(&minor), "{who}: nvidia-cap{minor}");
        }
    };
    wait_until("the legacy MIG device to open", || node.reaches(&l, &cap(legacy.1)));
    check(&l, &[0], &[legacy.0, legacy.1], "legacy");
    check(&m, &[0], &[modern.0, modern.1], "modern");
    check(&s, &[1], &[single.0, single.1], "single");
    check(&u, &[], &[], "unknown");
    // A rule with every GPU of the segment reaches every existing instance,
    // config and monitor (DCGM's); one listing GPU 0 reaches the whole GPU only.
    check(&tree.mkdir("dcgm/x"), &[0, 1], &all_caps[..8], "dcgm");
    check(&tree.mkdir("listed/x"), &[0], &[], "listed");
    check(&tree.mkdir("nobody"), &[], &[], "unidentified");

    // Refusals: a status line each, one event each (not one per refresh).
    let problems = agent.status()["gpu_assignment"]["problems"].to_string();
    assert!(
        problems
            .contains(&format!("ml/unknown-pod/unknown: nvidia.com/mig-1g.10gb `{mig_unknown}` refused: no mapping")),
        "{problems}"
    );
    assert!(problems.contains("`0:1` refused: MIG device 0:1 is named by NVML's enumeration order"), "{problems}");
    let refused = agent.wait_events(2, |e| e["kind"] == "gpu_assignment");
    std::thread::sleep(Duration::from_millis(600)); // three more refreshes
    let refused_now: Vec<_> = agent.events().into_iter().filter(|e| e["kind"] == "gpu_assignment").collect();
    assert_eq!(refused_now.len(), 2, "announced once: {refused_now:?}");
    let e = refused.iter().find(|e| e["device_id"] == mig_unknown).unwrap();
    assert_eq!((str_of(e, "result"), str_of(e, "k8s.container.name")), ("refused", "unknown"), "{e}");
    assert!(str_of(e, "reason").contains("no CDI spec names it"), "{e}");

    // mig-manager makes a new instance; kubelet gives it to `unknown`: the
    // agent follows the driver and the container gets it.
    let fresh = node.mig_instance(1, 9, 0);
    let fresh_id = format!("MIG-{}/9/0", uuid(1));
    node.assign(&[
        ("legacy", "nvidia.com/mig-1g.10gb", &[&legacy_id]),
        ("unknown", "nvidia.com/mig-1g.10gb", &[&fresh_id]),
    ]);
    wait_until("the new instance to open", || node.reaches(&u, &cap(fresh.1)));
    assert!(node.reaches(&u, &cap(fresh.0)) && node.reaches(&u, "dev/nvidia1"));
    assert!(!node.reaches(&l, &cap(fresh.0)), "another container's new instance stays closed");
    assert!(!node.reaches(&m, &cap(modern.0)), "a revoked MIG device is closed again");
    let st = agent.status();
    assert!(st["gpu_assignment"]["problems"].is_null(), "refusals clear with their cause: {st}");
}
