//! The HTTP/1.1 modes: fixed-rate requests on one keep-alive connection (`http`, for the
//! added latency of an L7 proxy), and a new connection per request at full speed
//! (`newconn`, for connections and, over TLS, handshakes per second). Each request is
//! `GET /` with `Host: ADDR`; an answer counts when its status is 200 and its
//! `Content-Length` body has arrived (a chunked or length-less answer is an error: the echo
//! server and the proxies under test send a length). With `--tls-ca` both speak HTTPS.

use crate::tls::TlsTarget;
use crate::{Options, dial, paced, summary};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the paced requests for `options.seconds` at `options.rate` on one connection
/// (over TLS with `--tls-ca`), after a warm-up.
pub(crate) fn requests(options: &Options) -> io::Result<String> {
    match &options.tls {
        None => paced_requests(Conn::new(dial(options.addr)?), options),
        Some(tls) => paced_requests(Conn::new(tls.connect(options.addr)?), options),
    }
}

fn paced_requests<S: Read + Write>(mut conn: Conn<S>, options: &Options) -> io::Result<String> {
    let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", options.addr);
    for _ in 0..100 {
        conn.exchange(request.as_bytes())?;
    }
    let duration = Duration::from_secs_f64(options.seconds);
    let (samples, errors) = paced(
        options.rate,
        |_, start| start.elapsed() >= duration,
        || conn.exchange(request.as_bytes()),
    );
    if errors > 0 {
        return Err(io::Error::other(format!("{errors} requests failed")));
    }
    Ok(summary(samples, errors))
}

