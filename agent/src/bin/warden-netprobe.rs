//! `warden-netprobe`: joins a cgroup, then makes one real network call, to
//! see what a workload in that cgroup experiences (and for the tests).
//!
//! `warden-netprobe [--cgroup DIR] [--linger-ms N] tcp|udp-connect|udp-sendto ADDR PORT`
//! Exit codes: 0 success, 2 EPERM/EACCES (denied by a hook), 3 any other error.
use std::{
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn main() {
    let (args, linger) = warden::probe::setup(std::env::args().skip(1).collect());
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
