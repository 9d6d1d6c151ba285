//! `warden-netprobe` modes that try every other way to a destination: raw
//! and packet sockets, ICMP, the unspecified address, sendmmsg, TCP Fast
//! Open, SCTP and sockets made in another cgroup. Each builds its packets
//! by hand where the kernel would not, so a test can check whether the
//! bytes reached a listener, not only whether a syscall failed.
use std::{
    io::{Error, ErrorKind, Result},
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::probe::{Args, Outcome, UsageError};

/// The payload every mode sends; listeners count datagrams carrying it.
pub const PAYLOAD: &[u8] = b"warden";

/// Every mode: its name, the arguments it takes, what it does (`--help`).
pub const MODES: &[(&str, &[&str], &str)] = &[
    ("raw-udp", &["ADDR", "PORT"], "a UDP datagram built by hand on a raw socket"),
    ("raw-hdrincl", &["ADDR", "PORT"], "the same, IPv4 header included (IPPROTO_RAW)"),
    ("packet", &["ADDR", "PORT"], "a whole IP packet on a packet socket (loopback)"),
    ("icmp", &["ADDR"], "an echo request on an ICMP datagram socket"),
    ("raw-icmp", &["ADDR"], "an echo request on a raw socket"),
    ("tcp-unspec", &["LOCAL", "UNSPEC", "PORT"], "bind LOCAL, connect to the unspecified address"),
    ("udp-unspec", &["LOCAL", "UNSPEC", "PORT"], "bind LOCAL, send to the unspecified address"),
    ("tcp-unspec-ipopts", &["LOCAL", "UNSPEC", "PORT"], "tcp-unspec with IP options"),
    ("udp-unspec-ipopts", &["LOCAL", "UNSPEC", "PORT"], "udp-unspec with IP options"),
    ("udp-unspec-dstopts", &["LOCAL", "UNSPEC", "PORT"], "udp-unspec behind an IPv6 destination options header"),
    ("xdp-socket", &[], "create an AF_XDP socket"),
    ("sendmmsg", &["ADDR", "PORT"], "UDP datagrams by sendmmsg()"),
    ("tfo", &["ADDR", "PORT"], "TCP Fast Open: data in the SYN"),
    ("io-uring-connect", &["ADDR", "PORT"], "connect() submitted through io_uring"),
    ("sctp", &["ADDR", "PORT"], "an SCTP connect"),
    ("handoff-tcp", &["ADDR", "PORT", "CGROUP"], "make a TCP socket here, join CGROUP, then connect"),
    ("handoff-udp", &["ADDR", "PORT", "CGROUP"], "make a UDP socket here, join CGROUP, then send"),
    ("flood-raw", &["ADDR", "PORT", "SECONDS"], "raw UDP for SECONDS at 1 kHz (JSON counts)"),
    ("flood-icmp", &["ADDR", "PORT", "SECONDS"], "echo requests for SECONDS at 1 kHz (JSON counts)"),
];

/// Runs one mode (`None`: not one of `MODES`); `Ok` when every syscall
/// succeeded (for ICMP: a reply came).
pub fn run(mode: &str, args: &[String]) -> Option<Outcome> {
    let (_, names, _) = MODES.iter().find(|(m, ..)| *m == mode)?;
    Some(Args::new(mode, names, args).and_then(|a| dispatch(mode, &a)))
}

fn dispatch(mode: &str, a: &Args) -> Outcome {
    Ok(match mode {
        "raw-udp" => raw_udp(a.get(0)?, a.get(1)?),
        "raw-hdrincl" => raw_hdrincl(a.get(0)?, a.get(1)?),
        "packet" => packet(a.get(0)?, a.get(1)?),
        "icmp" => ping(a.get(0)?, false),
        "raw-icmp" => ping(a.get(0)?, true),
        "tcp-unspec" => unspecified(a.get(0)?, a.get(1)?, a.get(2)?, libc::SOCK_STREAM, Extra::None),
        "udp-unspec" => unspecified(a.get(0)?, a.get(1)?, a.get(2)?, libc::SOCK_DGRAM, Extra::None),
        "tcp-unspec-ipopts" => unspecified(a.get(0)?, a.get(1)?, a.get(2)?, libc::SOCK_STREAM, Extra::IpOptions),
        "udp-unspec-ipopts" => unspecified(a.get(0)?, a.get(1)?, a.get(2)?, libc::SOCK_DGRAM, Extra::IpOptions),
        "udp-unspec-dstopts" => unspecified(a.get(0)?, a.get(1)?, a.get(2)?, libc::SOCK_DGRAM, Extra::DestOptions),
        "xdp-socket" => socket(libc::AF_XDP, libc::SOCK_RAW, 0).map(drop),
        "sendmmsg" => sendmmsg(a.get(0)?, a.get(1)?),
        "tfo" => fast_open(a.get(0)?, a.get(1)?),
        "io-uring-connect" => uring_connect(a.get(0)?, a.get(1)?),
        "sctp" => sctp(a.get(0)?, a.get(1)?),
        "handoff-tcp" => handoff(a.get(0)?, a.get(1)?, a.str(2), libc::SOCK_STREAM),
        "handoff-udp" => handoff(a.get(0)?, a.get(1)?, a.str(2), libc::SOCK_DGRAM),
        "flood-raw" | "flood-icmp" => {
            let counts = raw_flood(a.get(0)?, a.get(1)?, a.get(2)?, mode == "flood-icmp");
            println!("{}", serde_json::to_string(&counts.as_ref().ok()).unwrap_or_default());
            counts.map(|_| ())
        }
        _ => return Err(UsageError(format!("unknown mode `{mode}`"))),
    })
}

fn check(ret: libc::c_int) -> Result<libc::c_int> {
    if ret < 0 { Err(Error::last_os_error()) } else { Ok(ret) }
}

fn socket(family: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned from here on.
    let fd = check(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn family(ip: IpAddr) -> libc::c_int {
    if ip.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 }
}

/// A socket address in the kernel's layout (sockaddr_in or sockaddr_in6).
struct Sockaddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Sockaddr {
    fn new(addr: SocketAddr) -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is larger and suitably aligned for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                size_of::<libc::sockaddr_in6>()
            }
        };
        Self { storage, len: len as libc::socklen_t }
    }

    fn ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

