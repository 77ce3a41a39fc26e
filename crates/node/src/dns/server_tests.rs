//! The DNS listeners on real loopback sockets: bounded forwarding (one shared upstream
//! socket per pod, SERVFAIL at once over a limit, other pods unaffected) and the TCP
//! deadline covering a whole message.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::dns::DnsResolver;
use crate::dns::server::{self, DnsScope, ForwardLimits, Forwarder, UdpFactory, Upstream};
use crate::state::{LocalConfig, StateStore};

/// Longest any expected answer may take (generous: nothing waits this long when it works).
const PATIENCE: Duration = Duration::from_secs(5);
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn resolver() -> DnsResolver {
    let store = Arc::new(StateStore::new());
    let mesh = "services:\n  - name: web\n    namespace: shop\n    hostname: web.shop.svc.cluster.local\n    addresses: [{ address: \"CmAAAQ==\" }]\n";
    store.replace_all(LocalConfig::parse(Path::new("dns.yaml"), mesh).expect("mesh parses"));
    DnsResolver::new(store, "cluster.local", true)
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    message.to_vec().unwrap()
}

/// A socket factory on loopback that counts the sockets it makes.
fn counting_factory(made: Arc<AtomicUsize>) -> UdpFactory {
    Arc::new(move || {
        made.fetch_add(1, Ordering::SeqCst);
        Box::pin(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
    })
}

/// An upstream that never answers (kept open so its port stays taken).
async fn silent_upstream() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
}

/// An upstream answering every A query with [`UPSTREAM_IP`].
async fn answering_upstream(stop: CancellationToken) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            let (len, from) = tokio::select! {
                () = stop.cancelled() => return,
                got = socket.recv_from(&mut buf) => got.unwrap(),
            };
            let request = Message::from_vec(&buf[..len]).unwrap();
            let mut response = Message::response(request.id, request.op_code);
            response.add_queries(request.queries.iter().cloned());
            let name = request.queries[0].name.clone();
            response.add_answer(Record::from_rdata(name, 60, RData::A(A(UPSTREAM_IP))));
            socket
                .send_to(&response.to_vec().unwrap(), from)
                .await
                .unwrap();
        }
    });
    addr
}

/// A pod's DNS UDP listener forwarding to `upstream`; returns its address.
async fn pod_dns(
    upstream: SocketAddr,
    made: Arc<AtomicUsize>,
    limits: &Arc<ForwardLimits>,
    timeout: Duration,
    stop: &CancellationToken,
) -> (SocketAddr, DnsScope) {
    let upstream = Upstream {
        addr: upstream,
        socket: counting_factory(made),
        timeout,
    };
    let forwarder = Forwarder::new(upstream, Arc::clone(limits), stop.clone());
    let scope = DnsScope {
        resolver: resolver(),
        namespace: "shop".into(),
        forwarder: Some(Arc::new(forwarder)),
        tcp_timeout: Duration::from_millis(300),
    };
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    server::serve_udp(socket, scope.clone(), stop.clone());
    (addr, scope)
}

async fn client(dns: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.connect(dns).await.unwrap();
    socket
}

async fn receive(socket: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 1500];
    let len = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

