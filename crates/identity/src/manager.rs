//! Keeps one fresh certificate per identity a proxy needs: generates an ECDSA P-256 key and
//! CSR, fetches the certificate from a [`CertificateProvider`], caches it, renews it at about
//! half its lifetime (with jitter, so a fleet does not renew in lock-step), retries failed
//! fetches with exponential backoff while the old certificate stays in use, and forgets
//! identities no longer needed. Each identity has one background task, so concurrent
//! requests for the same identity share one fetch.

use crate::provider::{CertRequest, CertificateProvider, FetchError};
use crate::{SpiffeId, WorkloadCert};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Tuning of a [`CertManager`].
#[derive(Debug, Clone)]
pub struct CertManagerConfig {
    /// Lifetime asked of the CA.
    pub validity: Duration,
    /// First retry delay after a failed fetch; doubles per failure.
    pub initial_backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_backoff: Duration,
    /// Renewal happens at half-life minus a random part of this fraction of the lifetime.
    pub jitter_fraction: f64,
    /// DNS names every certificate of this manager also carries (a gateway listener's
    /// hostname for an auto-certificate); empty for workload certificates.
    pub dns_names: Vec<String>,
}

impl Default for CertManagerConfig {
    fn default() -> Self {
        Self {
            validity: crate::ca::DEFAULT_WORKLOAD_VALIDITY,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            jitter_fraction: 0.1,
            dns_names: Vec::new(),
        }
    }
}

/// Why [`CertManager::get`] returned no certificate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    #[error("no valid certificate for {identity}: {source}")]
    Fetch {
        identity: String,
        #[source]
        source: FetchError,
    },
    #[error("identity {identity} was forgotten while waiting for its certificate")]
    Forgotten { identity: String },
}

/// What the manager knows about one identity.
#[derive(Debug, Clone, Default)]
pub struct CertState {
    /// The newest certificate (possibly expired if renewals keep failing).
    pub cert: Option<Arc<WorkloadCert>>,
    /// The last fetch error, cleared by the next success.
    pub last_error: Option<FetchError>,
    /// Fetch attempts so far (successful or not).
    pub attempts: u64,
}

struct Entry {
    state: watch::Receiver<CertState>,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-identity certificate cache with background renewal. Cheap to clone.
#[derive(Clone)]
pub struct CertManager {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<dyn CertificateProvider>,
    config: CertManagerConfig,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
}

impl std::fmt::Debug for CertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertManager")
            .field("identities", &self.identities())
            .finish_non_exhaustive()
    }
}

