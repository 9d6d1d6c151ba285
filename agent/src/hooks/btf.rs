//! Struct member offsets from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux), so kernel programs never hard-code a layout:
//! the agent reads e.g. `file.f_path` here and passes it in as a global.
//!
//! A deliberately small reader: header, string section, and enough of each
//! type record to skip it. Bounds are checked everywhere (it is fuzzed).
use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic or header)")]
    Header,
    #[error("truncated BTF type section")]
    Truncated,
    #[error("struct {0} not found in kernel BTF")]
    NoStruct(String),
    #[error("member {member} not found in struct {strukt}")]
    NoMember { strukt: String, member: String },
    #[error("{0} is a bitfield, not addressable")]
    Bitfield(String),
}

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
    bitfield: bool,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        name: u32,
        members: Vec<Member>,
    },
    /// typedef/const/volatile/restrict/type_tag: refers to another type.
    Alias(u32),
    /// A function (name, its prototype's type id).
    Func {
        name: u32,
        proto: u32,
    },
    /// A function prototype: its parameter count.
    FuncProto {
        params: usize,
    },
    Other,
}

pub struct Btf {
    strings: Vec<u8>,
    /// Index = type id (0 is void).
    types: Vec<Type>,
    structs: HashMap<String, u32>,
    funcs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    pub fn from_sys_fs() -> std::io::Result<Result<Self, BtfError>> {
        Ok(Self::parse(&std::fs::read("/sys/kernel/btf/vmlinux")?))
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or(BtfError::Header)?;
        if magic != MAGIC {
            return Err(BtfError::Header);
        }
        let hdr_len = u32_at(data, 4).ok_or(BtfError::Header)? as usize;
        let field = |i: usize| u32_at(data, 8 + 4 * i).map(|v| v as usize).ok_or(BtfError::Header);
        let (type_off, type_len, str_off, str_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off).ok_or(BtfError::Header)?;
            data.get(start..start.checked_add(len).ok_or(BtfError::Header)?).ok_or(BtfError::Header)
        };
        let types_raw = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        let mut btf = Btf { strings, types: vec![Type::Other], structs: HashMap::new(), funcs: HashMap::new() };
        let mut off = 0;
        while off < types_raw.len() {
            let (ty, next) = parse_type(types_raw, off)?;
            if let Type::Composite { name, .. } = &ty
                && *name != 0
            {
                let id = btf.types.len() as u32;
                btf.structs.entry(btf.string(*name).to_string()).or_insert(id);
            }
            if let Type::Func { name, proto } = &ty {
                btf.funcs.entry(btf.string(*name).to_string()).or_insert(*proto);
            }
            btf.types.push(ty);
            off = next;
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias(next) => id = *next,
                t => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `member` in `strukt`, looking into anonymous
    /// structs/unions as C does.
    fn member_in(&self, id: u32, member: &str, depth: u32) -> Option<Result<u32, BtfError>> {
        let Type::Composite { members, .. } = self.resolve(id)? else { return None };
        for m in members {
            let name = self.string(m.name);
            if name == member {
                if m.bitfield || m.bit_offset % 8 != 0 {
                    return Some(Err(BtfError::Bitfield(member.into())));
                }
                return Some(Ok(m.bit_offset / 8));
            }
            if name.is_empty()
                && depth < 8
                && let Some(r) = self.member_in(m.ty, member, depth + 1)
            {
                return Some(r.map(|inner| m.bit_offset / 8 + inner));
            }
        }
        None
    }

    /// How many parameters kernel function `name` takes (None: not in BTF).
    pub fn params(&self, name: &str) -> Option<usize> {
        match self.types.get(*self.funcs.get(name)? as usize)? {
            Type::FuncProto { params } => Some(*params),
            _ => None,
        }
    }

    pub fn offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self.structs.get(strukt).ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        self.member_in(id, member, 0)
            .unwrap_or_else(|| Err(BtfError::NoMember { strukt: strukt.into(), member: member.into() }))
    }
}

/// Parses one type record at `off`; returns it and the next offset.
fn parse_type(b: &[u8], off: usize) -> Result<(Type, usize), BtfError> {
    let name = u32_at(b, off).ok_or(BtfError::Truncated)?;
    let info = u32_at(b, off + 4).ok_or(BtfError::Truncated)?;
    let size_or_type = u32_at(b, off + 8).ok_or(BtfError::Truncated)?;
    let kind = (info >> 24) & 0x1f;
    let vlen = (info & 0xffff) as usize;
    let kind_flag = info >> 31 == 1;
    let body = off + 12;
    let (ty, extra) = match kind {
        1 | 14 | 17 => (Type::Other, 4), // int, var, decl_tag
        2 | 7 | 16 => (Type::Other, 0),  // ptr, fwd, float
        12 => (Type::Func { name, proto: size_or_type }, 0),
        13 => (Type::FuncProto { params: vlen }, vlen * 8),
        3 => (Type::Other, 12), // array
        4 | 5 => {
            let mut members = Vec::with_capacity(vlen.min(1024));
            for i in 0..vlen {
                let m = body + i * 12;
                let raw_off = u32_at(b, m + 8).ok_or(BtfError::Truncated)?;
                members.push(Member {
                    name: u32_at(b, m).ok_or(BtfError::Truncated)?,
                    ty: u32_at(b, m + 4).ok_or(BtfError::Truncated)?,
                    // With kind_flag the top 8 bits hold a bitfield size.
                    bit_offset: if kind_flag { raw_off & 0x00ff_ffff } else { raw_off },
                    bitfield: kind_flag && raw_off >> 24 != 0,
                });
            }
            (Type::Composite { name, members }, vlen * 12)
        }
        6 => (Type::Other, vlen * 8),                  // enum
        15 | 19 => (Type::Other, vlen * 12),           // datasec, enum64
        8..=11 | 18 => (Type::Alias(size_or_type), 0), // typedef, volatile, const, restrict, type_tag
        _ => return Err(BtfError::Truncated),
    };
    let next = body.checked_add(extra).ok_or(BtfError::Truncated)?;
    if next > b.len() {
        return Err(BtfError::Truncated);
    }
    Ok((ty, next))
}

