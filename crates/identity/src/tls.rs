//! rustls configurations for HBONE: TLS 1.3 only, mutual authentication, ALPN `h2`, chains
//! checked against a [`TrustBundle`] with webpki, and the peer's SPIFFE URI SAN checked
//! against the identities the caller expects (client side) or the accepted trust domains
//! (server side, which then records the client identity with [`peer_identity`]).

use crate::verify::{CheckClientCert, CheckServerCert, client_verifier, server_verifier};
use crate::{SpiffeId, TrustBundle, WorkloadCert};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerified;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerified;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, OtherError, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};

/// ALPN protocol spoken inside HBONE.
pub const ALPN_H2: &[u8] = b"h2";

/// The one crypto provider weft uses (aws-lc-rs), shared by every config this crate builds.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("TLS 1.3 is not available from the crypto provider: {0}")]
    Protocol(rustls::Error),
    #[error("trust bundle has no usable root: {0}")]
    Verifier(String),
}

/// Why a peer's identity could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdentityError {
    #[error("peer presented no certificate")]
    NoCertificate,
    #[error("peer certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("peer certificate has no SPIFFE URI SAN")]
    NoSpiffeId,
    #[error("peer certificate has {0} SPIFFE URI SANs; exactly one is required")]
    SeveralSpiffeIds(usize),
    #[error("peer certificate SPIFFE id is malformed: {0}")]
    Malformed(#[from] crate::SpiffeIdError),
    #[error("peer identity {actual} is not one of the expected {expected:?}")]
    Unexpected {
        actual: String,
        expected: Vec<String>,
    },
    #[error("peer identity {actual} is from a trust domain this proxy does not accept")]
    UntrustedDomain { actual: String },
}

/// What weft needs to know about a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafInfo {
    /// The single SPIFFE URI SAN, if there is exactly one and it parses.
    pub spiffe_id: Option<SpiffeId>,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    pub serial: Vec<u8>,
    pub is_ca: bool,
}

/// Parses the fields of a certificate weft cares about.
pub fn leaf_info(der: &CertificateDer<'_>) -> Result<LeafInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|err| format!("not an X.509 certificate: {err}"))?;
    let mut uri_sans = Vec::new();
    let mut dns_sans = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|err| format!("bad subjectAltName: {err}"))?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri_sans.push((*uri).to_owned()),
            x509_parser::extensions::GeneralName::DNSName(dns) => dns_sans.push((*dns).to_owned()),
            _ => {}
        }
    }
    Ok(LeafInfo {
        spiffe_id: single_spiffe_id(&uri_sans).ok(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.raw_serial().to_vec(),
        is_ca: cert.is_ca(),
        uri_sans,
        dns_sans,
    })
}

fn single_spiffe_id(uri_sans: &[String]) -> Result<SpiffeId, PeerIdentityError> {
    let mut spiffe = uri_sans.iter().filter(|uri| uri.starts_with("spiffe://"));
    match (spiffe.next(), spiffe.count()) {
        (None, _) => Err(PeerIdentityError::NoSpiffeId),
        (Some(uri), 0) => Ok(uri.parse()?),
        (Some(_), more) => Err(PeerIdentityError::SeveralSpiffeIds(more + 1)),
    }
}

/// The SPIFFE identity in a certificate's URI SAN (exactly one required).
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, PeerIdentityError> {
    let info = leaf_info(cert).map_err(PeerIdentityError::Unparsable)?;
    single_spiffe_id(&info.uri_sans)
}

