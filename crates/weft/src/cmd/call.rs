//! `weft x call TARGET`: a tiny client for trying the mesh from inside a pod. `http://HOST[:PORT]/PATH`
//! makes one HTTP/1.1 GET and prints the status line and body; `HOST:PORT` opens a raw TCP
//! connection, sends `--data` and prints what comes back. Names resolve with the system
//! resolver (so a pod's `/etc/hosts` and `resolv.conf` apply). Exit code 0 means a 2xx
//! answer (or any TCP answer), 1 means refused, reset, timed out or a non-2xx status.

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Arguments of `weft x call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// `http://host[:port]/path` or `host:port` (raw TCP).
    target: String,
    /// Seconds before giving up (connect and answer together).
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Bytes to send on a raw TCP connection.
    #[arg(long, default_value = "hello from weft x call\n")]
    data: String,
}

/// Makes the call and prints the outcome.
pub fn run(args: &CallArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let limit = Duration::from_secs(args.timeout);
    let outcome = runtime.block_on(async {
        match tokio::time::timeout(limit, call(args)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("timed out after {}s", args.timeout)),
        }
    });
    match outcome {
        Ok((success, text)) => {
            print!("{text}");
            Ok(if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(err) => {
            println!("error: {err:#}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn call(args: &CallArgs) -> anyhow::Result<(bool, String)> {
    if let Some(rest) = args.target.strip_prefix("http://") {
        let (authority, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
        let addr = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        http_get(&addr, authority, &path).await
    } else if args.target.contains("://") {
        bail!(
            "only http:// URLs and HOST:PORT are supported, got {}",
            args.target
        )
    } else {
        raw_tcp(&args.target, args.data.as_bytes()).await
    }
}

async fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    let peers: Vec<_> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    let peer = peers
        .first()
        .with_context(|| format!("{addr} resolved to no address"))?;
    TcpStream::connect(peer)
        .await
        .with_context(|| format!("connect to {addr} ({peer})"))
}

async fn http_get(addr: &str, host: &str, path: &str) -> anyhow::Result<(bool, String)> {
    let stream = connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "weft-x-call")
        .body(Empty::<Bytes>::new())
        .context("build the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET http://{host}{path}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("read the response body")?
        .to_bytes();
    let mut text = format!(
        "HTTP {} {}\n{}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        String::from_utf8_lossy(&body)
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok((status.is_success(), text))
}

async fn raw_tcp(addr: &str, data: &[u8]) -> anyhow::Result<(bool, String)> {
    let mut stream = connect(addr).await?;
    stream.write_all(data).await.context("send")?;
    stream.shutdown().await.context("close the sending side")?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .context("read the answer")?;
    Ok((true, String::from_utf8_lossy(&answer).into_owned()))
}
