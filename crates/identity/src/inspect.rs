//! Human-readable inspection of a PEM certificate chain (`weft x cert inspect`): identity,
//! issuer, validity of each certificate, and whether the chain verifies to a root.

use crate::tls::{LeafInfo, crypto_provider, leaf_info};
use crate::{TrustBundle, TrustBundleError};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fmt;
use std::time::SystemTime;

/// Why a chain could not be inspected at all.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not PEM certificates: {0}")]
    Pem(String),
    #[error("no CERTIFICATE block found")]
    Empty,
    #[error("certificate {index}: {reason}")]
    Parse { index: usize, reason: String },
    #[error("roots: {0}")]
    Roots(#[from] TrustBundleError),
}

/// The result of inspecting a chain.
#[derive(Debug)]
pub struct ChainReport {
    /// Every certificate in file order (leaf first).
    pub certs: Vec<LeafInfo>,
    /// Which root the chain was verified against.
    pub anchor: String,
    /// `Ok` if the leaf verifies through the chain to the anchor, now.
    pub verification: Result<(), String>,
}

/// Inspects `chain_pem` (leaf first). The chain is verified against `roots_pem` if given,
/// else against its last certificate when that one is self-signed.
pub fn inspect_chain_pem(
    chain_pem: &str,
    roots_pem: Option<&str>,
) -> Result<ChainReport, InspectError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| InspectError::Pem(err.to_string()))?;
    if chain.is_empty() {
        return Err(InspectError::Empty);
    }
    let certs = chain
        .iter()
        .enumerate()
        .map(|(index, cert)| {
            leaf_info(cert).map_err(|reason| InspectError::Parse { index, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last = certs.last().expect("chain is not empty");
    let (anchor, roots) = match roots_pem {
        Some(pem) => (
            "given roots".to_owned(),
            TrustBundle::from_pem("", pem)?.roots().to_vec(),
        ),
        None if chain.len() > 1 && last.subject == last.issuer => (
            format!("last certificate ({})", last.subject),
            vec![chain[chain.len() - 1].clone()],
        ),
        None => ("none".to_owned(), Vec::new()),
    };
    Ok(ChainReport {
        verification: verify(&chain, &roots),
        certs,
        anchor,
    })
}

fn verify(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<(), String> {
    if roots.is_empty() {
        return Err(
            "no root to verify against (pass --root, or include a self-signed root last)".into(),
        );
    }
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|err| format!("root unusable: {err}"))?;
    }
    let leaf =
        rustls::server::ParsedCertificate::try_from(&chain[0]).map_err(|err| err.to_string())?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &leaf,
        &store,
        &chain[1..],
        UnixTime::now(),
        crypto_provider().signature_verification_algorithms.all,
    )
    .map_err(|err| err.to_string())
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        for (index, cert) in self.certs.iter().enumerate() {
            let role = match (index, cert.is_ca) {
                (0, false) => "leaf",
                (_, true) if cert.subject == cert.issuer => "root",
                (_, true) => "intermediate",
                (_, false) => "non-CA",
            };
            writeln!(f, "[{index}] {role}")?;
            match &cert.spiffe_id {
                Some(id) => writeln!(f, "    identity:  {id}")?,
                None if index == 0 => writeln!(f, "    identity:  (no single SPIFFE URI SAN)")?,
                None => {}
            }
            for uri in cert.uri_sans.iter().filter(|_| cert.spiffe_id.is_none()) {
                writeln!(f, "    uri SAN:   {uri}")?;
            }
            for dns in &cert.dns_sans {
                writeln!(f, "    dns SAN:   {dns}")?;
            }
            writeln!(f, "    subject:   {}", cert.subject)?;
            writeln!(f, "    issuer:    {}", cert.issuer)?;
            writeln!(f, "    serial:    {}", hex(&cert.serial))?;
            writeln!(
                f,
                "    validity:  {} .. {} ({})",
                rfc3339(cert.not_before),
                rfc3339(cert.not_after),
                validity_word(now, cert)
            )?;
        }
        writeln!(f, "verified against: {}", self.anchor)?;
        match &self.verification {
            Ok(()) => writeln!(f, "chain: ok"),
            Err(reason) => writeln!(f, "chain: NOT OK: {reason}"),
        }
    }
}

fn validity_word(now: i64, cert: &LeafInfo) -> &'static str {
    if now < cert.not_before {
        "not yet valid"
    } else if now >= cert.not_after {
        "EXPIRED"
    } else {
        "valid now"
    }
}

/// Unix seconds as an RFC 3339 UTC time (`@SECONDS` when out of range).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
