//! Network segment enforcement, end to end on real hooks: the real `warden`
//! binary attached to a test-owned cgroup subtree, real client processes in
//! real cgroups, real listeners on loopback.
mod harness;

use harness::*;

/// Policy with one protected TCP segment (127.0.0.2:port) and two workloads.
fn policy(mode: &str, port: u16) -> String {
    format!(
        r#"
version: 1
mode: {mode}
agent:
  events: {{ allowed: each }}
segments:
  - name: store
    network:
      - cidr: 127.0.0.2/32
        ports: [{port}]
        protocol: tcp
workloads:
  - name: trainer
    selector:
      cgroup: "trainer/*"
  - name: other
    selector:
      cgroup: "other/*"
allow:
  - workload: trainer
    segments: [store]
"#
    )
}

#[test]
fn tcp_v4_allowed_denied_and_unidentified() {
    let tree = TestTree::new("tcp4");
    let trainer = tree.mkdir("trainer/job-1");
    let other = tree.mkdir("other/job-1");
    let stranger = tree.mkdir("stranger");
    let port = tcp_listener("127.0.0.2");
    let open_port = tcp_listener("127.0.0.1");
    let agent = Agent::start(&tree, &policy("enforce", port));

    let ok = netprobe(&trainer, "tcp", "127.0.0.2", port);
    assert!(ok.ok(), "allowed workload must connect: {ok:?}");
    let denied = netprobe(&other, "tcp", "127.0.0.2", port);
    assert!(denied.eperm(), "other workload must get EPERM: {denied:?}");
    let unknown = netprobe(&stranger, "tcp", "127.0.0.2", port);
    assert!(unknown.eperm(), "unidentified cgroup must get EPERM (fail closed): {unknown:?}");
    let free = netprobe(&stranger, "tcp", "127.0.0.1", open_port);
    assert!(free.ok(), "non-segment destinations follow defaultAction allow: {free:?}");

    let events = agent.wait_events(3, |e| e["segment"] == "store");
    let by_pid = |pid: u32| {
        events.iter().find(|e| e["tgid"] == pid).unwrap_or_else(|| panic!("no event for pid {pid}: {events:?}"))
    };
    let e = by_pid(ok.pid);
    assert_eq!((str_of(e, "workload"), str_of(e, "verdict")), ("trainer", "allowed"));
    assert_eq!(str_of(e, "identity"), "matched");
    assert_eq!(str_of(e, "operation"), "connect");
    assert_eq!(str_of(e, "protocol"), "tcp");
    assert_eq!(e["destination"]["address"], "127.0.0.2");
    assert_eq!(e["destination"]["port"], port);
    assert_eq!(str_of(e, "comm"), "warden-netprobe");
    assert_eq!(str_of(e, "exe"), NETPROBE, "exe: {e}");
    assert_eq!(str_of(e, "cgroup"), trainer.to_str().unwrap());
    assert_eq!(str_of(e, "node"), "test-node");
    assert!(str_of(e, "rule").starts_with("allow[0]"), "rule: {e}");
    let e = by_pid(denied.pid);
    assert_eq!((str_of(e, "workload"), str_of(e, "verdict")), ("other", "denied"));
    let e = by_pid(unknown.pid);
    assert_eq!((str_of(e, "workload"), str_of(e, "verdict")), ("(unmatched)", "denied"));
    assert!(agent.events().iter().all(|e| e["tgid"] != free.pid), "no event for unprotected flows by default");

    let st = agent.status();
    assert_eq!(workload(&st, "trainer")["allowed"], 1);
    assert_eq!(workload(&st, "trainer")["cgroups"], 1, "trainer/job-1 (the glob does not match `trainer` itself)");
    assert_eq!(workload(&st, "(unidentified)")["cgroups"], 4, "root, trainer, other, stranger");
    assert_eq!(workload(&st, "other")["denied"], 1);
    assert_eq!(workload(&st, "(unidentified)")["denied"], 1);
    assert_eq!(st["events"]["kernel_dropped"], 0);
    assert_eq!(st["events"]["kernel_emitted"], st["events"]["written"]);
    assert_eq!(st["mode"], "enforce");
    let programs: Vec<&str> = st["programs"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["connect4", "connect6", "sendmsg4", "sendmsg6", "cgroup_mkdir", "cgroup_rmdir"] {
        assert!(programs.contains(&p), "{p} not in {programs:?}");
    }
}

#[test]
fn udp_ipv6_and_ipv4_mapped() {
    let tree = TestTree::new("udp6");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let udp4 = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let p4 = udp4.local_addr().unwrap().port();
    let udp6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let p6 = udp6.local_addr().unwrap().port();
    let tcp6 = tcp_listener("::1");
    let yaml = format!(
        r#"
version: 1
segments:
  - name: udp-store
    network:
      - cidr: 127.0.0.2/32
        ports: [{p4}]
        protocol: udp
  - name: v6-store
    network:
      - cidr: "::1/128"
        ports: [{p6}, {tcp6}]
workloads:
  - name: trainer
    selector: {{ cgroup: "trainer/*" }}
  - name: other
    selector: {{ cgroup: "other/*" }}
allow:
  - workload: trainer
    segments: [udp-store, v6-store]
"#
    );
    let agent = Agent::start(&tree, &yaml);
    for mode in ["udp-sendto", "udp-connect"] {
        assert!(netprobe(&trainer, mode, "127.0.0.2", p4).ok(), "{mode} v4 allowed");
        assert!(netprobe(&other, mode, "127.0.0.2", p4).eperm(), "{mode} v4 denied");
        assert!(netprobe(&trainer, mode, "::1", p6).ok(), "{mode} v6 allowed");
        assert!(netprobe(&other, mode, "::1", p6).eperm(), "{mode} v6 denied");
        // IPv4-mapped IPv6 is matched as IPv4.
        assert!(netprobe(&other, mode, "::ffff:127.0.0.2", p4).eperm(), "{mode} mapped denied");
    }
    assert!(netprobe(&trainer, "tcp", "::1", tcp6).ok(), "tcp v6 allowed");
    assert!(netprobe(&other, "tcp", "::1", tcp6).eperm(), "tcp v6 denied");

    let denied = agent.wait_events(7, |e| e["verdict"] == "denied");
    assert!(denied.iter().all(|e| e["workload"] == "other"), "{denied:?}");
    let ops: Vec<(&str, &str)> = denied.iter().map(|e| (str_of(e, "operation"), str_of(e, "protocol"))).collect();
    assert!(
        ops.contains(&("sendmsg", "udp")) && ops.contains(&("connect", "udp")) && ops.contains(&("connect", "tcp"))
    );
    let mapped = denied.iter().filter(|e| e["destination"]["address"] == "127.0.0.2").count();
    assert_eq!(mapped, 4, "v4 and mapped-v4 denies are reported as IPv4");
    // The allowed datagrams really arrived.
    let mut buf = [0u8; 16];
    udp4.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
    assert_eq!(udp4.recv(&mut buf).unwrap(), 6);
    assert_eq!(workload(&agent.status(), "other")["denied"], 7);
}

#[test]
fn audit_mode_lets_flows_through_and_logs() {
    let tree = TestTree::new("audit");
    let other = tree.mkdir("other/x");
    let stranger = tree.mkdir("stranger");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy("audit", port));
    let a = netprobe(&other, "tcp", "127.0.0.2", port);
    let b = netprobe(&stranger, "tcp", "127.0.0.2", port);
    assert!(a.ok() && b.ok(), "audit mode must not block: {a:?} {b:?}");
    let audited = agent.wait_events(2, |e| e["verdict"] == "audited");
    assert!(audited.iter().any(|e| e["tgid"] == a.pid && e["workload"] == "other"));
    assert!(audited.iter().any(|e| e["tgid"] == b.pid && e["identity"] == "unmatched"));
    let st = agent.status();
    assert_eq!(st["mode"], "audit");
    assert_eq!(workload(&st, "other")["audited"], 1);
    assert_eq!(workload(&st, "other")["denied"], 0);
}

