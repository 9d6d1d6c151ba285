//! Event tasks: kernel decision records and file-backend decisions →
//! enrichment → sinks. Both share one writer so `seq` is one per node.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::sync::mpsc;

use super::state::Shared;
use crate::{enrich::Enricher, ringbuf::decode::Record, ringbuf::reader, sinks::JsonlSink};

pub struct Writer {
    pub enricher: Enricher,
    pub sink: JsonlSink,
}

pub type SharedWriter = Arc<Mutex<Writer>>;

fn lock(w: &SharedWriter) -> std::sync::MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn run(ring: RingBuf<MapData>, shared: Arc<Shared>, writer: SharedWriter) -> anyhow::Result<()> {
    reader::drain(ring, Duration::from_millis(10), |batch, bad| {
        shared.note_decode_errors(bad);
        let mut w = lock(&writer);
        let w = &mut *w;
        // Enrich under the identity lock, taken per record so identity
        // updates, status and fanotify decisions never wait for a whole
        // batch; write outside it, so a slow sink holds up nothing.
        let devices = shared.device_table();
        let events: Vec<_> = batch
            .iter()
            .filter_map(|rec| {
                shared.with_identity(|tracker, policy| match rec {
                    Record::Net(ev) => Some(w.enricher.network(ev, tracker, policy)),
                    Record::File(ev) => Some(w.enricher.kernel_file(ev, tracker, policy)),
                    Record::Device(ev) => Some(w.enricher.device(ev, &devices, tracker, policy)),
                    _ => None,
                })
            })
            .collect();
        for ev in &events {
            w.sink.write(ev);
        }
        w.sink.flush();
        shared.note_sink(w.sink.written, w.sink.errors, w.enricher.seq());
    })
    .await?;
    Ok(())
}

/// Writes decisions of a userspace file backend (fanotify) on a thread of
/// its own, idle-priority unless denies or a backlog are queued (see
/// `writer_priority`): on a busy node the opener and the decision thread run
/// first. The bounded channel keeps memory flat if this thread lags;
/// overflow is counted as dropped.
pub async fn run_files(
    rx: mpsc::Receiver<crate::files::FileDecision>,
    shared: Arc<Shared>,
    writer: SharedWriter,
    backend: &'static str,
    priority: Arc<super::writer_priority::WriterPriority>,
) -> anyhow::Result<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("warden-file-events".into()).spawn(move || {
        priority.register();
        write_files(rx, &shared, &writer, backend, &priority);
        let _ = done_tx.send(());
    })?;
    // Resolves when the thread ends (channel closed) or panics (sender dropped).
    let _ = done_rx.await;
    Ok(())
}

fn write_files(
    mut rx: mpsc::Receiver<crate::files::FileDecision>,
    shared: &Shared,
    writer: &SharedWriter,
    backend: &'static str,
    priority: &super::writer_priority::WriterPriority,
) {
    // Own caches, one shared event sequence, and a snapshot of the policy's
    // names: the /proc reads, enrichment and serialization run at idle
    // priority with no lock held. The one lock left, the shared sink's, is
    // taken raised to the normal class, so this thread, preempted, never
    // keeps the kernel-event task waiting.
    let mut enricher = lock(writer).enricher.sibling();
    let mut identities = super::identify::PathIdentities::default();
    let (mut generation, mut policy, paths) = shared.events_snapshot();
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
        if batch.is_empty() {
            continue;
        }
        if shared.policy_generation() != generation {
            priority.boost();
            (generation, policy, _) = shared.events_snapshot();
        }
        let events: Vec<_> = batch
            .drain(..)
            .map(|d| {
                let mut p = enricher.file_proc(&d);
                if let Some(c) = &p.cgroup {
                    p.who = shared.identity_of_path(&mut identities, c);
                }
                // Same form as network events: the cgroup's filesystem path.
                p.cgroup = p.cgroup.and_then(|c| paths.abs(&c)).map(|c| c.display().to_string());
                enricher.file(&d, p, &policy, backend)
            })
            .collect();
        buf.clear();
        let n = crate::sinks::jsonl::encode(&events, &mut buf);
        priority.boost();
        {
            let mut w = lock(writer);
            w.sink.write_encoded(&buf, n);
            w.sink.flush();
            shared.note_sink(w.sink.written, w.sink.errors, enricher.seq());
        }
        priority.settle(|| !rx.is_empty());
    }
}
