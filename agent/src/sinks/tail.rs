//! Live tail for `warden events`: a short history plus subscribers, each
//! with its own filter and bounded queue. A subscriber that reads too
//! slowly loses events (counted, and reported to it in-band), never the
//! pipeline's time.
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::enrich::Event;

/// Events kept for `warden events` without `--follow`.
pub const HISTORY: usize = 1024;
/// Events queued per subscriber before it starts losing them.
pub const SUBSCRIBER_QUEUE: usize = 16_384;

/// Which events a subscriber wants; every field given must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Workload name; `*` wildcards allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// allowed | denied | audited | loss
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// network | file | device | loss
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Filter {
    pub fn matches(&self, ev: &Event) -> bool {
        let workload_ok = match &self.workload {
            None => true,
            Some(p) => ev.workload().is_some_and(|w| wildcard(p, w)),
        };
        workload_ok
            && self.verdict.as_deref().is_none_or(|v| v == ev.verdict())
            && self.segment.as_deref().is_none_or(|s| Some(s) == ev.segment())
            && self.kind.as_deref().is_none_or(|k| k == ev.kind())
    }
}

/// `*` matches any run of characters; everything else is literal.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Arc<Event>>,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Inner {
    history: VecDeque<Arc<Event>>,
    subscribers: Vec<Subscriber>,
}

/// A live subscription: events, and how many this subscriber lost.
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<Event>>,
    pub dropped: Arc<AtomicU64>,
}

#[derive(Default)]
pub struct TailHub {
    inner: Mutex<Inner>,
    dropped: AtomicU64,
}

impl TailHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn publish(&self, events: &[Arc<Event>]) {
        let mut g = self.lock();
        let g = &mut *g;
        // Only the last HISTORY events of a big batch can stay.
        for ev in &events[events.len().saturating_sub(HISTORY)..] {
            if g.history.len() == HISTORY {
                g.history.pop_front();
            }
            g.history.push_back(ev.clone());
        }
        if g.subscribers.is_empty() {
            return;
        }
        g.subscribers.retain(|s| !s.tx.is_closed());
        for s in &g.subscribers {
            for ev in events.iter().filter(|e| s.filter.matches(e)) {
                if s.tx.try_send(ev.clone()).is_err() {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The last `tail` matching events of the history and, with `follow`,
    /// a subscription to every later one (no gap between the two).
    pub fn subscribe(&self, filter: Filter, tail: usize, follow: bool) -> (Vec<Arc<Event>>, Option<Subscription>) {
        let mut g = self.lock();
        let mut past: Vec<Arc<Event>> =
            g.history.iter().rev().filter(|e| filter.matches(e)).take(tail).cloned().collect();
        past.reverse();
        let sub = follow.then(|| {
            let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
            let dropped = Arc::new(AtomicU64::new(0));
            g.subscribers.push(Subscriber { filter, tx, dropped: dropped.clone() });
            Subscription { events: rx, dropped }
        });
        (past, sub)
    }

    /// (live subscribers, events lost to slow subscribers).
    pub fn stats(&self) -> (u64, u64) {
        let g = self.lock();
        let live = g.subscribers.iter().filter(|s| !s.tx.is_closed()).count() as u64;
        (live, self.dropped.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::queue::tests::loss;

    #[test]
    fn wildcards() {
        assert!(wildcard("train*", "trainer"));
        assert!(wildcard("*er", "trainer"));
        assert!(wildcard("t*n*r", "trainer"));
        assert!(wildcard("*", ""));
        assert!(wildcard("trainer", "trainer"));
        assert!(!wildcard("trainer", "trainer2"));
        assert!(!wildcard("a*a", "a"));
        assert!(!wildcard("x*", "trainer"));
    }

    #[test]
    fn history_follow_and_slow_subscribers() {
        let hub = TailHub::default();
        hub.publish(&(1..=HISTORY as u64 + 10).map(loss).collect::<Vec<_>>());
        let (past, sub) = hub.subscribe(Filter { kind: Some("loss".into()), ..Default::default() }, 3, true);
        let seqs: Vec<u64> = past.iter().map(|e| e.seq()).collect();
        assert_eq!(seqs, vec![HISTORY as u64 + 8, HISTORY as u64 + 9, HISTORY as u64 + 10]);
        let mut sub = sub.unwrap();
        let (other, _) = hub.subscribe(Filter { verdict: Some("denied".into()), ..Default::default() }, 10, false);
        assert!(other.is_empty(), "filters apply to history");
        // One more than the queue holds: exactly one lost, counted.
        hub.publish(&(0..SUBSCRIBER_QUEUE as u64 + 1).map(loss).collect::<Vec<_>>());
        assert_eq!(sub.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(hub.stats(), (1, 1));
        assert_eq!(sub.events.try_recv().unwrap().seq(), 0);
        drop(sub);
        hub.publish(&[loss(1)]);
        assert_eq!(hub.stats().0, 0, "closed subscribers are removed");
    }
}
