//! Verification of PKCS#10 certificate signing requests: parse, check the key type, verify
//! the self-signature (aws-lc-rs), and collect the requested URI and DNS SANs.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_CURVE_P256: &str = "1.2.840.10045.3.1.7";
const OID_CURVE_P384: &str = "1.3.132.0.34";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const OID_RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const OID_RSA_SHA512: &str = "1.2.840.113549.1.1.13";

/// The smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted (bounds the cost of verification).
pub const MAX_RSA_BITS: usize = 8192;

/// The public key types the CA signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa { bits: usize },
}

/// A CSR whose signature verified and whose key is acceptable.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// DER `SubjectPublicKeyInfo` of the requester's key.
    pub spki_der: Vec<u8>,
    /// The key type.
    pub key: KeyKind,
    /// Every URI SAN the CSR asks for, in order.
    pub uri_sans: Vec<String>,
    /// Every DNS SAN the CSR asks for, in order (a serving certificate's hostnames; the CA
    /// signs them only for callers allowed those names).
    pub dns_sans: Vec<String>,
}

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is not PEM `CERTIFICATE REQUEST`: {0}")]
    Pem(String),
    #[error("CSR is not a valid PKCS#10 structure: {0}")]
    Der(String),
    #[error("CSR has {0} trailing bytes after the PKCS#10 structure")]
    TrailingBytes(usize),
    #[error("CSR key type {algorithm} is not supported (use ECDSA P-256/P-384 or RSA >= 2048)")]
    UnsupportedKeyType { algorithm: String },
    #[error("CSR ECDSA curve {curve} is not supported (use P-256 or P-384)")]
    UnsupportedCurve { curve: String },
    #[error(
        "CSR RSA key has {bits} bits; at least {MIN_RSA_BITS} and at most {MAX_RSA_BITS} required"
    )]
    RsaKeySize { bits: usize },
    #[error("CSR public key is malformed: {0}")]
    BadPublicKey(String),
    #[error("CSR signature algorithm {oid} is not supported for a {key:?} key")]
    UnsupportedSignatureAlgorithm { oid: String, key: KeyKind },
    #[error("CSR signature does not verify with the CSR's own public key")]
    BadSignature,
}

impl CsrError {
    /// True when the request's key is weaker than (or not one of) the accepted types.
    pub fn is_weak_key(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedKeyType { .. }
                | Self::UnsupportedCurve { .. }
                | Self::RsaKeySize { .. }
        )
    }
}

/// Parses a PEM CSR, checks its key type and verifies its self-signature.
pub fn verify_csr_pem(pem: &str) -> Result<VerifiedCsr, CsrError> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| CsrError::Pem(err.to_string()))?;
    verify_csr_der(der.as_ref())
}

/// Parses a DER CSR, checks its key type and verifies its self-signature.
pub fn verify_csr_der(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|err| CsrError::Der(err.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingBytes(rest.len()));
    }
    let info = &csr.certification_request_info;
    let key = classify_key(&info.subject_pki)?;
    let algorithm = verification_algorithm(&csr, key)?;
    UnparsedPublicKey::new(algorithm, &*info.subject_pki.subject_public_key.data)
        .verify(info.raw, &csr.signature_value.data)
        .map_err(|_| CsrError::BadSignature)?;
    let (uri_sans, dns_sans) = requested_sans(&csr);
    Ok(VerifiedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        key,
        uri_sans,
        dns_sans,
    })
}

fn classify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CsrError> {
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|params| params.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .ok_or_else(|| CsrError::BadPublicKey("EC key without a named curve".into()))?;
            match curve.as_str() {
                OID_CURVE_P256 => Ok(KeyKind::EcdsaP256),
                OID_CURVE_P384 => Ok(KeyKind::EcdsaP384),
                _ => Err(CsrError::UnsupportedCurve { curve }),
            }
        }
        OID_RSA_ENCRYPTION => {
            let parsed = spki
                .parsed()
                .map_err(|err| CsrError::BadPublicKey(err.to_string()))?;
            let x509_parser::public_key::PublicKey::RSA(rsa) = parsed else {
                return Err(CsrError::BadPublicKey(
                    "rsaEncryption without RSA key".into(),
                ));
            };
            let bits = modulus_bits(rsa.modulus);
            if (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                Ok(KeyKind::Rsa { bits })
            } else {
                Err(CsrError::RsaKeySize { bits })
            }
        }
        other => Err(CsrError::UnsupportedKeyType {
            algorithm: other.to_owned(),
        }),
    }
}

