//! The change watcher: what fanotify cannot block, it can still see. A
//! second group (notification class, reporting file identifiers) on each
//! marked filesystem reports creates, deletes, renames, links, attribute
//! and content changes with the acting thread. Each is placed by the same
//! kernel walk as an open (`locate`, over a descriptor opened by handle):
//! - a file or directory renamed out of its tree, or given a name outside
//!   it by a hard link, keeps the tree's protection (`FILE_ESCAPED`);
//! - a change inside a tree by a workload the rules would deny becomes an
//!   event (`audited`, reason `detected`) and a counter.
//!
//! The kernel queues these records while the syscall runs, so a change is
//! queued before any open that follows it. The decision thread drains the
//! queue (`settle`) before it calls a file unprotected: a file renamed out
//! and opened at once is already recorded when its open is judged.
use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::PathBuf,
    sync::Mutex,
};

use warden_common::{
    ACCESS_READ, ACCESS_WRITE, FILE_REASON_DETECTED, FOP_CREATE, FOP_LINK, FOP_MODIFY, FOP_RENAME, FOP_SETATTR,
    FOP_UNLINK, InodeKey, VERDICT_AUDITED, VERDICT_DENIED,
};

use crate::files::{
    Context, FileDecision, Identity,
    escaped::Escaped,
    locate::{Locate, Place, SLOT_CHANGES},
    procfs::Proc,
    roots::Roots,
};

const MASK: u64 =
    libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_RENAME | libc::FAN_ATTRIB | libc::FAN_MODIFY | libc::FAN_ONDIR;

/// What the watcher reports and cannot prevent, for status.
pub const DETECTED: [&str; 6] = [
    "create/mkdir/symlink/mknod",
    "unlink/rmdir",
    "rename (a file moved out keeps its protection)",
    "hard link (the new name keeps the protection)",
    "chmod/chown/utimes/xattr",
    "truncate(2) by path",
];

/// A file identifier from an event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fid {
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

/// One change, parsed defensively from the kernel's buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub mask: u64,
    pub tid: i32,
    /// The object changed (created, moved, modified).
    pub object: Option<Fid>,
    /// The directory of the entry (create, delete) or the old one (rename).
    pub dir: Option<Fid>,
    pub name: Vec<u8>,
    /// A rename's new directory.
    pub new_dir: Option<Fid>,
}

#[cfg(test)]
const META_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();
const INFO_FID: u8 = libc::FAN_EVENT_INFO_TYPE_FID;
const INFO_DFID_NAME: u8 = libc::FAN_EVENT_INFO_TYPE_DFID_NAME;
const INFO_DFID: u8 = libc::FAN_EVENT_INFO_TYPE_DFID;
const INFO_OLD_DFID_NAME: u8 = libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME;
const INFO_NEW_DFID_NAME: u8 = libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME;

/// Splits a read buffer into changes (see `sys::records` for what ends it).
pub fn parse(buf: &[u8]) -> Vec<Change> {
    super::sys::records(buf)
        .map(|(m, info)| {
            let mut c = Change { mask: m.mask, tid: m.pid, ..Change::default() };
            parse_infos(info, &mut c);
            c
        })
        .collect()
}

fn parse_infos(mut rest: &[u8], c: &mut Change) {
    // header (4) + fsid (8) + handle_bytes (4) + handle_type (4)
    while rest.len() >= 20 {
        let kind = rest[0];
        let len = u16::from_ne_bytes([rest[2], rest[3]]) as usize;
        if len < 20 || len > rest.len() {
            return;
        }
        let rec = &rest[..len];
        let fsid =
            [i32::from_ne_bytes(rec[4..8].try_into().unwrap()), i32::from_ne_bytes(rec[8..12].try_into().unwrap())];
        let bytes = u32::from_ne_bytes(rec[12..16].try_into().unwrap()) as usize;
        let handle_type = i32::from_ne_bytes(rec[16..20].try_into().unwrap());
        let Some(handle) = rec.get(20..20usize.saturating_add(bytes)) else { return };
        let fid = Fid { fsid, handle_type, handle: handle.to_vec() };
        let name = || {
            let n = &rec[20 + bytes..];
            n[..n.iter().position(|&b| b == 0).unwrap_or(n.len())].to_vec()
        };
        match kind {
            INFO_FID => c.object = Some(fid),
            INFO_DFID => c.dir = Some(fid),
            INFO_DFID_NAME | INFO_OLD_DFID_NAME => {
                c.name = name();
                c.dir = Some(fid);
            }
            INFO_NEW_DFID_NAME => c.new_dir = Some(fid),
            _ => {}
        }
        rest = &rest[len..];
    }
}

