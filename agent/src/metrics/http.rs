//! A minimal HTTP/1.1 server for scrapes and probes: GET and HEAD only, one
//! request per connection (`Connection: close`), bounded in head size, time
//! and concurrent connections. Hand-written so the whole parser is small
//! enough to read and fuzz (`fuzz`).
use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
    time::timeout,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("HTTP version not supported")]
    VersionNotSupported,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::MethodNotAllowed => 405,
            Self::HeadTooLarge => 431,
            Self::VersionNotSupported => 505,
        }
    }
}

/// End of the head (index just past its blank line), if `buf` holds one.
/// Lines end in CRLF or, leniently, a bare LF.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses a request head; bytes after its blank line (a body, pipelined
/// requests) are ignored, since the connection is closed after one answer.
/// Every malformed head is an error: nothing is guessed.
pub fn parse_request_head(bytes: &[u8]) -> Result<Request, HttpError> {
    let end = match head_end(bytes) {
        Some(end) if end <= MAX_HEAD => end,
        Some(_) => return Err(HttpError::HeadTooLarge),
        None if bytes.len() > MAX_HEAD => return Err(HttpError::HeadTooLarge),
        None => return Err(HttpError::BadRequest("incomplete head")),
    };
    let mut lines = bytes[..end].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("request line"));
    };
    if !is_token(method) {
        return Err(HttpError::BadRequest("method"));
    }
    if target.first() != Some(&b'/') || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(HttpError::BadRequest("target"));
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(HttpError::VersionNotSupported);
        }
        _ => return Err(HttpError::BadRequest("version")),
    }
    let mut headers = 0;
    for line in lines {
        if line.is_empty() {
            break; // the blank line ending the head
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        // No obsolete line folding; no space before the colon.
        let colon = line.iter().position(|&b| b == b':').ok_or(HttpError::BadRequest("header"))?;
        let value_ok =
            line[colon + 1..].iter().all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80);
        if !is_token(&line[..colon]) || !value_ok {
            return Err(HttpError::BadRequest("header"));
        }
    }
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => return Err(HttpError::MethodNotAllowed),
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    // Checked above: printable ASCII.
    let path = String::from_utf8_lossy(path).into_owned();
    Ok(Request { method, path })
}

/// Fuzzing entry point: the parser must never panic, and what it accepts
/// must be a plain origin-form path.
pub fn fuzz(bytes: &[u8]) {
    if let Some(end) = head_end(bytes) {
        assert!(end <= bytes.len());
    }
    match parse_request_head(bytes) {
        Ok(r) => {
            assert!(r.path.starts_with('/'));
            assert!(!r.path.contains('?'));
            assert!(r.path.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        Err(e) => assert!((400..600).contains(&e.status())),
    }
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

    /// The bytes sent: a HEAD answer has the GET answer's headers, no body.
    pub fn encode(&self, method: Option<Method>) -> Vec<u8> {
        let allow = if self.status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if method != Some(Method::Head) {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";

/// Accepts connections until the future is dropped (which also ends the
/// connections in flight), answering each request with `handler`.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
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
                tokio::time::sleep(Duration::from_millis(100)).await;
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

async fn connection<F, Fut>(mut stream: TcpStream, handler: F)
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let mut buf = Vec::with_capacity(1024);
    let (method, response) = match timeout(READ_TIMEOUT, read_request(&mut stream, &mut buf)).await {
        // Nothing sent (a port probe, an idle client): just close.
        Err(_) | Ok(None) if buf.is_empty() => return,
        Err(_) => (None, Response::text(408, "request timeout\n")),
        Ok(None) => return, // read error or early close mid-head
        Ok(Some(Err(e))) => (None, Response::text(e.status(), format!("{e}\n"))),
        Ok(Some(Ok(req))) => (Some(req.method), handler(req).await),
    };
    let sent = timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response.encode(method)).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = timeout(LINGER, drain(&mut stream)).await;
    }
}

/// Reads until a whole head (or too many bytes) is in `buf`, then parses it.
/// `None`: the connection failed or closed before a whole head.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Result<Request, HttpError>> {
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return (!buf.is_empty()).then_some(Err(HttpError::BadRequest("incomplete head")));
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if head_end(&buf[scan_from..]).is_some() || buf.len() > MAX_HEAD {
            return Some(parse_request_head(buf));
        }
    }
}

