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
use crate::store::{Event, EventType, WatchStart};
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
    // the watch is registered before the response: a change right after it is seen
    let Some((first, start)) = watch.begin(since) else {
        let gone = watch.gone_line(since.unwrap_or_default());
        return stream_response(futures::stream::iter([Ok(Frame::data(gone))]));
    };
    tokio::spawn(watch.run(first, start));
    stream_response(ReceiverStream::new(events).map(|bytes| Ok(Frame::data(bytes))))
}

fn stream_response(
    frames: impl futures::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>>
    + Send
    + Sync
    + 'static,
) -> Response<Body> {
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl Watch {
    /// Registers the watch: the lines it sends first and the changes after them; `None`
    /// when the changes after `since` were compacted.
    fn begin(&self, since: Option<u64>) -> Option<(Vec<Bytes>, WatchStart)> {
        let (group, plural) = (&self.path.group, &self.path.plural);
        match since {
            Some(version) => {
                let (events, start) = self.ctx.store.watch_from(version, group, plural)?;
                let lines = events.iter().filter_map(|e| self.event_line(e)).collect();
                Some((lines, start))
            }
            None => {
                let namespace = self.path.namespace.as_deref();
                let (objects, start) = self.ctx.store.watch_current(group, plural, namespace);
                let selected = objects.iter().filter(|o| self.selector.matches(o));
                Some((selected.map(|o| line("ADDED", o)).collect(), start))
            }
        }
    }

    async fn run(self, first: Vec<Bytes>, start: WatchStart) {
        let (group, plural) = (&self.path.group, &self.path.plural);
        let WatchStart {
            resource_version: mut last,
            mut changes,
        } = start;
        for line in first {
            if self.out.send(line).await.is_err() {
                return;
            }
        }
        let period = self.ctx.options.bookmark_interval;
        let mut bookmark = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            let line = tokio::select! {
                change = changes.recv() => {
                    let Some(event) = change else { return };
                    last = event.resource_version;
                    if event.key.group != *group || event.key.plural != *plural {
                        continue;
                    }
                    match self.event_line(&event) {
                        Some(line) => line,
                        None => continue,
                    }
                }
                () = tokio::time::sleep_until(self.deadline) => return,
                _ = bookmark.tick(), if self.bookmarks => self.bookmark_line(last),
            };
            if self.out.send(line).await.is_err() {
                return;
            }
        }
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

    /// The ERROR event of a watch from a compacted resourceVersion.
    fn gone_line(&self, since: u64) -> Bytes {
        let message = format!(
            "too old resource version: {since} ({})",
            self.ctx.store.resource_version()
        );
        let object = status_object(StatusCode::GONE, "Expired", &message);
        line("ERROR", &object)
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
