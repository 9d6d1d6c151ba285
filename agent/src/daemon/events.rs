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
        shared.with_identity(|tracker, policy| {
            for rec in batch.iter() {
                if let Record::Net(ev) = rec {
                    sink.write(&enricher.network(ev, tracker, policy));
                }
            }
        });
        sink.flush();
        shared.note_sink(sink.written, sink.errors, enricher.seq());
    })
    .await?;
    Ok(())
}
