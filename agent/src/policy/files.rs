//! File segments: protected directory trees and who may read or write them.
//!
//! The agent resolves each [`FileRoot`] to its (device, inode) on the node and
//! the kernel decides by walking a file's ancestry up to the first protected
//! root, so the deepest root governs nested paths. The decision itself, once
//! the segment is known, is `CompiledPolicy::file_verdict` (`file_verdict.rs`):
//! the fanotify backend calls it, the LSM program calls the same table
//! (`warden_common::file_verdict`) over the `FILE_ALLOW` and `SEG_INFO` maps.
use std::path::PathBuf;

use warden_common::{AllowKey, FileAllowValue};

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

    let allow = super::allow::allow_table(
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
