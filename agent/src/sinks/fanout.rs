//! One batch of events → every sink: the JSON lines file (in order,
//! synchronous), the exporters' bounded queues, and the live tail.
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use super::{JsonlSink, tail::TailHub};
use crate::enrich::Event;

/// A sink fed through its own queue (e.g. OTLP): `push` never blocks.
pub trait Forward: Send + Sync {
    fn push(&self, events: &[Arc<Event>]);
}

#[derive(Default)]
pub struct Counters {
    /// Allowed decisions folded into summaries, and summaries emitted.
    pub summarized: AtomicU64,
    pub summaries: AtomicU64,
    pub loss_events: AtomicU64,
}

impl Counters {
    /// Adds a summarizer's counts since the last call (each producer task
    /// has its own summarizer).
    pub fn note_summaries(&self, s: &mut crate::enrich::summary::Summarizer) {
        let (folded, emitted) = s.take_counts();
        self.summarized.fetch_add(folded, Ordering::Relaxed);
        self.summaries.fetch_add(emitted, Ordering::Relaxed);
    }
}

pub struct Fanout {
    jsonl: Mutex<Option<JsonlSink>>,
    has_jsonl: bool,
    pub jsonl_target: String,
    forwards: Vec<Arc<dyn Forward>>,
    pub tail: TailHub,
    pub counters: Counters,
}

/// JSON lines sink counts: (written, errors, rotations).
pub type JsonlCounts = (u64, u64, u64);

impl Fanout {
    pub fn new(jsonl: Option<JsonlSink>, jsonl_target: String, forwards: Vec<Arc<dyn Forward>>) -> Self {
        Self {
            has_jsonl: jsonl.is_some(),
            jsonl: Mutex::new(jsonl),
            jsonl_target,
            forwards,
            tail: TailHub::default(),
            counters: Counters::default(),
        }
    }

    /// Delivers events whose JSON lines (`n` of them) are already in
    /// `lines` (see `jsonl::encode`, run without any lock held).
    pub fn deliver(&self, events: &[Arc<Event>], lines: &[u8], n: u64) {
        if let Some(sink) = self.jsonl.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            sink.write_encoded(lines, n);
        }
        for f in &self.forwards {
            f.push(events);
        }
        self.tail.publish(events);
        let loss = events.iter().filter(|e| matches!(***e, Event::Loss(_))).count() as u64;
        if loss > 0 {
            self.counters.loss_events.fetch_add(loss, Ordering::Relaxed);
        }
    }

    /// Serializes `events` into `buf` (only if a JSON lines sink exists; no
    /// lock held), calls `before_sinks`, then delivers them.
    pub fn encode_and_deliver(&self, events: &[Arc<Event>], buf: &mut Vec<u8>, before_sinks: impl FnOnce()) {
        buf.clear();
        let n = if self.has_jsonl { super::jsonl::encode(events.iter().map(|e| &**e), buf) } else { 0 };
        before_sinks();
        self.deliver(events, buf, n);
    }

    pub fn jsonl_counts(&self) -> JsonlCounts {
        let g = self.jsonl.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|s| (s.written, s.errors, s.rotations)).unwrap_or_default()
    }
}
