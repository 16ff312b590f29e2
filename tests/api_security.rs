//! Process-level tests of the API's defences: the bearer token on every endpoint but the probes,
//! the header-read timeout, the body limit and the connection limit.

// A failure in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Instance, wait_for};
use http::{Method, StatusCode};

const TOKEN: &str = "api-test-token";

fn config(api: &str) -> String {
    format!(
        r#"
data_dir: "{{dir}}/data"
api: {{listen: "127.0.0.1:{{port}}"{api}}}
sources:
  gen: {{type: generator, rate: 10}}
sinks:
  out: {{type: blackhole, inputs: [gen]}}
"#
    )
}

#[test]
fn with_a_token_every_endpoint_but_the_probes_needs_it() {
    let instance = Instance::start(&config(&format!(", token: {TOKEN}")));
    for path in ["/health", "/ready", "/metrics"] {
        let (status, body) = instance.get(path);
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    }
    let guarded = [
        (Method::GET, "/config", StatusCode::OK),
        (Method::GET, "/dlq", StatusCode::OK),
        (Method::POST, "/config/reload", StatusCode::OK),
        (Method::POST, "/dlq/reprocess", StatusCode::ACCEPTED),
        // A tap streams events: as guarded as the rest (limit=1 ends the stream).
        (Method::GET, "/tap/gen?limit=1", StatusCode::OK),
        // Paths and methods nobody serves are guarded too: nothing is open by omission.
        (Method::GET, "/positions", StatusCode::NOT_FOUND),
        (Method::DELETE, "/config", StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, with_token) in guarded {
        let (status, body) = common::http(method.clone(), &instance.url(path), None).unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        let (status, _) =
            common::http(method.clone(), &instance.url(path), Some("wrong-token")).unwrap();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a wrong token"
        );
        let (status, body) = instance.request_with_token(method.clone(), path, TOKEN);
        assert_eq!(status, with_token, "{method} {path}: {body}");
    }
}

/// Reads an HTTP/1.1 response head from `stream`; returns the status code.
fn read_status(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("response ended early ({other:?}): {head:?}"),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

/// Whether the server has closed `stream`, waiting at most `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // Bytes of an answer (a 408 or the like) before the close: keep reading.
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_body_larger_than_the_limit_gets_413_unread() {
    let instance = Instance::start(&config(", max_body_bytes: 1024"));
    let mut stream = TcpStream::connect(("127.0.0.1", instance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The body is announced and never sent: the answer must not wait for it.
    stream
        .write_all(b"POST /config/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut stream), 413);
    assert!(closed_within(&mut stream, Duration::from_secs(10)));
    // A small body is fine.
    let mut stream = TcpStream::connect(("127.0.0.1", instance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /dlq/reprocess HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    assert_eq!(read_status(&mut stream), 202);
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let instance = Instance::start(&config(", header_read_timeout: 1s"));
    let mut stream = TcpStream::connect(("127.0.0.1", instance.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut stream), 200);
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)),
        "the idle connection stayed open"
    );
}

/// Raises this process's descriptor limit (the spawned instance inherits it) to at least `want`.
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = limit.rlim_max.min(want.max(limit.rlim_cur));
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= want,
        "this test needs {want} descriptors; the hard limit is {}",
        limit.rlim_max
    );
}

fn metric(instance: &Instance, series: &str) -> f64 {
    let (_, metrics) = instance.get("/metrics");
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn half_sent_requests_hold_at_most_max_connections_and_health_still_answers() {
    const FLOOD: usize = 3_000;
    const LIMIT: usize = 50;
    raise_fd_limit(FLOOD as u64 + 1_000);
    let instance = Instance::start(&config(&format!(
        ", max_connections: {LIMIT}, header_read_timeout: 2s"
    )));
    let baseline = instance.open_fds();

    let mut peak = 0;
    let mut clients = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let mut stream = TcpStream::connect(("127.0.0.1", instance.port)).unwrap();
        // Headers begun, never finished. The server may already have closed it: fine.
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n");
        clients.push(stream);
        if i % 250 == 0 {
            peak = peak.max(instance.open_fds());
        }
    }
    peak = peak.max(instance.open_fds());
    // A small margin: a connection told to make room closes when its task next runs.
    assert!(
        peak <= baseline + LIMIT + 10,
        "{peak} descriptors open with {FLOOD} half-sent requests (baseline {baseline}, limit {LIMIT})"
    );

    // A probe still gets through: it takes the place of the oldest half-sent request.
    let (status, body) = instance.get("/health");
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every half-sent request is closed: at once to make room, or by the header timeout.
    let deadline = Duration::from_secs(2 + 10);
    let started = Instant::now();
    let mut open = 0;
    for stream in &mut clients {
        let left = deadline
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        if !closed_within(stream, left) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "{open} half-sent requests still open after the header timeout"
    );
    wait_for(
        "the descriptors back to the baseline",
        Duration::from_secs(10),
        || (instance.open_fds() <= baseline + 2).then_some(()),
    );
    let series =
        |reason: &str| format!("log_capturer_api_connections_closed_total{{reason=\"{reason}\"}}");
    assert!(metric(&instance, &series("evicted")) >= (FLOOD - LIMIT) as f64 - 1.0);
    assert!(metric(&instance, &series("header_timeout")) >= 1.0);
}
