//! Privileged tests: real namespaces, links, nftables rules and sockets. They need root and
//! `ip` + `nft`, and fail (never skip) without them. Each test uses its own prefix, so they
//! run in parallel.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::time::Duration;
use weft_netns::{
    CaptureConfig, ClusterSpec, LocalCluster, NetnsWorker, Protocol, ServiceRule, SocketOptions,
    capture_installed, connect_in, install_capture, install_hold, list_netns, open_listener_in,
    open_udp_in, original_dst, remove_capture, sync_service_rules, teardown,
};

#[test]
fn pods_on_different_nodes_talk_and_see_real_source_ips() {
    let spec = ClusterSpec::new(&unique_prefix())
        .node("a")
        .node("b")
        .pod("client", "a")
        .pod("neighbour", "a")
        .pod("server", "b");
    let (cluster, _dir) = cluster(spec);
    let (client, server) = (pod(&cluster, "client"), pod(&cluster, "server"));
    assert_ne!(
        cluster.node("a").unwrap().pod_cidr,
        cluster.node("b").unwrap().pod_cidr
    );

    let listener = open_listener_in(&server.netns.path(), addr(Ipv4Addr::UNSPECIFIED, 8080))
        .expect("listen in server pod");
    let greeter = Greeter::start(listener, "server");
    let reply = read_all(
        connect_in(
            &client.netns.path(),
            addr(server.ip, 8080),
            SocketOptions::default(),
        )
        .expect("connect"),
    );
    assert!(
        reply.starts_with(&format!("server {}:", client.ip)),
        "server saw {reply}"
    );

    // Same node, through a long-lived worker thread in the neighbour pod.
    let worker = NetnsWorker::spawn(&pod(&cluster, "neighbour").netns.path()).expect("worker");
    let server_addr = addr(server.ip, 8080);
    let stream = worker
        .run(move || weft_netns::tcp_connect(server_addr, SocketOptions::default()))
        .expect("worker alive")
        .expect("connect from neighbour");
    assert!(read_all(stream).starts_with(&format!("server {}:", pod(&cluster, "neighbour").ip)));
    assert_eq!(greeter.stop().len(), 2);

    // The underlay address (where a control plane would run) is reachable from pods.
    let underlay = cluster.underlay();
    let control = Greeter::start(
        open_listener_in(&underlay.netns.path(), addr(underlay.ip, 15010)).expect("listen"),
        "control",
    );
    let reply = read_all(
        connect_in(
            &client.netns.path(),
            addr(underlay.ip, 15010),
            SocketOptions::default(),
        )
        .expect("connect"),
    );
    assert!(
        reply.starts_with(&format!("control {}:", client.ip)),
        "underlay saw {reply}"
    );
    drop(control);
}

#[test]
fn processes_run_inside_pods_with_their_resolv_conf() {
    let (cluster, _dir) = cluster(ClusterSpec::new(&unique_prefix()).node("a").pod("web", "a"));
    let web = pod(&cluster, "web");
    web.netns
        .set_resolv_conf(
            &[IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))],
            &["default.svc.cluster.local"],
        )
        .expect("resolv.conf");
    let out = web
        .netns
        .command("sh")
        .args(["-c", "ip -4 -o addr show eth0; cat /etc/resolv.conf"])
        .output()
        .expect("run in pod");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("inet {}/32", web.ip)), "{text}");
    assert!(
        text.contains("nameserver 10.96.0.10") && text.contains("search default.svc.cluster.local"),
        "{text}"
    );
    let forward = cluster
        .node("a")
        .unwrap()
        .netns
        .command("cat")
        .arg("/proc/sys/net/ipv4/ip_forward")
        .output()
        .expect("cat");
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "1");
}

