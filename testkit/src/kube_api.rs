//! Test fixture: serves recorded Kubernetes API responses over plain HTTP on
//! loopback, the way kube-apiserver does: list bodies for `GET /api/v1/pods`,
//! and for `?watch=true` a chunked stream of watch event lines, closed after
//! an `ERROR` event (as the apiserver closes a watch after a 410 Expired).
//! The test decides what comes next: `queue_list` and `push_frame`. A list
//! requested with nothing queued gets a 503 Status (API unavailable). Single
//! objects (`set_object`) are served as they are, or 404.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

#[derive(Default)]
struct Inner {
    /// Single objects by path (`GET /apis/apps/v1/namespaces/NS/daemonsets/NAME`).
    objects: Mutex<std::collections::HashMap<String, String>>,
    lists: Mutex<VecDeque<String>>,
    frames: Mutex<VecDeque<String>>,
    requests: Mutex<Vec<String>>,
    frame_ready: Notify,
}

#[derive(Clone, Default)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

/// Stops the server when dropped.
pub struct ApiHandle {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const UNAVAILABLE: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server is currently unable to handle the request","reason":"ServiceUnavailable","code":503}"#;
const NOT_FOUND: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#;

impl FakeApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The body of the next pod list response.
    pub fn queue_list(&self, body: impl Into<String>) {
        lock(&self.inner.lists).push_back(body.into());
    }

    /// Serves `body` at `path` from now on (`None`: 404 Not Found again).
    pub fn set_object(&self, path: &str, body: Option<String>) {
        let mut objects = lock(&self.inner.objects);
        match body {
            Some(b) => objects.insert(path.to_string(), b),
            None => objects.remove(path),
        };
    }

    /// One watch event line for the open (or next) watch stream.
    pub fn push_frame(&self, frame: impl Into<String>) {
        lock(&self.inner.frames).push_back(frame.into());
        self.inner.frame_ready.notify_waiters();
    }

    /// Request targets seen so far (`/api/v1/pods?...`).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.inner.requests).clone()
    }

    pub async fn serve(&self) -> std::io::Result<ApiHandle> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, inner.clone()));
            }
        });
        Ok(ApiHandle { url, task })
    }
}

/// Reads one request head; returns its target (path and query).
async fn read_target(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then(|| parts.next().map(str::to_string))?
}

async fn respond(conn: &mut TcpStream, status: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
}

async fn handle(mut conn: TcpStream, inner: Arc<Inner>) {
    let Some(target) = read_target(&mut conn).await else { return };
    lock(&inner.requests).push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/api/v1/pods" {
        let object = lock(&inner.objects).get(path).cloned();
        return match object {
            Some(b) => respond(&mut conn, "200 OK", &b).await,
            None => respond(&mut conn, "404 Not Found", NOT_FOUND).await,
        };
    }
    if !query.split('&').any(|p| p == "watch=true" || p == "watch=1") {
        let body = lock(&inner.lists).pop_front();
        return match body {
            Some(b) => respond(&mut conn, "200 OK", &b).await,
            None => respond(&mut conn, "503 Service Unavailable", UNAVAILABLE).await,
        };
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let notified = inner.frame_ready.notified();
        let frame = lock(&inner.frames).pop_front();
        let Some(frame) = frame else {
            // Wake on a new frame, or now and then to notice a closed client.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            continue;
        };
        let line = format!("{frame}\n");
        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
        if conn.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
        if frame.contains(r#""type":"ERROR""#) {
            let _ = conn.write_all(b"0\r\n\r\n").await;
            return;
        }
    }
}
