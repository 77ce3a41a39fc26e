//! Where a [`CertManager`](crate::CertManager) gets certificates from: the control plane's
//! Istio CA API over TLS ([`GrpcCaClient`]) or an in-process CA ([`LocalCaProvider`], for
//! `--insecure-local-ca` and tests).

use crate::ca::CertificateAuthority;
use crate::ca::csr::verify_csr_pem;
use crate::{SpiffeId, TrustBundle};
use prost_types::value::Kind;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;

/// Metadata key a node proxy uses to ask for a workload's certificate.
pub const IMPERSONATED_IDENTITY_KEY: &str = "ImpersonatedIdentity";

/// A boxed, sendable future (keeps [`CertificateProvider`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One certificate request.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub identity: SpiffeId,
    pub csr_pem: String,
    pub validity: Duration,
    /// DNS names the CSR asks for besides the identity (a gateway's auto-certificate
    /// hostnames); empty for workload certificates.
    pub dns_names: Vec<String>,
}

/// Why a certificate could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("CA endpoint `{endpoint}` is invalid: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("CA token file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    #[error("CA token contains characters not allowed in a gRPC header")]
    TokenNotHeaderSafe,
    #[error("CA refused the request ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("local CA refused the request: {0}")]
    Local(String),
    #[error("CA response unusable: {0}")]
    BadResponse(#[from] crate::WorkloadCertError),
    #[error("could not generate a key or CSR: {0}")]
    KeyGeneration(String),
}

/// A source of signed certificate chains (PEM, leaf first, root last).
pub trait CertificateProvider: Send + Sync + 'static {
    /// Asks for a certificate for `request.identity` over the CSR.
    fn fetch<'a>(
        &'a self,
        request: &'a CertRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>>;
}

/// Signs in-process with a local CA. Checks the CSR like the real CA does (signature, key
/// type, exactly one URI SAN equal to the requested identity, DNS SANs exactly the requested
/// `dns_names`), but performs no caller authentication or authorization: for single-process
/// development (`--insecure-local-ca`) and tests.
#[derive(Debug, Clone)]
pub struct LocalCaProvider {
    ca: Arc<CertificateAuthority>,
}

impl LocalCaProvider {
    pub fn new(ca: Arc<CertificateAuthority>) -> Self {
        Self { ca }
    }

    /// The CA this provider signs with.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    fn sign(&self, request: &CertRequest) -> Result<Vec<String>, FetchError> {
        let csr =
            verify_csr_pem(&request.csr_pem).map_err(|err| FetchError::Local(err.to_string()))?;
        let wanted = request.identity.to_string();
        if csr.uri_sans != [wanted.as_str()] {
            return Err(FetchError::Local(format!(
                "CSR URI SANs {:?} are not exactly [{wanted}]",
                csr.uri_sans
            )));
        }
        if csr.dns_sans != request.dns_names {
            return Err(FetchError::Local(format!(
                "CSR DNS SANs {:?} are not the requested {:?}",
                csr.dns_sans, request.dns_names
            )));
        }
        let signed = self
            .ca
            .sign_serving(
                &csr.spki_der,
                &request.identity,
                &request.dns_names,
                request.validity,
            )
            .map_err(|err| FetchError::Local(err.to_string()))?;
        Ok(signed.pem)
    }
}

impl CertificateProvider for LocalCaProvider {
    fn fetch<'a>(
        &'a self,
        request: &'a CertRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>> {
        Box::pin(std::future::ready(self.sign(request)))
    }
}

/// Where the bearer token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A fixed token.
    Static(String),
    /// A file re-read on every request (so a rotated token is picked up).
    File(PathBuf),
}

impl TokenSource {
    async fn read(&self) -> Result<String, FetchError> {
        match self {
            Self::Static(token) => Ok(token.clone()),
            Self::File(path) => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|err| FetchError::Token {
                            path: path.clone(),
                            reason: err.to_string(),
                        })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(FetchError::Token {
                        path: path.clone(),
                        reason: "file is empty".into(),
                    });
                }
                Ok(token.to_owned())
            }
        }
    }
}

