//! Wires a file backend to the daemon: identity, verdicts, counters and
//! events (through a bounded channel, so a slow sink never blocks opens).
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc;

use super::state::Shared;
use crate::files::{Context, FileDecision, Identity, roots::Roots};

/// A file decision queued for the sink, with the opener's cgroup path.
pub type FileEvent = (FileDecision, Option<String>);
pub type FileEventTx = mpsc::Sender<FileEvent>;
/// What `start` hands the daemon when a userspace backend needs an event task.
pub type FileEvents = Option<(mpsc::Receiver<FileEvent>, &'static str)>;

pub struct FilesCtx {
    pub shared: Arc<Shared>,
    pub roots: Mutex<Arc<Roots>>,
    pub tx: FileEventTx,
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

    fn emit(&self, d: FileDecision) {
        self.shared.count_file(d.workload, d.verdict);
        // Enriched (tgid, comm, exe, cgroup) by the event task, off the decision path.
        if self.tx.try_send((d, None)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
    // Kernel map of roots by identity (value: segment | root index << 16;
    // the index is the position in `compiled.files`, for event paths).
    let kernel_roots: Vec<_> = files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            roots.resolved.iter().find(|(p, _, _)| *p == f.path).map(|(_, seg, key)| (*key, *seg, i as u16))
        })
        .collect();
    shared.set_file_roots(&kernel_roots)?;
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
                let (tx, rx) = mpsc::channel(65536);
                let ctx = Arc::new(FilesCtx {
                    shared: shared.clone(),
                    roots: Mutex::new(roots.clone()),
                    tx,
                    errors: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                });
                Arc::new(fan).spawn(ctx.clone())?;
                reasons.push("fanotify permission events on the filesystems holding segment roots".into());
                let choice = BackendChoice {
                    backend: "fanotify".into(),
                    reason: reasons.join("; "),
                    enforces: vec!["open for read".into(), "open for write/append/truncate (O_TRUNC)".into()],
                    not_enforced: FANOTIFY_BLIND.iter().map(|s| s.to_string()).collect(),
                };
                shared.set_file_backend(choice, roots, Some(ctx));
                return Ok(Some((rx, "fanotify")));
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