fn sendto(fd: &OwnedFd, buf: &[u8], flags: libc::c_int, to: &Sockaddr) -> Result<()> {
    // SAFETY: valid buffer and address for the call's duration.
    check(unsafe { libc::sendto(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags, to.ptr(), to.len) } as i32)
        .map(|_| ())
}

fn connect(fd: &OwnedFd, to: &Sockaddr) -> Result<()> {
    // SAFETY: valid address for the call's duration.
    check(unsafe { libc::connect(fd.as_raw_fd(), to.ptr(), to.len) }).map(|_| ())
}

/// A stream socket whose connect gives up after a second (a dropped
/// SYN is retransmitted for minutes otherwise).
fn stream_socket(family: libc::c_int, proto: libc::c_int) -> Result<OwnedFd> {
    let fd = socket(family, libc::SOCK_STREAM, proto)?;
    one_second(&fd, libc::SO_SNDTIMEO)?;
    Ok(fd)
}

/// Sets a one-second `SO_SNDTIMEO` or `SO_RCVTIMEO`.
fn one_second(fd: &OwnedFd, option: libc::c_int) -> Result<()> {
    let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: a timeval option, by pointer and size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    })
    .map(|_| ())
}

fn bind(fd: &OwnedFd, at: &Sockaddr) -> Result<()> {
    // SAFETY: valid address for the call's duration.
    check(unsafe { libc::bind(fd.as_raw_fd(), at.ptr(), at.len) }).map(|_| ())
}

fn setsockopt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> Result<()> {
    // SAFETY: an int option, passed by pointer and size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    check(ret).map(|_| ())
}

