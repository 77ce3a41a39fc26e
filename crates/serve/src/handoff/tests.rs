//! Hand-off between two "processes" of this test (each its own tasks and descriptors; the
//! sockets really travel over a Unix socket with `SCM_RIGHTS`).

use super::*;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `stop`, answering each connection with `tag`.
fn serve_tagged(
    listener: TcpListener,
    tag: u8,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        crate::accept_until(&listener, stop, "test", |mut stream, _| {
            tokio::spawn(async move {
                let _ = stream.write_all(&[tag]).await;
            });
        })
        .await;
    })
}

/// Connects and reads the tag of whoever accepted.
async fn served_by(addr: SocketAddr) -> io::Result<u8> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut tag = [0u8; 1];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut tag)).await??;
    Ok(tag[0])
}

fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("handoff.sock")
}

#[tokio::test]
async fn connections_during_the_hand_off_are_all_accepted_by_someone() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let offered = Offered::new();
    let _guard = offered.offer("gateway:80", &listener).unwrap();
    let (stop_old, stopped) = watch::channel(false);
    let old = serve_tagged(listener, b'o', stopped);
    let server = HandoffServer::bind(&path).unwrap();
    let handing = tokio::spawn(async move { server.serve(&offered).await });

    // Steady clients throughout.
    let (stop_clients, clients_stopped) = watch::channel(false);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stopped = clients_stopped.clone();
            tokio::spawn(async move {
                let mut tags = Vec::new();
                while !*stopped.borrow() {
                    tags.push(served_by(addr).await.expect("a connection was lost"));
                }
                tags
            })
        })
        .collect();

    let mut takeover = Takeover::connect(&path).await.unwrap().expect("an offer");
    assert_eq!(takeover.names(), ["gateway:80"]);
    let taken = takeover.take_tcp("gateway:80").unwrap().unwrap();
    assert_eq!(taken.local_addr().unwrap(), addr);
    let (_stop_new, new_stopped) = watch::channel(false);
    let new = serve_tagged(taken, b'n', new_stopped);
    takeover.ready().await.unwrap();
    let successor = handing.await.unwrap().unwrap();
    assert_eq!(successor.pid, std::process::id());
    // The old process stops accepting and closes its copy of the socket.
    stop_old.send_replace(true);
    old.await.unwrap();

    // Afterwards only the new one serves.
    for _ in 0..20 {
        assert_eq!(served_by(addr).await.unwrap(), b'n');
    }
    stop_clients.send_replace(true);
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    assert!(
        all.contains(&b'o'),
        "the old process served before the hand-off"
    );
    new.abort();
}

#[tokio::test]
async fn connections_queued_while_nobody_accepts_are_kept_for_the_successor() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    // The old process holds the listener but does not accept: connections queue.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let offered = Offered::new();
    let guard = offered.offer("http", &listener).unwrap();
    let mut queued = Vec::new();
    for _ in 0..5 {
        queued.push(TcpStream::connect(addr).await.unwrap());
    }
    let server = HandoffServer::bind(&path).unwrap();
    let handing = tokio::spawn(async move { server.serve(&offered).await });
    let mut takeover = Takeover::connect(&path).await.unwrap().unwrap();
    let taken = takeover.take_tcp("http").unwrap().unwrap();
    takeover.ready().await.unwrap();
    handing.await.unwrap().unwrap();
    // The old process closes everything it had.
    drop((guard, listener));
    for client in &queued {
        let (accepted, peer) = tokio::time::timeout(DEADLINE, taken.accept())
            .await
            .unwrap()
            .unwrap();
        drop(accepted);
        assert!(queued.iter().any(|c| c.local_addr().unwrap() == peer));
        let _ = client;
    }
}

#[tokio::test]
async fn udp_sockets_travel_with_datagrams_waiting_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let offered = Offered::new();
    let _guard = offered.offer("dns:53", &socket).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"query", addr).await.unwrap();
    let server = HandoffServer::bind(&path).unwrap();
    let handing = tokio::spawn(async move { server.serve(&offered).await });
    let mut takeover = Takeover::connect(&path).await.unwrap().unwrap();
    assert!(
        takeover.take_tcp("dns:53").is_err(),
        "a datagram socket is not taken as a TCP listener"
    );
    let taken = takeover.take_udp("dns:53").unwrap().unwrap();
    takeover.ready().await.unwrap();
    handing.await.unwrap().unwrap();
    drop(socket);
    let mut buf = [0u8; 16];
    let (n, from) = tokio::time::timeout(DEADLINE, taken.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"query");
    assert_eq!(from, client.local_addr().unwrap());
}

