//! `warden-netprobe`: joins a cgroup, then makes one real network call, to
//! see what a workload in that cgroup experiences (and for the tests).
//!
//! `warden-netprobe [--cgroup DIR] [--linger-ms N] tcp|udp-connect|udp-sendto ADDR PORT`
//! Exit codes: 0 success, 2 EPERM (denied by a hook), 3 any other error.
use std::{
    io::Write,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut linger = 0u64;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = args.remove(0);
        match flag.as_str() {
            // Writing "0" to cgroup.procs moves the writing process.
            "--cgroup" => std::fs::write(format!("{value}/cgroup.procs"), "0").expect("join cgroup"),
            "--linger-ms" => linger = value.parse().expect("linger"),
            _ => panic!("unknown flag {flag}"),
        }
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
    // Stay alive briefly so the agent can read /proc/<pid>/exe.
    std::thread::sleep(Duration::from_millis(linger));
    match result {
        Ok(()) => {
            println!("ok");
            std::process::exit(0)
        }
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "error: {e}");
            std::process::exit(if e.raw_os_error() == Some(libc_eperm()) { 2 } else { 3 })
        }
    }
}

const fn libc_eperm() -> i32 {
    1
}
