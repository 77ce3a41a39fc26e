//! Moving a running mesh from one root to another without an outage. [`RootRotation`] wraps
//! the CA that signs and, during a rotation, the one replacing it, and goes through three
//! phases:
//!
//! 1. **Publishing**: both roots are sent with every certificate (the trust bundle is the
//!    last element of the CA's answer); the old root still signs. It lasts until every
//!    certificate holder the CA knows of (one per caller and identity) has fetched a
//!    certificate since the bundle changed, so every proxy trusts both roots.
//! 2. **Issuing**: the new root signs; both roots stay trusted, so old and new certificates
//!    verify each other in both directions. It lasts until no live certificate the CA knows
//!    of chains to the old root.
//! 3. The old root is dropped: the bundle holds the new root only (back to **Steady**).
//!
//! The ledger of issued certificates lives in memory: after a restart the CA cannot know
//! what it issued before, so a resumed rotation does not leave a phase until the longest
//! certificate it may have issued has expired ([`RootRotation::resume`]).

use super::{CaError, CertificateAuthority, IssuedCert, SignedChain};
use crate::SpiffeId;
use aws_lc_rs::digest::{SHA256, digest};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One root, which signs.
    Steady,
    /// Both roots published; the old one signs.
    Publishing,
    /// Both roots trusted; the new one signs.
    Issuing,
}

impl Phase {
    /// Lower-case name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Publishing => "publishing",
            Self::Issuing => "issuing",
        }
    }
}

/// Why a rotation could not start.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("a root rotation is already in progress (phase {0}); wait until it completes")]
    InProgress(&'static str),
    #[error("the new root is the root in use ({0}); a rotation needs a different root")]
    SameRoot(String),
}

/// A phase change made by [`RootRotation::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advanced {
    /// Every holder has both roots: the new root signs from now on.
    NewRootSigns,
    /// No live certificate chains to the old root any more: it is no longer trusted.
    OldRootDropped,
}

/// One root as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootStatus {
    /// SHA-256 of the root's DER, lower-case hex.
    pub fingerprint: String,
    pub not_after: SystemTime,
    /// Whether this root signs new certificates now.
    pub signing: bool,
    /// Live certificates (the latest per holder and identity) chaining to this root.
    pub live_certificates: usize,
}

/// Where a rotation stands, for `weft status`.
#[derive(Debug, Clone)]
pub struct RotationStatus {
    pub phase: Phase,
    pub since: SystemTime,
    /// Trusted roots, the one in use before the rotation first.
    pub roots: Vec<RootStatus>,
    /// Publishing: live certificates whose holder has not fetched one with both roots yet.
    pub holders_without_bundle: usize,
    /// After a restart mid-rotation: the phase does not change before this time.
    pub unknown_until: Option<SystemTime>,
}

/// The latest certificate of one holder for one identity.
#[derive(Debug, Clone)]
struct Issued {
    root: String,
    not_after: SystemTime,
    bundle_epoch: u64,
}

struct State {
    current: Arc<CertificateAuthority>,
    next: Option<Arc<CertificateAuthority>>,
    phase: Phase,
    since: SystemTime,
    bundle_pem: String,
    bundle_epoch: u64,
    ledger: HashMap<(String, String), Issued>,
    unknown_until: Option<SystemTime>,
}

impl State {
    fn signer(&self) -> &Arc<CertificateAuthority> {
        match (&self.next, self.phase) {
            (Some(next), Phase::Issuing) => next,
            _ => &self.current,
        }
    }

    fn trusted(&self) -> impl Iterator<Item = &Arc<CertificateAuthority>> {
        std::iter::once(&self.current).chain(self.next.iter())
    }

    fn set_phase(&mut self, phase: Phase, now: SystemTime) {
        self.phase = phase;
        self.since = now;
        self.bundle_pem = self.trusted().map(|ca| ca.root_pem()).collect();
        self.bundle_epoch += 1;
    }

