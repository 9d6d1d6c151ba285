//! The whole test suite, as CI runs it.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::bail;

use crate::util::{cargo, run};

pub fn all() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    // No import circles between files (`cargo xtask layers` lists any).
    crate::layers::run(crate::layers::Args { edges: false, trees: vec![] })?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    crate::ebpf::lint()?;
    // A short coverage-guided pass over every parser of untrusted input;
    // corpora persist in target/ so each run starts where the last ended.
    crate::fuzz::fuzz(crate::fuzz::Args { seconds: 30, targets: vec![] })?;
    // BPF-LSM is refused on this host: prove it in QEMU on Debian 6.1 and 6.12.
    crate::vm::cases::vm_test(crate::vm::cases::Args::default())?;
    // Unit tests and privileged integration tests (real hooks, as root).
    // Every binary runs: one failure must not hide the next.
    let (passed, failed) = cargo_test(&["test", "--workspace", "--all-targets", "--no-fail-fast"])?;
    // One closing line for the whole suite (cargo prints one per binary).
    println!("warden: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    Ok(())
}

/// Runs cargo test, echoing its output and summing its result lines.
fn cargo_test(args: &[&str]) -> anyhow::Result<(u64, u64)> {
    let mut child = cargo().args(args).stdout(Stdio::piped()).spawn()?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed: {status}");
    }
    Ok((passed, failed))
}

/// `test result: ok. 70 passed; 0 failed; ...` → (70, 0).
fn parse_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let words: Vec<&str> = rest.split(|c: char| c == ';' || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
    let count = |name: &str| words.windows(2).find(|w| w[1] == name).and_then(|w| w[0].parse::<u64>().ok());
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    use super::parse_result;

    #[test]
    fn parses_cargo_result_lines() {
        assert_eq!(
            parse_result(
                "test result: ok. 70 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.52s"
            ),
            Some((70, 0))
        );
        assert_eq!(parse_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"), Some((3, 2)));
        assert_eq!(parse_result("running 5 tests"), None);
    }
}
