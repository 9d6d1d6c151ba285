//! Protection that follows the file: files that have (or get) a name
//! outside their segment tree keep the tree's protection, by identity.
//!
//! The kernel walk from a file's dentry finds its tree only through the
//! name it was opened by. A hard link outside the tree, or a file renamed
//! out, would be reached by another name: such files are recorded in
//! `FILE_ESCAPED` ((dev, ino) → the root's identity and the inode's
//! generation), which the walk checks at each level. Entries come from
//! - the scan of each tree (files with more than one link: a name may
//!   exist outside, made before the agent ran);
//! - the BPF-LSM link and rename hooks, in the kernel, when an allowed
//!   writer moves or links a file out;
//! - on fanotify nodes, the change watcher (rename and link events).
//!
//! Memory: one kernel entry (40 bytes of key and value, about 100 with the
//! hash table's overhead) per multi-linked or moved-out file, none for the
//! others; a 10-million-file tree with no hard links costs nothing here.
use std::{
    io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
    sync::Mutex,
};

use aya::maps::{Array, HashMap, MapData};
use warden_common::{EscapedValue, InodeKey, kernel_dev};

use super::locate::Locate;

pub struct Escaped {
    map: Mutex<HashMap<MapData, InodeKey, EscapedValue>>,
    any: Mutex<Array<MapData, u32>>,
    /// (when, entries) of the last count: counting walks every key with a
    /// syscall each, so status reads a count at most 10 s old.
    counted: Mutex<Option<(std::time::Instant, usize)>>,
}

/// What a scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    pub files: u64,
    pub multi_linked: u64,
    pub errors: u64,
}

impl Escaped {
    pub fn new(map: HashMap<MapData, InodeKey, EscapedValue>, any: Array<MapData, u32>) -> Self {
        Self { map: Mutex::new(map), any: Mutex::new(any), counted: Mutex::new(None) }
    }

    /// Records that `file` keeps the protection of `root`.
    pub fn record(&self, file: InodeKey, root: InodeKey, generation: u32) -> io::Result<()> {
        let value = EscapedValue { root, generation, _pad: 0 };
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(file, value, 0).map_err(io::Error::other)?;
        self.any.lock().unwrap_or_else(|p| p.into_inner()).set(0, 1, 0).map_err(io::Error::other)
    }

    /// Entries in the kernel map (kernel hooks add some too), counted at
    /// most every 10 s.
    pub fn count(&self) -> usize {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, n)) = *counted
            && at.elapsed() < std::time::Duration::from_secs(10)
        {
            return n;
        }
        let n = self.map.lock().unwrap_or_else(|p| p.into_inner()).keys().count();
        *counted = Some((std::time::Instant::now(), n));
        n
    }

    /// Walks the tree under `root` (its filesystem only: the kernel walk
    /// stops at a mount point too) and records every file with more than
    /// one link. `locate` gives each one's generation when available.
    pub fn scan(&self, root: &Path, key: InodeKey, locate: Option<&Locate>, slot: u32) -> ScanReport {
        let mut report = ScanReport::default();
        let Ok(top) = std::fs::symlink_metadata(root) else {
            report.errors += 1;
            return report;
        };
        let dev = top.dev();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                report.errors += 1;
                continue;
            };
            for entry in entries.flatten() {
                let Ok(m) = entry.metadata() else {
                    report.errors += 1;
                    continue;
                };
                if m.dev() != dev {
                    continue;
                }
                let ft = m.file_type();
                if ft.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                report.files += 1;
                if ft.is_symlink() || ft.is_socket() || m.nlink() < 2 {
                    continue;
                }
                report.multi_linked += 1;
                let generation = locate.and_then(|l| generation_of(l, &entry.path(), slot)).unwrap_or(0);
                let file = InodeKey { dev: kernel_dev(m.dev()), ino: m.ino() };
                if self.record(file, key, generation).is_err() {
                    report.errors += 1;
                }
            }
        }
        report
    }
}

/// The inode generation of `path`, from the kernel walk over an O_PATH
/// descriptor (no data is opened, no fanotify event is made).
fn generation_of(locate: &Locate, path: &Path, slot: u32) -> Option<u32> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    use std::os::fd::AsFd;
    // Whatever the place, the walk wrote the file's identity to the slot.
    locate.locate(f.as_fd(), slot).ok()?;
    locate.located(slot).ok().map(|l| l.generation)
}
