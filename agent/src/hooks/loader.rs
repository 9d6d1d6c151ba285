use std::{os::fd::AsFd, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{CgroupDevice, CgroupSkb, CgroupSock, CgroupSockAddr, Lsm, RawTracePoint, TracePoint},
};
use thiserror::Error;
use warden_common::map_names as names;

use super::{
    maps::PolicyMaps,
    pins::{self, Pins},
    tracefs,
};
use crate::system::mounts::TRACEFS;

/// The kernel object built from `ebpf/` by `agent/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("WARDEN_EBPF_OBJECT_PATH"));

/// The network programs and their attach points.
const NET_PROGRAMS: [(&str, u32); 4] = [
    ("connect4", pins::BPF_CGROUP_INET4_CONNECT),
    ("connect6", pins::BPF_CGROUP_INET6_CONNECT),
    ("sendmsg4", pins::BPF_CGROUP_UDP4_SENDMSG),
    ("sendmsg6", pins::BPF_CGROUP_UDP6_SENDMSG),
];
const TRACEPOINTS: [&str; 2] = ["cgroup_mkdir", "cgroup_rmdir"];
const LSM_HOOKS: [&str; 13] = [
    "file_open",
    "inode_create",
    "inode_mknod",
    "inode_symlink",
    "inode_mkdir",
    "inode_unlink",
    "inode_rmdir",
    "inode_setattr",
    "inode_setxattr",
    "inode_removexattr",
    "inode_link",
    "inode_rename",
    "ptrace_access_check",
];

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
    Map(String, String),
    #[error("pinning {what} in bpffs: {source}")]
    Pin { what: String, source: std::io::Error },
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
    pins: Pins,
    pub attached: Vec<AttachedProgram>,
    /// Whether this kernel's BTF gave every offset the file hooks need.
    file_offsets: Result<(), String>,
    lsm_limits: Vec<String>,
    /// Every pinned link made, for the guard.
    guarded: Vec<super::guard::Spec>,
    /// Tail programs set in `FILE_TAIL`, for the guard.
    tails: Vec<super::guard::TailSpec>,
}

/// The event ring's size. A pinned ring (an earlier agent's, whose
/// programs still write to it) is reused as it is: it keeps its size, and
/// the object must say the same or the ring would be mapped wrongly.
fn ring_size(pins: &Pins, configured: u32) -> u32 {
    match aya::maps::MapInfo::from_pin(pins.maps_dir().join(names::EVENTS)) {
        Ok(pinned) if pinned.max_entries() != configured => {
            tracing::warn!(
                pinned = pinned.max_entries(),
                configured,
                "the pinned event ring keeps its size; run `warden uninstall` with no agent running, then start, to resize it"
            );
            pinned.max_entries()
        }
        _ => configured,
    }
}

