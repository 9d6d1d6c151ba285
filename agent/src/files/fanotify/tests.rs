//! The watchdog and the decision thread race to answer a stuck event; an
//! answer must never reach another event that got the same fd number.
//! Real fanotify group, real tmpfs, real opener processes (the agent's own
//! threads are never held, so openers are forked children). Needs root.
use std::{
    collections::HashMap,
    ffi::CString,
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use warden_common::{VERDICT_ALLOWED, VERDICT_DENIED};

use super::Fanotify;
use crate::{
    files::{Context, FileDecision, Identity, locate::Place, roots::Roots},
    policy::FileRoot,
};

const FAST: u16 = 1;
const SLOW: u16 = 2;
/// Short, so the watchdog answers often; fast decisions take ~100 µs.
const STUCK_AFTER: Duration = Duration::from_millis(4);
const RUN_FOR: Duration = Duration::from_secs(3);
const MAX_OPENS: usize = 1 << 20;

/// Allows everything; decisions on the slow segment sleep around the
/// stuck threshold, so either the watchdog or the decision answers first.
/// Records how long each decision took, per opener, in order.
struct Racy {
    roots: Arc<Roots>,
    slow: AtomicU64,
    errors: AtomicU64,
    state: Mutex<Timing>,
}

#[derive(Default)]
struct Timing {
    /// When the decision being made started (its first generation read).
    started: Option<Instant>,
    /// Opener tid → (segment, decision time until answered, verdict
    /// reported) per open.
    by_tid: HashMap<u32, Vec<(u16, Duration, u8)>>,
}

impl Racy {
    fn state(&self) -> std::sync::MutexGuard<'_, Timing> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Context for Racy {
    /// Files here sit directly in a root: the parent names the segment.
    fn locate(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Place> {
        use std::os::{fd::AsRawFd, unix::fs::MetadataExt};
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let dir = std::fs::metadata(path.parent().unwrap_or(Path::new("/")))?;
        Ok(match self.roots.segment_of_inode(dir.dev(), dir.ino()) {
            Some(segment) => Place::In { segment, root: 0, reason: 0 },
            None => Place::Outside,
        })
    }

    fn path_of(&self, _: &FileDecision, _: u32) -> PathBuf {
        PathBuf::new()
    }

    fn identify_path(&self, _: Option<&str>) -> Identity {
        Identity::Governed(Some(1))
    }

    fn verdict(&self, _: Option<u32>, segment: u16, _: u8) -> (u8, u32) {
        if segment == SLOW {
            // 0.5 .. 1.5 × the threshold, varied so the two answers cross.
            let k = self.slow.fetch_add(1, Ordering::Relaxed) % 9;
            std::thread::sleep(STUCK_AFTER * (k as u32 + 4) / 8);
        }
        (VERDICT_ALLOWED, 0)
    }

    fn needs_intent(&self, _: Option<u32>, _: u16) -> bool {
        false
    }

    fn roots(&self) -> Arc<Roots> {
        self.roots.clone()
    }

    fn policy_generation(&self) -> u64 {
        self.state().started.get_or_insert_with(Instant::now);
        0
    }

    fn emit(&self, d: FileDecision) {
        // Emitted after the answer: the time covers the whole decision.
        let mut st = self.state();
        let took = st.started.take().map(|s| s.elapsed()).unwrap_or_default();
        st.by_tid.entry(d.tid).or_default().push((d.segment, took, d.verdict));
    }

    fn note_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn backend_failed(&self, reason: String) {
        panic!("fanotify backend failed: {reason}");
    }
}

/// A log sink as slow as a busy journal: 500 µs per fanotify error record
/// (the watchdog's "stuck" record). A watchdog that logs between choosing
/// an event and answering it gives the decision thread that long to answer
/// first and read the next event into the same fd number.
struct SlowErrorLog;

impl tracing::Subscriber for SlowErrorLog {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() == tracing::Level::ERROR && m.target().starts_with(module_path!().trim_end_matches("::tests"))
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        std::thread::sleep(Duration::from_micros(500));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A tmpfs of the test's own, unmounted and removed when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("warden-fanrace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(Some("tmpfs"), &dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m"))
            .expect("mount tmpfs (the test needs root)");
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// One forked opener: opens `path` until the deadline and reports one byte
/// per open through a pipe: b'o' opened, b'd' EPERM, b'x' any other error.
struct Opener {
    pid: libc::pid_t,
    results: OwnedFd,
}

impl Opener {
    fn spawn(path: &Path, until: libc::timespec) -> Self {
        let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let mut out: Vec<u8> = Vec::with_capacity(MAX_OPENS);
        let mut pipe = [0; 2];
        // SAFETY: plain syscall into a valid array.
        assert_eq!(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only makes async-signal-safe syscalls on memory
        // prepared before the fork (no allocation, no locks), then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above; `out` has MAX_OPENS bytes of capacity.
            unsafe { open_until(&path, until, out.as_mut_ptr(), pipe[1]) }
        }
        // SAFETY: both ends are fresh fds we own; the write end is the child's.
        unsafe { libc::close(pipe[1]) };
        // SAFETY: the read end is a fresh fd nothing else owns.
        let results = unsafe { OwnedFd::from_raw_fd(pipe[0]) };
        Self { pid, results }
    }

    /// Waits for the child and returns its results, one byte per open.
    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(self.results), &mut out).unwrap();
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "opener status {status}");
        out
    }
}

