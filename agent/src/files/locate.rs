//! Where a file is, asked of the kernel: the `file_locate` program walks the
//! dentry behind one of the agent's own descriptors (a fanotify event's
//! file, a file opened while scanning) exactly as the LSM hooks walk an
//! opener's, so the answer does not depend on the path the opener used,
//! its mount namespace, a bind mount or an overlay.
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
};

use aya::maps::{Array, MapData};
use warden_common::{
    FILE_REASON_ESCAPED, FILE_REASON_NONE, LOCATE_BAD_FD, LOCATE_ESCAPED, LOCATE_MAX_ALIASES, LOCATE_MULTI_LINKED,
    LOCATE_NO_ALIAS, LOCATE_OUTPUT, LOCATE_SLOTS, LOCATE_UNKNOWN, Located,
};

/// A file's place as the kernel walk found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Outside every segment.
    Outside,
    /// In a segment: its id, the root's index in the policy's root list,
    /// and `FILE_REASON_ESCAPED` when it is protected for having left it.
    In { segment: u16, root: u16, reason: u8 },
    /// Its place cannot be known (`FILE_REASON_*`): fail closed.
    Unknown(u8),
}

impl Place {
    /// Decodes the program's return value (`warden_common::LOCATE_*`).
    pub fn from_retval(v: u32) -> Self {
        if v & LOCATE_UNKNOWN != 0 {
            return Place::Unknown((v & 0xff) as u8);
        }
        if v == 0 || v == LOCATE_MULTI_LINKED {
            return Place::Outside;
        }
        let reason = if v & LOCATE_ESCAPED != 0 { FILE_REASON_ESCAPED } else { FILE_REASON_NONE };
        let v = v & !LOCATE_ESCAPED;
        Place::In { segment: v as u16, root: (v >> 16) as u16, reason }
    }
}

/// The loaded program and its output slots. Each thread that locates uses
/// its own slot (`Locator::slot`), so outputs are never mixed.
pub struct Locate {
    prog: OwnedFd,
    located: Option<std::sync::Mutex<Array<MapData, Located>>>,
}

/// `BPF_PROG_TEST_RUN`'s part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

impl Locate {
    pub fn new(prog: OwnedFd, located: Array<MapData, Located>) -> Self {
        Self { prog, located: Some(std::sync::Mutex::new(located)) }
    }

    /// Places files without reading what the walk saw (the keeper).
    pub fn without_output(prog: OwnedFd) -> Self {
        Self { prog, located: None }
    }

    pub fn program(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.prog.as_fd()
    }

    /// Runs the walk on `fd` (one of ours) in this thread; `slot` receives
    /// the file's identity and names. A file outside every tree by this
    /// name that has other links is placed by its other cached names too.
    pub fn locate(&self, fd: BorrowedFd<'_>, slot: u32) -> io::Result<Place> {
        self.locate_with(fd, slot, true)
    }

    /// As `locate`; without `output` the slot is not written (a decision
    /// that needs no event path saves the names walk and a map read).
    pub fn locate_with(&self, fd: BorrowedFd<'_>, slot: u32, output: bool) -> io::Result<Place> {
        let slot = u64::from(slot % LOCATE_SLOTS) | if output { LOCATE_OUTPUT } else { 0 };
        let first = self.run(fd, slot, 0)?;
        if first != LOCATE_MULTI_LINKED {
            return Ok(Place::from_retval(first));
        }
        for k in 1..=LOCATE_MAX_ALIASES {
            match self.run(fd, slot, k)? {
                LOCATE_NO_ALIAS => break,
                v if matches!(Place::from_retval(v), Place::In { .. }) => return Ok(Place::from_retval(v)),
                _ => {}
            }
        }
        Ok(Place::Outside)
    }

    fn run(&self, fd: BorrowedFd<'_>, slot: u64, alias: u64) -> io::Result<u32> {
        let args: [u64; 3] = [fd.as_raw_fd() as u64, slot, alias];
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            ctx_size_in: std::mem::size_of_val(&args) as u32,
            ctx_in: args.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: attr is a valid, fully initialized test-run attribute whose
        // ctx_in points at `args`, alive for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if attr.retval == LOCATE_BAD_FD {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the descriptor names no open file"));
        }
        Ok(attr.retval)
    }

    /// What the last `locate` in `slot` saw (identity, names below the root).
    pub fn located(&self, slot: u32) -> io::Result<Located> {
        let map = self.located.as_ref().ok_or_else(|| io::Error::other("no output map"))?;
        let map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(slot % LOCATE_SLOTS), 0).map_err(io::Error::other)
    }
}

/// Output slots: one per thread that locates.
pub const SLOT_DECISIONS: u32 = 0;
pub const SLOT_CHANGES: u32 = 1;
pub const SLOT_SCAN: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use warden_common::{FILE_REASON_DISCONNECTED, root_value};

    #[test]
    fn decodes_the_program_result() {
        assert_eq!(Place::from_retval(0), Place::Outside);
        assert_eq!(Place::from_retval(root_value(3, 7)), Place::In { segment: 3, root: 7, reason: FILE_REASON_NONE });
        assert_eq!(
            Place::from_retval(root_value(3, 7) | LOCATE_ESCAPED),
            Place::In { segment: 3, root: 7, reason: FILE_REASON_ESCAPED }
        );
        assert_eq!(
            Place::from_retval(LOCATE_UNKNOWN | FILE_REASON_DISCONNECTED as u32),
            Place::Unknown(FILE_REASON_DISCONNECTED)
        );
    }
}
