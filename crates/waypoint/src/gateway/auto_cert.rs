//! Serving certificates without a Secret: for every hostname of a listener marked
//! `auto_certificate` (`weft.dev/auto-certificate: "true"`), the gateway asks weft's CA for a
//! certificate carrying its own SPIFFE id plus that hostname as a DNS SAN (`*.example.com`
//! stays a wildcard SAN), over the same `CreateCertificate` call and credentials as its
//! workload certificate, and renews it at about half its lifetime. The CA signs those names
//! only for the identity the Gateway runs under (see `docs/gateway-autocert.md`).
//!
//! [`AutoCerts`] is the source the HTTPS listeners' SNI resolver consults, by the hostname of
//! the listener it chose: one [`CertManager`] per hostname (fetch, cache, renew with backoff,
//! keep the old certificate while a renewal fails), looked up without locks on the handshake
//! path. On its own it is also a rustls [`ResolvesServerCert`], choosing the hostname by SNI
//! with the gateway's hostname rules ([`HostTable`]).

use super::sni::HostTable;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;
use tokio::sync::watch;
use weft_identity::{CertManager, CertManagerConfig, CertState, CertificateProvider, SpiffeId};
use weft_proto::l7::Gateway;

/// CA-issued serving certificates of one gateway, by listener hostname. Cheap to share
/// (`Arc`); [`AutoCerts::set_hostnames`] must run inside a tokio runtime.
pub struct AutoCerts {
    provider: Arc<dyn CertificateProvider>,
    identity: SpiffeId,
    config: CertManagerConfig,
    /// The hostnames held; replaced whole on every update.
    held: ArcSwap<Held>,
    /// Serialises updates (readers never take it).
    update: Mutex<()>,
}

/// The hostnames held at one time.
#[derive(Default)]
struct Held {
    /// Lower-case hostname -> its manager.
    managers: BTreeMap<String, CertManager>,
    /// The same hostnames, to choose one by SNI.
    by_sni: HostTable<String>,
}

impl std::fmt::Debug for AutoCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoCerts")
            .field("identity", &self.identity.to_string())
            .field("hostnames", &self.hostnames())
            .finish_non_exhaustive()
    }
}

impl AutoCerts {
    /// Certificates for `identity` (the gateway's own) from `provider` (the same CA client as
    /// its workload certificate), with `config`'s lifetime and retry tuning. Holds no
    /// hostname until [`Self::set_hostnames`] or [`Self::update`].
    pub fn new(
        provider: Arc<dyn CertificateProvider>,
        identity: SpiffeId,
        config: CertManagerConfig,
    ) -> Self {
        Self {
            provider,
            identity,
            config,
            held: ArcSwap::from_pointee(Held::default()),
            update: Mutex::new(()),
        }
    }

    /// Takes the auto-certificate hostnames of a newly received Gateway resource. A listener
    /// asking for one without a hostname gets none (no name to certify): logged.
    pub fn update(&self, gateway: &Gateway) {
        let unnamed = gateway.listeners.iter();
        for listener in unnamed.filter(|l| l.auto_certificate && l.hostname.is_empty()) {
            tracing::warn!(
                gateway = %format!("{}/{}", gateway.namespace, gateway.name),
                listener = %listener.name,
                "listener asks for an auto-certificate but has no hostname for it to name; \
                 its TLS handshakes fail until it gets one"
            );
        }
        self.set_hostnames(auto_certificate_hostnames(gateway));
    }

    /// Holds certificates for exactly `hostnames`: a new hostname starts its first request at
    /// once, a kept one keeps its certificate and renewal schedule, a dropped one stops
    /// being renewed and served.
    pub fn set_hostnames(&self, hostnames: impl IntoIterator<Item = String>) {
        let _serial = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.held.load();
        let mut next = Held::default();
        for hostname in hostnames {
            let hostname = hostname.to_ascii_lowercase();
            if hostname.is_empty() || next.managers.contains_key(&hostname) {
                continue;
            }
            let manager = match current.managers.get(&hostname) {
                Some(manager) => manager.clone(),
                None => self.start(&hostname),
            };
            next.by_sni.push(Some(&hostname), hostname.clone());
            next.managers.insert(hostname, manager);
        }
        let dropped: Vec<&String> = current
            .managers
            .keys()
            .filter(|hostname| !next.managers.contains_key(*hostname))
            .collect();
        if !dropped.is_empty() {
            tracing::info!(identity = %self.identity, ?dropped, "auto-certificates no longer needed");
        }
        self.held.store(Arc::new(next));
    }