fn metrics(limits: &ForwardLimits) -> String {
    let mut registry = Registry::default();
    limits.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn a_flooding_pod_gets_servfail_at_once_and_other_pods_keep_resolving() {
    let stop = CancellationToken::new();
    let limits = Arc::new(ForwardLimits::new(8, 12));
    let silent = silent_upstream().await;
    let (flooder_made, quiet_made) = (Arc::default(), Arc::default());
    let slow = Duration::from_secs(60);
    let silent_addr = silent.local_addr().unwrap();
    let flooder = pod_dns(silent_addr, Arc::clone(&flooder_made), &limits, slow, &stop).await;
    let answering = answering_upstream(stop.clone()).await;
    let quiet = pod_dns(answering, Arc::clone(&quiet_made), &limits, slow, &stop).await;

    let flood = client(flooder.0).await;
    for id in 1..=40 {
        flood.send(&query(id, "example.org")).await.unwrap();
    }
    // The first 8 wait for the silent upstream; the other 32 are refused at once.
    let mut refused = BTreeSet::new();
    for _ in 0..32 {
        let answer = receive(&flood).await;
        assert_eq!(answer.response_code, ResponseCode::ServFail);
        refused.insert(answer.id);
    }
    assert_eq!(refused, (9..=40).collect::<BTreeSet<u16>>());
    assert_eq!(
        flooder_made.load(Ordering::SeqCst),
        1,
        "one upstream socket for all of a pod's queries"
    );

    // Another pod still resolves names outside the mesh, with its own ids intact.
    let neighbour = client(quiet.0).await;
    neighbour.send(&query(777, "example.net")).await.unwrap();
    let answer = receive(&neighbour).await;
    assert_eq!(answer.id, 777);
    assert_eq!(answer.response_code, ResponseCode::NoError);
    assert_eq!(&answer.answers[0].data, &RData::A(A(UPSTREAM_IP)));
    assert_eq!(quiet_made.load(Ordering::SeqCst), 1);

    let text = metrics(&limits);
    assert!(
        text.contains("weft_dns_queries_refused_total{limit=\"pod\"} 32"),
        "{text}"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_node_limit_caps_all_pods_together() {
    let stop = CancellationToken::new();
    let limits = Arc::new(ForwardLimits::new(8, 10));
    let silent = silent_upstream().await;
    let addr = silent.local_addr().unwrap();
    let slow = Duration::from_secs(60);
    let first = pod_dns(addr, Arc::default(), &limits, slow, &stop).await;
    let second = pod_dns(addr, Arc::default(), &limits, slow, &stop).await;
    let (a, b) = (client(first.0).await, client(second.0).await);
    for id in 1..=8 {
        a.send(&query(id, "example.org")).await.unwrap();
    }
    // The first pod's 8 are all in flight (its own limit): the node has 2 slots left.
    for id in 1..=4 {
        b.send(&query(id, "example.org")).await.unwrap();
    }
    let refused: BTreeSet<u16> = [receive(&b).await.id, receive(&b).await.id].into();
    assert_eq!(refused, [3, 4].into());
    let text = metrics(&limits);
    assert!(
        text.contains("weft_dns_queries_refused_total{limit=\"node\"} 2"),
        "{text}"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_silent_upstream_turns_into_servfail_and_frees_the_slot() {
    let stop = CancellationToken::new();
    let limits = Arc::new(ForwardLimits::new(1, 10));
    let silent = silent_upstream().await;
    let addr = silent.local_addr().unwrap();
    let quick = Duration::from_millis(200);
    let pod = pod_dns(addr, Arc::default(), &limits, quick, &stop).await;
    let socket = client(pod.0).await;
    for id in [11, 12] {
        socket.send(&query(id, "example.org")).await.unwrap();
        let answer = receive(&socket).await;
        assert_eq!(
            (answer.id, answer.response_code),
            (id, ResponseCode::ServFail)
        );
    }
    // Neither was refused by the limit: each timed out in turn.
    assert!(!metrics(&limits).contains("limit=\"pod\""));
    stop.cancel();
}

/// A TCP DNS listener of `scope`; returns its address.
async fn tcp_dns(scope: DnsScope, stop: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    server::serve_tcp(listener, scope, stop.clone());
    addr
}

#[tokio::test]
async fn a_tcp_client_stalling_inside_a_message_is_dropped() {
    let stop = CancellationToken::new();
    let limits = Arc::new(ForwardLimits::new(8, 8));
    let silent = silent_upstream().await;
    let addr = silent.local_addr().unwrap();
    let (_, scope) = pod_dns(addr, Arc::default(), &limits, PATIENCE, &stop).await;
    let dns = tcp_dns(scope, &stop).await;

    // A whole message is answered.
    let mut good = TcpStream::connect(dns).await.unwrap();
    let message = query(5, "web.shop.svc.cluster.local");
    good.write_u16(u16::try_from(message.len()).unwrap())
        .await
        .unwrap();
    good.write_all(&message).await.unwrap();
    let len = good.read_u16().await.unwrap();
    let mut answer = vec![0u8; usize::from(len)];
    good.read_exact(&mut answer).await.unwrap();
    assert_eq!(Message::from_vec(&answer).unwrap().id, 5);

    // A length prefix and then part of the message: closed after the deadline (300 ms).
    let mut staller = TcpStream::connect(dns).await.unwrap();
    staller.write_u16(40).await.unwrap();
    staller.write_all(&message[..5]).await.unwrap();
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(PATIENCE, staller.read(&mut rest))
        .await
        .expect("the proxy closes a client stalled inside a message");
    assert_eq!(closed.unwrap(), 0);
    stop.cancel();
}

/// A pod's DNS stopping (a restarted proxy took its sockets over) does not lose a query
/// already forwarded: the upstream's late answer still reaches the client, instead of the
/// client waiting out its retry timer (5 s for glibc).
#[tokio::test]
async fn a_query_in_flight_when_the_pods_dns_stops_still_gets_its_answer() {
    let stop = CancellationToken::new();
    let limits = Arc::new(ForwardLimits::new(10, 10));
    let upstream = silent_upstream().await;
    let pod = pod_dns(
        upstream.local_addr().unwrap(),
        Arc::default(),
        &limits,
        PATIENCE,
        &stop,
    )
    .await;
    let socket = client(pod.0).await;
    socket.send(&query(21, "example.org")).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let (len, forwarder) = tokio::time::timeout(PATIENCE, upstream.recv_from(&mut buf))
        .await
        .expect("the query is forwarded")
        .unwrap();
    stop.cancel();
    // Let every task see the stop before the upstream answers (one thread: they all run).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let request = Message::from_vec(&buf[..len]).unwrap();
    let mut response = Message::response(request.id, request.op_code);
    response.add_queries(request.queries.iter().cloned());
    upstream
        .send_to(&response.to_vec().unwrap(), forwarder)
        .await
        .unwrap();
    let answer = receive(&socket).await;
    assert_eq!(
        (answer.id, answer.response_code),
        (21, ResponseCode::NoError)
    );
}
