//! Self-verification: every enforcing link is still attached where the
//! agent put it, still runs its program, and every pin of the instance is
//! still there and still the agent's object. Anything detached, replaced or
//! unpinned (bpftool, raw bpf(2), a forced uninstall, a deleted pin) is
//! repaired here and reported to the caller, which makes it an event.
//!
//! The guard holds a descriptor of every link, program and map, so a
//! deleted pin never detaches anything while the agent lives, and a
//! detached link can be replaced by a new one of the same program.
use std::{
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use super::{
    bpf_obj::{
        LinkState, link_detach, link_state, obj_get, obj_pin, object_id, prog_array_get, prog_array_set, prog_by_id,
    },
    pins::{self, Pins},
};

/// Where a link's program runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// A cgroup program: the cgroup directory and attach type.
    Cgroup { path: PathBuf, attach_type: u32 },
    /// A BPF-LSM program (its hook is in the program).
    Lsm,
}

/// What the loader attached through a pinned link.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub target: Target,
}

struct HeldLink {
    spec: Spec,
    prog: OwnedFd,
    prog_id: u32,
    link: OwnedFd,
    link_id: u32,
}

/// A tail program the loader put in slot 0 of a `FILE_TAILS` array.
#[derive(Debug, Clone)]
pub struct TailSpec {
    pub name: &'static str,
    pub array: &'static str,
}

struct HeldTail {
    spec: TailSpec,
    array: OwnedFd,
    prog: OwnedFd,
    prog_id: u32,
}

struct HeldMap {
    name: String,
    fd: OwnedFd,
    id: u32,
}

/// One thing found changed, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Program or map name.
    pub target: String,
    /// link | pin | map pin | tail
    pub object: &'static str,
    /// detached | replaced | unpinned | pin replaced | emptied
    pub change: &'static str,
    /// What the repair did, or why it failed.
    pub repair: Result<&'static str, String>,
}

pub struct Guard {
    pins: Pins,
    links: Vec<HeldLink>,
    maps: Vec<HeldMap>,
    tails: Vec<HeldTail>,
}

impl Guard {
    /// Takes hold of every pinned link of `specs` and every pinned map of
    /// the instance, and every tail slot of `tails`, as they are now (right
    /// after start-up).
    pub fn new(pins: Pins, specs: &[Spec], tails: &[TailSpec]) -> std::io::Result<Self> {
        let mut links = Vec::new();
        for spec in specs {
            let link = obj_get(&pins.link_path(spec.name))?;
            let state = link_state(&link)?;
            let prog = prog_by_id(state.prog_id)?;
            links.push(HeldLink { spec: spec.clone(), prog, prog_id: state.prog_id, link, link_id: state.id });
        }
        let mut maps = Vec::new();
        for name in pins::list(&pins.maps_dir()) {
            let fd = obj_get(&pins.maps_dir().join(&name))?;
            let id = object_id(&fd)?;
            maps.push(HeldMap { name, fd, id });
        }
        let mut held = Vec::new();
        for spec in tails {
            let array = obj_get(&pins.maps_dir().join(spec.array))?;
            let prog_id = prog_array_get(&array, 0)?
                .ok_or_else(|| std::io::Error::other(format!("{} holds no {}", spec.array, spec.name)))?;
            held.push(HeldTail { spec: spec.clone(), array, prog: prog_by_id(prog_id)?, prog_id });
        }
        let tails = held;
        Ok(Self { pins, links, maps, tails })
    }

    /// Links and maps held (for status).
    pub fn counts(&self) -> (usize, usize) {
        (self.links.len(), self.maps.len())
    }

    /// One pass: checks everything, repairs what changed.
    pub fn check(&mut self) -> Vec<Finding> {
        let mut found = Vec::new();
        for held in &mut self.links {
            if let Some(f) = check_link(&self.pins, held) {
                found.push(f);
            }
        }
        let dir = self.pins.maps_dir();
        for map in &self.maps {
            if let Some(f) = check_map_pin(&dir, map) {
                found.push(f);
            }
        }
        found.extend(self.tails.iter().filter_map(check_tail));
        found
    }
}

fn check_link(pins: &Pins, held: &mut HeldLink) -> Option<Finding> {
    let name = held.spec.name;
    let change = match link_state(&held.link) {
        Ok(LinkState { prog_id, .. }) if prog_id != held.prog_id => Some("replaced"),
        Ok(LinkState { cgroup_id: 0, .. }) if matches!(held.spec.target, Target::Cgroup { .. }) => Some("detached"),
        Ok(_) => None,
        Err(_) => Some("detached"),
    };
    if let Some(change) = change {
        let repair = reattach(pins, held).map(|()| "re-attached");
        return Some(Finding { target: name.into(), object: "link", change, repair });
    }
    let change = match obj_get(&pins.link_path(name)).and_then(object_id) {
        Ok(id) if id == held.link_id => return None,
        Ok(_) => "pin replaced",
        Err(_) => "unpinned",
    };
    let repair = held.link.try_clone().and_then(|l| pins.replace_link(name, l)).map(|()| "re-pinned");
    Some(Finding { target: name.into(), object: "pin", change, repair: repair.map_err(|e| e.to_string()) })
}

/// A new link of the same program at the same place, pinned over the old
/// one; the old one (detached, or running another program) is detached.
fn reattach(pins: &Pins, held: &mut HeldLink) -> Result<(), String> {
    let link = match &held.spec.target {
        Target::Cgroup { path, attach_type } => {
            let cgroup = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            pins::cgroup_link(&held.prog, &cgroup, *attach_type)
        }
        Target::Lsm => pins::lsm_link(&held.prog),
    }
    .map_err(|e| format!("attaching: {e}"))?;
    let id = object_id(&link).map_err(|e| e.to_string())?;
    let pinned = link.try_clone().map_err(|e| e.to_string())?;
    pins.replace_link(held.spec.name, pinned).map_err(|e| format!("pinning: {e}"))?;
    // Whatever the old link runs now is not ours to keep running there.
    let _ = link_detach(&held.link);
    held.link = link;
    held.link_id = id;
    Ok(())
}

/// A tail slot emptied or given another program: the hook falls back to
/// its stricter variant meanwhile; the slot is set back.
fn check_tail(tail: &HeldTail) -> Option<Finding> {
    let change = match prog_array_get(&tail.array, 0) {
        Ok(Some(id)) if id == tail.prog_id => return None,
        Ok(Some(_)) => "replaced",
        Ok(None) | Err(_) => "emptied",
    };
    let repair = prog_array_set(&tail.array, 0, &tail.prog).map(|()| "re-set").map_err(|e| e.to_string());
    Some(Finding { target: tail.spec.name.into(), object: "tail", change, repair })
}

fn check_map_pin(dir: &Path, map: &HeldMap) -> Option<Finding> {
    let path = dir.join(&map.name);
    let change = match obj_get(&path).and_then(object_id) {
        Ok(id) if id == map.id => return None,
        // Another map under our name: a restarted agent would adopt it.
        Ok(_) => "pin replaced",
        Err(_) => "unpinned",
    };
    let repair = (|| {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(&path);
        obj_pin(&map.fd, &path)
    })()
    .map(|()| "re-pinned")
    .map_err(|e| e.to_string());
    Some(Finding { target: map.name.clone(), object: "map pin", change, repair })
}
