//! Scale, cheap variant (the full 10k-pod figures come from `bench/control-plane.sh`): a
//! generated mesh of 1,000 pods and 100 services in YAML files, the real control-plane
//! process, and 10 spec clients on their own TLS connections. Asserts correctness only:
//! every client ends up with exactly the translated resource set, and every policy edit
//! reaches every client as exactly that one resource. No timing assertions.

mod process_support;

use process_support::control::{NODE_A_TOKEN, start_control};
use process_support::mesh::{
    EDITED_FILE, EDITED_POLICY, MeshSize, expected_names, policy_yaml, translate_dir, write_mesh,
};
use process_support::swarm;
use std::sync::Arc;
use std::time::Duration;
use weft_proto::AUTHORIZATION_TYPE_URL;

const CLIENTS: usize = 10;
const EDITS: usize = 5;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_the_whole_mesh_and_every_edit_as_one_resource() {
    let size = MeshSize::SMALL;
    let control = start_control(|dir| write_mesh(dir, &size).expect("write mesh")).await;
    let expected = expected_names(&translate_dir(&control.config_dir()));
    assert_eq!(expected.addresses.len(), size.pods() + size.services());
    assert!(expected.authorizations.contains(EDITED_POLICY));

    let channels = swarm::connect_all(control.addrs.secure, &control.root_pem(), CLIENTS)
        .await
        .expect("TLS connections");
    let mut clients = swarm::start(channels, NODE_A_TOKEN, &Arc::new(expected));
    assert_eq!(clients.wait_synced(WAIT).await.len(), CLIENTS);

    for revision in 1..=EDITS {
        let policy = policy_yaml("ns-0", revision);
        std::fs::write(control.config_dir().join(EDITED_FILE), policy).expect("edit");
        let arrival = clients.wait_update(EDITED_POLICY, WAIT).await;
        assert_eq!(arrival.arrivals.len(), CLIENTS, "edit {revision}");
        assert_eq!(
            arrival.updates.len(),
            CLIENTS,
            "one response per client: {arrival:?}"
        );
        for (type_url, names, removed) in &arrival.updates {
            assert_eq!(type_url, AUTHORIZATION_TYPE_URL);
            assert_eq!(names, &[EDITED_POLICY]);
            assert!(removed.is_empty(), "{removed:?}");
        }
    }
    let syncz = control.admin_json("/debug/syncz").await;
    assert_eq!(syncz.as_array().map(Vec::len), Some(CLIENTS));
}
