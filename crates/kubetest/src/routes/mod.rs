//! The router: one file per concern, each answering the requests of its verbs.
//!
//! - [`read`]: `GET` of one object, of a collection (list), and watches
//!   ([`watch`]: resumption by resourceVersion, bookmarks, timeouts, 410 Gone).
//! - [`write`]: create, update (resourceVersion conflicts), server-side apply (field
//!   managers, conflicts) and delete, on objects and their `status`; Leases are objects.
//! - [`tokenreview`]: `TokenReview` answered from the tokens a test registered.
//!
//! To add a concern (writes, server-side apply, TokenReview, Leases), add a module here
//! and an arm to [`route`]; [`Ctx`] gives it the store and options, [`json_response`] and
//! [`status`] build responses the way the API server does.

pub mod read;
pub mod tokenreview;
pub mod watch;
pub mod write;

use crate::ServerOptions;
use crate::path::ResourcePath;
use crate::requests::{ApiRequest, RequestLog};
use crate::store::Store;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

/// The body every route answers with (whole or streamed).
pub type Body = BoxBody<Bytes, Infallible>;

/// What a route handler gets besides the request.
#[derive(Clone)]
pub struct Ctx {
    /// The objects and their history.
    pub store: Arc<Store>,
    /// The server's settings.
    pub options: ServerOptions,
    /// The tokens `TokenReview` knows.
    pub tokens: Arc<tokenreview::TokenRegistry>,
    /// Every request answered; lists held back.
    pub requests: Arc<RequestLog>,
}

/// The decoded query parameters of a request.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Decodes the query string of `uri`.
    #[must_use]
    pub fn of(uri: &http::Uri) -> Query {
        let pairs = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes());
        Query(pairs.into_owned().collect())
    }

    /// A parameter's value.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether a boolean parameter is set (`1` or `true`).
    #[must_use]
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("1" | "true"))
    }
}

/// Answers one request.
pub async fn route<B>(ctx: Ctx, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Display,
{
    let Some(path) = ResourcePath::parse(request.uri().path()) else {
        let message = format!(
            "the server could not find the requested resource ({})",
            request.uri().path()
        );
        return status(StatusCode::NOT_FOUND, "NotFound", &message);
    };
    let api_version = format!("{}/{}", path.group, path.version);
    if ctx.options.unserved_versions.contains(&api_version) {
        let message = format!(
            "the server could not find the requested resource ({})",
            request.uri().path()
        );
        return status(StatusCode::NOT_FOUND, "NotFound", &message);
    }
    let query = Query::of(request.uri());
    let logged = ApiRequest::of(request.method(), &path, &query);
    let list = logged.verb == "list";
    ctx.requests.record(logged);
    if list {
        ctx.requests.wait_released(&path.group, &path.plural).await;
    }
    match *request.method() {
        Method::GET => read::get(&ctx, &path, &query),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let message = format!("reading the request body: {error}");
                    return status(StatusCode::BAD_REQUEST, "BadRequest", &message);
                }
            };
            if parts.method == Method::POST
                && path.group == "authentication.k8s.io"
                && path.plural == "tokenreviews"
            {
                return tokenreview::review(&ctx, &body);
            }
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            write::handle(&ctx, &parts.method, &path, &query, content_type, &body)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "{} is not supported on {}",
                request.method(),
                request.uri().path()
            ),
        ),
    }
}

/// A JSON response.
#[must_use]
pub fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(body.to_string());
    let mut response = Response::new(Full::new(bytes).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A failure as the API reports it: a `Status` object with the code, reason and message.
#[must_use]
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_object(code, reason, message))
}

/// The `Status` object of a failure (also the object of a watch's ERROR event).
#[must_use]
pub fn status_object(code: StatusCode, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}
