//! One table of network bypass attempts, run on the host and in the QEMU
//! VMs (where BPF-LSM refuses packet sockets) with the same expectations:
//! every socket type and address form, from an allowed workload (must
//! reach the listener), from a workload with no rule (`other`) and from one
//! granted raw and packet sockets but not the segment (`prober`). A denied
//! attempt passes only if the listener received nothing (or no echo reply
//! came back) and a deny was counted for the workload.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The segment (`store`: 127.0.0.2 and ::1, every protocol and port) and
/// who may reach it.
pub const POLICY: &str = r#"
version: 1
segments:
  - name: store
    network:
      - cidr: 127.0.0.2/32
      - cidr: ::1/128
workloads:
  - name: trainer
    selector: {cgroup: "trainer/*"}
  - name: other
    selector: {cgroup: "other/*"}
  - name: prober
    selector: {cgroup: "prober/*"}
allow:
  - workload: trainer
    segment: store
  - workloads: [trainer, prober]
    sockets: [raw, packet]
"#;

/// Cgroups under the agent's root, relative to it.
pub const CGROUPS: [&str; 4] = ["trainer/a", "trainer/b", "other/a", "prober/a"];

/// A listener that counts what reached it: accepted TCP connections or UDP
/// datagrams carrying the probe's payload.
pub struct Counted {
    pub port: u16,
    count: Arc<AtomicU64>,
}

