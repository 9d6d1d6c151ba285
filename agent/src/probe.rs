//! Shared by the `warden-netprobe` and `warden-fileprobe` tools: join a
//! cgroup, do one real operation, report it with a stable exit code.
use std::time::Duration;

/// Consumes the leading `--cgroup DIR` / `--linger-ms N` flags (joining the
/// cgroup at once) and returns the remaining arguments and the linger time.
pub fn setup(mut args: Vec<String>) -> (Vec<String>, Duration) {
    let mut linger = 0u64;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = args.first().cloned().unwrap_or_else(|| panic!("{flag} needs a value"));
        args.remove(0);
        match flag.as_str() {
            // Writing "0" to cgroup.procs moves the writing process.
            "--cgroup" => std::fs::write(format!("{value}/cgroup.procs"), "0").expect("join cgroup"),
            "--linger-ms" => linger = value.parse().expect("--linger-ms takes milliseconds"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    (args, Duration::from_millis(linger))
}

/// Lingers (so the agent can still read /proc/<pid>/exe), prints the
/// outcome and exits: 0 success, 2 denied (EPERM/EACCES), 4 no such device
/// (ENXIO/ENODEV: every hook allowed the open and found no driver behind
/// the node), 5 timed out or no reply, 6 not supported by this kernel,
/// 3 any other error.
pub fn finish(result: std::io::Result<()>, linger: Duration) -> ! {
    std::thread::sleep(linger);
    match result {
        Ok(()) => {
            println!("ok");
            std::process::exit(0)
        }
        Err(e) => {
            println!("error: {e}");
            let code = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => 2,
                Some(libc::ENXIO) | Some(libc::ENODEV) => 4,
                Some(libc::ETIMEDOUT) => 5,
                Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) => 6,
                None if e.kind() == std::io::ErrorKind::TimedOut => 5,
                _ => 3,
            };
            std::process::exit(code)
        }
    }
}
