//! The HTTP/1.1 server for scrapes and probes, on hyper: GET and HEAD only,
//! one request per connection (`Connection: close`), bounded in head size,
//! time and concurrent connections. hyper parses and answers malformed
//! heads (400, 431); this file adds what hyper leaves to its caller: a
//! deadline per phase, 408 to a slow head, 400 to a head cut short, the
//! connection cap, and a linger so closing does not reset the answer.
use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpListener,
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, sleep, timeout},
};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send its whole head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// After answering, unread input is drained this long (and at most
/// `LINGER_BYTES`) so closing does not reset the connection before the
/// client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Path of the origin-form target, without the query.
    pub path: String,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type, body: body.into() }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// hyper sends a HEAD answer with the GET answer's length and no body.
    fn into_hyper(self) -> hyper::Response<Full<Bytes>> {
        let mut r = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() = hyper::StatusCode::from_u16(self.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        // Also to HTTP/1.0 clients, where hyper would not say it.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if self.status == 405 {
            h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// Our checks on what hyper parsed: an origin-form target (as the old
/// hand-written parser required), then the method.
fn request(req: &hyper::Request<Incoming>) -> Result<Request, Response> {
    let uri = req.uri();
    // hyper's URI parser lets bytes over 0x7e through in the path; no path
    // this endpoint serves has one, and none should reach a log or handler.
    let printable = uri.path().bytes().all(|b| (0x21..=0x7e).contains(&b));
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') || !printable {
        return Err(Response::text(400, "bad request: target\n"));
    }
    let method = match *req.method() {
        hyper::Method::GET => Method::Get,
        hyper::Method::HEAD => Method::Head,
        _ => return Err(Response::text(405, "method not allowed\n")),
    };
    Ok(Request { method, path: uri.path().to_string() })
}

/// Plain answers hyper cannot give: it is done with the connection.
fn plain(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";

/// Accepts connections until the future is dropped (which also ends the
/// connections in flight), answering each request with `handler`.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, or a connection reset before accept:
                // back off rather than spin.
                tracing::warn!("metrics: accept failed: {e}");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Never blocks: a fresh socket's send buffer is empty.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let handler = handler.clone();
        tasks.spawn(async move {
            connection(stream, handler).await;
            drop(permit);
        });
    }
}

/// Where a connection is, for its deadline: the head has `READ_TIMEOUT`,
/// the handler none (as before hyper), the answer `WRITE_TIMEOUT`.
const HEAD: u8 = 0;
const HANDLING: u8 = 1;
const ANSWERING: u8 = 2;

async fn connection<S, F, Fut>(stream: S, handler: Arc<F>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let phase = Arc::new(AtomicU8::new(HEAD));
    let service = {
        let phase = phase.clone();
        service_fn(move |req| {
            let (handler, phase) = (handler.clone(), phase.clone());
            Box::pin(async move {
                phase.store(HANDLING, Ordering::Relaxed);
                let response = match request(&req) {
                    Ok(r) => handler(r).await,
                    Err(refused) => refused,
                };
                phase.store(ANSWERING, Ordering::Relaxed);
                Ok::<_, Infallible>(response.into_hyper())
            })
        })
    };
    let mut conn = http1::Builder::new()
        .keep_alive(false)
        // The client may shut down its side once it has sent the request.
        .half_close(true)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .header_read_timeout(None) // ours below also answers 408
        .auto_date_header(false)
        .serve_connection(TokioIo::new(Counted { inner: stream, read: 0, written: 0 }), service);
    let mut deadline = pin!(sleep(READ_TIMEOUT));
    let mut armed = HEAD;
    let finished = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
            return Poll::Ready(Some(r));
        }
        match phase.load(Ordering::Relaxed) {
            HANDLING => return Poll::Pending,
            ANSWERING if armed != ANSWERING => {
                armed = ANSWERING;
                deadline.as_mut().reset(Instant::now() + WRITE_TIMEOUT);
            }
            _ => {}
        }
        deadline.as_mut().poll(cx).map(|()| None)
    })
    .await;
    let mut io = conn.into_parts().io.into_inner();
    let fallback = match finished {
        // Nothing sent (a port probe, an idle client): just close.
        _ if io.read == 0 => return,
        None if phase.load(Ordering::Relaxed) == ANSWERING => return, // the answer stalled
        None => Some(plain("408 Request Timeout", "request timeout\n")),
        // hyper answered, or read only blank lines or a cut-off head.
        Some(_) => (io.written == 0).then(|| plain("400 Bad Request", "bad request: incomplete head\n")),
    };
    let sent = timeout(WRITE_TIMEOUT, async {
        if let Some(answer) = fallback {
            io.write_all(answer.as_bytes()).await?;
        }
        io.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = timeout(LINGER, drain(&mut io)).await;
    }
}

async fn drain(stream: &mut (impl AsyncRead + Unpin)) {
    let mut chunk = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// The connection's stream, counting what hyper read and wrote: whether
/// the client sent anything and whether hyper answered it.
struct Counted<S> {
    inner: S,
    read: usize,
    written: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += buf.filled().len() - before;
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.written += n;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Fuzzing entry point: raw client bytes through the real connection
/// handling (hyper and the checks above) over an in-memory pipe. It must
/// never panic, must answer or close promptly once the client has sent
/// everything, and whatever it answers must be one HTTP response.
pub fn fuzz(bytes: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("fuzz runtime"));
    let answer = rt.block_on(async {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let handler = Arc::new(|req: Request| async move {
            assert!(req.path.starts_with('/') && !req.path.contains('?'), "{:?}", req.path);
            assert!(req.path.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", req.path);
            match req.path.as_str() {
                "/metrics" => Response::new(200, "text/plain; version=0.0.4", "m 1\n"),
                _ => Response::text(404, "not found\n"),
            }
        });
        let served = tokio::spawn(connection(server, handler));
        let (mut rx, mut tx) = tokio::io::split(client);
        let send = async {
            // The server may close before reading everything.
            let _ = tx.write_all(bytes).await;
            let _ = tx.shutdown().await;
        };
        let mut answer = vec![];
        let exchange = async { tokio::join!(send, rx.read_to_end(&mut answer)) };
        let (_, read) = timeout(Duration::from_secs(3), exchange).await.expect("no answer or close within 3 s");
        read.expect("reading the answer");
        served.await.expect("connection task panicked");
        answer
    });
    if bytes.is_empty() {
        assert!(answer.is_empty());
        return;
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer head: {text:?}"));
    let status = head.strip_prefix("HTTP/1.1 ").or_else(|| head.strip_prefix("HTTP/1.0 "));
    let status: u16 = status.and_then(|s| s.get(..3)?.parse().ok()).unwrap_or_else(|| panic!("{head:?}"));
    assert!([200, 400, 404, 405, 408, 431].contains(&status), "{head:?}");
    assert_eq!(text.matches("HTTP/1.").count(), 1, "{text:?}");
}
