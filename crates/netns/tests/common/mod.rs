//! What the privileged tests share: unique namespace prefixes, a cluster per test, a
//! greeting server and a reader.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use weft_netns::{CaptureConfig, ClusterSpec, LocalCluster, Pod, install_capture};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A prefix unique to this test process and call (`[a-z0-9]`, at most 16 characters).
pub fn unique_prefix() -> String {
    format!(
        "t{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn require_privileges() {
    weft_netns::check_prerequisites()
        .expect("these tests must run as root with iproute2 and nftables installed");
}

pub fn cluster(spec: ClusterSpec) -> (LocalCluster, tempfile::TempDir) {
    require_privileges();
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = LocalCluster::create(&spec, dir.path()).expect("create cluster");
    (cluster, dir)
}

pub fn pod<'a>(cluster: &'a LocalCluster, name: &str) -> &'a Pod {
    cluster.pod(name).expect("pod exists")
}

pub fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// A server that answers each connection with `greeting` followed by the peer address.
pub struct Greeter {
    listener: TcpListener,
    thread: Option<JoinHandle<Vec<SocketAddr>>>,
}

impl Greeter {
    pub fn start(listener: TcpListener, greeting: &'static str) -> Self {
        let serving = listener.try_clone().expect("clone listener");
        let thread = std::thread::spawn(move || {
            let mut peers = Vec::new();
            while let Ok((mut conn, peer)) = serving.accept() {
                peers.push(peer);
                let _ = conn.write_all(format!("{greeting} {peer}").as_bytes());
            }
            peers
        });
        Self {
            listener,
            thread: Some(thread),
        }
    }

    /// Stops accepting and returns the peers it served.
    pub fn stop(mut self) -> Vec<SocketAddr> {
        self.finish()
    }

    fn finish(&mut self) -> Vec<SocketAddr> {
        // Shutting a listening socket down wakes the blocked accept with an error.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        self.thread
            .take()
            .map(|t| t.join().expect("server thread"))
            .unwrap_or_default()
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.finish();
    }
}

pub fn read_all(mut stream: TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read reply");
    text
}

/// Two nodes, pod `captured` on `a` with the default capture installed, pod `other` on `b`.
pub fn captured_pair(captured: &str, other: &str) -> (LocalCluster, tempfile::TempDir) {
    let (cluster, dir) = cluster(
        ClusterSpec::new(&unique_prefix())
            .node("a")
            .node("b")
            .pod(captured, "a")
            .pod(other, "b"),
    );
    let ns = pod(&cluster, captured).netns.path();
    install_capture(&ns, &CaptureConfig::default()).expect("install");
    (cluster, dir)
}