/// One's-complement sum, folded (RFC 1071).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP header and payload with its checksum over the pseudo-header.
fn udp_datagram(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let len = (8 + PAYLOAD.len()) as u16;
    let mut d = Vec::with_capacity(len as usize);
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(PAYLOAD);
    let pseudo: Vec<u8> = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            [&s.octets()[..], &t.octets(), &[0, libc::IPPROTO_UDP as u8], &len.to_be_bytes()].concat()
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            [&s.octets()[..], &t.octets(), &u32::from(len).to_be_bytes(), &[0, 0, 0, libc::IPPROTO_UDP as u8]].concat()
        }
        _ => panic!("mixed families"),
    };
    let sum = match checksum(&[&pseudo, &d]) {
        0 => 0xffff,
        s => s,
    };
    d[6..8].copy_from_slice(&sum.to_be_bytes());
    d
}

/// An IPv4 or IPv6 header around `payload` (protocol UDP).
fn ip_packet(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            let total = (20 + payload.len()) as u16;
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&t.octets());
            let sum = checksum(&[&h]);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            [h, payload.to_vec()].concat()
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            h.extend_from_slice(&[libc::IPPROTO_UDP as u8, 64]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&t.octets());
            [h, payload.to_vec()].concat()
        }
        _ => panic!("mixed families"),
    }
}

fn loopback_of(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V6(Ipv6Addr::LOCALHOST) }
}

/// A raw socket of protocol UDP: the kernel adds the IP header, the UDP
/// header is ours (IPv6 needs the kernel to fill its checksum).
fn raw_udp(dst: IpAddr, dport: u16) -> Result<()> {
    let fd = socket(family(dst), libc::SOCK_RAW, libc::IPPROTO_UDP)?;
    if dst.is_ipv6() {
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, 6)?;
    }
    let mut d = udp_datagram(loopback_of(dst), dst, 40000, dport);
    d[6..8].copy_from_slice(&[0, 0]);
    sendto(&fd, &d, 0, &Sockaddr::new(SocketAddr::new(dst, 0)))
}

/// IPv4 raw with our own IP header (IPPROTO_RAW implies IP_HDRINCL).
fn raw_hdrincl(dst: IpAddr, dport: u16) -> Result<()> {
    let fd = socket(family(dst), libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let src = if dst.is_ipv4() { dst } else { loopback_of(dst) };
    let pkt = ip_packet(src, dst, &udp_datagram(src, dst, 40001, dport));
    sendto(&fd, &pkt, 0, &Sockaddr::new(SocketAddr::new(dst, 0)))
}

/// A packet socket on the loopback device: a whole IP packet handed to the
/// driver, past the IP layer's output path.
fn packet(dst: IpAddr, dport: u16) -> Result<()> {
    let (ethertype, src) = match dst {
        IpAddr::V4(_) => (libc::ETH_P_IP as u16, dst),
        IpAddr::V6(_) => (libc::ETH_P_IPV6 as u16, dst),
    };
    let fd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(ethertype.to_be()))?;
    let pkt = ip_packet(src, dst, &udp_datagram(src, dst, 40002, dport));
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ethertype.to_be();
    // SAFETY: a NUL-terminated name.
    ll.sll_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    ll.sll_halen = 6;
    // SAFETY: valid buffer and sockaddr_ll for the call's duration.
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&ll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    check(ret as i32).map(|_| ())
}

/// An echo request (ICMP datagram socket, or raw with `raw`); `Ok` only if
/// the echo reply came back within a second.
fn ping(dst: IpAddr, raw: bool) -> Result<()> {
    let (proto, request, reply) = match dst {
        IpAddr::V4(_) => (libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::IPPROTO_ICMPV6, 128, 129),
    };
    let fd = socket(family(dst), if raw { libc::SOCK_RAW } else { libc::SOCK_DGRAM }, proto)?;
    let id = (std::process::id() & 0xffff) as u16;
    let mut msg = vec![request, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(PAYLOAD);
    if dst.is_ipv4() {
        let sum = checksum(&[&msg]);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    sendto(&fd, &msg, 0, &Sockaddr::new(SocketAddr::new(dst, 0)))?;
    one_second(&fd, libc::SO_RCVTIMEO)?;
    let mut buf = [0u8; 1500];
    loop {
        // SAFETY: valid buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EAGAIN) => Error::new(ErrorKind::TimedOut, "no echo reply"),
                _ => e,
            });
        }
        // Raw IPv4 sockets receive the IP header too.
        let at = if raw && dst.is_ipv4() { usize::from(buf[0] & 0xf) * 4 } else { 0 };
        let m = &buf[at..n as usize];
        // Datagram sockets rewrite the id to their port: match the payload.
        if m.len() >= 8 && m[0] == reply && m.ends_with(PAYLOAD) {
            return Ok(());
        }
    }
}

