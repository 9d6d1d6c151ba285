//! Restart safety on real hooks: programs and maps pinned in bpffs keep
//! enforcing while the agent is down (SIGTERM, SIGKILL), a new agent takes
//! them over, and `warden uninstall` removes everything. The hammer test
//! keeps connects going through 100 reloads, a restart and a SIGKILL.
mod harness;
#[path = "net_cases/mod.rs"]
mod net_cases;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use harness::*;
use serde_json::Value;

fn policy(port: u16, extra: &str) -> String {
    format!(
        "version: 1\nagent:\n  events: {{ allowed: each }}\n{}{extra}workloads:\n  - name: trainer\n    selector: {{ cgroup: \"trainer/*\" }}\n  \
         - name: other\n    selector: {{ cgroup: \"other/*\" }}\nallow:\n  - workload: trainer\n    segment: store\n",
        store_segment(port)
    )
}

fn pin_dir(tree: &TestTree) -> std::path::PathBuf {
    warden::hooks::pins::abi_dir(Path::new("/sys/fs/bpf")).join(warden::hooks::pins::instance_name(&tree.rel))
}

#[test]
fn enforcement_survives_sigkill_and_uninstall_removes_it() {
    let tree = TestTree::new("restart");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let port = tcp_listener("127.0.0.2");
    let mut first = Agent::start(&tree, &policy(port, ""));
    let st = first.status();
    assert_eq!(st["pins"]["adopted"], false);
    assert_eq!(st["pins"]["host_bpffs"], true, "pinned on the host's bpffs: {}", st["pins"]);
    let links: Vec<&str> = st["pins"]["links"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    // The packet socket hook (lsm/socket_create) only where BPF-LSM loads.
    let links: Vec<&str> = links.into_iter().filter(|l| *l != "socket_create").collect();
    assert_eq!(links, ["connect4", "connect6", "egress", "sendmsg4", "sendmsg6", "sock_create"]);

    // Everything the first agent numbered is written: its last number.
    assert!(netprobe(&trainer, "tcp", "127.0.0.2", port).ok());
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    first.wait_events(2, |e| e["kind"] == "network");
    let first_events = first.events();
    let first_last = first.status()["events"]["last_seq"].as_u64().unwrap();
    assert_eq!(first_events.iter().filter_map(|e| e["seq"].as_u64()).max(), Some(first_last));
    let first_id = first_events[0]["agent_id"].as_str().unwrap().to_string();

    first.kill9();
    // No agent at all: the kernel still decides from the pinned maps.
    assert!(netprobe(&trainer, "tcp", "127.0.0.2", port).ok(), "allowed flows keep working");
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm(), "denied flows stay denied");
    // A cgroup made while no agent runs has no identity: fail closed.
    let late = tree.mkdir("trainer/late");
    assert!(netprobe(&late, "tcp", "127.0.0.2", port).eperm(), "unidentified while the agent is down");

    let mut second = Agent::start(&tree, &policy(port, ""));
    let st = second.status();
    assert_eq!(st["pins"]["adopted"], true, "the new agent took over the pins");
    // Same policy file: the decisions made while no agent ran are counted
    // under the same workloads (one connect each before and one after the kill).
    assert_eq!(
        (workload(&st, "trainer")["allowed"].as_u64(), workload(&st, "other")["denied"].as_u64()),
        (Some(2), Some(2)),
        "{st}"
    );
    second.eventually("the late cgroup identified", || netprobe(&late, "tcp", "127.0.0.2", port).ok());
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    // The sequence went on from the first agent's last number, under a new
    // agent id, without a gap (SIGKILL included: it lives in a pinned map).
    let ev = second.wait_events(4, |e| e["kind"] == "network");
    let seqs: Vec<u64> = second.events().iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs.first(), Some(&(first_last + 1)), "{seqs:?} after {first_last}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat: {seqs:?}");
    assert!(ev.iter().all(|e| e["agent_id"].as_str().is_some_and(|a| a != first_id)));
    // The late cgroup's connect, decided while no agent ran, was unresolved
    // then: it matches `trainer` now, but not "unmatched" at the time.
    let late_id = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&late).unwrap().ino()
    };
    let window: Vec<&Value> = ev.iter().filter(|e| e["cgroup_id"] == late_id && e["verdict"] == "denied").collect();
    assert_eq!(window.len(), 1, "{ev:?}");
    assert_eq!(
        (window[0]["identity"].as_str(), window[0]["workload"].as_str()),
        (Some("unresolved"), Some("(unresolved)"))
    );

    // A clean stop leaves enforcement in place too (a rolling update).
    let second_last = second.status()["events"]["last_seq"].as_u64().unwrap();
    second.stop();
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm(), "enforced after SIGTERM");
    let third = Agent::start(&tree, &policy(port, ""));
    let ev = third.wait_events(1, |e| e["kind"] == "network");
    assert_eq!(ev[0]["seq"].as_u64(), Some(second_last + 1), "the sequence continues after SIGTERM too");
    let mut second = third;
    second.stop();

    // As README's recipe runs it: in a pod whose /sys is not the host's, the
    // host's bpffs bound elsewhere (`kubectl debug node --profile=sysadmin`
    // puts it under /host).
    let host = TempDir::new("debug-pod-host");
    let host_bpffs = host.0.join("sys-fs-bpf");
    std::fs::create_dir_all(&host_bpffs).unwrap();
    let target = std::ffi::CString::new(host_bpffs.to_str().unwrap()).unwrap();
    let mut uninstall = Command::new(WARDEN);
    uninstall
        .args(["uninstall", "--cgroup-root", &tree.rel, "--bpffs"])
        .arg(&host_bpffs)
        .arg("--socket")
        .arg(&second.socket);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut uninstall, move || {
            let null = std::ptr::null();
            let ok = |r: i32| if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            ok(libc::unshare(libc::CLONE_NEWNS))?;
            ok(libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
            ok(libc::mount(c"/sys/fs/bpf".as_ptr(), target.as_ptr(), null, libc::MS_BIND, std::ptr::null()))?;
            while libc::umount2(c"/sys/fs/bpf".as_ptr(), libc::MNT_DETACH) == 0 {}
            Ok(())
        })
    };
    let out = uninstall.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // connect4/6, sendmsg4/6, the backstop and sock_create (+ the packet
    // socket LSM hook where BPF-LSM loads).
    assert!(text.contains("detached 6 programs") || text.contains("detached 7 programs"), "{text}");
    assert!(!pin_dir(&tree).exists(), "nothing left in bpffs");
    assert!(netprobe(&other, "tcp", "127.0.0.2", port).ok(), "uninstalled: no program decides any more");
}