#[test]
fn new_cgroups_get_identity_while_running() {
    let tree = TestTree::new("mkdir");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start(&tree, &policy("enforce", port));
    // Created after start: learned from the cgroup_mkdir tracepoint.
    let fresh = tree.mkdir("trainer/late-job");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last;
    loop {
        last = netprobe(&fresh, "tcp", "127.0.0.2", port);
        if last.ok() || std::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(last.ok(), "new trainer cgroup must become identified: {last:?}");
    let st = agent.status();
    assert!(st["identity"]["delay_samples"].as_u64().unwrap() >= 2, "trainer and trainer/late-job: {st}");
    assert!(st["identity"]["delay_p99_us"].as_u64().unwrap() < 1_000_000);
    // Removal is tracked too.
    let before = st["identity"]["cgroups_tracked"].as_u64().unwrap();
    std::fs::remove_dir(&fresh).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while agent.status()["identity"]["cgroups_tracked"].as_u64().unwrap() != before - 1 {
        assert!(std::time::Instant::now() < deadline, "rmdir not tracked");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn multi_attach_keeps_other_programs_working() {
    // Two agents on nested cgroups stand in for "a CNI/runtime program on the
    // same cgroups": both programs run, and a deny from either one wins.
    let outer_tree = TestTree::new("nested");
    let inner_rel = format!("{}/inner", outer_tree.rel);
    let inner_abs = outer_tree.mkdir("inner");
    let client = outer_tree.mkdir("inner/job");
    let p_outer = tcp_listener("127.0.0.2");
    let p_inner = tcp_listener("127.0.0.3");
    let p_free = tcp_listener("127.0.0.1");
    let seg = |addr: &str, port: u16| {
        format!("version: 1\nsegments:\n  - name: s\n    network:\n      - cidr: {addr}/32\n        ports: [{port}]\n")
    };
    let _outer = Agent::start(&outer_tree, &seg("127.0.0.2", p_outer));
    let inner_tree = TestTree { rel: inner_rel, abs: inner_abs };
    let inner = Agent::start(&inner_tree, &seg("127.0.0.3", p_inner));
    assert!(netprobe(&client, "tcp", "127.0.0.2", p_outer).eperm(), "outer agent's program still runs");
    assert!(netprobe(&client, "tcp", "127.0.0.3", p_inner).eperm(), "inner agent's program runs");
    assert!(netprobe(&client, "tcp", "127.0.0.1", p_free).ok(), "both allow unprotected flows");
    assert_eq!(workload(&inner.status(), "(unidentified)")["denied"], 1);
    // The inner tree is owned by the outer one; don't remove it twice.
    drop(inner);
    inner_tree.remove_pins();
    std::mem::forget(inner_tree);
}

/// `agent.events.logUnprotected` (a daemon setting, not policy) reaches the
/// kernel: allowed flows to destinations in no segment become events.
#[test]
fn log_unprotected_reports_flows_outside_segments() {
    let tree = TestTree::new("logunprot");
    let stranger = tree.mkdir("stranger");
    let port = tcp_listener("127.0.0.2");
    let open_port = tcp_listener("127.0.0.1");
    let yaml =
        policy("enforce", port).replace("events: { allowed: each }", "events: { allowed: each, logUnprotected: true }");
    let agent = Agent::start(&tree, &yaml);
    let free = netprobe(&stranger, "tcp", "127.0.0.1", open_port);
    assert!(free.ok(), "defaultAction allow: {free:?}");
    let events = agent.wait_events(1, |e| e["tgid"] == free.pid);
    let e = &events[0];
    assert_eq!(str_of(e, "verdict"), "allowed", "{e}");
    assert_eq!(e["destination"]["port"], open_port, "{e}");
}