/// Bit length of a big-endian unsigned integer (leading zero bytes ignored).
fn modulus_bits(modulus: &[u8]) -> usize {
    let Some(first) = modulus.iter().position(|byte| *byte != 0) else {
        return 0;
    };
    let significant = &modulus[first..];
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

fn verification_algorithm(
    csr: &X509CertificationRequest<'_>,
    key: KeyKind,
) -> Result<&'static dyn VerificationAlgorithm, CsrError> {
    let oid = csr.signature_algorithm.algorithm.to_id_string();
    let algorithm: Option<&'static dyn VerificationAlgorithm> = match (key, oid.as_str()) {
        (KeyKind::EcdsaP256, OID_ECDSA_SHA256) => Some(&signature::ECDSA_P256_SHA256_ASN1),
        (KeyKind::EcdsaP256, OID_ECDSA_SHA384) => Some(&signature::ECDSA_P256_SHA384_ASN1),
        (KeyKind::EcdsaP384, OID_ECDSA_SHA256) => Some(&signature::ECDSA_P384_SHA256_ASN1),
        (KeyKind::EcdsaP384, OID_ECDSA_SHA384) => Some(&signature::ECDSA_P384_SHA384_ASN1),
        (KeyKind::Rsa { .. }, OID_RSA_SHA256) => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        (KeyKind::Rsa { .. }, OID_RSA_SHA384) => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        (KeyKind::Rsa { .. }, OID_RSA_SHA512) => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    };
    algorithm.ok_or(CsrError::UnsupportedSignatureAlgorithm { oid, key })
}

/// The URI and DNS SANs the CSR asks for, in order; other name types are ignored (they
/// never reach a certificate).
fn requested_sans(csr: &X509CertificationRequest<'_>) -> (Vec<String>, Vec<String>) {
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    let Some(extensions) = csr.requested_extensions() else {
        return (uris, dns);
    };
    let names = extensions
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        })
        .flatten();
    for name in names {
        match name {
            GeneralName::URI(uri) => uris.push((*uri).to_owned()),
            GeneralName::DNSName(name) => dns.push((*name).to_owned()),
            _ => {}
        }
    }
    (uris, dns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn csr_with(key: &KeyPair, uris: &[&str]) -> String {
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|uri| SanType::URI((*uri).try_into().expect("ia5")))
            .collect();
        params
            .serialize_request(key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    #[test]
    fn accepts_p256_p384_and_rsa2048_and_lists_uri_sans() {
        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("rsa");
        let uri = "spiffe://td/ns/a/sa/b";
        for (key, kind) in [
            (&p256, KeyKind::EcdsaP256),
            (&p384, KeyKind::EcdsaP384),
            (&rsa, KeyKind::Rsa { bits: 2048 }),
        ] {
            let verified =
                verify_csr_pem(&csr_with(key, &[uri, "spiffe://td/ns/a/sa/c"])).expect("valid csr");
            assert_eq!(verified.key, kind);
            assert_eq!(verified.uri_sans, [uri, "spiffe://td/ns/a/sa/c"]);
        }
    }

    #[test]
    fn lists_dns_sans_apart_from_uri_sans_and_ignores_other_names() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::DnsName("*.example.com".try_into().expect("dns")),
            SanType::URI("spiffe://td/ns/a/sa/b".try_into().expect("uri")),
            SanType::IpAddress("10.0.0.1".parse().expect("ip")),
            SanType::DnsName("shop.example.com".try_into().expect("dns")),
        ];
        let pem = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let verified = verify_csr_pem(&pem).expect("valid csr");
        assert_eq!(verified.uri_sans, ["spiffe://td/ns/a/sa/b"]);
        assert_eq!(verified.dns_sans, ["*.example.com", "shop.example.com"]);
    }

    #[test]
    fn rejects_a_tampered_signature() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://td/ns/a/sa/b".try_into().expect("uri"),
        )];
        let mut der = params.serialize_request(&key).expect("csr").der().to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert_eq!(verify_csr_der(&der).err(), Some(CsrError::BadSignature));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(verify_csr_pem("hello"), Err(CsrError::Pem(_))));
        let garbage =
            "-----BEGIN CERTIFICATE REQUEST-----\nAAECAwQ=\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(verify_csr_pem(garbage), Err(CsrError::Der(_))));
    }

    #[test]
    fn counts_modulus_bits() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0; 4]), 0);
    }
}
