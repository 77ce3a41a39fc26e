//! `istio.v1.auth.IstioCertificateService/CreateCertificate`: authenticate the bearer token,
//! decide the identity the caller may get, check the CSR (valid, self-signed, acceptable
//! key, exactly one URI SAN equal to that identity, DNS SANs only those the identity may have:
//! see [`super::serving_names`]), sign, and log every decision.

use super::metrics::CaMetrics;
use super::placement::{NodeIdentities, identity_for};
use super::serving_names::{NoServingNames, ServingNames};
use crate::callers::caller::{Caller, CallerAuthenticator, authenticate_call};
use prost_types::value::Kind;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Code, Request, Response, Status};
use weft_identity::SpiffeId;
use weft_identity::ca::RootRotation;
use weft_identity::ca::csr::{CsrError, verify_csr_pem};
use weft_identity::provider::IMPERSONATED_IDENTITY_KEY;
use weft_proto::ca::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use weft_proto::ca::{IstioCertificateRequest, IstioCertificateResponse};

/// Settings of the CA service.
#[derive(Debug, Clone)]
pub struct CaServiceConfig {
    /// Lifetime when the request asks for none (`validity_duration` <= 0).
    pub default_validity: Duration,
    /// Longest lifetime granted; longer requests are shortened to this.
    pub max_validity: Duration,
    /// Largest accepted request message; larger ones get `OUT_OF_RANGE` from the gRPC layer.
    pub max_request_bytes: usize,
}

impl Default for CaServiceConfig {
    fn default() -> Self {
        Self {
            default_validity: weft_identity::ca::DEFAULT_WORKLOAD_VALIDITY,
            max_validity: Duration::from_secs(7 * 24 * 3600),
            max_request_bytes: 64 * 1024,
        }
    }
}

/// The CA gRPC service. Turn it into a tonic service with [`CaService::into_server`].
pub struct CaService {
    ca: Arc<RootRotation>,
    authenticator: Arc<dyn CallerAuthenticator>,
    nodes: Arc<dyn NodeIdentities>,
    names: Arc<dyn ServingNames>,
    /// The control plane's own serving names: no other certificate may carry them.
    reserved: Vec<String>,
    metrics: CaMetrics,
    config: CaServiceConfig,
}

/// A refused request: what to log, count and answer.
#[derive(Debug)]
struct Rejection {
    reason: &'static str,
    code: Code,
    message: String,
}

impl Rejection {
    fn new(reason: &'static str, code: Code, message: impl Into<String>) -> Self {
        Self {
            reason,
            code,
            message: message.into(),
        }
    }

    fn from_csr(err: &CsrError) -> Self {
        let reason = if err.is_weak_key() {
            "weak_key"
        } else {
            "invalid_csr"
        };
        Self::new(reason, Code::InvalidArgument, err.to_string())
    }
}

impl CaService {
    /// A service signing with `ca` (whose root rotation decides which root signs and which
    /// roots end the chain), authenticating with `authenticator`, placing workloads on nodes
    /// with `nodes`. Sets the root-expiry metric. No identity may have DNS names until
    /// [`Self::with_serving_names`] says which.
    pub fn new(
        ca: Arc<RootRotation>,
        authenticator: Arc<dyn CallerAuthenticator>,
        nodes: Arc<dyn NodeIdentities>,
        metrics: CaMetrics,
        config: CaServiceConfig,
    ) -> Self {
        metrics.set_root_expiry(ca.signer().root_not_after());
        Self {
            ca,
            authenticator,
            nodes,
            names: Arc::new(NoServingNames),
            reserved: Vec::new(),
            metrics,
            config,
        }
    }

    /// Lets the identities `names` lists have those DNS names in their certificates (a
    /// gateway's auto-certificate hostnames).
    #[must_use]
    pub fn with_serving_names(mut self, names: Arc<dyn ServingNames>) -> Self {
        self.names = names;
        self
    }

    /// Never signs `names` (the control plane's serving names, which proxies trust as the
    /// control plane), nor a wildcard covering one, whatever a Gateway lists: a namespace
    /// user could otherwise get a certificate that passes as the control plane's.
    #[must_use]
    pub fn with_reserved_names(mut self, names: &[String]) -> Self {
        self.reserved = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        self
    }

