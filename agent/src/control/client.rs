//! CLI side of the control socket.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context, bail};

use super::{Request, Response};

pub fn request(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    exchange(socket, req).map(|(_, resp)| resp)
}

/// Sends `req` and reads the response line; returns the reader positioned
/// after it (event lines follow for `events`).
fn exchange(socket: &Path, req: &Request) -> anyhow::Result<(BufReader<UnixStream>, Response)> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!("no warden daemon is running (nothing listening on {})", socket.display())
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("permission denied on {}: the control socket is root-only", socket.display())
        }
        _ => anyhow::Error::new(e).context(format!("connecting to {}", socket.display())),
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).context("sending request")?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply).context("reading reply")?;
    if reply.is_empty() {
        bail!("the daemon closed the connection without a reply");
    }
    let resp: Response = serde_json::from_str(&reply).context("decoding reply")?;
    if !resp.ok {
        bail!("daemon: {}", resp.error.unwrap_or_else(|| "unknown error".into()));
    }
    Ok((reader, resp))
}

/// Sends an `events` request and calls `on_line` with each event line
/// (raw JSON) until the daemon closes the stream; `{"notice": ...}` lines
/// go to `on_notice`. No read timeout: `--follow` waits for events.
pub fn stream(
    socket: &Path,
    req: &Request,
    mut on_line: impl FnMut(&str) -> anyhow::Result<()>,
    mut on_notice: impl FnMut(&serde_json::Value),
) -> anyhow::Result<()> {
    let (mut reader, _) = exchange(socket, req)?;
    reader.get_ref().set_read_timeout(None)?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).context("reading events")? == 0 {
            return Ok(());
        }
        let text = line.trim_end();
        if text.starts_with("{\"notice\"") {
            on_notice(&serde_json::from_str(text).context("decoding a notice")?);
        } else {
            on_line(text)?;
        }
    }
}
