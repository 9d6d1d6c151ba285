//! JSON lines to stdout or a file (appended; one event per line).
use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    path::Path,
};

use crate::enrich::DecisionEvent;

pub struct JsonlSink {
    out: BufWriter<Box<dyn Write + Send>>,
    pub written: u64,
    pub errors: u64,
}

impl JsonlSink {
    /// `"-"` is stdout; anything else a file path (created 0600, appended).
    pub fn open(target: &str) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(io::stdout())
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = Path::new(target).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(OpenOptions::new().create(true).append(true).mode(0o600).open(target)?)
        };
        Ok(Self { out: BufWriter::with_capacity(256 * 1024, out), written: 0, errors: 0 })
    }

    pub fn write(&mut self, ev: &DecisionEvent) {
        let res = serde_json::to_writer(&mut self.out, ev)
            .and_then(|_| self.out.write_all(b"\n").map_err(serde_json::Error::io));
        match res {
            Ok(()) => self.written += 1,
            Err(e) => {
                self.errors += 1;
                tracing::warn!(error = %e, "writing event failed");
            }
        }
    }

    /// Appends lines another thread serialized (see `encode`), in one piece.
    pub fn write_encoded(&mut self, lines: &[u8], events: u64) {
        match self.out.write_all(lines) {
            Ok(()) => self.written += events,
            Err(e) => {
                self.errors += events;
                tracing::warn!(error = %e, "writing events failed");
            }
        }
    }

    /// Called once per ring-buffer batch so events reach readers promptly.
    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.errors += 1;
            tracing::warn!(error = %e, "flushing events failed");
        }
    }
}

/// Serializes events as JSON lines into `buf`; returns how many it holds.
/// Lets a thread do the expensive part without holding the shared sink.
pub fn encode(events: &[DecisionEvent], buf: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    for ev in events {
        if serde_json::to_writer(&mut *buf, ev).is_ok() {
            buf.push(b'\n');
            n += 1;
        }
    }
    n
}
