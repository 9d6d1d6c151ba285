//! JSON lines to stdout or a file (appended, one event per line), with
//! size-based rotation of files: `events.jsonl` → `events.jsonl.1` → … →
//! `events.jsonl.<keep>`, oldest removed.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use crate::{enrich::Event, settings::Rotate};

pub struct JsonlSink {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The file and its rotation (None for stdout).
    file: Option<(PathBuf, Rotate)>,
    /// Bytes in the current file.
    size: u64,
    pub written: u64,
    pub errors: u64,
    pub rotations: u64,
}

fn open_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

fn buffered(w: Box<dyn Write + Send>) -> BufWriter<Box<dyn Write + Send>> {
    BufWriter::with_capacity(256 * 1024, w)
}

impl JsonlSink {
    /// `"-"` is stdout; anything else a file path (created 0600, appended).
    pub fn open(target: &str, rotate: Rotate) -> io::Result<Self> {
        let (out, file, size): (Box<dyn Write + Send>, _, _) = if target == "-" {
            (Box::new(io::stdout()), None, 0)
        } else {
            let path = PathBuf::from(target);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = open_file(&path)?;
            let size = f.metadata()?.len();
            (Box::new(f), Some((path, rotate)), size)
        };
        Ok(Self { out: buffered(out), file, size, written: 0, errors: 0, rotations: 0 })
    }

    /// Appends lines serialized by `encode` (`events` of them) in one
    /// piece, flushes, then rotates if the file is over its size.
    pub fn write_encoded(&mut self, lines: &[u8], events: u64) {
        match self.out.write_all(lines).and_then(|_| self.out.flush()) {
            Ok(()) => {
                self.written += events;
                self.size += lines.len() as u64;
            }
            Err(e) => {
                self.errors += events;
                tracing::warn!(error = %e, "writing events failed");
            }
        }
        if let Some((path, rotate)) = &self.file
            && self.size >= rotate.max_bytes
        {
            let (path, rotate) = (path.clone(), *rotate);
            if let Err(e) = self.rotate(&path, rotate) {
                self.errors += 1;
                tracing::warn!(error = %e, file = %path.display(), "rotating the event file failed");
            }
        }
    }

    fn rotate(&mut self, path: &Path, rotate: Rotate) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        // Oldest first, so each rename lands on a free name.
        let _ = std::fs::remove_file(numbered(rotate.keep));
        for n in (1..rotate.keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(path, numbered(1))?;
        // Everything was flushed above; the old handle now names `.1`.
        self.out = buffered(Box::new(open_file(path)?));
        self.size = 0;
        self.rotations += 1;
        Ok(())
    }
}

/// Serializes events as JSON lines into `buf`; returns how many it holds.
/// Lets a thread do the expensive part without holding the shared sink.
pub fn encode<'a>(events: impl IntoIterator<Item = &'a Event>, buf: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    for ev in events {
        super::json::write_event(buf, ev);
        buf.push(b'\n');
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("warden-jsonl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut sink = JsonlSink::open(path.to_str().unwrap(), Rotate { max_bytes: 100, keep: 2 }).unwrap();
        for i in 0..10u32 {
            let line = format!("{{\"seq\":{i},\"pad\":\"{}\"}}\n", "x".repeat(40));
            sink.write_encoded(line.as_bytes(), 1);
        }
        // 54-byte lines, rotation at ≥ 100 bytes: two lines per file.
        assert_eq!((sink.written, sink.errors, sink.rotations), (10, 0, 5));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(&path), "", "just rotated");
        let one = read(&dir.join("events.jsonl.1"));
        let two = read(&dir.join("events.jsonl.2"));
        assert!(one.starts_with("{\"seq\":8,") && one.lines().count() == 2, "{one}");
        assert!(two.starts_with("{\"seq\":6,") && two.lines().count() == 2, "{two}");
        assert!(!dir.join("events.jsonl.3").exists(), "only `keep` files are kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