#[test]
fn cluster_ip_is_dnated_to_ready_endpoints() {
    let spec = ClusterSpec::new(&unique_prefix())
        .node("a")
        .node("b")
        .pod("client", "a")
        .pod("s1", "a")
        .pod("s2", "b");
    let (cluster, _dir) = cluster(spec);
    let s1 = Greeter::start(
        open_listener_in(
            &pod(&cluster, "s1").netns.path(),
            addr(Ipv4Addr::UNSPECIFIED, 8080),
        )
        .unwrap(),
        "s1",
    );
    let s2 = Greeter::start(
        open_listener_in(
            &pod(&cluster, "s2").netns.path(),
            addr(Ipv4Addr::UNSPECIFIED, 9090),
        )
        .unwrap(),
        "s2",
    );
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let rule = |endpoints: Vec<SocketAddrV4>| ServiceRule {
        vip,
        port: 80,
        protocol: Protocol::Tcp,
        endpoints,
    };
    let both = vec![
        SocketAddrV4::new(pod(&cluster, "s1").ip, 8080),
        SocketAddrV4::new(pod(&cluster, "s2").ip, 9090),
    ];
    let nodes = || cluster.state().nodes.iter().map(|n| n.netns.path());
    for _ in 0..2 {
        // twice: syncing is idempotent
        nodes().for_each(|ns| sync_service_rules(&ns, &[rule(both.clone())]).expect("sync"));
    }
    let client = pod(&cluster, "client");
    let call = || {
        read_all(
            connect_in(
                &client.netns.path(),
                addr(vip, 80),
                SocketOptions::default(),
            )
            .expect("connect vip"),
        )
    };
    let replies: Vec<String> = (0..40).map(|_| call()).collect();
    assert!(
        replies
            .iter()
            .all(|r| r.contains(&format!(" {}:", client.ip))),
        "{replies:?}"
    );
    assert!(
        replies.iter().any(|r| r.starts_with("s1")) && replies.iter().any(|r| r.starts_with("s2")),
        "{replies:?}"
    );

    nodes().for_each(|ns| sync_service_rules(&ns, &[rule(both[1..].to_vec())]).expect("sync"));
    assert!((0..10).map(|_| call()).all(|r| r.starts_with("s2")));

    nodes().for_each(|ns| sync_service_rules(&ns, &[rule(Vec::new())]).expect("sync"));
    let refused = connect_in(
        &client.netns.path(),
        addr(vip, 80),
        SocketOptions::default(),
    )
    .expect_err("no endpoints");
    assert!(refused.to_string().contains("ECONNREFUSED"), "{refused}");
    drop((s1, s2));
}

