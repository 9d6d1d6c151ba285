//! File segments: protected directory trees and who may read or write them.
//!
//! The agent resolves each [`FileRoot`] to its (device, inode) on the node and
//! the kernel decides by walking a file's ancestry up to the first protected
//! root, so the deepest root governs nested paths. The decision itself, once
//! the segment is known, is [`CompiledPolicy::file_verdict`]: the fanotify
//! backend calls it, the LSM program calls the same table
//! (`warden_common::file_verdict`) over the `FILE_ALLOW` and `SEG_INFO` maps.
use std::path::PathBuf;

use warden_common::{AllowKey, FileAllowValue};

use super::compile::CompiledPolicy;
use super::model::Policy;

/// One protected directory tree of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRoot {
    pub segment_id: u16,
    /// Absolute and normalised as written in the policy; not resolved.
    pub path: PathBuf,
}

/// Roots in file order, and `FILE_ALLOW` entries sorted by (workload, segment).
pub(super) fn compile_files(policy: &Policy) -> (Vec<FileRoot>, Vec<(AllowKey, FileAllowValue)>) {
    let roots = policy
        .segments
        .iter()
        .enumerate()
        .flat_map(|(si, s)| s.paths.iter().map(move |p| FileRoot { segment_id: (si + 1) as u16, path: p.path.clone() }))
        .collect();

    let allow = super::compile::allow_table(
        policy,
        |s| !s.paths.is_empty(),
        // Validation requires `access` here; grant nothing should it be missing.
        |rule, rule_id, _, deny_mode| FileAllowValue {
            access: rule.access.map_or(0, |a| a.bits()),
            deny_mode,
            _pad: [0; 2],
            rule_id,
        },
        |deny_mode| FileAllowValue { deny_mode, ..Default::default() },
    );
    (roots, allow)
}

impl CompiledPolicy {
    /// The kernel's file decision table (`warden_common::file_verdict`)
    /// over this policy, for the fanotify backend.
    ///
    /// `workload`: `None` for an unidentified process. `segment_id`: the
    /// segment of the deepest protected root above the file. `want`:
    /// `ACCESS_READ` or `ACCESS_READ | ACCESS_WRITE`. Returns a `VERDICT_*`
    /// and the rule reported with it (0 = none):
    ///
    /// - unidentified: denied, or audited per the segment's mode (which
    ///   already falls back to the global one);
    /// - a `FILE_ALLOW` entry granting every wanted bit: allowed by its rule;
    /// - an entry granting less: denied or audited per the entry's mode, with its rule;
    /// - no entry: denied or audited per the segment's mode, no rule.
    ///
    /// An id outside the policy's segments is treated as a segment with the
    /// global mode (fail closed).
    pub fn file_verdict(&self, workload: Option<u32>, segment_id: u16, want: u8) -> (u8, u32) {
        let segment_mode = || {
            (segment_id as usize)
                .checked_sub(1)
                .and_then(|i| self.segment_info.get(i))
                .map_or(self.settings.default_mode, |(_, info)| info.mode)
        };
        let entry = workload.and_then(|workload_id| {
            self.file_allow
                .binary_search_by_key(&(workload_id, segment_id), |(k, _)| (k.workload_id, k.segment_id))
                .ok()
                .map(|i| &self.file_allow[i].1)
        });
        warden_common::file_verdict(entry, want, segment_mode)
    }

    /// Whether the policy protects any directory tree (file hooks are needed).
    pub fn has_file_segments(&self) -> bool {
        !self.files.is_empty()
    }
}
