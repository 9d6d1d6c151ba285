//! `warden-netprobe`: joins a cgroup, then makes one real network call, to
//! see what a workload in that cgroup experiences (and for the tests).
//!
//! `warden-netprobe [--cgroup DIR] [--linger-ms N] tcp|udp-connect|udp-sendto ADDR PORT`
//! `warden-netprobe [--cgroup DIR] flood|flood-udp ADDR PORT SECONDS RATE` (JSON counts; RATE 0 = unlimited)
//! `warden-netprobe [--cgroup DIR] MODE ARGS...` for the modes of `warden::probe_bypass` (raw, packet,
//! ICMP, unspecified address, sendmmsg, Fast Open, SCTP, handoff).
//! Exit codes: 0 success, 2 EPERM/EACCES (denied by a hook), 3 any other error, 5 no reply or timed out,
//! 6 unsupported by this kernel.
use std::{
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn main() {
    let (args, linger) = warden::probe::setup(std::env::args().skip(1).collect());
    if let Some(udp) = args.first().and_then(|m| (m == "flood" || m == "flood-udp").then_some(m == "flood-udp")) {
        let [_, addr, port, secs, rate] = <[String; 5]>::try_from(args).expect("usage: flood ADDR PORT SECONDS RATE");
        let dest = SocketAddr::new(addr.parse().expect("address"), port.parse().expect("port"));
        let (secs, rate) = (secs.parse().expect("seconds"), rate.parse().expect("rate"));
        let counts = warden::probe_flood::flood(dest, secs, rate, udp);
        println!("{}", serde_json::to_string(&counts.expect("socket")).unwrap());
        return;
    }
    if let Some(result) = warden::probe_bypass::run(&args[0], &args[1..]) {
        warden::probe::finish(result, linger)
    }
    let [mode, addr, port] = <[String; 3]>::try_from(args).expect("usage: MODE ADDR PORT");
    let ip: IpAddr = addr.parse().expect("address");
    let dest = SocketAddr::new(ip, port.parse().expect("port"));
    let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
    let result = match mode.as_str() {
        "tcp" => TcpStream::connect_timeout(&dest, Duration::from_secs(3)).map(|_| ()),
        "udp-connect" => UdpSocket::bind(bind).and_then(|s| {
            s.connect(dest)?;
            s.send(b"warden").map(|_| ())
        }),
        "udp-sendto" => UdpSocket::bind(bind).and_then(|s| s.send_to(b"warden", dest).map(|_| ())),
        m => panic!("unknown mode {m}"),
    };
    warden::probe::finish(result, linger)
}