async fn drain(stream: &mut TcpStream) {
    let mut chunk = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, HttpError> {
        parse_request_head(s.as_bytes())
    }

    #[test]
    fn good_requests() {
        let r = parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.9, */*\r\n\r\n").unwrap();
        assert_eq!(r, Request { method: Method::Get, path: "/metrics".into() });
        let r = parse("HEAD /readyz?verbose=1 HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r, Request { method: Method::Head, path: "/readyz".into() });
        // Bare LF line ends; empty header value; obs-text in a value.
        assert!(parse("GET / HTTP/1.1\nX-Empty:\nX-Utf8: caf\u{e9}\n\n").is_ok());
    }

    #[test]
    fn bad_requests() {
        for head in [
            "\r\n\r\n",
            "GET\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET http://x/metrics HTTP/1.1\r\n\r\n",
            "GET /me\ttrics HTTP/1.1\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1x\r\n\r\n",
            "GET /metrics http/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nBad name: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n: no name\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: a\0b\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n",
            "",
        ] {
            assert!(matches!(parse(head), Err(HttpError::BadRequest(_))), "{head:?}: {:?}", parse(head));
        }
        assert_eq!(parse("GET / HTTP/2.0\r\n\r\n"), Err(HttpError::VersionNotSupported));
        // Well-formed but another method: 405, yet garbage stays 400.
        assert_eq!(parse("POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"), Err(HttpError::MethodNotAllowed));
        assert!(matches!(parse("POST metrics HTTP/1.1\r\n\r\n"), Err(HttpError::BadRequest(_))));
    }

    #[test]
    fn oversize() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
        // Too long without ever ending.
        assert_eq!(parse(&"A".repeat(MAX_HEAD + 1)), Err(HttpError::HeadTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(HttpError::HeadTooLarge));
        // Just within the limit.
        let fill = MAX_HEAD - "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        assert!(parse(&format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(fill))).is_ok());
    }

    #[test]
    fn pipelined_and_trailing_garbage() {
        // Only the first head counts; what follows is never parsed.
        let r = parse("GET /healthz HTTP/1.1\r\n\r\nPOST /x HTTP/1.1\r\n\r\n\0\u{ff}garbage").unwrap();
        assert_eq!(r.path, "/healthz");
        assert!(parse("GET /healthz HTTP/1.1\r\nX: y\r\ngarbage\0\r\n\r\nGET / HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn head_end_finds_first_blank_line() {
        assert_eq!(head_end(b"a\r\n\r\nb\r\n\r\n"), Some(5));
        assert_eq!(head_end(b"a\n\nb"), Some(3));
        assert_eq!(head_end(b"a\r\nb\r\n"), None);
        assert_eq!(head_end(b"\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn encode_head_has_no_body() {
        let r = Response::text(200, "ok\n");
        let get = String::from_utf8(r.encode(Some(Method::Get))).unwrap();
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n") && get.ends_with("\r\n\r\nok\n"), "{get}");
        assert!(get.contains("Content-Length: 3\r\n") && get.contains("Connection: close\r\n"));
        let head = String::from_utf8(r.encode(Some(Method::Head))).unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 3\r\n"));
        assert!(String::from_utf8(Response::text(405, "").encode(None)).unwrap().contains("Allow: GET, HEAD\r\n"));
    }

    #[test]
    fn fuzz_smoke() {
        let seeds: [&[u8]; 5] = [b"GET / HTTP/1.1\r\n\r\n", b"\r\n\n", b"\xff\xfe\n\n", b"GET /?\r\n\r\n", b""];
        for s in seeds {
            for cut in 0..=s.len() {
                fuzz(&s[..cut]);
            }
        }
    }
}
