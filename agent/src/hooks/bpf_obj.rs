//! bpf(2) object commands warden needs beyond aya: pin and get by path,
//! link creation for kinds aya cannot pin, object info, detaching a link,
//! and a program by id. Also what tamper tests do to a live agent.
use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

/// bpf(2) commands (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
pub(super) const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
pub(super) const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

fn path_attr(path: &Path, fd: u32) -> std::io::Result<([u32; 32], CString)> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // obj_pin/obj_get: pathname (u64), bpf_fd, file_flags.
    let mut attr = [0u32; 32];
    let ptr = c.as_ptr() as u64;
    attr[0] = ptr as u32;
    attr[1] = (ptr >> 32) as u32;
    attr[2] = fd;
    Ok((attr, c))
}

/// Pins the object `fd` at `path` (which must not exist).
pub fn obj_pin(fd: impl AsFd, path: &Path) -> std::io::Result<()> {
    let (mut attr, _keep) = path_attr(path, fd.as_fd().as_raw_fd() as u32)?;
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// A new descriptor of the object pinned at `path`.
pub fn obj_get(path: &Path) -> std::io::Result<OwnedFd> {
    let (mut attr, _keep) = path_attr(path, 0)?;
    bpf_fd(BPF_OBJ_GET, &mut attr)
}

pub(super) fn bpf(cmd: libc::c_long, attr: &mut [u32; 32]) -> std::io::Result<i64> {
    // SAFETY: attr is a zero-padded bpf_attr of 128 bytes for `cmd`; the
    // pointers it holds (paths, buffers) outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr)) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r) }
}

pub(super) fn bpf_fd(cmd: libc::c_long, attr: &mut [u32; 32]) -> std::io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The first 64 bytes of an object's info (`bpf_{link,map,prog}_info`).
fn info(fd: impl AsFd) -> std::io::Result<[u32; 16]> {
    let mut buf = [0u32; 16];
    // info: bpf_fd, info_len, info (u64 pointer).
    let mut attr = [0u32; 32];
    attr[0] = fd.as_fd().as_raw_fd() as u32;
    attr[1] = std::mem::size_of_val(&buf) as u32;
    let ptr = buf.as_mut_ptr() as u64;
    attr[2] = ptr as u32;
    attr[3] = (ptr >> 32) as u32;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(buf)
}

/// The kernel id of a map, program or link (the same slot in each info).
pub fn object_id(fd: impl AsFd) -> std::io::Result<u32> {
    Ok(info(fd)?[1])
}

/// What a link is attached to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub id: u32,
    pub prog_id: u32,
    /// The cgroup of a cgroup link; 0 once it was detached (other kinds: 0).
    pub cgroup_id: u64,
}

/// `bpf_link_info`: type, id, prog_id, then (8-aligned) the kind's union,
/// whose cgroup variant starts with `cgroup_id`.
pub fn link_state(fd: impl AsFd) -> std::io::Result<LinkState> {
    let i = info(fd)?;
    Ok(LinkState { id: i[1], prog_id: i[2], cgroup_id: u64::from(i[4]) | (u64::from(i[5]) << 32) })
}

/// A descriptor of the program with kernel id `id`.
pub fn prog_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = [0u32; 32];
    attr[0] = id;
    bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr)
}

/// Detaches a link from its hook while it stays open (what `bpftool link
/// detach` does): its program stops running there.
pub fn link_detach(link: impl AsFd) -> std::io::Result<()> {
    let mut attr = [0u32; 32];
    attr[0] = link.as_fd().as_raw_fd() as u32;
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}

/// Makes a link run another program (cgroup links allow it).
pub fn link_update(link: impl AsFd, prog: impl AsFd) -> std::io::Result<()> {
    // link_update: link_fd, new_prog_fd, flags, old_prog_fd.
    let mut attr = [0u32; 32];
    attr[0] = link.as_fd().as_raw_fd() as u32;
    attr[1] = prog.as_fd().as_raw_fd() as u32;
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// map_lookup/update/delete: map_fd, pad, key (u64 pointer), value (u64 pointer), flags.
fn elem_attr(map: &impl AsFd, key: &u32, value: &mut u32) -> [u32; 32] {
    let mut attr = [0u32; 32];
    attr[0] = map.as_fd().as_raw_fd() as u32;
    let k = key as *const u32 as u64;
    let v = value as *mut u32 as u64;
    attr[2] = k as u32;
    attr[3] = (k >> 32) as u32;
    attr[4] = v as u32;
    attr[5] = (v >> 32) as u32;
    attr
}

/// The id of the program in a program array's `slot` (None: empty).
pub fn prog_array_get(map: impl AsFd, slot: u32) -> std::io::Result<Option<u32>> {
    let mut id = 0u32;
    let mut attr = elem_attr(&map, &slot, &mut id);
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts `prog` in a program array's `slot`.
pub fn prog_array_set(map: impl AsFd, slot: u32, prog: impl AsFd) -> std::io::Result<()> {
    let mut fd = prog.as_fd().as_raw_fd() as u32;
    let mut attr = elem_attr(&map, &slot, &mut fd);
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Empties a program array's `slot` (what a tamper test does).
pub fn prog_array_clear(map: impl AsFd, slot: u32) -> std::io::Result<()> {
    let mut unused = 0u32;
    let mut attr = elem_attr(&map, &slot, &mut unused);
    // Fields past `key` must be zero for a delete (EINVAL otherwise).
    attr[4] = 0;
    attr[5] = 0;
    bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(|_| ())
}
