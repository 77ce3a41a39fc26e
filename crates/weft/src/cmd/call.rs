//! `weft x call TARGET`: a tiny client for trying the mesh from inside a pod. `http://HOST[:PORT]/PATH`
//! makes one HTTP/1.1 GET and prints the status line and body; `HOST:PORT` opens a raw TCP
//! connection, sends `--data` and prints what comes back. Names resolve with the system
//! resolver (so a pod's `/etc/hosts` and `resolv.conf` apply). Exit code 0 means a 2xx
//! answer (or any TCP answer), 1 means refused, reset, timed out or a non-2xx status.
//!
//! Explicit mode: with `ALL_PROXY` set (`socks5://`, `socks5h://` or `http://` HOST:PORT, as
//! `weft up` sets it without root) the connection goes through that proxy: SOCKS5 CONNECT
//! or HTTP CONNECT. With `socks5h://` and `http://` the proxy resolves names; a name is
//! tried with each `LOCALDOMAIN` search suffix first (the pod's DNS search path), then as
//! written. With `POD_IP` set, connections are made from that address, which is how a node
//! proxy in explicit mode knows which workload is calling.

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

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
    let source = pod_ip()?;
    match Proxy::from_env()? {
        None => connect_direct(addr, source).await,
        Some(proxy) => proxy
            .connect(addr, source)
            .await
            .with_context(|| format!("connect to {addr} through {}", proxy.url)),
    }
}

/// `POD_IP`, the address connections are made from.
fn pod_ip() -> anyhow::Result<Option<IpAddr>> {
    match std::env::var("POD_IP") {
        Ok(ip) if !ip.is_empty() => ip
            .parse()
            .map(Some)
            .with_context(|| format!("POD_IP={ip:?} is not an IP address")),
        _ => Ok(None),
    }
}

async fn connect_direct(addr: &str, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let peers: Vec<_> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    let peer = peers
        .first()
        .with_context(|| format!("{addr} resolved to no address"))?;
    open_tcp(*peer, source)
        .await
        .with_context(|| format!("connect to {addr} ({peer})"))
}

/// A TCP connection to `peer`, from `source` when given (and of the same family).
async fn open_tcp(peer: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if peer.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == peer.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(peer).await
}

/// How the proxy of `ALL_PROXY` is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyKind {
    /// SOCKS5, names resolved here.
    Socks5,
    /// SOCKS5, names resolved by the proxy.
    Socks5h,
    /// HTTP CONNECT (the proxy resolves names).
    HttpConnect,
}

/// The proxy named by `ALL_PROXY` (or `all_proxy`).
#[derive(Debug)]
struct Proxy {
    url: String,
    kind: ProxyKind,
    authority: String,
}

/// Why one proxy request did not give a tunnel.
#[derive(Debug)]
enum ProxyRefusal {
    /// The proxy does not know the name (try the next search suffix).
    UnknownHost(String),
    /// Any other refusal.
    Refused(String),
}

impl Proxy {
    fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(url) = ["ALL_PROXY", "all_proxy"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        else {
            return Ok(None);
        };
        let (scheme, rest) = url
            .split_once("://")
            .with_context(|| format!("ALL_PROXY={url:?} has no scheme"))?;
        let kind = match scheme {
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "http" => ProxyKind::HttpConnect,
            other => bail!("ALL_PROXY scheme {other:?} is not supported (socks5, socks5h, http)"),
        };
        let authority = rest.trim_end_matches('/').to_owned();
        Ok(Some(Self {
            url,
            kind,
            authority,
        }))
    }

