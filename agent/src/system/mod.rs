//! Host facts the agent depends on: privileges, kernel features, mounts.
pub mod cgroupns;
pub mod kernel;
pub mod mountinfo;
pub mod mounts;

use thiserror::Error;

/// Why the node cannot run the agent; each names what is missing.
#[derive(Debug, Error)]
pub enum SystemError {
    #[error(
        "warden must run as root (it loads eBPF programs: needs CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); effective uid is {0}"
    )]
    NotRoot(u32),
    #[error("kernel BTF is missing: {0} does not exist (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    NoBtf(String),
    #[error(
        "no cgroup2 filesystem is mounted (checked /proc/self/mountinfo); warden needs the unified cgroup hierarchy"
    )]
    NoCgroup2,
    #[error("cgroup root {0} does not exist or is not a cgroup2 directory")]
    MissingCgroupRoot(String),
    #[error("kernel lacks {feature}: {detail}")]
    MissingFeature { feature: &'static str, detail: String },
    #[error("cannot mount {fs} at {target}: {source}")]
    Mount { fs: &'static str, target: String, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
}

/// Refuses to continue unless the effective uid is 0.
pub fn require_root() -> Result<(), SystemError> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        return Err(SystemError::NotRoot(euid));
    }
    Ok(())
}

/// `e: cause: cause…` (tonic's transport error alone only says "transport
/// error"; aya's load errors hide the verifier's reason in a cause). A
/// cause that repeats the previous text (wrappers often do) is skipped.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}
