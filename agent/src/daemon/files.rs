//! Wires a file backend to the daemon: identity, verdicts, counters and
//! events (through a bounded channel, so a slow sink never blocks opens).
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc;

use super::{state::Shared, writer_priority::WriterPriority};
use crate::files::{Context, FileDecision, Identity, roots::Roots};

/// File decisions queued for the sink.
pub type FileEventTx = mpsc::Sender<FileDecision>;
/// What `start` hands the daemon when a userspace backend needs an event task.
pub type FileEvents = Option<(mpsc::Receiver<FileDecision>, &'static str, Arc<WriterPriority>)>;

/// Capacity of the queue from the decision thread to the event writer.
const QUEUE: usize = 65536;

pub struct FilesCtx {
    pub shared: Arc<Shared>,
    pub roots: Mutex<Arc<Roots>>,
    /// To mark filesystems of roots that appear later.
    pub fanotify: Mutex<Option<Arc<crate::files::fanotify::Fanotify>>>,
    pub tx: FileEventTx,
    pub writer: Arc<WriterPriority>,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
}

impl Context for FilesCtx {
    fn identify_path(&self, cgroup: Option<&str>) -> Identity {
        match cgroup {
            Some(path) => self.shared.identify_cgroup_path(path),
            // Gone or unreadable: unidentified (fail closed).
            None => Identity::Governed(None),
        }
    }

    fn verdict(&self, workload: Option<u32>, segment: u16, want: u8) -> (u8, u32) {
        self.shared.file_verdict(workload, segment, want)
    }

    fn needs_intent(&self, workload: Option<u32>, segment: u16) -> bool {
        self.shared.file_access(workload, segment) == Some(warden_common::ACCESS_READ)
    }

    fn roots(&self) -> Arc<Roots> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn policy_generation(&self) -> u64 {
        self.shared.policy_generation()
    }

    fn emit(&self, d: FileDecision) {
        self.shared.count_file(d.workload, d.verdict);
        // Enriched (tgid, comm, exe, cgroup) by the event task, off the decision path.
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
        self.shared.set_file_failure(reason);
    }
}

/// fanotify can block opens only; these it cannot see or stop.
pub const FANOTIFY_BLIND: [&str; 6] = [
    "create (file appears before the open is denied)",
    "rename",
    "unlink",
    "hard link",
    "truncate(2) by path",
    "mkdir/rmdir",
];

/// What the in-kernel backend blocks.
pub const LSM_ENFORCES: [&str; 8] =
    ["open (read/write/truncate)", "create", "rename", "unlink", "hard link", "truncate(2)", "mkdir/rmdir", "symlink"];

/// Picks and starts the file backend. `Err` means the agent must not start.
pub fn start(
    shared: &Arc<Shared>,
    files: &[crate::policy::FileRoot],
    pref: crate::policy::FileBackend,
    enforce: bool,
    try_lsm: impl FnOnce() -> Result<crate::files::BackendChoice, String>,
) -> anyhow::Result<FileEvents> {
    use crate::{files::BackendChoice, policy::FileBackend};
    let roots = Arc::new(Roots::resolve(files));
    for m in &roots.missing {
        tracing::warn!(root = %m.display(), "file segment root does not exist: not protected until it does");
    }
    shared.set_file_roots(&roots)?;
    let mut reasons = Vec::new();
    if matches!(pref, FileBackend::Auto | FileBackend::Lsm) {
        match try_lsm() {
            Ok(choice) => {
                shared.set_file_backend(choice, roots, None);
                return Ok(None);
            }
            Err(why) => reasons.push(format!("BPF-LSM unavailable: {why}")),
        }
    }
    if matches!(pref, FileBackend::Auto | FileBackend::Fanotify) {
        match crate::files::fanotify::Fanotify::new(&roots) {
            Ok(fan) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                let writer = Arc::new(WriterPriority::default());
                let ctx = Arc::new(FilesCtx {
                    shared: shared.clone(),
                    roots: Mutex::new(roots.clone()),
                    tx,
                    writer: writer.clone(),
                    errors: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    fanotify: Mutex::new(None),
                });
                let fan = Arc::new(fan);
                *ctx.fanotify.lock().unwrap_or_else(|p| p.into_inner()) = Some(fan.clone());
                fan.spawn(ctx.clone())?;
                reasons.push("fanotify permission events on the filesystems holding segment roots".into());
                let choice = BackendChoice {
                    backend: "fanotify".into(),
                    reason: reasons.join("; "),
                    enforces: vec!["open for read".into(), "open for write/append/truncate (O_TRUNC)".into()],
                    not_enforced: FANOTIFY_BLIND.iter().map(|s| s.to_string()).collect(),
                };
                shared.set_file_backend(choice, roots, Some(ctx));
                return Ok(Some((rx, "fanotify", writer)));
            }
            Err(e) => reasons.push(format!("fanotify unavailable: {e}")),
        }
    }
    let why = format!("no backend can enforce file segments on this node ({})", reasons.join("; "));
    if enforce {
        anyhow::bail!("{why}; refusing to start in enforce mode (file segments would be unprotected)");
    }
    tracing::error!("{why}");
    shared.set_file_backend(
        BackendChoice {
            backend: "none".into(),
            reason: why.clone(),
            enforces: vec![],
            not_enforced: vec!["all".into()],
        },
        roots,
        None,
    );
    shared.set_file_failure(why);
    Ok(None)
}

/// Re-resolves roots that did not exist (a dataset volume mounted after the
/// agent started): once one appears it is protected without a restart.
pub fn recheck_missing_roots(shared: &Arc<Shared>) {
    // Not in the middle of a reload: it would write the old policy's roots.
    let _serial = shared.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
    let Some(old) = shared.file_roots() else { return };
    if old.missing.is_empty() {
        return;
    }
    let files = shared.with_compiled(|c| c.files.clone());
    let roots = Roots::resolve(&files);
    if roots.missing.len() == old.missing.len() {
        return;
    }
    let roots = Arc::new(roots);
    if let Err(e) = shared.set_file_roots(&roots) {
        tracing::error!(error = %e, "cannot write new file segment roots");
        return;
    }
    if let Some(ctx) = shared.file_ctx() {
        if let Some(fan) = ctx.fanotify.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            for (path, e) in fan.mark_added(&roots) {
                tracing::error!(path = %path.display(), error = %e, "cannot mark a new segment filesystem");
            }
        }
        *ctx.roots.lock().unwrap_or_else(|p| p.into_inner()) = roots.clone();
    }
    for (path, ..) in roots.resolved.iter().filter(|(p, ..)| old.missing.contains(p)) {
        tracing::info!(root = %path.display(), "file segment root appeared: now protected");
    }
    shared.update_file_roots(roots);
}
