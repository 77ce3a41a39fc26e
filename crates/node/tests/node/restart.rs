//! A node proxy in explicit mode replaced through its hand-off socket: the listeners it
//! binds itself for its workloads travel to the successor like the node-level ones.

use std::time::Duration;

use weft_node::handoff::{Handoff, offer_until_replaced};
use weft_node::process::{StateSource, run_with_handoff};
use weft_serve::handoff::{Takeover, offerer_pid};

use crate::harness::*;

/// The workload listeners (`<workload ip>:15008`) were bound anew by the successor, which
/// fails while the old proxy holds them and was retried only at the next configuration
/// change: once the old proxy had drained, tunnels to node-b's workloads were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_node_proxy_hands_its_workload_listeners_to_the_successor() {
    let mut mesh = TwoNodes::start(&[]).await;
    let (code, mut before) = mesh.socks_vip().await;
    assert_eq!(code, 0);
    assert_eq!(ping(&mut before, b"before").await, b"before");

    let path = mesh.dir.path().join("b.handoff");
    let offering = {
        let (path, handoff) = (path.clone(), mesh.b.handoff.clone());
        tokio::spawn(async move { offer_until_replaced(&path, &handoff).await })
    };
    eventually("node-b offers its listeners", || async {
        offerer_pid(&path).ok().flatten().is_some()
    })
    .await;
    let takeover = Takeover::connect(&path).await.unwrap().expect("an offer");
    let names = takeover.names();
    assert!(
        names.iter().any(|name| name.starts_with("workload:")),
        "the workload listeners are offered: {names:?}"
    );
    let config = node_config(
        &mesh.ca,
        "node-b",
        mesh.net.node(3),
        StateSource::LocalFile(mesh.config.clone()),
    );
    let new_b = run_with_handoff(config, Handoff::taking_over(takeover))
        .await
        .expect("the successor starts");
    new_b.handoff.complete().await.expect("hand-off confirmed");
    offering.await.unwrap().expect("a successor");
    let mut old_b = std::mem::replace(&mut mesh.b, new_b);
    old_b.step_down();
    let draining = tokio::spawn(old_b.shutdown(Duration::from_secs(30)));

    // The tunnel opened before keeps flowing through the old proxy until it ends...
    assert_eq!(ping(&mut before, b"during").await, b"during");
    drop(before);
    draining.await.unwrap();
    // ...and new tunnels reach the workload through the successor, with no change of
    // configuration in between; the successor offers the listeners for the next restart.
    let offered = mesh.b.handoff.offered().names();
    assert!(
        offered.iter().any(|name| name.starts_with("workload:")),
        "{offered:?}"
    );
    for i in 0..3u8 {
        let (code, mut after) = mesh.socks_vip().await;
        assert_eq!(code, 0, "tunnel {i} after the restart");
        assert_eq!(ping(&mut after, &[i]).await, [i]);
    }
}
