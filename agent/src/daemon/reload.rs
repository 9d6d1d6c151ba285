//! Hot reload: the config file → a validated policy → one switch of the
//! kernel's policy set (`PolicyMaps::install`: the whole new policy is
//! written beside the old one, then one word flips the hooks over).
//! Triggered by SIGHUP, `warden reload` and changes of the file itself or
//! of its OTLP headers file (`watch`). A file that does not load keeps the
//! last good policy; the error shows in `warden status` and as a `policy`
//! event.
use std::{sync::Arc, time::Instant};

use super::{
    Agent,
    kinds::{self, KINDS},
    lifecycle::SetParts,
};
use crate::{
    clock::now_rfc3339,
    policy::{self, CompiledPolicy, Config, Policy},
    report::ReloadStatus,
    settings::{AgentConfig, EventsConfig},
};

pub use crate::report::ReloadOutcome as Outcome;

impl Agent {
    /// Reads the config file again and applies it, or keeps the last good
    /// policy and says why. `trigger`: signal | command | file.
    pub fn reload(&self, trigger: &str) -> Outcome {
        // One reload at a time: triggers may race (a SIGHUP during a watch).
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let t0 = Instant::now();
        let cell = &self.parts.cell;
        let loaded =
            policy::load_file(cell.config_path()).map_err(|e| format!("invalid policy, kept the last good one:\n{e}"));
        let sha256 = loaded.as_ref().map(|c| c.policy.source_sha256.clone()).unwrap_or_default();
        let result = loaded.and_then(|p| self.apply(p));
        let duration_us = t0.elapsed().as_micros() as u64;
        let (applied, error, pending_restart) = match result {
            Ok(pending) => (true, None, pending),
            Err(e) => (false, Some(e), Vec::new()),
        };
        let generation = cell.generation();
        let outcome = Outcome { applied, generation, sha256, error, pending_restart, duration_us };
        self.note_reload(trigger, &outcome);
        outcome
    }

    /// Switches to `policy`. Everything that can fail (compiling, resolving
    /// roots and devices, a kind that cannot take the change) happens
    /// before the switch; an error leaves the old policy in force.
    fn apply(&self, config: Config) -> Result<Vec<String>, String> {
        let Config { agent, policy, warnings } = config;
        for w in &warnings {
            tracing::warn!("policy: {w}");
        }
        let compiled = Arc::new(policy.compile());
        self.check_started(&compiled)?;
        let pending = restart_only_changes(&self.settings, &agent);
        let set = kinds::resolve(&compiled, &self.settings);
        for e in self.enforcers() {
            e.prepare(&compiled, &set)?;
        }
        self.switch(policy, compiled, &set).map_err(|e| format!("{e:#}"))?;
        for e in self.enforcers() {
            e.settle();
        }
        self.rotate_otlp_headers(&agent.events);
        Ok(pending)
    }

    /// New header values (a token rotated in `headersFile`) apply to the
    /// running exporter at once. With any other OTLP change pending a
    /// restart they wait too: a new token must not go to the old endpoint.
    fn rotate_otlp_headers(&self, new: &EventsConfig) {
        let sink = self.pipeline.get().and_then(|p| p.otlp.as_ref());
        let (Some(sink), Some(o)) = (sink, &new.otlp) else { return };
        if !self.settings.events.same_but_otlp_headers(new) {
            return;
        }
        match sink.set_headers(&o.headers) {
            Ok(true) => tracing::info!(headers = ?o.header_names(), "OTLP headers updated"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "OTLP headers not updated; the previous ones stay"),
        }
    }

    /// A reload cannot start a kind the agent did not start: refusing is
    /// better than a policy whose new segments nothing enforces. (A kind
    /// started for an earlier policy still runs: A, then B without file
    /// segments, then A again is fine.)
    fn check_started(&self, new: &CompiledPolicy) -> Result<(), String> {
        for (kind, e) in KINDS.iter().zip(&self.enforcers) {
            if e.is_none() && (kind.configured)(new) {
                return Err(kind.not_started.into());
            }
        }
        Ok(())
    }

    /// Under the cell lock: every tracked cgroup identified under the new
    /// policy, the other kernel set filled and flipped to, then the
    /// identities and each kind follow; the generation moves last, so a
    /// decision that read anything old is made again. Decisions of the old
    /// set still in flight are named by its policy, kept with that set.
    fn switch(&self, policy: Policy, compiled: Arc<CompiledPolicy>, set: &SetParts) -> anyhow::Result<()> {
        let mut cell = self.parts.cell.lock();
        let same_file = policy.source_sha256 == cell.policy.source_sha256;
        let staged = self.parts.identities.stage(&cell, &compiled, same_file);
        let tag = crate::policy::digest_tag(&policy.source_sha256);
        let old = cell.compiled.clone();
        cell.install(policy, &set.contents(&compiled, &staged.entries(), tag))?;
        self.parts.identities.commit(&cell, staged);
        for e in self.enforcers() {
            e.commit(&old, set);
        }
        self.parts.cell.bump_generation();
        Ok(())
    }

    fn note_reload(&self, trigger: &str, o: &Outcome) {
        match &o.error {
            None => tracing::info!(trigger, generation = o.generation, duration_us = o.duration_us, "policy reloaded"),
            Some(e) => tracing::error!(trigger, error = %e, "policy reload refused"),
        }
        for p in &o.pending_restart {
            tracing::warn!(setting = %p, "changed in the config file; takes effect when the agent restarts");
        }
        let mut r = self.parts.health.reload_status();
        r.attempts += 1;
        if !o.applied {
            r.failures += 1;
        }
        *r = ReloadStatus {
            last_at: Some(now_rfc3339()),
            last_trigger: Some(trigger.into()),
            last_result: Some(if o.applied { "applied" } else { "refused" }.into()),
            last_error: o.error.clone(),
            last_sha256: Some(o.sha256.clone()),
            last_duration_us: o.duration_us,
            pending_restart: if o.applied { o.pending_restart.clone() } else { r.pending_restart.clone() },
            ..r.clone()
        };
        drop(r);
        self.emit_policy_event(o);
    }

