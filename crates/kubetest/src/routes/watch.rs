//! Watches (`GET ...?watch=1`), following the API's contract:
//! - from `resourceVersion=N`: every change after N, in order, as newline-separated JSON
//!   events `{"type": "ADDED" | "MODIFIED" | "DELETED", "object": ...}`; without N (or
//!   with `0`), first an ADDED event for every current object;
//! - with a label or field selector, an object that stops matching arrives as DELETED
//!   and one that starts matching as ADDED;
//! - with `allowWatchBookmarks=true`, a BOOKMARK event (an object of the kind carrying
//!   only `metadata.resourceVersion`) every [`ServerOptions::bookmark_interval`];
//! - the server ends the watch after `timeoutSeconds` (capped by
//!   [`ServerOptions::max_watch_timeout`]); clients resume from the last version seen;
//! - when the changes after N were compacted, one ERROR event whose object is a `Status`
//!   with code 410 (reason `Expired`), and the watch ends: the client must list again.
//!
//! [`ServerOptions::bookmark_interval`]: crate::ServerOptions::bookmark_interval
//! [`ServerOptions::max_watch_timeout`]: crate::ServerOptions::max_watch_timeout

use super::{Body, Ctx, Query, status, status_object};
use crate::path::ResourcePath;
use crate::select::Selector;
use crate::store::{Event, EventType};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// One running watch: what it follows and how.
struct Watch {
    ctx: Ctx,
    path: ResourcePath,
    selector: Selector,
    deadline: Instant,
    bookmarks: bool,
    out: mpsc::Sender<Bytes>,
}

/// Starts a watch of `path` and answers with its event stream.
pub fn start(ctx: &Ctx, path: &ResourcePath, query: &Query, selector: Selector) -> Response<Body> {
    let since = match query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(version) => Some(version),
            Err(_) => {
                let message = format!("invalid resourceVersion \"{text}\"");
                return status(StatusCode::BAD_REQUEST, "BadRequest", &message);
            }
        },
    };
    let requested = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(ctx.options.max_watch_timeout, Duration::from_secs);
    let timeout = requested.min(ctx.options.max_watch_timeout);
    let (out, events) = mpsc::channel(64);
    let watch = Watch {
        ctx: ctx.clone(),
        path: path.clone(),
        selector,
        deadline: Instant::now() + timeout,
        bookmarks: query.flag("allowWatchBookmarks"),
        out,
    };
    tokio::spawn(watch.run(since));
    let frames = ReceiverStream::new(events).map(|bytes| Ok(Frame::data(bytes)));
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl Watch {
    async fn run(self, since: Option<u64>) {
        let mut changes = self.ctx.store.changes();
        let mut last = match since {
            Some(version) => version,
            None => match self.send_current().await {
                Some(version) => version,
                None => return,
            },
        };
        let period = self.ctx.options.bookmark_interval;
        let mut bookmark = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            let group = &self.path.group;
            let Some((events, now)) = self.ctx.store.events_since(last, group, &self.path.plural)
            else {
                self.send_gone(last).await;
                return;
            };
            for event in &events {
                if let Some(line) = self.event_line(event) {
                    if self.out.send(line).await.is_err() {
                        return;
                    }
                }
            }
            last = now;
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(self.deadline) => return,
                _ = bookmark.tick(), if self.bookmarks => {
                    if self.out.send(self.bookmark_line(last)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// ADDED for every current object; the resourceVersion they are current at.
    async fn send_current(&self) -> Option<u64> {
        let namespace = self.path.namespace.as_deref();
        let (objects, version) =
            self.ctx
                .store
                .list(&self.path.group, &self.path.plural, namespace);
        for object in objects.iter().filter(|o| self.selector.matches(o)) {
            self.out.send(line("ADDED", object)).await.ok()?;
        }
        Some(version)
    }

    /// The line of `event` as this watch sees it (`None`: not of its namespace, or
    /// matching the selector neither before nor after).
    fn event_line(&self, event: &Event) -> Option<Bytes> {
        if self.path.namespace.is_some() && event.key.namespace != self.path.namespace {
            return None;
        }
        let before = event.old.as_ref().is_some_and(|o| self.selector.matches(o));
        let after = self.selector.matches(&event.object);
        let wire = match (event.kind, before, after) {
            (EventType::Deleted, true, _) | (EventType::Modified, true, false) => "DELETED",
            (EventType::Added | EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, true) => "MODIFIED",
            _ => return None,
        };
        Some(line(wire, &event.object))
    }

    fn bookmark_line(&self, version: u64) -> Bytes {
        let resource_type = self
            .ctx
            .store
            .resource_type(&self.path.group, &self.path.plural);
        let (api_version, kind) = resource_type.map_or_else(
            || (self.path.version.clone(), String::new()),
            |t| (t.api_version(), t.kind),
        );
        let object = json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": version.to_string()},
        });
        line("BOOKMARK", &object)
    }

    async fn send_gone(&self, since: u64) {
        let message = format!(
            "too old resource version: {since} ({})",
            self.ctx.store.resource_version()
        );
        let object = status_object(StatusCode::GONE, "Expired", &message);
        let _ = self.out.send(line("ERROR", &object)).await;
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
