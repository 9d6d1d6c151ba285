//! `warden-fileprobe` attacks: what a workload would try to get around a
//! file segment (other namespaces, overlays, links, renames, handles,
//! racing flags, io_uring). Each prints what moved: `read:<bytes>` when
//! protected bytes were read, `wrote` when a write went through, so a
//! test can tell "denied" from "the syscall failed after the bytes moved".
use std::{
    ffi::CString,
    io::{Error, Read, Result, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Every attack and its arguments (`--help`); a missing one is empty.
pub const ATTACKS: &[(&str, &str)] = &[
    ("read-bytes", "PATH"),
    ("append-bytes", "PATH"),
    ("shadow-read", "TREE DECOY root|userns FILE"),
    ("shadow-append", "TREE DECOY root|userns FILE"),
    ("overlay-lower-read", "TREE SCRATCH FILE root|userns"),
    ("chroot-read", "NEW_ROOT FILE root|userns"),
    ("pivot-read", "NEW_ROOT FILE root|userns"),
    ("overlay-upper", "TREE_DIR SCRATCH FILE append|create|unlink"),
    ("rename-read", "PATH NEW"),
    ("rename-read-in", "DIR NEW FILE"),
    ("link-read", "PATH LINK"),
    ("openat2-read", "PATH"),
    ("openat2-race", "PATH [TRIES]"),
    ("uring-read", "PATH"),
    ("handle-read", "PATH MOUNT_DIR"),
    ("map-hold", "PATH [SECONDS]"),
    ("mem-read", "PID ADDR [LEN]"),
    ("truncate-path", "PATH"),
    ("chmod", "PATH"),
    ("setxattr", "PATH"),
    ("utimes", "PATH"),
];

/// Runs attack `op`; `None` when `op` is not one of these.
pub fn run(op: &str, args: &[String]) -> Option<Result<()>> {
    ATTACKS.iter().find(|(name, _)| *name == op)?;
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    Some(match op {
        "read-bytes" => read_bytes(a(0)),
        "append-bytes" => append(a(0)),
        "shadow-read" => in_private_ns(a(2) == "userns", || {
            bind(a(0), a(1))?;
            read_bytes(&format!("{}/{}", a(1), a(3)))
        }),
        "shadow-append" => in_private_ns(a(2) == "userns", || {
            bind(a(0), a(1))?;
            append(&format!("{}/{}", a(1), a(3)))
        }),
        // lower (the tree), scratch dir (outside), file, userns?
        "overlay-lower-read" => in_private_ns(a(3) == "userns", || {
            let m = overlay(a(0), a(1))?;
            read_bytes(&format!("{m}/{}", a(2)))
        }),
        // new root (holding the tree), the file's path under it, userns?
        "chroot-read" => in_private_ns(a(2) == "userns", || {
            chroot_into(a(0))?;
            read_bytes(a(1))
        }),
        "pivot-read" => in_private_ns(a(2) == "userns", || {
            pivot_into(a(0))?;
            read_bytes(a(1))
        }),
        // upper (a tree directory), scratch (outside, same fs), file, op
        "overlay-upper" => in_private_ns(false, || {
            let m = overlay_upper(a(0), a(1))?;
            let f = format!("{m}/{}", a(2));
            match a(3) {
                "append" => append(&f),
                "create" => std::fs::File::create(format!("{m}/created-through-overlay")).map(|_| ()),
                _ => std::fs::remove_file(&f),
            }
        }),
        "rename-read" => std::fs::rename(a(0), a(1)).and_then(|_| read_bytes(a(1))),
        "rename-read-in" => std::fs::rename(a(0), a(1)).and_then(|_| read_bytes(&format!("{}/{}", a(1), a(2)))),
        "link-read" => std::fs::hard_link(a(0), a(1)).and_then(|_| read_bytes(a(1))),
        "openat2-read" => openat2(a(0), libc::O_RDONLY as u64).and_then(read_fd),
        "openat2-race" => openat2_race(a(0), a(1).parse().unwrap_or(3000)),
        "uring-read" => uring_read(a(0)),
        "handle-read" => handle_read(a(0), a(1)),
        "map-hold" => map_hold(a(0), a(1).parse().unwrap_or(10)),
        "mem-read" => mem_read(a(0), a(1), a(2).parse().unwrap_or(16)),
        "truncate-path" => truncate(a(0)),
        "chmod" => std::fs::set_permissions(a(0), std::os::unix::fs::PermissionsExt::from_mode(0o666)),
        "setxattr" => setxattr(a(0)),
        "utimes" => utimes(a(0)),
        _ => return None,
    })
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> Result<libc::c_int> {
    if r < 0 { Err(Error::last_os_error()) } else { Ok(r) }
}

fn read_fd(fd: OwnedFd) -> Result<()> {
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    println!("read:{}", String::from_utf8_lossy(&buf));
    Ok(())
}

fn read_bytes(path: &str) -> Result<()> {
    let f = std::fs::File::open(path)?;
    read_fd(f.into())
}

fn append(path: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(b"PWNED")?;
    println!("wrote");
    Ok(())
}

/// Runs `f` in a new mount namespace (and user namespace, as uid 65534
/// mapped to root inside, when `userns`). The probe is a one-shot process:
/// its namespaces end with it.
fn in_private_ns(userns: bool, f: impl FnOnce() -> Result<()>) -> Result<()> {
    enter_private_ns(userns).map_err(|e| Error::other(format!("entering the namespaces: {e}")))?;
    f()
}

fn enter_private_ns(userns: bool) -> Result<()> {
    if userns {
        // Drop to nobody first: the unprivileged-user variant.
        // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
        check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
        // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
        check(unsafe { libc::setgid(65534) })?;
        // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
        check(unsafe { libc::setuid(65534) })?;
        // setuid made the process non-dumpable, which makes its /proc files
        // root's: uid_map could not be written.
        // SAFETY: a plain prctl.
        check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) })?;
        // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
        check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) })?;
        std::fs::write("/proc/self/setgroups", "deny")?;
        std::fs::write("/proc/self/uid_map", "0 65534 1")?;
        std::fs::write("/proc/self/gid_map", "0 65534 1")?;
    } else {
        // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    }
    // Private propagation: nothing done here reaches the agent's namespace.
    let none = cstr("none")?;
    let root = cstr("/")?;
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe {
        libc::mount(none.as_ptr(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null())
    })?;
    Ok(())
}

