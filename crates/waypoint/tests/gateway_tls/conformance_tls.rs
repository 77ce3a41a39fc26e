//! The Gateway API conformance profile GATEWAY-TLS's extended TLSRoute features through the
//! running gateway: `TLSRouteModeTerminate` (a TLS listener in `Terminate` mode ends TLS
//! with its own certificate and relays the plaintext to the TLSRoute's backend) and
//! `TLSRouteModeMixed` (a `Passthrough` and a `Terminate` listener on one port, told apart
//! by SNI). The terminated backend is a plain TCP echo, the passed-through one a TLS server
//! with its own CA: which certificate a client is shown says which path it took.

use std::net::SocketAddr;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weft_proto::l7::{self as pb, listener::Protocol, listener::TlsMode};

use crate::harness::{
    Fixture, Net, ServiceSpec, WAIT, backend, certificate, gateway_resource, l4_route, until,
};
use crate::pki::{self, TestCa};

const PORT: u16 = 8443;
const ECHO_PORT: u16 = 7000;
const TLS_BACKEND_PORT: u16 = 9443;

/// A TLS listener on [`PORT`] for `hostname` in `mode` with one TLSRoute to `to`.
fn tls_listener(name: &str, hostname: &str, mode: TlsMode, to: pb::Backend) -> pb::Listener {
    pb::Listener {
        name: name.into(),
        port: u32::from(PORT),
        protocol: Protocol::Tls.into(),
        tls_mode: mode.into(),
        hostname: hostname.into(),
        l4_routes: vec![l4_route(name, &[hostname], vec![to])],
        ..Default::default()
    }
}

/// A `Terminate` listener for `hostname` with a certificate of `ca`, relaying to the echo.
fn terminating(hostname: &str, ca: &TestCa) -> pb::Listener {
    let mut listener = tls_listener(
        "term",
        hostname,
        TlsMode::Terminate,
        backend("echo", ECHO_PORT),
    );
    listener.certificates = vec![certificate("term-cert", &ca.leaf(&[hostname]))];
    listener
}

/// Over TLS to `addr` naming `sni` and trusting `ca`: the CN of the certificate shown and
/// what comes back for `payload`: as many bytes as were sent (an echo), or everything
/// until the server closes (`until_close`).
async fn exchange(
    addr: SocketAddr,
    sni: &str,
    ca: &TestCa,
    payload: &[u8],
    until_close: bool,
) -> Option<(String, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut tls = TlsConnector::from(ca.client_config(&[]))
        .connect(name, tcp)
        .await
        .ok()?;
    let cn = pki::peer_common_name(tls.get_ref().1.peer_certificates()?);
    tls.write_all(payload).await.ok()?;
    let mut back = vec![0; payload.len()];
    let read = async {
        if until_close {
            back.clear();
            tls.read_to_end(&mut back).await.map(|_| ())
        } else {
            tls.read_exact(&mut back).await.map(|_| ())
        }
    };
    tokio::time::timeout(WAIT, read).await.ok()?.ok()?;
    Some((cn, back))
}

fn echo_service() -> ServiceSpec {
    ServiceSpec {
        name: "echo",
        n: 1,
        port: ECHO_PORT,
    }
}

#[tokio::test]
async fn tlsroute_mode_terminate_relays_the_decrypted_stream_to_the_route_backend() {
    let net = Net(weft_testkit::loopback_net());
    let (_, _echo) = weft_testkit::tcp_echo(net.backend(1, ECHO_PORT)).await;
    let ca = TestCa::new("gateway CA");
    let resource = gateway_resource(vec![terminating("term.example.com", &ca)]);
    let _fixture = Fixture::start(net, &[echo_service()], &resource).await;
    let (cn, back) = until("the terminated stream to be echoed", || {
        exchange(
            net.gateway(PORT),
            "term.example.com",
            &ca,
            b"plain after TLS",
            false,
        )
    })
    .await;
    assert_eq!(cn, "term.example.com", "the gateway's own certificate");
    assert_eq!(
        back, b"plain after TLS",
        "the backend received the plaintext"
    );
}

#[tokio::test]
async fn tlsroute_mode_mixed_terminate_and_passthrough_share_a_port_by_sni() {
    let net = Net(weft_testkit::loopback_net());
    let (_, _echo) = weft_testkit::tcp_echo(net.backend(1, ECHO_PORT)).await;
    let backend_ca = TestCa::new("backend CA");
    let backend_tls = pki::server_config(&backend_ca.leaf(&["pass.example.com"]));
    let (_, stop) = pki::tls_echo(net.backend(2, TLS_BACKEND_PORT), "pass", backend_tls).await;
    let _stop = stop.drop_guard();
    let gateway_ca = TestCa::new("gateway CA");
    let services = [
        echo_service(),
        ServiceSpec {
            name: "pass",
            n: 2,
            port: TLS_BACKEND_PORT,
        },
    ];
    let resource = gateway_resource(vec![
        terminating("term.example.com", &gateway_ca),
        tls_listener(
            "pass",
            "pass.example.com",
            TlsMode::Passthrough,
            backend("pass", TLS_BACKEND_PORT),
        ),
    ]);
    let _fixture = Fixture::start(net, &services, &resource).await;
    let addr = net.gateway(PORT);

    let (cn, back) = until("the terminated stream to be echoed", || {
        exchange(addr, "term.example.com", &gateway_ca, b"terminated", false)
    })
    .await;
    assert_eq!(
        (cn.as_str(), back.as_slice()),
        ("term.example.com", b"terminated".as_slice())
    );
    // Passthrough: the backend's own certificate (from a CA the gateway never saw), and
    // its HTTP answer through the untouched TLS stream.
    let request = b"GET /mixed HTTP/1.1\r\nhost: pass.example.com\r\nconnection: close\r\n\r\n";
    let (cn, back) = until("the passed-through stream to be answered", || {
        exchange(addr, "pass.example.com", &backend_ca, request, true)
    })
    .await;
    assert_eq!(cn, "pass.example.com");
    let answer = String::from_utf8_lossy(&back);
    assert!(answer.ends_with("pass - /mixed"), "{answer}");
    // Neither listener takes another name: no certificate is shown to it.
    let other = exchange(addr, "other.example.com", &gateway_ca, b"x", false).await;
    assert!(other.is_none(), "{other:?}");
}
