//! Filters and backend references of both route kinds. The `gateway-api` crate generates
//! one Rust type per place a filter or reference appears (rule or backend, HTTP or gRPC),
//! all with the same JSON shape; they are read here through one serde mirror of that shape
//! ([`Filter`], [`BackendRef`]) so that one converter serves all four.

use super::{BackendResolver, FieldError, backend};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use weft_proto::l7::{self as pb, filter::Kind, path_modifier};

/// A filter as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Filter {
    r#type: String,
    request_header_modifier: Option<HeaderModifier>,
    response_header_modifier: Option<HeaderModifier>,
    request_redirect: Option<Redirect>,
    url_rewrite: Option<Rewrite>,
    request_mirror: Option<Mirror>,
    extension_ref: Option<serde_json::Value>,
    cors: Option<Cors>,
    external_auth: Option<serde_json::Value>,
}

/// A `backendRef` as written (a mirror's has neither weight nor filters).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BackendRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) weight: Option<i64>,
    #[serde(default)]
    pub(super) filters: Vec<Filter>,
}

#[derive(Debug, Default, Deserialize)]
struct HeaderModifier {
    #[serde(default)]
    set: Vec<Header>,
    #[serde(default)]
    add: Vec<Header>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    path: Option<PathModifier>,
    port: Option<i64>,
    status_code: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathModifier {
    r#type: String,
    replace_full_path: Option<String>,
    replace_prefix_match: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Rewrite {
    hostname: Option<String>,
    path: Option<PathModifier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mirror {
    backend_ref: BackendRef,
    percent: Option<i64>,
    fraction: Option<Fraction>,
}

/// `CORS` (GEP-1767): lists as written; `maxAge` in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cors {
    #[serde(default)]
    allow_origins: Vec<String>,
    allow_credentials: Option<bool>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    max_age: Option<i64>,
}

/// `Access-Control-Max-Age` when `maxAge` is unset, as the spec defines it.
const CORS_MAX_AGE_SECONDS: u32 = 5;

#[derive(Debug, Default, Deserialize)]
struct Fraction {
    numerator: i64,
    denominator: Option<i64>,
}

/// Reads any of the generated filter or reference types through its mirror.
pub(super) fn mirror<T: serde::Serialize, M: DeserializeOwned>(
    value: &T,
    at: &str,
) -> Result<M, FieldError> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| (at.to_owned(), format!("unexpected shape: {e}")))
}

/// Reads a list of generated items through their mirror.
pub(super) fn mirror_all<T: serde::Serialize, M: DeserializeOwned>(
    items: Option<&Vec<T>>,
    at: &str,
) -> Result<Vec<M>, FieldError> {
    (items.into_iter().flatten().enumerate())
        .map(|(i, item)| mirror(item, &format!("{at}[{i}]")))
        .collect()
}

/// Converts `filters` (at `at`) of a route in `namespace`.
pub(super) fn convert(
    filters: &[Filter],
    namespace: &str,
    resolver: &dyn BackendResolver,
    at: &str,
) -> Result<Vec<pb::Filter>, FieldError> {
    (filters.iter().enumerate())
        .map(|(i, f)| {
            let kind = filter_kind(f, namespace, resolver, &format!("{at}[{i}]"))?;
            Ok(pb::Filter { kind: Some(kind) })
        })
        .collect()
}