    /// The tonic service with the request size limit applied; add it to a `Router`.
    pub fn into_server(self) -> IstioCertificateServiceServer<Self> {
        let limit = self.config.max_request_bytes;
        IstioCertificateServiceServer::new(self).max_decoding_message_size(limit)
    }

    async fn authenticate(
        &self,
        request: &Request<IstioCertificateRequest>,
    ) -> Result<Caller, Rejection> {
        authenticate_call(self.authenticator.as_ref(), request.metadata())
            .await
            .map_err(|message| Rejection::new("unauthenticated", Code::Unauthenticated, message))
    }

    fn validity(&self, requested_secs: i64) -> Duration {
        match u64::try_from(requested_secs) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs).min(self.config.max_validity),
            _ => self.config.default_validity,
        }
    }

    /// Runs every check and signs; returns the identity and the PEM chain.
    fn authorize_and_sign(
        &self,
        caller: &Caller,
        message: &IstioCertificateRequest,
        identity: &mut Option<String>,
    ) -> Result<Vec<String>, Rejection> {
        let impersonated = impersonated_identity(message)?;
        if let Some(asked) = &impersonated {
            *identity = Some(asked.to_string());
        }
        let granted =
            identity_for(caller, impersonated, self.nodes.as_ref()).map_err(|reason| {
                Rejection::new("identity_not_allowed", Code::PermissionDenied, reason)
            })?;
        *identity = Some(granted.to_string());
        let csr = verify_csr_pem(&message.csr).map_err(|err| Rejection::from_csr(&err))?;
        let wanted = granted.to_string();
        if csr.uri_sans != [wanted.as_str()] {
            return Err(Rejection::new(
                "san_mismatch",
                Code::PermissionDenied,
                format!(
                    "the CSR must carry exactly one URI SAN, {wanted}; it carries {:?}",
                    csr.uri_sans
                ),
            ));
        }
        let dns_names = self.allowed_dns_names(&granted, &csr.dns_sans)?;
        let validity = self.validity(message.validity_duration);
        self.ca
            .sign(
                &caller.to_string(),
                &csr.spki_der,
                &granted,
                &dns_names,
                validity,
            )
            .map(|signed| signed.pem)
            .map_err(|err| Rejection::new("signing_failed", Code::Internal, err.to_string()))
    }
}

impl CaService {
    /// The CSR's DNS names (lower case, without repeats) if `identity` may have every one of
    /// them; a single other name refuses the whole request.
    fn allowed_dns_names(
        &self,
        identity: &SpiffeId,
        requested: &[String],
    ) -> Result<Vec<String>, Rejection> {
        if requested.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(name) = requested.iter().find(|name| self.is_reserved(name)) {
            return Err(Rejection::new(
                "dns_name_reserved",
                Code::PermissionDenied,
                format!(
                    "{identity} may not have DNS name {name:?}: it is, or covers, a name of \
                     the control plane's own certificate ({:?})",
                    self.reserved
                ),
            ));
        }
        let allowed = self.names.serving_names(identity);
        let mut names: Vec<String> = Vec::with_capacity(requested.len());
        let mut refused = Vec::new();
        for name in requested.iter().map(|name| name.to_ascii_lowercase()) {
            if !allowed.contains(&name) {
                refused.push(name);
            } else if !names.contains(&name) {
                names.push(name);
            }
        }
        if refused.is_empty() {
            return Ok(names);
        }
        Err(Rejection::new(
            "dns_name_not_allowed",
            Code::PermissionDenied,
            format!(
                "{identity} may not have DNS names {refused:?}: a certificate names only the \
                 hostnames of weft.dev/auto-certificate listeners of the Gateways that run \
                 under this identity (allowed: {allowed:?})"
            ),
        ))
    }
}

impl CaService {
    /// Whether `name` is a reserved name, or a wildcard `*.suffix` that covers one (with
    /// any number of labels in place of the `*`: stricter than TLS clients match).
    fn is_reserved(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let suffix = name.strip_prefix("*.").map(|s| format!(".{s}"));
        self.reserved.iter().any(|reserved| {
            *reserved == name
                || suffix
                    .as_deref()
                    .is_some_and(|suffix| reserved.ends_with(suffix))
        })
    }
}

