//! The userspace file decision over a compiled policy's `FILE_ALLOW` table.
use super::compile::CompiledPolicy;

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
}
