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
        // Idle first, then published: a boost can never be undone by this.
        if !set_class(0, libc::SCHED_IDLE) {
            tracing::debug!("cannot move the file event writer to SCHED_IDLE");
        }
        // SAFETY: gettid has no preconditions.
        self.tid.store(unsafe { libc::gettid() }, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's scheduling class.
    fn class_of(tid: i32) -> libc::c_int {
        // SAFETY: plain syscall; 0 is the calling thread.
        unsafe { libc::sched_getscheduler(tid) }
    }

    /// The real scheduler classes, read back from the kernel (raising from
    /// SCHED_IDLE needs CAP_SYS_NICE: the tests run as root).
    #[test]
    fn idle_until_raised_and_back_when_drained() {
        let p = std::sync::Arc::new(WriterPriority::default());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                p.register();
                let idle = class_of(0);
                ready_tx.send(()).unwrap();
                rx.recv().unwrap(); // raised by the "decision thread" meanwhile
                let raised = class_of(0);
                p.settle(|| true); // more queued: stays raised
                let still = class_of(0);
                p.settle(|| false); // drained: idle again
                (idle, raised, still, class_of(0))
            })
        };
        ready_rx.recv().unwrap();
        p.boost();
        tx.send(()).unwrap();
        let (idle, raised, still, after) = writer.join().unwrap();
        assert_eq!(idle, libc::SCHED_IDLE);
        assert_eq!(raised, libc::SCHED_OTHER);
        assert_eq!(still, libc::SCHED_OTHER, "a backlog keeps it raised");
        assert_eq!(after, libc::SCHED_IDLE);
    }
}