#[test]
fn capture_redirects_outbound_dns_and_inbound_but_not_marked_or_hbone() {
    let (cluster, _dir) = cluster(
        ClusterSpec::new(&unique_prefix())
            .node("a")
            .node("b")
            .pod("app", "a")
            .pod("peer", "b"),
    );
    let (app, peer) = (pod(&cluster, "app"), pod(&cluster, "peer"));
    let (app_ns, peer_ns) = (app.netns.path(), peer.netns.path());
    let config = CaptureConfig::default();
    install_capture(&app_ns, &config).expect("install");
    install_capture(&app_ns, &config).expect("install again (idempotent)");
    assert!(capture_installed(&app_ns).unwrap());
    let reserved = weft_netns::run_in_netns(&app_ns, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports")
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        reserved.trim(),
        "15001,15006,15008,15053",
        "the proxy's ports are never a workload's ephemeral port"
    );

    let any = |port| addr(Ipv4Addr::UNSPECIFIED, port);
    let outbound = open_listener_in(&app_ns, any(config.outbound_port)).unwrap();
    let inbound = open_listener_in(&app_ns, any(config.inbound_port)).unwrap();
    let hbone = open_listener_in(&app_ns, any(config.hbone_port)).unwrap();
    let peer_server = Greeter::start(open_listener_in(&peer_ns, any(7000)).unwrap(), "peer");

    // Outbound: the app's connection lands on 15001 and remembers where it was going.
    let _app_conn = connect_in(&app_ns, addr(peer.ip, 7000), SocketOptions::default())
        .expect("captured connect");
    let (captured, _) = outbound
        .accept()
        .expect("outbound listener gets the connection");
    assert_eq!(
        original_dst(&captured).expect("SO_ORIGINAL_DST"),
        SocketAddrV4::new(peer.ip, 7000)
    );

    // The proxy's own (marked) connection is not redirected: it reaches the peer.
    let marked = SocketOptions {
        mark: Some(config.bypass_mark),
        transparent_source: None,
    };
    let reply = read_all(connect_in(&app_ns, addr(peer.ip, 7000), marked).expect("bypass connect"));
    assert!(reply.starts_with(&format!("peer {}:", app.ip)), "{reply}");

    // Inbound plaintext goes to 15006; HBONE (15008) is left alone.
    let _in_conn = connect_in(&peer_ns, addr(app.ip, 9000), SocketOptions::default())
        .expect("inbound connect");
    let (redirected, from) = inbound
        .accept()
        .expect("inbound listener gets the connection");
    assert_eq!(from.ip(), IpAddr::V4(peer.ip));
    assert_eq!(
        original_dst(&redirected).unwrap(),
        SocketAddrV4::new(app.ip, 9000)
    );
    let _hbone_conn = connect_in(
        &peer_ns,
        addr(app.ip, config.hbone_port),
        SocketOptions::default(),
    )
    .expect("hbone");
    let (_, from) = hbone.accept().expect("hbone listener gets it directly");
    assert_eq!(from.ip(), IpAddr::V4(peer.ip));

    // DNS to any server is answered by the UDP socket on 127.0.0.1:15053, looking like
    // the server.
    let dns = open_udp_in(&app_ns, addr(Ipv4Addr::LOCALHOST, config.dns_port)).unwrap();
    let resolver = addr(Ipv4Addr::new(10, 96, 0, 10), 53);
    let client = weft_netns::run_in_netns(&app_ns, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect(resolver)?;
        s.send(b"query")?;
        Ok::<_, std::io::Error>(s)
    })
    .unwrap()
    .expect("udp client");
    let mut buf = [0u8; 64];
    dns.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (n, from) = dns
        .recv_from(&mut buf)
        .expect("dns proxy receives the query");
    assert_eq!(&buf[..n], b"query");
    dns.send_to(b"answer", from).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = client
        .recv(&mut buf)
        .expect("connected client accepts the answer as from 10.96.0.10:53");
    assert_eq!(&buf[..n], b"answer");

    // Removing the capture restores direct connections.
    remove_capture(&app_ns, &config).expect("remove");
    remove_capture(&app_ns, &config).expect("remove again");
    assert!(!capture_installed(&app_ns).unwrap());
    let reply = read_all(
        connect_in(&app_ns, addr(peer.ip, 7000), SocketOptions::default()).expect("direct"),
    );
    assert!(reply.starts_with("peer "), "{reply}");
    drop(peer_server);
}

#[test]
fn transparent_inbound_connect_shows_the_callers_ip_to_the_workload() {
    let (cluster, _dir) = captured_pair("workload", "caller");
    let (workload, caller) = (pod(&cluster, "workload"), pod(&cluster, "caller"));
    let ns = workload.netns.path();
    let config = CaptureConfig::default();
    let app = Greeter::start(
        open_listener_in(&ns, addr(Ipv4Addr::UNSPECIFIED, 8080)).unwrap(),
        "workload",
    );
    let proxy = open_listener_in(&ns, addr(Ipv4Addr::UNSPECIFIED, config.inbound_port)).unwrap();

    let mut caller_conn = connect_in(
        &caller.netns.path(),
        addr(workload.ip, 8080),
        SocketOptions::default(),
    )
    .unwrap();
    let (mut downstream, from) = proxy.accept().expect("proxy gets the inbound connection");
    let target = original_dst(&downstream).expect("original dst");
    // The proxy connects to the workload as the caller (any source port).
    let opts = SocketOptions {
        mark: Some(config.bypass_mark),
        transparent_source: Some(SocketAddr::new(from.ip(), 0)),
    };
    let upstream = connect_in(&ns, SocketAddr::V4(target), opts).expect("transparent connect");
    let answer = read_all(upstream);
    assert!(
        answer.starts_with(&format!("workload {}:", caller.ip)),
        "workload saw {answer}"
    );
    downstream.write_all(answer.as_bytes()).unwrap();
    downstream.shutdown(Shutdown::Write).unwrap();
    let mut relayed = String::new();
    caller_conn
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    caller_conn.read_to_string(&mut relayed).unwrap();
    assert_eq!(relayed, answer);
    drop(app);
}