#[tokio::test]
async fn a_successor_that_leaves_before_ready_leaves_the_old_process_offering() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let offered = Offered::new();
    let _guard = offered.offer("a", &listener).unwrap();
    let server = HandoffServer::bind(&path).unwrap();
    let handing = tokio::spawn(async move { server.serve(&offered).await });
    // A probe, then a successor that dies before it is ready.
    assert_eq!(offerer_pid(&path).unwrap(), Some(std::process::id()));
    drop(Takeover::connect(&path).await.unwrap().unwrap());
    assert!(!handing.is_finished());
    // The next successor gets the socket.
    let mut takeover = Takeover::connect(&path).await.unwrap().unwrap();
    let taken = takeover.take_tcp("a").unwrap().unwrap();
    assert_eq!(taken.local_addr().unwrap(), listener.local_addr().unwrap());
    takeover.ready().await.unwrap();
    tokio::time::timeout(DEADLINE, handing)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn nobody_offering_means_a_fresh_start_and_a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    assert!(Takeover::connect(&path).await.unwrap().is_none());
    assert_eq!(offerer_pid(&path).unwrap(), None);
    // A socket file left by a process that died.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(Takeover::connect(&path).await.unwrap().is_none());
    let server = HandoffServer::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second server on a path that is served is refused.
    let error = HandoffServer::bind(&path).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    drop(server);
}

#[tokio::test]
async fn a_dropped_guard_withdraws_its_socket_and_many_sockets_fit() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let offered = Offered::new();
    let mut listeners = Vec::new();
    // More than one frame's worth of descriptors.
    for i in 0..(MAX_FDS_PER_FRAME + 10) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let guard = offered.offer(format!("pod:{i}"), &listener).unwrap();
        listeners.push((listener, guard));
    }
    let (_, withdrawn) = listeners.pop().unwrap();
    drop(withdrawn);
    assert!(offered.offer("two\nlines", &listeners[0].0).is_err());
    let server = HandoffServer::bind(&path).unwrap();
    let handing = tokio::spawn(async move { server.serve(&offered).await });
    let started = Instant::now();
    let mut takeover = Takeover::connect(&path).await.unwrap().unwrap();
    assert_eq!(takeover.names().len(), MAX_FDS_PER_FRAME + 9);
    for (i, (listener, _)) in listeners.iter().enumerate() {
        let taken = takeover.take_tcp(&format!("pod:{i}")).unwrap().unwrap();
        assert_eq!(taken.local_addr().unwrap(), listener.local_addr().unwrap());
    }
    takeover.ready().await.unwrap();
    handing.await.unwrap().unwrap();
    assert!(started.elapsed() < DEADLINE);
}

/// A successor told "done" offers on the same path at once (it must never find the old
/// process still there: it would not offer, and the next restart could not take over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_offers_on_the_path_as_soon_as_the_hand_off_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let offered = Offered::new();
    let _guard = offered.offer("a", &listener).unwrap();
    let mut server = HandoffServer::bind(&path).unwrap();
    for generation in 0..30 {
        let offering = offered.clone();
        let handing = tokio::spawn(async move { server.serve(&offering).await });
        let mut takeover = Takeover::connect(&path).await.unwrap().unwrap();
        let taken = takeover.take_tcp("a").unwrap().unwrap();
        takeover.ready().await.unwrap();
        server = HandoffServer::bind(&path)
            .unwrap_or_else(|error| panic!("generation {generation}: {error}"));
        handing.await.unwrap().unwrap();
        drop(taken);
    }
}

/// A successor that says "ready" and is gone before it hears "done" never served: the old
/// process offers on the path again and the next successor takes the sockets.
#[tokio::test]
async fn a_successor_gone_between_ready_and_done_leaves_the_old_process_offering_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let offered = Offered::new();
    let _guard = offered.offer("a", &listener).unwrap();
    let server = HandoffServer::bind(&path).unwrap();
    let handing = tokio::spawn(async move { server.serve(&offered).await });
    {
        let mut channel = Channel::new(UnixStream::connect(&path).await.unwrap());
        channel.send("take", &[]).await.unwrap();
        receive_sockets(&mut channel).await.unwrap();
        // Waits in the first offer's queue (the old process serves one successor at a
        // time) until that offer closes.
        let mut queued = UnixStream::connect(&path).await.unwrap();
        channel.send("ready", &[]).await.unwrap();
        drop(channel);
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(DEADLINE, queued.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    }
    let deadline = Instant::now() + DEADLINE;
    while offerer_pid(&path).unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process offers again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!handing.is_finished(), "the old process still serves");
    let mut takeover = Takeover::connect(&path).await.unwrap().unwrap();
    assert!(takeover.take_tcp("a").unwrap().is_some());
    takeover.ready().await.unwrap();
    let successor = tokio::time::timeout(DEADLINE, handing).await.unwrap();
    assert_eq!(successor.unwrap().unwrap().pid, std::process::id());
}
