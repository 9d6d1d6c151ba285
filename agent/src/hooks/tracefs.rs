//! Reads tracepoint field offsets from tracefs `format` files, so the
//! tracepoint programs never assume a record layout.
use std::path::Path;

/// Offset of `field` in a tracefs format description.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        // `decl` is e.g. "u64 id" or "__data_loc char[] path".
        let name = decl.rsplit(' ').next()?;
        if name != field {
            return None;
        }
        let off = line.split(';').find_map(|p| p.trim().strip_prefix("offset:"))?;
        off.trim().parse().ok()
    })
}

/// Offsets (root, id, path) of a cgroup tracepoint.
pub fn cgroup_tp_offsets(tracefs: &Path, event: &str) -> Result<(u32, u32, u32), String> {
    let path = tracefs.join("events/cgroup").join(event).join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let get = |f: &str| field_offset(&text, f).ok_or_else(|| format!("{}: no field `{f}`", path.display()));
    Ok((get("root")?, get("id")?, get("path")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: cgroup_mkdir
ID: 544
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int root;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int level;\toffset:12;\tsize:4;\tsigned:1;
\tfield:u64 id;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] path;\toffset:24;\tsize:4;\tsigned:0;
";

    #[test]
    fn offsets_from_format() {
        assert_eq!(field_offset(FORMAT, "root"), Some(8));
        assert_eq!(field_offset(FORMAT, "id"), Some(16));
        assert_eq!(field_offset(FORMAT, "path"), Some(24));
        assert_eq!(field_offset(FORMAT, "nope"), None);
    }

    #[test]
    fn host_format_files_parse() {
        // Real tracefs, mounted as the agent does when missing (tests run as root).
        crate::system::mounts::ensure("tracefs", "nodev", crate::system::mounts::TRACEFS).expect("mount tracefs");
        let tracefs = Path::new(crate::system::mounts::TRACEFS);
        for event in ["cgroup_mkdir", "cgroup_rmdir"] {
            let (root, id, path) = cgroup_tp_offsets(tracefs, event).unwrap();
            assert!(root < id && id < path, "{event}: {root} {id} {path}");
        }
    }
}
