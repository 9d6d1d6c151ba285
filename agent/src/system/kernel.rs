//! Kernel capability checks that give named errors instead of EINVALs.
use aya::programs::ProgramType;

use super::SystemError;

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

pub fn require_btf() -> Result<(), SystemError> {
    if !std::path::Path::new(BTF_PATH).exists() {
        return Err(SystemError::NoBtf(BTF_PATH.into()));
    }
    Ok(())
}

/// The hooks the network enforcement needs.
pub fn require_sock_addr_hooks() -> Result<(), SystemError> {
    let checks = [
        (ProgramType::CgroupSockAddr, "cgroup sock_addr hooks (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, CONFIG_CGROUP_BPF)"),
        (ProgramType::TracePoint, "tracepoint programs (BPF_PROG_TYPE_TRACEPOINT)"),
    ];
    for (ty, feature) in checks {
        match aya::sys::is_program_supported(ty) {
            Ok(true) => {}
            Ok(false) => {
                return Err(SystemError::MissingFeature {
                    feature,
                    detail: "the kernel refuses to load this program type".into(),
                });
            }
            Err(e) => return Err(SystemError::MissingFeature { feature, detail: format!("probe failed: {e}") }),
        }
    }
    Ok(())
}

/// `uname -r`, for status output.
pub fn release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// (major, minor) of the running kernel, from `uname -r` ("6.1.0-57-…").
pub fn version() -> Option<(u32, u32)> {
    parse_version(&release())
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
#[test]
fn versions() {
    assert_eq!(parse_version("6.1.0-57-cloud-amd64"), Some((6, 1)));
    assert_eq!(parse_version("6.12.118+deb12-cloud-amd64"), Some((6, 12)));
    assert_eq!(parse_version("garbage"), None);
}

/// Raises RLIMIT_MEMLOCK for kernels < 5.11; harmless failure on newer ones
/// (memcg accounting) and where CAP_SYS_RESOURCE is absent.
pub fn raise_memlock() {
    let r = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK (not needed on kernels >= 5.11 with memcg accounting)");
    }
}
