//! The whole test suite, as CI runs it.
use crate::util::{cargo, run};

pub fn all() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    crate::ebpf::lint()?;
    // Unit tests and privileged integration tests (real hooks, as root).
    run(cargo().args(["test", "--workspace", "--all-targets"]))?;
    Ok(())
}
