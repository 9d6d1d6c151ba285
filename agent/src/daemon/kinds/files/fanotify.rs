//! fanotify file backend: the kernel holds each open on a marked
//! filesystem until the decision thread answers from the policy cell and
//! the identity store. Decisions go to their own event writer through a
//! bounded queue, so a slow sink never blocks opens.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;

use super::{Choice, FileRoots};
use crate::{
    daemon::{
        lifecycle::{Enforcer, SetParts, StartCx},
        policy_cell::workload_name,
        writer_priority::WriterPriority,
    },
    files::{
        Context, FileDecision, Identity,
        fanotify::{Fanotify, changes::Changes, keeper},
        locate::{Locate, Place, SLOT_DECISIONS},
        roots::Roots,
    },
    hooks::maps::VerdictCounts,
    policy::{CompiledPolicy, Policy},
    report::{EnforcementStatus, StatusReport, words},
};

/// Capacity of the queue from the decision thread to the event writer.
const QUEUE: usize = 65536;

/// fanotify can block opens only; these it cannot see or stop.
const BLIND: [&str; 7] = [
    "create (file appears before the open is denied)",
    "rename",
    "unlink",
    "hard link",
    "truncate(2) by path",
    "mkdir/rmdir",
    "chmod/chown/utimes/xattr",
];

/// What the decision thread and the status read.
struct Decisions {
    /// Our end of the keeper's stream: closing it (we died) is how the
    /// keeper learns to take over.
    keeper: Mutex<Option<std::os::unix::net::UnixStream>>,
    files: FileRoots,
    locate: Arc<Locate>,
    /// The change watcher, where the filesystems allow one.
    changes: Option<Arc<Changes>>,
    /// Allowed decisions go into summaries (`agent.events.allowed`).
    summarized: bool,
    fan: Arc<Fanotify>,
    tx: mpsc::Sender<FileDecision>,
    writer: Arc<WriterPriority>,
    errors: AtomicU64,
    dropped: Arc<AtomicU64>,
    /// Decisions per workload id (0 = unidentified).
    counts: Mutex<HashMap<u32, VerdictCounts>>,
    /// Those counts by workload name, moved here by each reload (ids may
    /// name other workloads after it).
    harvested: Mutex<HashMap<String, VerdictCounts>>,
}

pub struct FanotifyFiles(Arc<Decisions>);

