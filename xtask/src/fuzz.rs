//! `cargo xtask fuzz`: coverage-guided fuzzing (cargo-fuzz / libFuzzer) of
//! every parser fed by users or the kernel. Corpora grow under target/ so
//! CI's cached target/ keeps them between runs.
use std::process::Command;

use crate::util::{run, workspace};

pub const TARGETS: [&str; 5] = ["policy", "ringbuf_record", "host_text", "kernel_data", "metrics_http"];

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Targets to run (default: all).
    pub targets: Vec<String>,
}

pub fn fuzz(a: Args) -> anyhow::Result<()> {
    let ws = workspace();
    let targets: Vec<String> =
        if a.targets.is_empty() { TARGETS.iter().map(|t| t.to_string()).collect() } else { a.targets };
    for t in targets {
        let corpus = ws.join("target/fuzz-corpus").join(&t);
        std::fs::create_dir_all(&corpus)?;
        let seeds = ws.join("fuzz/corpus").join(&t);
        let mut cmd = Command::new("rustup");
        cmd.args(["run", "nightly", "cargo", "fuzz", "run", &t])
            .arg(&corpus)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env("CARGO_TARGET_DIR", ws.join("target/fuzz"))
            .current_dir(ws.join("fuzz"));
        if seeds.exists() {
            cmd.arg(&seeds);
        }
        cmd.args(["--", &format!("-max_total_time={}", a.seconds), "-max_len=65536", "-timeout=10"]);
        run(&mut cmd)?;
    }
    Ok(())
}
