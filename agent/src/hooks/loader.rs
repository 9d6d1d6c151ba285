use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{CgroupAttachMode, CgroupSockAddr, TracePoint},
};
use thiserror::Error;

use super::{maps::PolicyMaps, tracefs};
use crate::system::mounts::TRACEFS;

/// The kernel object built from `ebpf/` by `agent/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("WARDEN_EBPF_OBJECT_PATH"));

const NET_PROGRAMS: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];
const TRACEPOINTS: [&str; 2] = ["cgroup_mkdir", "cgroup_rmdir"];

#[derive(Debug, Error)]
pub enum HookError {
    #[error("tracepoint layout: {0}")]
    Tracefs(String),
    #[error("loading the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("loading program {name} into the kernel: {source}")]
    Verify { name: &'static str, source: aya::programs::ProgramError },
    #[error("attaching {name} to {target}: {source}")]
    Attach { name: &'static str, target: String, source: aya::programs::ProgramError },
    #[error("cannot open cgroup {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
    #[error("map {0}: {1}")]
    Map(&'static str, String),
}

/// What is attached where, for `warden status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttachedProgram {
    pub name: &'static str,
    pub kind: &'static str,
    pub attached_to: String,
    pub program_id: u32,
}

pub struct Hooks {
    ebpf: Ebpf,
    pub attached: Vec<AttachedProgram>,
}

impl Hooks {
    /// Loads the object (maps created, programs not yet in the kernel).
    pub fn load(ring_buffer_bytes: u32) -> Result<Self, HookError> {
        let tracefs = Path::new(TRACEFS);
        let (mk_root, mk_id, mk_path) =
            tracefs::cgroup_tp_offsets(tracefs, "cgroup_mkdir").map_err(HookError::Tracefs)?;
        let rm = tracefs::cgroup_tp_offsets(tracefs, "cgroup_rmdir").map_err(HookError::Tracefs)?;
        if rm != (mk_root, mk_id, mk_path) {
            // Both programs share the globals; differing layouts would need two sets.
            return Err(HookError::Tracefs("cgroup_mkdir and cgroup_rmdir layouts differ".into()));
        }
        let ebpf = EbpfLoader::new()
            .override_global("TP_OFF_ROOT", &mk_root, true)
            .override_global("TP_OFF_ID", &mk_id, true)
            .override_global("TP_OFF_PATH", &mk_path, true)
            .map_max_entries("EVENTS", ring_buffer_bytes)
            .load(OBJECT)
            .map_err(HookError::Load)?;
        Ok(Self { ebpf, attached: Vec::new() })
    }

    /// Takes the typed maps out of the object.
    pub fn take_maps(&mut self) -> Result<PolicyMaps, HookError> {
        PolicyMaps::take(&mut self.ebpf)
    }

    pub fn take_ring(&mut self, name: &'static str) -> Result<aya::maps::RingBuf<aya::maps::MapData>, HookError> {
        let map = self.ebpf.take_map(name).ok_or(HookError::Map(name, "missing".into()))?;
        aya::maps::RingBuf::try_from(map).map_err(|e| HookError::Map(name, e.to_string()))
    }

    /// cgroup lifecycle tracepoints: attached before the cgroup scan so no
    /// cgroup created during the scan is missed.
    pub fn attach_tracepoints(&mut self) -> Result<(), HookError> {
        for name in TRACEPOINTS {
            let prog: &mut TracePoint = program(&mut self.ebpf, name)?;
            prog.load().map_err(|e| HookError::Verify { name, source: e })?;
            let target = format!("cgroup:{name}");
            prog.attach("cgroup", name).map_err(|e| HookError::Attach { name, target: target.clone(), source: e })?;
            let id = prog.info().map(|i| i.id()).unwrap_or(0);
            self.record(name, "tracepoint", target, id);
        }
        Ok(())
    }

    /// Network hooks at `cgroup_dir`, multi-attach so CNI/runtime programs
    /// on the same cgroups keep running (every program must allow).
    ///
    /// On kernels >= 5.7 aya attaches with a bpf_link, which is always
    /// multi-attach; the kernel rejects BPF_F_ALLOW_MULTI on links (EINVAL),
    /// so the mode must be `Single` (flags 0) there.
    pub fn attach_network(&mut self, cgroup_dir: &Path) -> Result<(), HookError> {
        let cgroup = std::fs::File::open(cgroup_dir)
            .map_err(|source| HookError::Cgroup { path: cgroup_dir.display().to_string(), source })?;
        let target = cgroup_dir.display().to_string();
        for name in NET_PROGRAMS {
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
            prog.load().map_err(|e| HookError::Verify { name, source: e })?;
            prog.attach(cgroup.as_fd(), attach_mode()).map_err(|e| HookError::Attach {
                name,
                target: target.clone(),
                source: e,
            })?;
            let id = prog.info().map(|i| i.id()).unwrap_or(0);
            self.record(name, "cgroup_sock_addr", target.clone(), id);
        }
        Ok(())
    }

    fn record(&mut self, name: &'static str, kind: &'static str, attached_to: String, program_id: u32) {
        self.attached.push(AttachedProgram { name, kind, attached_to, program_id });
    }

    /// Program ids, for reading kernel run-time statistics.
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        self.attached.iter().map(|a| (a.name.to_string(), a.program_id)).collect()
    }

    pub fn attach_points(&self) -> Vec<PathBuf> {
        self.attached.iter().map(|a| PathBuf::from(&a.attached_to)).collect()
    }
}

/// Links (>= 5.7) are multi-attach by nature; legacy attach needs the flag.
fn attach_mode() -> CgroupAttachMode {
    if aya::util::KernelVersion::current().map(|v| v >= aya::util::KernelVersion::new(5, 7, 0)).unwrap_or(true) {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    }
}

/// A program of the object, as its concrete type.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, HookError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(HookError::MissingProgram(name))?;
    prog.try_into().map_err(|e| HookError::Verify { name, source: e })
}
