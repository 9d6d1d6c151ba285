//! Test support for warden, kept out of the shipped library and binary:
//! in-process kubelet pod-resources and CRI servers (`kube`), a Kubernetes
//! API server replaying recordings (`kube_api`), a real OpenTelemetry
//! collector (`rotel`) whose printed records `debug_log` parses, and an
//! OTLP receiver that records request headers (`fake_collector`).
pub mod debug_log;
pub mod fake_collector;
pub mod kube;
pub mod kube_api;
pub mod rotel;