/// `--connections` threads, each opening a new connection (a full TLS handshake with
/// `--tls-ca`) for every request (`Connection: close`) for `options.seconds`, as fast as
/// the server answers. Prints the completed requests per second and the percentiles of
/// connect + handshake + request + answer; over TLS also what the handshake negotiated.
pub(crate) fn new_connections(options: &Options) -> io::Result<String> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        options.addr
    );
    // Warm up (and fail early on a server that does not answer).
    for _ in 0..5 {
        one_request(options.addr, options.tls.as_ref(), request.as_bytes())?;
    }
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds);
    let threads: Vec<_> = (0..options.connections)
        .map(|_| {
            let (results, request, tls) = (results.clone(), request.clone(), options.tls.clone());
            let addr = options.addr;
            std::thread::spawn(move || {
                let (mut samples, mut errors) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let began = Instant::now();
                    match one_request(addr, tls.as_ref(), request.as_bytes()) {
                        Ok(()) => samples.push(began.elapsed().as_secs_f64() * 1e6),
                        Err(error) => {
                            errors += 1;
                            if errors <= 3 {
                                eprintln!("weft-bench: {error}");
                            }
                        }
                    }
                }
                let mut all = results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                all.0.extend(samples);
                all.1 += errors;
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| io::Error::other("a load thread panicked"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (samples, errors) = std::mem::take(
        &mut *results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let per_second = samples.len() as f64 / elapsed;
    let summary = summary(samples, errors);
    let tls = match &options.tls {
        Some(tls) => format!("\"tls\":\"{}\",", tls.negotiated(options.addr)?),
        None => String::new(),
    };
    Ok(format!(
        "{{\"per_second\":{per_second:.1},{tls}{}",
        summary.trim_start_matches('{')
    ))
}

/// One new connection (TLS when `tls` is given), one request, its answer, then the
/// server's close: reading to the end lets the server close first, so the client's ports
/// do not pile up in TIME_WAIT.
fn one_request(addr: SocketAddr, tls: Option<&TlsTarget>, request: &[u8]) -> io::Result<()> {
    match tls {
        None => Conn::new(dial(addr)?).exchange_and_close(request),
        Some(tls) => Conn::new(tls.connect(addr)?).exchange_and_close(request),
    }
}

/// One keep-alive connection and the bytes read past the last answer.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> Conn<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends a `Connection: close` request, consumes its answer and waits for the server
    /// to close (a TLS server may end with close_notify or just the TCP close).
    fn exchange_and_close(mut self, request: &[u8]) -> io::Result<()> {
        self.exchange(request)?;
        let mut rest = [0u8; 512];
        loop {
            match self.stream.read(&mut rest) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one request and consumes its whole answer.
    fn exchange(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)?;
        let head_len = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let body_len = answer_length(&self.buf[..head_len])?;
        while self.buf.len() < head_len + body_len {
            self.fill()?;
        }
        self.buf.drain(..head_len + body_len);
        Ok(())
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection mid-answer",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body length of an answer head, after checking its status is 200.
fn answer_length(head: &[u8]) -> io::Result<usize> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(io::Error::other(format!("answer status line {status:?}")));
    }
    lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| io::Error::other("answer without Content-Length"))?
        .1
        .trim()
        .parse()
        .map_err(|e| io::Error::other(format!("bad Content-Length: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{field, options};
    use crate::tls::tests::{ca_and_server, tls_server};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    /// A keep-alive HTTP/1.1 server answering every request with `answer`.
    fn http_server(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                std::thread::spawn(move || serve(stream, answer));
            }
        });
        addr
    }

    /// Answers each request head on `stream` with `answer`; closes after answering a
    /// `Connection: close` request.
    fn serve<S: Read + Write>(mut stream: S, answer: &str) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                buf.drain(..end + 4);
                if stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                if head.contains("connection: close") {
                    return;
                }
            }
        }
    }

    /// A TLS server for `name` answering `OK`, and the test options that reach it over TLS
    /// (its CA trusted, `name` expected); the counter says how many handshakes it resumed.
    fn https_server(name: &str) -> (Options, Arc<std::sync::atomic::AtomicUsize>) {
        let (ca, config) = ca_and_server(name);
        let (addr, resumed) = tls_server(config, |stream| serve(stream, OK));
        let ca_file = std::env::temp_dir().join(format!(
            "weft-bench-http-ca-{}-{}.pem",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&ca_file, ca).expect("write CA");
        let mut options = options(addr);
        options.tls = Some(TlsTarget::new(&ca_file, name).expect("target"));
        std::fs::remove_file(&ca_file).ok();
        (options, resumed)
    }

    #[test]
    fn paced_requests_are_timed_on_one_connection() {
        let addr = http_server(OK);
        let json = requests(&options(addr)).expect("requests");
        let samples = field(&json, "samples");
        assert!((300.0..=401.0).contains(&samples), "{json}");
        assert!(field(&json, "p99_us") >= field(&json, "p50_us"));
    }

    #[test]
    fn a_failing_or_unframed_answer_is_an_error() {
        let refused = http_server("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
        let err = requests(&options(refused)).expect_err("503 must fail");
        assert!(err.to_string().contains("503"), "{err}");
        let chunked = http_server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let err = requests(&options(chunked)).expect_err("no length must fail");
        assert!(err.to_string().contains("Content-Length"), "{err}");
    }

    #[test]
    fn paced_requests_over_tls_keep_one_connection() {
        let (options, _) = https_server("gw.bench.test");
        let json = requests(&options).expect("requests over TLS");
        assert!((300.0..=401.0).contains(&field(&json, "samples")), "{json}");
    }

    #[test]
    fn each_new_connection_sends_one_request_and_waits_for_the_close() {
        let addr = http_server(OK);
        let json = new_connections(&options(addr)).expect("newconn");
        assert!(field(&json, "samples") > 10.0, "{json}");
        assert!(field(&json, "errors").abs() < f64::EPSILON, "{json}");
        assert!(field(&json, "per_second") > 0.0, "{json}");
    }

    #[test]
    fn new_tls_connections_are_full_handshakes() {
        let (options, resumed) = https_server("gw.bench.test");
        let json = new_connections(&options).expect("newconn over TLS");
        assert!(field(&json, "samples") > 10.0, "{json}");
        assert!(field(&json, "errors").abs() < f64::EPSILON, "{json}");
        assert_eq!(resumed.load(Ordering::Relaxed), 0, "no session was resumed");
        assert!(json.contains("\"tls\":\"TLSv1_3 "), "{json}");
    }

    #[test]
    fn a_server_that_never_closes_fails_new_connections() {
        // Keeps the connection open after a `Connection: close` answer: the client's read
        // times out instead of counting a request it did not see finish.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.write_all(OK.as_bytes());
                held.push(stream);
            }
        });
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert!(one_request(addr, None, request).is_err());
    }
}
