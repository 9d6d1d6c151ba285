//! Event tasks: kernel decision records and file-backend decisions →
//! enrichment (allowed decisions folded into summaries) → sinks. Both
//! number events from one sequence, so `seq` is one per node.
use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::sync::mpsc;
use warden_common::{STAT_DENIES_DROPPED, STAT_EVENTS_DROPPED, VERDICT_ALLOWED};

use super::{Agent, Parts, policy_cell::PolicyCell, writer_priority::WriterPriority};
use crate::{
    enrich::{
        Enricher, Event, LossEvent, Name,
        summary::{Key, Summarizer},
    },
    files::FileDecision,
    identity::delay::monotonic_ns,
    report::{EventStatus, TailStatus},
    ringbuf::{decode::Record, reader},
    sinks::Fanout,
};

/// Kernel records enriched per taking of the identity lock.
const ENRICH_CHUNK: usize = 32;

/// The sinks, seen from status and the control socket.
pub struct SinkHandle {
    pub fanout: Arc<Fanout>,
    /// The node's event sequence and this agent's id.
    pub numbering: crate::enrich::Numbering,
    pub otlp: Option<Arc<crate::sinks::otlp::OtlpSink>>,
}

impl SinkHandle {
    /// The sink part of the event counters.
    pub fn status(&self) -> EventStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.fanout;
        let (written, write_errors, jsonl_rotations) = f.jsonl_counts();
        let (subscribers, dropped) = f.tail.stats();
        EventStatus {
            written,
            write_errors,
            last_seq: self.numbering.seq.last(),
            summarized: f.counters.summarized.load(Relaxed),
            summaries: f.counters.summaries.load(Relaxed),
            loss_events: f.counters.loss_events.load(Relaxed),
            jsonl: f.jsonl_target.clone(),
            jsonl_rotations,
            otlp: self.otlp.as_ref().map(|s| s.status()),
            tail: TailStatus { subscribers, dropped },
            ..Default::default()
        }
    }
}

/// What both event tasks share.
#[derive(Clone)]
pub struct Pipeline {
    pub fanout: Arc<Fanout>,
    /// Summary window for allowed decisions; None: one event each.
    pub summary_ms: Option<u64>,
}

impl Pipeline {
    fn summarizer(&self) -> Option<Summarizer> {
        self.summary_ms.map(Summarizer::new)
    }

    /// Serializes (no lock held), calls `before_sinks`, then delivers and
    /// empties `events` (the caller reuses its allocation).
    fn deliver(&self, events: &mut Vec<Arc<Event>>, buf: &mut Vec<u8>, before_sinks: impl FnOnce()) {
        if events.is_empty() {
            return;
        }
        self.fanout.encode_and_deliver(events, buf, before_sinks);
        events.clear();
    }
}

fn summary_key(rec: &Record) -> Option<Key> {
    let (kind, h) = match rec {
        Record::Net(e) => ("network", &e.header),
        Record::File(e) => ("file", &e.header),
        Record::Device(e) => ("device", &e.header),
        _ => return None,
    };
    (h.verdict == VERDICT_ALLOWED).then_some(Key {
        kind,
        set: h.policy_set,
        workload: h.workload_id,
        segment: h.segment_id,
        rule: h.rule_id,
        backend: None,
    })
}

/// Turns growth of the kernel's drop counters into in-band `loss` events,
/// checked at most once a second.
struct KernelLoss {
    dropped: u64,
    denies: u64,
    checked_ns: u64,
}

impl KernelLoss {
    fn new(cell: &PolicyCell) -> Self {
        Self { dropped: cell.stat(STAT_EVENTS_DROPPED), denies: cell.stat(STAT_DENIES_DROPPED), checked_ns: 0 }
    }

    fn check(&mut self, cell: &PolicyCell, enricher: &mut Enricher) -> Option<LossEvent> {
        let now = monotonic_ns();
        if now.saturating_sub(self.checked_ns) < 1_000_000_000 {
            return None;
        }
        self.checked_ns = now;
        let (dropped, denies) = (cell.stat(STAT_EVENTS_DROPPED), cell.stat(STAT_DENIES_DROPPED));
        let count = dropped.saturating_sub(self.dropped);
        let denied = denies.saturating_sub(self.denies);
        (self.dropped, self.denies) = (dropped, denies);
        (count > 0).then(|| enricher.loss("kernel", count, denied, "ring buffer full"))
    }
}