/// Fuzzing entry point for the record parser.
pub fn fuzz(buf: &[u8]) {
    let _ = parse(buf);
}

pub struct Changes {
    group: OwnedFd,
    /// One descriptor per watched filesystem (by fsid), for open_by_handle_at.
    mounts: Mutex<HashMap<[i32; 2], OwnedFd>>,
    /// Held while a batch is read and applied: `settle` waits for a batch
    /// in progress, so nothing read is still unapplied when it returns.
    reading: Mutex<Vec<u8>>,
    proc: Proc,
    /// Files already recorded as escaped (saves a map write per open).
    recorded: Mutex<std::collections::HashSet<InodeKey>>,
    /// Counts files recorded: a decision that found a file unprotected
    /// looks again if this moved since before it looked.
    escapes: std::sync::atomic::AtomicU64,
}

impl Changes {
    pub fn new() -> io::Result<Self> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_UNLIMITED_QUEUE
            | libc::FAN_REPORT_TID
            | libc::FAN_REPORT_DFID_NAME_TARGET;
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_CLOEXEC) as u32) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: a fresh descriptor we own.
            group: unsafe { OwnedFd::from_raw_fd(fd) },
            mounts: Mutex::default(),
            reading: Mutex::new(vec![0u8; 64 * 1024]),
            proc: Proc::open()?,
            recorded: Mutex::default(),
            escapes: Default::default(),
        })
    }

    /// Watches the filesystems of `roots` not watched yet; returns those
    /// that cannot be (no file handles or fsid there), with the error.
    pub fn watch(&self, roots: &Roots) -> Vec<(PathBuf, io::Error)> {
        let mut failed = Vec::new();
        for path in roots.filesystems.values() {
            if let Err(e) = self.watch_one(path) {
                failed.push((path.clone(), e));
            }
        }
        failed
    }

    fn watch_one(&self, path: &std::path::Path) -> io::Result<()> {
        // A real (not O_PATH) descriptor: open_by_handle_at wants one. The
        // permission group marks no directories, so this open waits for no one.
        let dir =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(path)?;
        let fsid = fsid_of(dir.as_fd())?;
        let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        if mounts.contains_key(&fsid) {
            return Ok(());
        }
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))?;
        // SAFETY: valid fd and NUL-terminated path.
        let r = unsafe {
            libc::fanotify_mark(
                self.group.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                MASK,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        mounts.insert(fsid, dir.into());
        Ok(())
    }

    /// Watches and applies changes until the group fails.
    pub fn run(&self, ctx: &dyn Context, locate: &Locate, escaped: &Escaped) {
        loop {
            let mut pfd = libc::pollfd { fd: self.group.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "file change watcher stopped");
                return;
            }
            self.settle(ctx, locate, escaped);
        }
    }

    /// How many files were recorded so far (see `settle`).
    pub fn escapes(&self) -> u64 {
        self.escapes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Reads and applies every queued change, after any batch another
    /// thread is applying. A caller that read `escapes` before it looked
    /// at a file looks again if the count moved.
    pub fn settle(&self, ctx: &dyn Context, locate: &Locate, escaped: &Escaped) {
        let mut buf = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(self.group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            for c in parse(&buf[..n as usize]) {
                if c.mask & libc::FAN_Q_OVERFLOW != 0 {
                    tracing::error!("file change queue overflowed: changes were missed");
                    ctx.note_error();
                    continue;
                }
                if self.proc.is_own_thread(c.tid) {
                    continue;
                }
                self.apply(ctx, locate, escaped, &c);
            }
        }
    }

    fn open(&self, fid: &Fid) -> Option<OwnedFd> {
        let mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let mount = mounts.get(&fid.fsid)?;
        let mut h = Vec::with_capacity(8 + fid.handle.len());
        h.extend_from_slice(&(fid.handle.len() as u32).to_ne_bytes());
        h.extend_from_slice(&fid.handle_type.to_ne_bytes());
        h.extend_from_slice(&fid.handle);
        // SAFETY: h is a complete struct file_handle; O_PATH opens no data.
        let fd = unsafe {
            libc::open_by_handle_at(mount.as_raw_fd(), h.as_mut_ptr().cast(), libc::O_PATH | libc::O_CLOEXEC)
        };
        // SAFETY: a fresh descriptor we own.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn place(&self, locate: &Locate, fid: Option<&Fid>) -> Option<(Place, OwnedFd)> {
        let fd = self.open(fid?)?;
        let place = locate.locate(fd.as_fd(), SLOT_CHANGES).ok()?;
        Some((place, fd))
    }

    /// Applies one change: records escapes, reports denied changes.
    fn apply(&self, ctx: &dyn Context, locate: &Locate, escaped: &Escaped, c: &Change) {
        // (operation, where it happened, a descriptor to name it by)
        let (op, at) = if c.mask & libc::FAN_RENAME != 0 {
            let old = self.place(locate, c.dir.as_ref());
            // Located last, so the slot describes the moved object.
            let now = self.place(locate, c.object.as_ref());
            if let (Some((Place::In { root, .. }, _)), Some((now, fd))) = (&old, &now) {
                // Moved out of its tree (or into another): it keeps the root
                // it left, so every name it has now is protected; a
                // directory takes every file below it along.
                if !matches!(now, Place::In { root: r, .. } if r == root) {
                    self.record(ctx, locate, escaped, *root);
                    if is_dir(fd.as_fd()) {
                        self.record_tree(ctx, locate, escaped, fd.as_fd(), *root);
                    }
                }
            }
            (FOP_RENAME, old)
        } else if c.mask & libc::FAN_CREATE != 0 {
            let object = self.place(locate, c.object.as_ref());
            match &object {
                // A new name outside a tree for a file inside one (the walk
                // found its other, cached name): a hard link out.
                Some((Place::In { root, reason, .. }, _)) if *reason == warden_common::FILE_REASON_ESCAPED => {
                    self.record(ctx, locate, escaped, *root);
                    (FOP_LINK, object)
                }
                _ => (FOP_CREATE, object),
            }
        } else if c.mask & libc::FAN_DELETE != 0 {
            (FOP_UNLINK, self.place(locate, c.dir.as_ref()))
        } else if c.mask & libc::FAN_MODIFY != 0 {
            (FOP_MODIFY, self.place(locate, c.object.as_ref()))
        } else {
            (FOP_SETATTR, self.place(locate, c.object.as_ref()))
        };
        if let Some((Place::In { segment, root, reason }, fd)) = at {
            self.report(ctx, locate, c, op, fd.as_fd(), (segment, root, reason));
        }
    }

    /// Records every file below directory `dir` (moved out of `root`).
    fn record_tree(&self, ctx: &dyn Context, locate: &Locate, escaped: &Escaped, dir: BorrowedFd<'_>, root: u16) {
        let mut stack = vec![PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(e.path());
                    continue;
                }
                let Ok(f) = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(e.path())
                else {
                    continue;
                };
                if locate.locate(f.as_fd(), SLOT_CHANGES).is_ok() {
                    self.record(ctx, locate, escaped, root);
                }
            }
        }
    }

    fn record(&self, ctx: &dyn Context, locate: &Locate, escaped: &Escaped, root: u16) -> bool {
        self.record_located(ctx, locate, escaped, root, SLOT_CHANGES)
    }

    /// Records the file last located in `slot` as escaped from `root`;
    /// true when it was not recorded before.
    pub fn record_located(&self, ctx: &dyn Context, locate: &Locate, escaped: &Escaped, root: u16, slot: u32) -> bool {
        let (Ok(l), Some(root_key)) = (locate.located(slot), ctx.roots().root_key(root)) else {
            ctx.note_error();
            return false;
        };
        let file = InodeKey { dev: l.dev, ino: l.ino };
        if !self.recorded.lock().unwrap_or_else(|p| p.into_inner()).insert(file) {
            return false;
        }
        if let Err(e) = escaped.record(file, root_key, l.generation) {
            tracing::error!(error = %e, "cannot record a file that left its segment tree");
            ctx.note_error();
            return false;
        }
        self.escapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    }

    /// A change inside a tree by a workload the rules deny: an event, named
    /// by a walk over `fd` (the entry's directory for unlink and rename).
    fn report(
        &self,
        ctx: &dyn Context,
        locate: &Locate,
        c: &Change,
        op: u8,
        fd: BorrowedFd<'_>,
        (segment, root, reason): (u16, u16, u8),
    ) {
        let mut buf = [0u8; 4096];
        let cgroup = self.proc.cgroup(c.tid, &mut buf);
        let workload = match ctx.identify_path(cgroup) {
            Identity::Outside => return,
            Identity::Governed(w) => w,
        };
        let (verdict, rule) = ctx.verdict(workload, segment, ACCESS_READ | ACCESS_WRITE);
        if verdict != VERDICT_DENIED {
            return;
        }
        let mut d = FileDecision {
            op,
            tid: c.tid as u32,
            workload,
            segment,
            root,
            path: PathBuf::new(),
            write: Some(true),
            verdict: VERDICT_AUDITED,
            rule,
            reason: if reason == warden_common::FILE_REASON_NONE { FILE_REASON_DETECTED } else { reason },
            // The actor may be gone already (changes are reported after the
            // fact): what cannot be read stays absent.
            opener: Some(crate::files::Opener::read(&self.proc, c.tid, cgroup)),
        };
        if locate.locate(fd, SLOT_CHANGES).is_ok() {
            d.path = ctx.path_of(&d, SLOT_CHANGES);
        }
        if !c.name.is_empty() && matches!(op, FOP_UNLINK | FOP_RENAME) {
            d.path.push(String::from_utf8_lossy(&c.name).as_ref());
        }
        ctx.emit(d);
    }
}

