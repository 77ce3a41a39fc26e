//! Stream authentication: the caller decides who may open an xDS stream.

pub use futures::future::BoxFuture;
use tonic::metadata::MetadataMap;

/// Who opened a stream, as established by a [`StreamAuthenticator`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerIdentity {
    /// The authenticated principal (e.g. `spiffe://cluster.local/ns/istio-system/sa/ztunnel`
    /// or a node name bound to the token).
    pub principal: String,
}

/// Why a stream was refused; returned to the client as gRPC `UNAUTHENTICATED`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("xDS stream not authenticated: {reason}")]
pub struct AuthError {
    /// Human-readable reason (sent to the client, so it must not leak secrets).
    pub reason: String,
}

impl AuthError {
    /// An error with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Decides whether a new xDS stream may proceed, from its gRPC metadata (headers such as
/// `authorization: Bearer <token>` and `clusterid`). Called once per stream, before any
/// request is read. Asynchronous, so a check that needs I/O (a Kubernetes TokenReview)
/// waits without holding a worker thread and other streams keep being served.
///
/// A plain function of the metadata is one too (see the crate example).
pub trait StreamAuthenticator: Send + Sync + 'static {
    /// Resolves to the peer's identity or why it is refused.
    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<PeerIdentity, AuthError>>;
}

impl<F> StreamAuthenticator for F
where
    F: Fn(&MetadataMap) -> Result<PeerIdentity, AuthError> + Send + Sync + 'static,
{
    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<PeerIdentity, AuthError>> {
        Box::pin(std::future::ready(self(metadata)))
    }
}

/// Accepts every stream as principal `anonymous`. Only for a plaintext development port and
/// tests; never on a port reachable by untrusted peers.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnonymous;

impl StreamAuthenticator for AllowAnonymous {
    fn authenticate<'a>(
        &'a self,
        _metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<PeerIdentity, AuthError>> {
        Box::pin(std::future::ready(Ok(PeerIdentity {
            principal: "anonymous".into(),
        })))
    }
}

/// The token of an `authorization: Bearer <token>` header, if present and well-formed.
#[must_use]
pub fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_with(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().expect("valid header"));
        metadata
    }

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token(&metadata_with("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&metadata_with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&metadata_with("Basic abc")), None);
        assert_eq!(bearer_token(&metadata_with("Bearer ")), None);
        assert_eq!(bearer_token(&MetadataMap::new()), None);
    }
}
