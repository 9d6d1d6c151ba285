//! Benchmarks. Each prints ratios against a baseline measured in the same
//! run, because these machines are shared and noisy.
mod agent;
pub mod client;
mod events;
mod files;
mod identity;
mod net;
mod reload;
mod stats;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// Loopback connect() latency with the agent enforcing a 10,000-prefix
    /// policy vs. a sibling cgroup with no hooks; hook ns/call; agent RSS.
    Net(net::Args),
    /// Delay from cgroup creation to identity in the kernel map, under a burst.
    Identity(identity::Args),
    /// open() latency with the fanotify backend vs. none and a minimal listener.
    Files(files::Args),
    /// Events/s from the kernel to the JSON lines sink (and OTLP) with zero loss.
    Events(events::Args),
    /// Config file change → new policy enforced, p50/p99 over many reloads.
    Reload(reload::Args),
}

pub fn run(b: Bench) -> anyhow::Result<()> {
    match b {
        Bench::Net(a) => net::run(a),
        Bench::Identity(a) => identity::run(a),
        Bench::Files(a) => files::run(a),
        Bench::Events(a) => events::run(a),
        Bench::Reload(a) => reload::run(a),
    }
}
