//! File segments: dataset and weight trees, read vs write. Backends,
//! strongest first: BPF-LSM (in-kernel decision, sees namespace operations
//! too) and fanotify permission events (userspace decision, opens only).
//! `agent.files.backend` narrows the choice; with none available an
//! enforcing agent refuses to start, an auditing one says so and runs.
mod fanotify;
mod lsm;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use warden_common::InodeKey;

use crate::{
    daemon::{
        Parts,
        lifecycle::{Enforcer, SetParts, StartCx},
    },
    files::{
        escaped::{Escaped, ScanReport},
        locate::{Locate, SLOT_SCAN},
        roots::Roots,
    },
    policy::{CompiledPolicy, Mode, Policy},
    report::{EnforcementStatus, FollowStatus},
    settings::{AgentConfig, FileBackend},
};

pub fn configured(c: &CompiledPolicy) -> bool {
    c.has_file_segments()
}

/// The segment roots of `policy` as they exist on this node (by inode).
pub fn resolve(policy: &CompiledPolicy, _: &AgentConfig, set: &mut SetParts) {
    let roots = Roots::resolve(&policy.files);
    set.file_roots = roots.kernel_entries();
    set.roots = Arc::new(roots);
}

/// The backend in force and why, for status.
struct Choice {
    backend: &'static str,
    reason: String,
    /// Operations it cannot block on this node (reported, never hidden).
    not_enforced: Vec<String>,
}

/// What every file backend keeps: the roots resolved on this node, the
/// choice, and a failure that stops enforcement.
struct FileRoots {
    parts: Parts,
    roots: Mutex<Arc<Roots>>,
    choice: Choice,
    failure: Mutex<Option<String>>,
    follow: Arc<Follow>,
}

/// Files that keep their tree's protection elsewhere, and the scans that
/// find those with other names already.
struct Follow {
    escaped: Escaped,
    locate: Option<Arc<Locate>>,
    /// Roots (by identity) scanned or being scanned.
    scanned: Mutex<HashSet<InodeKey>>,
    running: AtomicU64,
    report: Mutex<ScanReport>,
}

impl Follow {
    /// Scans, on a thread of its own, the roots not scanned yet: a tree of
    /// millions of files must not hold up the start or a reload. Files with
    /// other links are protected from the moment they are recorded; until
    /// the scan is done, status says so.
    fn scan_new(self: &Arc<Self>, roots: &Roots) {
        let todo: Vec<(std::path::PathBuf, InodeKey)> = {
            let mut scanned = self.scanned.lock().unwrap_or_else(|p| p.into_inner());
            roots.resolved.iter().filter(|r| scanned.insert(r.2)).map(|r| (r.0.clone(), r.2)).collect()
        };
        if todo.is_empty() {
            return;
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("warden-file-scan".into()).spawn(move || {
            for (path, key) in todo {
                let started = std::time::Instant::now();
                let r = me.escaped.scan(&path, key, me.locate.as_deref(), SLOT_SCAN);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(root = %path.display(), files = r.files, multi_linked = r.multi_linked, errors = r.errors, ms, "segment tree scanned");
                let mut total = me.report.lock().unwrap_or_else(|p| p.into_inner());
                total.files += r.files;
                total.multi_linked += r.multi_linked;
                total.errors += r.errors;
            }
            me.running.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "cannot start the segment tree scan");
        }
    }

    fn status(&self) -> FollowStatus {
        let r = *self.report.lock().unwrap_or_else(|p| p.into_inner());
        FollowStatus {
            scan: if self.running.load(Ordering::SeqCst) > 0 { "scanning" } else { "done" }.into(),
            files_scanned: r.files,
            multi_linked: r.multi_linked,
            scan_errors: r.errors,
            escaped: self.escaped.count() as u64,
        }
    }
}

impl FileRoots {
    fn roots(&self) -> Arc<Roots> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_roots(&self, roots: Arc<Roots>) {
        *self.roots.lock().unwrap_or_else(|p| p.into_inner()) = roots;
    }

    fn failure(&self) -> MutexGuard<'_, Option<String>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(&self, set: &SetParts) {
        self.set_roots(set.roots.clone());
        self.follow.scan_new(&set.roots);
    }

    /// Re-resolves roots that did not exist (a dataset volume mounted after
    /// the agent started): once one appears it is protected without a
    /// restart. Returns the new roots once written to the active set.
    fn recheck_missing(&self) -> Option<Arc<Roots>> {
        let old = self.roots();
        if old.missing.is_empty() {
            return None;
        }
        let roots = Roots::resolve(&self.parts.cell.compiled().files);
        if roots.missing.len() == old.missing.len() {
            return None;
        }
        if let Err(e) = self.parts.cell.lock().maps.set_file_roots(&roots.kernel_entries()) {
            tracing::error!(error = %e, "cannot write new file segment roots");
            return None;
        }
        for (path, ..) in roots.resolved.iter().filter(|(p, ..)| old.missing.contains(p)) {
            tracing::info!(root = %path.display(), "file segment root appeared: now protected");
        }
        let roots = Arc::new(roots);
        self.set_roots(roots.clone());
        self.follow.scan_new(&roots);
        Some(roots)
    }

