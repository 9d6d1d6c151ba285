//! Raw bytes from anyone who can reach the metrics port, through the real
//! connection handling (hyper's HTTP/1 server and our checks) in memory.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::metrics::http::fuzz(data));
