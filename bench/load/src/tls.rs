//! TLS for the HTTP modes (`--tls-ca FILE --server-name NAME`): a rustls client that
//! verifies the server's certificate against the CA in `FILE` for `NAME` (sent as SNI),
//! offers only the X25519 key exchange and never resumes a session, so every new
//! connection is the same full handshake whatever the server prefers: what a TLS
//! handshakes-per-second figure must count. The crypto provider is aws-lc-rs, as in weft.

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::CertificateDer;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

/// A TLS connection over TCP, handshake done.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Where and how to speak TLS: the client config and the name the server must prove.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsTarget {
    /// Trusts the CA certificates of the PEM file `ca_file`, expects `server_name`.
    pub(crate) fn new(ca_file: &Path, server_name: &str) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "--tls-ca {}: no certificate in the file",
                ca_file.display()
            ));
        }
        // One key exchange group, so every server under test does the same work per
        // handshake (rustls and BoringSSL would otherwise pick X25519MLKEM768 or X25519
        // by their own preferences).
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("--server-name {server_name:?}: {e}"))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Connects to `addr` and completes a full handshake.
    pub(crate) fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream> {
        let mut tcp = crate::dial(addr)?;
        let mut conn = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(StreamOwned::new(conn, tcp))
    }

    /// What a handshake with `addr` negotiates: version, cipher suite and key exchange
    /// group (`TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`), so results say what was measured.
    pub(crate) fn negotiated(&self, addr: SocketAddr) -> io::Result<String> {
        let stream = self.connect(addr)?;
        let conn = &stream.conn;
        let name = |v: Option<String>| v.unwrap_or_else(|| "?".to_owned());
        Ok(format!(
            "{} {} {}",
            name(conn.protocol_version().map(|v| format!("{v:?}"))),
            name(
                conn.negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
            ),
            name(
                conn.negotiated_key_exchange_group()
                    .map(|g| format!("{:?}", g.name()))
            )
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, Issuer, KeyPair};
    use rustls::ServerConfig;
    use rustls::pki_types::PrivateKeyDer;
    use std::net::TcpListener;

    /// A test CA and a server certificate for `name` it signed: (CA PEM, server config).
    pub(crate) fn ca_and_server(name: &str) -> (String, Arc<ServerConfig>) {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server cert");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("server config");
        (ca.pem(), Arc::new(config))
    }

    /// A TLS server on loopback that runs `serve` on each decrypted connection; counts the
    /// handshakes it completed and how many of them resumed a session.
    pub(crate) fn tls_server(
        config: Arc<ServerConfig>,
        serve: fn(StreamOwned<rustls::ServerConnection, TcpStream>),
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let resumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = resumed.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut tcp) = stream else { return };
                let config = config.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut conn = rustls::ServerConnection::new(config).expect("server conn");
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut tcp).is_err() {
                            return;
                        }
                    }
                    if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    serve(StreamOwned::new(conn, tcp));
                });
            }
        });
        (addr, resumed)
    }

    #[test]
    fn a_server_with_another_name_is_refused() {
        let (ca, config) = ca_and_server("right.bench.test");
        let (addr, _) = tls_server(config, |_| {});
        let dir = std::env::temp_dir().join(format!("weft-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca).expect("write CA");
        let right = TlsTarget::new(&ca_file, "right.bench.test").expect("target");
        let negotiated = right.negotiated(addr).expect("handshake");
        assert!(negotiated.starts_with("TLSv1_3 TLS13_"), "{negotiated}");
        assert!(negotiated.ends_with(" X25519"), "{negotiated}");
        let wrong = TlsTarget::new(&ca_file, "wrong.bench.test").expect("target");
        let err = wrong.connect(addr).expect_err("name mismatch must fail");
        assert!(err.to_string().contains("certificate"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_file_without_certificates_is_an_error() {
        let err = TlsTarget::new(Path::new("/nonexistent/ca.pem"), "x.test").expect_err("no file");
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
