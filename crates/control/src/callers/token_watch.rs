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
use notify::Watcher as _;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use weft_xds::XdsServer;

/// The link Kubernetes' atomic writer swaps in a mounted Secret or ConfigMap directory.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Keeps the token file followed; dropping it stops.
pub struct TokenFileWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenFileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
    let (signal, signals) = mpsc::unbounded_channel();
    let watcher = watch_directory_of(tokens.path(), signal.clone())?;
    // catch up with an edit made before the watch started
    let _ = signal.send(());
    let task = tokio::spawn(reload_after_bursts(tokens, debounce, effects, signals));
    Ok(TokenFileWatch {
        _watcher: watcher,
        task,
    })
}

/// Watches the directory holding `path`; signals every event that may concern the file
/// (and watcher errors, such as a lost event queue, which may hide one).
fn watch_directory_of(
    path: &Path,
    signal: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, TokenFileError> {
    let failed = |source| TokenFileError::Watch {
        path: path.to_owned(),
        source,
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().map(OsStr::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.map_or(true, |event| {
            !event.kind.is_access() && event.paths.iter().any(|p| concerns(p, &name))
        });
        if relevant {
            let _ = signal.send(());
        }
    })
    .map_err(failed)?;
    watcher
        .watch(directory, notify::RecursiveMode::NonRecursive)
        .map_err(failed)?;
    Ok(watcher)
}

/// Whether an event on `event_path` may have changed the file named `file_name`.
fn concerns(event_path: &Path, file_name: &Option<OsString>) -> bool {
    let name = event_path.file_name();
    name == file_name.as_deref() || name == Some(OsStr::new(KUBERNETES_DATA_LINK))
}

async fn reload_after_bursts(
    tokens: Arc<ReloadableTokenFile>,
    debounce: Duration,
    effects: ReloadEffects,
    mut signals: mpsc::UnboundedReceiver<()>,
) {
    while signals.recv().await.is_some() {
        while let Ok(Some(())) = tokio::time::timeout(debounce, signals.recv()).await {}
        let reloading = Arc::clone(&tokens);
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(result) => {
                let good = result.is_ok();
                record_reload(tokens.path(), &effects.metrics, result);
                if good {
                    close_revoked_streams(&effects.xds).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "token file reload failed; no further edits are applied");
                return;
            }
        }
    }
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
