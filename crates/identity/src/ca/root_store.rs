//! Where the CA's roots are kept between runs, behind the small [`RootStore`] interface (a
//! directory here; another store can keep them elsewhere, e.g. a Kubernetes Secret): the CA
//! that signs, the one replacing it during a root rotation, and the trust bundle published
//! for processes that start later.
//!
//! [`DirRootStore`] keeps, in the CA state directory:
//! - `root-cert.pem` / `root-key.pem`: the self-signed root generated on first use;
//! - `current`: which CA a rotation made current (`self-signed <subdir>` or `plugin <dir>`),
//!   absent until the first rotation (then the `--ca-dir` plug-in or the generated root is);
//! - `next`: the same for the CA a rotation in progress moves to; promoting it is one rename
//!   of `next` over `current`;
//! - `trust-bundle.pem`: every trusted root, rewritten at each phase change (point proxies'
//!   `--ca-root` at it);
//! - `rotate-request`: a rotation asked for by `weft ca rotate`, taken by the running
//!   control plane.

use super::store::{ensure_private_dir, write_file};
use super::{CaError, CertificateAuthority};
use std::fs;
use std::path::{Path, PathBuf};

/// The file holding the trusted roots (PEM), next to the CA state.
pub const TRUST_BUNDLE_FILE: &str = "trust-bundle.pem";
/// A rotation asked for and not yet taken by the control plane.
pub const ROTATE_REQUEST_FILE: &str = "rotate-request";
const CURRENT_FILE: &str = "current";
const NEXT_FILE: &str = "next";

/// Which root a rotation moves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextRoot {
    /// A new self-signed root, generated and kept by the store.
    Generate,
    /// A plug-in CA directory (Istio `cacerts` layout).
    Plugin(PathBuf),
}

impl NextRoot {
    /// The request file's text.
    fn to_line(&self) -> String {
        match self {
            Self::Generate => "generate\n".to_owned(),
            Self::Plugin(dir) => format!("plugin {}\n", dir.display()),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "generate" {
            return Some(Self::Generate);
        }
        let dir = text.strip_prefix("plugin ")?.trim();
        (!dir.is_empty()).then(|| Self::Plugin(PathBuf::from(dir)))
    }
}

/// What a store holds at start-up.
#[derive(Debug)]
pub struct LoadedRoots {
    /// The CA that signs.
    pub current: CertificateAuthority,
    /// The CA of a rotation in progress.
    pub next: Option<CertificateAuthority>,
}

/// Keeps the CA's roots between runs.
pub trait RootStore: Send + Sync {
    /// The CA that signs and, when a rotation was in progress, the one replacing it.
    ///
    /// # Errors
    /// A root that cannot be read or does not fit its key.
    fn load(&self) -> Result<LoadedRoots, CaError>;

    /// Makes (or reads) the CA a rotation moves to and remembers it as in progress.
    ///
    /// # Errors
    /// The new CA cannot be generated, read or checked.
    fn prepare_next(&self, next: &NextRoot) -> Result<CertificateAuthority, CaError>;

    /// The rotation completed: the CA prepared last is the one [`Self::load`] returns as
    /// current from now on.
    ///
    /// # Errors
    /// The change could not be saved.
    fn promote_next(&self) -> Result<(), CaError>;

    /// Publishes the trusted roots (PEM) for processes that start later.
    ///
    /// # Errors
    /// The bundle could not be saved.
    fn publish_bundle(&self, pem: &str) -> Result<(), CaError>;

    /// A rotation asked for out of band (`weft ca rotate`), removed once taken.
    fn take_request(&self) -> Option<NextRoot>;
}

/// The roots in a private directory (`<state dir>/ca`), with the `--ca-dir` plug-in CA.
#[derive(Debug, Clone)]
pub struct DirRootStore {
    dir: PathBuf,
    plugin: Option<PathBuf>,
}

impl DirRootStore {
    /// The store in `dir`; `plugin` is the `--ca-dir` flag.
    pub fn new(dir: &Path, plugin: Option<&Path>) -> Self {
        Self {
            dir: dir.to_owned(),
            plugin: plugin.map(Path::to_owned),
        }
    }

    /// Asks the control plane using the store in `dir` to rotate to `next` (written to a
    /// file it picks up while running).
    ///
    /// # Errors
    /// The directory does not exist or cannot be written.
    pub fn request_rotation(dir: &Path, next: &NextRoot) -> Result<PathBuf, CaError> {
        if !dir.is_dir() {
            return Err(CaError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no CA state here (is this the control plane's --state-dir?)",
                ),
            });
        }
        let path = dir.join(ROTATE_REQUEST_FILE);
        write_file(&path, next.to_line().as_bytes(), 0o600)?;
        Ok(path)
    }

