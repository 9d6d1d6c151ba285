//! Runs the guard (`hooks::guard`) every `GUARD_PERIOD` on its own thread:
//! what it finds changed is repaired there, logged, counted in health
//! (status, /readyz, metrics) and written as a `tamper` event.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::health::{Health, describe};
use crate::{
    enrich::{Event, Numbering, TamperEvent},
    hooks::guard::Guard,
    sinks::Fanout,
};

/// Well inside `health::VERIFIED_MAX_AGE_MS`, so "enforced" never lapses
/// on a healthy agent.
pub const GUARD_PERIOD: Duration = Duration::from_millis(250);

/// Where tamper events go.
pub struct Report {
    pub fanout: Arc<Fanout>,
    pub numbering: Numbering,
    pub node: String,
}

/// The running guard thread.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Ends the thread (within a period) and lets go of what the guard
    /// holds, the instance lock among it: a stopping agent must not repair
    /// what an uninstall removes.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// One pass now (so readiness has a verification to stand on), then the
/// thread.
pub fn start(mut guard: Guard, health: Arc<Health>, report: Report) -> std::io::Result<Running> {
    pass(&mut guard, &health, &report);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new().name("warden-guard".into()).spawn(move || {
        loop {
            std::thread::park_timeout(GUARD_PERIOD);
            if stopped.load(Ordering::Acquire) {
                return;
            }
            pass(&mut guard, &health, &report);
        }
    })?;
    Ok(Running { stop, thread })
}

fn pass(guard: &mut Guard, health: &Health, report: &Report) {
    let found = guard.check();
    health.note_check(guard.counts(), &found);
    if found.is_empty() {
        return;
    }
    let events: Vec<Arc<Event>> = found
        .iter()
        .map(|f| {
            tracing::error!(change = %describe(f), "enforcement was tampered with");
            Arc::new(Event::Tamper(TamperEvent::new(&report.numbering, &report.node, f)))
        })
        .collect();
    report.fanout.encode_and_deliver(&events, &mut Vec::new(), || {});
}