fn bind(from: &str, to: &str) -> Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe { libc::mount(f.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) })
        .map_err(|e| Error::other(format!("bind {from} on {to}: {e}")))?;
    Ok(())
}

fn chroot_into(dir: &str) -> Result<()> {
    std::env::set_current_dir(dir)?;
    let dot = cstr(".")?;
    // SAFETY: a syscall on a valid, NUL-terminated argument.
    check(unsafe { libc::chroot(dot.as_ptr()) }).map_err(|e| Error::other(format!("chroot {dir}: {e}")))?;
    std::env::set_current_dir("/")
}

/// `dir` becomes the root of this mount namespace (bound on itself, since
/// pivot_root wants a mount point; the old root stacked below and detached).
/// Where the root is the initial ramfs, which pivot_root refuses (EINVAL),
/// the mount is moved over `/` and chrooted into, as runc's `no_pivot_root`.
fn pivot_into(dir: &str) -> Result<()> {
    bind(dir, dir)?;
    std::env::set_current_dir(dir)?;
    let (dot, slash) = (cstr(".")?, cstr("/")?);
    // SAFETY: a syscall on valid, NUL-terminated arguments.
    match check(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } as libc::c_int) {
        // SAFETY: as above.
        Ok(_) => check(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) }).map(drop)?,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // SAFETY: as above.
            check(unsafe {
                libc::mount(dot.as_ptr(), slash.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null())
            })
            .map_err(|e| Error::other(format!("moving {dir} over /: {e}")))?;
            // SAFETY: as above.
            check(unsafe { libc::chroot(dot.as_ptr()) })?;
        }
        Err(e) => return Err(Error::other(format!("pivot_root {dir}: {e}"))),
    }
    std::env::set_current_dir("/")
}

fn mount_overlay(opts: &str, at: &str) -> Result<()> {
    let (o, t, ty) = (cstr(opts)?, cstr(at)?, cstr("overlay")?);
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe { libc::mount(ty.as_ptr(), t.as_ptr(), ty.as_ptr(), 0, o.as_ptr().cast()) })
        .map_err(|e| Error::other(format!("overlay {opts} on {at}: {e}")))?;
    Ok(())
}

/// Overlay with `lower` below, upper/work/merged made under `scratch`.
fn overlay(lower: &str, scratch: &str) -> Result<String> {
    for d in ["u", "w", "m"] {
        std::fs::create_dir_all(format!("{scratch}/{d}"))?;
    }
    let m = format!("{scratch}/m");
    mount_overlay(&format!("lowerdir={lower},upperdir={scratch}/u,workdir={scratch}/w"), &m)?;
    Ok(m)
}

/// Overlay whose upper layer is `upper` (a tree directory).
fn overlay_upper(upper: &str, scratch: &str) -> Result<String> {
    for d in ["l", "w", "m"] {
        std::fs::create_dir_all(format!("{scratch}/{d}"))?;
    }
    let m = format!("{scratch}/m");
    mount_overlay(&format!("lowerdir={scratch}/l,upperdir={upper},workdir={scratch}/w"), &m)?;
    Ok(m)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2_with(path: &CString, how: *const OpenHow) -> libc::c_long {
    // SAFETY: a valid path and open_how.
    unsafe { libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, path.as_ptr(), how, std::mem::size_of::<OpenHow>()) }
}

