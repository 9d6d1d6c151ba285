//! Boots a kernel + initramfs under QEMU (TCG), streaming the serial console to a log file.
use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// What a finished boot left behind.
pub struct Boot {
    pub console: String,
    pub elapsed: Duration,
}

/// Runs QEMU until the guest powers off (or panics: `panic=-1` + `-no-reboot` end QEMU too).
/// On timeout QEMU is killed and an error carrying the console's tail is returned.
pub fn boot(vmlinuz: &Path, initrd: &Path, append: &str, log: &Path, timeout: Duration) -> anyhow::Result<Boot> {
    let mut cmd = Command::new("qemu-system-x86_64");
    // KVM exists on the build machines but fails for nested guests: TCG is reliable and boots in seconds.
    cmd.args(["-accel", "tcg", "-cpu", "max", "-m", "2G", "-smp", "2", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let verbose = std::env::var_os("WARDEN_VM_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0");
    if verbose {
        eprintln!("+ {cmd:?}");
    }
    let start = Instant::now();
    let mut child = cmd.spawn().context("spawning qemu-system-x86_64 (install qemu-system-x86)")?;

    let mut log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let console = thread::spawn(move || -> String {
        let mut text = String::new();
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let _ = log_file.write_all(&line);
            let _ = log_file.flush();
            let s = String::from_utf8_lossy(&line).replace('\r', "");
            if verbose {
                eprint!("{s}");
            }
            text.push_str(&s);
            line.clear();
        }
        text
    });
    let mut stderr = child.stderr.take().expect("piped");
    let errors = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let deadline = start + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let console = console.join().unwrap_or_default();
    let errors = errors.join().unwrap_or_default();
    match status {
        None => bail!(
            "guest did not power off within {timeout:?}; QEMU killed. Console ({}) ends with:\n{}",
            log.display(),
            tail(&console, 30)
        ),
        Some(s) if !s.success() => bail!(
            "qemu-system-x86_64 failed ({s}): {}\nconsole ({}) ends with:\n{}",
            errors.trim(),
            log.display(),
            tail(&console, 30)
        ),
        Some(_) => Ok(Boot { console, elapsed }),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
