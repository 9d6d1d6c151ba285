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
        // Enrich under the identity lock (fast), write outside it: a slow
        // sink must never hold up identity updates or status.
        let events: Vec<_> = shared.with_identity(|tracker, policy| {
            batch
                .iter()
                .filter_map(|rec| match rec {
                    Record::Net(ev) => Some(w.enricher.network(ev, tracker, policy)),
                    Record::File(ev) => Some(w.enricher.kernel_file(ev, tracker, policy)),
                    _ => None,
                })
                .collect()
        });
        for ev in &events {
            w.sink.write(ev);
        }
        w.sink.flush();
        shared.note_sink(w.sink.written, w.sink.errors, w.enricher.seq());
    })
    .await?;
    Ok(())
}

/// Writes decisions of a userspace file backend (fanotify).
pub async fn run_files(
    mut rx: mpsc::Receiver<super::files::FileEvent>,
    shared: Arc<Shared>,
    writer: SharedWriter,
    backend: &'static str,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut w = lock(&writer);
        let w = &mut *w;
        let events: Vec<_> = shared.with_identity(|_, policy| {
            batch.drain(..).map(|(d, cg)| w.enricher.file(&d, cg, policy, backend)).collect()
        });
        for ev in &events {
            w.sink.write(ev);
        }
        w.sink.flush();
        shared.note_sink(w.sink.written, w.sink.errors, w.enricher.seq());
    }
    Ok(())
}
