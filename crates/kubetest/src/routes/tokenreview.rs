//! `POST /apis/authentication.k8s.io/v1/tokenreviews`, answered from the tokens a test
//! registered with [`TestApiServer::register_token`](crate::TestApiServer::register_token),
//! shaped as the real API answers for a projected service account token:
//! `user.username` `system:serviceaccount:NS:SA`, the service account's groups, the
//! audiences the token is valid for among those asked, and for a token bound to a pod the
//! `authentication.kubernetes.io/pod-name` and `pod-uid` extras. An unknown token, or one
//! issued for none of the audiences asked, is answered `authenticated: false` with an error,
//! as the API does (the request itself succeeds).

use super::{Body, Ctx, json_response, status};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The audience of tokens when a review names none (the API server's own).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// What a registered token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub service_account: String,
    /// The audiences it was issued for.
    pub audiences: Vec<String>,
    /// The pod it is bound to: (name, uid).
    pub pod: Option<(String, String)>,
}

impl TokenInfo {
    /// A token of `namespace/service_account` for `audience`, bound to no pod.
    #[must_use]
    pub fn new(namespace: &str, service_account: &str, audience: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            audiences: vec![audience.to_owned()],
            pod: None,
        }
    }

    /// Bound to the pod `name` with `uid` (a projected token of that pod).
    #[must_use]
    pub fn bound_to(mut self, name: &str, uid: &str) -> Self {
        self.pod = Some((name.to_owned(), uid.to_owned()));
        self
    }
}

/// The tokens the server knows, and how many reviews it answered.
#[derive(Debug, Default)]
pub struct TokenRegistry {
    tokens: Mutex<HashMap<String, TokenInfo>>,
    reviews: std::sync::atomic::AtomicUsize,
}

impl TokenRegistry {
    /// Registers (or replaces) `token`.
    pub fn register(&self, token: &str, info: TokenInfo) {
        self.lock().insert(token.to_owned(), info);
    }

    /// Forgets `token` (revoked or expired): reviews of it fail from now on.
    pub fn revoke(&self, token: &str) {
        self.lock().remove(token);
    }

    /// How many reviews were answered so far.
    #[must_use]
    pub fn reviews(&self) -> usize {
        self.reviews.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TokenInfo>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Answers a review.
pub fn review(ctx: &Ctx, body: &[u8]) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a TokenReview",
        );
    };
    ctx.tokens
        .reviews
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let asked: Vec<String> = match request["spec"]["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![API_AUDIENCE.to_owned()],
    };
    let info = ctx.tokens.lock().get(token).cloned();
    let review_status = match info {
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
        Some(info) => {
            let valid: Vec<&String> = asked
                .iter()
                .filter(|a| info.audiences.contains(a))
                .collect();
            if valid.is_empty() {
                json!({
                    "authenticated": false,
                    "error": "token audiences are invalid for the target audiences",
                })
            } else {
                json!({
                    "authenticated": true,
                    "user": user(&info),
                    "audiences": valid,
                })
            }
        }
    };
    let mut answer = request.clone();
    answer["status"] = review_status;
    if let Some(spec) = answer["spec"].as_object_mut() {
        spec.remove("token");
    }
    json_response(StatusCode::CREATED, &answer)
}

fn user(info: &TokenInfo) -> Value {
    let mut user = json!({
        "username": format!("system:serviceaccount:{}:{}", info.namespace, info.service_account),
        "uid": format!("sa-uid-{}-{}", info.namespace, info.service_account),
        "groups": [
            "system:serviceaccounts",
            format!("system:serviceaccounts:{}", info.namespace),
            "system:authenticated",
        ],
    });
    if let Some((name, uid)) = &info.pod {
        user["extra"] = json!({
            "authentication.kubernetes.io/pod-name": [name],
            "authentication.kubernetes.io/pod-uid": [uid],
        });
    }
    user
}

impl crate::TestApiServer {
    /// Makes `token` valid for `TokenReview` as `info` says.
    pub fn register_token(&self, token: &str, info: TokenInfo) {
        self.tokens.register(token, info);
    }

    /// The tokens `TokenReview` knows (to revoke one, or count reviews).
    #[must_use]
    pub fn tokens(&self) -> &TokenRegistry {
        &self.tokens
    }
}