impl Hooks {
    /// Loads the object (maps created, programs not yet in the kernel).
    /// `cgroup_root` (level, id) scopes the file hooks like the network
    /// hooks' attach point does.
    pub fn load(ring_buffer_bytes: u32, cgroup_root: (u32, u64), pins: Pins) -> Result<Self, HookError> {
        let tracefs = Path::new(TRACEFS);
        let (mk_root, mk_id, mk_path) =
            tracefs::cgroup_tp_offsets(tracefs, "cgroup_mkdir").map_err(HookError::Tracefs)?;
        let rm = tracefs::cgroup_tp_offsets(tracefs, "cgroup_rmdir").map_err(HookError::Tracefs)?;
        if rm != (mk_root, mk_id, mk_path) {
            // Both programs share the globals; differing layouts would need two sets.
            return Err(HookError::Tracefs("cgroup_mkdir and cgroup_rmdir layouts differ".into()));
        }
        // Kernel struct offsets for the file hooks, from this kernel's BTF.
        // Without them the LSM backend is unavailable (reported), the rest works.
        let offsets = super::btf::file_offsets();
        let mut loader = EbpfLoader::new();
        loader
            .override_global("TP_OFF_ROOT", &mk_root, true)
            .override_global("TP_OFF_ID", &mk_id, true)
            .override_global("TP_OFF_PATH", &mk_path, true)
            .override_global("ROOT_CGROUP_LEVEL", &cgroup_root.0, true)
            .override_global("ROOT_CGROUP_ID", &cgroup_root.1, true)
            .map_max_entries(names::EVENTS, ring_size(&pins, ring_buffer_bytes))
            // Reused when an earlier agent pinned them: the policy in force,
            // counters and undelivered events carry over.
            .default_map_pin_directory(pins.maps_dir());
        if let Ok(offs) = &offsets {
            for (name, value) in offs {
                loader.override_global(name, value, true);
            }
        }
        let ebpf = loader.load(OBJECT).map_err(HookError::Load)?;
        Ok(Self {
            ebpf,
            pins,
            attached: Vec::new(),
            file_offsets: offsets.map(|_| ()).map_err(|e| e.to_string()),
            lsm_limits: Vec::new(),
            guarded: Vec::new(),
            tails: Vec::new(),
        })
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The node's event sequence, in its pinned map (mapped: no syscall
    /// per event, and it outlives this process).
    pub fn event_seq(&mut self) -> Result<crate::enrich::seq::Seq, HookError> {
        let name = names::EVENT_SEQ;
        let map = self.ebpf.map(name).ok_or_else(|| HookError::Map(name.into(), "missing from object".into()))?;
        let fd = match map {
            aya::maps::Map::Array(m) => m.fd().as_fd(),
            _ => return Err(HookError::Map(name.into(), "not an array".into())),
        };
        crate::enrich::seq::Seq::mapped(fd).map_err(|e| HookError::Map(name.into(), format!("mapping it: {e}")))
    }

    /// A guard over every link pinned so far and every pinned map.
    pub fn guard(&self) -> std::io::Result<super::guard::Guard> {
        super::guard::Guard::new(self.pins.clone(), &self.guarded, &self.tails)
    }

    /// Takes the typed maps out of the object.
    /// The policy maps; `log_unprotected` (`agent.events`) goes into every set.
    pub fn take_maps(&mut self, log_unprotected: bool) -> Result<PolicyMaps, HookError> {
        PolicyMaps::take(&mut self.ebpf, self.pins.adopted, log_unprotected)
    }

    pub fn take_ring(&mut self, name: &'static str) -> Result<aya::maps::RingBuf<aya::maps::MapData>, HookError> {
        let map = self.ebpf.take_map(name).ok_or_else(|| HookError::Map(name.into(), "missing".into()))?;
        aya::maps::RingBuf::try_from(map).map_err(|e| HookError::Map(name.into(), e.to_string()))
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
        for (name, attach_type) in NET_PROGRAMS {
            self.attach_cgroup::<CgroupSockAddr>(name, "cgroup_sock_addr", cgroup_dir, attach_type)?;
        }
        Ok(())
    }

    /// The packet-level backstop (cgroup_skb/egress) at `cgroup_dir`:
    /// judges each packet leaving a workload by its final destination.
    pub fn attach_backstop(&mut self, cgroup_dir: &Path) -> Result<(), HookError> {
        self.attach_cgroup::<CgroupSkb>("egress", "cgroup_skb", cgroup_dir, pins::BPF_CGROUP_INET_EGRESS)
    }

    /// The socket-creation guard (cgroup/sock_create) at `cgroup_dir`:
    /// raw and packet sockets need a grant.
    pub fn attach_socket_guard(&mut self, cgroup_dir: &Path) -> Result<(), HookError> {
        self.attach_cgroup::<CgroupSock>("sock_create", "cgroup_sock", cgroup_dir, pins::BPF_CGROUP_INET_SOCK_CREATE)
    }

    /// Device hook at `cgroup_dir`. Through a bpf_link it runs alongside the
    /// container runtime's own device programs (every program must allow).
    pub fn attach_devices(&mut self, cgroup_dir: &Path) -> Result<(), HookError> {
        self.attach_cgroup::<CgroupDevice>("device", "cgroup_device", cgroup_dir, pins::BPF_CGROUP_DEVICE)
    }

    /// Loads a cgroup program and attaches it through a pinned bpf_link
    /// (multi-attach: the runtime's and CNI's programs keep running, and
    /// every program must allow).
    fn attach_cgroup<P: CgroupProgram>(
        &mut self,
        name: &'static str,
        kind: &'static str,
        cgroup_dir: &Path,
        attach_type: u32,
    ) -> Result<(), HookError>
    where
        for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        let cgroup = std::fs::File::open(cgroup_dir)
            .map_err(|source| HookError::Cgroup { path: cgroup_dir.display().to_string(), source })?;
        let target = cgroup_dir.display().to_string();
        let prog: &mut P = program(&mut self.ebpf, name)?;
        prog.load_program().map_err(|source| HookError::Verify { name, source })?;
        let fd = prog.program_fd().map_err(|source| HookError::Verify { name, source })?;
        let link = pins::cgroup_link(fd, cgroup.as_fd(), attach_type).map_err(|e| HookError::Attach {
            name,
            target: target.clone(),
            source: aya::programs::ProgramError::IOError(e),
        })?;
        let id = prog.id();
        self.pins.replace_link(name, link).map_err(|source| HookError::Pin { what: name.into(), source })?;
        self.record(name, kind, target, id);
        let target = super::guard::Target::Cgroup { path: cgroup_dir.to_path_buf(), attach_type };
        self.guarded.push(super::guard::Spec { name, target });
        Ok(())
    }

