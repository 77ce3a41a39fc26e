//! The Kubernetes client of a weft process: in-cluster configuration (the pod's service
//! account token and CA, `KUBERNETES_SERVICE_HOST`), or a kubeconfig file.

use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not running in a pod (or its service account is not mounted).
    #[error("in-cluster Kubernetes configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file given.
        path: String,
        /// What was wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The configuration could not make a client.
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig` (its current context) when given, else the in-cluster
/// configuration.
///
/// # Errors
/// [`ClientError`] naming what could not be read.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig {
        None => kube::Config::incluster()?,
        Some(path) => {
            let failed = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(failed)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(failed)?
        }
    };
    Ok(kube::Client::try_from(config)?)
}