impl CertManager {
    /// A manager fetching from `provider`. Must be used inside a tokio runtime.
    pub fn new(provider: Arc<dyn CertificateProvider>, config: CertManagerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider,
                config,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Waits for a currently valid certificate for `identity`, starting its management if
    /// needed. Returns the last fetch error if there is no valid certificate and the latest
    /// attempt failed (retries continue in the background).
    pub async fn get(&self, identity: &SpiffeId) -> Result<Arc<WorkloadCert>, CertError> {
        let mut state = self.subscribe(identity);
        loop {
            {
                let current = state.borrow_and_update();
                if let Some(cert) = usable(current.cert.as_ref()) {
                    return Ok(cert);
                }
                if let Some(err) = &current.last_error {
                    return Err(CertError::Fetch {
                        identity: identity.to_string(),
                        source: err.clone(),
                    });
                }
            }
            if state.changed().await.is_err() {
                return Err(CertError::Forgotten {
                    identity: identity.to_string(),
                });
            }
        }
    }

    /// The current certificate if one is valid now; never waits (for the connection path).
    pub fn current(&self, identity: &SpiffeId) -> Option<Arc<WorkloadCert>> {
        let entries = self.lock();
        let entry = entries.get(identity)?;
        let state = entry.state.borrow();
        usable(state.cert.as_ref())
    }

    /// Starts managing `identity` (if not already) and returns a receiver that sees every
    /// change: new certificate, failure, retry.
    pub fn subscribe(&self, identity: &SpiffeId) -> watch::Receiver<CertState> {
        let mut entries = self.lock();
        if let Some(entry) = entries.get(identity) {
            return entry.state.clone();
        }
        let (sender, receiver) = watch::channel(CertState::default());
        let task = tokio::spawn(maintain(
            self.inner.provider.clone(),
            self.inner.config.clone(),
            identity.clone(),
            sender,
        ));
        entries.insert(
            identity.clone(),
            Entry {
                state: receiver.clone(),
                task,
            },
        );
        receiver
    }

    /// Stops managing `identity`; returns whether it was managed.
    pub fn forget(&self, identity: &SpiffeId) -> bool {
        self.lock().remove(identity).is_some()
    }

    /// Keeps only the identities for which `needed` returns true.
    pub fn retain(&self, mut needed: impl FnMut(&SpiffeId) -> bool) {
        self.lock().retain(|identity, _| needed(identity));
    }

    /// The identities currently managed.
    pub fn identities(&self) -> Vec<SpiffeId> {
        let mut ids: Vec<SpiffeId> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The newest certificate of every managed identity that has one, expired or not (for
    /// reporting expiry: a certificate whose renewals keep failing stays visible).
    pub fn held(&self) -> Vec<Arc<WorkloadCert>> {
        let mut certs: Vec<Arc<WorkloadCert>> = self
            .lock()
            .values()
            .filter_map(|entry| entry.state.borrow().cert.clone())
            .collect();
        certs.sort_by(|a, b| a.identity().cmp(b.identity()));
        certs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SpiffeId, Entry>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn usable(cert: Option<&Arc<WorkloadCert>>) -> Option<Arc<WorkloadCert>> {
    cert.filter(|cert| cert.not_after() > SystemTime::now())
        .cloned()
}

/// The background task of one identity: fetch, publish, sleep until renewal; on failure
/// publish the error and retry with backoff.
async fn maintain(
    provider: Arc<dyn CertificateProvider>,
    config: CertManagerConfig,
    identity: SpiffeId,
    state: watch::Sender<CertState>,
) {
    let mut backoff = config.initial_backoff;
    loop {
        let result = fetch(provider.as_ref(), &identity, &config).await;
        let delay = match result {
            Ok(cert) => {
                backoff = config.initial_backoff;
                let delay = renewal_delay(&cert, config.jitter_fraction);
                tracing::info!(%identity, dns_names = ?config.dns_names, not_after = ?cert.not_after(), renew_in = ?delay, "workload certificate issued");
                state.send_modify(|s| {
                    s.cert = Some(Arc::new(cert));
                    s.last_error = None;
                    s.attempts += 1;
                });
                delay
            }
            Err(err) => {
                tracing::warn!(%identity, error = %err, retry_in = ?backoff, "workload certificate fetch failed");
                state.send_modify(|s| {
                    s.last_error = Some(err);
                    s.attempts += 1;
                });
                let delay = backoff;
                backoff = (backoff * 2).min(config.max_backoff);
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Generates a key and CSR, asks the provider and assembles the answer.
async fn fetch(
    provider: &dyn CertificateProvider,
    identity: &SpiffeId,
    config: &CertManagerConfig,
) -> Result<WorkloadCert, FetchError> {
    let (key, csr_pem) = key_and_csr_with_dns(identity, &config.dns_names)?;
    let request = CertRequest {
        identity: identity.clone(),
        csr_pem,
        validity: config.validity,
        dns_names: config.dns_names.clone(),
    };
    let chain = provider.fetch(&request).await?;
    Ok(WorkloadCert::from_ca_response(
        identity.clone(),
        key,
        &chain,
    )?)
}

/// A new ECDSA P-256 key and a PEM CSR with `identity` as its only URI SAN.
pub fn key_and_csr(identity: &SpiffeId) -> Result<(PrivateKeyDer<'static>, String), FetchError> {
    key_and_csr_with_dns(identity, &[])
}

/// A new ECDSA P-256 key and a PEM CSR with `identity` as its only URI SAN followed by
/// `dns_names` as DNS SANs (`*.suffix` wildcards allowed).
pub fn key_and_csr_with_dns(
    identity: &SpiffeId,
    dns_names: &[String],
) -> Result<(PrivateKeyDer<'static>, String), FetchError> {
    let failed = |err: rcgen::Error| FetchError::KeyGeneration(err.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(
        identity.to_string().try_into().map_err(failed)?,
    )];
    for name in dns_names {
        let name = name.clone().try_into().map_err(failed)?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    let csr = params.serialize_request(&key).map_err(failed)?;
    let pem = csr.pem().map_err(failed)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((der, pem))
}

/// Time from now until renewal: half-life minus up to `jitter_fraction` of the lifetime,
/// measured from the certificate's `not_before`; at least one second.
fn renewal_delay(cert: &WorkloadCert, jitter_fraction: f64) -> Duration {
    let lifetime = cert.lifetime();
    let jitter = lifetime.mul_f64(jitter_fraction.clamp(0.0, 0.5) * rand::random::<f64>());
    let renew_at = cert.not_before() + lifetime / 2 - jitter;
    renew_at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}