/// The identity of a TLS peer, from `conn.peer_certificates()` of a finished handshake.
pub fn peer_identity(
    peer_certificates: Option<&[CertificateDer<'_>]>,
) -> Result<SpiffeId, PeerIdentityError> {
    let leaf = peer_certificates
        .and_then(<[_]>::first)
        .ok_or(PeerIdentityError::NoCertificate)?;
    identity_of(leaf)
}

fn identity_error(err: PeerIdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

/// Checks a server's chain against the bundle's current roots, then its name: a SPIFFE id of
/// the expected set (HBONE), or, when none is expected, the DNS name the client asked for
/// (the control plane's serving certificate).
#[derive(Debug)]
struct SpiffeServerVerifier {
    trust: TrustBundle,
    expected: ServerIdentity,
}

/// What names a server's certificate must carry.
#[derive(Debug)]
enum ServerIdentity {
    /// One of these SPIFFE ids (an HBONE peer).
    Spiffe(Vec<SpiffeId>),
    /// The DNS name the client connects to (the control plane).
    DnsName,
}

impl CheckServerCert for SpiffeServerVerifier {
    fn check_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.trust.current().store,
            intermediates,
            now,
            crypto_provider().signature_verification_algorithms.all,
        )?;
        let expected = match &self.expected {
            ServerIdentity::Spiffe(expected) => expected,
            ServerIdentity::DnsName => {
                rustls::client::verify_server_name(&parsed, server_name)?;
                return Ok(ServerCertVerified::assertion());
            }
        };
        let actual = identity_of(end_entity).map_err(identity_error)?;
        if expected.contains(&actual) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(identity_error(PeerIdentityError::Unexpected {
                actual: actual.to_string(),
                expected: expected.iter().map(ToString::to_string).collect(),
            }))
        }
    }
}

/// Checks a client's chain with webpki against the bundle's current roots, then that it
/// carries one SPIFFE id from an accepted trust domain.
#[derive(Debug)]
struct SpiffeClientVerifier {
    trust: TrustBundle,
}

// No root hints (the default): peers have exactly one certificate, and hints only leak
// the root names.
impl CheckClientCert for SpiffeClientVerifier {
    fn check_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust
            .current()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        let actual = identity_of(end_entity).map_err(identity_error)?;
        if self.trust.accepts_trust_domain(actual.trust_domain()) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(identity_error(PeerIdentityError::UntrustedDomain {
                actual: actual.to_string(),
            }))
        }
    }
}

/// Always presents the same certificate (one config per local identity).
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// HBONE client config: presents `cert`, accepts only a server whose chain leads to a root in
/// `trust` and whose SPIFFE id is one of `expected`. The server name passed to rustls is not
/// checked (use the destination IP, so no SNI is sent).
pub fn client_config(
    cert: &WorkloadCert,
    trust: &TrustBundle,
    expected: impl IntoIterator<Item = SpiffeId>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let verifier = server_verifier(SpiffeServerVerifier {
        trust: trust.clone(),
        expected: ServerIdentity::Spiffe(expected.into_iter().collect()),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsConfigError::Protocol)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(FixedCert(cert.certified_key().clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// HBONE server config: presents `cert`, requires a client certificate whose chain leads to
/// a root in `trust` and that carries a SPIFFE id of an accepted trust domain. Read the client
/// identity after the handshake with [`peer_identity`].
pub fn server_config(
    cert: &WorkloadCert,
    trust: &TrustBundle,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let verifier = client_verifier(SpiffeClientVerifier {
        trust: trust.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsConfigError::Protocol)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(FixedCert(cert.certified_key().clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A gRPC endpoint of the control plane's secure port (CA and xDS) at `endpoint`
/// (`https://host:port`): its serving chain must lead to a root of `trust` and carry the DNS
/// name `server_name`. No client certificate: callers authenticate with a bearer token.
/// Timeouts and the connection mode are the caller's (a CA call and an xDS stream differ).
///
/// # Errors
/// When `endpoint` is not a URI, or `trust` has no usable root; the text says which.
pub fn control_plane_endpoint(
    endpoint: &str,
    server_name: &str,
    trust: &TrustBundle,
) -> Result<tonic::transport::Endpoint, String> {
    tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|err| err.to_string())?
        .tls_config_with_verifier(
            tonic::transport::ClientTlsConfig::new().domain_name(server_name.to_owned()),
            server_verifier(SpiffeServerVerifier {
                trust: trust.clone(),
                expected: ServerIdentity::DnsName,
            }),
        )
        .map_err(|err| err.to_string())
}
