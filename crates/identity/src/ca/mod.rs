//! The mesh certificate authority's signing logic: holds the signing key and the chain up to
//! the root, and signs workload (SPIFFE) certificates, gateway serving certificates (SPIFFE id
//! plus DNS names) and control-plane serving certificates. Loading the root of trust (plug-in
//! CA directory or persisted self-signed root) lives in [`store`], keeping roots between runs
//! behind an interface in [`root_store`], moving the mesh to a new root in [`rotation`]; CSR
//! checks live in [`csr`].
//! Authentication and authorization of callers are the control plane's job, not this module's.

pub mod csr;
pub mod root_store;
pub mod rotation;
mod store;

pub use root_store::{DirRootStore, LoadedRoots, NextRoot, RootStore};
pub use rotation::{Phase, RootRotation, RotationStatus};
pub use store::{CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE, ROOT_KEY_FILE};

use crate::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Default lifetime of a workload certificate.
pub const DEFAULT_WORKLOAD_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a generated self-signed root.
pub const SELF_SIGNED_ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaf certificates start this much in the past to tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(60);

/// Errors loading or using the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "plug-in CA directory {dir}: missing {missing} (a plug-in CA needs ca-cert.pem, ca-key.pem and root-cert.pem; cert-chain.pem is optional)"
    )]
    PluginIncomplete { dir: PathBuf, missing: &'static str },
    #[error(
        "CA state directory {dir}: found {present} but not {missing}; restore it or remove both to generate a new root"
    )]
    StateIncomplete {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    #[error("{path}: no certificate or key could be read: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: private key not usable for signing: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "CA in {dir} is inconsistent: a test certificate did not verify to the root ({reason}); check that ca-key.pem matches ca-cert.pem and cert-chain.pem leads to root-cert.pem"
    )]
    ChainDoesNotVerify { dir: PathBuf, reason: String },
    #[error(
        "{marker} says a root rotation made `{current}` the mesh CA, but --ca-dir is {flag}; pass the rotated CA's directory (or remove the marker to go back)"
    )]
    RotatedElsewhere {
        marker: PathBuf,
        current: String,
        flag: PathBuf,
    },
    #[error("the CA signing certificate expired at {not_after:?}")]
    Expired { not_after: SystemTime },
    #[error("could not build certificate: {0}")]
    Build(#[from] rcgen::Error),
}

/// A signed certificate chain in PEM: leaf first, then intermediates, root last.
#[derive(Debug, Clone)]
pub struct SignedChain {
    pub pem: Vec<String>,
    pub not_after: SystemTime,
}

/// A certificate with a freshly generated private key (e.g. the control plane's serving cert).
#[derive(Debug)]
pub struct IssuedCert {
    /// Leaf first, then intermediates, root last.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_after: SystemTime,
}

