//! Callers authenticated by their projected service account token (Kubernetes mode): the
//! control plane asks the API with a `TokenReview` whether the token is valid for its
//! audience (`istio-ca`), then decides who the caller is:
//! - a node proxy's service account (`--node-service-account`, by default `weft-node` in
//!   the control plane's namespace) stands for the node its token's bound pod runs on: the
//!   review's `authentication.kubernetes.io/pod-name` and `pod-uid` extras name the pod, the
//!   pod's `spec.nodeName` the node (a token of a pod that was replaced, or that is not bound
//!   to a pod at all, is refused); the CA then signs only identities placed on that node;
//! - any other service account is one workload and gets only its own identity.
//!
//! Accepted tokens are remembered for a short time (SHA-256 digests only, like the token
//! file), so a node proxy's CA and xDS calls cost one review between them; refused ones for
//! a shorter time, so a caller repeating a bad token does not repeat the review. A token
//! that cannot be one (empty, over 16 KiB, or with characters outside printable ASCII) is
//! refused without asking, and at most [`MAX_REVIEWS_IN_FLIGHT`] reviews run at once (a
//! caller waits up to the review timeout for its turn): a flood of made-up tokens on the
//! CA port cannot become a flood of requests to the API server. Anything that goes wrong
//! (API unreachable, timeout, an answer without the fields above) refuses the token:
//! authentication fails closed.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weft_control::callers::{Caller, CallerAuthenticator};
use weft_identity::SpiffeId;
use weft_xds::BoxFuture;

/// The audience node proxies' projected tokens are issued for (as Istio's CA expects).
pub const DEFAULT_AUDIENCE: &str = "istio-ca";
/// The review extra naming the pod a bound token belongs to.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The review extra with that pod's uid.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
/// How long an accepted token is believed without asking again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Longest wait for the API's answer before the token is refused.
pub const DEFAULT_REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Accepted (and, separately, refused) tokens remembered at most (expired ones are
/// dropped first).
const CACHE_CAPACITY: usize = 16 * 1024;
/// How long a refused token is refused again without asking.
pub const REFUSED_TTL: Duration = Duration::from_secs(5);
/// Reviews sent to the API at once.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 32;
/// Longest token sent for review (projected service account tokens are about 1 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A service account: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccount {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::str::FromStr for ServiceAccount {
    type Err = String;

    /// Parses `NAMESPACE/NAME`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("service account `{text}`: expected NAMESPACE/NAME")),
        }
    }
}

/// Settings of [`TokenReviewAuthenticator`].
#[derive(Debug, Clone)]
pub struct TokenReviewConfig {
    /// The audience tokens must be issued for.
    pub audience: String,
    /// Trust domain of workload identities.
    pub trust_domain: String,
    /// Service accounts of node proxies.
    pub node_accounts: Vec<ServiceAccount>,
    /// How long an accepted token is believed.
    pub cache_ttl: Duration,
    /// Longest wait for the review and the pod lookup.
    pub timeout: Duration,
}

impl TokenReviewConfig {
    /// Defaults for a control plane in `namespace`: audience `istio-ca`, node proxies
    /// running as `NAMESPACE/weft-node`.
    #[must_use]
    pub fn new(namespace: &str, trust_domain: &str) -> Self {
        Self {
            audience: DEFAULT_AUDIENCE.to_owned(),
            trust_domain: trust_domain.to_owned(),
            node_accounts: vec![ServiceAccount {
                namespace: namespace.to_owned(),
                name: "weft-node".to_owned(),
            }],
            cache_ttl: DEFAULT_CACHE_TTL,
            timeout: DEFAULT_REVIEW_TIMEOUT,
        }
    }
}

/// [`CallerAuthenticator`] by `TokenReview` (see the module docs).
pub struct TokenReviewAuthenticator {
    client: kube::Client,
    config: TokenReviewConfig,
    accepted: Mutex<HashMap<[u8; 32], (Instant, Caller)>>,
    refused: Mutex<HashMap<[u8; 32], (Instant, ())>>,
    reviews: Semaphore,
}