    fn live(&self, now: SystemTime) -> impl Iterator<Item = &Issued> {
        self.ledger
            .values()
            .filter(move |issued| issued.not_after > now)
    }

    fn settled(&self, now: SystemTime) -> bool {
        self.unknown_until.is_none_or(|until| until <= now)
    }
}

/// The signing CA plus the state of a root rotation. Shared by the CA service and the
/// control plane's serving certificate; cheap to share behind an `Arc`.
pub struct RootRotation {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for RootRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootRotation")
            .field("phase", &self.lock().phase)
            .finish_non_exhaustive()
    }
}

impl RootRotation {
    /// No rotation: `ca` signs and its root is the bundle.
    pub fn new(ca: Arc<CertificateAuthority>) -> Self {
        let now = SystemTime::now();
        let mut state = State {
            current: ca,
            next: None,
            phase: Phase::Steady,
            since: now,
            bundle_pem: String::new(),
            bundle_epoch: 0,
            ledger: HashMap::new(),
            unknown_until: None,
        };
        state.set_phase(Phase::Steady, now);
        Self {
            state: Mutex::new(state),
            changes: watch::Sender::new(0),
        }
    }

    /// A rotation to `next` found in progress at start-up: back to publishing (both roots,
    /// the old one signs, which every holder trusts), and no phase change before
    /// `longest_certificate` has passed, since certificates issued before the restart are
    /// unknown.
    pub fn resume(
        current: CertificateAuthority,
        next: CertificateAuthority,
        longest_certificate: Duration,
    ) -> Self {
        let rotation = Self::new(Arc::new(current));
        let now = SystemTime::now();
        {
            let mut state = rotation.lock();
            state.next = Some(Arc::new(next));
            state.unknown_until = Some(now + longest_certificate);
            state.set_phase(Phase::Publishing, now);
        }
        rotation
    }

    /// Starts moving to `next`: phase 1, both roots published.
    ///
    /// # Errors
    /// A rotation is in progress, or `next` has the root in use.
    pub fn begin(&self, next: CertificateAuthority) -> Result<(), RotationError> {
        let mut state = self.lock();
        if state.phase != Phase::Steady {
            return Err(RotationError::InProgress(state.phase.name()));
        }
        if next.root() == state.current.root() {
            return Err(RotationError::SameRoot(fingerprint(next.root())));
        }
        state.next = Some(Arc::new(next));
        state.set_phase(Phase::Publishing, SystemTime::now());
        drop(state);
        self.changed();
        Ok(())
    }

    /// Signs a certificate for `holder` (the authenticated caller) with the CA that signs
    /// now; the chain ends with the trust bundle (every trusted root in one PEM string).
    ///
    /// # Errors
    /// The signing CA's error.
    pub fn sign(
        &self,
        holder: &str,
        spki_der: &[u8],
        identity: &SpiffeId,
        dns_names: &[String],
        validity: Duration,
    ) -> Result<SignedChain, CaError> {
        let mut state = self.lock();
        let signer = Arc::clone(state.signer());
        let mut signed = signer.sign_serving(spki_der, identity, dns_names, validity)?;
        if let Some(root) = signed.pem.last_mut() {
            root.clone_from(&state.bundle_pem);
        }
        record(
            &mut state,
            holder,
            &identity.to_string(),
            &signer,
            signed.not_after,
        );
        Ok(signed)
    }

    /// Issues a TLS serving certificate (the control plane's own) from the CA that signs now,
    /// recorded like workload certificates under `holder`.
    ///
    /// # Errors
    /// The signing CA's error.
    pub fn issue_server_cert(
        &self,
        holder: &str,
        dns_names: &[String],
        validity: Duration,
    ) -> Result<IssuedCert, CaError> {
        let mut state = self.lock();
        let signer = Arc::clone(state.signer());
        let issued = signer.issue_server_cert(dns_names, validity)?;
        record(&mut state, holder, "", &signer, issued.not_after);
        Ok(issued)
    }

