//! `warden-netprobe`: joins a cgroup, then makes one real network call, to
//! see what a workload in that cgroup experiences (and for the tests).
//!
//! `warden-netprobe [--cgroup DIR] [--linger-ms N] tcp|udp-connect|udp-sendto ADDR PORT`
//! `warden-netprobe [--cgroup DIR] flood|flood-udp ADDR PORT SECONDS RATE` (JSON counts; RATE 0 = unlimited)
//! `warden-netprobe [--cgroup DIR] MODE ARGS...` for the modes of `warden::probe_bypass` (raw, packet,
//! ICMP, unspecified address, sendmmsg, Fast Open, SCTP, handoff).
//! Exit codes: 0 success, 2 EPERM/EACCES (denied by a hook), 3 any other error, 5 no reply or timed out,
//! 6 unsupported by this kernel, 64 a command line it cannot run.
use std::{
    io::Result,
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use warden::probe::{Args, Outcome, UsageError};
use warden::probe_bypass::MODES;

const ABOUT: &str = "\
warden-netprobe: joins a cgroup, then makes one real network call, to see what a
workload in that cgroup experiences.

Usage: warden-netprobe [OPTIONS] MODE ARGS...

Modes:
";

/// The modes made here; `warden::probe_bypass::MODES` has the others.
const CALLS: &[(&str, &[&str], &str)] = &[
    ("tcp", &["ADDR", "PORT"], "connect (3 s timeout)"),
    ("udp-connect", &["ADDR", "PORT"], "connect a UDP socket, then send"),
    ("udp-sendto", &["ADDR", "PORT"], "send on an unconnected UDP socket"),
    ("flood", &["ADDR", "PORT", "SECONDS", "RATE"], "TCP connects for SECONDS (JSON counts; RATE 0: no limit)"),
    ("flood-udp", &["ADDR", "PORT", "SECONDS", "RATE"], "the same with UDP datagrams"),
];

fn main() {
    warden::probe::main(&usage(), run)
}

fn usage() -> String {
    let mut text = ABOUT.to_string();
    for (mode, args, what) in CALLS.iter().chain(MODES) {
        let call = format!("{mode} {}", args.join(" "));
        text += &format!("  {call:<36} {what}\n");
    }
    text
}

fn run(argv: &[String]) -> Outcome {
    let Some((mode, rest)) = argv.split_first() else { return Err(UsageError("missing MODE".into())) };
    let mode = mode.as_str();
    if let Some((_, names, _)) = CALLS.iter().find(|(m, ..)| *m == mode) {
        let a = Args::new(mode, names, rest)?;
        let dest = SocketAddr::new(a.get(0)?, a.get(1)?);
        if mode.starts_with("flood") {
            return match warden::probe_flood::flood(dest, a.get(2)?, a.get(3)?, mode == "flood-udp") {
                Ok(counts) => warden::probe::print_json(&counts),
                Err(e) => Ok(Err(e)),
            };
        }
        return Ok(call(mode, dest));
    }
    warden::probe_bypass::run(mode, rest).unwrap_or_else(|| Err(UsageError(format!("unknown mode `{mode}`"))))
}

fn call(mode: &str, dest: SocketAddr) -> Result<()> {
    let bind: SocketAddr = if dest.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    match mode {
        "tcp" => TcpStream::connect_timeout(&dest, Duration::from_secs(3)).map(|_| ()),
        "udp-connect" => UdpSocket::bind(bind).and_then(|s| {
            s.connect(dest)?;
            s.send(b"warden").map(|_| ())
        }),
        _ => UdpSocket::bind(bind).and_then(|s| s.send_to(b"warden", dest).map(|_| ())),
    }
}
