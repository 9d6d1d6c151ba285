//! /proc/self/mountinfo parsing (finds cgroup2, bpffs, tracefs mounts).
use std::path::{Path, PathBuf};

/// One mount as described by a mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Root of the mount within its filesystem (field 4).
    pub root: String,
    /// Mount point (field 5).
    pub mount_point: PathBuf,
    /// Filesystem type (after the " - " separator).
    pub fstype: String,
}

/// The filesystem holding `path`, for people: `<mount point> (<fstype>,
/// device M:m)`, from the mount whose point is the longest prefix of it.
pub fn filesystem_of(path: &Path, mounts: &[Mount]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mount =
        mounts.iter().filter(|m| path.starts_with(&m.mount_point)).max_by_key(|m| m.mount_point.as_os_str().len());
    let dev = std::fs::metadata(path).map(|m| (libc::major(m.dev()), libc::minor(m.dev())));
    match (mount, dev) {
        (Some(m), Ok((ma, mi))) => format!("{} ({}, device {ma}:{mi})", m.mount_point.display(), m.fstype),
        (Some(m), Err(_)) => format!("{} ({})", m.mount_point.display(), m.fstype),
        (None, _) => path.display().to_string(),
    }
}

/// Parses mountinfo text, skipping malformed lines instead of failing.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let mut pre = pre.split(' ');
    let root = unescape(pre.nth(3)?);
    let mount_point = PathBuf::from(unescape(pre.next()?));
    let fstype = post.split(' ').next()?.to_string();
    Some(Mount { root, mount_point, fstype })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts of the current process.
pub fn current() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The first cgroup2 mount, if any.
/// A cgroup2 mount that is visible: not covered by a later mount on the same
/// point. In a container the runtime's own (namespaced) cgroup2 mount at
/// /sys/fs/cgroup lies under the host's, bound there by the pod spec: paths
/// below /sys/fs/cgroup are the host's, and so must the mount's root be.
pub fn cgroup2(mounts: &[Mount]) -> Option<&Mount> {
    mounts.iter().enumerate().find_map(|(i, m)| {
        let covered = mounts[i + 1..].iter().any(|later| later.mount_point == m.mount_point);
        (m.fstype == "cgroup2" && !covered).then_some(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
50 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn finds_cgroup2_on_hybrid_hosts() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 4);
        let cg = cgroup2(&m).unwrap();
        assert_eq!(cg.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(cg.root, "/");
    }

    #[test]
    fn unescapes_octal() {
        let m = parse(SAMPLE);
        assert_eq!(m[3].mount_point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn a_covered_cgroup2_mount_is_not_the_one() {
        // A container: the runtime's namespaced cgroup2, then the host's
        // bound over it (seen from the container's cgroup namespace).
        let m = parse(
            "30 22 0:27 / /sys/fs/cgroup ro - cgroup2 cgroup rw\n\
             31 30 0:27 /../../.. /sys/fs/cgroup ro - cgroup2 cgroup rw\n",
        );
        assert_eq!(cgroup2(&m).unwrap().root, "/../../..");
        // Covered by something else altogether: none is visible there.
        let m =
            parse("30 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup rw\n31 30 0:40 / /sys/fs/cgroup rw - tmpfs t rw\n");
        assert!(cgroup2(&m).is_none());
    }

    #[test]
    fn no_cgroup2() {
        assert!(cgroup2(&parse("22 1 0:21 / / rw - ext4 /dev/vda rw\n")).is_none());
    }
}
