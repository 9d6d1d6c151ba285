//! fanotify backend: the kernel holds each open on a marked filesystem
//! until the agent answers. Used where BPF-LSM is not active.
//!
//! Every event is answered exactly once: by the decision loop, or, if a
//! decision is stuck for longer than `STUCK_AFTER`, by the watchdog with a
//! deny (fail closed). If the agent dies the kernel answers pending events
//! itself (allow), so no process stays blocked.
//!
//! The kernel matches an answer to its event by the event's fd number, and
//! a closed number is given to the next event. So the event in flight owns
//! its fd, and whoever answers first takes it out under one lock and answers
//! there: the other finds it gone, and no answer can reach a later event.
pub mod changes;
pub mod keeper;
pub mod sys;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use warden_common::{ACCESS_READ, ACCESS_WRITE, FILE_REASON_MODE_UNKNOWN, VERDICT_DENIED};

use super::{Context, FileDecision, Identity, intent::access_via, locate::Place, procfs::Proc, roots::Roots};

/// How long a decision may take before the watchdog denies it.
const STUCK_AFTER: Duration = Duration::from_secs(1);

pub struct Fanotify {
    group: Arc<sys::Group>,
    proc: Proc,
    in_flight: InFlight,
    /// `STUCK_AFTER`; shorter in tests.
    stuck_after: Duration,
    /// Marked filesystems (st_dev → the root path it was marked through).
    marked: Mutex<HashMap<u64, PathBuf>>,
}

impl Fanotify {
    /// Creates the group and marks every filesystem holding a root.
    pub fn new(roots: &Roots) -> std::io::Result<Self> {
        Self::with_stuck_after(roots, STUCK_AFTER)
    }

    /// Uses a group created earlier (handed over by the keeper): its marks
    /// are still there; those of `roots` are added (marking twice is a no-op).
    pub fn adopt(group: OwnedFd, roots: &Roots) -> std::io::Result<Self> {
        Self::with_group(sys::Group::from_fd(group), roots, STUCK_AFTER)
    }

