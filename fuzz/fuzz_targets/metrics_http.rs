//! Request heads from anyone who can reach the metrics port.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::metrics::http::fuzz(data));
