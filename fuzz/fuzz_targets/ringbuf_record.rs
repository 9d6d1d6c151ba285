//! Records come from the kernel; decode them defensively all the same.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::ringbuf::decode::fuzz(data));
