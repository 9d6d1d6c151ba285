//! `warden-netprobe flood|flood-udp`: connect() (or sendto()) in a loop on one TCP socket for a
//! while, as fast as possible or at a given rate, counting outcomes (and
//! `warden-fileprobe flood`: opens, likewise). A
//! connect a hook denies leaves the socket unconnected, so one socket
//! serves every attempt and the loop costs one syscall per decision.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

#[derive(Debug, Default, serde::Serialize)]
pub struct Counts {
    pub attempts: u64,
    pub denied: u64,
    pub ok: u64,
    pub other: u64,
}

/// Runs for `secs` seconds; `rate` (attempts per second, 0 = unlimited).
/// `udp`: sendto() datagrams instead of TCP connects (an allowed flood
/// that needs no listener).
pub fn flood(dest: SocketAddr, secs: f64, rate: u64, udp: bool) -> std::io::Result<Counts> {
    let (family, addr, len) = sockaddr(dest);
    let kind = if udp { libc::SOCK_DGRAM } else { libc::SOCK_STREAM };
    let mut fd = new_socket(family, kind)?;
    let mut c = Counts::default();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    // Time checks every 64 attempts keep the loop syscall-bound.
    while !c.attempts.is_multiple_of(64) || pace(start, c.attempts, rate, || Instant::now() >= end) {
        c.attempts += 1;
        // SAFETY: valid socket and a sockaddr of `len` bytes.
        let r = unsafe {
            if udp {
                libc::sendto(fd, b"w".as_ptr().cast(), 1, 0, (&raw const addr).cast(), len) as i32 - 1
            } else {
                libc::connect(fd, (&raw const addr).cast(), len)
            }
        };
        if r == 0 && udp {
            c.ok += 1;
            continue;
        }
        if r == 0 {
            c.ok += 1;
            // A connected socket can't connect again: start afresh.
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            fd = new_socket(family, kind)?;
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => c.denied += 1,
            _ => c.other += 1,
        }
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    Ok(c)
}

/// Sleeps until attempt `attempts` is due at `rate` per second (0: no
/// pacing); false when `done` says the flood is over.
fn pace(start: Instant, attempts: u64, rate: u64, done: impl Fn() -> bool) -> bool {
    if done() {
        return false;
    }
    if rate > 0 {
        let due = Duration::from_secs_f64(attempts as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    true
}

/// `warden-fileprobe flood`: open(`path`, O_RDONLY) and close in a loop
/// until the file `stop` exists, at `rate` per second (0 = unlimited),
/// counting outcomes. Runs as long as a test needs, then reports.
pub fn flood_open(path: &std::path::Path, stop: &std::path::Path, rate: u64) -> Counts {
    let mut c = Counts::default();
    let start = Instant::now();
    while !c.attempts.is_multiple_of(64) || pace(start, c.attempts, rate, || stop.exists()) {
        c.attempts += 1;
        match std::fs::File::open(path) {
            Ok(_) => c.ok += 1,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => c.denied += 1,
            Err(_) => c.other += 1,
        }
    }
    c
}

fn new_socket(family: i32, kind: i32) -> std::io::Result<i32> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd) }
}

fn sockaddr(dest: SocketAddr) -> (i32, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match dest {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
            (libc::AF_INET, ss, size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
            (libc::AF_INET6, ss, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}
