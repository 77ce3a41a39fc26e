//! TLS origination towards backends (BackendTLSPolicy), shared by the waypoint and the
//! gateway: the `weft.l7.v1.BackendTls` entries of their resource, compiled once into rustls
//! client configurations ([`BackendTlsSet::compile`]) and looked up per backend service and
//! port ([`BackendTlsSet::find`]).
//!
//! The server certificate must chain to the entry's CA bundle (or, with `system_roots`, to
//! the platform's roots read from `SSL_CERT_FILE` or the distribution's bundle file) and
//! carry one of the entry's `subject_alt_names` (DNS names or IP addresses), or its
//! `hostname` when none are listed. The SNI sent is always `hostname`. A gateway's entries
//! may carry its client certificate (`spec.tls.backend.clientCertificateRef`), presented
//! when the backend asks for one. An entry that cannot
//! be compiled (no usable CA, a malformed hostname) is kept as broken: requests to that
//! backend fail (503 `UF`) rather than go out in plain text.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weft_identity::verify::CheckServerCert;
use weft_proto::l7 as pb;

/// Files where Linux distributions keep the system's trusted roots (PEM), tried in order
/// after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The compiled TLS settings of every backend of a resource.
#[derive(Debug, Default, Clone)]
pub struct BackendTlsSet {
    /// By service key: (port, 0 for every port; the settings).
    by_service: HashMap<String, Vec<(u16, Arc<BackendTls>)>>,
}

/// How to reach one backend over TLS, or why it cannot be reached.
#[derive(Debug)]
pub struct BackendTls {
    /// `<namespace>/<name>` of the BackendTLSPolicy.
    pub source: String,
    /// SNI sent.
    pub hostname: String,
    /// A key of the settings' content: pooled connections are shared only by requests
    /// with the same settings.
    pub key: u64,
    compiled: Result<Compiled, String>,
}

#[derive(Debug)]
struct Compiled {
    server_name: ServerName<'static>,
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

/// A TLS handshake with a backend failed.
#[derive(Debug, thiserror::Error)]
#[error("TLS to backend (BackendTLSPolicy {source_policy}, hostname {hostname}): {reason}")]
pub struct BackendTlsError {
    /// The policy.
    pub source_policy: String,
    /// The SNI.
    pub hostname: String,
    /// What went wrong.
    pub reason: String,
}

impl BackendTlsSet {
    /// Compiles every entry; a broken one is kept (it fails its requests) and logged.
    #[must_use]
    pub fn compile(entries: &[pb::BackendTls]) -> Self {
        let mut by_service: HashMap<String, Vec<(u16, Arc<BackendTls>)>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let tls = BackendTls::compile(entry);
            if let Err(reason) = &tls.compiled {
                tracing::warn!(policy = %entry.source, service = %entry.service, field = %format!("backend_tls[{index}]"),
                    %reason, "backend TLS settings unusable: requests to this backend fail");
            }
            let port = u16::try_from(entry.port).unwrap_or(u16::MAX);
            by_service
                .entry(entry.service.clone())
                .or_default()
                .push((port, Arc::new(tls)));
        }
        Self { by_service }
    }

    /// The settings for `port` of the service `key`: an entry naming the port wins over one
    /// for every port.
    #[must_use]
    pub fn find(&self, service: &str, port: u16) -> Option<&Arc<BackendTls>> {
        let entries = self.by_service.get(service)?;
        let exact = entries.iter().find(|(p, _)| *p == port);
        exact
            .or_else(|| entries.iter().find(|(p, _)| *p == 0))
            .map(|(_, tls)| tls)
    }

    /// Whether no backend has TLS settings.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }
}

impl BackendTls {
    fn compile(entry: &pb::BackendTls) -> Self {
        let mut hasher = DefaultHasher::new();
        (
            &entry.source,
            &entry.hostname,
            &entry.ca_bundle,
            entry.system_roots,
            &entry.subject_alt_names,
            entry.client_certificate.as_ref().map(|c| &c.cert_chain),
        )
            .hash(&mut hasher);
        Self {
            source: entry.source.clone(),
            hostname: entry.hostname.clone(),
            // 0 is a plain connection's key.
            key: hasher.finish() | 1,
            compiled: compile(entry),
        }
    }

    /// Wraps `io` in TLS towards the backend, offering ALPN `h2` or `http/1.1`.
    ///
    /// # Errors
    /// The settings are unusable or the handshake failed (e.g. the certificate does not
    /// verify).
    pub async fn connect<IO>(&self, io: IO, h2: bool) -> Result<TlsStream<IO>, BackendTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let error = |reason: String| BackendTlsError {
            source_policy: self.source.clone(),
            hostname: self.hostname.clone(),
            reason,
        };
        let compiled = self.compiled.as_ref().map_err(|r| error(r.clone()))?;
        let config = if h2 { &compiled.h2 } else { &compiled.h1 };
        TlsConnector::from(Arc::clone(config))
            .connect(compiled.server_name.clone(), io)
            .await
            .map_err(|e| error(e.to_string()))
    }
}

