//! What the hand-written parser's tests checked, now through real HTTP:
//! hyper parses, `http` adds the target and method checks and answers.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use super::http::{MAX_HEAD, MAX_HEADERS, Method, Request, Response, fuzz, serve};

/// A server on its own runtime; `/healthz` answers, other paths are 404.
fn start() -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(listener, |req: Request| async move {
        match (req.method, req.path.as_str()) {
            (Method::Get | Method::Head, "/healthz") => Response::text(200, "ok\n"),
            (_, path) => Response::text(404, format!("not found: {path}\n")),
        }
    }));
    (rt, addr)
}

/// Sends `request`, ends the sending side, returns all the server sent.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    String::from_utf8(answer).unwrap()
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"))
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}")).1
}

#[test]
fn good_requests() {
    let (_rt, addr) = start();
    let a = raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.9, */*\r\n\r\n");
    assert_eq!((status(&a), body(&a)), (200, "ok\n"), "{a}");
    // The query is not part of the path; HTTP/1.0 is served.
    let a = raw(addr, b"GET /healthz?verbose=1 HTTP/1.0\r\n\r\n");
    assert_eq!((status(&a), body(&a)), (200, "ok\n"), "{a}");
    // Bare LF line ends; empty header value; obs-text in a value.
    let a = raw(addr, "GET /x HTTP/1.1\nX-Empty:\nX-Utf8: caf\u{e9}\n\n".as_bytes());
    assert_eq!((status(&a), body(&a)), (404, "not found: /x\n"), "{a}");
}

#[test]
fn head_answer_has_the_length_and_no_body() {
    let (_rt, addr) = start();
    let a = raw(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("\r\n\r\n"), "{a}");
    let lower = a.to_ascii_lowercase();
    assert!(lower.contains("content-length: 3\r\n") && lower.contains("connection: close\r\n"), "{a}");
}

#[test]
fn bad_requests() {
    let (_rt, addr) = start();
    for head in [
        "\r\n\r\n",
        "GET\r\n\r\n",
        "GET /healthz\r\n\r\n",
        "GET  /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1 extra\r\n\r\n",
        "GET healthz HTTP/1.1\r\n\r\n",
        "GET http://x/healthz HTTP/1.1\r\n\r\n",
        "GET /he\tlthz HTTP/1.1\r\n\r\n",
        "G(T /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1x\r\n\r\n",
        "GET /healthz http/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nNo colon\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBad name: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\n: no name\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\0b\r\n\r\n",
        "GET /healthz HTTP/1.1\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        // hyper answers another version 400 (the old parser said 505).
        "GET /healthz HTTP/2.0\r\n\r\n",
    ] {
        let a = raw(addr, head.as_bytes());
        assert_eq!(status(&a), 400, "{head:?}: {a:?}");
        assert!(a.to_ascii_lowercase().contains("connection: close\r\n"), "{head:?}: {a:?}");
    }
    // Nothing sent: closed without an answer.
    assert_eq!(raw(addr, b""), "");
    // Well-formed but another method: 405, yet garbage stays 400.
    let a = raw(addr, b"POST /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!((status(&a), body(&a)), (405, "method not allowed\n"), "{a}");
    assert!(a.to_ascii_lowercase().contains("allow: get, head\r\n"), "{a}");
    assert_eq!(status(&raw(addr, b"POST healthz HTTP/1.1\r\n\r\n")), 400);
}

#[test]
fn oversize() {
    let (_rt, addr) = start();
    let big = format!("GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(status(&raw(addr, big.as_bytes())), 431);
    // Too long without ever ending.
    assert_eq!(status(&raw(addr, "A".repeat(MAX_HEAD + 1).as_bytes())), 431);
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(status(&raw(addr, format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes())), 431);
    // Just within the limits.
    let many: String = (1..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(status(&raw(addr, format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes())), 200);
    let fill = MAX_HEAD - "GET /healthz HTTP/1.1\r\nX: \r\n\r\n".len();
    let full = format!("GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(fill));
    assert_eq!(full.len(), MAX_HEAD);
    assert_eq!(status(&raw(addr, full.as_bytes())), 200);
}

#[test]
fn pipelined_and_trailing_garbage() {
    let (_rt, addr) = start();
    // Only the first request is answered; what follows is never parsed.
    let a = raw(addr, b"GET /healthz HTTP/1.1\r\n\r\nPOST /x HTTP/1.1\r\n\r\n\0\xffgarbage");
    assert_eq!((status(&a), body(&a)), (200, "ok\n"), "{a}");
    let a = raw(addr, b"GET /healthz HTTP/1.1\r\nX: y\r\ngarbage\0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(status(&a), 400, "{a}");
}

#[test]
fn fuzz_smoke() {
    let seeds: [&[u8]; 6] = [
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"HEAD /x?y HTTP/1.0\r\n\r\n",
        b"\r\n\n",
        b"\xff\xfe\n\n",
        b"GET /?\r\n\r\n",
        b"",
    ];
    for s in seeds {
        for cut in 0..=s.len() {
            fuzz(&s[..cut]);
        }
    }
}