    /// The `file_locate` program (never attached: run on demand) and its
    /// output map, for a backend that decides in userspace.
    pub fn load_file_locate(&mut self) -> Result<crate::files::locate::Locate, String> {
        self.file_offsets.clone().map_err(|e| format!("kernel BTF lacks a needed offset: {e}"))?;
        let name = "file_locate";
        let prog: &mut RawTracePoint = program(&mut self.ebpf, name).map_err(|e| e.to_string())?;
        prog.load().map_err(|e| format!("loading {name}: {}", crate::system::error_chain(&e)))?;
        let fd =
            prog.fd().map_err(|e| e.to_string())?.as_fd().try_clone_to_owned().map_err(|e| format!("{name}: {e}"))?;
        let located = super::maps::take(&mut self.ebpf, names::FILE_LOCATED).map_err(|e| e.to_string())?;
        Ok(crate::files::locate::Locate::new(fd, located))
    }

    /// The files that left a segment tree (`FILE_ESCAPED`), to record
    /// those found by a scan or seen by a userspace backend.
    pub fn take_escaped(&mut self) -> Result<crate::files::escaped::Escaped, HookError> {
        Ok(crate::files::escaped::Escaped::new(
            super::maps::take(&mut self.ebpf, names::FILE_ESCAPED)?,
            super::maps::take(&mut self.ebpf, names::FILE_ESCAPED_ANY)?,
        ))
    }

    /// BPF-LSM file hooks. Errors say why (the caller falls back).
    pub fn attach_lsm(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
        for name in self.load_lsm(&btf)? {
            self.attach_lsm_hook(name, &btf)?;
        }
        Ok(())
    }

