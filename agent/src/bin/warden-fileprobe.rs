//! `warden-fileprobe`: joins a cgroup, then performs one real file
//! operation, to see what a workload in that cgroup experiences (and for
//! the tests).
//!
//! `warden-fileprobe [--cgroup DIR] [--linger-ms N] OP PATH [PATH2]`
//! OP: read | write | append | trunc | create | truncate | unlink | rmdir |
//!     mkdir | rename | link
//! Exit codes: 0 success, 2 EPERM/EACCES (denied), 3 any other error.
use std::{fs::OpenOptions, io::Read, os::unix::fs::OpenOptionsExt};

fn main() {
    let (args, linger) = warden::probe::setup(std::env::args().skip(1).collect());
    let op = args.first().cloned().unwrap_or_default();
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
        _ => panic!("unknown op {op}"),
    };
    warden::probe::finish(result, linger)
}
