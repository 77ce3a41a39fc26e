//! The certificate manager: shared fetches, renewal at about half-life (tokio paused clock),
//! retries with backoff while the old certificate stays in use, forgetting identities.

mod common;

use common::id;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weft_identity::provider::BoxFuture;
use weft_identity::{
    CertError, CertManager, CertManagerConfig, CertRequest, CertificateAuthority,
    CertificateProvider, FetchError, LocalCaProvider,
};

const LIFETIME: Duration = Duration::from_secs(3600);

/// A local CA that counts calls and fails the call numbers (1-based) it is told to.
struct ScriptedCa {
    inner: LocalCaProvider,
    calls: AtomicUsize,
    failing_calls: Mutex<HashSet<usize>>,
}

impl ScriptedCa {
    fn new(failing: &[usize]) -> Arc<Self> {
        let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
        Arc::new(Self {
            inner: LocalCaProvider::new(ca),
            calls: AtomicUsize::new(0),
            failing_calls: Mutex::new(failing.iter().copied().collect()),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CertificateProvider for ScriptedCa {
    fn fetch<'a>(
        &'a self,
        request: &'a CertRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = self.failing_calls.lock().expect("lock").contains(&call);
        Box::pin(async move {
            // A real CA answers asynchronously; yield so concurrent callers can pile up.
            tokio::task::yield_now().await;
            if fail {
                Err(FetchError::Local(format!(
                    "scripted failure of call {call}"
                )))
            } else {
                self.inner.fetch(request).await
            }
        })
    }
}

fn manager(provider: Arc<ScriptedCa>) -> CertManager {
    CertManager::new(
        provider,
        CertManagerConfig {
            validity: LIFETIME,
            ..CertManagerConfig::default()
        },
    )
}

#[tokio::test]
async fn concurrent_requests_share_one_fetch() {
    let provider = ScriptedCa::new(&[]);
    let manager = manager(provider.clone());
    let identity = id("default", "shared");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (manager, identity) = (manager.clone(), identity.clone());
        tasks.spawn(async move { manager.get(&identity).await.expect("cert") });
    }
    let certs: Vec<_> = tasks.join_all().await;
    assert_eq!(provider.calls(), 1, "one fetch for all callers");
    assert!(certs.iter().all(|c| Arc::ptr_eq(c, &certs[0])));
    assert_eq!(certs[0].identity(), &identity);
    assert_eq!(
        certs[0].lifetime(),
        LIFETIME + Duration::from_secs(60),
        "asked lifetime + backdate"
    );
}

#[tokio::test(start_paused = true)]
async fn renews_at_about_half_life_before_expiry() {
    let provider = ScriptedCa::new(&[]);
    let manager = manager(provider.clone());
    let identity = id("default", "renewing");
    let first = manager.get(&identity).await.expect("first cert");
    let start = Instant::now();
    let mut state = manager.subscribe(&identity);
    state.mark_unchanged();
    tokio::time::timeout(LIFETIME, state.changed())
        .await
        .expect("renewed before the certificate's lifetime passed")
        .expect("still managed");
    let elapsed = start.elapsed();
    let renewed = state.borrow().cert.clone().expect("new cert");
    assert_ne!(renewed.serial(), first.serial(), "a new certificate");
    assert_eq!(provider.calls(), 2);
    // Half-life (of 3660 s, backdate included) minus up to 10 % jitter.
    assert!(
        elapsed >= Duration::from_secs(1400),
        "not too early: {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_secs(1830),
        "by half-life: {elapsed:?}"
    );
    assert!(Arc::ptr_eq(
        &manager.current(&identity).expect("current"),
        &renewed
    ));
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_retry_with_backoff_and_keep_the_old_cert() {
    // Call 1 succeeds, calls 2-4 (renewals) fail, call 5 succeeds.
    let provider = ScriptedCa::new(&[2, 3, 4]);
    let manager = manager(provider.clone());
    let identity = id("default", "flaky");
    let first = manager.get(&identity).await.expect("first cert");
    let mut state = manager.subscribe(&identity);
    let mut failure_times = Vec::new();
    loop {
        tokio::time::timeout(LIFETIME, state.changed())
            .await
            .expect("progress")
            .expect("managed");
        let snapshot = state.borrow_and_update().clone();
        if snapshot.last_error.is_some() {
            failure_times.push(Instant::now());
            // While renewals fail, the old certificate is still served.
            let current = manager.current(&identity).expect("old cert still valid");
            assert!(Arc::ptr_eq(&current, &first));
            assert!(Arc::ptr_eq(
                &manager.get(&identity).await.expect("get"),
                &first
            ));
        } else if snapshot.attempts == 5 {
            assert_ne!(snapshot.cert.expect("cert").serial(), first.serial());
            break;
        }
    }
    assert_eq!(failure_times.len(), 3);
    let gaps: Vec<_> = failure_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [Duration::from_secs(1), Duration::from_secs(2)],
        "exponential backoff"
    );
    assert_eq!(provider.calls(), 5);
}

#[tokio::test]
async fn first_fetch_failure_is_reported_not_hung() {
    let provider = ScriptedCa::new(&[1]);
    let manager = manager(provider);
    let err = manager
        .get(&id("default", "down"))
        .await
        .expect_err("CA failed");
    assert!(matches!(&err, CertError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("scripted failure"), "{err}");
}

#[tokio::test]
async fn forgotten_identities_stop_being_managed() {
    let provider = ScriptedCa::new(&[]);
    let manager = manager(provider.clone());
    let (keep, drop) = (id("default", "keep"), id("default", "drop"));
    manager.get(&keep).await.expect("cert");
    manager.get(&drop).await.expect("cert");
    manager.retain(|identity| *identity == keep);
    assert_eq!(manager.identities(), std::slice::from_ref(&keep));
    assert!(manager.current(&drop).is_none());
    assert!(manager.current(&keep).is_some());
    // Needing it again starts a fresh fetch.
    manager.get(&drop).await.expect("cert");
    assert_eq!(provider.calls(), 3);
    assert!(manager.forget(&drop));
    assert!(!manager.forget(&drop));
}
