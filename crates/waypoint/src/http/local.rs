//! Answers the waypoint gives itself, with the response flag that names why (the flags are
//! Envoy's, so dashboards and log queries written for Istio keep working).

use http::{Response, StatusCode, header};
use weft_l7::{Outcome, RedirectResponse};

use super::{Body, empty, full};

/// A request the waypoint answers itself.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Status sent.
    pub status: StatusCode,
    /// Response flag.
    pub flags: &'static str,
    /// Body text.
    pub body: String,
    /// What a retry policy sees of it, when it may be retried (connect failures, resets,
    /// attempt timeouts).
    pub outcome: Option<Outcome>,
}

impl Failure {
    fn new(status: StatusCode, flags: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            flags,
            body: body.into(),
            outcome: None,
        }
    }

    /// An authorization policy denied the request.
    pub fn denied() -> Self {
        Self::new(StatusCode::FORBIDDEN, "RBAC", "RBAC: access denied")
    }

    /// The request's JWT did not validate.
    #[allow(dead_code)] // answered once the JWT hook in `authz` validates tokens
    pub fn jwt() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UAEX", "Jwt verification fails")
    }

    /// The request head cannot be read as a request (a path that is not absolute, a host
    /// whose port is not a number).
    pub fn bad_request(reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DPE",
            format!("bad request: {reason}"),
        )
    }

    /// An HTTP/1.1 upgrade to something other than WebSocket (h2c is forwarded as a plain
    /// request instead).
    pub fn upgrade_refused(protocol: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "-",
            format!("upgrade to {protocol:?} is not allowed: only websocket upgrades are"),
        )
    }

    /// The backend switched protocols for a request that did not ask for WebSocket.
    pub fn unexpected_upgrade() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "UPE",
            "upstream switched protocols without a websocket upgrade request",
        )
    }

    /// Routes exist for the service but none matched.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NR", "")
    }

    /// A TLS request whose Host belongs to another gateway listener than its SNI.
    pub fn misdirected() -> Self {
        Self::new(StatusCode::MISDIRECTED_REQUEST, "NR", "misdirected request")
    }

    /// The chosen backend cannot be used (missing service, no grant, no backends).
    pub fn unresolved(reason: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NC",
            format!("no usable backend: {reason}"),
        )
    }

    /// No healthy endpoint.
    pub fn no_healthy_upstream(detail: &str) -> Self {
        tracing::debug!(detail, "no healthy upstream");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UH", "no healthy upstream")
    }

    /// The endpoint is known by host name only and the name gave no usable address.
    pub fn dns_failure(detail: &str) -> Self {
        tracing::debug!(detail, "no address for the upstream's name");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DF",
            "DNS resolution failed for the upstream",
        )
    }

    /// Connecting to the endpoint failed.
    pub fn connect(detail: &str) -> Self {
        Self {
            outcome: Some(Outcome::ConnectFailure),
            ..Self::new(
                StatusCode::BAD_GATEWAY,
                "UF",
                format!("upstream connect error: {detail}"),
            )
        }
    }

    /// The TLS handshake towards the backend (BackendTLSPolicy) failed: 503, logged with
    /// the backend and the reason.
    pub fn backend_tls(error: &crate::backend_tls::BackendTlsError) -> Self {
        tracing::warn!(%error, "upstream TLS handshake failed");
        Self {
            outcome: Some(Outcome::ConnectFailure),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UF",
                format!("upstream connect error: {error}"),
            )
        }
    }

    /// The upstream connection broke before the response headers.
    pub fn reset(detail: &str) -> Self {
        Self {
            outcome: Some(Outcome::Reset),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UC",
                format!("upstream reset before response headers: {detail}"),
            )
        }
    }

    /// A timeout expired before the response headers.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "UT",
            "upstream request timeout",
        )
    }

    /// One attempt's timeout (`backendRequest`) expired before the response headers.
    pub fn attempt_timeout() -> Self {
        Self {
            outcome: Some(Outcome::Timeout),
            ..Self::timeout()
        }
    }

    /// A filter could not rebuild the request (an invalid rewrite).
    pub fn filter(error: &weft_l7::FilterError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "-", error.to_string())
    }

    /// The response.
    pub fn response(&self) -> Response<Body> {
        reply(self.status, self.body.clone())
    }
}

/// A plain-text answer.
pub(crate) fn reply(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The answer to a CORS preflight: `200`, no body, the CORS filter's `headers`.
pub(crate) fn preflight(headers: http::HeaderMap) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.headers_mut() = headers;
    response
}

/// The answer of a `RequestRedirect` filter.
pub(crate) fn redirect(redirect: &RedirectResponse) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = redirect.status;
    let (name, value) = redirect.header();
    response.headers_mut().insert(name, value);
    response
}
