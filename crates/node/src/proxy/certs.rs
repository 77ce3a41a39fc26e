//! Workload certificates and the TLS configurations built from them.
//!
//! Client configs are cached per (source identity, expected destination identity) and
//! rebuilt only when the source certificate rotates, so opening a pooled stream costs a
//! map lookup. Server configs resolve the certificate at each handshake, so a listener
//! keeps serving across rotations without being rebuilt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use weft_identity::tls::TlsConfigError;
use weft_identity::{CertError, CertManager, SpiffeId, TrustBundle, WorkloadCert};

/// Why no TLS configuration could be produced for a connection.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// No valid certificate for the identity (yet).
    #[error("no certificate for {identity}: {source}")]
    Cert {
        /// The identity.
        identity: String,
        /// Why.
        source: CertError,
    },
    /// The certificate did not arrive in time.
    #[error("certificate for {identity} not available within {after:?}")]
    Timeout {
        /// The identity.
        identity: String,
        /// How long we waited.
        after: Duration,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration for {identity}: {source}")]
    Tls {
        /// The identity.
        identity: String,
        /// Why.
        source: TlsConfigError,
    },
}

struct CachedClient {
    cert: Arc<WorkloadCert>,
    config: Arc<ClientConfig>,
}

/// The certificate manager, the trust bundle and cached TLS configs. Cheap to clone.
#[derive(Clone)]
pub struct Certs {
    manager: CertManager,
    trust: TrustBundle,
    clients: Arc<Mutex<HashMap<(SpiffeId, SpiffeId), CachedClient>>>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs")
            .field("manager", &self.manager)
            .field("trust_domains", &self.trust.trust_domains())
            .finish_non_exhaustive()
    }
}

impl Certs {
    /// Certificates from `manager`, peers verified against `trust`.
    #[must_use]
    pub fn new(manager: CertManager, trust: TrustBundle) -> Self {
        Self {
            manager,
            trust,
            clients: Arc::default(),
        }
    }

    /// The certificate manager.
    #[must_use]
    pub fn manager(&self) -> &CertManager {
        &self.manager
    }

    /// The trust bundle peers are verified against.
    #[must_use]
    pub fn trust(&self) -> &TrustBundle {
        &self.trust
    }

    /// The currently valid certificate of `identity`, if any (never waits).
    #[must_use]
    pub fn current(&self, identity: &SpiffeId) -> Option<Arc<WorkloadCert>> {
        self.manager.current(identity)
    }

    /// Keeps certificates for exactly `identities` (starting fetches for new ones).
    pub(crate) fn manage_only(&self, identities: &[SpiffeId]) {
        for identity in identities {
            drop(self.manager.subscribe(identity));
        }
        self.manager.retain(|id| identities.contains(id));
        self.lock_clients()
            .retain(|(source, _), _| identities.contains(source));
    }

    /// A valid certificate for `identity`, waiting up to `wait` for a first fetch.
    ///
    /// # Errors
    /// The fetch failed or did not finish within `wait`.
    pub async fn certificate(
        &self,
        identity: &SpiffeId,
        wait: Duration,
    ) -> Result<Arc<WorkloadCert>, CertsError> {
        if let Some(cert) = self.manager.current(identity) {
            return Ok(cert);
        }
        match tokio::time::timeout(wait, self.manager.get(identity)).await {
            Ok(Ok(cert)) => Ok(cert),
            Ok(Err(source)) => Err(CertsError::Cert {
                identity: identity.to_string(),
                source,
            }),
            Err(_) => Err(CertsError::Timeout {
                identity: identity.to_string(),
                after: wait,
            }),
        }
    }

    /// HBONE client config presenting `source`'s certificate and accepting only a server
    /// with identity `destination`.
    ///
    /// # Errors
    /// No certificate for `source` (see [`Self::certificate`]) or rustls refused the config.
    pub async fn client_config(
        &self,
        source: &SpiffeId,
        destination: &SpiffeId,
        wait: Duration,
    ) -> Result<Arc<ClientConfig>, CertsError> {
        let cert = self.certificate(source, wait).await?;
        let key = (source.clone(), destination.clone());
        if let Some(cached) = self.lock_clients().get(&key)
            && Arc::ptr_eq(&cached.cert, &cert)
        {
            return Ok(Arc::clone(&cached.config));
        }
        let config = weft_identity::client_config(&cert, &self.trust, [destination.clone()])
            .map_err(|source_error| CertsError::Tls {
                identity: source.to_string(),
                source: source_error,
            })?;
        self.lock_clients().insert(
            key,
            CachedClient {
                cert,
                config: Arc::clone(&config),
            },
        );
        Ok(config)
    }

    /// HBONE server config for a listener of `identity`: requires a client certificate
    /// from the trust bundle and presents `identity`'s current certificate at each
    /// handshake (so rotation needs no rebuild).
    ///
    /// # Errors
    /// No certificate for `identity` (see [`Self::certificate`]) or rustls refused the config.
    pub async fn server_config(
        &self,
        identity: &SpiffeId,
        wait: Duration,
    ) -> Result<Arc<ServerConfig>, CertsError> {
        let cert = self.certificate(identity, wait).await?;
        let base =
            weft_identity::server_config(&cert, &self.trust).map_err(|source| CertsError::Tls {
                identity: identity.to_string(),
                source,
            })?;
        let mut config = (*base).clone();
        config.cert_resolver = Arc::new(CurrentCert {
            manager: self.manager.clone(),
            identity: identity.clone(),
        });
        Ok(Arc::new(config))
    }

    fn lock_clients(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(SpiffeId, SpiffeId), CachedClient>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Presents the manager's current certificate for one identity; none once it expired.
#[derive(Debug)]
struct CurrentCert {
    manager: CertManager,
    identity: SpiffeId,
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self.manager.current(&self.identity);
        if cert.is_none() {
            tracing::warn!(identity = %self.identity, "no valid certificate to present on HBONE listener");
        }
        cert.map(|c| Arc::clone(c.certified_key()))
    }
}
