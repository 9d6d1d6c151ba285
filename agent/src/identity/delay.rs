//! Delay from cgroup creation (kernel timestamp) to identity in the map.
use std::collections::VecDeque;

const KEEP: usize = 4096;

#[derive(Debug)]
pub struct DelayStats {
    samples_us: VecDeque<u64>,
    total: u64,
}

impl Default for DelayStats {
    /// Sized once: grown during a burst of new cgroups, the window's
    /// buffers would land among the burst's allocations and keep their
    /// heap pages from returning when the cgroups go.
    fn default() -> Self {
        Self { samples_us: VecDeque::with_capacity(KEEP), total: 0 }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq, Eq)]
pub struct DelaySummary {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl DelayStats {
    pub fn record(&mut self, us: u64) {
        if self.samples_us.len() == KEEP {
            self.samples_us.pop_front();
        }
        self.samples_us.push_back(us);
        self.total += 1;
    }

    /// Percentiles over the most recent samples.
    pub fn summary(&self) -> DelaySummary {
        let mut v: Vec<u64> = self.samples_us.iter().copied().collect();
        if v.is_empty() {
            return DelaySummary::default();
        }
        v.sort_unstable();
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        DelaySummary { samples: self.total, p50_us: pick(0.5), p99_us: pick(0.99), max_us: *v.last().unwrap() }
    }
}

/// CLOCK_MONOTONIC now, in ns: the clock of bpf_ktime_get_ns().
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut d = DelayStats::default();
        assert_eq!(d.summary(), DelaySummary::default());
        for i in 1..=100 {
            d.record(i);
        }
        let s = d.summary();
        assert_eq!((s.samples, s.p50_us, s.p99_us, s.max_us), (100, 51, 99, 100));
    }

    #[test]
    fn keeps_recent_window() {
        let mut d = DelayStats::default();
        for _ in 0..KEEP {
            d.record(1_000);
        }
        for _ in 0..KEEP {
            d.record(5);
        }
        let s = d.summary();
        assert_eq!(s.samples, 2 * KEEP as u64);
        assert_eq!(s.max_us, 5);
    }
}
