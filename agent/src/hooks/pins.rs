//! Restart safety: enforcement outlives the agent. Maps are pinned under
//! `<bpffs>/warden/v<ABI>/<instance>/maps` (aya reuses them on the next
//! load), and every enforcing program is attached through a bpf_link pinned
//! under `…/links/<program>`: while the agent restarts, is upgraded or was
//! killed with SIGKILL, the kernel keeps deciding from the same maps. A new
//! agent attaches its programs next to the pinned ones and only then
//! releases the old links, so there is never an instant with no program.
//! `warden uninstall` removes all of it.
//!
//! aya 0.14 cannot turn every link kind into a pinnable fd (cgroup/dev
//! links), so links are made here with the bpf(2) commands themselves.
use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::instance_lock::try_lock;
pub use super::instance_lock::{InstanceLock, LockError};

/// Bumped whenever a map's layout changes: a new agent must never reuse
/// maps an older one left with another layout.
pub const MAP_ABI: u32 = 1;

use super::bpf_obj::{BPF_LINK_CREATE, BPF_RAW_TRACEPOINT_OPEN, bpf_fd, obj_get, obj_pin};

/// Attach types (include/uapi/linux/bpf.h).
pub const BPF_CGROUP_INET_EGRESS: u32 = 1;
pub const BPF_CGROUP_INET_SOCK_CREATE: u32 = 2;
pub const BPF_CGROUP_DEVICE: u32 = 6;
pub const BPF_CGROUP_INET4_CONNECT: u32 = 10;
pub const BPF_CGROUP_INET6_CONNECT: u32 = 11;
pub const BPF_CGROUP_UDP4_SENDMSG: u32 = 14;
pub const BPF_CGROUP_UDP6_SENDMSG: u32 = 15;

/// Where one agent instance (one cgroup root) keeps its pins.
#[derive(Debug, Clone)]
pub struct Pins {
    pub dir: PathBuf,
    /// Pinned maps were found: this agent took over from an earlier one.
    pub adopted: bool,
    /// The instance lock, once this process is its agent (`lock`).
    pub lock: Option<Arc<InstanceLock>>,
}

/// Instance name of a cgroup root: `root` for the whole hierarchy, else
/// the path with `/` as `-` (one directory per governed subtree).
pub fn instance_name(cgroup_root: &str) -> String {
    let rel = cgroup_root.trim_matches('/');
    if rel.is_empty() { "root".into() } else { rel.replace('/', "-") }
}

/// `<bpffs>/warden/v<ABI>`: every instance of this map layout.
pub fn abi_dir(bpffs: &Path) -> PathBuf {
    bpffs.join("warden").join(format!("v{MAP_ABI}"))
}

impl Pins {
    pub fn open(bpffs: &Path, cgroup_root: &str) -> std::io::Result<Self> {
        let dir = abi_dir(bpffs).join(instance_name(cgroup_root));
        let adopted = dir.join("maps/POLICY_SET").exists();
        std::fs::create_dir_all(dir.join("maps"))?;
        std::fs::create_dir_all(dir.join("links"))?;
        Ok(Self { dir, adopted, lock: None })
    }

    /// Becomes the instance's agent: takes its lock, waiting up to `wait`
    /// for an agent that is still exiting. Before anything is loaded, so a
    /// second agent of a live instance changes nothing.
    pub fn lock(&mut self, wait: std::time::Duration) -> Result<(), LockError> {
        self.lock = Some(Arc::new(super::instance_lock::lock(&self.dir, wait)?));
        Ok(())
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join("maps")
    }

    pub fn link_path(&self, program: &str) -> PathBuf {
        self.dir.join("links").join(program)
    }

    /// Pins `link` as `program`'s link. An earlier agent's link there stays
    /// attached until the new one is pinned, then is released (detached).
    /// The new pin is made aside and renamed over the old one, so a failure
    /// at any step leaves one of the two pinned, never neither.
    pub fn replace_link(&self, program: &str, link: OwnedFd) -> std::io::Result<()> {
        let path = self.link_path(program);
        // bpffs refuses dots in names.
        let aside = self.dir.join("links").join(format!("{ASIDE}{program}"));
        let old = obj_get(&path).ok();
        // Gone only if someone removed it under a live agent (the guard
        // re-pins then).
        std::fs::create_dir_all(self.dir.join("links"))?;
        // Left by an agent that died between the two steps.
        let _ = std::fs::remove_file(&aside);
        obj_pin(link.as_fd(), &aside)?;
        if let Err(e) = std::fs::rename(&aside, &path) {
            let _ = std::fs::remove_file(&aside);
            return Err(e);
        }
        // Dropping our fds: the pin holds the new link; the old one had
        // only our fd left, so it detaches now, after the new is in place.
        drop(old);
        Ok(())
    }

