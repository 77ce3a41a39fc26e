//! What every weft process uses to serve connections, apart from the data path itself:
//!
//! - [`accept`]: the one accept loop of every listener (stop signal, back-off on accept
//!   errors such as running out of descriptors);
//! - [`handoff`]: passing listening sockets from a running process to its replacement, so
//!   a restart loses no connection waiting to be accepted;
//! - [`pages`]: the small HTTP router for admin, metrics and readiness pages, and a client
//!   to read them (`weft status`, tests). Pages must not be used on the data path;
//! - [`logging`] (feature `logging`): logging to stderr with a filter that admin pages can
//!   change at runtime, set up once by each binary;
//! - [`shutdown_signal`]: SIGTERM or ctrl-c, what every long-running process stops on.

pub mod accept;
pub mod handoff;
#[cfg(feature = "logging")]
pub mod logging;
pub mod pages;
mod shutdown;

pub use accept::{ACCEPT_ERROR_BACKOFF, Listener, accept_until};
pub use pages::{AdminRequest, MAX_BODY, Page, Router, get, get_on, serve};
pub use shutdown::shutdown_signal;