    /// Loads the BPF-LSM file hooks without attaching them: what this
    /// kernel's verifier takes, and so what `attach_lsm` would give up
    /// (`lsm_limits`). For `warden probe`.
    pub fn verify_lsm(&mut self) -> Result<&[String], String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
        self.load_lsm(&btf)?;
        Ok(&self.lsm_limits)
    }

    /// Every file hook through the verifier (a kernel that refuses one gets
    /// none attached: no half-enforced files next to the fallback); returns
    /// the programs to attach.
    fn load_lsm(&mut self, btf: &aya::Btf) -> Result<Vec<&'static str>, String> {
        self.file_offsets.clone().map_err(|e| format!("kernel BTF lacks a needed offset: {e}"))?;
        let mut hooks: Vec<&'static str> = LSM_HOOKS.to_vec();
        // Before 6.5 the verifier does not take the two-walk programs (it
        // gives up after a million instructions, which under emulation takes
        // 20 s a program): their one-walk variants go first there.
        let old_verifier = crate::system::kernel::version().is_some_and(|v| v < (6, 5));
        for (i, name) in LSM_HOOKS.into_iter().enumerate() {
            let lite = lite_variant(name);
            if old_verifier && let Some(lite) = lite {
                self.load_lsm_hook(lite.name, btf)?;
                self.load_tail(&lite, btf);
                hooks[i] = lite.name;
                continue;
            }
            if let Err(e) = self.load_lsm_hook(name, btf) {
                // One walk instead of two where the verifier cannot take both.
                let Some(lite) = lite else { return Err(e) };
                self.load_lsm_hook(lite.name, btf).map_err(|_| e.clone())?;
                tracing::warn!(error = %e, "lsm/{name} is too large for this kernel's verifier: using {}", lite.name);
                self.load_tail(&lite, btf);
                hooks[i] = lite.name;
            }
        }
        Ok(hooks)
    }

    /// The second walk of a one-walk hook, in its tail (slot 0 of the
    /// hook's `FILE_TAILS` array): set before the hook is attached. Without
    /// it the hook keeps its stricter fallback, listed in `lsm_limits`.
    fn load_tail(&mut self, lite: &Lite, btf: &aya::Btf) {
        let array = names::FILE_TAILS[lite.tail_index as usize];
        let set = self.load_lsm_hook(lite.tail, btf).and_then(|()| {
            let prog: &mut Lsm = program(&mut self.ebpf, lite.tail).map_err(|e| e.to_string())?;
            let fd = prog.fd().map_err(|e| e.to_string())?.try_clone().map_err(|e| e.to_string())?;
            let map = self.ebpf.map_mut(array).ok_or_else(|| format!("{array} missing"))?;
            let mut tails = aya::maps::ProgramArray::try_from(map).map_err(|e| e.to_string())?;
            tails.set(0, &fd, 0).map_err(|e| format!("setting {array}: {e}"))
        });
        match set {
            Ok(()) => self.tails.push(super::guard::TailSpec { name: lite.tail, array }),
            Err(e) => {
                tracing::warn!(error = %e, "lsm/{}: no tail on this kernel, using its fallback", lite.tail);
                self.lsm_limits.push(format!("{} ({e})", lite.without_tail));
            }
        }
    }

    /// What the attached file hooks cannot see on this kernel.
    pub fn lsm_limits(&self) -> &[String] {
        &self.lsm_limits
    }

    fn load_lsm_hook(&mut self, name: &'static str, btf: &aya::Btf) -> Result<(), String> {
        let prog: &mut Lsm = program(&mut self.ebpf, name).map_err(|e| e.to_string())?;
        let hook = lsm_hook_of(name);
        prog.load(hook, btf).map_err(|e| format!("loading lsm/{hook}: {}", crate::system::error_chain(&e)))
    }

    /// The BPF-LSM `socket_create` hook, which refuses packet sockets (no
    /// cgroup hook sees their creation). Errors say why.
    pub fn attach_socket_lsm(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
        self.attach_lsm_hook("socket_create", &btf)
    }

    fn attach_lsm_hook(&mut self, name: &'static str, btf: &aya::Btf) -> Result<(), String> {
        let prog: &mut Lsm = program(&mut self.ebpf, name).map_err(|e| e.to_string())?;
        if prog.fd().is_err() {
            let hook = lsm_hook_of(name);
            prog.load(hook, btf).map_err(|e| format!("loading lsm/{hook}: {}", crate::system::error_chain(&e)))?;
        }
        let fd = prog.fd().map_err(|e| format!("lsm/{name}: {}", crate::system::error_chain(&e)))?;
        let link = pins::lsm_link(fd).map_err(|e| format!("attaching lsm/{name}: {e}"))?;
        self.pins.replace_link(name, link).map_err(|e| format!("pinning the link of lsm/{name}: {e}"))?;
        let id = prog.info().map(|i| i.id()).unwrap_or(0);
        self.record(name, "lsm", format!("lsm/{name}"), id);
        self.guarded.push(super::guard::Spec { name, target: super::guard::Target::Lsm });
        Ok(())
    }

    fn record(&mut self, name: &'static str, kind: &'static str, attached_to: String, program_id: u32) {
        self.attached.push(AttachedProgram { name, kind, attached_to, program_id });
    }
}