impl TokenReviewAuthenticator {
    /// Reviews tokens through `client`.
    #[must_use]
    pub fn new(client: kube::Client, config: TokenReviewConfig) -> Self {
        Self {
            client,
            config,
            accepted: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            reviews: Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    /// The caller `token` stands for, or why it is refused.
    ///
    /// # Errors
    /// The reason the token is refused (logged by [`CallerAuthenticator::authenticate`]).
    pub async fn review(&self, token: &str) -> Result<Caller, String> {
        self.judge(token).await.map_err(Refusal::into_reason)
    }

    /// [`Self::review`], telling a definite refusal from an unanswered question.
    async fn judge(&self, token: &str) -> Result<Caller, Refusal> {
        if token.is_empty()
            || token.len() > MAX_TOKEN_BYTES
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            let why = "not a service account token (empty, too long, or not printable)";
            return Err(Refusal::Definite(why.into()));
        }
        let user = self.reviewed_user(token).await?;
        let account = service_account(&user)?;
        if self.config.node_accounts.contains(&account) {
            let node = self.bound_node(&account, &user).await?;
            return Ok(Caller::Node(node));
        }
        SpiffeId::new(&self.config.trust_domain, &account.namespace, &account.name)
            .map(Caller::Workload)
            .map_err(|err| Refusal::Definite(format!("service account {account:?}: {err}")))
    }

    async fn reviewed_user(&self, token: &str) -> Result<UserInfo, Refusal> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.config.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let answer = tokio::time::timeout(
            self.config.timeout,
            reviews.create(&PostParams::default(), &review),
        )
        .await
        .map_err(|_| Refusal::Unanswered("the TokenReview got no answer in time".into()))?
        .map_err(|err| Refusal::Unanswered(format!("TokenReview failed: {err}")))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "no reason given".into());
            return Err(format!("token not authenticated: {why}").into());
        }
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.contains(&self.config.audience) {
            return Err(format!(
                "token not valid for audience {} (valid for {audiences:?})",
                self.config.audience
            )
            .into());
        }
        status
            .user
            .ok_or_else(|| "TokenReview answer names no user".into())
    }

    /// The node the token's bound pod runs on.
    async fn bound_node(
        &self,
        account: &ServiceAccount,
        user: &UserInfo,
    ) -> Result<String, Refusal> {
        let pod_name = extra(user, POD_NAME_EXTRA)
            .ok_or("node proxy token is not bound to a pod (no pod-name in the review)")?;
        let pod_uid = extra(user, POD_UID_EXTRA)
            .ok_or("node proxy token is not bound to a pod (no pod-uid in the review)")?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &account.namespace);
        let pod = tokio::time::timeout(self.config.timeout, pods.get_opt(pod_name))
            .await
            .map_err(|_| {
                Refusal::Unanswered(format!("reading pod {pod_name} got no answer in time"))
            })?
            .map_err(|err| Refusal::Unanswered(format!("reading pod {pod_name}: {err}")))?
            .ok_or_else(|| format!("the token's pod {pod_name} does not exist"))?;
        if pod.metadata.uid.as_deref() != Some(pod_uid) {
            return Err(
                format!("the token's pod {pod_name} was replaced (uid {pod_uid} is gone)").into(),
            );
        }
        pod.spec
            .and_then(|spec| spec.node_name)
            .filter(|node| !node.is_empty())
            .ok_or_else(|| format!("the token's pod {pod_name} is not scheduled on a node").into())
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Caller> {
        fresh(&self.accepted, digest)
    }

    fn remember(&self, digest: [u8; 32], caller: Caller) {
        keep(&self.accepted, digest, self.config.cache_ttl, caller);
    }
}

/// The value remembered for `digest` in `cache` while it is fresh.
fn fresh<T: Clone>(cache: &Mutex<HashMap<[u8; 32], (Instant, T)>>, digest: &[u8; 32]) -> Option<T> {
    let cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .get(digest)
        .filter(|(until, _)| Instant::now() < *until)
        .map(|(_, value)| value.clone())
}

/// Remembers `value` for `digest` for `ttl`, within [`CACHE_CAPACITY`] (expired entries
/// go first; when still full, nothing new is remembered).
fn keep<T>(
    cache: &Mutex<HashMap<[u8; 32], (Instant, T)>>,
    digest: [u8; 32],
    ttl: Duration,
    value: T,
) {
    let now = Instant::now();
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHE_CAPACITY {
        cache.retain(|_, (until, _)| now < *until);
    }
    if cache.len() < CACHE_CAPACITY {
        cache.insert(digest, (now + ttl, value));
    }
}

impl CallerAuthenticator for TokenReviewAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Caller>> {
        Box::pin(async move {
            let digest = token_digest(token);
            if let Some(caller) = self.cached(&digest) {
                return Some(caller);
            }
            if fresh(&self.refused, &digest).is_some() {
                return None;
            }
            // Waiting for a turn refuses without remembering: the token was not judged.
            let Ok(Ok(_turn)) =
                tokio::time::timeout(self.config.timeout, self.reviews.acquire()).await
            else {
                tracing::warn!("bearer token refused: too many token reviews in flight");
                return None;
            };
            match self.judge(token).await {
                Ok(caller) => {
                    self.remember(digest, caller.clone());
                    Some(caller)
                }
                Err(Refusal::Definite(reason)) => {
                    tracing::warn!(%reason, "bearer token refused");
                    keep(&self.refused, digest, REFUSED_TTL, ());
                    None
                }
                Err(Refusal::Unanswered(reason)) => {
                    tracing::warn!(%reason, "bearer token refused: no answer to judge it by");
                    None
                }
            }
        })
    }
}

/// Why a token is refused: a definite answer (remembered for [`REFUSED_TTL`]), or no answer
/// to judge it by (the API did not answer: asked again next time).
enum Refusal {
    Definite(String),
    Unanswered(String),
}

impl Refusal {
    fn into_reason(self) -> String {
        match self {
            Self::Definite(reason) | Self::Unanswered(reason) => reason,
        }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Self::Definite(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Self::Definite(reason.to_owned())
    }
}

/// `system:serviceaccount:NS:NAME` → the service account.
fn service_account(user: &UserInfo) -> Result<ServiceAccount, String> {
    let username = user.username.as_deref().unwrap_or_default();
    let account = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty());
    match account {
        Some((namespace, name)) => Ok(ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        None => Err(format!("user `{username}` is not a service account")),
    }
}

/// The single value of a review extra.
fn extra<'u>(user: &'u UserInfo, key: &str) -> Option<&'u str> {
    match user.extra.as_ref()?.get(key)?.as_slice() {
        [value] if !value.is_empty() => Some(value),
        _ => None,
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_parse_from_usernames_and_flags() {
        let user = |name: &str| UserInfo {
            username: Some(name.into()),
            ..UserInfo::default()
        };
        assert_eq!(
            service_account(&user("system:serviceaccount:shop:web")),
            Ok("shop/web".parse().expect("account"))
        );
        assert!(service_account(&user("alice")).is_err());
        assert!(service_account(&user("system:serviceaccount:shop")).is_err());
        assert!("shop".parse::<ServiceAccount>().is_err());
        assert!("a/b/c".parse::<ServiceAccount>().is_err());
    }
}
