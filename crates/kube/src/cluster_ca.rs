//! The mesh CA's root of trust kept in the cluster, as Istio keeps it, in the control
//! plane's namespace:
//! - Secret `cacerts` (plug-in CA: `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`,
//!   `root-cert.pem`) when the operator created one;
//! - otherwise Secret `istio-ca-secret` (type `istio.io/ca-root`, keys `ca-cert.pem` and
//!   `ca-key.pem`: a self-signed root), created with a new root on first start and read
//!   back on every later start and by every other replica (of two replicas creating it at
//!   once, the API keeps the first; the second reads it).
//!
//! The Secret's files go through the same checks as a plug-in CA directory (key matches
//! certificate, chain leads to the root, a probe certificate verifies).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::path::Path;
use weft_identity::CertificateAuthority;
use weft_identity::ca::{CA_CERT_FILE, CA_KEY_FILE, CaError, ROOT_CERT_FILE, ROOT_KEY_FILE};

/// The plug-in CA Secret.
pub const PLUGIN_SECRET: &str = "cacerts";
/// The Secret holding a generated self-signed root.
pub const SELF_SIGNED_SECRET: &str = "istio-ca-secret";
/// The type Istio gives [`SELF_SIGNED_SECRET`].
pub const SELF_SIGNED_SECRET_TYPE: &str = "istio.io/ca-root";

/// Why the CA could not be loaded from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCaError {
    #[error("reading or writing Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: &'static str,
        source: Box<kube::Error>,
    },
    #[error("Secret {namespace}/{name}: {source}")]
    Invalid {
        namespace: String,
        name: &'static str,
        source: CaError,
    },
    #[error("Secret {namespace}/{name}: cannot stage its files: {source}")]
    Stage {
        namespace: String,
        name: &'static str,
        source: std::io::Error,
    },
}

/// Where the CA came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaOrigin {
    /// Secret `cacerts`.
    Plugin,
    /// Secret `istio-ca-secret`, as found.
    SelfSigned,
    /// Secret `istio-ca-secret`, created now with a new root.
    Created,
}

/// Loads the CA from `namespace`'s Secrets (see the module docs), creating the self-signed
/// root's Secret if neither exists.
///
/// # Errors
/// The API failed, or a Secret's contents do not make a working CA.
pub async fn load_cluster_ca(
    client: kube::Client,
    namespace: &str,
) -> Result<(CertificateAuthority, CaOrigin), ClusterCaError> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let api_error = |name, source| ClusterCaError::Api {
        namespace: namespace.to_owned(),
        name,
        source: Box::new(source),
    };
    if let Some(plugin) = secrets
        .get_opt(PLUGIN_SECRET)
        .await
        .map_err(|err| api_error(PLUGIN_SECRET, err))?
    {
        let ca = from_secret(namespace, PLUGIN_SECRET, &plugin, PLUGIN_LAYOUT)?;
        return Ok((ca, CaOrigin::Plugin));
    }
    if let Some(existing) = secrets
        .get_opt(SELF_SIGNED_SECRET)
        .await
        .map_err(|err| api_error(SELF_SIGNED_SECRET, err))?
    {
        let ca = from_secret(namespace, SELF_SIGNED_SECRET, &existing, SELF_SIGNED_LAYOUT)?;
        return Ok((ca, CaOrigin::SelfSigned));
    }
    let created = generate_secret(namespace)?;
    match secrets.create(&PostParams::default(), &created).await {
        Ok(stored) => {
            tracing::info!(
                namespace,
                secret = SELF_SIGNED_SECRET,
                "generated a new self-signed mesh root CA"
            );
            let ca = from_secret(namespace, SELF_SIGNED_SECRET, &stored, SELF_SIGNED_LAYOUT)?;
            Ok((ca, CaOrigin::Created))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // another replica created it first: use theirs
            let theirs = secrets
                .get(SELF_SIGNED_SECRET)
                .await
                .map_err(|err| api_error(SELF_SIGNED_SECRET, err))?;
            let ca = from_secret(namespace, SELF_SIGNED_SECRET, &theirs, SELF_SIGNED_LAYOUT)?;
            Ok((ca, CaOrigin::SelfSigned))
        }
        Err(err) => Err(api_error(SELF_SIGNED_SECRET, err)),
    }
}

