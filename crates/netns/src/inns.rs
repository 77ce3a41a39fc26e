//! Doing work inside another network namespace without touching the caller's threads.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole
//! life. So a dedicated thread enters the namespace (`setns`), creates the socket, and hands
//! it back; the socket keeps working from any thread (and from tokio, after
//! `set_nonblocking(true)` and `from_std`). Threads that entered a namespace never run
//! anything else: the one-shot helpers end theirs, [`NetnsWorker`] keeps one per namespace.

use crate::error::{Error, Result};
use nix::sched::CloneFlags;
use nix::sys::socket::{
    self as sock, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt,
};
use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|source| Error::File {
        op: "open network namespace",
        path: path.to_owned(),
        source,
    })?;
    nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| Error::EnterNetns {
        path: path.to_owned(),
        source,
    })
}

/// Runs `work` on a fresh thread that first enters the network namespace at `netns`
/// (e.g. `/run/netns/NAME` or `/proc/PID/ns/net`), and returns its result. The thread ends
/// afterwards. Sockets created by `work` stay in that namespace.
///
/// # Errors
/// The namespace cannot be entered, or `work` panicked.
pub fn run_in_netns<T, F>(netns: &Path, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = netns.to_owned();
    let thread = std::thread::Builder::new()
        .name("weft-netns".into())
        .spawn(move || enter(&path).map(|()| work()))
        .map_err(|e| thread_error(netns, format!("spawn: {e}")))?;
    thread
        .join()
        .map_err(|_| thread_error(netns, "work panicked".into()))?
}

fn thread_error(path: &Path, reason: String) -> Error {
    Error::Thread {
        path: path.to_owned(),
        reason,
    }
}

/// A long-lived thread inside one network namespace that runs jobs sent to it: cheaper
/// than a thread per socket when a node proxy opens many sockets in the same pod.
/// Dropping the worker ends its thread once queued jobs are done.
#[derive(Debug)]
pub struct NetnsWorker {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
}