    /// The group, to hand to a keeper.
    pub fn group(&self) -> BorrowedFd<'_> {
        self.group.as_fd()
    }

    fn with_stuck_after(roots: &Roots, stuck_after: Duration) -> std::io::Result<Self> {
        Self::with_group(sys::Group::new()?, roots, stuck_after)
    }

    fn with_group(group: sys::Group, roots: &Roots, stuck_after: Duration) -> std::io::Result<Self> {
        for path in roots.filesystems.values() {
            group.mark_filesystem(path)?;
        }
        Ok(Self {
            group: Arc::new(group),
            proc: Proc::open()?,
            in_flight: InFlight::default(),
            stuck_after,
            marked: Mutex::new(roots.filesystems.clone()),
        })
    }

    fn marked_mut(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PathBuf>> {
        self.marked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the filesystems of `roots` not marked yet (a root that
    /// appeared, a reload); returns those that could not be marked.
    pub fn mark_added(&self, roots: &Roots) -> Vec<(PathBuf, std::io::Error)> {
        let mut marked = self.marked_mut();
        let mut failed = Vec::new();
        for (dev, path) in &roots.filesystems {
            if marked.contains_key(dev) {
                continue;
            }
            match self.group.mark_filesystem(path) {
                Ok(()) => _ = marked.insert(*dev, path.clone()),
                Err(e) => failed.push((path.clone(), e)),
            }
        }
        failed
    }

    /// Unmarks filesystems that no longer hold a root of `roots` (after a
    /// reload switched to them): opens there stop waiting for the agent.
    /// Returns those that could not be unmarked (they stay listed).
    pub fn unmark_dropped(&self, roots: &Roots) -> Vec<(PathBuf, std::io::Error)> {
        let mut marked = self.marked_mut();
        let dropped: Vec<(u64, PathBuf)> = marked
            .iter()
            .filter(|(dev, _)| !roots.filesystems.contains_key(dev))
            .map(|(d, p)| (*d, p.clone()))
            .collect();
        let mut failed = Vec::new();
        for (dev, path) in dropped {
            match self.group.unmark_filesystem(&path) {
                Ok(()) => _ = marked.remove(&dev),
                Err(e) => failed.push((path, e)),
            }
        }
        failed
    }

    /// The filesystems whose opens wait for this backend, by a root path.
    pub fn marked(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.marked_mut().values().cloned().collect();
        v.sort();
        v
    }

    /// Runs the decision loop and the watchdog on their own threads.
    pub fn spawn(self: Arc<Self>, ctx: Arc<dyn Context>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new().name("warden-fanotify".into()).spawn(move || me.decision_loop(ctx))?;
        let me = self;
        std::thread::Builder::new().name("warden-fan-watchdog".into()).spawn(move || me.watchdog())?;
        Ok(())
    }

    fn watchdog(&self) {
        loop {
            std::thread::sleep(self.stuck_after / 4);
            // Logged after answering: the opener never waits on a sink.
            if let Some(fd) = self.in_flight.deny_if_stuck(&self.group, self.stuck_after) {
                tracing::error!(fd, "file decision stuck; answering deny");
            }
        }
    }

    fn decision_loop(&self, ctx: Arc<dyn Context>) {
        raise_priority();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let events = match self.group.read(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(error = %e, "fanotify read failed; file enforcement stopped");
                    ctx.backend_failed(e.to_string());
                    return;
                }
            };
            for ev in events {
                let fd = Arc::new(ev.fd);
                self.in_flight.start(fd.clone());
                // Our share keeps the number open while it is read, even
                // if the watchdog answers meanwhile.
                let (allow, mut decision) = self.decide(&ctx, fd.as_fd(), ev.tid);
                if let Some(d) = decision.as_mut()
                    && d.verdict != warden_common::VERDICT_ALLOWED
                {
                    // Read while the opener still waits for its answer: a
                    // short-lived one is gone once answered.
                    let mut buf = [0u8; 4096];
                    let cgroup = self.proc.cgroup(ev.tid, &mut buf);
                    d.opener = Some(super::Opener::read(&self.proc, ev.tid, cgroup));
                }
                // None: the watchdog answered (deny); answer nothing more.
                let answered = self.in_flight.answer(&self.group, allow);
                if let Some(Err(e)) = &answered
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    tracing::warn!(error = %e, "answering fanotify event");
                }
                // Report after answering: the opener never waits on a sink.
                // The event and counters say what the opener got: a
                // watchdog deny overrides the late verdict.
                if let Some(mut d) = decision {
                    if answered.is_none() {
                        d.verdict = VERDICT_DENIED;
                    }
                    // The names walk runs only for an event of its own (an
                    // allowed open that counts into a summary needs none).
                    if ctx.named(d.verdict) {
                        d.path = ctx.path_of_fd(&d, fd.as_fd());
                    }
                    drop(fd);
                    ctx.emit(d);
                }
            }
        }
    }

    /// Decides one open; any failure on a protected path denies. Only what
    /// the decision needs is read here; event details (tgid, comm, exe) are
    /// looked up by the event task after the opener has its answer.
    fn decide(&self, ctx: &Arc<dyn Context>, fd: BorrowedFd<'_>, tid: i32) -> (bool, Option<FileDecision>) {
        // The agent's own opens (e.g. its event file on a marked fs) pass.
        if self.proc.is_own_thread(tid) {
            return (true, None);
        }
        // Where the file is and what the rules say are read separately: a
        // reload between them would mix two policies, so such a decision is
        // made again.
        for _ in 0..8 {
            let generation = ctx.policy_generation();
            let decided = self.decide_once(ctx, fd, tid);
            if ctx.policy_generation() == generation {
                return decided;
            }
        }
        ctx.note_error();
        (false, None)
    }

    fn decide_once(&self, ctx: &Arc<dyn Context>, fd: BorrowedFd<'_>, tid: i32) -> (bool, Option<FileDecision>) {
        // The file's place comes from the file itself (the kernel walks the
        // dentry behind our descriptor), never from a path: the opener's
        // mount namespace, bind mounts and overlays change nothing.
        let escapes = ctx.escapes();
        let mut place = ctx.locate(fd);
        if matches!(place, Ok(Place::Outside)) {
            // A rename or link out queued before this open may have made
            // this file protected: apply what is queued, and if any file
            // was recorded since we looked, look again.
            ctx.settle();
            if ctx.escapes() != escapes {
                place = ctx.locate(fd);
            }
        }
        let (segment, root, reason) = match place {
            Ok(Place::Outside) => return (true, None),
            Ok(Place::In { segment, root, reason }) => (segment, root, reason),
            Ok(Place::Unknown(reason)) => (0, 0, reason),
            Err(_) => {
                ctx.note_error();
                return (false, None);
            }
        };
        let mut buf = [0u8; 4096];
        let cgroup = self.proc.cgroup(tid, &mut buf);
        let Identity::Governed(workload) = ctx.identify_path(cgroup) else { return (true, None) };
        let mut decision = FileDecision {
            op: warden_common::FOP_OPEN,
            tid: tid as u32,
            workload,
            segment,
            root,
            path: PathBuf::new(),
            write: None,
            verdict: 0,
            rule: 0,
            reason,
            opener: None,
        };
        if segment == 0 {
            // Unknown place (disconnected dentry, too deep): it may be in a
            // tree, so every governed opener is denied.
            decision.verdict = VERDICT_DENIED;
            return (false, Some(decision));
        }
        let (want, certain) = if ctx.needs_intent(workload, segment) {
            let (want, certain) = access_via(&self.proc, tid);
            (Some(want), certain)
        } else {
            (None, true)
        };
        let (verdict, rule) = ctx.verdict(workload, segment, want.unwrap_or(ACCESS_READ | ACCESS_WRITE));
        if !certain && verdict == VERDICT_DENIED {
            decision.reason = FILE_REASON_MODE_UNKNOWN;
        }
        decision.write = want.map(|w| w & ACCESS_WRITE != 0);
        decision.verdict = verdict;
        decision.rule = rule;
        (verdict != VERDICT_DENIED, Some(decision))
    }
}