/// How a Secret's keys map onto the file names the CA loader reads.
#[derive(Clone, Copy)]
struct Layout {
    /// (Secret key, file name) pairs copied when present.
    files: &'static [(&'static str, &'static str)],
    plugin: bool,
}

const PLUGIN_LAYOUT: Layout = Layout {
    files: &[
        (CA_CERT_FILE, CA_CERT_FILE),
        (CA_KEY_FILE, CA_KEY_FILE),
        (
            weft_identity::ca::CERT_CHAIN_FILE,
            weft_identity::ca::CERT_CHAIN_FILE,
        ),
        (ROOT_CERT_FILE, ROOT_CERT_FILE),
    ],
    plugin: true,
};

/// `istio-ca-secret` holds the root itself as the signing certificate.
const SELF_SIGNED_LAYOUT: Layout = Layout {
    files: &[(CA_CERT_FILE, ROOT_CERT_FILE), (CA_KEY_FILE, ROOT_KEY_FILE)],
    plugin: false,
};

/// Builds the CA from a Secret's data with the file-based loader, whose checks it shares:
/// the files are staged in a private (0700) temporary directory removed right after.
fn from_secret(
    namespace: &str,
    name: &'static str,
    secret: &Secret,
    layout: Layout,
) -> Result<CertificateAuthority, ClusterCaError> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let stage_error = |source| ClusterCaError::Stage {
        namespace: namespace.to_owned(),
        name,
        source,
    };
    let staging = tempfile::Builder::new()
        .prefix("weft-ca-")
        .tempdir()
        .map_err(stage_error)?;
    for (key, file) in layout.files {
        if let Some(ByteString(bytes)) = data.get(*key).filter(|b| !b.0.is_empty()) {
            write_private(&staging.path().join(file), bytes).map_err(stage_error)?;
        }
    }
    let loaded = if layout.plugin {
        CertificateAuthority::load_plugin(staging.path())
    } else {
        load_existing_self_signed(staging.path())
    };
    loaded.map_err(|source| ClusterCaError::Invalid {
        namespace: namespace.to_owned(),
        name,
        source,
    })
}

/// The self-signed loader generates a root when it finds none; a Secret without its files
/// is an error instead.
fn load_existing_self_signed(dir: &Path) -> Result<CertificateAuthority, CaError> {
    for file in [ROOT_CERT_FILE, ROOT_KEY_FILE] {
        if !dir.join(file).exists() {
            let missing = if file == ROOT_CERT_FILE {
                CA_CERT_FILE
            } else {
                CA_KEY_FILE
            };
            return Err(CaError::StateIncomplete {
                dir: dir.to_owned(),
                present: "the Secret",
                missing,
            });
        }
    }
    CertificateAuthority::load_or_create_self_signed(dir)
}

/// A new root, generated by the CA's own generator, as an `istio-ca-secret` Secret.
fn generate_secret(namespace: &str) -> Result<Secret, ClusterCaError> {
    let stage_error = |source| ClusterCaError::Stage {
        namespace: namespace.to_owned(),
        name: SELF_SIGNED_SECRET,
        source,
    };
    let staging = tempfile::Builder::new()
        .prefix("weft-ca-")
        .tempdir()
        .map_err(stage_error)?;
    let dir = staging.path().join("root");
    CertificateAuthority::load_or_create_self_signed(&dir).map_err(|source| {
        ClusterCaError::Invalid {
            namespace: namespace.to_owned(),
            name: SELF_SIGNED_SECRET,
            source,
        }
    })?;
    let mut data = BTreeMap::new();
    for (key, file) in SELF_SIGNED_LAYOUT.files {
        let bytes = std::fs::read(dir.join(file)).map_err(stage_error)?;
        data.insert((*key).to_owned(), ByteString(bytes));
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(SELF_SIGNED_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some(SELF_SIGNED_SECRET_TYPE.to_owned()),
        ..Secret::default()
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
