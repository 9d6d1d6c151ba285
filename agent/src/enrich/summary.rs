//! Allowed decisions folded into one summary per (kind, workload, segment,
//! rule) and interval, so a busy training job does not log every
//! connection. Denies and audits never come here.
use std::collections::HashMap;

use warden_common::WORKLOAD_UNIDENTIFIED;

use super::{Enricher, LossEvent, SummaryEvent};
use crate::{identity::delay::monotonic_ns, policy::CompiledPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: &'static str,
    /// Kernel policy set the ids belong to (0 for userspace backends).
    pub set: u8,
    pub workload: u32,
    pub segment: u16,
    pub rule: u32,
    /// Userspace file backend name (`fanotify`), if any.
    pub backend: Option<&'static str>,
}

/// Bounds memory if ids churn within one window: past this many keys the
/// window is closed early.
const MAX_KEYS: usize = 65_536;

pub struct Summarizer {
    interval_ns: u64,
    window_start: u64,
    counts: HashMap<Key, u64>,
    /// Decisions folded and summaries emitted since `take_counts`.
    folded: u64,
    emitted: u64,
}

impl Summarizer {
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ns: interval_ms.saturating_mul(1_000_000),
            window_start: monotonic_ns(),
            counts: HashMap::new(),
            folded: 0,
            emitted: 0,
        }
    }

    pub fn add(&mut self, key: Key) {
        *self.counts.entry(key).or_default() += 1;
        self.folded += 1;
    }

    pub fn take_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.folded), std::mem::take(&mut self.emitted))
    }

    /// Whether the window is over (or the table full).
    pub fn due(&self) -> bool {
        self.counts.len() >= MAX_KEYS || monotonic_ns().saturating_sub(self.window_start) >= self.interval_ns
    }

    /// Closes the window: one summary per key, in a stable order.
    /// Closes the window: one summary per key, named by the policy of the
    /// key's set (`policy_of`).
    pub fn flush<'p>(
        &mut self,
        enricher: &mut Enricher,
        policy_of: &dyn Fn(u8) -> &'p CompiledPolicy,
    ) -> Vec<SummaryEvent> {
        let now = monotonic_ns();
        let start = std::mem::replace(&mut self.window_start, now);
        let mut rows: Vec<(Key, u64)> = self.counts.drain().collect();
        rows.sort_by_key(|(k, _)| (k.kind, k.set, k.workload, k.segment, k.rule));
        self.emitted += rows.len() as u64;
        rows.into_iter().map(|(k, count)| enricher.summary(&k, count, start, now, policy_of(k.set))).collect()
    }
}

impl Enricher {
    /// An in-band report of records lost before they were numbered.
    pub fn loss(&mut self, stage: &'static str, count: u64, denied: u64, reason: &'static str) -> LossEvent {
        let now = monotonic_ns();
        LossEvent {
            time: self.clock.format(now),
            time_unix_ns: self.clock.unix_ns(now),
            seq: self.next_seq(),
            agent_id: self.agent_id(),
            node: self.node.clone(),
            kind: "loss",
            stage,
            count,
            denied,
            reason,
        }
    }

    fn summary(&mut self, k: &Key, count: u64, start: u64, end: u64, policy: &CompiledPolicy) -> SummaryEvent {
        let (workload, identity) = match k.workload {
            WORKLOAD_UNIDENTIFIED => (super::unmatched(), "unmatched"),
            id => (policy.workload(id), "matched"),
        };
        SummaryEvent {
            time: self.clock.format(end),
            time_unix_ns: self.clock.unix_ns(end),
            seq: self.next_seq(),
            agent_id: self.agent_id(),
            node: self.node.clone(),
            kind: k.kind,
            operation: "summary",
            workload,
            identity,
            segment: policy.segment(k.segment),
            verdict: "allowed",
            rule: policy.rule(k.rule),
            count,
            window_start: self.clock.format(start),
            backend: k.backend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_summary_per_key_and_window() {
        let policy = crate::policy::load_str(
            "version: 1\nsegments:\n  - name: s3\n    network: [{cidr: 10.0.0.0/8}]\nworkloads:\n  - name: trainer\n    selector: {cgroup: t}\nallow:\n  - workload: trainer\n    segment: s3\n",
            "t.yaml",
        )
        .unwrap()
        .policy
        .compile();
        let mut en = Enricher::new("n1".into());
        let mut s = Summarizer::new(10_000);
        let k = Key { kind: "network", set: 0, workload: 1, segment: 1, rule: 1, backend: None };
        for _ in 0..1000 {
            s.add(k);
        }
        s.add(Key { workload: WORKLOAD_UNIDENTIFIED, rule: 0, ..k });
        assert!(!s.due());
        let out = s.flush(&mut en, &|_| &policy);
        assert_eq!(out.len(), 2);
        let rows: Vec<_> = out.iter().map(|e| (&*e.workload, e.count, e.segment.as_deref(), e.seq)).collect();
        assert!(rows.contains(&("trainer", 1000, Some("s3"), 2)), "{rows:?}");
        assert!(rows.contains(&(super::super::UNMATCHED, 1, Some("s3"), 1)), "{rows:?}");
        assert_eq!(s.take_counts(), (1001, 2));
        assert!(s.flush(&mut en, &|_| &policy).is_empty(), "a window with nothing folded emits nothing");
    }
}
