//! Bounded event queue between the pipeline and a network sink.
//!
//! Producers (a tokio task doing sync work, plain std threads) push without
//! blocking; one consumer pops batches. When full, the oldest *allowed*
//! event goes first, so denies, audits and loss reports survive an allowed
//! flood; only a queue holding nothing but kept events drops the oldest of
//! those. Two deques (allowed, kept) make every push O(1); pops merge them
//! back in sequence order.
//!
//! A popped batch stays counted against the capacity until the consumer
//! `release`s it (an export being retried holds it), so events in memory
//! never exceed the capacity however long a collector is down.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;

use crate::enrich::Event;

/// Counters of a queue, read together under its lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting plus popped but not yet released.
    pub queued: u64,
    pub in_flight: u64,
    pub capacity: u64,
    /// Allowed decisions and summaries dropped on overflow.
    pub dropped_allowed: u64,
    /// Denies, audits and loss reports dropped on overflow.
    pub dropped_kept: u64,
}

#[derive(Default)]
struct Lanes {
    allowed: VecDeque<Arc<Event>>,
    kept: VecDeque<Arc<Event>>,
    /// Popped, not yet released.
    held: usize,
    dropped_allowed: u64,
    dropped_kept: u64,
}

impl Lanes {
    fn len(&self) -> usize {
        self.allowed.len() + self.kept.len()
    }

    /// Makes room for `incoming`; returns false when `incoming` itself is
    /// the event to drop: an allowed one while only kept events wait (it
    /// never displaces a deny), or any while everything is in flight.
    fn make_room(&mut self, incoming_kept: bool) -> bool {
        if self.allowed.pop_front().is_some() {
            self.dropped_allowed += 1;
            true
        } else if !incoming_kept {
            self.dropped_allowed += 1;
            false
        } else {
            self.dropped_kept += 1;
            self.kept.pop_front().is_some()
        }
    }

    fn push(&mut self, ev: Arc<Event>, capacity: usize) {
        let kept = ev.must_keep();
        if self.len() + self.held >= capacity && !self.make_room(kept) {
            return;
        }
        if kept { self.kept.push_back(ev) } else { self.allowed.push_back(ev) }
    }

    /// The older (lower `seq`) of the two heads.
    fn pop(&mut self) -> Option<Arc<Event>> {
        match (self.allowed.front(), self.kept.front()) {
            (Some(a), Some(k)) if a.seq() <= k.seq() => self.allowed.pop_front(),
            (Some(_), Some(_)) | (None, Some(_)) => self.kept.pop_front(),
            (Some(_), None) => self.allowed.pop_front(),
            (None, None) => None,
        }
    }
}

pub struct EventQueue {
    lanes: Mutex<Lanes>,
    capacity: usize,
    ready: Notify,
}

