//! Sinks: where enriched events go. `fanout` hands each batch to the JSON
//! lines file, the exporters' queues and the live tail.
pub mod fanout;
pub mod json;
pub mod jsonl;
pub mod otlp;
pub mod queue;
pub mod tail;

pub use fanout::{Fanout, Forward};
pub use jsonl::JsonlSink;