/// Reads `ImpersonatedIdentity` from the request metadata, if present.
fn impersonated_identity(message: &IstioCertificateRequest) -> Result<Option<SpiffeId>, Rejection> {
    let Some(value) = message
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.fields.get(IMPERSONATED_IDENTITY_KEY))
    else {
        return Ok(None);
    };
    let invalid = |why: String| Rejection::new("invalid_request", Code::InvalidArgument, why);
    match &value.kind {
        Some(Kind::StringValue(text)) => text
            .parse()
            .map(Some)
            .map_err(|err| invalid(format!("{IMPERSONATED_IDENTITY_KEY}: {err}"))),
        _ => Err(invalid(format!(
            "{IMPERSONATED_IDENTITY_KEY} must be a string"
        ))),
    }
}

#[tonic::async_trait]
impl IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
        let caller = match self.authenticate(&request).await {
            Ok(caller) => caller,
            Err(rejection) => return Err(self.refuse(&peer, "-", None, rejection)),
        };
        let mut identity = None;
        match self.authorize_and_sign(&caller, request.get_ref(), &mut identity) {
            Ok(cert_chain) => {
                self.metrics.issued();
                tracing::info!(%peer, %caller, identity = identity.as_deref().unwrap_or("-"), "CA issued certificate");
                Ok(Response::new(IstioCertificateResponse { cert_chain }))
            }
            Err(rejection) => {
                Err(self.refuse(&peer, &caller.to_string(), identity.as_deref(), rejection))
            }
        }
    }
}

impl CaService {
    fn refuse(
        &self,
        peer: &str,
        caller: &str,
        identity: Option<&str>,
        rejection: Rejection,
    ) -> Status {
        self.metrics.rejected(rejection.reason);
        tracing::warn!(
            %peer,
            caller,
            identity = identity.unwrap_or("-"),
            reason = rejection.reason,
            message = %rejection.message,
            "CA refused certificate request"
        );
        Status::new(rejection.code, rejection.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca_service::{CaMetrics, StaticNodeIdentities, StaticServingNames};
    use crate::callers::TokenFile;
    use prost_types::{ListValue, Struct, Value};
    use rcgen::{CertificateParams, KeyPair, SanType};
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    const OWN: &str = "spiffe://cluster.local/ns/shop/sa/web";
    /// Another identity on the same node, allowed no DNS names.
    const PLAIN: &str = "spiffe://cluster.local/ns/shop/sa/api";

    fn service() -> CaService {
        let ca = weft_identity::CertificateAuthority::generate_in_memory().expect("ca");
        let tokens = TokenFile::parse("tokens: [{token: node-token-0123456789, node: n1}]", "test")
            .expect("tokens");
        let nodes = StaticNodeIdentities::new()
            .with("n1", OWN.parse().expect("id"))
            .with("n1", PLAIN.parse().expect("id"));
        let names = StaticServingNames::new()
            .with(OWN.parse().expect("id"), "shop.example.com")
            .with(OWN.parse().expect("id"), "*.example.com");
        CaService::new(
            Arc::new(RootRotation::new(Arc::new(ca))),
            Arc::new(tokens),
            Arc::new(nodes),
            CaMetrics::new(),
            CaServiceConfig::default(),
        )
        .with_serving_names(Arc::new(names))
    }

    fn csr(sans: Vec<SanType>) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.try_into().expect("ia5"))
    }

    fn dns(text: &str) -> SanType {
        SanType::DnsName(text.try_into().expect("ia5"))
    }