/// Headers that push the transport header away from where a parser
/// expects it.
enum Extra {
    None,
    /// IPv4 options (four NOPs): no privilege needed.
    IpOptions,
    /// An IPv6 destination options header (PadN).
    DestOptions,
}

/// bind() to `local`, then connect (TCP) or send (UDP) to the unspecified
/// address `unspec`: the kernel delivers it to a local address.
fn unspecified(local: IpAddr, unspec: IpAddr, port: u16, ty: libc::c_int, extra: Extra) -> Result<()> {
    let fd = if ty == libc::SOCK_STREAM { stream_socket(family(unspec), 0)? } else { socket(family(unspec), ty, 0)? };
    let (level, name, value): (libc::c_int, libc::c_int, &[u8]) = match extra {
        Extra::None => (0, 0, &[]),
        Extra::IpOptions => (libc::IPPROTO_IP, libc::IP_OPTIONS, &[1, 1, 1, 1]),
        // Next header (filled by the kernel), length 0, PadN of 4 bytes.
        Extra::DestOptions => (libc::IPPROTO_IPV6, libc::IPV6_DSTOPTS, &[0, 0, 1, 4, 0, 0, 0, 0]),
    };
    if !value.is_empty() {
        // SAFETY: a byte buffer option, by pointer and size.
        check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), value.len() as u32) })?;
    }
    let local = match (local, unspec) {
        (IpAddr::V4(l), IpAddr::V6(_)) => IpAddr::V6(l.to_ipv6_mapped()),
        _ => local,
    };
    bind(&fd, &Sockaddr::new(SocketAddr::new(local, 0)))?;
    let to = Sockaddr::new(SocketAddr::new(unspec, port));
    if ty == libc::SOCK_STREAM { connect(&fd, &to) } else { sendto(&fd, PAYLOAD, 0, &to) }
}

fn sendmmsg(dst: IpAddr, port: u16) -> Result<()> {
    let fd = socket(family(dst), libc::SOCK_DGRAM, 0)?;
    let to = Sockaddr::new(SocketAddr::new(dst, port));
    let mut iov = libc::iovec { iov_base: PAYLOAD.as_ptr() as *mut _, iov_len: PAYLOAD.len() };
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for m in &mut msgs {
        m.msg_hdr.msg_name = to.ptr() as *mut _;
        m.msg_hdr.msg_namelen = to.len;
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the headers point at live buffers.
    let sent = check(unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) })?;
    if sent == 2 { Ok(()) } else { Err(Error::other(format!("sendmmsg sent {sent} of 2"))) }
}

/// TCP Fast Open: the SYN carries data, sent by sendto() without connect()
/// (a blocking socket returns once connected and the data is queued).
fn fast_open(dst: IpAddr, port: u16) -> Result<()> {
    let fd = stream_socket(family(dst), 0)?;
    sendto(&fd, PAYLOAD, libc::MSG_FASTOPEN, &Sockaddr::new(SocketAddr::new(dst, port)))
}

