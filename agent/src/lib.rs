//! warden agent library: the pipeline from policy to sinks.
pub mod policy;