fn is_dir(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: fstat on a valid descriptor into a zeroed buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstat(fd.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR }
}

/// The filesystem id fanotify reports for `fd`'s filesystem.
fn fsid_of(fd: BorrowedFd<'_>) -> io::Result<[i32; 2]> {
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a statfs buffer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: __fsid_t is two ints.
    let v: [i32; 2] = unsafe { std::mem::transmute(st.f_fsid) };
    Ok(v)
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: u8, fsid: [i32; 2], handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&fsid[0].to_ne_bytes());
        v.extend_from_slice(&fsid[1].to_ne_bytes());
        v.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        v.extend_from_slice(&1i32.to_ne_bytes());
        v.extend_from_slice(handle);
        v.extend_from_slice(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        let len = v.len() as u16;
        v[2..4].copy_from_slice(&len.to_ne_bytes());
        v
    }

    fn event(mask: u64, tid: i32, infos: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = infos.concat();
        let m = libc::fanotify_event_metadata {
            event_len: (META_LEN + body.len()) as u32,
            vers: libc::FANOTIFY_METADATA_VERSION,
            reserved: 0,
            metadata_len: META_LEN as u16,
            mask,
            fd: libc::FAN_NOFD,
            pid: tid,
        };
        // SAFETY: plain-data struct to bytes.
        let mut v =
            unsafe { std::slice::from_raw_parts((&m as *const libc::fanotify_event_metadata).cast::<u8>(), META_LEN) }
                .to_vec();
        v.extend(body);
        v
    }

    #[test]
    fn parses_rename_and_create_records() {
        let mut buf = event(
            libc::FAN_RENAME,
            7,
            &[
                info(INFO_OLD_DFID_NAME, [1, 2], &[9; 8], b"f\0"),
                info(INFO_NEW_DFID_NAME, [1, 2], &[8; 8], b"g\0"),
                info(INFO_FID, [1, 2], &[5; 12], b""),
            ],
        );
        buf.extend(event(libc::FAN_CREATE, 8, &[info(INFO_DFID_NAME, [1, 2], &[9; 8], b"new\0")]));
        let c = parse(&buf);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].tid, c[0].name.as_slice()), (7, b"f".as_slice()));
        assert_eq!(c[0].dir.as_ref().unwrap().handle, vec![9; 8]);
        assert_eq!(c[0].new_dir.as_ref().unwrap().handle, vec![8; 8]);
        assert_eq!(c[0].object.as_ref().unwrap().handle, vec![5; 12]);
        assert_eq!(c[1].name, b"new");
        // Truncated or lying lengths end parsing, never overrun.
        assert!(parse(&buf[..META_LEN - 1]).is_empty());
        let mut bad = buf.clone();
        bad[META_LEN + 2] = 0xff;
        bad[META_LEN + 3] = 0x7f;
        assert!(parse(&bad)[0].dir.is_none());
    }
}

