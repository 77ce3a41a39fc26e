//! Who is calling the control plane: one bearer token -> [`Caller`] abstraction,
//! [`CallerAuthenticator`], shared by the CA service and the xDS server (through
//! [`XdsCallerAuth`]), since node proxies present the same token to both.

use std::fmt;
use std::sync::Arc;
use tonic::metadata::MetadataMap;
use weft_identity::SpiffeId;
use weft_xds::{AuthError, PeerIdentity, StreamAuthenticator};

pub use weft_xds::BoxFuture;

/// Who is calling, as established from its credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A node proxy; may ask for identities of workloads on this node.
    Node(String),
    /// A single workload; may ask only for its own identity.
    Workload(SpiffeId),
}

impl Caller {
    /// The principal shown for an xDS stream: `node/<name>` or the SPIFFE id.
    pub fn principal(&self) -> String {
        match self {
            Self::Node(node) => format!("node/{node}"),
            Self::Workload(id) => id.to_string(),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(node) => write!(f, "node/{node}"),
            Self::Workload(id) => write!(f, "workload/{id}"),
        }
    }
}

/// Maps a bearer token to the caller it stands for. Asynchronous so a check that needs I/O
/// does not hold a worker thread. Config-directory mode uses the token file
/// ([`super::tokens::ReloadableTokenFile`]); the Kubernetes mode will implement this with
/// TokenReview.
pub trait CallerAuthenticator: Send + Sync + 'static {
    /// `None` means the token is unknown.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Caller>>;
}

/// Authenticates a gRPC call by its `authorization: Bearer <token>` metadata. The error
/// is the reason to answer (it never contains the token).
///
/// # Errors
/// When the header is missing or malformed, or the token unknown.
pub async fn authenticate_call(
    authenticator: &dyn CallerAuthenticator,
    metadata: &MetadataMap,
) -> Result<Caller, &'static str> {
    let token = weft_xds::bearer_token(metadata)
        .ok_or("missing or malformed `authorization: Bearer <token>` metadata")?;
    authenticator
        .authenticate(token)
        .await
        .ok_or("unknown token")
}

/// Admits an xDS stream whose bearer token a [`CallerAuthenticator`] knows (the same
/// tokens as the CA); its principal is [`Caller::principal`].
#[derive(Clone)]
pub struct XdsCallerAuth(pub Arc<dyn CallerAuthenticator>);

impl StreamAuthenticator for XdsCallerAuth {
    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<PeerIdentity, AuthError>> {
        Box::pin(async move {
            let caller = authenticate_call(self.0.as_ref(), metadata)
                .await
                .map_err(AuthError::new)?;
            Ok(PeerIdentity {
                principal: caller.principal(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callers::TokenFile;

    fn bearer(token: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        let value = format!("Bearer {token}").parse().expect("header");
        metadata.insert("authorization", value);
        metadata
    }

    #[tokio::test]
    async fn xds_streams_are_admitted_by_the_same_tokens_as_the_ca() {
        let tokens = TokenFile::parse(
            "tokens:\n  - {token: node-token-0123456789, node: n1}\n  - {token: wl-token-0123456789, identity: spiffe://td/ns/a/sa/b}\n",
            "test",
        )
        .expect("tokens");
        let auth = XdsCallerAuth(Arc::new(tokens));
        let principal = |token: &'static str| {
            let auth = auth.clone();
            async move {
                let metadata = bearer(token);
                auth.authenticate(&metadata)
                    .await
                    .map(|peer| peer.principal)
                    .map_err(|err| err.reason)
            }
        };
        assert_eq!(
            principal("node-token-0123456789").await,
            Ok("node/n1".into())
        );
        assert_eq!(
            principal("wl-token-0123456789").await,
            Ok("spiffe://td/ns/a/sa/b".into())
        );
        assert_eq!(principal("other").await, Err("unknown token".into()));
        let refused = auth.authenticate(&MetadataMap::new()).await;
        assert!(refused.is_err_and(|err| err.reason.contains("missing")));
    }
}
