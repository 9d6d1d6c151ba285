//! Data the agent parses from the kernel for file segments: BTF blobs,
//! fanotify permission and change (file identifier) records, and
//! /proc/<tid>/syscall text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    warden::hooks::btf::fuzz(data);
    warden::files::fanotify::sys::fuzz(data);
    warden::files::fanotify::changes::fuzz(data);
    warden::files::intent::fuzz(&String::from_utf8_lossy(data));
});
