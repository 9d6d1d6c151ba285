//! Text the agent reads from the host: /proc/self/mountinfo and tracefs
//! format files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = warden::system::mountinfo::parse(&text);
    for field in ["root", "id", "path"] {
        let _ = warden::hooks::tracefs::field_offset(&text, field);
    }
});