fn compile(entry: &pb::BackendTls) -> Result<Compiled, String> {
    let server_name = ServerName::try_from(entry.hostname.clone())
        .map_err(|e| format!("hostname {:?}: {e}", entry.hostname))?;
    let roots = roots(entry)?;
    let provider = weft_identity::tls::crypto_provider();
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| format!("CA bundle: {e}"))?;
    let names = accepted_names(entry)?;
    let verifier = weft_identity::verify::server_verifier(NamesVerifier { webpki, names });
    let client = (entry.client_certificate.as_ref())
        .map(crate::gateway::sni::chain_and_key)
        .transpose()
        .map_err(|e| format!("client certificate: {e}"))?;
    let config = |alpn: &[u8]| -> Result<Arc<ClientConfig>, String> {
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match &client {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("client certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    };
    Ok(Compiled {
        server_name,
        h1: config(b"http/1.1")?,
        h2: config(b"h2")?,
    })
}

/// The names the server certificate may carry: the subject alternative names when listed
/// (URIs cannot be checked by the verifier and are skipped), else the hostname.
fn accepted_names(entry: &pb::BackendTls) -> Result<Vec<ServerName<'static>>, String> {
    if entry.subject_alt_names.is_empty() {
        let name = ServerName::try_from(entry.hostname.clone()).map_err(|e| e.to_string())?;
        return Ok(vec![name]);
    }
    let names: Vec<_> = entry
        .subject_alt_names
        .iter()
        .filter(|san| !san.contains("://"))
        .filter_map(|san| ServerName::try_from(san.clone()).ok())
        .collect();
    if names.is_empty() {
        return Err(format!(
            "subject_alt_names {:?}: none is a DNS name or IP address weft can verify",
            entry.subject_alt_names
        ));
    }
    Ok(names)
}

fn roots(entry: &pb::BackendTls) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    if entry.system_roots {
        store.extend(system_roots()?.roots.iter().cloned());
    }
    if !entry.ca_bundle.is_empty() {
        let certs = CertificateDer::pem_slice_iter(entry.ca_bundle.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ca_bundle: {e}"))?;
        let (added, _ignored) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err("ca_bundle: no usable CA certificate".into());
        }
    }
    if store.is_empty() {
        return Err("no CA: ca_bundle is empty and system roots are not requested".into());
    }
    Ok(store)
}

/// The platform's trusted roots, read once.
fn system_roots() -> Result<&'static RootCertStore, String> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            let candidates = from_env
                .into_iter()
                .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from));
            for path in candidates {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let mut store = RootCertStore::empty();
                let certs = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok);
                store.add_parsable_certificates(certs);
                if !store.is_empty() {
                    return Ok(store);
                }
            }
            Err("system roots: no CA bundle found (SSL_CERT_FILE or /etc/ssl/certs)".into())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// WebPKI chain verification, accepting the certificate when it is valid for any of the
/// configured names (whatever name was sent as SNI).
#[derive(Debug)]
struct NamesVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl CheckServerCert for NamesVerifier {
    fn check_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no accepted name".into());
        for name in &self.names {
            match self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service: &str, port: u32, ca: &str) -> pb::BackendTls {
        pb::BackendTls {
            service: service.into(),
            port,
            hostname: "api.example.com".into(),
            ca_bundle: ca.into(),
            source: "ns/policy".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_port_entry_wins_over_an_every_port_one() {
        let set = BackendTlsSet::compile(&[entry("ns/a", 0, ""), entry("ns/a", 443, "")]);
        let any = set.find("ns/a", 80).expect("every port");
        let exact = set.find("ns/a", 443).expect("port 443");
        assert!(!Arc::ptr_eq(any, exact));
        assert!(set.find("ns/b", 443).is_none());
    }

    #[test]
    fn an_entry_without_ca_is_kept_broken() {
        let set = BackendTlsSet::compile(&[entry("ns/a", 0, "")]);
        let tls = set.find("ns/a", 1).expect("kept");
        let reason = tls.compiled.as_ref().expect_err("no CA");
        assert!(reason.contains("no CA"), "{reason}");
    }

    /// A CA (PEM) and a server configuration for a leaf naming `names`.
    fn server(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        (ca_pem, Arc::new(config))
    }

    async fn handshake(entry: &pb::BackendTls, server: Arc<rustls::ServerConfig>) -> bool {
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let accept = tokio::spawn(async move {
            tokio_rustls::TlsAcceptor::from(server)
                .accept(server_io)
                .await
                .is_ok()
        });
        let set = BackendTlsSet::compile(std::slice::from_ref(entry));
        let tls = set.find(&entry.service, 443).expect("entry");
        let connected = tls.connect(client_io, false).await.is_ok();
        let _ = accept.await;
        connected
    }

    #[tokio::test]
    async fn subject_alt_names_replace_the_hostname_check() {
        let (ca, config) = server(&["backend.internal"]);
        let mut policy = entry("ns/a", 443, &ca);
        assert!(
            !handshake(&policy, Arc::clone(&config)).await,
            "hostname must match"
        );
        policy.subject_alt_names = vec!["backend.internal".into()];
        assert!(
            handshake(&policy, Arc::clone(&config)).await,
            "a listed SAN is accepted"
        );
        let (_, other_ca_config) = server(&["backend.internal"]);
        assert!(
            !handshake(&policy, other_ca_config).await,
            "another CA is refused"
        );
    }

    #[test]
    fn uri_only_names_are_refused() {
        let mut only_uri = entry("ns/a", 0, "");
        only_uri.subject_alt_names = vec!["spiffe://td/ns/a/sa/b".into()];
        assert!(accepted_names(&only_uri).is_err());
    }
}
