//! Endpoint keys: a short, stable name for each endpoint of a service that does not show
//! its address, computed once per endpoint set so a lookup by key is one map probe.
//!
//! The caller supplies the derivation ([`KeyFn`]: the gateway's session persistence uses
//! `weft_l7::session::endpoint_key`, a digest of the service key and the workload uid); a
//! service computes its endpoints' keys with the first derivation it is asked with, so
//! every caller passes the same one.

use std::collections::HashMap;

use crate::mesh::Endpoint;

/// An endpoint's key.
pub type EndpointKey = [u8; 8];

/// How a key is derived from the service key (`<namespace>/<hostname>`) and the uid.
pub type KeyFn = fn(service: &str, uid: &str) -> EndpointKey;

/// The keys of one endpoint list, in its order, and the index of each key.
#[derive(Debug, Default)]
pub(crate) struct EndpointKeys {
    keys: Vec<EndpointKey>,
    index: HashMap<EndpointKey, usize>,
}

impl EndpointKeys {
    pub(crate) fn of(service: &str, endpoints: &[Endpoint], derive: KeyFn) -> Self {
        let keys: Vec<EndpointKey> = (endpoints.iter())
            .map(|e| derive(service, e.workload.uid()))
            .collect();
        let index = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        Self { keys, index }
    }

    /// Position of the endpoint with `key`.
    pub(crate) fn position(&self, key: &EndpointKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Key of the endpoint at `position`.
    pub(crate) fn key(&self, position: usize) -> Option<EndpointKey> {
        self.keys.get(position).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::EndpointKey;
    use crate::Directory;
    use crate::testing::{Index, member, pod, service, svc_address, wl_address};

    /// A derivation for the test: the lengths and first bytes of service and uid.
    fn derive(service: &str, uid: &str) -> EndpointKey {
        let mut key = [0; 8];
        key[..4].copy_from_slice(&(service.len() as u32).to_be_bytes());
        key[4..].copy_from_slice(&uid.as_bytes()[uid.len() - 4..]);
        key
    }

    #[test]
    fn each_endpoint_is_found_by_its_key_and_only_by_it() {
        let key = "shop/web.shop.svc.cluster.local";
        let index = Index::new([
            svc_address(service("shop", "web", "10.96.0.10", &[(80, 8080)])),
            wl_address(member(pod("shop", "a", "10.0.0.1"), key, &[])),
            wl_address(member(pod("shop", "b", "10.0.0.2"), key, &[])),
        ]);
        let web = index.service_by_key(key).expect("the service");
        for endpoint in web.endpoints() {
            let workload = &endpoint.workload;
            let own = web.endpoint_key(workload, derive);
            assert_eq!(own, derive(key, workload.uid()));
            let found = web.endpoint_by_key(&own, derive).expect("found by its key");
            assert_eq!(found.workload.uid(), workload.uid());
        }
        let [a, b] = [0, 1].map(|i| web.endpoint_key(&web.endpoints()[i].workload, derive));
        assert_ne!(a, b);
        let other = derive("shop/db", web.endpoints()[0].workload.uid());
        assert!(
            web.endpoint_by_key(&other, derive).is_none(),
            "another service's key"
        );
    }
}