    /// Moves to the next phase when its condition holds at `now`.
    pub fn advance(&self, now: SystemTime) -> Option<Advanced> {
        let mut state = self.lock();
        state.ledger.retain(|_, issued| issued.not_after > now);
        if !state.settled(now) {
            return None;
        }
        let advanced = match state.phase {
            Phase::Steady => None,
            Phase::Publishing => {
                let epoch = state.bundle_epoch;
                let informed = state.live(now).all(|issued| issued.bundle_epoch >= epoch);
                informed.then(|| {
                    state.set_phase(Phase::Issuing, now);
                    Advanced::NewRootSigns
                })
            }
            Phase::Issuing => {
                let old = fingerprint(state.current.root());
                let retired = state.live(now).all(|issued| issued.root != old);
                retired.then(|| {
                    if let Some(next) = state.next.take() {
                        state.current = next;
                    }
                    state.unknown_until = None;
                    state.set_phase(Phase::Steady, now);
                    Advanced::OldRootDropped
                })
            }
        };
        drop(state);
        if advanced.is_some() {
            self.changed();
        }
        advanced
    }

    /// The CA that signs now.
    pub fn signer(&self) -> Arc<CertificateAuthority> {
        Arc::clone(self.lock().signer())
    }

    /// The trusted roots (PEM, the one in use before a rotation first).
    pub fn bundle_pem(&self) -> String {
        self.lock().bundle_pem.clone()
    }