#[cfg(test)]
mod real {
    use super::*;
    use crate::policy::FileRoot;

    /// A real group on a real tmpfs reports a rename with both directories
    /// and the moved object, and a handle that opens it. Needs root.
    #[test]
    fn a_rename_is_reported_with_both_directories() {
        let dir = std::env::temp_dir().join(format!("warden-changes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(Some("tmpfs"), &dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::write(dir.join("data/f"), "x").unwrap();
        let roots = Roots::resolve(&[FileRoot { segment_id: 1, path: dir.join("data") }]);
        let c = Changes::new().unwrap();
        assert!(c.watch(&roots).is_empty());
        std::fs::rename(dir.join("data/f"), dir.join("out/f")).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(c.group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0, "read: {}", io::Error::last_os_error());
        let changes = parse(&buf[..n as usize]);
        let r = changes.iter().find(|c| c.mask & libc::FAN_RENAME != 0).expect("a rename record");
        assert_eq!(r.name, b"f");
        assert!(r.dir.is_some() && r.new_dir.is_some() && r.object.is_some(), "{r:?}");
        let opened = c.open(r.object.as_ref().unwrap());
        let err = io::Error::last_os_error();
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        assert!(opened.is_some(), "the moved file opens by handle: {err} {r:?} {:?}", c.mounts.lock().unwrap().keys());
    }
}
