//! Logging of a weft process: human-readable lines on stderr, filtered by a
//! `tracing_subscriber` filter that can be replaced at runtime (the node proxy's
//! `/logging` admin page). [`init`] is called once by a binary's `main`; every later
//! [`filter_control`] returns the handle that changes the filter.

use std::sync::{Arc, OnceLock};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Changes the log filter of this process at runtime; returns the new filter text or why
/// it was refused.
pub type FilterControl = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

static FILTER: OnceLock<FilterControl> = OnceLock::new();

/// The runtime filter control, when logging was set up by [`init`].
pub fn filter_control() -> Option<FilterControl> {
    FILTER.get().cloned()
}

/// Sets up logging to stderr with `filter` (e.g. `info`, `weft=debug`), or `RUST_LOG`, or
/// `info`. Colours only when stderr is a terminal: proxies started by `weft up` log to
/// files, and escape codes there cost CPU on every access-log line and get in the way of
/// `grep`.
pub fn init(filter: Option<&str>) {
    use std::io::IsTerminal as _;
    let filter = filter.map_or_else(
        || {
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        },
        tracing_subscriber::EnvFilter::new,
    );
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .init();
    let control: FilterControl = Arc::new(move |text: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(text)
            .map_err(|err| format!("invalid log filter {text:?}: {err}"))?;
        handle
            .reload(filter)
            .map_err(|err| format!("cannot change the log filter: {err}"))?;
        Ok(text.to_owned())
    });
    let _ = FILTER.set(control);
}