/// Creates the group, marks the root filesystems, and starts the decision
/// thread and the event writer.
pub(super) fn start(
    cx: &mut StartCx<'_>,
    roots: Arc<Roots>,
    locate: Arc<Locate>,
    follow: Arc<super::Follow>,
    reasons: &mut Vec<String>,
) -> std::io::Result<Arc<dyn Enforcer>> {
    // The group lives in a keeper process, so a crash or a stall of this
    // agent never lets a held open through: take it from a keeper still
    // holding it (an agent before us), give it to a sidecar keeper that
    // waits for one, or make one and start its keeper.
    let instance = cx.hooks.pins().dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    keeper::cap_nofile();
    let sidecar = std::env::var(keeper::SIDECAR_ENV).is_ok_and(|v| v == "sidecar");
    let (fan, keeper_conn) = match find_keeper(&instance, sidecar) {
        Ok(keeper::Found::Held(group, conn)) => {
            tracing::info!("took the fanotify group over from its keeper: opens held meanwhile were answered");
            (Arc::new(Fanotify::adopt(group, &roots)?), Some(conn))
        }
        Ok(keeper::Found::Standby) => {
            let fan = Arc::new(Fanotify::new(&roots)?);
            match keeper::give(&instance, fan.group(), locate.program()) {
                Ok(conn) => {
                    tracing::info!("gave the fanotify group to the keeper sidecar");
                    (fan, Some(conn))
                }
                Err(e) => {
                    reasons.push(format!(
                        "the keeper sidecar did not take the group (a crash would let held opens through): {e}"
                    ));
                    (fan, None)
                }
            }
        }
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, "the fanotify keeper did not hand its group over; starting a new one");
            }
            if sidecar {
                reasons.push("no keeper sidecar answered: a keeper was started inside the agent's container, which a container restart ends".into());
            }
            let fan = Arc::new(Fanotify::new(&roots)?);
            let root = cx.parts.identities.cgroup_root_in_hierarchy();
            match keeper::spawn(&instance, std::path::Path::new(&root), fan.group(), locate.program()) {
                Ok(conn) => (fan, Some(conn)),
                Err(e) => {
                    reasons.push(format!("no keeper (an agent crash would let held opens through): {e}"));
                    (fan, None)
                }
            }
        }
    };
    reasons.push("fanotify permission events on the filesystems holding segment roots".into());
    let changes = match Changes::new() {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            reasons.push(format!("changes are not watched: {e}"));
            None
        }
    };
    let mut blind: Vec<String> = BLIND.map(String::from).to_vec();
    if let Some(c) = &changes {
        for (path, e) in c.watch(&roots) {
            reasons.push(format!("changes on the filesystem of {} are not watched: {e}", path.display()));
        }
    } else {
        blind.push("files renamed out of a tree or linked out after the open check".into());
    }
    let choice = Choice { backend: words::FILES_FANOTIFY, reason: reasons.join("; "), not_enforced: blind };
    let (tx, rx) = mpsc::channel(QUEUE);
    let d = Arc::new(Decisions {
        keeper: Mutex::new(keeper_conn),
        files: FileRoots::new(cx, roots, choice, follow),
        locate,
        changes: changes.clone(),
        summarized: cx.pipeline.summary_ms.is_some(),
        fan: fan.clone(),
        tx,
        writer: Arc::new(WriterPriority::default()),
        errors: AtomicU64::new(0),
        dropped: Arc::new(AtomicU64::new(0)),
        counts: Default::default(),
        harvested: Default::default(),
    });
    fan.spawn(d.clone())?;
    if sidecar {
        let d2 = d.clone();
        std::thread::Builder::new().name("warden-fan-rekeep".into()).spawn(move || rekeep(&d2, &instance))?;
    }
    if let Some(c) = changes {
        let d2 = d.clone();
        std::thread::Builder::new()
            .name("warden-fan-changes".into())
            .spawn(move || c.run(&*d2, &d2.locate, &d2.files.follow.escaped))?;
    }
    let writer = crate::daemon::events::FileWriter {
        parts: cx.parts.clone(),
        pipeline: cx.pipeline.clone(),
        enricher: cx.enricher.sibling(),
        backend: "fanotify",
        priority: d.writer.clone(),
        dropped: d.dropped.clone(),
    };
    cx.tasks.push(Box::pin(writer.run(rx)));
    Ok(Arc::new(FanotifyFiles(d)))
}

