//! Writes: `POST` (create), `PUT` (update, optimistic concurrency by resourceVersion),
//! `PATCH` with `application/apply-patch+yaml` (server-side apply, see
//! [`crate::managed_fields`]) and `DELETE`, on objects or their `status` subresource.
//!
//! Each write reads and replaces the stored object under the store's lock
//! ([`Store::put_with`](crate::store::Store::put_with)), so two writers racing on one
//! object see the API's outcomes: one create wins (the other gets 409 AlreadyExists), one
//! update at a resourceVersion wins (the other gets 409 Conflict). Leases
//! (`coordination.k8s.io/v1`) are ordinary objects here, which is all leader election needs.

use super::read::{not_found, qualified};
use super::{Body, Ctx, Query, json_response, status};
use crate::kinds::ResourceType;
use crate::managed_fields::{self, ApplyRequest};
use crate::path::ResourcePath;
use crate::store::{ObjectKey, StoreError};
use http::{Method, Response, StatusCode};
use serde_json::Value;

/// The content type of a server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";
/// The manager of writes that name none (the real API derives one from the user agent).
const UNNAMED_MANAGER: &str = "unknown";

/// A refused write, answered as is.
pub struct Refused(Box<Response<Body>>);

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        Refused(Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &error.to_string(),
        )))
    }
}

fn refused(code: StatusCode, reason: &str, message: &str) -> Refused {
    Refused(Box::new(status(code, reason, message)))
}

/// Answers a write of `method` on `path` with the request body.
pub fn handle(
    ctx: &Ctx,
    method: &Method,
    path: &ResourcePath,
    query: &Query,
    content_type: Option<&str>,
    body: &[u8],
) -> Response<Body> {
    let result = match (method, path.name.is_some()) {
        (&Method::POST, false) => create(ctx, path, query, body),
        (&Method::PUT, true) => update(ctx, path, query, body),
        (&Method::PATCH, true) => apply(ctx, path, query, content_type, body),
        (&Method::DELETE, true) => delete(ctx, path),
        _ => Err(refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{method} is not supported on this path"),
        )),
    };
    result.unwrap_or_else(|Refused(response)| *response)
}

fn create(
    ctx: &Ctx,
    path: &ResourcePath,
    query: &Query,
    body: &[u8],
) -> Result<Response<Body>, Refused> {
    if path.subresource.is_some() {
        return Err(refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "cannot create a subresource",
        ));
    }
    let mut object = parse_body(body)?;
    let key = locate(path, &mut object, None)?;
    let manager = query
        .get("fieldManager")
        .unwrap_or(UNNAMED_MANAGER)
        .to_owned();
    let stored = ctx.store.put_with(&key, |current| {
        if current.is_some() {
            let message = format!("{} \"{}\" already exists", qualified(path), key.name);
            return Err(refused(StatusCode::CONFLICT, "AlreadyExists", &message));
        }
        object["metadata"]["generation"] = Value::from(1);
        managed_fields::record_update(None, &mut object, &manager, "");
        Ok(object)
    })?;
    Ok(json_response(StatusCode::CREATED, &stored))
}

fn update(
    ctx: &Ctx,
    path: &ResourcePath,
    query: &Query,
    body: &[u8],
) -> Result<Response<Body>, Refused> {
    let mut object = parse_body(body)?;
    let name = path.name.as_deref().unwrap_or_default();
    let key = locate(path, &mut object, Some(name))?;
    let subresource = subresource(path)?;
    let manager = query
        .get("fieldManager")
        .unwrap_or(UNNAMED_MANAGER)
        .to_owned();
    let stored = ctx.store.put_with(&key, |current| {
        let Some(current) = current else {
            return Err(Refused(Box::new(not_found(path, name))));
        };
        let expected = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
        let actual = current["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !expected.is_empty() && expected != actual {
            let message = format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(path)
            );
            return Err(refused(StatusCode::CONFLICT, "Conflict", &message));
        }
        let mut next = scoped(current, &object, subresource);
        next["metadata"]["generation"] = next_generation(current, &next);
        managed_fields::record_update(Some(current), &mut next, &manager, subresource);
        Ok(next)
    })?;
    Ok(json_response(StatusCode::OK, &stored))
}