fn openat2(path: &str, flags: u64) -> Result<OwnedFd> {
    let c = cstr(path)?;
    let how = OpenHow { flags: flags | libc::O_CLOEXEC as u64, mode: 0, resolve: 0 };
    let fd = openat2_with(&c, &how);
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// openat2 whose `open_how.flags` another thread flips between O_RDWR and
/// O_RDONLY while the call is in flight. Prints how many writable
/// descriptors it got; writes through the first one (the bytes moved).
fn openat2_race(path: &str, tries: u32) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let c = cstr(path)?;
    let how = Box::leak(Box::new(OpenHow { flags: libc::O_RDONLY as u64, mode: 0, resolve: 0 }));
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    let flags: &'static AtomicU64 = unsafe { &*(&raw mut how.flags).cast::<AtomicU64>() };
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let flipper = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            flags.store(libc::O_RDWR as u64, Ordering::Relaxed);
            std::hint::spin_loop();
            flags.store(libc::O_RDONLY as u64, Ordering::Relaxed);
        }
    });
    let (mut writable, mut readonly, mut denied, mut wrote) = (0u32, 0u32, 0u32, false);
    for _ in 0..tries {
        let fd = openat2_with(&c, how);
        if fd < 0 {
            denied += 1;
            continue;
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
        let mode = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } & libc::O_ACCMODE;
        if mode == libc::O_RDONLY {
            readonly += 1;
        } else {
            writable += 1;
            if !wrote {
                let mut f = std::fs::File::from(fd);
                wrote = f.write_all(b"PWNED").is_ok();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    println!(
        "{{\"tries\":{tries},\"writable\":{writable},\"readonly\":{readonly},\"denied\":{denied},\"wrote\":{wrote}}}"
    );
    Ok(())
}

/// A read-only open submitted through io_uring (made by a kernel worker).
fn uring_read(path: &str) -> Result<()> {
    let c = cstr(path)?;
    let mut ring = io_uring::IoUring::new(2).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => Error::from_raw_os_error(libc::EPROTONOSUPPORT),
        _ => e,
    })?;
    let sqe = io_uring::opcode::OpenAt::new(io_uring::types::Fd(libc::AT_FDCWD), c.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build();
    // SAFETY: the path outlives the completion waited for below.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().ok_or_else(|| Error::other("no completion"))?;
    if cqe.result() < 0 {
        return Err(Error::from_raw_os_error(-cqe.result()));
    }
    // SAFETY: the completion's result is a fresh descriptor we own.
    read_fd(unsafe { OwnedFd::from_raw_fd(cqe.result()) })
}

/// Takes a handle of `path`, drops the dentry cache (so the handle decodes
/// to a dentry with no parents), then opens by handle through `mount_dir`.
fn handle_read(path: &str, mount_dir: &str) -> Result<()> {
    let c = cstr(path)?;
    let mut buf = vec![0u8; 8 + 128];
    buf[..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id = 0;
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe { libc::name_to_handle_at(libc::AT_FDCWD, c.as_ptr(), buf.as_mut_ptr().cast(), &mut mount_id, 0) })?;
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    let mount = std::fs::File::open(mount_dir)?;
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    let fd = check(unsafe { libc::open_by_handle_at(mount.as_raw_fd(), buf.as_mut_ptr().cast(), libc::O_RDONLY) })?;
    // SAFETY: a fresh descriptor we own.
    read_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Maps `path` and holds it `secs` seconds, printing `mapped PID ADDR LEN`
/// (the victim of `mem-read`).
fn map_hold(path: &str, secs: u64) -> Result<()> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    // SAFETY: a fresh read-only private mapping of an open file.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        return Err(Error::last_os_error());
    }
    // SAFETY: the mapping is `len` readable bytes; touching them faults them in.
    let _ = unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
    println!("mapped {} {:#x} {len}", std::process::id(), p as usize);
    std::io::stdout().flush()?;
    std::thread::sleep(std::time::Duration::from_secs(secs));
    Ok(())
}

/// Reads `len` bytes at `addr` of process `pid` through /proc/<pid>/mem.
fn mem_read(pid: &str, addr: &str, len: usize) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let addr =
        u64::from_str_radix(addr.trim_start_matches("0x"), 16).map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    let f = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, addr)?;
    println!("read:{}", String::from_utf8_lossy(&buf));
    Ok(())
}

fn truncate(path: &str) -> Result<()> {
    let c = cstr(path)?;
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe { libc::truncate(c.as_ptr(), 0) })?;
    println!("wrote");
    Ok(())
}

fn setxattr(path: &str) -> Result<()> {
    let (c, n) = (cstr(path)?, cstr("user.warden-probe")?);
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"x".as_ptr().cast(), 1, 0) })?;
    Ok(())
}

fn utimes(path: &str) -> Result<()> {
    let c = cstr(path)?;
    let t = [libc::timespec { tv_sec: 1, tv_nsec: 0 }; 2];
    // SAFETY: a syscall on valid, NUL-terminated arguments and buffers alive for the call.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), 0) })?;
    Ok(())
}
