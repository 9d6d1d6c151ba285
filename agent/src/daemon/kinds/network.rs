//! Network segments: the cgroup sock_addr hooks (connect4/6, sendmsg4/6)
//! decide each connect and send from the policy set, and the cgroup_skb
//! egress backstop judges the packets no sock_addr hook sees (raw, ICMP,
//! the unspecified address) by their final destination. Always attached: a
//! workload with no network segment still gets nothing protected when
//! unidentified.
use std::sync::Arc;

use crate::{
    daemon::lifecycle::{Enforcer, StartCx},
    policy::{CompiledPolicy, Policy},
    report::EnforcementStatus,
};

pub struct Network {
    /// Why the backstop is not attached, if it is not.
    backstop: Option<String>,
}

pub fn start(cx: &mut StartCx<'_>) -> anyhow::Result<Option<Arc<dyn Enforcer>>> {
    let root = cx.parts.identities.cgroup_root_abs();
    cx.hooks.attach_network(&root)?;
    // Without the backstop connects and sends are still decided; raw, ICMP
    // and unspecified-address packets are not. Said in status, not hidden.
    let backstop = cx.hooks.attach_backstop(&root).err().map(|e| {
        let why = format!("the cgroup_skb/egress backstop cannot be attached: {}", crate::system::error_chain(&e));
        tracing::error!("{why}; raw, ICMP and unspecified-address packets are not judged");
        why
    });
    Ok(Some(Arc::new(Network { backstop })))
}

pub fn configured(c: &CompiledPolicy) -> bool {
    !c.segments.is_empty()
}

impl Enforcer for Network {
    fn report(&self, policy: &Policy, _: &CompiledPolicy) -> EnforcementStatus {
        let mut e = EnforcementStatus {
            state: super::kernel_state(policy.mode, policy.segments.iter().filter(|s| !s.network.is_empty())),
            backend: "cgroup sock_addr (connect4/6, sendmsg4/6) and cgroup_skb/egress backstop, in-kernel decision"
                .into(),
            ..EnforcementStatus::not_configured("network")
        };
        if let Some(why) = &self.backstop
            && e.state != "not-configured"
        {
            e.state = "partial".into();
            e.reason = why.clone();
            e.not_enforced = vec!["raw, packet and ICMP sockets; the unspecified address".into()];
        }
        e
    }
}