    /// A `policy` event: every sink learns that the rules changed (or that a
    /// change was refused).
    fn emit_policy_event(&self, o: &Outcome) {
        let Some(p) = self.pipeline.get() else { return };
        let ev = crate::enrich::PolicyEvent::new(&p.numbering, &self.node, o);
        let ev = Arc::new(crate::enrich::Event::Policy(ev));
        p.fanout.encode_and_deliver(&[ev], &mut Vec::new(), || {});
    }
}

/// `agent:` settings that differ from those the agent started with (a
/// running agent keeps its sockets, sinks, ring size, cgroup root and
/// sources): named so status can say a restart is due.
fn restart_only_changes(a: &AgentConfig, b: &AgentConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(format!("agent.{name}"));
        }
    };
    check("cgroupRoot", a.cgroup_root != b.cgroup_root);
    check("socket", a.socket != b.socket);
    check("nodeName", a.node_name != b.node_name);
    check("ringBufferBytes", a.ring_buffer_bytes != b.ring_buffer_bytes);
    // Header values alone are applied by the reload (`rotate_otlp_headers`).
    check("events", !a.events.same_but_otlp_headers(&b.events));
    check("metrics", a.metrics != b.metrics);
    check("files.backend", a.files != b.files);
    check("kubernetes", a.kubernetes != b.kubernetes);
    check("slurm", a.slurm != b.slurm);
    check("devices", a.devices != b.devices);
    out
}

/// Runs a reload off the async workers. A failed reload must never end
/// the agent (its tasks ending stops it), so even a panic is only logged.
async fn reload_blocking(agent: &Arc<Agent>, trigger: &'static str) {
    let s = agent.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || s.reload(trigger)).await {
        tracing::error!(trigger, error = %e, "policy reload failed; the last good policy stays");
    }
}

/// SIGHUP reloads (`systemctl reload warden`).
pub async fn on_sighup(agent: Arc<Agent>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    while hup.recv().await.is_some() {
        reload_blocking(&agent, "signal").await;
    }
    Ok(())
}

/// Reloads when the config file's content (or the OTLP headers file's)
/// changes. Watches its directory, not the file: editors replace files by
/// rename, and a Kubernetes ConfigMap or Secret volume swaps a `..data`
/// symlink, so the file's own inode may never change. Events are debounced,
/// and content that is the same as the last attempt (loaded or refused) is
/// not applied again.
///
/// If the directory cannot be watched (e.g. the inotify watch limit), the
/// agent keeps running and says so: SIGHUP and `warden reload` still work.
pub async fn watch(agent: Arc<Agent>) -> anyhow::Result<()> {
    if let Err(e) = watch_file(&agent).await {
        tracing::warn!(error = %e, "not watching the config file: reload with SIGHUP or `warden reload`");
    }
    std::future::pending::<()>().await;
    Ok(())
}

async fn watch_file(agent: &Arc<Agent>) -> anyhow::Result<()> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let path = agent.parts.cell.config_path().to_path_buf();
    // The OTLP headers file too (a mounted Secret whose token rotates).
    let headers = agent.settings.events.otlp.as_ref().and_then(|o| o.headers_file.clone());
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let flags = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB;
    let config_dir = parent_dir(&path);
    inotify.add_watch(&config_dir, flags)?;
    if let Some(h) = &headers
        && parent_dir(h) != config_dir
        && let Err(e) = inotify.add_watch(&parent_dir(h), flags)
    {
        tracing::warn!(file = %h.display(), error = %e, "not watching the OTLP headers file: reload to apply changes");
    }
    let digest = || Some((file_digest(&path)?, headers.as_deref().map(file_digest)));
    // SAFETY: InotifyFd owns the descriptor and always returns the same one.
    let fd =
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("watching {}: {e}", config_dir.display()))?;
    let mut last = digest();
    loop {
        let mut ready = fd.readable().await?;
        // Drain everything queued; which entry changed does not matter.
        while ready.get_inner().0.read_events().is_ok_and(|e| !e.is_empty()) {}
        ready.clear_ready();
        // A save is often several events (create, write, rename); a short
        // pause lets it finish. Correctness does not depend on it: every
        // event re-reads the file, and a half-written one is refused, not
        // applied.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        while fd.get_ref().0.read_events().is_ok_and(|e| !e.is_empty()) {}
        let now = digest();
        if now == last || now.is_none() {
            // Unchanged, or gone for now (mid-swap): keep the policy.
            continue;
        }
        last = now;
        reload_blocking(agent, "file").await;
    }
}

fn parent_dir(path: &std::path::Path) -> std::path::PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// An inotify instance as tokio registers it.
struct InotifyFd(nix::sys::inotify::Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// Hash of the file's bytes (following symlinks); None if unreadable.
fn file_digest(path: &std::path::Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path).ok().map(|b| sha2::Sha256::digest(&b).into())
}

impl Agent {
    /// Every kind's recheck, never in the middle of a reload (it would
    /// write the old policy's roots or nodes).
    pub fn recheck(&self, full: bool) {
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        for e in self.enforcers() {
            e.recheck(full);
        }
    }
}
