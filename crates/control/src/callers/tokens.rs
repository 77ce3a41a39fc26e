//! Caller authentication in config-directory mode (CA and xDS): a token file the operator
//! controls maps bearer tokens to a node name (a node proxy, which may then ask for the
//! identities of workloads on that node) or to a single workload identity.
//!
//! Format (YAML; JSON is accepted too, being a subset):
//! ```yaml
//! tokens:
//!   - token: "9f2c...long random string..."
//!     node: node-a
//!   - token: "51ab...another..."
//!     identity: spiffe://cluster.local/ns/default/sa/batch-job
//! ```
//! Tokens are kept only as SHA-256 digests, so lookups do not compare secrets byte by byte.

use super::caller::{BoxFuture, Caller, CallerAuthenticator};
use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Tokens shorter than this are accepted but logged as weak.
const RECOMMENDED_TOKEN_LEN: usize = 16;

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "token file {source_name}: not valid (expected `tokens: [{{token, node | identity}}]`): {reason}"
    )]
    Syntax { source_name: String, reason: String },
    #[error("token file {source_name}: entry {index}: {reason}")]
    Entry {
        source_name: String,
        index: usize,
        reason: String,
    },
    #[error("cannot watch the token file {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFileDoc {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    identity: Option<String>,
}

/// A parsed token file.
#[derive(Debug, Default)]
pub struct TokenFile {
    by_digest: HashMap<[u8; 32], Caller>,
}

impl TokenFile {
    /// Reads and parses a token file.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses token file text; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, TokenFileError> {
        let doc: TokenFileDoc =
            weft_api::yaml::from_str(text).map_err(|err| TokenFileError::Syntax {
                source_name: source_name.to_owned(),
                reason: err.to_string(),
            })?;
        let mut by_digest = HashMap::with_capacity(doc.tokens.len());
        for (index, entry) in doc.tokens.into_iter().enumerate() {
            let entry_error = |reason: String| TokenFileError::Entry {
                source_name: source_name.to_owned(),
                index,
                reason,
            };
            let caller = entry_caller(&entry).map_err(entry_error)?;
            if entry.token.len() < RECOMMENDED_TOKEN_LEN {
                tracing::warn!(source = source_name, index, caller = %caller, "CA token is shorter than {RECOMMENDED_TOKEN_LEN} characters; use a long random string");
            }
            if by_digest
                .insert(token_digest(&entry.token), caller)
                .is_some()
            {
                return Err(entry_error("the same token appears twice".into()));
            }
        }
        Ok(Self { by_digest })
    }

    /// The caller a token belongs to.
    pub fn lookup(&self, token: &str) -> Option<&Caller> {
        self.by_digest.get(&token_digest(token))
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True if the file declares no token.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

fn entry_caller(entry: &TokenEntry) -> Result<Caller, String> {
    if entry.token.trim().is_empty() {
        return Err("token is empty".into());
    }
    match (&entry.node, &entry.identity) {
        (Some(node), None) if !node.is_empty() => Ok(Caller::Node(node.clone())),
        (None, Some(identity)) => identity
            .parse()
            .map(Caller::Workload)
            .map_err(|err| format!("identity: {err}")),
        (Some(_), Some(_)) => Err("give either `node` or `identity`, not both".into()),
        _ => Err("needs a non-empty `node` or an `identity`".into()),
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// A token file that can be reloaded at runtime; a bad new version keeps the last good one.
#[derive(Debug)]
pub struct ReloadableTokenFile {
    path: PathBuf,
    current: ArcSwap<TokenFile>,
}

impl ReloadableTokenFile {
    /// Loads the file; fails if the first version is bad.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        Ok(Self {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(TokenFile::load(path)?),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The caller a token stands for, if any.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.current.load().lookup(token).cloned()
    }

    /// Re-reads the file; on error the previous tokens stay in force and the error is returned.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let fresh = TokenFile::load(&self.path)?;
        let count = fresh.len();
        self.current.store(Arc::new(fresh));
        Ok(count)
    }
}

impl CallerAuthenticator for TokenFile {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Caller>> {
        Box::pin(std::future::ready(self.lookup(token).cloned()))
    }
}

impl CallerAuthenticator for ReloadableTokenFile {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Caller>> {
        Box::pin(std::future::ready(
            self.current.load().lookup(token).cloned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_tokens_to_nodes_and_identities() {
        let file = TokenFile::parse(
            "tokens:\n  - token: node-a-secret-0123456789\n    node: node-a\n  - token: wl-secret-0123456789\n    identity: spiffe://td/ns/a/sa/b\n",
            "test",
        )
        .expect("valid file");
        assert_eq!(
            file.lookup("node-a-secret-0123456789"),
            Some(&Caller::Node("node-a".into()))
        );
        assert_eq!(
            file.lookup("wl-secret-0123456789"),
            Some(&Caller::Workload(
                "spiffe://td/ns/a/sa/b".parse().expect("id")
            ))
        );
        assert_eq!(file.lookup("node-a-secret-012345678"), None);
    }

    #[test]
    fn accepts_json() {
        let file = TokenFile::parse(
            r#"{"tokens": [{"token": "t-0123456789abcdef", "node": "n"}]}"#,
            "json",
        )
        .expect("json is accepted");
        assert_eq!(file.len(), 1);
    }

    #[test]
    fn rejects_bad_entries_with_their_index() {
        for (text, needle) in [
            ("tokens:\n  - token: a\n", "needs a non-empty"),
            (
                "tokens:\n  - token: a\n    node: n\n    identity: spiffe://td/ns/a/sa/b\n",
                "not both",
            ),
            ("tokens:\n  - token: ''\n    node: n\n", "empty"),
            ("tokens:\n  - token: a\n    identity: nope\n", "identity"),
            (
                "tokens:\n  - token: a\n    node: n\n  - token: a\n    node: m\n",
                "twice",
            ),
            ("tokens:\n  - token: a\n    nodes: n\n", "unknown field"),
        ] {
            let err = TokenFile::parse(text, "t").expect_err(text).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn reload_keeps_last_good_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.yaml");
        std::fs::write(
            &path,
            "tokens:\n  - token: first-token-0123456789\n    node: a\n",
        )
        .expect("write");
        let tokens = ReloadableTokenFile::load(&path).expect("load");
        std::fs::write(&path, "tokens: [ broken").expect("write");
        assert!(tokens.reload().is_err());
        assert!(
            tokens
                .current
                .load()
                .lookup("first-token-0123456789")
                .is_some()
        );
        std::fs::write(
            &path,
            "tokens:\n  - token: second-token-0123456789\n    node: a\n",
        )
        .expect("write");
        assert_eq!(tokens.reload().expect("reload"), 1);
        assert!(
            tokens
                .current
                .load()
                .lookup("first-token-0123456789")
                .is_none()
        );
    }
}
