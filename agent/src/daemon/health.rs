//! Health: whether the agent is ready and live, which programs it attached
//! and pinned, and how the last reload went.
use std::sync::{
    Mutex, MutexGuard, OnceLock,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use crate::{
    hooks::{Hooks, guard::Finding},
    identity::delay::monotonic_ns,
    report::{IntegrityStatus, PinStatus, ProgramStatus, ReloadStatus},
};

/// A verification older than this no longer backs "enforced" (the guard
/// checks every `GUARD_PERIOD`, so a healthy agent is never near it).
pub const VERIFIED_MAX_AGE_MS: u64 = 1_000;

/// What the guard reported last.
#[derive(Default)]
struct Integrity {
    /// CLOCK_MONOTONIC ns of the last pass; 0: none yet.
    checked_ns: u64,
    links: usize,
    maps: usize,
    tamper_events: u64,
    last_tamper: Option<String>,
    broken: Vec<String>,
    /// The last pass changed something: not whole until a pass confirms it.
    repaired: Vec<String>,
}

pub struct Health {
    /// Set once every hook is attached and cgroups are identified.
    ready: AtomicBool,
    /// CLOCK_MONOTONIC ns of the kernel-event task's last pass (liveness).
    heartbeat_ns: AtomicU64,
    decode_errors: AtomicU64,
    programs: OnceLock<Vec<ProgramStatus>>,
    pins: OnceLock<PinStatus>,
    /// Where /metrics is served (the bound address, port 0 resolved).
    metrics_address: OnceLock<String>,
    reload: Mutex<ReloadStatus>,
    integrity: Mutex<Integrity>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
            heartbeat_ns: AtomicU64::new(monotonic_ns()),
            decode_errors: AtomicU64::new(0),
            programs: OnceLock::new(),
            pins: OnceLock::new(),
            metrics_address: OnceLock::new(),
            reload: Mutex::new(ReloadStatus::default()),
            integrity: Mutex::default(),
        }
    }
}

impl Health {
    /// After every backend attached, so status lists all programs.
    pub fn set_programs(&self, hooks: &Hooks) {
        let p = hooks.pins();
        let (host_bpffs, host_bpffs_detail) = match crate::system::mounts::on_hosts_bpffs(&p.dir) {
            Ok(true) => (true, String::new()),
            Ok(false) => (false, "the pin directory is not on the host's bpffs".to_string()),
            Err(e) => (false, format!("cannot tell whether the pins are on the host's bpffs: {e}")),
        };
        let _ = self.pins.set(PinStatus {
            dir: p.dir.display().to_string(),
            adopted: p.adopted,
            links: p.pinned_links(),
            host_bpffs,
            host_bpffs_detail,
        });
        let programs = hooks
            .attached
            .iter()
            .map(|a| ProgramStatus {
                name: a.name.into(),
                kind: a.kind.into(),
                attached_to: a.attached_to.clone(),
                program_id: a.program_id,
            })
            .collect();
        let _ = self.programs.set(programs);
    }

    pub fn programs(&self) -> Vec<ProgramStatus> {
        self.programs.get().cloned().unwrap_or_default()
    }

    pub fn pins(&self) -> PinStatus {
        self.pins.get().cloned().unwrap_or_default()
    }

    pub fn set_metrics_address(&self, addr: String) {
        let _ = self.metrics_address.set(addr);
    }

    pub fn metrics_address(&self) -> Option<String> {
        self.metrics_address.get().cloned()
    }

    pub fn note_decode_errors(&self, n: u64) {
        if n > 0 {
            self.decode_errors.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Liveness: the kernel-event task drains every 10 ms, so a pass
    /// older than a few seconds means the pipeline is stuck.
    pub fn live(&self) -> Result<(), String> {
        let age_ms = monotonic_ns().saturating_sub(self.heartbeat_ns.load(Ordering::Relaxed)) / 1_000_000;
        if age_ms > 5_000 { Err(format!("event pipeline stalled: last pass {age_ms} ms ago")) } else { Ok(()) }
    }

    /// Readiness: enforcing (hooks attached, cgroups identified), verified
    /// whole within `VERIFIED_MAX_AGE_MS`, and live.
    pub fn ready(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("starting: hooks not attached yet".into());
        }
        let i = self.integrity();
        if !i.verified {
            return Err(match (i.broken.first(), i.checked_ms_ago) {
                (Some(b), _) => format!("enforcement not whole: {b}"),
                (None, Some(ms)) => format!("enforcement not verified for {ms} ms"),
                (None, None) => "enforcement not verified yet".into(),
            });
        }
        self.live()
    }

    fn integrity_mut(&self) -> MutexGuard<'_, Integrity> {
        self.integrity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A guard pass: what it watches and what it found (repaired or not).
    pub fn note_check(&self, counts: (usize, usize), found: &[Finding]) {
        let mut i = self.integrity_mut();
        i.checked_ns = monotonic_ns();
        (i.links, i.maps) = counts;
        i.tamper_events += found.len() as u64;
        if let Some(f) = found.last() {
            i.last_tamper = Some(describe(f));
        }
        i.broken = found.iter().filter(|f| f.repair.is_err()).map(describe).collect();
        i.repaired = found.iter().filter(|f| f.repair.is_ok()).map(describe).collect();
    }

    /// The guard could not start or run: nothing is verified.
    pub fn note_guard_failed(&self, why: String) {
        let mut i = self.integrity_mut();
        i.checked_ns = 0;
        i.broken = vec![why];
    }

    pub fn integrity(&self) -> IntegrityStatus {
        let i = self.integrity_mut();
        let age = (i.checked_ns != 0).then(|| monotonic_ns().saturating_sub(i.checked_ns) / 1_000_000);
        // A repair is confirmed by the next clean pass, not assumed.
        let broken: Vec<String> =
            i.broken.iter().cloned().chain(i.repaired.iter().map(|r| format!("{r} (confirming)"))).collect();
        IntegrityStatus {
            verified: broken.is_empty() && age.is_some_and(|a| a <= VERIFIED_MAX_AGE_MS),
            checked_ms_ago: age,
            max_age_ms: VERIFIED_MAX_AGE_MS,
            links: i.links,
            maps: i.maps,
            tamper_events: i.tamper_events,
            last_tamper: i.last_tamper.clone(),
            broken,
        }
    }

    pub fn reload_status(&self) -> MutexGuard<'_, ReloadStatus> {
        self.reload.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One line for a finding: `link connect4 detached: re-attached`.
pub fn describe(f: &Finding) -> String {
    let outcome = match &f.repair {
        Ok(done) => (*done).to_string(),
        Err(e) => format!("repair failed: {e}"),
    };
    format!("{} {} {}: {outcome}", f.object, f.target, f.change)
}
