//! Scheduling class of the fanotify event writer. It runs SCHED_IDLE while
//! it only has allowed decisions to write, so opens of protected files never
//! wait behind it (measured on 2 cores: a nice 19 writer still added tens of
//! µs to their p99). As soon as a deny or audit is queued, or the queue is a
//! quarter full, the decision thread raises it to the normal class, so a node
//! whose CPUs are saturated cannot starve denies out of the log; the writer
//! drops back to idle once it has drained the queue.
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

#[derive(Default)]
pub struct WriterPriority {
    tid: AtomicI32,
    boosted: AtomicBool,
}

fn set_class(tid: i32, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: valid param; tid is the writer thread's id (0 = the caller).
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

impl WriterPriority {
    /// Called on the writer thread when it starts.
    pub fn register(&self) {
        // SAFETY: gettid has no preconditions.
        self.tid.store(unsafe { libc::gettid() }, Ordering::Release);
        if !set_class(0, libc::SCHED_IDLE) {
            tracing::debug!("cannot move the file event writer to SCHED_IDLE");
        }
    }

    /// Called by the decision thread after queueing; cheap when already raised.
    pub fn boost(&self) {
        let tid = self.tid.load(Ordering::Acquire);
        if tid != 0 && !self.boosted.swap(true, Ordering::AcqRel) && !set_class(tid, libc::SCHED_OTHER) {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the file event writer");
        }
    }

    /// Called by the writer when its queue is empty. `more()` re-checks the
    /// queue after lowering: a deny queued in between raises it again.
    pub fn settle(&self, more: impl FnOnce() -> bool) {
        if self.boosted.swap(false, Ordering::AcqRel) {
            set_class(0, libc::SCHED_IDLE);
            if more() {
                self.boost();
            }
        }
    }
}