/// Globals the file hooks need, named as in ebpf/src/files.rs.
pub fn file_offsets() -> Result<Vec<(&'static str, u32)>, String> {
    let btf =
        Btf::from_sys_fs().map_err(|e| format!("reading /sys/kernel/btf/vmlinux: {e}"))?.map_err(|e| e.to_string())?;
    let fields: [(&str, &str, &str); 28] = [
        ("OFF_FILE_F_PATH", "file", "f_path"),
        ("OFF_FILE_F_MODE", "file", "f_mode"),
        ("OFF_FILE_F_FLAGS", "file", "f_flags"),
        ("OFF_FILE_F_INODE", "file", "f_inode"),
        ("OFF_PATH_DENTRY", "path", "dentry"),
        ("OFF_DENTRY_D_PARENT", "dentry", "d_parent"),
        ("OFF_DENTRY_D_INODE", "dentry", "d_inode"),
        ("OFF_DENTRY_D_NAME", "dentry", "d_name"),
        ("OFF_DENTRY_D_SB", "dentry", "d_sb"),
        // d_alias is the first member of the d_u union.
        ("OFF_DENTRY_D_ALIAS", "dentry", "d_u"),
        ("OFF_QSTR_NAME", "qstr", "name"),
        ("OFF_INODE_I_INO", "inode", "i_ino"),
        ("OFF_INODE_I_SB", "inode", "i_sb"),
        ("OFF_INODE_I_GENERATION", "inode", "i_generation"),
        ("OFF_INODE_I_MODE", "inode", "i_mode"),
        ("OFF_INODE_I_NLINK", "inode", "i_nlink"),
        ("OFF_INODE_I_DENTRY", "inode", "i_dentry"),
        ("OFF_SB_S_DEV", "super_block", "s_dev"),
        ("OFF_SB_S_ROOT", "super_block", "s_root"),
        ("OFF_TASK_FILES", "task_struct", "files"),
        ("OFF_FILES_FDT", "files_struct", "fdt"),
        ("OFF_FDT_MAX_FDS", "fdtable", "max_fds"),
        ("OFF_FDT_FD", "fdtable", "fd"),
        ("OFF_TASK_CGROUPS", "task_struct", "cgroups"),
        ("OFF_TASK_TGID", "task_struct", "tgid"),
        ("OFF_CSS_SET_DFL_CGRP", "css_set", "dfl_cgrp"),
        ("OFF_CGROUP_KN", "cgroup", "kn"),
        ("OFF_KERNFS_NODE_ID", "kernfs_node", "id"),
    ];
    let mut globals: Vec<(&'static str, u32)> = fields
        .iter()
        .map(|(g, st, m)| btf.offset(st, m).map(|o| (*g, o)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    // inode_setattr gained a leading `struct mnt_idmap *` in 6.8: where its
    // dentry is depends on the kernel (2 parameters: first; 3: second).
    let setattr = match btf.params("bpf_lsm_inode_setattr") {
        Some(3) => 1,
        _ => 0,
    };
    globals.push(("SETATTR_DENTRY_ARG", setattr));
    Ok(globals)
}

/// Fuzzing entry point.
pub fn fuzz(data: &[u8]) {
    if let Ok(btf) = Btf::parse(data) {
        let _ = btf.offset("file", "f_path");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_the_running_kernel() {
        let btf = Btf::from_sys_fs().expect("read vmlinux BTF").expect("parse vmlinux BTF");
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }: stable ABI shape.
        assert_eq!(btf.offset("path", "mnt").unwrap(), 0);
        assert_eq!(btf.offset("path", "dentry").unwrap(), 8);
        for (s, m) in [
            ("file", "f_path"),
            ("dentry", "d_parent"),
            ("dentry", "d_inode"),
            ("inode", "i_ino"),
            ("inode", "i_sb"),
            ("super_block", "s_dev"),
            ("dentry", "d_name"),
            ("qstr", "name"),
        ] {
            let off = btf.offset(s, m).unwrap_or_else(|e| panic!("{s}.{m}: {e}"));
            assert!(off < 4096, "{s}.{m} = {off}");
        }
        assert!(matches!(btf.offset("file", "no_such_member"), Err(BtfError::NoMember { .. })));
        assert!(matches!(btf.offset("no_such_struct", "x"), Err(BtfError::NoStruct(_))));
        // LSM hook stubs by their parameter counts (stable ones).
        assert_eq!(btf.params("bpf_lsm_file_open"), Some(1));
        assert_eq!(btf.params("bpf_lsm_inode_unlink"), Some(2));
        assert!(matches!(btf.params("bpf_lsm_inode_setattr"), Some(2 | 3)));
        assert_eq!(btf.params("no_such_function"), None);
        let globals = file_offsets().unwrap();
        assert!(globals.iter().any(|(g, v)| *g == "SETATTR_DENTRY_ARG" && *v <= 1));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut buf: Vec<u8> = (0..(x % 200) as usize).map(|i| (x >> (i % 56)) as u8).collect();
            if buf.len() > 2 {
                buf[0] = 0x9f;
                buf[1] = 0xeb;
            }
            fuzz(&buf);
        }
    }
}
