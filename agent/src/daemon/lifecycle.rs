//! One lifecycle for every enforcement kind (network, files, devices, and
//! the kinds to come). A kind is a module under `kinds/` with a starter
//! listed in `kinds::KINDS`; what it starts implements `Enforcer`.
//!
//! The daemon drives each started enforcer through the same steps:
//! - **start** (its starter): probe what the kernel allows, resolve what the
//!   first kernel policy set needs, attach programs or spawn threads; a
//!   starter tries its backends strongest first;
//! - **prepare** (each reload, before anything switches): resolve what the
//!   next set needs into `SetParts`, or refuse the change with a reason;
//! - **commit** (under the policy cell's lock, right after the kernel set
//!   flipped, before the policy generation moves): userspace follows;
//! - **settle** (after the switch, outside the lock): undo what the old
//!   policy needed and the new one does not;
//! - **recheck** (every 500 ms; `full` every 30 s or after lost cgroup
//!   records): re-resolve what the node may have changed under it;
//! - **report**: its part of `warden status` and the metrics;
//! - **stop** (SIGTERM or a lost task): kernel backends hand over through
//!   their pinned links and maps, so the next agent takes over with no gap;
//!   userspace backends stop, and `restart_gap` says what pauses meanwhile.
use std::{future::Future, pin::Pin, sync::Arc};

use warden_common::{DeviceKey, DeviceSegment, InodeKey};

use super::{Parts, events::Pipeline};
use crate::{
    devices::DeviceTable,
    enrich::Enricher,
    files::roots::Roots,
    hooks::{
        Hooks,
        maps::{SetContents, VerdictCounts},
    },
    policy::{CompiledPolicy, Policy},
    report::{EnforcementStatus, StatusReport},
    settings::AgentConfig,
};

/// A long-running task an enforcer hands the daemon (its event writer).
pub type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What the kinds resolve on this node for a policy, beside the compiled
/// rules and the cgroup identities (which the policy cell and identity
/// store own): each kind's `resolve` fills its fields, for the first set
/// and for every reload alike (`kinds::resolve`).
#[derive(Default)]
pub struct SetParts {
    pub file_roots: Vec<(InodeKey, u32)>,
    pub device_nodes: Vec<(DeviceKey, DeviceSegment)>,
    /// The userspace view of the same entries, handed to commit.
    pub roots: Arc<Roots>,
    pub devices: Arc<DeviceTable>,
}

impl SetParts {
    /// The whole kernel set: `policy`, its cgroup identities and these parts.
    pub fn contents<'a>(
        &'a self,
        policy: &'a Arc<CompiledPolicy>,
        cgroups: &'a [(u64, u32)],
        tag: [u8; 32],
    ) -> SetContents<'a> {
        SetContents { policy, cgroups, file_roots: &self.file_roots, device_nodes: &self.device_nodes, tag }
    }
}

/// What a starter gets: the parts, the loaded object, the sinks.
pub struct StartCx<'a> {
    pub parts: &'a Parts,
    pub hooks: &'a mut Hooks,
    pub compiled: &'a Arc<CompiledPolicy>,
    /// The `agent:` section the agent started with.
    pub settings: &'a AgentConfig,
    /// What the first set holds (already in the kernel).
    pub set: &'a SetParts,
    /// Enforce mode: a kind that cannot start stops the agent; in audit mode
    /// it is reported as failed and the agent runs on.
    pub enforce: bool,
    /// securityfs could be mounted (the active LSM list is readable).
    pub securityfs: bool,
    pub pipeline: &'a Pipeline,
    pub enricher: &'a Enricher,
    /// Tasks to run beside the others; one ending stops the agent.
    pub tasks: Vec<Task>,
}

/// One started backend of one segment kind.
pub trait Enforcer: Send + Sync {
    /// Before a reload switches to `next` (whose `set` is resolved): refuse
    /// a change this backend cannot enforce, or get ready for it (the last
    /// good policy stays in force on `Err`).
    fn prepare(&self, _next: &CompiledPolicy, _set: &SetParts) -> Result<(), String> {
        Ok(())
    }

    /// Under the cell lock, right after the kernel flipped to the new set
    /// (`old`: the policy it replaced).
    fn commit(&self, _old: &CompiledPolicy, _set: &SetParts) {}

    /// After the switch, outside the cell lock.
    fn settle(&self) {}

    fn recheck(&self, _full: bool) {}

    /// This kind's enforcement status under `policy`.
    fn report(&self, policy: &Policy, compiled: &CompiledPolicy) -> EnforcementStatus;

    /// Anything else this kind puts in the report (GPU assignment, its own
    /// event counters).
    fn extend(&self, _report: &mut StatusReport) {}

    /// Decisions a userspace backend counted itself for workload `id`
    /// (`name`); `None`: the kernel's counters of this kind are the truth.
    fn counts(&self, _name: &str, _id: u32) -> Option<VerdictCounts> {
        None
    }

    /// Device names for events (the devices kind).
    fn device_table(&self) -> Option<Arc<crate::devices::DeviceTable>> {
        None
    }

    fn stop(&self) {}
}

/// How a kind starts: `Ok(None)` when the policy has nothing for it.
pub type Starter = fn(&mut StartCx<'_>) -> anyhow::Result<Option<Arc<dyn Enforcer>>>;

/// An entry of the registry.
pub struct Kind {
    pub name: &'static str,
    pub start: Starter,
    /// Why a reload that adds segments of this kind is refused when it was
    /// not started with the agent's first policy.
    pub not_started: &'static str,
    /// Whether `policy` has segments of this kind.
    pub configured: fn(&CompiledPolicy) -> bool,
    /// Fills this kind's part of a kernel set for a policy.
    pub resolve: fn(&CompiledPolicy, &AgentConfig, &mut SetParts),
}