#[test]
fn teardown_removes_namespaces_processes_rules_and_state() {
    require_privileges();
    let root_links_before = root_links();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(&prefix)
        .node("a")
        .node("b")
        .pod("p1", "a")
        .pod("p2", "b");
    let mut cluster = LocalCluster::create(&spec, dir.path()).expect("create");
    let p1 = pod(&cluster, "p1").clone();
    install_capture(&p1.netns.path(), &CaptureConfig::default()).unwrap();
    p1.netns
        .set_resolv_conf(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], &[])
        .unwrap();
    let mut sleeper = p1
        .netns
        .command("sleep")
        .arg("600")
        .spawn()
        .expect("spawn in pod");
    cluster.add_pod("late", "b").expect("add pod at runtime");
    cluster.remove_pod("p2").expect("remove pod");
    assert!(!pod_exists(&prefix, "p2"));
    // Simulate a crash: the guard does nothing, `weft down` cleans up from the state file.
    cluster.disarm();
    let state_file = cluster.state_file().to_owned();
    drop(cluster);
    assert!(state_file.exists());
    teardown(dir.path(), &prefix).expect("teardown");

    let status = sleeper.wait().expect("sleeper reaped");
    assert!(!status.success(), "process in the pod was stopped");
    let left: Vec<String> = list_netns()
        .unwrap()
        .into_iter()
        .map(|n| n.name().to_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(
        !std::path::Path::new("/etc/netns")
            .join(p1.netns.name())
            .exists()
    );
    assert!(!state_file.exists());
    let new_links: Vec<String> = root_links()
        .into_iter()
        .filter(|l| !root_links_before.contains(l))
        .collect();
    assert!(
        new_links.is_empty(),
        "links appeared in the root namespace: {new_links:?}"
    );
    teardown(dir.path(), &prefix).expect("second teardown is a no-op");

    // A corrupt state file does not stop `teardown` from removing the prefix's namespaces.
    let mut crashed = LocalCluster::create(&spec, dir.path()).expect("create again");
    crashed.disarm();
    std::fs::write(crashed.state_file(), b"{ truncated").unwrap();
    teardown(dir.path(), &prefix).expect("teardown despite a corrupt state file");
    assert!(
        !list_netns()
            .unwrap()
            .iter()
            .any(|n| n.name().starts_with(&format!("{prefix}-")))
    );
    assert!(!crashed.state_file().exists());

    // The prefix is free again, and the drop guard cleans up too.
    let again = LocalCluster::create(&spec, dir.path()).expect("create after teardown");
    drop(again);
    assert!(
        !list_netns()
            .unwrap()
            .iter()
            .any(|n| n.name().starts_with(&format!("{prefix}-")))
    );
}

fn pod_exists(prefix: &str, pod: &str) -> bool {
    list_netns()
        .unwrap()
        .iter()
        .any(|n| n.name() == format!("{prefix}-p-{pod}"))
}

fn root_links() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .collect()
}