fn filter_kind(
    f: &Filter,
    namespace: &str,
    resolver: &dyn BackendResolver,
    at: &str,
) -> Result<Kind, FieldError> {
    let set = [
        (
            "RequestHeaderModifier",
            "requestHeaderModifier",
            f.request_header_modifier.is_some(),
        ),
        (
            "ResponseHeaderModifier",
            "responseHeaderModifier",
            f.response_header_modifier.is_some(),
        ),
        (
            "RequestRedirect",
            "requestRedirect",
            f.request_redirect.is_some(),
        ),
        ("URLRewrite", "urlRewrite", f.url_rewrite.is_some()),
        ("RequestMirror", "requestMirror", f.request_mirror.is_some()),
        ("ExtensionRef", "extensionRef", f.extension_ref.is_some()),
        ("CORS", "cors", f.cors.is_some()),
        ("ExternalAuth", "externalAuth", f.external_auth.is_some()),
    ];
    let Some((_, field, _)) = set.iter().find(|(ty, _, _)| *ty == f.r#type) else {
        return Err((
            format!("{at}.type"),
            format!("unknown filter type {:?}", f.r#type),
        ));
    };
    if let Some((_, other, _)) = set
        .iter()
        .find(|(ty, _, is_set)| *is_set && *ty != f.r#type)
    {
        return Err((
            format!("{at}.{other}"),
            format!("must be unset when type is {}", f.r#type),
        ));
    }
    let base = at;
    let missing = || {
        (
            format!("{base}.{field}"),
            format!("required when type is {}", f.r#type),
        )
    };
    let at = format!("{base}.{field}");
    Ok(match f.r#type.as_str() {
        "RequestHeaderModifier" => Kind::RequestHeaderModifier(headers(
            f.request_header_modifier.as_ref().ok_or_else(missing)?,
        )),
        "ResponseHeaderModifier" => Kind::ResponseHeaderModifier(headers(
            f.response_header_modifier.as_ref().ok_or_else(missing)?,
        )),
        "RequestRedirect" => Kind::RequestRedirect(redirect(
            f.request_redirect.as_ref().ok_or_else(missing)?,
            &at,
        )?),
        "URLRewrite" => {
            Kind::UrlRewrite(rewrite(f.url_rewrite.as_ref().ok_or_else(missing)?, &at)?)
        }
        "RequestMirror" => Kind::RequestMirror(mirror_filter(
            f.request_mirror.as_ref().ok_or_else(missing)?,
            namespace,
            resolver,
            &at,
        )?),
        "CORS" => Kind::Cors(cors(f.cors.as_ref().ok_or_else(missing)?, &at)?),
        other => {
            let message = format!("{other} filters are not supported by weft");
            return Err((format!("{base}.type"), message));
        }
    })
}

fn cors(c: &Cors, at: &str) -> Result<pb::Cors, FieldError> {
    let max_age_seconds = match c.max_age {
        None => CORS_MAX_AGE_SECONDS,
        Some(seconds) => u32::try_from(seconds)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                (
                    format!("{at}.maxAge"),
                    format!("{seconds} is not a positive number of seconds"),
                )
            })?,
    };
    Ok(pb::Cors {
        allow_origins: c.allow_origins.clone(),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age_seconds,
    })
}

fn headers(m: &HeaderModifier) -> pb::HeaderModifier {
    let pairs = |list: &[Header]| {
        (list.iter())
            .map(|h| pb::Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    };
    pb::HeaderModifier {
        set: pairs(&m.set),
        add: pairs(&m.add),
        remove: m.remove.clone(),
    }
}

fn path(p: Option<&PathModifier>, at: &str) -> Result<Option<pb::PathModifier>, FieldError> {
    let Some(p) = p else { return Ok(None) };
    let at = format!("{at}.path");
    let (full, prefix) = (&p.replace_full_path, &p.replace_prefix_match);
    let kind = match (p.r#type.as_str(), full, prefix) {
        ("ReplaceFullPath", Some(full), None) => path_modifier::Kind::ReplaceFullPath(full.clone()),
        ("ReplacePrefixMatch", None, Some(prefix)) => {
            path_modifier::Kind::ReplacePrefixMatch(prefix.clone())
        }
        ("ReplaceFullPath" | "ReplacePrefixMatch", ..) => {
            let field = if p.r#type == "ReplaceFullPath" {
                "replaceFullPath"
            } else {
                "replacePrefixMatch"
            };
            return Err((
                format!("{at}.{field}"),
                format!("type {} needs {field}, and only it", p.r#type),
            ));
        }
        (other, ..) => {
            return Err((
                format!("{at}.type"),
                format!("unknown path modifier {other:?}"),
            ));
        }
    };
    Ok(Some(pb::PathModifier { kind: Some(kind) }))
}

fn redirect(r: &Redirect, at: &str) -> Result<pb::Redirect, FieldError> {
    let port = match r.port {
        None => 0,
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| (format!("{at}.port"), format!("{port} is not a port")))?,
    };
    let status_code = match r.status_code {
        None => 302,
        Some(code) => u32::try_from(code).map_err(|_| {
            (
                format!("{at}.statusCode"),
                format!("{code} is not a redirect code"),
            )
        })?,
    };
    Ok(pb::Redirect {
        scheme: r.scheme.clone().unwrap_or_default(),
        hostname: r.hostname.clone().unwrap_or_default(),
        port: u32::from(port),
        path: path(r.path.as_ref(), at)?,
        status_code,
    })
}

fn rewrite(r: &Rewrite, at: &str) -> Result<pb::Rewrite, FieldError> {
    Ok(pb::Rewrite {
        hostname: r.hostname.clone().unwrap_or_default(),
        path: path(r.path.as_ref(), at)?,
    })
}

fn mirror_filter(
    m: &Mirror,
    namespace: &str,
    resolver: &dyn BackendResolver,
    at: &str,
) -> Result<pb::Mirror, FieldError> {
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err((
                format!("{at}.fraction"),
                "percent and fraction cannot both be set".into(),
            ));
        }
        (None, None) => (100, 100),
        (Some(percent), None) => (percent, 100),
        (None, Some(f)) => (f.numerator, f.denominator.unwrap_or(100)),
    };
    let field = if m.percent.is_some() {
        "percent"
    } else {
        "fraction"
    };
    let valid = (0..=denominator).contains(&numerator) && denominator > 0;
    let (Ok(numerator), Ok(denominator), true) =
        (u32::try_from(numerator), u32::try_from(denominator), valid)
    else {
        return Err((
            format!("{at}.{field}"),
            format!("{numerator}/{denominator} is not a share of requests"),
        ));
    };
    let mut backend = backend(
        &m.backend_ref,
        namespace,
        resolver,
        &format!("{at}.backendRef"),
    )?;
    backend.weight = 0;
    Ok(pb::Mirror {
        backend: Some(backend),
        numerator,
        denominator,
    })
}
