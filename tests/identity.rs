//! Identity from cgroup paths on real hooks: cgroup trees shaped exactly as
//! kubelet makes them (systemd and cgroupfs drivers), as slurmstepd makes
//! them, and systemd units; real processes inside; the events name the pod,
//! container, QoS class, Slurm job or unit.
mod harness;

use harness::*;

const UID: &str = "6b1d3c1e-6a8e-4c63-9f0a-2b7d1e4c5a90";
const CID: &str = "3f1c9a7e5b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

fn policy(port: u16) -> String {
    format!(
        r#"
version: 1
segments:
  - name: store
    network:
      - cidr: 127.0.0.2/32
        ports: [{port}]
workloads:
  - name: pods
    selector:
      cgroup: ["kubepods.slice/**", "kubepods/**"]
  - name: batch
    selector:
      cgroup: "system.slice/slurmstepd.scope/**"
allow:
  - workload: pods
    segment: store
"#
    )
}

#[test]
fn events_carry_what_the_cgroup_path_says() {
    let tree = TestTree::new("ident");
    let uid_ = UID.replace('-', "_");
    let systemd = tree.mkdir(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{CID}.scope"
    ));
    let cgroupfs = tree.mkdir(&format!("kubepods/besteffort/pod{UID}/{CID}"));
    let slurm = tree.mkdir("system.slice/slurmstepd.scope/job_4242/step_0/user/task_0");
    let unit = tree.mkdir("system.slice/nvidia-dcgm.service");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy(port));

    let a = netprobe(&systemd, "tcp", "127.0.0.2", port);
    let b = netprobe(&cgroupfs, "tcp", "127.0.0.2", port);
    let c = netprobe(&slurm, "tcp", "127.0.0.2", port);
    let d = netprobe(&unit, "tcp", "127.0.0.2", port);
    assert!(a.ok() && b.ok(), "pods are allowed: {a:?} {b:?}");
    assert!(c.eperm() && d.eperm(), "the batch job and the unit are not: {c:?} {d:?}");
    let events = agent.wait_events(4, |e| e["segment"] == "store");
    let of = |p: &Probe| events.iter().find(|e| e["tgid"] == p.pid).unwrap_or_else(|| panic!("{events:?}")).clone();

    let e = of(&a);
    assert_eq!((str_of(&e, "k8s.pod.uid"), str_of(&e, "container.id")), (UID, CID), "{e}");
    assert_eq!((str_of(&e, "k8s.pod.qos_class"), str_of(&e, "container.runtime")), ("burstable", "containerd"), "{e}");
    assert_eq!(str_of(&e, "workload"), "pods");
    let e = of(&b);
    assert_eq!((str_of(&e, "k8s.pod.uid"), str_of(&e, "container.id")), (UID, CID), "{e}");
    assert_eq!(str_of(&e, "k8s.pod.qos_class"), "besteffort");
    assert!(e.get("container.runtime").is_none(), "cgroupfs names no runtime: {e}");
    let e = of(&c);
    assert_eq!((e["slurm.job.id"].as_u64(), str_of(&e, "slurm.step")), (Some(4242), "0"), "{e}");
    assert_eq!((str_of(&e, "workload"), str_of(&e, "verdict")), ("batch", "denied"));
    let e = of(&d);
    assert_eq!(str_of(&e, "systemd.unit"), "nvidia-dcgm.service", "{e}");
    assert!(e.get("k8s.pod.uid").is_none() && e.get("slurm.job.id").is_none(), "{e}");
}