impl Counted {
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn tcp(addr: &str) -> Self {
        let l = std::net::TcpListener::bind((addr, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Self { port, count }
    }

    pub fn udp(addr: &str) -> Self {
        let s = std::net::UdpSocket::bind((addr, 0)).unwrap();
        let port = s.local_addr().unwrap().port();
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok(n) = s.recv(&mut buf) {
                if buf[..n].ends_with(b"warden") {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Self { port, count }
    }
}

/// What the runner provides: the probe, the agent's counters and status.
pub trait Env {
    /// Runs `warden-netprobe` in `cgroup`: (exit code, output).
    fn probe(&self, cgroup: &Path, args: &[&str]) -> (i32, String);
    /// Denies counted for a workload so far (status).
    fn denied(&self, workload: &str) -> u64;
    /// The status row of the network kind.
    fn network(&self) -> serde_json::Value;
}

#[derive(Clone, Copy)]
enum Reach {
    Udp4,
    Udp6,
    Tcp4,
    Tcp6,
    /// An echo reply came back (the probe exits 0 only then).
    Echo,
    /// The socket was created (the probe exits 0 only then).
    Created,
}

struct Listeners {
    udp4: Counted,
    udp6: Counted,
    tcp4: Counted,
    tcp6: Counted,
}

impl Listeners {
    fn of(&self, r: Reach) -> Option<&Counted> {
        match r {
            Reach::Udp4 => Some(&self.udp4),
            Reach::Udp6 => Some(&self.udp6),
            Reach::Tcp4 => Some(&self.tcp4),
            Reach::Tcp6 => Some(&self.tcp6),
            Reach::Echo | Reach::Created => None,
        }
    }
}

/// (name, probe mode, address arguments before the port, reach). The
/// listener's port is appended for listener cases.
const CASES: &[(&str, &str, &[&str], Reach)] = &[
    ("udp sendto v4", "udp-sendto", &["127.0.0.2"], Reach::Udp4),
    ("udp sendto v6", "udp-sendto", &["::1"], Reach::Udp6),
    ("raw udp v4", "raw-udp", &["127.0.0.2"], Reach::Udp4),
    ("raw udp v6", "raw-udp", &["::1"], Reach::Udp6),
    ("raw with our own IPv4 header", "raw-hdrincl", &["127.0.0.2"], Reach::Udp4),
    ("packet socket v4", "packet", &["127.0.0.2"], Reach::Udp4),
    ("packet socket v6", "packet", &["::1"], Reach::Udp6),
    ("icmp datagram v4", "icmp", &["127.0.0.2"], Reach::Echo),
    ("icmp datagram v6", "icmp", &["::1"], Reach::Echo),
    ("raw icmp v4", "raw-icmp", &["127.0.0.2"], Reach::Echo),
    ("raw icmp v6", "raw-icmp", &["::1"], Reach::Echo),
    ("udp to 0.0.0.0", "udp-unspec", &["127.0.0.2", "0.0.0.0"], Reach::Udp4),
    ("udp to ::ffff:0.0.0.0", "udp-unspec", &["127.0.0.2", "::ffff:0.0.0.0"], Reach::Udp4),
    ("udp to ::", "udp-unspec", &["::1", "::"], Reach::Udp6),
    ("tcp to 0.0.0.0", "tcp-unspec", &["127.0.0.2", "0.0.0.0"], Reach::Tcp4),
    ("tcp to ::ffff:0.0.0.0", "tcp-unspec", &["127.0.0.2", "::ffff:0.0.0.0"], Reach::Tcp4),
    ("tcp to ::", "tcp-unspec", &["::1", "::"], Reach::Tcp6),
    ("tcp to 0.0.0.0 with IP options", "tcp-unspec-ipopts", &["127.0.0.2", "0.0.0.0"], Reach::Tcp4),
    ("udp to 0.0.0.0 with IP options", "udp-unspec-ipopts", &["127.0.0.2", "0.0.0.0"], Reach::Udp4),
    ("udp to :: behind a destination options header", "udp-unspec-dstopts", &["::1", "::"], Reach::Udp6),
    ("AF_XDP socket", "xdp-socket", &[], Reach::Created),
    ("sendmmsg v4", "sendmmsg", &["127.0.0.2"], Reach::Udp4),
    ("sendmmsg v6", "sendmmsg", &["::1"], Reach::Udp6),
    ("tcp fast open v4", "tfo", &["127.0.0.2"], Reach::Tcp4),
    ("tcp fast open v6", "tfo", &["::1"], Reach::Tcp6),
    ("io_uring connect v4", "io-uring-connect", &["127.0.0.2"], Reach::Tcp4),
    ("io_uring connect v6", "io-uring-connect", &["::1"], Reach::Tcp6),
    ("sctp v4", "sctp", &["127.0.0.2"], Reach::Tcp4),
];

/// Exit code of `warden-netprobe` for a mode this kernel lacks.
const UNSUPPORTED: i32 = 6;

fn wait_for(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Datagram ICMP sockets need the group in `ping_group_range` (often off
/// by default): root's group is let in.
pub fn allow_ping_sockets() {
    let path = "/proc/sys/net/ipv4/ping_group_range";
    let range = std::fs::read_to_string(path).unwrap_or_default();
    let nums: Vec<u64> = range.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    if !(nums.len() == 2 && nums[0] == 0 && nums[1] >= nums[0]) {
        std::fs::write(path, "0 0").expect("setting ping_group_range");
    }
}

/// Packets a packet socket puts on `lo` are routed as received: IPv4 drops
/// loopback addresses arriving that way unless `route_localnet` is on for
/// `lo`. On while the table runs, so the packet case can reach a listener.
pub struct RouteLocalnet(String);

impl RouteLocalnet {
    const PATH: &str = "/proc/sys/net/ipv4/conf/lo/route_localnet";

    pub fn on() -> Self {
        let was = std::fs::read_to_string(Self::PATH).unwrap_or_else(|_| "0".into());
        std::fs::write(Self::PATH, "1").expect("setting route_localnet on lo");
        Self(was)
    }
}

impl Drop for RouteLocalnet {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, self.0.trim());
    }
}

/// What a run did: each case's outcome line, and the failures.
#[derive(Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    pub failures: Vec<String>,
    pub ran: usize,
}

/// Runs every case under `root` (the agent's cgroup root, holding
/// `CGROUPS`), listeners already bound before the agent started or not.
pub fn run(env: &impl Env, root: &Path) -> Outcome {
    allow_ping_sockets();
    let _localnet = RouteLocalnet::on();
    let cg = |rel: &str| root.join(rel);
    let (trainer, trainer2, other, prober) = (cg(CGROUPS[0]), cg(CGROUPS[1]), cg(CGROUPS[2]), cg(CGROUPS[3]));
    let l = Listeners {
        udp4: Counted::udp("127.0.0.2"),
        udp6: Counted::udp("::1"),
        tcp4: Counted::tcp("127.0.0.2"),
        tcp6: Counted::tcp("::1"),
    };
    let mut out = Outcome::default();
    // Packet sockets are refused by the BPF-LSM hook alone: a kernel
    // without it cannot refuse them, and status must say so.
    let network = env.network();
    let packet_guarded = !network["not_enforced"].to_string().contains("packet sockets");
    let gaps = network["not_enforced"].as_array().map_or(0, Vec::len);
    if (network["state"] == "partial") != (gaps > 0) {
        out.failures.push(format!("network state and its gaps disagree: {network}"));
    }
    for &(name, mode, addrs, reach) in CASES {
        let frames = mode == "packet" || mode == "xdp-socket";
        if frames && !packet_guarded {
            out.lines.push(format!("SKIP {name}: not refused on this kernel, as status says: {}", network["reason"]));
            continue;
        }
        let port = l.of(reach).map(|c| c.port.to_string());
        let mut args: Vec<&str> = vec![mode];
        args.extend_from_slice(addrs);
        if let Some(p) = &port {
            args.push(p);
        }
        // A packet socket passes every IP-level hook: only its creation is
        // guarded, so a workload granted one is not judged (policy check
        // warns about exactly this grant).
        let denied: Vec<(&str, &PathBuf)> =
            if frames { vec![("other", &other)] } else { vec![("other", &other), ("prober", &prober)] };
        match check(env, &l, reach, &args, &trainer, &denied) {
            Ok(true) => {
                out.ran += 1;
                out.lines.push(format!("PASS {name}"));
            }
            Ok(false) => out.lines.push(format!("SKIP {name}: not supported by this kernel")),
            Err(why) => {
                out.lines.push(format!("FAIL {name}: {why}"));
                out.failures.push(format!("{name}: {why}"));
            }
        }
    }
    // A socket keeps no grant from where it was made: made in the allowed
    // workload and used in the denied one (the caller is judged), and made
    // in the denied one and used in the allowed one (the socket is judged).
    for (proto, reach) in [("udp", Reach::Udp4), ("tcp", Reach::Tcp4)] {
        let mode = format!("handoff-{proto}");
        let listener = l.of(reach).unwrap();
        let port = listener.port.to_string();
        let name = format!("{mode}: made in one workload, used in another");
        let s = |p: &PathBuf| p.to_string_lossy().into_owned();
        let before = listener.get();
        let (code, text) = env.probe(&trainer, &[&mode, "127.0.0.2", &port, &s(&trainer2)]);
        let mut why = None;
        if code != 0 || !wait_for(|| listener.get() > before) {
            why = Some(format!("within the allowed workload: exit {code} {text}"));
        }
        for (made, used) in [(&trainer, &other), (&other, &trainer)] {
            let (before, denies) = (listener.get(), env.denied("other"));
            let (code, text) = env.probe(made, &[&mode, "127.0.0.2", &port, &s(used)]);
            std::thread::sleep(Duration::from_millis(300));
            if listener.get() != before {
                why = Some(format!("made in {made:?}, used in {used:?}: reached the segment (exit {code} {text})"));
            } else if !wait_for(|| env.denied("other") > denies) {
                why = Some(format!("made in {made:?}, used in {used:?}: no deny counted"));
            }
        }
        match why {
            None => {
                out.ran += 1;
                out.lines.push(format!("PASS {name}"));
            }
            Some(w) => {
                out.lines.push(format!("FAIL {name}: {w}"));
                out.failures.push(format!("{name}: {w}"));
            }
        }
    }
    out
}

/// Ok(true): passed; Ok(false): this kernel lacks the mode.
fn check(
    env: &impl Env,
    l: &Listeners,
    reach: Reach,
    args: &[&str],
    allowed: &Path,
    denied: &[(&str, &PathBuf)],
) -> Result<bool, String> {
    let count = || l.of(reach).map_or(0, Counted::get);
    let before = count();
    let (code, text) = env.probe(allowed, args);
    if code == UNSUPPORTED {
        return Ok(false);
    }
    if code != 0 {
        return Err(format!("the allowed workload did not get through: exit {code} {}", text.trim()));
    }
    if l.of(reach).is_some() && !wait_for(|| count() > before) {
        return Err("the listener got nothing from the allowed workload".into());
    }
    for (name, cgroup) in denied {
        let (denies, before) = (env.denied(name), count());
        let (code, text) = env.probe(cgroup, args);
        std::thread::sleep(Duration::from_millis(300));
        let moved = match reach {
            Reach::Echo | Reach::Created => code == 0,
            _ => count() != before,
        };
        if moved {
            return Err(format!("bytes reached the segment from {name} (exit {code} {})", text.trim()));
        }
        if !wait_for(|| env.denied(name) > denies) {
            return Err(format!("no deny counted for {name} (exit {code} {})", text.trim()));
        }
    }
    Ok(true)
}