/// Settings of [`GrpcCaClient`].
#[derive(Debug, Clone)]
pub struct GrpcCaClientConfig {
    /// `https://host:port` of the control plane's secure port.
    pub endpoint: String,
    /// DNS name the control plane's serving certificate must carry
    /// (`weft-control.<namespace>.svc` by default on the server side).
    pub server_name: String,
    /// Roots that sign the control plane's serving certificate (the mesh root).
    pub trust: TrustBundle,
    pub token: TokenSource,
    /// Sent as `clusterid` metadata when set.
    pub cluster_id: Option<String>,
    /// Put `ImpersonatedIdentity` in the request metadata (a node proxy acting for workloads).
    pub impersonate: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl GrpcCaClientConfig {
    /// Per-request timeout of [`GrpcCaClientConfig::node_proxy`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A node proxy's (or waypoint's) client: it asks for the identities of the workloads it
    /// serves (`impersonate`), sends no cluster ID and waits [`Self::DEFAULT_TIMEOUT`] for
    /// each request. Change a field with struct update syntax for anything else.
    #[must_use]
    pub fn node_proxy(
        endpoint: impl Into<String>,
        server_name: impl Into<String>,
        trust: TrustBundle,
        token: TokenSource,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            server_name: server_name.into(),
            trust,
            token,
            cluster_id: None,
            impersonate: true,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Client of `istio.v1.auth.IstioCertificateService` over TLS with a bearer token.
#[derive(Debug, Clone)]
pub struct GrpcCaClient {
    client: IstioCertificateServiceClient<Channel>,
    config: GrpcCaClientConfig,
}

impl GrpcCaClient {
    /// Prepares a client; the connection is made on first use and re-made after failures.
    pub fn new(config: GrpcCaClientConfig) -> Result<Self, FetchError> {
        let invalid = |reason: String| FetchError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason,
        };
        let channel = crate::tls::control_plane_endpoint(
            &config.endpoint,
            &config.server_name,
            &config.trust,
        )
        .map_err(invalid)?
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .connect_lazy();
        Ok(Self {
            client: IstioCertificateServiceClient::new(channel),
            config,
        })
    }

    async fn request(&self, request: &CertRequest) -> Result<Vec<String>, FetchError> {
        let token = self.config.token.read().await?;
        let mut fields = BTreeMap::new();
        if self.config.impersonate {
            fields.insert(
                IMPERSONATED_IDENTITY_KEY.to_owned(),
                prost_types::Value {
                    kind: Some(Kind::StringValue(request.identity.to_string())),
                },
            );
        }
        let message = IstioCertificateRequest {
            csr: request.csr_pem.clone(),
            validity_duration: i64::try_from(request.validity.as_secs()).unwrap_or(i64::MAX),
            metadata: Some(prost_types::Struct { fields }),
        };
        let mut grpc_request = tonic::Request::new(message);
        let metadata = grpc_request.metadata_mut();
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| FetchError::TokenNotHeaderSafe)?;
        metadata.insert("authorization", bearer);
        if let Some(cluster) = self
            .config
            .cluster_id
            .as_deref()
            .and_then(|c| c.parse().ok())
        {
            metadata.insert("clusterid", cluster);
        }
        let response = self
            .client
            .clone()
            .create_certificate(grpc_request)
            .await
            .map_err(|status| FetchError::Refused {
                code: status.code(),
                message: status.message().to_owned(),
            })?;
        let chain = response.into_inner().cert_chain;
        self.follow_trust_bundle(&chain);
        Ok(chain)
    }

    /// Makes the roots the CA sent with a certificate (the last element of its chain) this
    /// client's trust bundle, and so that of every clone of it the proxy verifies peers and
    /// the control plane with: how a root rotation reaches the proxy. The answer came over a
    /// connection verified against that bundle, so it is as trustworthy as the roots were.
    fn follow_trust_bundle(&self, chain: &[String]) {
        let Ok((_, roots)) = crate::cert::split_ca_response(chain) else {
            return; // the certificate itself is refused by its caller, with the reason
        };
        if roots.is_empty() {
            return;
        }
        let count = roots.len();
        match self.config.trust.replace_roots(roots) {
            Ok(true) => tracing::info!(roots = count, "trust bundle updated from the CA"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "CA sent an unusable trust bundle; keeping the current roots");
            }
        }
    }
}

impl CertificateProvider for GrpcCaClient {
    fn fetch<'a>(
        &'a self,
        request: &'a CertRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>> {
        Box::pin(self.request(request))
    }
}
