//! warden agent library. Modules follow the pipeline:
//! policy → compiled maps (`policy::compile`, `hooks::maps`) → kernel hooks
//! (`hooks`) → ring buffer (`ringbuf`) → identity enrichment (`identity`,
//! `enrich`) → sinks (`sinks`); plus `control` (socket), `metrics`
//! (Prometheus endpoint and probes), `daemon` (wiring), `system` (host
//! checks) and `cli`. At the bottom, imported by the layers above: `name`
//! (the shared name type), `clock` (wall-clock time) and `report` (the
//! status and reload reports). `cargo xtask layers` fails on import circles.
pub mod capability;
pub mod cli;
pub mod clock;
pub mod control;
pub mod daemon;
pub mod devices;
pub mod enrich;
pub mod files;
pub mod hooks;
pub mod identity;
pub mod kube;
pub mod metrics;
pub mod name;
pub mod policy;
pub mod probe;
pub mod probe_bypass;
pub mod probe_files;
pub mod probe_flood;
pub mod report;
pub mod ringbuf;
pub mod settings;
pub mod sinks;
pub mod system;