fn apply(
    ctx: &Ctx,
    path: &ResourcePath,
    query: &Query,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, Refused> {
    if content_type.map(|c| c.split(';').next().unwrap_or("").trim()) != Some(APPLY_PATCH) {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("this test server takes only {APPLY_PATCH} patches"),
        ));
    }
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        ));
    };
    let mut patch = parse_body(body)?;
    let name = path.name.as_deref().unwrap_or_default();
    let key = locate(path, &mut patch, Some(name))?;
    let subresource = subresource(path)?;
    let request = ApplyRequest {
        manager,
        force: query.flag("force"),
        subresource,
    };
    let mut created = false;
    let stored = ctx.store.put_with(&key, |current| {
        if current.is_none() && !subresource.is_empty() {
            return Err(Refused(Box::new(not_found(path, name))));
        }
        created = current.is_none();
        let mut merged = managed_fields::apply(current, &patch, request).map_err(|conflicts| {
            refused(
                StatusCode::CONFLICT,
                "Conflict",
                &managed_fields::conflict_message(&conflicts),
            )
        })?;
        merged["metadata"]["generation"] = match current {
            Some(current) => next_generation(current, &merged),
            None => Value::from(1),
        };
        Ok(merged)
    })?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(code, &stored))
}

fn delete(ctx: &Ctx, path: &ResourcePath) -> Result<Response<Body>, Refused> {
    let name = path.name.as_deref().unwrap_or_default();
    let key = ObjectKey {
        group: path.group.clone(),
        plural: path.plural.clone(),
        namespace: path.namespace.clone(),
        name: name.to_owned(),
    };
    match ctx.store.remove(&key) {
        Ok(object) => Ok(json_response(StatusCode::OK, &object)),
        Err(_) => Err(Refused(Box::new(not_found(path, name)))),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Refused> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("the body is not a JSON object: {error}"),
        )
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON object",
        ))
    }
}

/// The object's type and key, checked against the path; fills in the namespace of the
/// path when the body has none.
fn locate(
    path: &ResourcePath,
    object: &mut Value,
    name: Option<&str>,
) -> Result<ObjectKey, Refused> {
    let resource_type = ResourceType::of_object(object)?;
    if resource_type.group != path.group || resource_type.plural != path.plural {
        let message = format!(
            "the body's kind {} ({}) does not belong at {}",
            resource_type.kind,
            resource_type.api_version(),
            qualified(path)
        );
        return Err(refused(StatusCode::BAD_REQUEST, "BadRequest", &message));
    }
    if let Some(namespace) = &path.namespace {
        match object["metadata"]["namespace"].as_str() {
            None => object["metadata"]["namespace"] = Value::String(namespace.clone()),
            Some(given) if given == namespace => {}
            Some(given) => {
                let message = format!(
                    "the namespace of the provided object ({given}) does not match the namespace sent on the request ({namespace})"
                );
                return Err(refused(StatusCode::BAD_REQUEST, "BadRequest", &message));
            }
        }
    }
    if let Some(name) = name
        && object["metadata"]["name"].as_str() != Some(name)
    {
        let message = format!("the name of the object does not match the name on the URL ({name})");
        return Err(refused(StatusCode::BAD_REQUEST, "BadRequest", &message));
    }
    Ok(resource_type.key_of(object)?)
}

/// `status` for the status subresource, empty for the object.
fn subresource(path: &ResourcePath) -> Result<&'static str, Refused> {
    match path.subresource.as_deref() {
        None => Ok(""),
        Some("status") => Ok("status"),
        Some(other) => Err(refused(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("subresource {other} is not served by the test API server"),
        )),
    }
}

/// What an update through `subresource` stores: the status subresource changes only
/// `status`; the object itself keeps the stored `status`.
fn scoped(current: &Value, sent: &Value, subresource: &str) -> Value {
    let (mut next, kept) = if subresource == "status" {
        (current.clone(), sent.get("status"))
    } else {
        (sent.clone(), current.get("status"))
    };
    match kept {
        Some(status) => next["status"] = status.clone(),
        None => {
            if let Some(fields) = next.as_object_mut() {
                fields.remove("status");
            }
        }
    }
    next
}

/// `metadata.generation`, bumped when anything but metadata and status changed.
fn next_generation(current: &Value, next: &Value) -> Value {
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    let spec_of = |object: &Value| -> Value {
        let mut copy = object.clone();
        if let Some(fields) = copy.as_object_mut() {
            fields.remove("metadata");
            fields.remove("status");
        }
        copy
    };
    let changed = spec_of(current) != spec_of(next);
    Value::from(if changed { generation + 1 } else { generation })
}
