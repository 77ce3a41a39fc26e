//! `weft-bench http ADDR`: fixed-rate HTTP/1.1 requests on one keep-alive connection, for
//! the added latency of an L7 proxy. Each request is `GET /` with `Host: ADDR`; an answer
//! counts when its status is 200 and its `Content-Length` body has arrived (a chunked or
//! length-less answer is an error: the echo server and the proxies under test send a
//! length). The connection is reused, so the figure is the request's way through the
//! proxy, not connection setup.

use crate::{Options, dial, paced, summary};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Runs the paced requests for `options.seconds` at `options.rate`, after a warm-up.
pub(crate) fn requests(options: &Options) -> io::Result<String> {
    let mut conn = Conn::open(options.addr)?;
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

/// One keep-alive connection and the bytes read past the last answer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            stream: dial(addr)?,
            buf: Vec::with_capacity(4096),
        })
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
    use std::io::BufRead as _;
    use std::net::TcpListener;

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

    fn serve(stream: TcpStream, answer: &str) {
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = io::BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line == "\r\n" && writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
            line.clear();
        }
    }

    #[test]
    fn paced_requests_are_timed_on_one_connection() {
        let addr = http_server("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
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
}