/// Connect outcomes of a flood that ran for the whole test.
fn counts(v: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap();
    (n("attempts"), n("ok"), n("denied"), n("other"))
}

#[test]
fn hammer_reloads_restart_and_sigkill_never_flip_a_decision() {
    let tree = TestTree::new("hammer");
    let trainer = tree.mkdir("trainer/a");
    let other = tree.mkdir("other/a");
    let prober = tree.mkdir("prober/a");
    let port = tcp_listener("127.0.0.2");
    // Two valid policies that shift every id: an extra segment and workload
    // before the real ones. Neither changes who may reach `store`.
    // `raw-store` (127.0.0.3, every protocol and port) is what the raw and
    // ICMP senders aim at; `prober` may make raw sockets but not reach it.
    let raw_store = "  - name: raw-store\n    network:\n      - cidr: 127.0.0.3/32\n";
    let with_prober = |y: String| {
        y.replace("workloads:\n", "workloads:\n  - name: prober\n    selector: { cgroup: \"prober/*\" }\n")
            + "  - workload: prober\n    sockets: [raw]\n"
    };
    let plain = with_prober(policy(port, raw_store));
    let shifted =
        with_prober(policy(port, &format!("{raw_store}  - name: decoy\n    network:\n      - cidr: 10.99.0.0/16\n")))
            .replace("workloads:\n", "workloads:\n  - name: decoy\n    selector: { cgroup: \"decoy/*\" }\n");
    let mut agent = Agent::start(&tree, &plain);

    // Both floods run through everything below. Paced: every allowed
    // connect leaves a TIME_WAIT socket, and loopback has ~28k ports.
    let secs = 20.0;
    let (t, o) = (trainer.clone(), other.clone());
    let allowed = std::thread::spawn(move || flood(&t, "flood", port, secs, 400));
    let denied = std::thread::spawn(move || flood(&o, "flood", port, secs, 400));
    // Raw and ICMP senders join: a workload granted raw sockets but not the
    // segment, and one with no grant at all sending ping datagrams. Not one
    // packet may reach the segment through it all.
    let udp = net_cases::Counted::udp("127.0.0.3");
    let (p, o, up) = (prober.clone(), other.clone(), udp.port.to_string());
    let raw = std::thread::spawn(move || {
        let secs = secs.to_string();
        netprobe_args(&p, &["flood-raw", "127.0.0.3", &up, &secs]).output
    });
    let icmp = std::thread::spawn(move || {
        net_cases::allow_ping_sockets();
        netprobe_args(&o, &["flood-icmp", "127.0.0.3", "0", &secs.to_string()]).output
    });
    let t0 = Instant::now();

    for i in 0..100 {
        std::fs::write(&agent.config, if i % 2 == 0 { &shifted } else { &plain }).unwrap();
        let out = Command::new(WARDEN).args(["reload", "--socket"]).arg(&agent.socket).output().unwrap();
        assert!(out.status.success(), "reload {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let reloads = agent.status()["policy"]["reload"]["attempts"].as_u64().unwrap();
    assert!(reloads >= 100, "{reloads} reloads");
    agent.stop();
    agent = Agent::start(&tree, &plain);
    agent.kill9();
    std::thread::sleep(Duration::from_millis(500));
    agent = Agent::start(&tree, &shifted);
    assert!(t0.elapsed().as_secs_f64() < secs - 2.0, "the floods must outlast the hammering");

    // The counts' line, then the probe's own "ok".
    let first = |s: String| serde_json::from_str::<Value>(s.lines().next().unwrap_or("")).unwrap();
    let (raw, icmp) = (first(raw.join().unwrap()), first(icmp.join().unwrap()));
    assert_eq!(udp.get(), 0, "raw datagrams reached the segment: {raw}");
    assert!(raw["attempts"].as_u64().unwrap() > 1_000 && raw["ok"] == 0, "{raw}");
    assert!(icmp["attempts"].as_u64().unwrap() > 1_000 && icmp["replies"] == 0, "echo replies came back: {icmp}");
    let (a, a_ok, a_denied, a_other) = counts(&allowed.join().unwrap());
    let (d, d_ok, d_denied, d_other) = counts(&denied.join().unwrap());
    assert!(a > 6_000 && d > 6_000, "floods ran: {a} and {d} attempts");
    assert_eq!((a_ok, a_denied, a_other), (a, 0, 0), "every allowed connect succeeded");
    assert_eq!((d_ok, d_denied, d_other), (0, d, 0), "no denied connect got through");
    let st = agent.status();
    assert_eq!(st["pins"]["adopted"], true);
    assert_eq!(st["policy"]["generation"], 1, "a fresh agent starts at generation 1");
}

#[test]
fn a_new_ring_size_keeps_the_pinned_ring_until_uninstall() {
    let tree = TestTree::new("restart-ring");
    let other = tree.mkdir("other/a");
    let port = tcp_listener("127.0.0.2");
    let mut first = Agent::start(&tree, &policy(port, ""));
    first.stop();
    // Twice the default ring: the earlier agent's pinned ring (which its
    // programs may still be writing) is kept at its size.
    let bigger = policy(port, "").replace("agent:\n", "agent:\n  ringBufferBytes: 8388608\n");
    let second = Agent::start(&tree, &bigger);
    assert!(second.log().contains("the pinned event ring keeps its size"), "{}", second.log());
    for _ in 0..3 {
        assert!(netprobe(&other, "tcp", "127.0.0.2", port).eperm());
    }
    let denied = second.wait_events(3, |e| e["verdict"] == "denied" && e["workload"] == "other");
    assert!(denied.iter().all(|e| e["destination"]["port"] == port), "records read intact: {denied:?}");
    assert_eq!(second.status()["events"]["decode_errors"], 0);
}

#[test]
fn pins_on_a_bpffs_of_its_own_claim_no_restart_safety() {
    // A pod that mounted its own bpffs: its pins go with its mount namespace.
    let tree = TestTree::new("podbpffs");
    let port = tcp_listener("127.0.0.2");
    let agent = Agent::start_with(&tree, &policy(port, ""), &[], private_bpffs);
    let st = agent.status();
    assert_eq!(st["pins"]["host_bpffs"], false, "{}", st["pins"]);
    let network = st["enforcement"].as_array().unwrap().iter().find(|e| e["kind"] == "network").unwrap().clone();
    assert!(network["restart"].as_str().unwrap().contains("not the host's"), "{network}");
    // `warden probe` run the same way says the same, in the same words.
    let mut probe = Command::new(WARDEN);
    probe.args(["probe", "--json"]);
    private_bpffs(&mut probe);
    let report: Value = serde_json::from_slice(&probe.output().unwrap().stdout).unwrap();
    let kind = report["segments"].as_array().unwrap().iter().find(|k| k["kind"] == "network").unwrap().clone();
    assert_eq!(kind["restart"], network["restart"], "probe {kind}\nstatus {network}");
}

/// The chart's init container: `warden mount-bpffs` mounts bpffs where the
/// host has none (here: a mount namespace whose /sys/fs/bpf was detached),
/// and leaves an existing one alone.
#[test]
fn mount_bpffs_mounts_a_missing_bpffs_and_keeps_an_existing_one() {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.arg("mount-bpffs");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let null = std::ptr::null();
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Every bpffs stacked there goes (in this namespace only).
            while libc::umount2(c"/sys/fs/bpf".as_ptr(), libc::MNT_DETACH) == 0 {}
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("mounted bpffs at /sys/fs/bpf"), "{text}{out:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden")).arg("mount-bpffs").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("already mounted"), "{text}{out:?}");
}
