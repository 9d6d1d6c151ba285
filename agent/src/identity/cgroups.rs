//! Tracks the cgroups under the agent's root: found by a scan at start and
//! by the cgroup_mkdir/rmdir tracepoints afterwards.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::system::{SystemError, mountinfo::Mount};

/// The cgroup v2 hierarchy id in tracepoint records (v1 controllers differ).
pub const DEFAULT_HIERARCHY: u32 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Path relative to the agent's cgroup root; "" is the root itself.
    pub rel: String,
    pub workload: Option<u32>,
    /// What the path says (pod, container, Slurm job, unit), parsed once.
    pub origin: super::path::PathIdentity,
    /// The path's identity plus metadata (pod name, labels...), for events.
    pub who: std::sync::Arc<super::meta::WorkloadIdentity>,
}

pub struct CgroupTracker {
    mount_point: PathBuf,
    /// Root of the cgroup2 mount inside the hierarchy ("/" unless the agent
    /// runs in a cgroup namespace or a sub-mount).
    mount_root: String,
    root_abs: PathBuf,
    cgroups: HashMap<u64, CgroupInfo>,
    /// Entries removed since the last `compaction_due`.
    removed_since_compaction: usize,
}

/// Maps hierarchy paths (as in /proc/<pid>/cgroup) to filesystem paths.
#[derive(Clone, Debug)]
pub struct HierarchyPaths {
    mount_point: PathBuf,
    mount_root: String,
}

impl HierarchyPaths {
    pub fn abs(&self, path: &str) -> Option<PathBuf> {
        let inside_mount = match self.mount_root.as_str() {
            "/" => path,
            r => path.strip_prefix(r)?,
        };
        Some(self.mount_point.join(inside_mount.trim_start_matches('/')))
    }
}