impl NetnsWorker {
    /// Starts the thread and waits until it is inside the namespace at `netns`.
    ///
    /// # Errors
    /// The namespace cannot be entered or the thread cannot start.
    pub fn spawn(netns: &Path) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = netns.to_owned();
        std::thread::Builder::new()
            .name("weft-netns-worker".into())
            .spawn(move || {
                let entered = enter(&path);
                let ok = entered.is_ok();
                // The receiver only goes away if `spawn` already returned; nothing to do then.
                let _ = ready_tx.send(entered);
                if ok {
                    while let Ok(job) = queue.recv() {
                        job();
                    }
                }
            })
            .map_err(|e| thread_error(netns, format!("spawn: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| thread_error(netns, "worker died while starting".into()))??;
        Ok(Self {
            path: netns.to_owned(),
            jobs,
        })
    }

    /// The namespace this worker lives in.
    #[must_use]
    pub fn netns_path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` in the namespace and waits for its result (blocking; from async code
    /// use [`NetnsWorker::run_async`]).
    ///
    /// # Errors
    /// The worker thread is gone (it panicked earlier).
    pub fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(move || {
            let _ = tx.send(work());
        })?;
        rx.recv().map_err(|_| self.gone())
    }

    /// Runs `work` in the namespace; the returned future resolves with its result without
    /// blocking the async runtime.
    ///
    /// # Errors
    /// The worker thread is gone (it panicked earlier).
    pub async fn run_async<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(move || {
            let _ = tx.send(work());
        })?;
        rx.await.map_err(|_| self.gone())
    }

    fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<()> {
        self.jobs.send(Box::new(job)).map_err(|_| self.gone())
    }

    fn gone(&self) -> Error {
        thread_error(&self.path, "worker thread is gone".into())
    }
}

/// Options for sockets a proxy creates: the bypass mark and an optional transparent source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_MARK` on every packet the socket sends (use the capture bypass mark so the
    /// capture rules never redirect the proxy's own traffic).
    pub mark: Option<u32>,
    /// Bind to this source before connecting, with `IP_TRANSPARENT` so the address need
    /// not be local (the inbound path connects to the workload "as" the original caller).
    pub transparent_source: Option<SocketAddr>,
}

fn socket_error(
    op: &'static str,
    addr: impl std::fmt::Display,
) -> impl FnOnce(nix::Error) -> Error {
    let addr = addr.to_string();
    move |source| Error::Socket { op, addr, source }
}

fn new_socket(family_of: SocketAddr, ty: SockType) -> Result<OwnedFd> {
    let family = if family_of.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    sock::socket(family, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(socket_error("socket", family_of))
}

fn bind_to(fd: &OwnedFd, addr: SocketAddr) -> Result<()> {
    let raw = fd.as_raw_fd();
    let result = match addr {
        SocketAddr::V4(v4) => sock::bind(raw, &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => sock::bind(raw, &SockaddrIn6::from(v6)),
    };
    result.map_err(socket_error("bind", addr))
}

fn apply_options(fd: &OwnedFd, opts: SocketOptions, peer: SocketAddr) -> Result<()> {
    if let Some(mark) = opts.mark {
        sock::setsockopt(fd, sockopt::Mark, &mark)
            .map_err(socket_error("setsockopt(SO_MARK)", peer))?;
    }
    if let Some(source) = opts.transparent_source {
        // nix has no safe IPV6_TRANSPARENT; the local clusters are IPv4-only.
        let set = if source.is_ipv4() {
            sock::setsockopt(fd, sockopt::IpTransparent, &true)
        } else {
            Err(nix::Error::EAFNOSUPPORT)
        };
        set.map_err(socket_error("setsockopt(IP_TRANSPARENT)", source))?;
        bind_to(fd, source)?;
    }
    Ok(())
}

/// Creates a TCP listener on `addr` in the calling thread's namespace (`SO_REUSEADDR`,
/// backlog `SOMAXCONN`). Call it through [`run_in_netns`] or a [`NetnsWorker`].
///
/// # Errors
/// The socket cannot be created, bound or put into listening state.
pub fn bind_tcp_listener(addr: SocketAddr) -> Result<TcpListener> {
    let fd = new_socket(addr, SockType::Stream)?;
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)
        .map_err(socket_error("setsockopt(SO_REUSEADDR)", addr))?;
    bind_to(&fd, addr)?;
    sock::listen(&fd, Backlog::MAXCONN).map_err(socket_error("listen", addr))?;
    Ok(TcpListener::from(fd))
}

/// Creates a UDP socket bound to `addr` in the calling thread's namespace.
///
/// # Errors
/// The socket cannot be created or bound.
pub fn bind_udp_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let fd = new_socket(addr, SockType::Datagram)?;
    bind_to(&fd, addr)?;
    Ok(UdpSocket::from(fd))
}

/// Creates an unconnected TCP socket with `opts` applied (mark, transparent bind) in the
/// calling thread's namespace, to be connected to `peer` later, e.g. asynchronously with
/// `tokio::net::TcpSocket::from_std_stream(s).connect(peer)`.
///
/// # Errors
/// The socket cannot be created or an option/bind is refused (`IP_TRANSPARENT` needs
/// `CAP_NET_ADMIN`).
pub fn tcp_socket(peer: SocketAddr, opts: SocketOptions) -> Result<TcpStream> {
    let fd = new_socket(peer, SockType::Stream)?;
    apply_options(&fd, opts, peer)?;
    Ok(TcpStream::from(fd))
}

/// Creates a TCP socket with `opts` and connects it to `peer` (blocking), in the calling
/// thread's namespace.
///
/// # Errors
/// As [`tcp_socket`], or the connection is refused / unreachable.
pub fn tcp_connect(peer: SocketAddr, opts: SocketOptions) -> Result<TcpStream> {
    let stream = tcp_socket(peer, opts)?;
    let raw = stream.as_raw_fd();
    let result = match peer {
        SocketAddr::V4(v4) => sock::connect(raw, &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => sock::connect(raw, &SockaddrIn6::from(v6)),
    };
    result.map_err(socket_error("connect", peer))?;
    Ok(stream)
}

/// Opens a TCP listener on `addr` inside the network namespace at `netns`.
///
/// # Errors
/// See [`run_in_netns`] and [`bind_tcp_listener`].
pub fn open_listener_in(netns: &Path, addr: SocketAddr) -> Result<TcpListener> {
    run_in_netns(netns, move || bind_tcp_listener(addr))?
}

/// Opens a UDP socket bound to `addr` inside the network namespace at `netns`.
///
/// # Errors
/// See [`run_in_netns`]; or the bind fails.
pub fn open_udp_in(netns: &Path, addr: SocketAddr) -> Result<UdpSocket> {
    run_in_netns(netns, move || bind_udp_socket(addr))?
}

/// Connects to `peer` from inside the network namespace at `netns` (blocking), with `opts`.
///
/// # Errors
/// See [`run_in_netns`] and [`tcp_connect`].
pub fn connect_in(netns: &Path, peer: SocketAddr, opts: SocketOptions) -> Result<TcpStream> {
    run_in_netns(netns, move || tcp_connect(peer, opts))?
}

/// The destination a redirected (captured) IPv4 TCP connection was originally sent to,
/// read from conntrack with `SO_ORIGINAL_DST`. Works on std and tokio streams.
///
/// # Errors
/// The socket was not redirected (no NAT entry) or is not IPv4.
pub fn original_dst(stream: &impl AsFd) -> Result<SocketAddrV4> {
    let raw = sock::getsockopt(stream, sockopt::OriginalDst).map_err(socket_error(
        "getsockopt(SO_ORIGINAL_DST)",
        "accepted socket",
    ))?;
    let ip = std::net::Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr));
    Ok(SocketAddrV4::new(ip, u16::from_be(raw.sin_port)))
}
