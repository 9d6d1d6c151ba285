//! Identity: which workload a cgroup (and so a process) belongs to.
pub mod cgroups;
pub mod delay;
pub mod meta;
pub mod path;
pub mod process;
pub mod slurm;

pub use cgroups::{CgroupInfo, CgroupTracker};
