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
    Ok(resp)
}
