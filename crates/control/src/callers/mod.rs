//! Who is calling the control plane. Node proxies present one bearer token to both the CA
//! and xDS; [`CallerAuthenticator`] turns it into a [`Caller`] for both (xDS streams through
//! [`XdsCallerAuth`]). Tokens come from a file ([`tokens`]) that is watched and reloaded
//! ([`token_watch`]): a broken edit keeps the last good tokens.

pub mod caller;
mod token_watch;
pub mod tokens;

pub use caller::{Caller, CallerAuthenticator, XdsCallerAuth};
pub use token_watch::{ReloadEffects, TokenFileWatch, watch_token_file};
pub use tokens::{ReloadableTokenFile, TokenFile, TokenFileError};