    fn report(&self, policy: &Policy, compiled: &CompiledPolicy) -> EnforcementStatus {
        let mut e = EnforcementStatus::not_configured("files");
        if !configured(compiled) {
            return e;
        }
        let c = &self.choice;
        e.backend = c.backend.into();
        e.reason = c.reason.clone();
        e.not_enforced = c.not_enforced.clone();
        e.state = match (policy.mode, c.not_enforced.is_empty()) {
            (Mode::Enforce, false) => "partial".into(),
            _ => super::kernel_state(policy.mode, policy.segments.iter().filter(|s| !s.paths.is_empty())),
        };
        e.missing = self.roots().missing.iter().map(|p| p.display().to_string()).collect();
        e.follow = Some(self.follow.status());
        if c.backend == crate::report::words::FILES_LSM {
            e.restart = crate::report::words::RESTART_PINNED.into();
        }
        if let Some(why) = &*self.failure() {
            e.state = "failed".into();
            e.reason = why.clone();
        }
        e
    }
}

/// Picks and starts the file backend. `Err` means the agent must not start.
pub fn start(cx: &mut StartCx<'_>) -> anyhow::Result<Option<Arc<dyn Enforcer>>> {
    if !configured(cx.compiled) {
        return Ok(None);
    }
    // The first kernel set holds the roots already.
    let roots = cx.set.roots.clone();
    for m in &roots.missing {
        tracing::warn!(root = %m.display(), "file segment root does not exist: not protected until it does");
    }
    let pref = cx.settings.files.backend;
    let mut reasons = Vec::new();
    // The kernel walk behind one of the agent's descriptors: how fanotify
    // learns where a file is, and how scans read inode generations.
    let locate = cx.hooks.load_file_locate().map(Arc::new);
    let follow = Arc::new(Follow {
        escaped: cx.hooks.take_escaped()?,
        locate: locate.as_ref().ok().cloned(),
        scanned: Mutex::default(),
        running: AtomicU64::new(0),
        report: Mutex::default(),
    });
    if matches!(pref, FileBackend::Auto | FileBackend::Lsm) {
        match lsm::start(cx) {
            Ok(choice) => return Ok(Some(Arc::new(FileRoots::new(cx, roots, choice, follow)))),
            Err(why) => reasons.push(format!("BPF-LSM unavailable: {why}")),
        }
    }
    if matches!(pref, FileBackend::Auto | FileBackend::Fanotify) {
        match &locate {
            Ok(locate) => match fanotify::start(cx, roots.clone(), locate.clone(), follow.clone(), &mut reasons) {
                Ok(e) => return Ok(Some(e)),
                Err(e) => reasons.push(format!("fanotify unavailable: {e}")),
            },
            Err(e) => reasons.push(format!("fanotify unusable: the file_locate program: {e}")),
        }
    }
    let why = format!("no backend can enforce file segments on this node ({})", reasons.join("; "));
    if cx.enforce {
        anyhow::bail!("{why}; refusing to start in enforce mode (file segments would be unprotected)");
    }
    tracing::error!("{why}");
    let choice = Choice { backend: "none", reason: why.clone(), not_enforced: vec!["all".into()] };
    let none = FileRoots::new(cx, roots, choice, follow);
    *none.failure() = Some(why);
    Ok(Some(Arc::new(none)))
}

impl FileRoots {
    fn new(cx: &StartCx<'_>, roots: Arc<Roots>, choice: Choice, follow: Arc<Follow>) -> Self {
        follow.scan_new(&roots);
        Self { parts: cx.parts.clone(), roots: Mutex::new(roots), choice, failure: Mutex::new(None), follow }
    }
}

/// The in-kernel backend (BPF-LSM), and audit mode with no backend: the
/// kernel's own maps and counters do the rest, so what is left here is
/// keeping the roots current and reporting them.
impl Enforcer for FileRoots {
    fn commit(&self, _old: &CompiledPolicy, set: &SetParts) {
        FileRoots::commit(self, set);
    }

    fn recheck(&self, _full: bool) {
        self.recheck_missing();
    }

    fn report(&self, policy: &Policy, compiled: &CompiledPolicy) -> EnforcementStatus {
        FileRoots::report(self, policy, compiled)
    }
}