pub async fn run(
    ring: RingBuf<MapData>,
    agent: Arc<Agent>,
    pipeline: Pipeline,
    mut enricher: Enricher,
) -> anyhow::Result<()> {
    let Parts { cell, identities, health } = agent.parts.clone();
    let mut summaries = pipeline.summarizer();
    let mut loss = KernelLoss::new(&cell);
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut events = Vec::new();
    reader::drain(ring, Duration::from_millis(10), |batch, bad| {
        health.note_decode_errors(bad);
        health.heartbeat();
        let devices = agent.device_table();
        // Taken after the drain: a record of a set filled by a reload is
        // only in the batch if the reload's policy is here too.
        let policies = cell.policies();
        // Enrich under the identity lock, taken per few records so identity
        // updates, status and fanotify decisions never wait for a whole
        // batch (a lock per record cost 5% at 500k events/s); write outside it.
        let mut decided = Vec::with_capacity(ENRICH_CHUNK);
        for chunk in batch.chunks(ENRICH_CHUNK) {
            {
                let t = identities.lock();
                let tracker = &t.tracker;
                for rec in chunk {
                    if let Some(s) = summaries.as_mut()
                        && let Some(key) = summary_key(rec)
                    {
                        s.add(key);
                        continue;
                    }
                    let ev = match rec {
                        Record::Net(ev) => enricher.network(ev, tracker, policies.of(ev.header.policy_set)),
                        Record::File(ev) => enricher.kernel_file(ev, tracker, policies.of(ev.header.policy_set)),
                        Record::Device(ev) => enricher.device(ev, &devices, tracker, policies.of(ev.header.policy_set)),
                        _ => continue,
                    };
                    decided.push(ev);
                }
            }
            // /proc/<pid>/exe is read outside the identity lock.
            for mut ev in decided.drain(..) {
                enricher.fill_exe(&mut ev);
                events.push(Arc::new(Event::Decision(ev)));
            }
        }
        if let Some(s) = summaries.as_mut()
            && s.due()
        {
            let out = s.flush(&mut enricher, &|set| policies.of(set));
            events.extend(out.into_iter().map(|e| Arc::new(Event::Summary(e))));
            pipeline.fanout.counters.note_summaries(s);
        }
        events.extend(loss.check(&cell, &mut enricher).map(|e| Arc::new(Event::Loss(e))));
        pipeline.deliver(&mut events, &mut buf, || {});
    })
    .await?;
    Ok(())
}

/// Writes decisions of a userspace file backend (fanotify) on a thread of
/// its own, idle-priority unless denies or a backlog are queued (see
/// `writer_priority`): on a busy node the opener and the decision thread run
/// first. The bounded channel keeps memory flat if this thread lags;
/// overflow is counted as dropped and reported as a `loss` event.
pub struct FileWriter {
    pub parts: Parts,
    pub pipeline: Pipeline,
    pub enricher: Enricher,
    pub backend: &'static str,
    pub priority: Arc<WriterPriority>,
    /// Decisions the backend could not queue.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl FileWriter {
    pub async fn run(self, rx: mpsc::Receiver<FileDecision>) -> anyhow::Result<()> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("warden-file-events".into()).spawn(move || {
            self.priority.register();
            self.write(rx);
            let _ = done_tx.send(());
        })?;
        // Resolves when the thread ends (channel closed) or panics (sender dropped).
        let _ = done_rx.await;
        Ok(())
    }

    fn write(mut self, mut rx: mpsc::Receiver<FileDecision>) {
        use std::sync::atomic::Ordering::Relaxed;
        // Own caches, one shared event sequence, and a snapshot of the policy's
        // names: the /proc reads, enrichment and serialization run at idle
        // priority with no lock held. The sinks' locks are taken raised to the
        // normal class, so this thread, preempted, never keeps the kernel-event
        // task waiting.
        let (cell, ids, pipeline, priority, backend) =
            (&self.parts.cell, &self.parts.identities, &self.pipeline, &self.priority, self.backend);
        let enricher = &mut self.enricher;
        let mut identities = super::identities::PathIdentities::default();
        let mut generation = cell.generation();
        let mut policy = cell.compiled();
        let paths = ids.lock().tracker.hierarchy_paths();
        let mut summaries = pipeline.summarizer();
        let mut lost = self.dropped.load(Relaxed);
        let mut batch = Vec::with_capacity(256);
        let mut buf = Vec::with_capacity(256 * 1024);
        loop {
            // Drain on a tick instead of waiting on each send: a waiting receiver
            // is woken by every send, a wake-up per open for the decision thread.
            std::thread::sleep(Duration::from_millis(10));
            loop {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            if cell.generation() != generation {
                priority.boost();
                (generation, policy) = (cell.generation(), cell.compiled());
            }
            let mut events = Vec::with_capacity(batch.len());
            for d in batch.drain(..) {
                if let Some(s) = summaries.as_mut()
                    && d.verdict == VERDICT_ALLOWED
                {
                    let workload = d.workload.unwrap_or(warden_common::WORKLOAD_UNIDENTIFIED);
                    let key = Key {
                        kind: "file",
                        set: 0,
                        workload,
                        segment: d.segment,
                        rule: d.rule,
                        backend: Some(backend),
                    };
                    s.add(key);
                    continue;
                }
                let mut p = enricher.file_proc(&d);
                if let Some(c) = &p.cgroup {
                    p.who = ids.identity_of_path(&mut identities, c);
                }
                // Same form as network events: the cgroup's filesystem path.
                p.cgroup = p.cgroup.and_then(|c| paths.abs(&c)).map(|c| Name::from(c.to_string_lossy()));
                events.push(Arc::new(Event::Decision(enricher.file(&d, p, &policy, backend))));
            }
            if let Some(s) = summaries.as_mut()
                && s.due()
            {
                events.extend(s.flush(enricher, &|_| &policy).into_iter().map(|e| Arc::new(Event::Summary(e))));
                pipeline.fanout.counters.note_summaries(s);
            }
            let now_lost = self.dropped.load(Relaxed);
            if now_lost > lost {
                let loss = enricher.loss("pipeline", now_lost - lost, 0, "file decision queue full");
                events.push(Arc::new(Event::Loss(loss)));
                lost = now_lost;
            }
            if events.is_empty() {
                continue;
            }
            pipeline.deliver(&mut events, &mut buf, || priority.boost());
            priority.settle(|| !rx.is_empty());
        }
    }
}