/// The id the kernel uses for a cgroup2 directory: its inode number.
pub fn cgroup_id(path: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

impl CgroupTracker {
    /// `cgroup_root` is relative to the cgroup2 mount ("/" for all of it).
    pub fn new(mount: &Mount, cgroup_root: &str) -> Result<Self, SystemError> {
        let rel = cgroup_root.trim_matches('/');
        let root_abs = if rel.is_empty() { mount.mount_point.clone() } else { mount.mount_point.join(rel) };
        if !root_abs.join("cgroup.procs").exists() {
            return Err(SystemError::MissingCgroupRoot(root_abs.display().to_string()));
        }
        Ok(Self {
            mount_point: mount.mount_point.clone(),
            mount_root: mount.root.clone(),
            root_abs,
            cgroups: HashMap::new(),
            removed_since_compaction: 0,
        })
    }

    /// (level, id) of the root for `bpf_get_current_ancestor_cgroup_id`;
    /// level 0 means the whole hierarchy.
    pub fn root_level_id(&self) -> std::io::Result<(u32, u64)> {
        let below_mount = self.root_abs.strip_prefix(&self.mount_point).map(|p| p.components().count()).unwrap_or(0);
        let mount_depth = Path::new(&self.mount_root).components().count().saturating_sub(1);
        Ok(((below_mount + mount_depth) as u32, cgroup_id(&self.root_abs)?))
    }

    pub fn root_abs(&self) -> &Path {
        &self.root_abs
    }

    /// The root as /proc/<pid>/cgroup names it (its path in the hierarchy).
    pub fn root_in_hierarchy(&self) -> String {
        let below = self.root_abs.strip_prefix(&self.mount_point).unwrap_or(Path::new(""));
        let p = format!("{}/{}", self.mount_root.trim_end_matches('/'), below.display());
        let p = p.trim_end_matches('/');
        if p.is_empty() { "/".into() } else { p.into() }
    }

    /// What a cgroup's path says, parsed from the whole hierarchy path so
    /// kubelet's layout is recognised whatever the root.
    pub fn origin_of(&self, rel: &str) -> super::path::PathIdentity {
        let root = self.root_abs.strip_prefix(&self.mount_point).unwrap_or(Path::new(""));
        let full = format!("{}/{}/{rel}", self.mount_root.trim_end_matches('/'), root.display());
        super::path::parse(&full)
    }

    /// Mutable access for re-identification after a metadata change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&u64, &mut CgroupInfo)> {
        self.cgroups.iter_mut()
    }

    /// Every cgroup under the root (root included) as (id, rel path).
    /// Directories vanishing mid-walk are skipped, not errors.
    pub fn scan(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root_abs.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(id) = cgroup_id(&dir) else { continue };
            out.push((id, rel.clone()));
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                stack.push((entry.path(), child));
            }
        }
        out
    }

    /// Maps a tracepoint path (relative to the hierarchy root) to a path
    /// relative to our root, if it is inside it and really has this id.
    pub fn resolve_tp_path(&self, tp_path: &str, id: u64) -> Option<String> {
        let rel = self.rel_of_hierarchy_path(tp_path)?;
        let abs = if rel.is_empty() { self.root_abs.clone() } else { self.root_abs.join(&rel) };
        // The id check rejects stale or truncated paths (and v1 hierarchies).
        (cgroup_id(&abs).ok()? == id).then_some(rel)
    }

    /// Filesystem path of a hierarchy path (as shown in /proc/<pid>/cgroup).
    pub fn abs_of_hierarchy_path(&self, path: &str) -> Option<PathBuf> {
        self.hierarchy_paths().abs(path)
    }

    /// The mount facts `abs_of_hierarchy_path` needs, for use without the tracker.
    pub fn hierarchy_paths(&self) -> HierarchyPaths {
        HierarchyPaths { mount_point: self.mount_point.clone(), mount_root: self.mount_root.clone() }
    }

    /// A hierarchy path (as in /proc/<pid>/cgroup or tracepoints) relative
    /// to our root; None when outside it (not governed by this agent).
    /// A cgroup outside our cgroup namespace reads `/../…`: outside, never
    /// a relative path with `..` that a glob could match.
    pub fn rel_of_hierarchy_path(&self, path: &str) -> Option<String> {
        if path.split('/').any(|c| c == "..") {
            return None;
        }
        let inside_mount = match self.mount_root.as_str() {
            "/" => path,
            r => path.strip_prefix(r)?,
        };
        let abs = self.mount_point.join(inside_mount.trim_start_matches('/'));
        Some(abs.strip_prefix(&self.root_abs).ok()?.to_string_lossy().into_owned())
    }

    /// Finds a cgroup by id with a full walk: fallback when a tracepoint
    /// path was truncated (longer than the record can carry).
    pub fn find_by_id(&self, id: u64) -> Option<String> {
        self.scan().into_iter().find(|(i, _)| *i == id).map(|(_, rel)| rel)
    }

    pub fn insert(&mut self, id: u64, info: CgroupInfo) {
        self.cgroups.insert(id, info);
    }

    /// After deletions: shrinks the table once most of it is empty, and says
    /// whether entries went since the last time (so freed heap is worth
    /// handing back; callers run this once per batch of records, so the end
    /// of a burst of deletions is always followed by one).
    pub fn compaction_due(&mut self) -> bool {
        let cap = self.cgroups.capacity();
        let sparse = cap > 1024 && self.cgroups.len() * 4 < cap;
        if sparse {
            self.cgroups.shrink_to_fit();
        }
        let due = sparse || self.removed_since_compaction > 0;
        if due {
            self.removed_since_compaction = 0;
        }
        due
    }

    pub fn remove(&mut self, id: u64) -> Option<CgroupInfo> {
        let gone = self.cgroups.remove(&id);
        self.removed_since_compaction += usize::from(gone.is_some());
        gone
    }

    pub fn get(&self, id: u64) -> Option<&CgroupInfo> {
        self.cgroups.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &CgroupInfo)> {
        self.cgroups.iter()
    }

    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }

    /// Path of a tracked cgroup relative to the agent's root.
    pub fn rel(&self, id: u64) -> Option<&str> {
        self.cgroups.get(&id).map(|i| i.rel.as_str())
    }

    /// Absolute filesystem path of a tracked cgroup.
    pub fn abs_path(&self, id: u64) -> Option<PathBuf> {
        let info = self.cgroups.get(&id)?;
        Some(if info.rel.is_empty() { self.root_abs.clone() } else { self.root_abs.join(&info.rel) })
    }

    /// Number of tracked cgroups per workload id (None = unidentified).
    pub fn counts_by_workload(&self) -> HashMap<Option<u32>, usize> {
        let mut m = HashMap::new();
        for info in self.cgroups.values() {
            *m.entry(info.workload).or_insert(0) += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uses a plain directory tree: only the path logic is under test here
    /// (real cgroups are exercised by the integration tests).
    #[test]
    fn resolves_paths_inside_root_only() {
        let dir = std::env::temp_dir().join(format!("warden-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root/a/b")).unwrap();
        std::fs::write(dir.join("root/cgroup.procs"), "").unwrap();
        std::fs::create_dir_all(dir.join("other")).unwrap();
        let mount = Mount { root: "/".into(), mount_point: dir.clone(), fstype: "cgroup2".into() };
        let t = CgroupTracker::new(&mount, "/root").unwrap();
        let id = cgroup_id(&dir.join("root/a/b")).unwrap();
        assert_eq!(t.resolve_tp_path("/root/a/b", id).as_deref(), Some("a/b"));
        assert_eq!(t.resolve_tp_path("/root/a/b", id + 1), None, "id mismatch must not resolve");
        let other = cgroup_id(&dir.join("other")).unwrap();
        assert_eq!(t.resolve_tp_path("/other", other), None, "outside the root");
        // Seen from a cgroup namespace: above its root, so outside ours.
        assert_eq!(t.rel_of_hierarchy_path("/root/a/b").as_deref(), Some("a/b"));
        assert_eq!(t.rel_of_hierarchy_path("/root/../other"), None);
        assert_eq!(t.rel_of_hierarchy_path("/../../root/a"), None);
        let mut scanned: Vec<String> = t.scan().into_iter().map(|(_, r)| r).collect();
        scanned.sort();
        assert_eq!(scanned, vec!["", "a", "a/b"]);
        assert!(CgroupTracker::new(&mount, "/missing").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
