//! Daemon side of the control socket. Root-only twice over: the socket is
//! 0600 in a 0700 directory, and each peer's uid is checked (SO_PEERCRED).
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use super::{MAX_REQUEST, Request, Response, status::StatusReport};

pub trait Handler: Send + Sync + 'static {
    fn status(&self) -> StatusReport;
}

/// Binds the socket, replacing a stale one but never a live daemon's.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another warden daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, handler: Arc<dyn Handler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let h = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, h).await {
                        tracing::debug!(error = %e, "control connection");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "accepting control connection"),
        }
    }
}

async fn handle(stream: UnixStream, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let reply = if uid != 0 {
        error(format!("permission denied: uid {uid} is not root"))
    } else {
        let mut line = String::new();
        let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
        reader.read_line(&mut line).await?;
        match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(Request::Status) => Response { ok: true, error: None, status: Some(handler.status()) },
            Err(e) => error(format!("bad request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

fn error(msg: String) -> Response {
    Response { ok: false, error: Some(msg), status: None }
}

/// Removes the socket file on drop (clean shutdown).
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
