//! `GET`: one object, a list (with the collection's resourceVersion), or a watch.

use super::{Body, Ctx, Query, json_response, status};
use crate::path::ResourcePath;
use crate::select::Selector;
use crate::store::Read;
use http::{Response, StatusCode};
use serde_json::{Value, json};

/// Answers a `GET` of `path`.
pub fn get(ctx: &Ctx, path: &ResourcePath, query: &Query) -> Response<Body> {
    if path.name.is_some() {
        return get_one(ctx, path);
    }
    let selector = match Selector::parse(query.get("labelSelector"), query.get("fieldSelector")) {
        Ok(selector) => selector,
        Err(error) => return status(StatusCode::BAD_REQUEST, "BadRequest", &error.to_string()),
    };
    ctx.store.note_read(Read {
        group: path.group.clone(),
        plural: path.plural.clone(),
        watch: query.flag("watch"),
        resource_version: query.get("resourceVersion").map(str::to_owned),
    });
    if query.flag("watch") {
        return super::watch::start(ctx, path, query, selector);
    }
    list(ctx, path, &selector)
}

fn get_one(ctx: &Ctx, path: &ResourcePath) -> Response<Body> {
    let name = path.name.as_deref().unwrap_or_default();
    let key = crate::store::ObjectKey {
        group: path.group.clone(),
        plural: path.plural.clone(),
        namespace: path.namespace.clone(),
        name: name.to_owned(),
    };
    match ctx.store.get(&key) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => not_found(path, name),
    }
}

/// The 404 of an object that does not exist, worded as the API does.
#[must_use]
pub fn not_found(path: &ResourcePath, name: &str) -> Response<Body> {
    let message = format!("{} \"{name}\" not found", qualified(path));
    status(StatusCode::NOT_FOUND, "NotFound", &message)
}

pub(crate) fn qualified(path: &ResourcePath) -> String {
    if path.group.is_empty() {
        path.plural.clone()
    } else {
        format!("{}.{}", path.plural, path.group)
    }
}

fn list(ctx: &Ctx, path: &ResourcePath, selector: &Selector) -> Response<Body> {
    let (objects, resource_version) =
        ctx.store
            .list(&path.group, &path.plural, path.namespace.as_deref());
    let items: Vec<Value> = objects
        .into_iter()
        .filter(|o| selector.matches(o))
        .collect();
    let kind = ctx
        .store
        .resource_type(&path.group, &path.plural)
        .map_or_else(|| "List".to_owned(), |t| format!("{}List", t.kind));
    let api_version = if path.group.is_empty() {
        path.version.clone()
    } else {
        format!("{}/{}", path.group, path.version)
    };
    let body = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}