    /// A manager asking for `hostname` beside the gateway's identity, already fetching.
    fn start(&self, hostname: &str) -> CertManager {
        tracing::info!(identity = %self.identity, hostname, "requesting an auto-certificate");
        let config = CertManagerConfig {
            dns_names: vec![hostname.to_owned()],
            ..self.config.clone()
        };
        let manager = CertManager::new(Arc::clone(&self.provider), config);
        manager.subscribe(&self.identity);
        manager
    }

    /// The hostnames held, in order.
    pub fn hostnames(&self) -> Vec<String> {
        self.held.load().managers.keys().cloned().collect()
    }

    /// The currently valid certificate for the listener hostname `hostname` (as written on
    /// the listener, `*.example.com` included; case does not matter). `None` when it is not
    /// held or its certificate has not arrived or has expired: the handshake must then
    /// fail, never fall back to another name's certificate.
    pub fn certificate(&self, hostname: &str) -> Option<Arc<CertifiedKey>> {
        let held = self.held.load();
        self.current(&held, &hostname.to_ascii_lowercase())
    }

    fn current(&self, held: &Held, hostname: &str) -> Option<Arc<CertifiedKey>> {
        let cert = held.managers.get(hostname)?.current(&self.identity)?;
        Some(Arc::clone(cert.certified_key()))
    }

    /// Every change (issued, failed, renewed) of `hostname`'s certificate; `None` when the
    /// hostname is not held.
    pub fn subscribe(&self, hostname: &str) -> Option<watch::Receiver<CertState>> {
        let held = self.held.load();
        let manager = held.managers.get(&hostname.to_ascii_lowercase())?;
        Some(manager.subscribe(&self.identity))
    }

    /// `(notBefore, notAfter)` of the newest certificate of the listener hostname
    /// `hostname`, expired or not (for the expiry metric); `None` when it is not held or
    /// none has arrived yet.
    pub fn validity(&self, hostname: &str) -> Option<(SystemTime, SystemTime)> {
        let held = self.held.load();
        let manager = held.managers.get(&hostname.to_ascii_lowercase())?;
        let cert = manager.held().into_iter().next()?;
        Some((cert.not_before(), cert.not_after()))
    }

    /// Hostnames held without a currently valid certificate (for readiness and status).
    pub fn pending(&self) -> Vec<String> {
        let held = self.held.load();
        let managers = held.managers.iter();
        let pending = managers.filter(|(_, m)| m.current(&self.identity).is_none());
        pending.map(|(hostname, _)| hostname.clone()).collect()
    }
}

impl ResolvesServerCert for AutoCerts {
    /// The certificate of the held hostname that best covers the SNI (exact, then the
    /// longest wildcard); none without SNI.
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let held = self.held.load();
        let hostname = held.by_sni.select(client_hello.server_name())?;
        self.current(&held, hostname)
    }
}

/// The lower-case hostnames of `gateway`'s listeners with `auto_certificate` (a listener
/// without a hostname has no name a certificate could carry).
pub fn auto_certificate_hostnames(gateway: &Gateway) -> BTreeSet<String> {
    let listeners = gateway.listeners.iter();
    let auto = listeners.filter(|l| l.auto_certificate && !l.hostname.is_empty());
    auto.map(|l| l.hostname.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::l7::Listener;

    #[test]
    fn takes_the_hostnames_of_auto_certificate_listeners_only() {
        let listener = |hostname: &str, auto_certificate| Listener {
            hostname: hostname.to_owned(),
            auto_certificate,
            ..Listener::default()
        };
        let gateway = Gateway {
            listeners: vec![
                listener("Shop.Example.com", true),
                listener("*.example.com", true),
                listener("manual.example.com", false),
                listener("", true),
                listener("shop.example.com", true),
            ],
            ..Gateway::default()
        };
        let hostnames: Vec<String> = auto_certificate_hostnames(&gateway).into_iter().collect();
        assert_eq!(hostnames, ["*.example.com", "shop.example.com"]);
    }
}
