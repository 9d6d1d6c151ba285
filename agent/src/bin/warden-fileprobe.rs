//! `warden-fileprobe`: joins a cgroup, then performs one real file
//! operation, to see what a workload in that cgroup experiences (and for
//! the tests).
//!
//! `warden-fileprobe [--cgroup DIR] [--linger-ms N] OP PATH [PATH2]`
//! `warden-fileprobe [--cgroup DIR] flood PATH STOPFILE RATE`: opens PATH
//! for reading until STOPFILE exists (JSON counts; RATE 0 = unlimited)
//! OP: read | write | append | trunc | create | truncate | unlink | rmdir |
//!     mkdir | rename | link | mknod (PATH2 = MAJOR:MINOR, a char device)
//! or an attack of `warden::probe_files` (shadow-read, overlay-lower-read,
//! openat2-race, uring-read, handle-read, …), which print what moved.
//! Exit codes: 0 success, 2 EPERM/EACCES (denied), 4 ENXIO/ENODEV (a
//! device node no driver serves: allowed), 3 any other error.
use std::{fs::OpenOptions, io::Read, os::unix::fs::OpenOptionsExt};

fn main() {
    let (args, linger) = warden::probe::setup(std::env::args().skip(1).collect());
    if args.first().is_some_and(|a| a == "flood") {
        let [_, path, stop, rate] = <[String; 4]>::try_from(args).expect("usage: flood PATH STOPFILE RATE");
        let counts = warden::probe_flood::flood_open(path.as_ref(), stop.as_ref(), rate.parse().expect("rate"));
        println!("{}", serde_json::to_string(&counts).unwrap());
        return;
    }
    let op = args.first().cloned().unwrap_or_default();
    if let Some(result) = warden::probe_files::run(&op, &args[1.min(args.len())..]) {
        warden::probe::finish(result, linger)
    }
    let path = args.get(1).cloned().unwrap_or_default();
    let second = args.get(2).cloned().unwrap_or_default();
    let result: std::io::Result<()> = match op.as_str() {
        "read" => std::fs::File::open(&path).and_then(|mut f| f.read(&mut [0u8; 16]).map(|_| ())),
        "write" => OpenOptions::new().write(true).open(&path).map(|_| ()),
        "append" => OpenOptions::new().append(true).open(&path).map(|_| ()),
        "trunc" => OpenOptions::new().write(true).truncate(true).open(&path).map(|_| ()),
        "create" => OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path).map(|_| ()),
        "truncate" => OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(0)),
        "unlink" => std::fs::remove_file(&path),
        "rmdir" => std::fs::remove_dir(&path),
        "mkdir" => std::fs::create_dir(&path),
        "rename" => std::fs::rename(&path, &second),
        "link" => std::fs::hard_link(&path, &second),
        "mknod" => mknod(&path, &second),
        _ => panic!("unknown op {op}"),
    };
    warden::probe::finish(result, linger)
}

fn mknod(path: &str, dev: &str) -> std::io::Result<()> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad MAJOR:MINOR `{dev}`"));
    let (major, minor) = dev.split_once(':').ok_or_else(bad)?;
    let (major, minor): (u32, u32) = (major.parse().map_err(|_| bad())?, minor.parse().map_err(|_| bad())?);
    let c = std::ffi::CString::new(path).map_err(|_| bad())?;
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(major, minor)) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
