//! Network segments: the cgroup sock_addr hooks (connect4/6, sendmsg4/6)
//! decide each connect and send from the policy set; the cgroup_skb egress
//! backstop judges the packets no sock_addr hook sees (raw, ICMP, the
//! unspecified address) by their final destination; cgroup/sock_create
//! refuses raw sockets and the BPF-LSM `socket_create` hook packet sockets
//! to workloads without a grant. Always attached: a workload with no
//! network segment still gets nothing protected when unidentified.
use std::sync::Arc;

use crate::{
    daemon::lifecycle::{Enforcer, StartCx},
    policy::{CompiledPolicy, Policy},
    report::EnforcementStatus,
};

pub struct Network {
    /// What this node cannot hold against, and why (never hidden).
    gaps: Vec<(String, String)>,
}

pub fn start(cx: &mut StartCx<'_>) -> anyhow::Result<Option<Arc<dyn Enforcer>>> {
    let root = cx.parts.identities.cgroup_root_abs();
    cx.hooks.attach_network(&root)?;
    // Without these, connects and sends are still decided: status says
    // what is not, and why.
    let mut gaps = Vec::new();
    let chain = |e: &crate::hooks::HookError| crate::system::error_chain(e);
    if let Err(e) = cx.hooks.attach_backstop(&root) {
        gaps.push((
            "raw and ICMP packets, the unspecified address".into(),
            format!("the cgroup_skb/egress backstop cannot be attached: {}", chain(&e)),
        ));
    }
    if let Err(e) = cx.hooks.attach_socket_guard(&root) {
        gaps.push((
            "raw socket creation".into(),
            format!("the cgroup/sock_create hook cannot be attached: {}", chain(&e)),
        ));
    }
    if let Err(e) = cx.hooks.attach_socket_lsm() {
        gaps.push((
            "packet sockets (AF_PACKET)".into(),
            format!(
                "BPF-LSM is not available ({e}), and no cgroup hook sees a packet socket's creation or its \
                 frames: deny pods CAP_NET_RAW (Pod Security `restricted` drops it) to close this"
            ),
        ));
    }
    for (what, why) in &gaps {
        tracing::warn!(not_enforced = %what, "{why}");
    }
    Ok(Some(Arc::new(Network { gaps })))
}

pub fn configured(c: &CompiledPolicy) -> bool {
    !c.segments.is_empty()
}

impl Enforcer for Network {
    fn report(&self, policy: &Policy, _: &CompiledPolicy) -> EnforcementStatus {
        let mut e = EnforcementStatus {
            state: super::kernel_state(policy.mode, policy.segments.iter().filter(|s| !s.network.is_empty())),
            backend: crate::report::words::NETWORK_BACKEND.into(),
            restart: crate::report::words::RESTART_PINNED.into(),
            ..EnforcementStatus::not_configured("network")
        };
        if !self.gaps.is_empty() && e.state != "not-configured" {
            e.state = "partial".into();
            e.reason = self.gaps.iter().map(|(_, why)| why.as_str()).collect::<Vec<_>>().join("; ");
            e.not_enforced = self.gaps.iter().map(|(what, _)| what.clone()).collect();
        }
        e
    }
}
