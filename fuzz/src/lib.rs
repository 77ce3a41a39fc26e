//! What the fuzz targets share: a small mesh to decode against ([`mesh_store`], [`mesh`])
//! and a reader cutting one fuzz input into length-prefixed pieces ([`Pieces`]).

use std::sync::Arc;
use weft_node::state::StateStore;
use weft_proto::workload::Address;
use weft_upstream::testing::{member, pod, service, svc_address, wl_address};

/// The resources of a small mesh: namespace `shop` with services `web` (two pods) and
/// `api` (one pod, and an IPv6 VIP), so lookups by name, VIP and pod address all hit.
#[must_use]
pub fn mesh() -> Vec<(String, Address)> {
    let web = "shop/web.shop.svc.cluster.local";
    let api = "shop/api.shop.svc.cluster.local";
    vec![
        svc_address(service("shop", "web", "10.96.0.10", &[(80, 8080)])),
        svc_address(service("shop", "api", "fd00::10", &[(9090, 9090)])),
        wl_address(member(
            pod("shop", "web-1", "10.0.0.11"),
            web,
            &[(80, 8080)],
        )),
        wl_address(member(
            pod("shop", "web-2", "10.0.0.12"),
            web,
            &[(80, 8080)],
        )),
        wl_address(member(
            pod("shop", "api-1", "fd00::11"),
            api,
            &[(9090, 9090)],
        )),
    ]
}

/// A node proxy's state store holding [`mesh`].
///
/// # Panics
/// When the mesh does not validate (a bug of this crate).
#[must_use]
pub fn mesh_store() -> StateStore {
    let store = StateStore::new();
    let outcome = store.update_addresses(mesh(), &[]);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    store
}

/// Cuts bytes into pieces, each a one-byte tag, then a two-byte big-endian length and that
/// many bytes (fewer at the end of the input), so a fuzzer can grow several inputs in one.
#[derive(Debug)]
pub struct Pieces<'a> {
    rest: &'a [u8],
}

impl<'a> Pieces<'a> {
    /// The pieces of `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (piece, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((tag, piece))
    }
}

/// Shared handle to [`mesh_store`] for targets that only read it.
#[must_use]
pub fn shared_mesh_store() -> Arc<StateStore> {
    Arc::new(mesh_store())
}
