//! Helpers shared by the identity integration tests: issuing certificates from an in-memory
//! CA and running real TLS handshakes over loopback TCP.
#![allow(dead_code)]

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_identity::{
    CertRequest, CertificateAuthority, CertificateProvider, LocalCaProvider, SpiffeId,
    WorkloadCert, key_and_csr, peer_identity,
};

pub fn id(namespace: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", namespace, sa).expect("valid id")
}

/// Issues a certificate for `identity` from `ca` the way a node proxy would.
pub async fn issue(ca: &Arc<CertificateAuthority>, identity: &SpiffeId) -> WorkloadCert {
    let (key, csr_pem) = key_and_csr(identity).expect("key and csr");
    let request = CertRequest {
        identity: identity.clone(),
        csr_pem,
        validity: Duration::from_secs(3600),
        dns_names: Vec::new(),
    };
    let chain = LocalCaProvider::new(ca.clone())
        .fetch(&request)
        .await
        .expect("local CA signs");
    WorkloadCert::from_ca_response(identity.clone(), key, &chain).expect("usable cert")
}

/// What each side of a handshake learned about the other.
#[derive(Debug)]
pub struct Outcome {
    /// The server identity the client verified (or the client's error).
    pub client_saw: Result<SpiffeId, String>,
    /// The client identity the server recorded (or the server's error).
    pub server_saw: Result<SpiffeId, String>,
}

/// Runs one TLS handshake over a real loopback TCP connection. The server writes two bytes
/// after its handshake; the client reads them, so a server-side rejection of the client
/// certificate is seen by the client too (TLS 1.3 finishes the client side first).
pub async fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Outcome {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let client_id = peer_identity(conn.peer_certificates()).map_err(|e| e.to_string())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(client_id)
    });
    let client_saw = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(IpAddr::from(Ipv4Addr::LOCALHOST).into());
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ok");
        peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())
    }
    .await;
    let server_saw = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .expect("server side finishes")
        .expect("server task does not panic");
    Outcome {
        client_saw,
        server_saw,
    }
}
