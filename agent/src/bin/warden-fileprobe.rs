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
//! device node no driver serves: allowed), 3 any other error, 64 a command
//! line it cannot run.
use std::{fs::OpenOptions, io::Read, os::unix::fs::OpenOptionsExt};

use warden::probe::{Args, Outcome, UsageError};
use warden::probe_files::ATTACKS;

const ABOUT: &str = "\
warden-fileprobe: joins a cgroup, then performs one real file operation, to see
what a workload in that cgroup experiences.

Usage: warden-fileprobe [OPTIONS] OP ARGS...

Operations:
";

/// The operations made here, with their arguments and what they do.
const OPS: &[(&str, &[&str], &str)] = &[
    ("read", &["PATH"], "open for reading, read 16 bytes"),
    ("write", &["PATH"], "open for writing"),
    ("append", &["PATH"], "open for appending"),
    ("trunc", &["PATH"], "open with O_TRUNC"),
    ("create", &["PATH"], "create a new file"),
    ("truncate", &["PATH"], "open for writing, then truncate to 0"),
    ("unlink", &["PATH"], "remove a file"),
    ("rmdir", &["PATH"], "remove an empty directory"),
    ("mkdir", &["PATH"], "make a directory"),
    ("rename", &["PATH", "PATH2"], "rename PATH to PATH2"),
    ("link", &["PATH", "PATH2"], "hard-link PATH as PATH2"),
    ("mknod", &["PATH", "MAJOR:MINOR"], "make a char device node"),
    ("flood", &["PATH", "STOPFILE", "RATE"], "open PATH until STOPFILE exists (JSON counts; RATE 0: no limit)"),
];

fn main() {
    warden::probe::main(&usage(), run)
}

fn usage() -> String {
    let mut text = ABOUT.to_string();
    for (op, args, what) in OPS {
        let call = format!("{op} {}", args.join(" "));
        text += &format!("  {call:<36} {what}\n");
    }
    text += "\nAttacks (print what moved: `read:<bytes>`, `wrote`; a missing argument is empty):\n";
    for (op, args) in ATTACKS {
        text += &format!("  {op} {args}\n");
    }
    text
}

fn run(argv: &[String]) -> Outcome {
    let Some((op, rest)) = argv.split_first() else { return Err(UsageError("missing OP".into())) };
    let op = op.as_str();
    if let Some(result) = warden::probe_files::run(op, rest) {
        return Ok(result);
    }
    let Some((_, names, _)) = OPS.iter().find(|(name, ..)| *name == op) else {
        return Err(UsageError(format!("unknown operation `{op}`")));
    };
    let a = Args::new(op, names, rest)?;
    if op == "flood" {
        let counts = warden::probe_flood::flood_open(a.str(0).as_ref(), a.str(1).as_ref(), a.get(2)?);
        warden::probe::print_json(&counts)
    }
    let path = a.str(0);
    Ok(match op {
        "read" => std::fs::File::open(path).and_then(|mut f| f.read(&mut [0u8; 16]).map(|_| ())),
        "write" => OpenOptions::new().write(true).open(path).map(|_| ()),
        "append" => OpenOptions::new().append(true).open(path).map(|_| ()),
        "trunc" => OpenOptions::new().write(true).truncate(true).open(path).map(|_| ()),
        "create" => OpenOptions::new().write(true).create_new(true).mode(0o644).open(path).map(|_| ()),
        "truncate" => OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(0)),
        "unlink" => std::fs::remove_file(path),
        "rmdir" => std::fs::remove_dir(path),
        "mkdir" => std::fs::create_dir(path),
        "rename" => std::fs::rename(path, a.str(1)),
        "link" => std::fs::hard_link(path, a.str(1)),
        "mknod" => mknod(path, device_number(a.str(1))?),
        _ => return Err(UsageError(format!("unknown operation `{op}`"))),
    })
}

/// `MAJOR:MINOR` as the kernel's device number.
fn device_number(text: &str) -> Result<libc::dev_t, UsageError> {
    let bad = || UsageError(format!("`mknod`: bad MAJOR:MINOR `{text}`"));
    let (major, minor) = text.split_once(':').ok_or_else(bad)?;
    Ok(libc::makedev(major.parse().map_err(|_| bad())?, minor.parse().map_err(|_| bad())?))
}

fn mknod(path: &str, dev: libc::dev_t) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, dev) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
