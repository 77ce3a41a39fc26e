//! `weft-bench`: the load generators `bench/run` needs that Debian does not package in a
//! form that fits (std only, blocking sockets, one thread):
//!
//! - `pingpong ADDR`: one open connection; sends a small message at a fixed rate and waits
//!   for the echo; prints round-trip percentiles. The pacing sleeps (no busy-wait), so the
//!   client does not steal a core from the proxies on a small machine.
//! - `connect ADDR`: at a fixed rate, opens a new connection, sends one small message,
//!   waits for the echo and closes; prints percentiles of the whole exchange.
//! - `hold ADDR`: opens N connections, proves each end to end with a 1-byte echo, prints
//!   `ready N`, and keeps them open and idle until stdin reaches end of file.
//! - `http ADDR`: one keep-alive HTTP/1.1 connection; sends `GET /` at a fixed rate, reads
//!   each answer (status 200, `Content-Length` body) and prints latency percentiles, the
//!   L7 counterpart of `pingpong` (`bench/l7` uses it at 2,000 requests per second).
//! - `newconn ADDR`: `--connections` threads, each opening a new connection for every
//!   `GET /` (`Connection: close`) as fast as the server answers; prints requests per
//!   second and latency percentiles.
//!
//! With `--tls-ca FILE --server-name NAME`, `http` and `newconn` speak HTTPS (the server's
//! certificate verified, no session resumption: every `newconn` connection is a full
//! handshake, so its rate is TLS handshakes per second).
//!
//! The first three modes talk to a TCP echo server (`weft x echo` echoes any non-HTTP
//! bytes), `http` and `newconn` to any HTTP/1.1 server or proxy. Results are one JSON object on stdout;
//! progress and errors go to stderr. It measures; it does not set up namespaces or proxies
//! (that is `bench/run` and `bench/l7`).

mod http;
mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  weft-bench pingpong ADDR [--rate PER_SEC] [--seconds S] [--size BYTES]
  weft-bench connect  ADDR [--rate PER_SEC] [--count N] [--size BYTES]
  weft-bench hold     ADDR [--count N]
  weft-bench http     ADDR [--rate PER_SEC] [--seconds S] [TLS]
  weft-bench newconn  ADDR [--connections N] [--seconds S] [TLS]
TLS: --tls-ca CA_PEM_FILE --server-name NAME (HTTPS, certificate verified for NAME)";

/// Command-line options shared by the modes (each mode reads the ones it needs).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) rate: u32,
    pub(crate) seconds: f64,
    pub(crate) count: usize,
    pub(crate) size: usize,
    /// Concurrent connections (`newconn`: one thread each).
    pub(crate) connections: usize,
    /// HTTPS instead of HTTP (`http`, `newconn`).
    pub(crate) tls: Option<tls::TlsTarget>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match parse_options(rest) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("weft-bench: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match mode.as_str() {
        "pingpong" => pingpong(&options),
        "connect" => connect_request(&options),
        "hold" => hold(&options),
        "http" => http::requests(&options),
        "newconn" => http::new_connections(&options),
        other => {
            eprintln!("weft-bench: unknown mode {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("weft-bench {mode} {}: {error}", options.addr);
            ExitCode::FAILURE
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let (addr, flags) = args.split_first().ok_or("missing ADDR (ip:port)")?;
    let mut options = Options {
        addr: addr
            .parse()
            .map_err(|e| format!("ADDR {addr:?} is not ip:port: {e}"))?,
        rate: 1000,
        seconds: 5.0,
        count: 1000,
        size: 64,
        connections: 64,
        tls: None,
    };
    let (mut tls_ca, mut server_name) = (None, None);
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let value = flags
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--rate" => options.rate = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => options.seconds = value.parse().map_err(|e| bad(&e))?,
            "--count" => options.count = value.parse().map_err(|e| bad(&e))?,
            "--size" => options.size = value.parse().map_err(|e| bad(&e))?,
            "--connections" => options.connections = value.parse().map_err(|e| bad(&e))?,
            "--tls-ca" => tls_ca = Some(value),
            "--server-name" => server_name = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if options.rate == 0
        || options.size == 0
        || options.count == 0
        || options.connections == 0
        || options.seconds <= 0.0
    {
        return Err("--rate, --size, --count, --connections and --seconds must be positive".into());
    }
    options.tls = match (tls_ca, server_name) {
        (Some(ca), Some(name)) => Some(tls::TlsTarget::new(Path::new(ca), name)?),
        (None, None) => None,
        _ => return Err("--tls-ca and --server-name go together".into()),
    };
    Ok(options)
}

/// Sends `message` and reads the same number of bytes back.
fn round_trip(stream: &mut TcpStream, message: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.write_all(message)?;
    stream.read_exact(reply)
}

pub(crate) fn dial(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Calls `step` at `rate` per second until `until` says stop, collecting the duration of
/// each call in microseconds. Failed steps are counted, not timed.
pub(crate) fn paced(
    rate: u32,
    mut until: impl FnMut(usize, Instant) -> bool,
    mut step: impl FnMut() -> io::Result<()>,
) -> (Vec<f64>, usize) {
    let interval = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let mut next = start;
    let mut samples = Vec::new();
    let mut errors = 0;
    while !until(samples.len() + errors, start) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += interval;
        let began = Instant::now();
        match step() {
            Ok(()) => samples.push(began.elapsed().as_secs_f64() * 1e6),
            Err(error) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("weft-bench: {error}");
                }
            }
        }
    }
    (samples, errors)
}