/// The LSM hook a program attaches to (programs are named for their hook,
/// except the `_lite` variants and their `_tail`s).
fn lsm_hook_of(program: &str) -> &str {
    program.strip_suffix("_lite").or_else(|| program.strip_suffix("_tail")).unwrap_or(program)
}

/// The one-walk variant of a hook, for kernels whose verifier cannot take
/// two walks in one program: its second walk is a tail call.
struct Lite {
    name: &'static str,
    tail: &'static str,
    /// `FILE_TAIL_*`.
    tail_index: u32,
    /// What it gives up when the tail cannot be set.
    without_tail: &'static str,
}

fn lite_variant(program: &str) -> Option<Lite> {
    let (name, tail, tail_index, without_tail) = match program {
        "file_open" => (
            "file_open_lite",
            "file_open_tail",
            warden_common::FILE_TAIL_OPEN,
            "an overlayfs file on a filesystem that holds a segment root, opened through the overlay, is denied to \
             governed workloads (this kernel passes the real file under the overlay's path; its place is not walked)",
        ),
        "inode_link" => (
            "inode_link_lite",
            "inode_link_tail",
            warden_common::FILE_TAIL_LINK,
            "a protected file may be hard-linked only within its own directory",
        ),
        "inode_rename" => (
            "inode_rename_lite",
            "inode_rename_tail",
            warden_common::FILE_TAIL_RENAME,
            "a protected file may be renamed only within its own directory",
        ),
        _ => return None,
    };
    Some(Lite { name, tail, tail_index, without_tail })
}

/// The cgroup program types warden attaches: loaded by aya, linked here.
trait CgroupProgram {
    fn load_program(&mut self) -> Result<(), aya::programs::ProgramError>;
    fn program_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, aya::programs::ProgramError>;
    fn id(&self) -> u32;
}

macro_rules! cgroup_program {
    ($ty:ty) => {
        impl CgroupProgram for $ty {
            fn load_program(&mut self) -> Result<(), aya::programs::ProgramError> {
                self.load()
            }
            fn program_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, aya::programs::ProgramError> {
                self.fd().map(|fd| fd.as_fd())
            }
            fn id(&self) -> u32 {
                self.info().map(|i| i.id()).unwrap_or(0)
            }
        }
    };
}
cgroup_program!(CgroupSockAddr);
cgroup_program!(CgroupDevice);
cgroup_program!(CgroupSkb);
cgroup_program!(CgroupSock);

/// A program of the object, as its concrete type.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, HookError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(HookError::MissingProgram(name))?;
    prog.try_into().map_err(|e| HookError::Verify { name, source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map names the agent takes (`warden_common::map_names`) are the
    /// names of the `#[map]` statics in `ebpf/`: a mismatch fails here,
    /// not at the start of an agent.
    #[test]
    fn every_map_name_is_in_the_object() {
        let object = aya_obj::Object::parse(OBJECT).expect("the embedded object parses");
        let missing: Vec<&str> = names::all().filter(|n| !object.maps.contains_key(*n)).collect();
        assert!(missing.is_empty(), "missing from the eBPF object: {missing:?}; it has {:?}", object.maps.keys());
    }
}