    /// Names of the programs with a pinned link.
    pub fn pinned_links(&self) -> Vec<String> {
        list(&self.dir.join("links")).into_iter().filter(|n| !n.starts_with(ASIDE)).collect()
    }
}

/// Prefix of a link pinned aside by `replace_link` until it is renamed.
const ASIDE: &str = "new-";

/// What `uninstall` found and did.
#[derive(Debug, Default)]
pub struct Uninstalled {
    pub removed: Vec<PathBuf>,
    /// Instances whose agent was alive (removed anyway: `force`).
    pub live: Vec<LockError>,
}

/// Detaches and removes every pin of the instances under `abi_dir` (or of
/// the one named): links first, so no program outlives its maps' owner.
/// An instance whose agent lives (it holds the instance lock) is refused,
/// and nothing at all is removed, unless `force`.
pub fn uninstall(bpffs: &Path, instance: Option<&str>, force: bool) -> Result<Uninstalled, UninstallError> {
    let root = bpffs.join("warden");
    let mut done = Uninstalled::default();
    let mut dirs = Vec::new();
    if let Ok(abis) = std::fs::read_dir(&root) {
        for abi in abis.flatten() {
            dirs.extend(
                list(&abi.path()).into_iter().filter(|i| instance.is_none_or(|n| n == i)).map(|i| abi.path().join(i)),
            );
        }
    }
    // Every lock first: held until the pins are gone, so no agent starts on
    // a half-removed instance, and a live one stops everything before any
    // removal.
    let mut locks = Vec::new();
    let mut free = Vec::new();
    for dir in &dirs {
        match try_lock(dir) {
            Ok(l) => {
                locks.push(l);
                free.extend(dir.file_name().map(|n| n.to_string_lossy().into_owned()));
            }
            Err(e @ LockError::Held { .. }) => done.live.push(e),
            Err(LockError::Io { path, source }) => return Err(UninstallError::Io { path, source }),
        }
    }
    if !force && !done.live.is_empty() {
        return Err(UninstallError::Live(done.live));
    }
    // A fanotify keeper of a stopped instance holds its permission group:
    // without the agent it would keep deciding from the maps removed below.
    // A live agent's keeper is left alone (it is that agent's restart safety).
    for name in list(Path::new(crate::files::fanotify::keeper::KEEPERS)) {
        let Some(inst) = name.strip_suffix(".sock") else { continue };
        if free.iter().any(|f| f == inst) {
            crate::files::fanotify::keeper::stop(inst);
        }
    }
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| UninstallError::Io { path, source }
    };
    for dir in &dirs {
        for sub in ["links", "maps"] {
            for name in list(&dir.join(sub)) {
                let p = dir.join(sub).join(name);
                std::fs::remove_file(&p).map_err(io(&p))?;
                done.removed.push(p);
            }
            let _ = std::fs::remove_dir(dir.join(sub));
        }
        std::fs::remove_dir(dir).map_err(io(dir))?;
    }
    drop(locks);
    // The shared parents go only with everything: another instance's
    // agent may be creating its directory under them right now.
    if instance.is_none() {
        if let Ok(abis) = std::fs::read_dir(&root) {
            for abi in abis.flatten() {
                let _ = std::fs::remove_dir(abi.path());
            }
        }
        let _ = std::fs::remove_dir(&root);
    }
    Ok(done)
}

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// Every live instance among those asked for.
    #[error("{}: stop {} first (or pass --force, which removes the pins from under {})",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        if .0.len() == 1 { "it" } else { "them" }, if .0.len() == 1 { "it" } else { "them" })]
    Live(Vec<LockError>),
    #[error("removing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub(crate) fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A cgroup program attached to `cgroup` through a new bpf_link
/// (multi-attach by nature: other programs on the cgroup keep running).
pub fn cgroup_link(prog: impl AsFd, cgroup: impl AsFd, attach_type: u32) -> std::io::Result<OwnedFd> {
    // union bpf_attr, link_create: prog_fd, target_fd, attach_type, flags.
    let mut attr = [0u32; 32];
    attr[0] = prog.as_fd().as_raw_fd() as u32;
    attr[1] = cgroup.as_fd().as_raw_fd() as u32;
    attr[2] = attach_type;
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

/// An LSM program attached through a raw-tracepoint link (how BPF-LSM
/// programs attach; the hook comes from the program's BTF id).
pub fn lsm_link(prog: impl AsFd) -> std::io::Result<OwnedFd> {
    // raw_tracepoint: name (u64, NULL for BTF-typed programs), prog_fd.
    let mut attr = [0u32; 32];
    attr[2] = prog.as_fd().as_raw_fd() as u32;
    bpf_fd(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names() {
        assert_eq!(instance_name("/"), "root");
        assert_eq!(instance_name(""), "root");
        assert_eq!(instance_name("/kubepods.slice/"), "kubepods.slice");
        assert_eq!(instance_name("warden-test-1/a"), "warden-test-1-a");
    }
}
