//! BPF-LSM file backend: lsm/file_open and the namespace hooks decide in
//! the kernel from the policy set's roots and grants; a restart leaves
//! them running from their pinned links. Once attached, only the roots need
//! upkeep (`FileRoots` is its enforcer).
use super::Choice;
use crate::daemon::lifecycle::StartCx;

/// Probes BPF-LSM and attaches the file hooks; `Err` says why not.
pub(super) fn start(cx: &mut StartCx<'_>) -> Result<Choice, String> {
    if !cx.securityfs {
        return Err("securityfs is not mounted (cannot read the active LSM list)".into());
    }
    let active = crate::files::require_bpf_lsm()?;
    cx.hooks.attach_lsm()?;
    Ok(Choice {
        backend: crate::report::words::FILES_LSM,
        reason: format!("BPF-LSM active (lsm={}) and the file hooks loaded", active.join(",")),
        not_enforced: cx.hooks.lsm_limits().to_vec(),
    })
}
