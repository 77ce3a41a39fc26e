//! Where the CA's root of trust comes from: a plug-in CA directory (Istio `cacerts` layout)
//! or a self-signed root generated once and persisted in a private state directory.

use super::{CaError, CertificateAuthority, cert_not_after, generate_root, to_pem};
use crate::SpiffeId;
use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Plug-in CA: the signing (intermediate) certificate.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// Plug-in CA: the signing key.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Plug-in CA: the chain from the signing certificate up to (optionally including) the root.
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
/// Plug-in CA and state directory: the root certificate.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// State directory: the generated root's key.
pub const ROOT_KEY_FILE: &str = "root-key.pem";

impl CertificateAuthority {
    /// Loads the root of trust: the plug-in CA directory if given, else the self-signed root
    /// persisted in `state_dir` (generated on first use).
    pub fn load_or_create(plugin_dir: Option<&Path>, state_dir: &Path) -> Result<Self, CaError> {
        match plugin_dir {
            Some(dir) => Self::load_plugin(dir),
            None => Self::load_or_create_self_signed(state_dir),
        }
    }

    /// Loads a plug-in CA from a directory with Istio's `cacerts` layout and checks that the
    /// key, signing certificate, chain and root fit together.
    pub fn load_plugin(dir: &Path) -> Result<Self, CaError> {
        let required = |name: &'static str| {
            let path = dir.join(name);
            if path.exists() {
                Ok(path)
            } else {
                Err(CaError::PluginIncomplete {
                    dir: dir.to_owned(),
                    missing: name,
                })
            }
        };
        let ca_cert_path = required(CA_CERT_FILE)?;
        let ca_key_path = required(CA_KEY_FILE)?;
        let root_path = required(ROOT_CERT_FILE)?;
        let ca_cert = read_single_cert(&ca_cert_path)?;
        let root = read_single_cert(&root_path)?;
        let chain_path = dir.join(CERT_CHAIN_FILE);
        let chain_file = if chain_path.exists() {
            read_certs(&chain_path)?
        } else {
            Vec::new()
        };
        let key = read_key(&ca_key_path)?;
        let issuer =
            Issuer::from_ca_cert_der(&ca_cert, key).map_err(|err| CaError::BadCertificate {
                path: ca_cert_path.clone(),
                reason: err.to_string(),
            })?;
        let chain_above_leaf = assemble_chain(ca_cert, chain_file, root);
        let not_after = |cert: &CertificateDer<'_>, path: &Path| {
            cert_not_after(cert).map_err(|reason| CaError::BadCertificate {
                path: path.to_owned(),
                reason,
            })
        };
        let ca = Self {
            issuer,
            signing_not_after: not_after(&chain_above_leaf[0], &ca_cert_path)?,
            root_not_after: not_after(chain_above_leaf.last().expect("root"), &root_path)?,
            chain_above_leaf_pem: chain_above_leaf.iter().map(|c| to_pem(c)).collect(),
            chain_above_leaf,
            description: format!("plug-in CA from {}", dir.display()),
        };
        ca.self_check(dir)?;
        Ok(ca)
    }

    /// Loads the self-signed root from `dir`, or generates and persists one on first use.
    /// The directory is created (and kept) mode 0700; the key file is written mode 0600.
    pub fn load_or_create_self_signed(dir: &Path) -> Result<Self, CaError> {
        ensure_private_dir(dir)?;
        let cert_path = dir.join(ROOT_CERT_FILE);
        let key_path = dir.join(ROOT_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                tighten_key_permissions(&key_path)?;
                let root = read_single_cert(&cert_path)?;
                let key = read_key(&key_path)?;
                let ca = Self::self_signed_from(
                    key,
                    &root,
                    format!("self-signed root in {}", dir.display()),
                )?;
                ca.self_check(dir)?;
                Ok(ca)
            }
            (false, false) => {
                let (key, root) = generate_root()?;
                write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                write_file(&cert_path, to_pem(&root).as_bytes(), 0o644)?;
                tracing::info!(dir = %dir.display(), "generated a new self-signed mesh root CA");
                Self::self_signed_from(key, &root, format!("self-signed root in {}", dir.display()))
            }
            (true, false) => Err(CaError::StateIncomplete {
                dir: dir.to_owned(),
                present: ROOT_CERT_FILE,
                missing: ROOT_KEY_FILE,
            }),
            (false, true) => Err(CaError::StateIncomplete {
                dir: dir.to_owned(),
                present: ROOT_KEY_FILE,
                missing: ROOT_CERT_FILE,
            }),
        }
    }

    /// Issues a throwaway leaf and verifies it up to the root, proving that the key matches
    /// the signing certificate and that the chain is complete.
    fn self_check(&self, dir: &Path) -> Result<(), CaError> {
        let fail = |reason: String| CaError::ChainDoesNotVerify {
            dir: dir.to_owned(),
            reason,
        };
        let probe_key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::Build)?;
        let probe_id = SpiffeId::new("probe.invalid", "probe", "probe")
            .map_err(|err| fail(err.to_string()))?;
        let signed = self.sign_workload(
            &probe_key.subject_public_key_info(),
            &probe_id,
            Duration::from_secs(300),
        )?;
        let chain: Vec<CertificateDer<'static>> = signed
            .pem
            .iter()
            .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|err| fail(err.to_string()))?;
        let mut roots = RootCertStore::empty();
        roots
            .add(self.root().clone())
            .map_err(|err| fail(format!("root: {err}")))?;
        let leaf = rustls::server::ParsedCertificate::try_from(&chain[0])
            .map_err(|err| fail(err.to_string()))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            &chain[1..],
            UnixTime::now(),
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .all,
        )
        .map_err(|err| fail(err.to_string()))
    }
}

/// Signing cert first, then the chain file's certificates, then the root; no duplicates.
fn assemble_chain(
    ca_cert: CertificateDer<'static>,
    chain_file: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
) -> Vec<CertificateDer<'static>> {
    let mut chain = vec![ca_cert];
    for cert in chain_file {
        if cert != root && !chain.contains(&cert) {
            chain.push(cert);
        }
    }
    if !chain.contains(&root) {
        chain.push(root);
    }
    chain
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| CaError::Pem {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaError::Pem {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn read_single_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = read_certs(path)?;
    if certs.len() > 1 {
        tracing::warn!(path = %path.display(), count = certs.len(), "using the first certificate of several");
    }
    Ok(certs.swap_remove(0))
}

fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let bytes = read(path)?;
    let text = String::from_utf8(bytes).map_err(|_| CaError::Pem {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })?;
    KeyPair::from_pem(&text).map_err(|err| CaError::BadKey {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

/// Creates `dir` (and parents) if missing and makes it mode 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)
}

fn tighten_key_permissions(path: &Path) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "CA key was readable by others; setting mode 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    }
    Ok(())
}

/// Writes a file atomically (temporary file + rename) with the given mode.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp: PathBuf = path.with_extension("tmp");
    let io_err = |source, path: &Path| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|err| io_err(err, &tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| io_err(err, &tmp))?;
    fs::rename(&tmp, path).map_err(|err| io_err(err, path))
}