    /// Where [`RootStore::publish_bundle`] writes.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.join(TRUST_BUNDLE_FILE)
    }

    fn marker(&self, name: &str) -> Result<Option<String>, CaError> {
        let path = self.dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CaError::Io { path, source }),
        }
    }

    /// Loads the CA a marker line names (`self-signed <subdir>` or `plugin <dir>`).
    fn load_marked(&self, name: &str, line: &str) -> Result<CertificateAuthority, CaError> {
        if let Some(sub) = line.strip_prefix("self-signed ") {
            return CertificateAuthority::load_or_create_self_signed(&self.dir.join(sub.trim()));
        }
        if let Some(dir) = line.strip_prefix("plugin ") {
            return CertificateAuthority::load_plugin(Path::new(dir.trim()));
        }
        Err(CaError::BadCertificate {
            path: self.dir.join(name),
            reason: format!(
                "unknown CA source {line:?} (expected `self-signed DIR` or `plugin DIR`)"
            ),
        })
    }

    /// The CA a completed rotation made current, refusing a `--ca-dir` that says otherwise.
    fn load_current(&self) -> Result<CertificateAuthority, CaError> {
        let Some(line) = self.marker(CURRENT_FILE)? else {
            return CertificateAuthority::load_or_create(self.plugin.as_deref(), &self.dir);
        };
        if let Some(flag) = &self.plugin
            && line != format!("plugin {}", flag.display())
        {
            return Err(CaError::RotatedElsewhere {
                marker: self.dir.join(CURRENT_FILE),
                current: line,
                flag: flag.clone(),
            });
        }
        self.load_marked(CURRENT_FILE, &line)
    }
}

impl RootStore for DirRootStore {
    fn load(&self) -> Result<LoadedRoots, CaError> {
        ensure_private_dir(&self.dir)?;
        let current = self.load_current()?;
        let next = match self.marker(NEXT_FILE)? {
            Some(line) => Some(self.load_marked(NEXT_FILE, &line)?),
            None => None,
        };
        Ok(LoadedRoots { current, next })
    }

    fn prepare_next(&self, next: &NextRoot) -> Result<CertificateAuthority, CaError> {
        let (line, ca) = match next {
            NextRoot::Generate => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let sub = format!("root-{stamp}");
                let ca = CertificateAuthority::load_or_create_self_signed(&self.dir.join(&sub))?;
                (format!("self-signed {sub}"), ca)
            }
            NextRoot::Plugin(dir) => {
                let dir = fs::canonicalize(dir).map_err(|source| CaError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let ca = CertificateAuthority::load_plugin(&dir)?;
                (format!("plugin {}", dir.display()), ca)
            }
        };
        write_file(
            &self.dir.join(NEXT_FILE),
            format!("{line}\n").as_bytes(),
            0o600,
        )?;
        Ok(ca)
    }

    fn promote_next(&self) -> Result<(), CaError> {
        let from = self.dir.join(NEXT_FILE);
        let to = self.dir.join(CURRENT_FILE);
        fs::rename(&from, &to).map_err(|source| CaError::Io { path: from, source })
    }

    fn publish_bundle(&self, pem: &str) -> Result<(), CaError> {
        write_file(&self.bundle_path(), pem.as_bytes(), 0o644)
    }

    fn take_request(&self) -> Option<NextRoot> {
        let path = self.dir.join(ROTATE_REQUEST_FILE);
        let text = fs::read_to_string(&path).ok()?;
        if let Err(err) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove the rotation request");
        }
        let request = NextRoot::parse(&text);
        if request.is_none() {
            tracing::warn!(path = %path.display(), text = text.trim(), "ignoring a rotation request that is neither `generate` nor `plugin DIR`");
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{RootRotation, rotation::fingerprint};
    use std::sync::Arc;

    #[test]
    fn a_generated_next_root_is_resumed_after_a_restart_and_current_once_promoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirRootStore::new(dir.path(), None);
        let first = store.load().expect("first load");
        assert!(first.next.is_none());
        let old = fingerprint(first.current.root());
        let next = store.prepare_next(&NextRoot::Generate).expect("next");
        let new = fingerprint(next.root());
        assert_ne!(old, new);

        let restarted = store.load().expect("load mid-rotation");
        assert_eq!(fingerprint(restarted.current.root()), old);
        let resumed = restarted.next.expect("rotation in progress");
        assert_eq!(
            fingerprint(resumed.root()),
            new,
            "same new root after a restart"
        );

        store.promote_next().expect("promote");
        let after = store.load().expect("load after");
        assert_eq!(fingerprint(after.current.root()), new);
        assert!(after.next.is_none());
    }

    #[test]
    fn a_ca_dir_flag_that_contradicts_a_completed_rotation_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        DirRootStore::new(dir.path(), None).load().expect("load");
        let store = DirRootStore::new(dir.path(), None);
        store.prepare_next(&NextRoot::Generate).expect("next");
        store.promote_next().expect("promote");
        let plugin = dir.path().join("old-plugin");
        let err = DirRootStore::new(dir.path(), Some(&plugin))
            .load()
            .expect_err("contradicting flag");
        let text = err.to_string();
        assert!(
            text.contains("self-signed root-") && text.contains("old-plugin"),
            "{text}"
        );
    }

    #[test]
    fn a_rotation_request_is_taken_once_and_a_bad_one_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirRootStore::new(dir.path(), None);
        let plugin = NextRoot::Plugin(PathBuf::from("/etc/cacerts-2"));
        DirRootStore::request_rotation(dir.path(), &plugin).expect("request");
        assert_eq!(store.take_request(), Some(plugin));
        assert_eq!(store.take_request(), None, "taken once");
        fs::write(dir.path().join(ROTATE_REQUEST_FILE), "rotate please").expect("write");
        assert_eq!(store.take_request(), None);
        let missing = dir.path().join("missing");
        assert!(DirRootStore::request_rotation(&missing, &NextRoot::Generate).is_err());
    }

    #[test]
    fn rotating_to_the_root_in_use_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirRootStore::new(dir.path(), None);
        let rotation = RootRotation::new(Arc::new(store.load().expect("load").current));
        let same = store.load().expect("load again").current;
        let err = rotation.begin(same).expect_err("same root");
        assert!(err.to_string().contains("root in use"), "{err}");
    }
}