impl Decisions {
    fn counts(&self) -> MutexGuard<'_, HashMap<u32, VerdictCounts>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Context for Decisions {
    fn locate(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Place> {
        let place = self.locate.locate_with(fd, SLOT_DECISIONS, false)?;
        if let (Place::In { root, reason: warden_common::FILE_REASON_ESCAPED, .. }, Some(changes)) =
            (place, &self.changes)
        {
            // Found through another cached name (a hard link out): kept, so
            // it stays protected once that name leaves the cache. (Rare: the
            // identity is read only then.)
            if self.locate.locate(fd, SLOT_DECISIONS).is_ok() {
                changes.record_located(self, &self.locate, &self.files.follow.escaped, root, SLOT_DECISIONS);
            }
        }
        Ok(place)
    }

    fn path_of_fd(&self, d: &FileDecision, fd: std::os::fd::BorrowedFd<'_>) -> std::path::PathBuf {
        match self.locate.locate(fd, SLOT_DECISIONS) {
            Ok(_) => self.path_of(d, SLOT_DECISIONS),
            Err(_) => "(unknown)".into(),
        }
    }

    fn named(&self, verdict: u8) -> bool {
        verdict != warden_common::VERDICT_ALLOWED || !self.summarized
    }

    fn escapes(&self) -> u64 {
        self.changes.as_ref().map_or(0, |c| c.escapes())
    }

    fn settle(&self) {
        if let Some(c) = &self.changes {
            c.settle(self, &self.locate, &self.files.follow.escaped);
        }
    }

    fn path_of(&self, d: &FileDecision, slot: u32) -> std::path::PathBuf {
        match self.locate.located(slot) {
            Ok(l) if d.segment != 0 => {
                let roots = self.files.roots();
                let root = roots.root_path(d.root).map(|p| p.display().to_string()).unwrap_or_default();
                if l.components == 0 && d.reason == warden_common::FILE_REASON_ESCAPED {
                    // Recorded when it left: its names now lead elsewhere.
                    let (dev, ino) = (l.dev, l.ino);
                    return format!("{root}/… (left the tree: device {}:{}, inode {ino})", dev >> 20, dev & 0xfffff)
                        .into();
                }
                crate::files::event_path(&root, l.components, l.truncated, &l.names).into()
            }
            // No walk to a root: name the file by identity.
            Ok(l) => format!("(no path: device {}:{}, inode {})", l.dev >> 20, l.dev & 0xfffff, l.ino).into(),
            Err(_) => "(unknown)".into(),
        }
    }

    fn identify_path(&self, cgroup: Option<&str>) -> Identity {
        match cgroup {
            Some(path) => {
                let compiled = self.files.parts.cell.compiled();
                self.files.parts.identities.identify_cgroup_path(&compiled, path)
            }
            // Gone or unreadable: unidentified (fail closed).
            None => Identity::Governed(None),
        }
    }

    fn verdict(&self, workload: Option<u32>, segment: u16, want: u8) -> (u8, u32) {
        self.files.parts.cell.lock().compiled.file_verdict(workload, segment, want)
    }

    fn needs_intent(&self, workload: Option<u32>, segment: u16) -> bool {
        let Some(w) = workload else { return false };
        let cell = self.files.parts.cell.lock();
        let allow = &cell.compiled.file_allow;
        let access = allow
            .binary_search_by_key(&(w, segment), |(k, _)| (k.workload_id, k.segment_id))
            .ok()
            .map(|i| allow[i].1.access);
        access == Some(warden_common::ACCESS_READ)
    }

    fn roots(&self) -> Arc<Roots> {
        self.files.roots()
    }

    fn policy_generation(&self) -> u64 {
        self.files.parts.cell.generation()
    }

    fn emit(&self, d: FileDecision) {
        {
            let mut counts = self.counts();
            let c = counts.entry(d.workload.unwrap_or(0)).or_default();
            match d.verdict {
                warden_common::VERDICT_ALLOWED => c.allowed += 1,
                warden_common::VERDICT_DENIED => c.denied += 1,
                _ => c.audited += 1,
            }
        }
        // Enriched (tgid, comm, exe, cgroup) by the event writer, off the decision path.
        let urgent = d.verdict != warden_common::VERDICT_ALLOWED;
        if self.tx.try_send(d).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if urgent || self.tx.capacity() < QUEUE * 3 / 4 {
            self.writer.boost();
        }
    }

    fn note_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn backend_failed(&self, reason: String) {
        *self.files.failure() = Some(reason);
    }
}

impl Enforcer for FanotifyFiles {
    /// fanotify only sees filesystems it marked: those of new roots are
    /// marked before the switch, so no open on them escapes a decision.
    fn prepare(&self, _next: &CompiledPolicy, set: &SetParts) -> Result<(), String> {
        if let Some((path, e)) = self.0.fan.mark_added(&set.roots).into_iter().next() {
            return Err(format!("cannot mark the filesystem of {}: {e}", path.display()));
        }
        if let Some(c) = &self.0.changes {
            for (path, e) in c.watch(&set.roots) {
                tracing::error!(path = %path.display(), error = %e, "changes on this filesystem are not watched");
            }
        }
        Ok(())
    }

