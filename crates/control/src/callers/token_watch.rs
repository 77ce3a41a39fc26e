//! Follows the operator's token file: each burst of edits (an editor writing in place or
//! renaming a new file over it, Kubernetes swapping a mounted Secret's `..data` link) is
//! re-read once no event has arrived for the debounce time. A file that does not load
//! keeps the last good tokens in force and the reason is logged; a token removed from a
//! good file is refused from the next request on, and xDS streams opened with it are
//! closed. The file is read once more as soon as the watch runs, so an edit made between
//! the first load and the start of the watch is not missed.
//!
//! The file's directory is watched rather than the file, since a rename over the file
//! would end a watch on the file itself.

use super::tokens::{ReloadableTokenFile, TokenFileError};
use crate::ca_service::CaMetrics;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weft_api::WatchHandle;
use weft_xds::XdsServer;

/// The link Kubernetes' atomic writer swaps in a mounted Secret or ConfigMap directory.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Keeps the token file followed; dropping it stops.
pub type TokenFileWatch = WatchHandle;

/// What a reload acts on besides the tokens themselves.
pub struct ReloadEffects {
    /// Counts each reload's result.
    pub metrics: CaMetrics,
    /// Its open streams are checked again after each good reload.
    pub xds: XdsServer,
}

/// Starts following the file of `tokens` on the current tokio runtime.
///
/// # Errors
/// [`TokenFileError::Watch`] if the OS watcher cannot be set up.
pub fn watch_token_file(
    tokens: Arc<ReloadableTokenFile>,
    debounce: Duration,
    effects: ReloadEffects,
) -> Result<TokenFileWatch, TokenFileError> {
    let path = tokens.path().to_owned();
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(OsStr::to_owned);
    // a watcher error (e.g. a lost event queue) may hide an edit: treat it as one
    let relevant = move |event: &notify::Result<notify::Event>| {
        event.as_ref().map_or(true, |event| {
            !event.kind.is_access() && event.paths.iter().any(|p| concerns(p, &name))
        })
    };
    let effects = Arc::new(effects);
    let reload = move || reload_once(Arc::clone(&tokens), Arc::clone(&effects));
    let watch = WatchHandle::start(
        &directory,
        notify::RecursiveMode::NonRecursive,
        relevant,
        debounce,
        reload,
    )
    .map_err(|source| TokenFileError::Watch { path, source })?;
    // catch up with an edit made before the watch started
    watch.poke();
    Ok(watch)
}

/// Re-reads the file and applies the result; false stops following (the reload task died).
async fn reload_once(tokens: Arc<ReloadableTokenFile>, effects: Arc<ReloadEffects>) -> bool {
    let reloading = Arc::clone(&tokens);
    match tokio::task::spawn_blocking(move || reloading.reload()).await {
        Ok(result) => {
            let good = result.is_ok();
            record_reload(tokens.path(), &effects.metrics, result);
            if good {
                close_revoked_streams(&effects.xds).await;
            }
            true
        }
        Err(error) => {
            tracing::error!(%error, "token file reload failed; no further edits are applied");
            false
        }
    }
}

/// Whether an event on `event_path` may have changed the file named `file_name`.
fn concerns(event_path: &Path, file_name: &Option<OsString>) -> bool {
    let name = event_path.file_name();
    name == file_name.as_deref() || name == Some(OsStr::new(KUBERNETES_DATA_LINK))
}

async fn close_revoked_streams(xds: &XdsServer) {
    let closed = xds.reauthenticate().await;
    if closed > 0 {
        tracing::info!(
            closed,
            "closed xDS streams whose token is no longer in the token file"
        );
    }
}

fn record_reload(path: &Path, metrics: &CaMetrics, result: Result<usize, TokenFileError>) {
    metrics.token_file_reloaded(result.is_ok());
    match result {
        Ok(count) => tracing::info!(path = %path.display(), tokens = count, "token file reloaded"),
        Err(error) => tracing::error!(
            %error,
            "token file edit not applied; the last good tokens stay in force"
        ),
    }
}
