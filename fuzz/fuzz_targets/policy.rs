//! Policy files come from users and ConfigMaps: any bytes must give a
//! policy or errors, never a panic or a hang.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::policy::fuzz_parse(data));