    /// A tunnel to `addr` (`host:port`).
    async fn connect(&self, addr: &str, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
        let (host, port) = addr
            .rsplit_once(':')
            .with_context(|| format!("{addr} has no port"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in {addr}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let names = if self.kind == ProxyKind::Socks5 {
            let peer = tokio::net::lookup_host(addr)
                .await
                .with_context(|| format!("cannot resolve {addr}"))?
                .next()
                .with_context(|| format!("{addr} resolved to no address"))?;
            vec![peer.ip().to_string()]
        } else {
            search_names(host)
        };
        let mut last = None;
        for name in names {
            match self.request(&name, port, source).await? {
                Ok(stream) => return Ok(stream),
                Err(ProxyRefusal::UnknownHost(why)) => last = Some(why),
                Err(ProxyRefusal::Refused(why)) => bail!("refused by the proxy: {why}"),
            }
        }
        bail!(
            "refused by the proxy: {}",
            last.unwrap_or_else(|| "no name to ask for".into())
        )
    }

    /// One proxy request for `host:port`.
    async fn request(
        &self,
        host: &str,
        port: u16,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Result<TcpStream, ProxyRefusal>> {
        let proxy = tokio::net::lookup_host(&self.authority)
            .await
            .with_context(|| format!("cannot resolve the proxy {}", self.authority))?
            .next()
            .with_context(|| format!("the proxy {} resolved to no address", self.authority))?;
        let mut stream = open_tcp(proxy, source)
            .await
            .with_context(|| format!("connect to the proxy {proxy}"))?;
        let answer = match self.kind {
            ProxyKind::HttpConnect => http_connect(&mut stream, host, port).await?,
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                socks5_connect(&mut stream, host, port).await?
            }
        };
        Ok(answer.map(|()| stream))
    }
}

/// `host` with each `LOCALDOMAIN` search suffix, then as written (IP literals and names
/// ending in a dot only as written).
fn search_names(host: &str) -> Vec<String> {
    if host.parse::<IpAddr>().is_ok() || host.ends_with('.') {
        return vec![host.to_owned()];
    }
    let search = std::env::var("LOCALDOMAIN").unwrap_or_default();
    let mut names: Vec<String> = search
        .split_whitespace()
        .map(|suffix| format!("{host}.{suffix}"))
        .collect();
    names.push(host.to_owned());
    names
}

/// SOCKS5 (RFC 1928) CONNECT without authentication.
async fn socks5_connect(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
) -> anyhow::Result<Result<(), ProxyRefusal>> {
    stream
        .write_all(&[5, 1, 0])
        .await
        .context("SOCKS5 greeting")?;
    let mut choice = [0u8; 2];
    stream
        .read_exact(&mut choice)
        .await
        .context("SOCKS5 method")?;
    if choice != [5, 0] {
        bail!("the proxy does not accept SOCKS5 without authentication ({choice:?})");
    }
    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).context("host name longer than 255 bytes")?;
            request.extend_from_slice(&[3, len]);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.context("SOCKS5 request")?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.context("SOCKS5 reply")?;
    let bound = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(stream.read_u8().await.context("SOCKS5 reply")?) + 2,
        other => bail!("SOCKS5 reply with address type {other}"),
    };
    let mut skip = vec![0u8; bound];
    stream.read_exact(&mut skip).await.context("SOCKS5 reply")?;
    let why = |text: &str| format!("{text} (SOCKS5 reply {} for {host}:{port})", head[1]);
    Ok(match head[1] {
        0 => Ok(()),
        4 => Err(ProxyRefusal::UnknownHost(why("host unreachable"))),
        2 => Err(ProxyRefusal::Refused(why("connection not allowed"))),
        5 => Err(ProxyRefusal::Refused(why("connection refused"))),
        _ => Err(ProxyRefusal::Refused(why("failure"))),
    })
}

/// HTTP/1.1 CONNECT; the answer head is read byte by byte so no tunnel byte is consumed.
async fn http_connect(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
) -> anyhow::Result<Result<(), ProxyRefusal>> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .context("HTTP CONNECT")?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8 * 1024 {
            bail!("HTTP CONNECT answer head too long");
        }
        let byte = stream.read_u8().await.context("HTTP CONNECT answer")?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.lines().next().unwrap_or_default().trim().to_owned();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    let why = format!("{status} for CONNECT {authority}");
    Ok(match code {
        "200" => Ok(()),
        "502" => Err(ProxyRefusal::UnknownHost(why)),
        _ => Err(ProxyRefusal::Refused(why)),
    })
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