/// connect() submitted through io_uring: the kernel makes the call from
/// its own context, with the submitter's credentials and cgroup.
fn uring_connect(dst: IpAddr, port: u16) -> Result<()> {
    let fd = stream_socket(family(dst), 0)?;
    let to = Sockaddr::new(SocketAddr::new(dst, port));
    let mut ring = io_uring::IoUring::new(2).map_err(|e| match e.raw_os_error() {
        // Disabled by `kernel.io_uring_disabled` or a seccomp filter.
        Some(libc::ENOSYS) | Some(libc::EPERM) => Error::from_raw_os_error(libc::EPROTONOSUPPORT),
        _ => e,
    })?;
    let sqe = io_uring::opcode::Connect::new(io_uring::types::Fd(fd.as_raw_fd()), to.ptr(), to.len).build();
    // SAFETY: the address and fd outlive the completion waited for below.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().ok_or_else(|| Error::other("no completion"))?;
    check(cqe.result()).map(|_| ())
}

fn sctp(dst: IpAddr, port: u16) -> Result<()> {
    let fd = stream_socket(family(dst), libc::IPPROTO_SCTP)?;
    connect(&fd, &Sockaddr::new(SocketAddr::new(dst, port)))?;
    sendto(&fd, PAYLOAD, 0, &Sockaddr::new(SocketAddr::new(dst, port)))
}

/// Makes the socket here (the cgroup joined by `--cgroup`), moves to
/// `then_join`, and only then connects or sends.
fn handoff(dst: IpAddr, port: u16, then_join: &str, ty: libc::c_int) -> Result<()> {
    let fd = if ty == libc::SOCK_STREAM { stream_socket(family(dst), 0)? } else { socket(family(dst), ty, 0)? };
    std::fs::write(format!("{then_join}/cgroup.procs"), "0")?;
    let to = Sockaddr::new(SocketAddr::new(dst, port));
    if ty == libc::SOCK_STREAM {
        connect(&fd, &to)?;
        // SAFETY: valid buffer.
        check(unsafe { libc::send(fd.as_raw_fd(), PAYLOAD.as_ptr().cast(), PAYLOAD.len(), 0) } as i32).map(|_| ())
    } else {
        sendto(&fd, PAYLOAD, 0, &to)
    }
}

/// Counts of a raw or ICMP flood: sends the kernel accepted or refused,
/// and echo replies that came back (ICMP).
#[derive(Debug, Default, serde::Serialize)]
pub struct RawCounts {
    pub attempts: u64,
    pub ok: u64,
    pub denied: u64,
    pub other: u64,
    pub replies: u64,
}

/// Hand-built UDP datagrams on one raw socket (or echo requests on one
/// ICMP datagram socket, `icmp`) to `dst` for `secs`, paced at 1 kHz.
pub fn raw_flood(dst: IpAddr, port: u16, secs: f64, icmp: bool) -> Result<RawCounts> {
    let fd = if icmp {
        let proto = if dst.is_ipv4() { libc::IPPROTO_ICMP } else { libc::IPPROTO_ICMPV6 };
        socket(family(dst), libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, proto)?
    } else {
        socket(family(dst), libc::SOCK_RAW, libc::IPPROTO_UDP)?
    };
    if !icmp && dst.is_ipv6() {
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, 6)?;
    }
    let msg = if icmp {
        let mut m = vec![if dst.is_ipv4() { 8u8 } else { 128 }, 0, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(PAYLOAD);
        if dst.is_ipv4() {
            let sum = checksum(&[&m]);
            m[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        m
    } else {
        let mut d = udp_datagram(loopback_of(dst), dst, 40003, port);
        d[6..8].copy_from_slice(&[0, 0]);
        d
    };
    let to = Sockaddr::new(SocketAddr::new(dst, 0));
    let mut c = RawCounts::default();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1500];
    let mut read_replies = |c: &mut RawCounts| {
        // SAFETY: valid buffer; the socket is non-blocking.
        while unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) } > 0 {
            c.replies += 1;
        }
    };
    while start.elapsed().as_secs_f64() < secs {
        c.attempts += 1;
        match sendto(&fd, &msg, 0, &to) {
            Ok(()) => c.ok += 1,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => c.denied += 1,
            Err(_) => c.other += 1,
        }
        if icmp {
            read_replies(&mut c);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if icmp {
        std::thread::sleep(std::time::Duration::from_millis(200));
        read_replies(&mut c);
    }
    Ok(c)
}
