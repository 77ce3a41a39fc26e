//! Local configuration for `weft node --local-config FILE`: a YAML (or JSON) document with
//! three optional lists, each item in the proto JSON mapping of its message:
//!
//! ```yaml
//! workloads:   # istio.workload.Workload
//!   - uid: Kubernetes//Pod/shop/web-1
//!     name: web-1
//!     namespace: shop
//!     addresses: ["CgABAg=="]        # bytes are base64 (10.0.1.2)
//!     tunnelProtocol: HBONE
//!     services: { "shop/web.shop.svc.cluster.local": { ports: [{ servicePort: 80, targetPort: 8080 }] } }
//! services:    # istio.workload.Service
//!   - { name: web, namespace: shop, hostname: web.shop.svc.cluster.local,
//!       addresses: [{ address: "CgBgAQ==" }], ports: [{ servicePort: 80, targetPort: 8080 }] }
//! policies:    # istio.security.Authorization
//!   - { name: allow-nothing, namespace: shop, scope: NAMESPACE, action: ALLOW }
//! ```
//!
//! The whole file is validated before anything is used: one bad resource rejects the file
//! (the caller keeps its previous state).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_proto::security::Authorization;
use weft_proto::workload::{Address, Service, Workload, address};

use super::index::Index;
use super::{AddressRecord, MeshState};
use crate::validation::{Ctx, Problem, ValidationError};
use weft_policy::CompiledPolicy;

/// A validated set of resources, ready to become a [`MeshState`].
#[derive(Debug, Default, Clone)]
pub struct LocalConfig {
    pub(super) addresses: BTreeMap<String, AddressRecord>,
    pub(super) policies: BTreeMap<String, Arc<CompiledPolicy>>,
}

/// Why a local configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    /// The file could not be read.
    #[error("cannot read local config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML/JSON of the expected shape (lists `workloads`, `services`,
    /// `policies`; nothing else).
    #[error(
        "local config {path} is not a document with lists workloads/services/policies: {source}"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser error (with line and column).
        source: weft_api::yaml::Error,
    },
    /// One list item does not follow the proto JSON mapping of its message.
    #[error("local config {path}: {list}[{index}]: {source}")]
    Proto {
        /// The file.
        path: PathBuf,
        /// `workloads`, `services` or `policies`.
        list: &'static str,
        /// Position in the list.
        index: usize,
        /// What is wrong (names the field).
        source: weft_proto::JsonError,
    },
    /// A resource parsed but is invalid (or duplicates another's name).
    #[error("local config {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which resource and field.
        source: ValidationError,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    workloads: Vec<serde_json::Value>,
    #[serde(default)]
    services: Vec<serde_json::Value>,
    #[serde(default)]
    policies: Vec<serde_json::Value>,
}

impl LocalConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// See [`LocalConfigError`].
    pub fn load(path: &Path) -> Result<Self, LocalConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LocalConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    ///
    /// # Errors
    /// See [`LocalConfigError`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, LocalConfigError> {
        let shape: FileShape =
            weft_api::yaml::from_str(text).map_err(|source| LocalConfigError::Syntax {
                path: path.to_owned(),
                source,
            })?;
        let workloads: Vec<Workload> = proto_list(
            path,
            "workloads",
            "istio.workload.Workload",
            &shape.workloads,
        )?;
        let services: Vec<Service> =
            proto_list(path, "services", "istio.workload.Service", &shape.services)?;
        let policies: Vec<Authorization> = proto_list(
            path,
            "policies",
            "istio.security.Authorization",
            &shape.policies,
        )?;
        let addresses = workloads
            .into_iter()
            .map(|w| Address {
                r#type: Some(address::Type::Workload(w)),
            })
            .chain(services.into_iter().map(|s| Address {
                r#type: Some(address::Type::Service(s)),
            }));
        Self::from_resources(addresses, policies).map_err(|source| LocalConfigError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Validates wire resources (e.g. the output of the control plane's translation).
    ///
    /// # Errors
    /// The first invalid resource, or a name used twice.
    pub fn from_resources(
        addresses: impl IntoIterator<Item = Address>,
        policies: impl IntoIterator<Item = Authorization>,
    ) -> Result<Self, ValidationError> {
        let mut config = Self::default();
        for address in addresses {
            let record = AddressRecord::validate(None, address)?;
            insert_unique(&mut config.addresses, record.name().to_owned(), record)?;
        }
        for policy in policies {
            let compiled = CompiledPolicy::compile(None, &policy)?;
            insert_unique(
                &mut config.policies,
                compiled.key().to_string(),
                Arc::new(compiled),
            )?;
        }
        Ok(config)
    }

    /// Builds a standalone snapshot (no store), e.g. for `weft x authz check`.
    #[must_use]
    pub fn to_state(&self) -> MeshState {
        let mut index = Index::default();
        index.replace(&self.addresses, &self.policies);
        index.publish(1)
    }
}

fn proto_list<M: prost::Message + Default>(
    path: &Path,
    list: &'static str,
    full_name: &str,
    items: &[serde_json::Value],
) -> Result<Vec<M>, LocalConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            weft_proto::from_json(full_name, item).map_err(|source| LocalConfigError::Proto {
                path: path.to_owned(),
                list,
                index,
                source,
            })
        })
        .collect()
}

fn insert_unique<T>(
    map: &mut BTreeMap<String, T>,
    name: String,
    value: T,
) -> Result<(), ValidationError> {
    if map.contains_key(&name) {
        let problem = Problem::Malformed("another resource already has this name".into());
        return Err(Ctx { resource: &name }.error("name", problem));
    }
    map.insert(name, value);
    Ok(())
}
