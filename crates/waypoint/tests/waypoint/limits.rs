//! The waypoint's HBONE listener within its inbound limits (`weft waypoint run
//! --hbone-max-tunnels-per-identity` and friends): a caller identity over its tunnel limit
//! is answered 503 and counted on the metrics page, while its open tunnels keep working
//! and another identity still gets through.

use weft_hbone::LimitConfig;
use weft_waypoint::{OutlierConfig, WaypointOptions};

use crate::harness::*;

/// The refusal counter's line for tunnels refused by the identity limit.
const REFUSED_TUNNELS: &str =
    "weft_hbone_inbound_refused_total{kind=\"tunnel\",limit=\"identity\"}";

fn limited_to_tunnels_per_identity(tunnels: usize) -> WaypointOptions {
    WaypointOptions {
        inbound_limits: LimitConfig {
            tunnels_per_identity: tunnels,
            ..LimitConfig::default()
        },
        ..options(OutlierConfig::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_over_one_identitys_limit_get_503_while_another_identity_gets_through() {
    let mesh = Mesh::start_with_options(
        vec![backend("echo-a", "echo")],
        waypoint_resource(&[("echo", vec![])], vec![]),
        limited_to_tunnels_per_identity(2),
        None,
    )
    .await;
    let vip = mesh.net.vip(1);
    let client = mesh.client().await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut h1 = client.h1(vip).await;
        assert_eq!(send(&mut h1, get("/held", &[])).await.status, 200);
        held.push(h1);
    }

    let refused = client
        .tunnel(vip)
        .await
        .expect_err("a third tunnel of the same identity is refused");
    assert_eq!(refused.status(), Some(503), "{refused}");

    let other = mesh.client_in("other").await;
    let mut h1 = other.h1(vip).await;
    let answer = send(&mut h1, get("/other", &[])).await;
    assert_eq!(
        answer.status, 200,
        "another identity gets through: {answer:?}"
    );

    for h1 in &mut held {
        let answer = send(h1, get("/still", &[])).await;
        assert_eq!(answer.status, 200, "open tunnels keep working: {answer:?}");
    }
    let metrics = mesh.metrics().await;
    assert!(
        metrics.contains(&format!("{REFUSED_TUNNELS} 1\n")),
        "{metrics}"
    );

    // A closed tunnel gives its slot back.
    drop(held.pop());
    eventually("a slot freed by a closed tunnel is taken again", || async {
        client.tunnel(vip).await.is_ok()
    })
    .await;
}
