//! Network segments: the cgroup sock_addr hooks (connect4/6, sendmsg4/6)
//! decide in the kernel from the policy set. Always attached: a workload
//! with no network segment still gets nothing protected when unidentified.
use std::sync::Arc;

use crate::{
    daemon::lifecycle::{Enforcer, StartCx},
    policy::{CompiledPolicy, Policy},
    report::EnforcementStatus,
};

pub struct SockAddr;

pub fn start(cx: &mut StartCx<'_>) -> anyhow::Result<Option<Arc<dyn Enforcer>>> {
    cx.hooks.attach_network(&cx.parts.identities.cgroup_root_abs())?;
    Ok(Some(Arc::new(SockAddr)))
}

pub fn configured(c: &CompiledPolicy) -> bool {
    !c.segments.is_empty()
}

impl Enforcer for SockAddr {
    fn report(&self, policy: &Policy, _: &CompiledPolicy) -> EnforcementStatus {
        EnforcementStatus {
            state: super::kernel_state(policy.mode, policy.segments.iter().filter(|s| !s.network.is_empty())),
            backend: "cgroup sock_addr (connect4/6, sendmsg4/6), in-kernel decision".into(),
            ..EnforcementStatus::not_configured("network")
        }
    }
}
