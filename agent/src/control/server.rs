//! Daemon side of the control socket. Root-only twice over: the socket is
//! 0600 in a 0700 directory, and each peer's uid is checked (SO_PEERCRED).
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedWriteHalf},
};

use super::{MAX_REQUEST, Request, Response};
use crate::{
    enrich::Event,
    report::{ReloadOutcome, StatusReport},
    sinks::tail::{Filter, HISTORY, Subscription},
};

pub trait Handler: Send + Sync + 'static {
    fn status(&self) -> StatusReport;
    /// Re-reads and applies the config file (`warden reload`).
    fn reload(&self) -> ReloadOutcome;
    /// Recent matching events and, with `follow`, a live subscription.
    fn events(&self, filter: Filter, tail: usize, follow: bool) -> (Vec<Arc<Event>>, Option<Subscription>);
}

/// Binds the socket, replacing a stale one but never a live daemon's.
///
/// The socket is bound in a private directory (0700) and moved into place
/// once it is 0600, so it is never reachable with looser permissions, and
/// a shared parent (`/run`, `/tmp`) keeps its own mode: only a directory
/// made here is made private.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another warden daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let private = dir.join(format!(".warden-bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&private)?;
    let bound = (|| {
        let at = private.join("s");
        let listener = UnixListener::bind(&at)?;
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&at, path)?;
        anyhow::Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
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
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let mut stream_events = None;
    let reply = if uid != 0 {
        error(format!("permission denied: uid {uid} is not root"))
    } else {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(Request::Status) => Response { ok: true, error: None, status: Some(handler.status()), reload: None },
            Ok(Request::Events { filter, tail, follow }) => {
                stream_events = Some(handler.events(filter, tail.min(HISTORY), follow));
                Response { ok: true, error: None, status: None, reload: None }
            }
            Ok(Request::Reload) => {
                // Reads and stats files, writes maps: off the async workers.
                let h = handler.clone();
                match tokio::task::spawn_blocking(move || h.reload()).await {
                    Ok(o) => Response { ok: true, error: None, status: None, reload: Some(o) },
                    Err(e) => error(format!("reload failed: {e}")),
                }
            }
            Err(e) => error(format!("bad request: {e}")),
        }
    };
    write_line(&mut write, &reply).await?;
    let Some((past, sub)) = stream_events else { return Ok(()) };
    for ev in past {
        write_line(&mut write, &*ev).await?;
    }
    let Some(mut sub) = sub else { return Ok(()) };
    let mut reported = 0;
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            ev = sub.events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                let lost = sub.dropped.load(Ordering::Relaxed);
                if lost > reported {
                    let notice = serde_json::json!({"notice": "dropped", "count": lost - reported});
                    write_line(&mut write, &notice).await?;
                    reported = lost;
                }
                write_line(&mut write, &*ev).await?;
            }
            // The client hung up (EOF) or wrote more: stop following.
            _ = reader.get_mut().read(&mut probe) => return Ok(()),
        }
    }
}

async fn write_line<T: serde::Serialize + ?Sized>(w: &mut OwnedWriteHalf, v: &T) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out).await
}

fn error(msg: String) -> Response {
    Response { ok: false, error: Some(msg), status: None, reload: None }
}

/// Removes the socket file on drop (clean shutdown).
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    #[tokio::test]
    async fn binding_in_a_shared_directory_leaves_its_mode_alone() {
        let dir = std::env::temp_dir().join(format!("warden-bind-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let path = dir.join("w.sock");
        let listener = bind(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o1777, "the shared directory keeps its mode");
        assert_eq!(mode(&path), 0o600, "the socket is root-only");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no private directory left behind");
        // The listener answers at its final path.
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());
        // A directory made here is private.
        let fresh = dir.join("fresh/w.sock");
        drop(bind(&fresh).unwrap());
        assert_eq!(mode(&dir.join("fresh")), 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