#[tokio::test]
async fn worker_sockets_connect_on_the_async_runtime() {
    let (cluster, _dir) = cluster(
        ClusterSpec::new(&unique_prefix())
            .node("a")
            .pod("c", "a")
            .pod("s", "a"),
    );
    let (c, s) = (pod(&cluster, "c"), pod(&cluster, "s"));
    let greeter = Greeter::start(
        open_listener_in(&s.netns.path(), addr(s.ip, 80)).unwrap(),
        "s",
    );
    let worker = NetnsWorker::spawn(&c.netns.path()).expect("worker");
    let peer = addr(s.ip, 80);
    for _ in 0..3 {
        let socket = worker
            .run_async(move || weft_netns::tcp_socket(peer, SocketOptions::default()))
            .await
            .expect("worker alive")
            .expect("socket");
        socket.set_nonblocking(true).unwrap();
        let mut stream = tokio::net::TcpSocket::from_std_stream(socket)
            .connect(peer)
            .await
            .expect("async connect");
        let mut reply = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut reply)
            .await
            .unwrap();
        assert!(reply.starts_with(&format!("s {}:", c.ip)), "{reply}");
    }
    assert_eq!(greeter.stop().len(), 3);
}

/// The SYNs the hold rules in `netns` dropped on the way out.
fn held_syns(netns: &std::path::Path) -> u64 {
    let listing = weft_netns::run_in_netns(netns, || {
        std::process::Command::new("nft")
            .args(["list", "chain", "inet", "weft_capture", "hold_output"])
            .output()
    })
    .unwrap()
    .expect("nft runs");
    let text = String::from_utf8_lossy(&listing.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|word| *word != "packets")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_hold_keeps_a_new_connection_waiting_until_the_capture_takes_it() {
    let (cluster, _dir) = cluster(
        ClusterSpec::new(&unique_prefix())
            .node("a")
            .pod("app", "a")
            .pod("peer", "a"),
    );
    let (app, peer) = (pod(&cluster, "app"), pod(&cluster, "peer"));
    let (app_ns, peer_ns) = (app.netns.path(), peer.netns.path());
    let config = CaptureConfig::default();
    let any = |port| addr(Ipv4Addr::UNSPECIFIED, port);
    let peer_server = Greeter::start(open_listener_in(&peer_ns, any(7000)).unwrap(), "peer");
    install_hold(&app_ns, &config).expect("hold");
    install_hold(&app_ns, &config).expect("hold again (idempotent)");

    // The proxy's own (marked) connections pass the hold.
    let marked = SocketOptions {
        mark: Some(config.bypass_mark),
        transparent_source: None,
    };
    let reply = read_all(connect_in(&app_ns, addr(peer.ip, 7000), marked).expect("bypass"));
    assert!(reply.starts_with("peer "), "{reply}");

    // The app's connection waits: its SYN is dropped (and counted), the kernel retries.
    let target = addr(peer.ip, 7000);
    let (done, finished) = std::sync::mpsc::channel();
    let waiting_ns = app_ns.clone();
    std::thread::spawn(move || {
        let connected = connect_in(&waiting_ns, target, SocketOptions::default());
        let _ = done.send(connected.map(drop).map_err(|e| e.to_string()));
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held_syns(&app_ns) == 0 {
        assert!(std::time::Instant::now() < deadline, "no SYN was held");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(finished.try_recv().is_err(), "the connection must wait");

    // The capture replaces the hold: the retried SYN reaches the outbound listener.
    let outbound = open_listener_in(&app_ns, any(config.outbound_port)).unwrap();
    install_capture(&app_ns, &config).expect("capture replaces the hold");
    let (accepted, caught) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = accepted.send(outbound.accept().map(|(conn, _)| conn));
    });
    let conn = caught
        .recv_timeout(Duration::from_secs(15))
        .expect("the retried connection is captured")
        .expect("accept");
    assert_eq!(
        original_dst(&conn).unwrap(),
        SocketAddrV4::new(peer.ip, 7000)
    );
    remove_capture(&app_ns, &config).expect("remove");
    assert!(!capture_installed(&app_ns).unwrap());
    drop(conn);
    let _ = finished.recv_timeout(Duration::from_secs(5));
    peer_server.stop();
}
