//! What an opener wants (read, or write too), for backends that are not
//! told: fanotify reports that a file is being opened, not how.
//!
//! While the agent decides a permission event the opening thread is blocked
//! inside that very syscall, so `/proc/<tid>/syscall` shows its number and
//! register arguments exactly (registers the opener cannot change any
//! more). Flags passed in memory (openat2's `open_how`, an io_uring
//! submission) were copied by the kernel before the event and can be
//! rewritten by another thread after it, so they are never trusted: such
//! an open, and anything unreadable or unknown, counts as a write that was
//! not known for certain (fail closed): a read-only workload is denied,
//! never let through, and the event says why.
use warden_common::{ACCESS_READ, ACCESS_WRITE};

const O_ACCMODE: u64 = 0o3;
/// Bounded wait for a thread still on its way to sleep (≈ 5 ms at most):
/// the first `SPINS` reads only yield (each read is about a microsecond),
/// since a sleep's timer slack is tens of microseconds on every open whose
/// opener had not quite gone to sleep yet.
const RUNNING_RETRIES: u32 = 512;
const SPINS: u32 = 256;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_APPEND: u64 = 0o2000;

/// Access an open with these flags needs.
pub fn access_for_flags(flags: u64) -> u8 {
    if flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC | O_APPEND) != 0 {
        ACCESS_READ | ACCESS_WRITE
    } else {
        ACCESS_READ
    }
}

/// Parses `/proc/<tid>/syscall` text: `nr arg0 … arg5 sp pc`, or `running`
/// / `-1 …` when not in a syscall.
pub fn parse_syscall(text: &str) -> Option<(i64, [u64; 6])> {
    let mut it = text.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
    }
    Some((nr, args))
}

/// Where the flags are for syscalls that open files, or what they imply.
enum Flags {
    /// In a register argument: exact.
    Arg(usize),
    Read,
    Write,
}

fn flags_of(nr: i64) -> Option<Flags> {
    use libc::*;
    Some(match nr {
        #[cfg(target_arch = "x86_64")]
        n if n == SYS_open => Flags::Arg(1),
        #[cfg(target_arch = "x86_64")]
        n if n == SYS_creat => Flags::Write,
        n if n == SYS_openat => Flags::Arg(2),
        n if n == SYS_open_by_handle_at => Flags::Arg(2),
        n if n == SYS_execve || n == SYS_execveat => Flags::Read,
        _ => return None,
    })
}

/// Access wanted by thread `tid`, from the syscall it is blocked in
/// (/proc/<tid> is valid for any thread id). Tests only: the agent keeps one
/// `Proc` open and calls `access_via`.
#[cfg(test)]
fn access_of(tid: i32) -> (u8, bool) {
    match super::procfs::Proc::open() {
        Ok(p) => access_via(&p, tid),
        Err(_) => (ACCESS_READ | ACCESS_WRITE, false),
    }
}

/// As `access_of`, through an already open /proc: the access and whether
/// it is known for certain (if not, it is read + write).
pub fn access_via(proc: &super::procfs::Proc, tid: i32) -> (u8, bool) {
    let fail_closed = (ACCESS_READ | ACCESS_WRITE, false);
    let mut buf = [0u8; 256];
    // The opener is about to sleep until we answer, but may still be on a
    // CPU on its way there: the kernel then reports "running". Wait for it
    // (bounded), rather than misjudging a read as a write.
    let mut parsed = None;
    for attempt in 0..RUNNING_RETRIES {
        let Some(text) = proc.read(tid, "syscall", &mut buf).and_then(|b| std::str::from_utf8(b).ok()) else {
            return fail_closed;
        };
        if !text.starts_with("running") {
            parsed = parse_syscall(text);
            break;
        }
        if attempt > SPINS {
            std::thread::sleep(std::time::Duration::from_micros(20));
        } else {
            std::thread::yield_now();
        }
    }
    let Some((nr, args)) = parsed else { return fail_closed };
    match flags_of(nr) {
        Some(Flags::Arg(i)) => (access_for_flags(args[i]), true),
        Some(Flags::Read) => (ACCESS_READ, true),
        Some(Flags::Write) => (ACCESS_READ | ACCESS_WRITE, true),
        // openat2 (flags in memory), io_uring workers, anything else.
        None => fail_closed,
    }
}

/// Fuzzing entry point for the /proc text parser.
pub fn fuzz(text: &str) {
    if let Some((nr, args)) = parse_syscall(text) {
        let _ = flags_of(nr);
        let _ = access_for_flags(args[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_to_access() {
        assert_eq!(access_for_flags(libc::O_RDONLY as u64), ACCESS_READ);
        assert_eq!(access_for_flags(libc::O_RDONLY as u64 | libc::O_CLOEXEC as u64), ACCESS_READ);
        for f in [libc::O_WRONLY, libc::O_RDWR, libc::O_TRUNC, libc::O_APPEND, libc::O_CREAT] {
            assert_eq!(access_for_flags(f as u64), ACCESS_READ | ACCESS_WRITE, "{f:#o}");
        }
    }

    #[test]
    fn parses_proc_syscall() {
        let (nr, a) = parse_syscall("257 0xffffff9c 0x7ffd1000 0x241 0x1b6 0x0 0x0 0x7ffd 0x7f00\n").unwrap();
        assert_eq!(nr, 257);
        assert_eq!(a[2], 0x241);
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f00\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn a_thread_entering_an_open_is_judged_by_its_flags() {
        // Race a real open: the reader starts while the thread may still be
        // on a CPU ("running"); the answer must be its real flags, never a
        // fail-closed write for a read-only open. Blocking happens on a
        // FIFO opened read-only, which sleeps inside openat(2).
        let dir = std::env::temp_dir().join(format!("warden-intent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let tid = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let (t2, f2) = (tid.clone(), fifo.clone());
        let h = std::thread::spawn(move || {
            t2.store(nix::unistd::gettid().as_raw(), std::sync::atomic::Ordering::SeqCst);
            let _ = std::fs::File::open(&f2); // O_RDONLY: blocks until a writer opens
        });
        let t = loop {
            let t = tid.load(std::sync::atomic::Ordering::SeqCst);
            if t != 0 {
                break t;
            }
            std::hint::spin_loop();
        };
        assert_eq!(access_of(t), (ACCESS_READ, true), "read-only open judged from its flags");
        let _w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        h.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_thread_blocked_in_a_syscall_is_read_exactly() {
        // A real blocked thread: read(2) on a pipe is not an open, so the
        // answer must fail closed (read + write).
        let (r, w) = nix::unistd::pipe().unwrap();
        let tid = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let t2 = tid.clone();
        let h = std::thread::spawn(move || {
            t2.store(nix::unistd::gettid().as_raw(), std::sync::atomic::Ordering::SeqCst);
            let mut b = [0u8; 1];
            nix::unistd::read(&r, &mut b).unwrap();
        });
        while tid.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let pid = std::process::id() as i32;
        let text = std::fs::read_to_string(format!(
            "/proc/{pid}/task/{}/syscall",
            tid.load(std::sync::atomic::Ordering::SeqCst)
        ))
        .unwrap();
        assert_eq!(parse_syscall(&text).map(|(nr, _)| nr), Some(libc::SYS_read));
        assert_eq!(access_of(tid.load(std::sync::atomic::Ordering::SeqCst)), (ACCESS_READ | ACCESS_WRITE, false));
        nix::unistd::write(&w, b"x").unwrap();
        h.join().unwrap();
    }
}
