//! Health: whether the agent is ready and live, which programs it attached
//! and pinned, and how the last reload went.
use std::sync::{
    Mutex, MutexGuard, OnceLock,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use crate::{
    hooks::Hooks,
    identity::delay::monotonic_ns,
    report::{PinStatus, ProgramStatus, ReloadStatus},
};

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
        }
    }
}

impl Health {
    /// After every backend attached, so status lists all programs.
    pub fn set_programs(&self, hooks: &Hooks) {
        let p = hooks.pins();
        let _ =
            self.pins.set(PinStatus { dir: p.dir.display().to_string(), adopted: p.adopted, links: p.pinned_links() });
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

    /// Readiness: enforcing (hooks attached, cgroups identified) and live.
    pub fn ready(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("starting: hooks not attached yet".into());
        }
        self.live()
    }

    pub fn reload_status(&self) -> MutexGuard<'_, ReloadStatus> {
        self.reload.lock().unwrap_or_else(|p| p.into_inner())
    }
}