/// The forked child's body. Never returns.
///
/// # Safety
/// `out` must be valid for MAX_OPENS bytes; `pipe` a writable fd.
unsafe fn open_until(path: &CString, until: libc::timespec, out: *mut u8, pipe: i32) -> ! {
    let mut n = 0;
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: syscalls on valid pointers; `out` as the caller promised.
    unsafe {
        while n < MAX_OPENS {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            if (now.tv_sec, now.tv_nsec) >= (until.tv_sec, until.tv_nsec) {
                break;
            }
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            *out.add(n) = if fd >= 0 {
                libc::close(fd);
                b'o'
            } else if *libc::__errno_location() == libc::EPERM {
                b'd'
            } else {
                b'x'
            };
            n += 1;
        }
        let mut done = 0;
        while done < n {
            let w = libc::write(pipe, out.add(done).cast(), n - done);
            if w <= 0 {
                libc::_exit(1);
            }
            done += w as usize;
        }
        libc::_exit(0)
    }
}

fn deadline_in(d: Duration) -> libc::timespec {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    let ns = t.tv_nsec as u64 + d.subsec_nanos() as u64;
    t.tv_sec += d.as_secs() as libc::time_t + (ns / 1_000_000_000) as libc::time_t;
    t.tv_nsec = (ns % 1_000_000_000) as _;
    t
}

#[test]
fn a_watchdog_deny_never_reaches_another_open() {
    // Global (the watchdog is its own thread); other tests log nothing here.
    let _ = tracing::subscriber::set_global_default(SlowErrorLog);
    let fs = Tmpfs::new();
    for dir in ["fast", "slow"] {
        std::fs::create_dir(fs.0.join(dir)).unwrap();
        std::fs::write(fs.0.join(dir).join("f"), "x").unwrap();
    }
    let roots = Arc::new(Roots::resolve(&[
        FileRoot { segment_id: FAST, path: fs.0.join("fast") },
        FileRoot { segment_id: SLOW, path: fs.0.join("slow") },
    ]));
    assert!(roots.missing.is_empty());
    let ctx = Arc::new(Racy {
        roots: roots.clone(),
        slow: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        state: Mutex::default(),
    });
    let fan = Arc::new(Fanotify::with_stuck_after(&roots, STUCK_AFTER).expect("fanotify group"));
    fan.spawn(ctx.clone()).unwrap();

    // Two openers keep fast events queued behind each slow one, so an event
    // is read right after a slow one is answered and may get its fd number.
    let until = deadline_in(RUN_FOR);
    let segments = [SLOW, FAST, FAST];
    let openers: Vec<(u16, Opener)> = segments
        .iter()
        .map(|&seg| (seg, Opener::spawn(&fs.0.join(if seg == FAST { "fast/f" } else { "slow/f" }), until)))
        .collect();
    let results: Vec<(u16, u32, Vec<u8>)> =
        openers.into_iter().map(|(seg, o)| (seg, o.pid as u32, o.finish())).collect();

    // Each decision is recorded just after its answer: wait for the last.
    let total: usize = results.iter().map(|(.., r)| r.len()).sum();
    let start = Instant::now();
    while ctx.state().by_tid.values().map(Vec::len).sum::<usize>() < total && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(ctx.errors.load(Ordering::Relaxed), 0, "no decision may fail here");

    let state = ctx.state();
    let (mut fast_opens, mut slow_opens, mut watchdog_denies, mut misdirected) = (0, 0, 0, Vec::new());
    for (seg, tid, got) in &results {
        let decided = state.by_tid.get(tid).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(decided.len(), got.len(), "one decision per open of {tid}");
        for (i, (r, (dseg, took, verdict))) in got.iter().zip(decided).enumerate() {
            assert_eq!(dseg, seg, "decisions of {tid} in open order");
            assert_ne!(*r, b'x', "open {i} of {tid} failed other than EPERM");
            // Events and counters say what the opener got, also when the
            // watchdog answered before the (allowing) verdict.
            assert_eq!(
                *r == b'd',
                *verdict == VERDICT_DENIED,
                "open {i} of {tid}: got {} but reported {verdict}",
                *r as char
            );
            match (*seg, *r) {
                (SLOW, b'd') => watchdog_denies += 1,
                // Every verdict allows: a deny came from the watchdog, which
                // denies only decisions stuck longer than STUCK_AFTER. One
                // that took far less got a deny meant for another event.
                (FAST, b'd') if *took < STUCK_AFTER / 2 => misdirected.push((tid, i, *took)),
                _ => {}
            }
            if *seg == FAST { fast_opens += 1 } else { slow_opens += 1 }
        }
    }
    eprintln!("opens: {fast_opens} fast, {slow_opens} slow ({watchdog_denies} denied by the watchdog)");
    assert!(
        misdirected.is_empty(),
        "fast decisions denied by a watchdog answer meant for another event (tid, open, took): {misdirected:?}"
    );
    // The race was really run: many opens, and both answers came first.
    assert!(fast_opens > 500, "only {fast_opens} fast opens");
    assert!(watchdog_denies > 10, "the watchdog answered first only {watchdog_denies} times of {slow_opens}");
    assert!(
        slow_opens > watchdog_denies + 10,
        "the decision answered first only {} times",
        slow_opens - watchdog_denies
    );
}
