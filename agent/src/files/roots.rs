//! Segment roots by identity. Paths in the policy are resolved to
//! (device, inode) once; later matching never trusts path strings, so a
//! symlink, a bind mount or a `..` cannot step around a segment.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
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
}

impl Roots {
    pub fn resolve(files: &[FileRoot]) -> Self {
        let mut r = Roots::default();
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

    /// The configured path of the root with this index in the policy's list.
    pub fn root_path(&self, index: u16) -> Option<&Path> {
        self.resolved.iter().find(|r| r.3 == index).map(|r| r.0.as_path())
    }

    /// The identity of the root with this index in the policy's list.
    pub fn root_key(&self, index: u16) -> Option<InodeKey> {
        self.resolved.iter().find(|r| r.3 == index).map(|r| r.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_resolve_by_identity() {
        let base = std::env::temp_dir().join(format!("warden-roots-{}", std::process::id()));
        let data = base.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::os::unix::fs::symlink(&data, base.join("link")).unwrap();
        let roots = Roots::resolve(&[
            FileRoot { segment_id: 7, path: base.join("link") },
            FileRoot { segment_id: 8, path: base.join("nope") },
        ]);
        assert_eq!(roots.missing, vec![base.join("nope")]);
        let m = std::fs::metadata(&data).unwrap();
        assert_eq!(roots.segment_of_inode(m.dev(), m.ino()), Some(7), "a root named through a symlink is its target");
        assert_eq!(roots.root_path(0), Some(base.join("link").as_path()));
        assert_eq!(roots.root_key(0), Some(InodeKey { dev: kernel_dev(m.dev()), ino: m.ino() }));
        assert_eq!(roots.root_path(1), None, "missing roots have no place");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn kernel_dev_encoding() {
        // makedev(8, 1) in glibc's encoding → MKDEV(8, 1).
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 70000)), (259 << 20) | 70000);
    }
}
