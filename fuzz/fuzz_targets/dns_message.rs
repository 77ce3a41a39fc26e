//! A DNS query from a pod, answered by the node proxy's resolver (mesh names known, the
//! rest forwarded or refused), and the SERVFAIL it sends when the upstream is silent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};
use weft_fuzz::shared_mesh_store;
use weft_node::dns::DnsResolver;

static RESOLVERS: LazyLock<[DnsResolver; 2]> = LazyLock::new(|| {
    let store = shared_mesh_store();
    [true, false].map(|forward| DnsResolver::new(Arc::clone(&store), "cluster.local", forward))
});

fuzz_target!(|query: &[u8]| {
    for resolver in RESOLVERS.iter() {
        let _ = resolver.answer(query, "shop");
    }
    let _ = DnsResolver::server_failure(query);
});
