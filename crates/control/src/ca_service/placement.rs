//! Which identities a caller may obtain: a workload credential only its own identity; a node
//! credential (asking with `ImpersonatedIdentity`) only identities of workloads that the
//! configuration places on that node.

use crate::callers::Caller;
use std::collections::{HashMap, HashSet};
use weft_identity::SpiffeId;

/// The control plane's view of which workload identities run on which node. The config store
/// implements this; tests use [`StaticNodeIdentities`].
pub trait NodeIdentities: Send + Sync + 'static {
    /// Identities of the workloads the configuration places on `node`.
    fn identities_on_node(&self, node: &str) -> Vec<SpiffeId>;
}

/// A fixed node -> identities map.
#[derive(Debug, Clone, Default)]
pub struct StaticNodeIdentities {
    nodes: HashMap<String, HashSet<SpiffeId>>,
}

impl StaticNodeIdentities {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `identity` on `node`.
    #[must_use]
    pub fn with(mut self, node: &str, identity: SpiffeId) -> Self {
        self.nodes
            .entry(node.to_owned())
            .or_default()
            .insert(identity);
        self
    }
}

impl NodeIdentities for StaticNodeIdentities {
    fn identities_on_node(&self, node: &str) -> Vec<SpiffeId> {
        self.nodes
            .get(node)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Decides the identity `caller` gets, given the optional `ImpersonatedIdentity`.
pub(crate) fn identity_for(
    caller: &Caller,
    impersonated: Option<SpiffeId>,
    nodes: &dyn NodeIdentities,
) -> Result<SpiffeId, String> {
    match (caller, impersonated) {
        (Caller::Workload(own), None) => Ok(own.clone()),
        (Caller::Workload(own), Some(asked)) if asked == *own => Ok(asked),
        (Caller::Workload(own), Some(asked)) => Err(format!(
            "a workload credential for {own} may not obtain {asked}"
        )),
        (Caller::Node(node), None) => Err(format!(
            "node credential {node} must name the workload in ImpersonatedIdentity"
        )),
        (Caller::Node(node), Some(asked)) => {
            if nodes.identities_on_node(node).contains(&asked) {
                Ok(asked)
            } else {
                Err(format!(
                    "no workload with identity {asked} is placed on node {node}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("td", "ns", sa).expect("id")
    }

    #[test]
    fn decides_per_caller_kind() {
        let nodes = StaticNodeIdentities::new().with("n1", id("a"));
        let node = Caller::Node("n1".into());
        let workload = Caller::Workload(id("w"));
        assert_eq!(identity_for(&node, Some(id("a")), &nodes), Ok(id("a")));
        assert!(identity_for(&node, Some(id("b")), &nodes).is_err());
        assert!(identity_for(&node, None, &nodes).is_err());
        assert!(identity_for(&Caller::Node("n2".into()), Some(id("a")), &nodes).is_err());
        assert_eq!(identity_for(&workload, None, &nodes), Ok(id("w")));
        assert_eq!(identity_for(&workload, Some(id("w")), &nodes), Ok(id("w")));
        assert!(identity_for(&workload, Some(id("a")), &nodes).is_err());
    }
}
