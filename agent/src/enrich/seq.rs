//! The node's event sequence. On a running agent it lives in a pinned,
//! memory-mapped BPF array (`EVENT_SEQ`), so it continues across restarts
//! and SIGKILL with no syscall per event: the last number given is in the
//! kernel's memory the instant it is given, and the next agent (one at a
//! time: the instance lock) goes on from it. A gap in `seq` is therefore a
//! numbered event that was never delivered; the `agent_id` field tells one
//! agent process from the next.
use std::{
    os::fd::{AsRawFd, BorrowedFd},
    sync::atomic::{AtomicU64, Ordering},
};

enum Backing {
    /// Tests and tools: a counter of this process only.
    Local(Box<AtomicU64>),
    /// The first 8 bytes of a mapped BPF array's value area.
    Mapped { addr: *mut libc::c_void, len: usize },
}

pub struct Seq(Backing);

// SAFETY: the mapping is only ever accessed through an `AtomicU64`, and it
// stays mapped until the `Seq` is dropped.
unsafe impl Send for Seq {}
// SAFETY: as above.
unsafe impl Sync for Seq {}

impl Default for Seq {
    fn default() -> Self {
        Self::starting_at(0)
    }
}

impl Seq {
    /// A process-local sequence whose last number given is `last`.
    pub fn starting_at(last: u64) -> Self {
        Seq(Backing::Local(Box::new(AtomicU64::new(last))))
    }

    /// The sequence kept in `map`, a BPF array created with
    /// `BPF_F_MMAPABLE` whose first value is a u64.
    pub fn mapped(map: BorrowedFd<'_>) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        // SAFETY: a fresh shared mapping of the map's value area; checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Seq(Backing::Mapped { addr, len }))
    }

    fn cell(&self) -> &AtomicU64 {
        match &self.0 {
            Backing::Local(c) => c,
            // SAFETY: page-aligned, mapped for the life of `self`, 8 bytes
            // of a u64 value the kernel never writes.
            Backing::Mapped { addr, .. } => unsafe { AtomicU64::from_ptr(addr.cast()) },
        }
    }

    /// The next number (the first ever is 1).
    pub fn next(&self) -> u64 {
        self.cell().fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The last number given.
    pub fn last(&self) -> u64 {
        self.cell().load(Ordering::Relaxed)
    }

    /// Whether this sequence outlives the process (pinned).
    pub fn persistent(&self) -> bool {
        matches!(self.0, Backing::Mapped { .. })
    }
}

impl Drop for Seq {
    fn drop(&mut self) {
        if let Backing::Mapped { addr, len } = self.0 {
            // SAFETY: our own mapping, unmapped once.
            unsafe { libc::munmap(addr, len) };
        }
    }
}

/// A new id for this agent process: its pid and start time, in hex. Events
/// carry it, so a reader tells which agent numbered them.
pub fn agent_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", std::process::id(), now.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_sequence_counts_from_its_start() {
        let s = Seq::starting_at(41);
        assert_eq!((s.next(), s.next(), s.last()), (42, 43, 43));
        assert!(!s.persistent());
    }
}
