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
agent:
  events: {{ allowed: each }}
{segments}workloads:
  - name: pods
    selector:
      cgroup: ["kubepods.slice/**", "kubepods/**"]
  - name: batch
    selector:
      cgroup: "system.slice/slurmstepd.scope/**"
allow:
  - workload: pods
    segment: store
"#,
        segments = store_segment(port)
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

/// Waits until the agent tracks `tracked` cgroups and its kernel map holds
/// `entries` identities; returns the status then.
fn settle(agent: &Agent, tracked: u64, entries: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = agent.status();
        let id = &s["identity"];
        if id["cgroups_tracked"].as_u64() == Some(tracked) && id["map_entries"].as_u64() == Some(entries) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "want {tracked} tracked, {entries} in the map: {id}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// 10,000 cgroups (5,000 pods with one container each, cgroupfs layout)
/// created and deleted: the agent's tracker and kernel map return exactly
/// to where they were, and its memory to near its baseline.
#[test]
fn a_churn_of_10000_cgroups_leaves_no_entries_behind() {
    let tree = TestTree::new("churn");
    tree.mkdir("kubepods/burstable");
    let policy = "version: 1\nworkloads:\n  - name: ml\n    selector: {namespace: ml}\n  \
                  - name: pods\n    selector: {cgroup: \"kubepods/burstable/*\"}\n";
    let agent = Agent::start(&tree, policy);
    let pods: Vec<(String, String)> = (0..5000)
        .map(|i| {
            let pod = format!("kubepods/burstable/pod6b1d3c1e-6a8e-4c63-9f0a-{i:012x}");
            (pod.clone(), format!("{pod}/{CID}"))
        })
        .collect();
    let create = |n: usize| pods[..n].iter().for_each(|(_, ctr)| drop(tree.mkdir(ctr)));
    let delete = |n: usize| {
        for (pod, ctr) in &pods[..n] {
            std::fs::remove_dir(tree.abs.join(ctr)).unwrap();
            std::fs::remove_dir(tree.abs.join(pod)).unwrap();
        }
    };
    // Root, kubepods, burstable: tracked, none identified.
    let base = settle(&agent, 3, 0);
    // `ml` needs pod metadata and no API is configured: status says so.
    let k8s = &base["identity"]["kubernetes"];
    assert_eq!(k8s["state"], "off", "{k8s}");
    assert!(str_of(k8s, "last_error").contains("workloads ml select on pod metadata"), "{k8s}");
    // A first small churn brings allocator and maps to their steady state.
    create(500);
    settle(&agent, 3 + 1000, 1000);
    delete(500);
    settle(&agent, 3, 0);
    // Anonymous resident memory (the heap), in KiB: mapped ring buffers
    // count in VmRSS once touched but are fixed-size, not growth.
    let rss_kib = |pid| memory(pid, "RssAnon") / 1024;
    let base_rss = rss_kib(agent.pid());

    let churn = || {
        create(pods.len());
        let full = settle(&agent, 3 + 10_000, 10_000);
        assert_eq!(full["identity"]["cgroups_identified"], 10_000, "{}", full["identity"]);
        let peak = rss_kib(agent.pid());
        delete(pods.len());
        let after = settle(&agent, 3, 0);
        assert_eq!(after["identity"]["cgroups_identified"], base["identity"]["cgroups_identified"]);
        // The agent compacts right after applying a batch of deletions.
        std::thread::sleep(std::time::Duration::from_millis(500));
        (peak, rss_kib(agent.pid()))
    };
    let (peak_rss, end_rss) = churn();
    let grown = peak_rss.saturating_sub(base_rss);
    eprintln!("agent anonymous RSS: baseline {base_rss} KiB, with 10,000 cgroups {peak_rss} KiB, after {end_rss} KiB");
    assert!(grown > 0, "10,000 tracked cgroups must cost something: {base_rss} → {peak_rss} KiB");
    // What stays is heap fragmentation (glibc keeps a page while one live
    // allocation sits in it): measured at 5-15% of the growth, settling
    // after a few churns. A leak keeping a quarter of what a cgroup costs
    // would add a quarter of the growth with every churn.
    let limit = base_rss + (grown / 4).max(2048);
    assert!(
        end_rss <= limit,
        "memory did not return: baseline {base_rss} KiB, peak {peak_rss} KiB, after {end_rss} KiB; held in:{}",
        anon_mappings(agent.pid())
    );
    let (_, again_rss) = churn();
    eprintln!("after a second churn: {again_rss} KiB");
    assert!(
        again_rss <= end_rss + (grown / 4).max(2048),
        "memory ratchets with churn: after one {end_rss} KiB, after two {again_rss} KiB; held in:{}",
        anon_mappings(agent.pid())
    );
}