    /// The roots switch with the rules (before the generation moves, so a
    /// decision that read anything old is made again); the counters of the
    /// old policy's ids are kept by name.
    fn commit(&self, old: &CompiledPolicy, set: &SetParts) {
        self.0.files.commit(set);
        let mut harvested = self.0.harvested.lock().unwrap_or_else(|p| p.into_inner());
        for (id, c) in self.0.counts().drain() {
            if let Some(name) = workload_name(old, id) {
                *harvested.entry(name.to_string()).or_default() += c;
            }
        }
    }

    /// Filesystems left without roots stop sending opens to the agent (a
    /// failure only costs latency there, so it is logged).
    fn settle(&self) {
        for (path, e) in self.0.fan.unmark_dropped(&self.0.files.roots()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot unmark a filesystem that no longer holds a segment");
        }
    }

    fn recheck(&self, _full: bool) {
        if let Some(roots) = self.0.files.recheck_missing() {
            for (path, e) in self.0.fan.mark_added(&roots) {
                tracing::error!(path = %path.display(), error = %e, "cannot mark a new segment filesystem");
            }
            if let Some(c) = &self.0.changes {
                for (path, e) in c.watch(&roots) {
                    tracing::error!(path = %path.display(), error = %e, "changes on this filesystem are not watched");
                }
            }
        }
    }

    fn report(&self, policy: &Policy, compiled: &CompiledPolicy) -> EnforcementStatus {
        let mut e = self.0.files.report(policy, compiled);
        if super::configured(compiled) {
            let mounts = crate::system::mountinfo::current().unwrap_or_default();
            e.marked =
                self.0.fan.marked().iter().map(|p| crate::system::mountinfo::filesystem_of(p, &mounts)).collect();
            e.restart = if self.0.keeper.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(peer_open) {
                words::RESTART_KEEPER
            } else {
                words::RESTART_NO_KEEPER
            }
            .into();
            if self.0.changes.is_some() {
                e.detected = crate::files::fanotify::changes::DETECTED.map(String::from).to_vec();
            }
        }
        e
    }

    fn extend(&self, report: &mut StatusReport) {
        report.events.file_events_dropped = self.0.dropped.load(Ordering::Relaxed);
        report.events.file_errors = self.0.errors.load(Ordering::Relaxed);
    }

    fn counts(&self, name: &str, id: u32) -> Option<VerdictCounts> {
        let mut c = self.0.counts().get(&id).copied().unwrap_or_default();
        c += self.0.harvested.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied().unwrap_or_default();
        Some(c)
    }
}

/// A keeper sidecar restarted (its container did) while this agent lives:
/// the new one waits in standby; give it the group again, so a later crash
/// of this agent is covered again.
fn rekeep(d: &Decisions, instance: &str) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let alive = d.keeper.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(peer_open);
        if alive || !matches!(keeper::take_over(instance), Ok(keeper::Found::Standby)) {
            continue;
        }
        match keeper::give(instance, d.fan.group(), d.locate.program()) {
            Ok(conn) => {
                tracing::warn!("the keeper sidecar was restarted: gave it the fanotify group again");
                *d.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
            }
            Err(e) => tracing::warn!(error = %e, "the restarted keeper sidecar did not take the group"),
        }
    }
}

/// The instance's keeper; with a sidecar configured, waits for it a while
/// (the pod's containers start in no set order).
fn find_keeper(instance: &str, sidecar: bool) -> std::io::Result<keeper::Found> {
    let deadline = std::time::Instant::now() + keeper::SIDECAR_WAIT;
    loop {
        match keeper::take_over(instance)? {
            keeper::Found::Absent if sidecar && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            found => return Ok(found),
        }
    }
}

/// Whether the keeper still holds its end (a killed keeper closes it: then
/// a crash of this agent would let held opens through, and status says so).
fn peer_open(conn: &std::os::unix::net::UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: a peek of at most one byte into our buffer, never blocking.
    let n = unsafe { libc::recv(conn.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n != 0 && !(n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN))
}