    /// The URI and DNS SANs of the issued leaf, in order.
    fn leaf_names(chain: &[String]) -> Vec<String> {
        let (_, pem) = parse_x509_pem(chain[0].as_bytes()).expect("pem");
        let leaf = pem.parse_x509().expect("x509");
        let san = leaf.subject_alternative_name().expect("san extension");
        san.expect("san present")
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::URI(uri) => (*uri).to_owned(),
                GeneralName::DNSName(name) => format!("dns:{name}"),
                other => format!("unexpected {other:?}"),
            })
            .collect()
    }

    fn ask(service: &CaService, impersonated: Kind, csr: String) -> Result<Vec<String>, Rejection> {
        let fields = [(
            IMPERSONATED_IDENTITY_KEY.to_owned(),
            Value {
                kind: Some(impersonated),
            },
        )];
        let message = IstioCertificateRequest {
            csr,
            validity_duration: 0,
            metadata: Some(Struct {
                fields: fields.into_iter().collect(),
            }),
        };
        service.authorize_and_sign(&Caller::Node("n1".into()), &message, &mut None)
    }

    #[test]
    fn a_node_cannot_reach_another_identity_through_aliases_or_non_string_values() {
        let service = service();
        let string = |text: &str| Kind::StringValue(text.to_owned());
        let aliases = [
            "spiffe://cluster.local/ns/shop/sa/web/",
            "spiffe://cluster.local/ns/shop/sa/web/../other",
            "spiffe://Cluster.Local/ns/shop/sa/web",
            "SPIFFE://cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/ns/shop/sa/we%62",
            "spiffe://cluster.local//ns/shop/sa/web",
            "cluster.local/ns/shop/sa/web",
            " spiffe://cluster.local/ns/shop/sa/web",
        ];
        for alias in aliases {
            let rejection = ask(&service, string(alias), csr(vec![uri(alias)])).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidArgument, "{alias}");
        }
        // Same letters, different case in a part that allows upper case: another identity.
        let other_case = "spiffe://cluster.local/ns/shop/sa/Web";
        let rejection = ask(&service, string(other_case), csr(vec![uri(other_case)])).unwrap_err();
        assert_eq!(rejection.code, Code::PermissionDenied);
        let list = Kind::ListValue(ListValue {
            values: vec![Value {
                kind: Some(string(OWN)),
            }],
        });
        let struct_value = Kind::StructValue(Struct::default());
        for non_string in [
            list,
            struct_value,
            Kind::BoolValue(true),
            Kind::NumberValue(1.0),
        ] {
            let rejection = ask(&service, non_string, csr(vec![uri(OWN)])).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidArgument);
            assert!(
                rejection.message.contains("must be a string"),
                "{}",
                rejection.message
            );
        }
    }

    #[test]
    fn other_san_types_in_the_csr_never_reach_the_certificate() {
        let service = service();
        let sans = vec![
            SanType::IpAddress("10.0.0.1".parse().expect("ip")),
            SanType::Rfc822Name("a@b.example".try_into().expect("email")),
            uri(OWN),
        ];
        let chain = ask(&service, Kind::StringValue(OWN.into()), csr(sans)).expect("issued");
        assert_eq!(leaf_names(&chain), [OWN]);
    }

    #[test]
    fn dns_names_the_identity_may_have_are_signed_beside_its_spiffe_id() {
        let service = service();
        let sans = vec![
            uri(OWN),
            dns("Shop.Example.com"),
            dns("*.example.com"),
            dns("shop.example.com"),
        ];
        let chain = ask(&service, Kind::StringValue(OWN.into()), csr(sans)).expect("issued");
        let expected = [OWN, "dns:shop.example.com", "dns:*.example.com"];
        assert_eq!(leaf_names(&chain), expected);
    }

    #[test]
    fn a_dns_name_the_identity_may_not_have_refuses_the_whole_request() {
        let service = service();
        let sans = vec![uri(OWN), dns("shop.example.com"), dns("evil.example")];
        let rejection = ask(&service, Kind::StringValue(OWN.into()), csr(sans)).unwrap_err();
        assert_eq!(rejection.code, Code::PermissionDenied);
        assert_eq!(rejection.reason, "dns_name_not_allowed");
        assert!(
            rejection.message.contains("evil.example"),
            "{}",
            rejection.message
        );
        // a wildcard listener does not cover a name under it, nor a deeper wildcard
        for name in ["a.example.com", "*.a.example.com", "example.com"] {
            let sans = vec![uri(OWN), dns(name)];
            let rejection = ask(&service, Kind::StringValue(OWN.into()), csr(sans)).unwrap_err();
            assert_eq!(rejection.reason, "dns_name_not_allowed", "{name}");
        }
    }

    #[test]
    fn an_identity_that_runs_no_gateway_gets_no_dns_names() {
        let service = service();
        let sans = vec![uri(PLAIN), dns("shop.example.com")];
        let rejection = ask(&service, Kind::StringValue(PLAIN.into()), csr(sans)).unwrap_err();
        assert_eq!(rejection.code, Code::PermissionDenied);
        assert!(rejection.message.contains(PLAIN), "{}", rejection.message);
        // without DNS names the same identity is served as before
        let chain = ask(
            &service,
            Kind::StringValue(PLAIN.into()),
            csr(vec![uri(PLAIN)]),
        )
        .expect("issued");
        assert_eq!(leaf_names(&chain), [PLAIN]);
    }
}
