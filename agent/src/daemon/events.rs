//! Event task: decision records → enrichment → sinks.
use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};

use super::state::Shared;
use crate::{enrich::Enricher, ringbuf::decode::Record, ringbuf::reader, sinks::JsonlSink};

pub async fn run(
    ring: RingBuf<MapData>,
    shared: Arc<Shared>,
    mut enricher: Enricher,
    mut sink: JsonlSink,
) -> anyhow::Result<()> {
    reader::drain(ring, Duration::from_millis(10), |batch, bad| {
        shared.note_decode_errors(bad);
        // Enrich under the lock (fast), write outside it: a slow sink must
        // never hold up identity updates or status.
        let events: Vec<_> = shared.with_identity(|tracker, policy| {
            batch
                .iter()
                .filter_map(|rec| match rec {
                    Record::Net(ev) => Some(enricher.network(ev, tracker, policy)),
                    _ => None,
                })
                .collect()
        });
        for ev in &events {
            sink.write(ev);
        }
        sink.flush();
        shared.note_sink(sink.written, sink.errors, enricher.seq());
    })
    .await?;
    Ok(())
}
