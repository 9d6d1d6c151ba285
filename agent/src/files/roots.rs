//! Segment roots by identity. Paths in the policy are resolved to
//! (device, inode) once; later matching never trusts path strings, so a
//! symlink, a bind mount or a `..` cannot step around a segment.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use warden_common::{InodeKey, kernel_dev};

use crate::policy::FileRoot;

#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// (st_dev, ino) → segment id.
    by_inode: HashMap<(u64, u64), u16>,
    /// Resolved roots: (path, segment, identity, index in the policy's file
    /// list, which kernel events carry to rebuild paths).
    pub resolved: Vec<(PathBuf, u16, InodeKey, u16)>,
    /// Roots that do not exist (yet): reported, retried.
    pub missing: Vec<PathBuf>,
    /// One path per filesystem holding a root (for fanotify marks).
    pub filesystems: HashMap<u64, PathBuf>,
    /// Unique per resolution: caches built on other roots are stale.
    id: u64,
}

static RESOLUTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Roots {
    pub fn resolve(files: &[FileRoot]) -> Self {
        let mut r = Roots { id: RESOLUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed), ..Roots::default() };
        for (i, f) in files.iter().enumerate() {
            match std::fs::metadata(&f.path) {
                Ok(m) if m.is_dir() => {
                    r.by_inode.insert((m.dev(), m.ino()), f.segment_id);
                    let key = InodeKey { dev: kernel_dev(m.dev()), ino: m.ino() };
                    r.resolved.push((f.path.clone(), f.segment_id, key, i as u16));
                    r.filesystems.entry(m.dev()).or_insert_with(|| f.path.clone());
                }
                _ => r.missing.push(f.path.clone()),
            }
        }
        r
    }

    /// Entries of the in-kernel root maps: identity → segment and root index.
    pub fn kernel_entries(&self) -> Vec<(InodeKey, u32)> {
        self.resolved.iter().map(|(_, seg, key, idx)| (*key, warden_common::root_value(*seg, *idx))).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    pub fn segment_of_inode(&self, dev: u64, ino: u64) -> Option<u16> {
        self.by_inode.get(&(dev, ino)).copied()
    }
}

/// Finds the segment of a path by walking its ancestors' identities,
/// deepest first. Directory answers are cached briefly: a directory moved
/// into or out of a tree is seen within `TTL`.
pub struct Locator {
    cache: HashMap<PathBuf, (Option<u16>, Instant)>,
    /// The roots the cache was built on.
    roots: u64,
}

const TTL: Duration = Duration::from_secs(1);
const MAX_CACHE: usize = 16384;

impl Default for Locator {
    fn default() -> Self {
        Self::new()
    }
}

impl Locator {
    pub fn new() -> Self {
        Self { cache: HashMap::new(), roots: 0 }
    }

    /// `Err` when the path cannot be checked (fail closed at the caller).
    pub fn segment_of(&mut self, roots: &Roots, path: &Path) -> Result<Option<u16>, std::io::Error> {
        if roots.id != self.roots {
            // New roots (a reload, a root that appeared): nothing cached holds.
            self.cache.clear();
            self.roots = roots.id;
        }
        let m = std::fs::metadata(path)?;
        if let Some(s) = roots.segment_of_inode(m.dev(), m.ino()) {
            return Ok(Some(s));
        }
        match path.parent() {
            Some(dir) => self.dir_segment(roots, dir),
            None => Ok(None),
        }
    }

    fn dir_segment(&mut self, roots: &Roots, dir: &Path) -> Result<Option<u16>, std::io::Error> {
        let now = Instant::now();
        if let Some((seg, at)) = self.cache.get(dir)
            && now.duration_since(*at) < TTL
        {
            return Ok(*seg);
        }
        let m = std::fs::metadata(dir)?;
        let seg = match roots.segment_of_inode(m.dev(), m.ino()) {
            Some(s) => Some(s),
            None => match dir.parent() {
                Some(up) => self.dir_segment(roots, up)?,
                None => None,
            },
        };
        if self.cache.len() >= MAX_CACHE {
            self.cache.clear();
        }
        self.cache.insert(dir.to_path_buf(), (seg, now));
        Ok(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_by_identity_not_by_string() {
        let base = std::env::temp_dir().join(format!("warden-roots-{}", std::process::id()));
        let data = base.join("data");
        std::fs::create_dir_all(data.join("a/b")).unwrap();
        std::fs::create_dir_all(base.join("other")).unwrap();
        std::fs::write(data.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&data, base.join("other/link")).unwrap();
        let roots = Roots::resolve(&[
            FileRoot { segment_id: 7, path: data.clone() },
            FileRoot { segment_id: 8, path: base.join("nope") },
        ]);
        assert_eq!(roots.missing, vec![base.join("nope")]);
        let mut loc = Locator::new();
        assert_eq!(loc.segment_of(&roots, &data.join("a/b/f")).unwrap(), Some(7));
        assert_eq!(loc.segment_of(&roots, &data).unwrap(), Some(7), "the root itself");
        // Through a symlink and a `..` detour: same inode, same answer.
        assert_eq!(loc.segment_of(&roots, &base.join("other/link/a/b/f")).unwrap(), Some(7));
        assert_eq!(loc.segment_of(&roots, &base.join("other/../data/a/b/f")).unwrap(), Some(7));
        assert_eq!(loc.segment_of(&roots, &base.join("other")).unwrap(), None);
        assert!(loc.segment_of(&roots, &base.join("missing-file")).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn kernel_dev_encoding() {
        // makedev(8, 1) in glibc's encoding → MKDEV(8, 1).
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 70000)), (259 << 20) | 70000);
    }
}
