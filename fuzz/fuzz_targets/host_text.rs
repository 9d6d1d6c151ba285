//! Text the agent reads from the host and its neighbours: /proc/self/mountinfo,
//! tracefs format files, /proc/devices, the NVIDIA driver's GPU information
//! files, cgroup paths, `scontrol` output and pod objects from the API server.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = warden::system::mountinfo::parse(&text);
    for field in ["root", "id", "path"] {
        let _ = warden::hooks::tracefs::field_offset(&text, field);
    }
    let _ = warden::kube::nvidia::proc_devices_major(&text, "nvidia-uvm");
    let _ = warden::kube::nvidia::parse_information(&text);
    let _ = warden::identity::path::parse(&text);
    warden::identity::slurm::fuzz(&text);
    warden::kube::pods::fuzz(data);
});