impl EventQueue {
    /// A queue holding at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { lanes: Mutex::new(Lanes::default()), capacity: capacity.max(1), ready: Notify::new() }
    }

    /// A poisoned lock only means a panic elsewhere mid-push; the deques
    /// are still consistent, so keep going rather than lose the sink.
    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, ev: Arc<Event>) {
        self.lanes().push(ev, self.capacity);
        self.ready.notify_one();
    }

    /// Pushes a batch under one lock, with one wake-up.
    pub fn push_all(&self, evs: &[Arc<Event>]) {
        if evs.is_empty() {
            return;
        }
        let mut lanes = self.lanes();
        for ev in evs {
            lanes.push(ev.clone(), self.capacity);
        }
        drop(lanes);
        self.ready.notify_one();
    }

    /// Up to `max` events, oldest first (merged in `seq` order). They keep
    /// their room in the queue until `release`d.
    pub fn pop_batch(&self, max: usize) -> Vec<Arc<Event>> {
        let mut lanes = self.lanes();
        let n = lanes.len().min(max);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match lanes.pop() {
                Some(ev) => out.push(ev),
                None => break,
            }
        }
        lanes.held += out.len();
        out
    }

    /// Frees the room of `n` popped events (exported or given up).
    pub fn release(&self, n: usize) {
        let mut lanes = self.lanes();
        lanes.held = lanes.held.saturating_sub(n);
    }

    /// Resolves after a push (at once if one happened since the last wait:
    /// `notify_one` stores a permit, so no wake-up is lost).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Events waiting (not counting popped ones).
    pub fn len(&self) -> usize {
        self.lanes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> QueueStats {
        let lanes = self.lanes();
        QueueStats {
            queued: (lanes.len() + lanes.held) as u64,
            in_flight: lanes.held as u64,
            capacity: self.capacity as u64,
            dropped_allowed: lanes.dropped_allowed,
            dropped_kept: lanes.dropped_kept,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::enrich::{LossEvent, SummaryEvent};

    /// A summary with this verdict: the smallest event with one.
    pub(crate) fn event(seq: u64, verdict: &'static str) -> Arc<Event> {
        Arc::new(Event::Summary(SummaryEvent {
            time: String::new(),
            time_unix_ns: seq,
            seq,
            agent_id: "a-1".into(),
            node: "n".into(),
            kind: "network",
            operation: "summary",
            workload: "w".into(),
            identity: "matched",
            segment: None,
            verdict,
            rule: None,
            count: 1,
            window_start: String::new(),
            backend: None,
        }))
    }

    /// A kernel loss report (kept under overload).
    pub(crate) fn loss(seq: u64) -> Arc<Event> {
        Arc::new(Event::Loss(LossEvent {
            time: String::new(),
            time_unix_ns: seq,
            seq,
            agent_id: "a-1".into(),
            node: "n".into(),
            kind: "loss",
            stage: "kernel",
            count: 1,
            denied: 0,
            reason: "ring full",
        }))
    }

    fn seqs(evs: &[Arc<Event>]) -> Vec<u64> {
        evs.iter().map(|e| e.seq()).collect()
    }

    #[test]
    fn pops_in_seq_order_across_lanes() {
        let q = EventQueue::new(10);
        for (s, v) in [(1, "allowed"), (2, "denied"), (3, "allowed"), (4, "audited"), (5, "allowed")] {
            q.push(event(s, v));
        }
        q.push(loss(6));
        assert_eq!(seqs(&q.pop_batch(4)), [1, 2, 3, 4]);
        assert_eq!(seqs(&q.pop_batch(10)), [5, 6]);
        assert!(q.pop_batch(10).is_empty());
    }

    #[test]
    fn overflow_drops_oldest_allowed_first() {
        let q = EventQueue::new(4);
        q.push_all(&[event(1, "allowed"), event(2, "denied"), event(3, "allowed"), event(4, "denied")]);
        q.push(event(5, "denied"));
        q.push(event(6, "allowed"));
        let s = q.stats();
        assert_eq!((s.queued, s.dropped_allowed, s.dropped_kept), (4, 2, 0));
        assert_eq!(seqs(&q.pop_batch(10)), [2, 4, 5, 6]);
    }

    #[test]
    fn only_kept_events_left_drops_the_oldest_kept() {
        let q = EventQueue::new(3);
        q.push_all(&[event(1, "denied"), event(2, "audited"), loss(3)]);
        q.push(event(4, "denied"));
        // An allowed event never displaces a deny: it is dropped itself.
        q.push(event(5, "allowed"));
        let s = q.stats();
        assert_eq!((s.dropped_allowed, s.dropped_kept), (1, 1));
        assert_eq!(seqs(&q.pop_batch(10)), [2, 3, 4]);
    }

    #[test]
    fn popped_events_hold_their_room_until_released() {
        let q = EventQueue::new(4);
        q.push_all(&[event(1, "allowed"), event(2, "allowed"), event(3, "denied")]);
        assert_eq!(seqs(&q.pop_batch(2)), [1, 2]);
        q.push(event(4, "allowed"));
        q.push(event(5, "denied")); // full (2 waiting + 2 in flight): 4 goes
        q.push(event(6, "denied")); // no allowed left waiting: 3 goes
        let s = q.stats();
        assert_eq!((s.queued, s.in_flight, s.dropped_allowed, s.dropped_kept), (4, 2, 1, 1));
        q.release(2);
        assert_eq!(q.stats().queued, 2);
        assert_eq!(seqs(&q.pop_batch(10)), [5, 6]);

        // Everything in flight: newcomers are dropped, by their class.
        let q = EventQueue::new(2);
        q.push_all(&[event(1, "denied"), event(2, "denied")]);
        q.pop_batch(2);
        q.push(event(3, "denied"));
        q.push(event(4, "allowed"));
        let s = q.stats();
        assert_eq!((s.queued, s.dropped_allowed, s.dropped_kept), (2, 1, 1));
        assert!(q.is_empty());
    }

    #[test]
    fn every_deny_survives_an_allowed_flood() {
        let q = EventQueue::new(1000);
        let mut denies = Vec::new();
        for s in 1..=100_000u64 {
            let deny = s % 1000 == 0;
            if deny {
                denies.push(s);
            }
            q.push(event(s, if deny { "denied" } else { "allowed" }));
        }
        let s = q.stats();
        assert_eq!(s.queued, 1000);
        assert_eq!(s.dropped_kept, 0);
        assert_eq!(s.dropped_allowed, 100_000 - 1000);
        let out = q.pop_batch(usize::MAX);
        let kept: Vec<u64> = out.iter().filter(|e| e.must_keep()).map(|e| e.seq()).collect();
        assert_eq!(kept, denies);
        assert!(seqs(&out).windows(2).all(|w| w[0] < w[1]), "order kept");
        assert_eq!(out.last().map(|e| e.seq()), Some(100_000), "newest allowed kept");
    }

    #[tokio::test]
    async fn a_push_from_a_thread_wakes_the_consumer() {
        let q = Arc::new(EventQueue::new(8));
        let producer = q.clone();
        std::thread::spawn(move || producer.push(event(1, "denied")));
        tokio::time::timeout(std::time::Duration::from_secs(5), q.ready()).await.expect("woken");
        assert_eq!(seqs(&q.pop_batch(8)), [1]);
    }
}