/// The event being decided: it holds a share of the event's fd, so the
/// number answered with is always this event's.
struct Pending {
    fd: Arc<OwnedFd>,
    since: Instant,
}

/// At most one event in flight (the decision loop is sequential). Answers
/// are written under its lock, so taking the entry and answering it are one
/// step: whoever comes second finds nothing to answer.
#[derive(Default)]
struct InFlight(Mutex<Option<Pending>>);

impl InFlight {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, fd: Arc<OwnedFd>) {
        *self.slot() = Some(Pending { fd, since: Instant::now() });
    }

    /// Answers the event in flight; `None` if the watchdog already did.
    fn answer(&self, group: &sys::Group, allow: bool) -> Option<std::io::Result<()>> {
        let mut slot = self.slot();
        let pending = slot.take()?;
        Some(group.respond(pending.fd.as_fd(), allow))
    }

    /// Denies the event in flight if it has waited longer than `after`;
    /// returns its fd number then (the deny's own failure is not actionable).
    fn deny_if_stuck(&self, group: &sys::Group, after: Duration) -> Option<RawFd> {
        let mut slot = self.slot();
        let pending = slot.take_if(|p| p.since.elapsed() > after)?;
        let _ = group.respond(pending.fd.as_fd(), false);
        Some(pending.fd.as_raw_fd())
    }
}

/// Every open on a marked filesystem waits for the decision thread, so it
/// runs ahead of ordinary work (nice -10; it only ever blocks in read()).
/// SCHED_FIFO measured no better on 2 cores and risks more, so it is not used.
fn raise_priority() {
    // SAFETY: setpriority on the calling thread (who = 0 is per-thread on Linux).
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } != 0 {
        tracing::debug!("could not raise the fanotify thread's priority (needs CAP_SYS_NICE)");
    }
}
