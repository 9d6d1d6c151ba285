//! File segments: dataset and weight trees, read vs write. Backends,
//! strongest first: BPF-LSM (in-kernel decision, sees namespace operations
//! too) and fanotify permission events (userspace decision, opens only).
//! `agent.files.backend` narrows the choice; with none available an
//! enforcing agent refuses to start, an auditing one says so and runs.
mod fanotify;
mod lsm;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::{
    daemon::{
        Parts,
        lifecycle::{Enforcer, SetParts, StartCx},
    },
    files::roots::Roots,
    policy::{CompiledPolicy, Mode, Policy},
    report::EnforcementStatus,
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
    if matches!(pref, FileBackend::Auto | FileBackend::Lsm) {
        match lsm::start(cx) {
            Ok(choice) => return Ok(Some(Arc::new(FileRoots::new(cx, roots, choice)))),
            Err(why) => reasons.push(format!("BPF-LSM unavailable: {why}")),
        }
    }
    if matches!(pref, FileBackend::Auto | FileBackend::Fanotify) {
        // fanotify names a file by the descriptor it hands the agent; the
        // kernel walk behind that descriptor says where the file is.
        match cx.hooks.load_file_locate() {
            Ok(locate) => match fanotify::start(cx, roots.clone(), Arc::new(locate), &mut reasons) {
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
    let none = FileRoots::new(cx, roots, choice);
    *none.failure() = Some(why);
    Ok(Some(Arc::new(none)))
}

impl FileRoots {
    fn new(cx: &StartCx<'_>, roots: Arc<Roots>, choice: Choice) -> Self {
        Self { parts: cx.parts.clone(), roots: Mutex::new(roots), choice, failure: Mutex::new(None) }
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
