//! Sinks: where enriched events go.
pub mod jsonl;

pub use jsonl::JsonlSink;
