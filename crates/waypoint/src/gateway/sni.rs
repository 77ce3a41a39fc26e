//! Choosing by server name (SNI) on a gateway port: the hostname rules of the Gateway API
//! ([`HostTable`]: an exact hostname first, then the longest `*.suffix` wildcard, which
//! covers one or more labels in front of the suffix, then an entry without hostname), the
//! serving certificates parsed from PEM ([`certified_key`]), and rustls' certificate
//! resolver over them ([`SniResolver`]).

use std::fmt;
use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use weft_proto::l7 as pb;

use super::auto_cert::AutoCerts;

/// Whether the hostname `pattern` (exact, or `*.suffix`) covers `name`. Names compare
/// without case and without a trailing dot.
#[must_use]
pub(crate) fn covers(pattern: &str, name: &str) -> bool {
    let name = normalize(name);
    let pattern = normalize(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .and_then(|front| front.strip_suffix('.'))
            .is_some_and(|front| !front.is_empty()),
        None => pattern == name,
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// How well a pattern matches a name: a higher rank wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// An entry without hostname (matches everything).
    Any,
    /// A wildcard; longer suffixes are more specific.
    Wildcard(usize),
    /// The exact name.
    Exact,
}

fn rank(pattern: Option<&str>, name: &str) -> Option<Rank> {
    match pattern {
        None => Some(Rank::Any),
        Some(p) if covers(p, name) => Some(if p.starts_with("*.") {
            Rank::Wildcard(p.len())
        } else {
            Rank::Exact
        }),
        Some(_) => None,
    }
}

/// Values chosen by hostname; entries are kept in the order given (earlier wins a tie).
#[derive(Clone)]
pub(crate) struct HostTable<T> {
    entries: Vec<(Option<String>, T)>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> fmt::Debug for HostTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|(h, _)| h.as_deref().unwrap_or("*")),
            )
            .finish()
    }
}

impl<T> HostTable<T> {
    /// Adds `value` for `hostname` (`None` or empty: every name).
    pub fn push(&mut self, hostname: Option<&str>, value: T) {
        let hostname = hostname.filter(|h| !h.is_empty()).map(str::to_owned);
        self.entries.push((hostname, value));
    }

    /// The best entry for `name`: exact, then the longest wildcard, then one without
    /// hostname. Without a name: the first entry without hostname.
    #[must_use]
    pub fn select(&self, name: Option<&str>) -> Option<&T> {
        self.select_index(name).map(|i| &self.entries[i].1)
    }

    /// The position of [`HostTable::select`]'s entry (to compare two choices).
    #[must_use]
    pub fn select_index(&self, name: Option<&str>) -> Option<usize> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return self.entries.iter().position(|(h, _)| h.is_none());
        };
        let mut best: Option<(Rank, usize)> = None;
        for (index, (pattern, _)) in self.entries.iter().enumerate() {
            if let Some(rank) = rank(pattern.as_deref(), name)
                && best.is_none_or(|(b, _)| rank > b)
            {
                best = Some((rank, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// Every value, in order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// Parses a serving certificate: PEM chain (leaf first) and a PEM private key (PKCS#8,
/// SEC1 or PKCS#1), checked to belong together.
///
/// # Errors
/// What is wrong, naming the certificate's source.
pub(crate) fn certified_key(certificate: &pb::Certificate) -> Result<Arc<CertifiedKey>, String> {
    let source = &certificate.source;
    let (chain, key) = chain_and_key(certificate)?;
    let provider = aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("certificate {source}: {e}"))?;
    Ok(Arc::new(certified))
}

/// The PEM chain (leaf first) and private key of a certificate, parsed.
///
/// # Errors
/// What is wrong, naming the certificate's source.
pub(crate) fn chain_and_key(
    certificate: &pb::Certificate,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let source = &certificate.source;
    let chain = CertificateDer::pem_slice_iter(certificate.cert_chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate {source}: tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err(format!("certificate {source}: tls.crt: no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(certificate.private_key.as_bytes())
        .map_err(|e| format!("certificate {source}: tls.key: {e}"))?;
    Ok((chain, key))
}

/// Where a terminating listener's certificate comes from.
#[derive(Debug, Clone)]
pub(crate) enum CertSource {
    /// Parsed from its Secrets (several: one per key type; the first whose key the client
    /// can use is served).
    Static(Vec<Arc<CertifiedKey>>),
    /// Issued by weft's CA for this listener hostname (`weft.dev/auto-certificate`).
    Auto(String),
}

/// The serving certificate for a handshake, by SNI among a port's terminating listeners.
#[derive(Debug, Default)]
pub(crate) struct SniResolver {
    table: HostTable<CertSource>,
    auto: Option<Arc<AutoCerts>>,
}

impl SniResolver {
    /// A resolver over `table`; `auto` serves the [`CertSource::Auto`] entries.
    pub fn new(table: HostTable<CertSource>, auto: Option<Arc<AutoCerts>>) -> Self {
        Self { table, auto }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let source = self
            .table
            .select(hello.server_name())
            .or_else(|| self.table.values().next())?;
        match source {
            CertSource::Static(keys) => {
                let schemes = hello.signature_schemes();
                keys.iter()
                    .find(|key| key.key.choose_scheme(schemes).is_some())
                    .or_else(|| keys.first())
                    .cloned()
            }
            // Never another name's certificate: no certificate fails the handshake.
            CertSource::Auto(hostname) => self.auto.as_ref()?.certificate(hostname),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_or_more_labels() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "aexample.com"));
        assert!(covers("Foo.Example.com", "foo.example.com."));
        assert!(!covers("foo.example.com", "bar.example.com"));
    }

    #[test]
    fn exact_beats_the_longest_wildcard_which_beats_any() {
        let mut table = HostTable::default();
        table.push(None, "default");
        table.push(Some("*.example.com"), "wide");
        table.push(Some("*.api.example.com"), "narrow");
        table.push(Some("www.example.com"), "exact");
        assert_eq!(table.select(Some("www.example.com")), Some(&"exact"));
        assert_eq!(table.select(Some("v1.api.example.com")), Some(&"narrow"));
        assert_eq!(table.select(Some("shop.example.com")), Some(&"wide"));
        assert_eq!(table.select(Some("other.org")), Some(&"default"));
        assert_eq!(table.select(None), Some(&"default"));
    }

    #[test]
    fn without_catch_all_an_unknown_name_matches_nothing() {
        let mut table = HostTable::default();
        table.push(Some("a.example.com"), 1);
        assert_eq!(table.select(Some("b.example.com")), None);
        assert_eq!(table.select(None), None);
    }

    #[test]
    fn a_broken_certificate_names_its_source() {
        let bad = pb::Certificate {
            source: "ns/secret".into(),
            cert_chain: "not pem".into(),
            private_key: String::new(),
        };
        let error = certified_key(&bad).expect_err("broken");
        assert!(error.contains("ns/secret"), "{error}");
    }
}