fn pingpong(options: &Options) -> io::Result<String> {
    let mut stream = dial(options.addr)?;
    let message = vec![b'x'; options.size];
    let mut reply = vec![0u8; options.size];
    // Warm up (first-use allocations, caches) before timing.
    for _ in 0..100 {
        round_trip(&mut stream, &message, &mut reply)?;
    }
    let duration = Duration::from_secs_f64(options.seconds);
    let (samples, errors) = paced(
        options.rate,
        |_, start| start.elapsed() >= duration,
        || round_trip(&mut stream, &message, &mut reply),
    );
    if errors > 0 {
        return Err(io::Error::other(format!("{errors} round trips failed")));
    }
    Ok(summary(samples, errors))
}

fn connect_request(options: &Options) -> io::Result<String> {
    let message = vec![b'x'; options.size];
    let mut reply = vec![0u8; options.size];
    let once = |reply: &mut [u8]| -> io::Result<()> {
        let mut stream = dial(options.addr)?;
        round_trip(&mut stream, &message, reply)
    };
    // Warm up: pools, certificates and caches reach their steady state.
    for _ in 0..20 {
        once(&mut reply)?;
    }
    let (samples, errors) = paced(
        options.rate,
        |done, _| done >= options.count,
        || once(&mut reply),
    );
    Ok(summary(samples, errors))
}

fn hold(options: &Options) -> io::Result<String> {
    let mut open = Vec::with_capacity(options.count);
    let mut byte = [0u8; 1];
    let started = Instant::now();
    for i in 0..options.count {
        let mut stream = dial(options.addr)
            .map_err(|e| io::Error::new(e.kind(), format!("connection {i}: {e}")))?;
        round_trip(&mut stream, b"x", &mut byte)
            .map_err(|e| io::Error::new(e.kind(), format!("echo on connection {i}: {e}")))?;
        open.push(stream);
    }
    let mut stdout = io::stdout();
    writeln!(stdout, "ready {}", open.len())?;
    stdout.flush()?;
    let opened_in = started.elapsed().as_secs_f64();
    // Idle until the caller closes our stdin.
    io::copy(&mut io::stdin(), &mut io::sink())?;
    Ok(format!(
        "{{\"held\":{},\"open_seconds\":{opened_in:.3}}}",
        open.len()
    ))
}

/// Percentile by nearest rank over sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // The epsilon keeps exact ranks (99% of 1000 = 990) from rounding up.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn summary(mut samples: Vec<f64>, errors: usize) -> String {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    format!(
        "{{\"samples\":{},\"errors\":{errors},\"mean_us\":{mean:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        percentile(&samples, 99.9),
        samples.last().copied().unwrap_or(f64::NAN),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().expect("clone");
                    let _ = io::copy(&mut reader, &mut stream);
                });
            }
        });
        addr
    }

    pub(crate) fn options(addr: SocketAddr) -> Options {
        Options {
            addr,
            rate: 2000,
            seconds: 0.2,
            count: 50,
            size: 16,
            connections: 4,
            tls: None,
        }
    }

    pub(crate) fn field(json: &str, name: &str) -> f64 {
        let start = json.find(&format!("\"{name}\":")).expect("field present") + name.len() + 3;
        let rest = &json[start..];
        let end = rest.find([',', '}']).expect("field end");
        rest[..end].parse().expect("number")
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert!((percentile(&sorted, 50.0) - 500.0).abs() < f64::EPSILON);
        assert!((percentile(&sorted, 99.0) - 990.0).abs() < f64::EPSILON);
        assert!((percentile(&sorted, 99.9) - 999.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn pingpong_times_paced_round_trips() {
        let json = pingpong(&options(echo_server())).expect("pingpong");
        let samples = field(&json, "samples");
        // 0.2 s at 2000/s: about 400 round trips; pacing must not run far ahead.
        assert!((300.0..=401.0).contains(&samples), "{json}");
        assert!(field(&json, "p50_us") > 0.0);
        assert!(field(&json, "p99_us") >= field(&json, "p50_us"));
    }

    #[test]
    fn connect_counts_each_new_connection() {
        let json = connect_request(&options(echo_server())).expect("connect");
        assert!(
            (field(&json, "samples") - 50.0).abs() < f64::EPSILON,
            "{json}"
        );
        assert!(field(&json, "errors").abs() < f64::EPSILON);
    }

    #[test]
    fn unreachable_server_is_an_error() {
        let unused = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = unused.local_addr().expect("addr");
        drop(unused);
        assert!(pingpong(&options(addr)).is_err());
    }

    #[test]
    fn flags_are_validated() {
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(parse_options(&args("127.0.0.1:1 --rate 5 --size 8")).is_ok());
        assert!(parse_options(&args("nohost --rate 5")).is_err());
        assert!(parse_options(&args("127.0.0.1:1 --rate 0")).is_err());
        assert!(parse_options(&args("127.0.0.1:1 --bogus 1")).is_err());
        assert!(parse_options(&args("127.0.0.1:1 --rate")).is_err());
        assert!(parse_options(&args("127.0.0.1:1 --server-name a.test")).is_err());
    }
}