    /// The trusted roots (DER).
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.lock().trusted().map(|ca| ca.root().clone()).collect()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Sees a new value each time the signing CA or the bundle changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Where the rotation stands at `now`.
    pub fn status(&self, now: SystemTime) -> RotationStatus {
        let state = self.lock();
        let signing = fingerprint(state.signer().root());
        let roots = state
            .trusted()
            .map(|ca| {
                let print = fingerprint(ca.root());
                RootStatus {
                    live_certificates: state.live(now).filter(|i| i.root == print).count(),
                    signing: print == signing,
                    not_after: ca.root_not_after(),
                    fingerprint: print,
                }
            })
            .collect();
        let holders_without_bundle = match state.phase {
            Phase::Publishing => state
                .live(now)
                .filter(|issued| issued.bundle_epoch < state.bundle_epoch)
                .count(),
            _ => 0,
        };
        RotationStatus {
            phase: state.phase,
            since: state.since,
            roots,
            holders_without_bundle,
            unknown_until: state.unknown_until.filter(|until| *until > now),
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn record(
    state: &mut State,
    holder: &str,
    identity: &str,
    signer: &CertificateAuthority,
    not_after: SystemTime,
) {
    let issued = Issued {
        root: fingerprint(signer.root()),
        not_after,
        bundle_epoch: state.bundle_epoch,
    };
    state
        .ledger
        .insert((holder.to_owned(), identity.to_owned()), issued);
}

/// SHA-256 of a certificate's DER, lower-case hex (what `openssl x509 -fingerprint -sha256`
/// prints, without colons).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    digest(&SHA256, cert.as_ref())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::split_ca_response;
    use rcgen::{KeyPair, PublicKeyData};

    const HOUR: Duration = Duration::from_secs(3600);

    fn ca() -> CertificateAuthority {
        CertificateAuthority::generate_in_memory().expect("ca")
    }

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("cluster.local", "default", sa).expect("id")
    }

    /// Signs for `holder`/`sa`; returns (leaf's issuer root fingerprint, roots in the answer).
    fn fetch(rotation: &RootRotation, holder: &str, sa: &str) -> (String, Vec<String>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let signed = rotation
            .sign(holder, &key.subject_public_key_info(), &id(sa), &[], HOUR)
            .expect("sign");
        let (_, roots) = split_ca_response(&signed.pem).expect("chain");
        let signer = fingerprint(rotation.signer().root());
        (signer, roots.iter().map(fingerprint).collect())
    }

    #[test]
    fn a_rotation_publishes_then_signs_with_the_new_root_then_drops_the_old_one() {
        let old = Arc::new(ca());
        let new = ca();
        let (old_print, new_print) = (fingerprint(old.root()), fingerprint(new.root()));
        let rotation = RootRotation::new(Arc::clone(&old));
        let now = SystemTime::now();
        let (_, roots) = fetch(&rotation, "node/a", "web");
        assert_eq!(roots, std::slice::from_ref(&old_print));
        fetch(&rotation, "node/b", "api");

        rotation.begin(new).expect("begin");
        assert_eq!(rotation.phase(), Phase::Publishing);
        let (signer, roots) = fetch(&rotation, "node/a", "web");
        assert_eq!(
            signer, old_print,
            "the old root signs while the bundle spreads"
        );
        assert_eq!(roots, [old_print.clone(), new_print.clone()]);
        assert_eq!(
            rotation.advance(now),
            None,
            "node/b has not fetched the bundle"
        );
        assert_eq!(rotation.status(now).holders_without_bundle, 1);
        fetch(&rotation, "node/b", "api");
        assert_eq!(rotation.advance(now), Some(Advanced::NewRootSigns));

        let (signer, roots) = fetch(&rotation, "node/a", "web");
        assert_eq!(signer, new_print);
        assert_eq!(roots, [old_print.clone(), new_print.clone()]);
        let status = rotation.status(now);
        assert_eq!(
            status.roots[0].live_certificates, 1,
            "node/b still on the old root"
        );
        assert!(status.roots[1].signing);
        assert_eq!(rotation.advance(now), None);
        fetch(&rotation, "node/b", "api");
        assert_eq!(rotation.advance(now), Some(Advanced::OldRootDropped));

        assert_eq!(rotation.phase(), Phase::Steady);
        let (signer, roots) = fetch(&rotation, "node/b", "api");
        assert_eq!((signer, roots), (new_print.clone(), vec![new_print]));
    }

    #[test]
    fn expired_certificates_do_not_hold_a_phase() {
        let rotation = RootRotation::new(Arc::new(ca()));
        fetch(&rotation, "node/gone", "web");
        rotation.begin(ca()).expect("begin");
        let now = SystemTime::now();
        assert_eq!(rotation.advance(now), None);
        let later = now + 2 * HOUR;
        assert_eq!(rotation.advance(later), Some(Advanced::NewRootSigns));
        assert_eq!(rotation.advance(later), Some(Advanced::OldRootDropped));
    }

    #[test]
    fn one_rotation_at_a_time_and_never_to_the_same_root() {
        let rotation = RootRotation::new(Arc::new(ca()));
        rotation.begin(ca()).expect("first rotation");
        let err = rotation.begin(ca()).expect_err("second rotation");
        assert!(err.to_string().contains("already in progress"), "{err}");
    }

    #[test]
    fn a_resumed_rotation_waits_for_certificates_it_cannot_know_of() {
        let rotation = RootRotation::resume(ca(), ca(), HOUR);
        let now = SystemTime::now();
        assert_eq!(rotation.phase(), Phase::Publishing);
        assert_eq!(
            rotation.advance(now),
            None,
            "unknown certificates may be live"
        );
        assert!(rotation.status(now).unknown_until.is_some());
        assert_eq!(
            rotation.advance(now + HOUR + Duration::from_secs(1)),
            Some(Advanced::NewRootSigns)
        );
    }

    #[test]
    fn a_change_of_signer_or_bundle_is_announced() {
        let rotation = RootRotation::new(Arc::new(ca()));
        let mut changes = rotation.subscribe();
        rotation.begin(ca()).expect("begin");
        assert!(changes.has_changed().expect("sender alive"));
        changes.mark_unchanged();
        rotation.advance(SystemTime::now());
        assert!(changes.has_changed().expect("sender alive"));
    }
}