/// The mesh CA: signing key plus the chain above it.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// Signing certificate, intermediates, root (root last; one element when self-signed).
    chain_above_leaf: Vec<CertificateDer<'static>>,
    chain_above_leaf_pem: Vec<String>,
    signing_not_after: SystemTime,
    root_not_after: SystemTime,
    description: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("source", &self.description)
            .field("root_not_after", &self.root_not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed root kept only in memory (tests, `--insecure-local-ca`).
    pub fn generate_in_memory() -> Result<Self, CaError> {
        let (key, root) = generate_root()?;
        Self::self_signed_from(key, &root, "in-memory self-signed root".into())
    }

    fn self_signed_from(
        key: KeyPair,
        root: &CertificateDer<'static>,
        description: String,
    ) -> Result<Self, CaError> {
        let issuer = Issuer::from_ca_cert_der(root, key)?;
        let not_after = cert_not_after(root).map_err(|reason| CaError::BadCertificate {
            path: PathBuf::from(&description),
            reason,
        })?;
        Ok(Self {
            issuer,
            chain_above_leaf_pem: vec![to_pem(root)],
            chain_above_leaf: vec![root.clone()],
            signing_not_after: not_after,
            root_not_after: not_after,
            description,
        })
    }

    /// Where the root of trust came from (for logs).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The root certificate (DER).
    pub fn root(&self) -> &CertificateDer<'static> {
        self.chain_above_leaf
            .last()
            .expect("chain always holds at least the root")
    }

    /// The root certificate (PEM), to distribute as the mesh trust bundle.
    pub fn root_pem(&self) -> &str {
        self.chain_above_leaf_pem
            .last()
            .expect("chain always holds at least the root")
    }

    /// When the root certificate expires.
    pub fn root_not_after(&self) -> SystemTime {
        self.root_not_after
    }

    /// Signs a workload certificate for `identity` over the public key `spki_der`.
    /// The lifetime is `validity`, cut short so it never outlives the signing certificate.
    pub fn sign_workload(
        &self,
        spki_der: &[u8],
        identity: &SpiffeId,
        validity: Duration,
    ) -> Result<SignedChain, CaError> {
        self.sign_serving(spki_der, identity, &[], validity)
    }

    /// Signs a certificate for `identity` that also names `dns_names` (DNS SANs, `*.suffix`
    /// wildcards allowed): a gateway's serving certificate for its listener hostnames, which
    /// still proves the gateway's SPIFFE identity. Whether the caller may have those names is
    /// the control plane's decision, made before calling this. Same lifetime rule as
    /// [`Self::sign_workload`], which is this with no DNS names.
    pub fn sign_serving(
        &self,
        spki_der: &[u8],
        identity: &SpiffeId,
        dns_names: &[String],
        validity: Duration,
    ) -> Result<SignedChain, CaError> {
        let public_key = SubjectPublicKeyInfo::from_der(spki_der)?;
        let mut sans = vec![SanType::URI(identity.to_string().try_into()?)];
        for name in dns_names {
            sans.push(SanType::DnsName(name.clone().try_into()?));
        }
        let (params, not_after) = self.leaf_params(sans, validity)?;
        let leaf = params.signed_by(&public_key, &self.issuer)?;
        let mut pem = Vec::with_capacity(1 + self.chain_above_leaf_pem.len());
        pem.push(leaf.pem());
        pem.extend(self.chain_above_leaf_pem.iter().cloned());
        Ok(SignedChain { pem, not_after })
    }

    /// Issues a TLS serving certificate (new ECDSA P-256 key) for the given DNS names.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        validity: Duration,
    ) -> Result<IssuedCert, CaError> {
        let sans = dns_names
            .iter()
            .map(|name| Ok(SanType::DnsName(name.clone().try_into()?)))
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (mut params, not_after) = self.leaf_params(sans, validity)?;
        if let Some(first) = dns_names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let leaf = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.chain_above_leaf.iter().cloned());
        Ok(IssuedCert {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
        })
    }

    fn leaf_params(
        &self,
        sans: Vec<SanType>,
        validity: Duration,
    ) -> Result<(CertificateParams, SystemTime), CaError> {
        let now = SystemTime::now();
        if self.signing_not_after <= now {
            return Err(CaError::Expired {
                not_after: self.signing_not_after,
            });
        }
        let not_after = (now + validity).min(self.signing_not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.not_before = to_offset((now - BACKDATE).max(SystemTime::UNIX_EPOCH));
        params.not_after = to_offset(not_after);
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok((params, not_after))
    }
}

/// Generates a self-signed root CA certificate with a new ECDSA P-256 key.
fn generate_root() -> Result<(KeyPair, CertificateDer<'static>), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "weft");
    params
        .distinguished_name
        .push(DnType::CommonName, "weft mesh root CA");
    params.not_before = to_offset(now - Duration::from_secs(3600));
    params.not_after = to_offset(now + SELF_SIGNED_ROOT_VALIDITY);
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((key, cert.der().clone()))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte, fixed length
    SerialNumber::from_slice(&bytes)
}

fn to_offset(time: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(time)
}

/// PEM-encodes a certificate.
pub fn to_pem(cert: &CertificateDer<'_>) -> String {
    let body = base64_lines(cert.as_ref());
    format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
}

fn base64_lines(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    let mut lines = String::with_capacity(encoded.len() + encoded.len() / 64 + 1);
    for line in encoded.as_bytes().chunks(64) {
        lines.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        lines.push('\n');
    }
    lines
}

/// The `notAfter` of a DER certificate.
pub(crate) fn cert_not_after(cert: &CertificateDer<'_>) -> Result<SystemTime, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|err| err.to_string())?;
    Ok(unix_to_system(parsed.validity().not_after.timestamp()))
}

/// Converts unix seconds (possibly negative) to a `SystemTime`.
pub(crate) fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}
