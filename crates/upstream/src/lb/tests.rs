//! Load balancing behaviour with deterministic RNG seeds.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use weft_proto::workload::{LoadBalancing, Locality, WorkloadStatus, load_balancing};

use super::*;
use crate::Directory;
use crate::testing::{Index, member, pod, service, svc_address, wl_address};

const KEY: &str = "shop/web.shop.svc.cluster.local";

/// (pod name, zone, healthy)
fn store_with(pods: &[(&str, &str, bool)], lb: Option<LoadBalancing>) -> Index {
    let mut svc = service("shop", "web", "10.96.0.10", &[(80, 8080)]);
    svc.load_balancing = lb;
    let mut resources = vec![svc_address(svc)];
    for (i, (name, zone, healthy)) in pods.iter().enumerate() {
        let mut w = member(pod("shop", name, &format!("10.0.1.{}", i + 1)), KEY, &[]);
        w.locality = Some(Locality {
            region: "eu".into(),
            zone: (*zone).into(),
            subzone: String::new(),
        });
        if !healthy {
            w.status = WorkloadStatus::Unhealthy.into();
        }
        resources.push(wl_address(w));
    }
    let mut client = pod("client", "curl-1", "10.0.9.9");
    client.locality = Some(Locality {
        region: "eu".into(),
        zone: "a".into(),
        subzone: String::new(),
    });
    resources.push(wl_address(client));
    Index::new(resources)
}

fn prefer(scopes: &[load_balancing::Scope], mode: load_balancing::Mode) -> Option<LoadBalancing> {
    Some(LoadBalancing {
        routing_preference: scopes.iter().map(|s| (*s).into()).collect(),
        mode: mode.into(),
        health_policy: 0,
    })
}

/// How often each pod is chosen over `rounds` picks with seed `seed`.
fn tally(store: &Index, rounds: usize, seed: u64) -> BTreeMap<String, usize> {
    let state = &store;
    let svc = state.service_by_key(KEY).unwrap();
    let client = state.workload_by_name("client", "curl-1").unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = BTreeMap::new();
    for _ in 0..rounds {
        let choice = choose_endpoint(svc, svc.port(80).unwrap(), Some(client), &mut rng).unwrap();
        assert_eq!(choice.target_port, 8080);
        *counts
            .entry(choice.endpoint.workload.proto().name.clone())
            .or_default() += 1;
    }
    counts
}

fn names(counts: &BTreeMap<String, usize>) -> Vec<&str> {
    counts.keys().map(String::as_str).collect()
}

#[test]
fn only_healthy_endpoints_are_chosen() {
    let store = store_with(
        &[
            ("web-1", "a", true),
            ("web-2", "a", false),
            ("web-3", "a", true),
        ],
        None,
    );
    assert_eq!(names(&tally(&store, 200, 1)), ["web-1", "web-3"]);
}

#[test]
fn allow_all_health_policy_uses_unhealthy_endpoints() {
    let lb = Some(LoadBalancing {
        health_policy: load_balancing::HealthPolicy::AllowAll.into(),
        ..LoadBalancing::default()
    });
    let store = store_with(&[("web-1", "a", false), ("web-2", "a", false)], lb);
    assert_eq!(names(&tally(&store, 100, 2)), ["web-1", "web-2"]);
}

#[test]
fn no_endpoints_and_no_healthy_endpoints_are_distinct_errors() {
    let mut rng = StdRng::seed_from_u64(3);
    let store = store_with(&[("web-1", "a", false)], None);
    let state = &store;
    let svc = state.service_by_key(KEY).unwrap();
    let err = choose_endpoint(svc, svc.port(80).unwrap(), None, &mut rng).unwrap_err();
    assert_eq!(
        err,
        LbError::NoHealthyEndpoints {
            service: KEY.into(),
            total: 1
        }
    );
    let empty = store_with(&[], None);
    let state = &empty;
    let svc = state.service_by_key(KEY).unwrap();
    let err = choose_endpoint(svc, svc.port(80).unwrap(), None, &mut rng).unwrap_err();
    assert_eq!(err.to_string(), format!("service {KEY} has no endpoints"));
}

#[test]
fn failover_prefers_the_closest_healthy_locality() {
    use load_balancing::{Mode, Scope};
    let lb = prefer(&[Scope::Region, Scope::Zone], Mode::Failover);
    let local_ok = store_with(
        &[
            ("web-1", "a", true),
            ("web-2", "b", true),
            ("web-3", "a", true),
        ],
        lb.clone(),
    );
    assert_eq!(names(&tally(&local_ok, 200, 4)), ["web-1", "web-3"]);
    let local_down = store_with(
        &[
            ("web-1", "a", false),
            ("web-2", "b", true),
            ("web-3", "b", true),
        ],
        lb,
    );
    assert_eq!(names(&tally(&local_down, 200, 5)), ["web-2", "web-3"]);
}

#[test]
fn unspecified_mode_with_preferences_fails_over() {
    use load_balancing::{Mode, Scope};
    let store = store_with(
        &[("web-1", "b", true), ("web-2", "a", true)],
        prefer(&[Scope::Zone], Mode::UnspecifiedMode),
    );
    assert_eq!(names(&tally(&store, 50, 6)), ["web-2"]);
}

#[test]
fn strict_mode_refuses_remote_endpoints() {
    use load_balancing::{Mode, Scope};
    let store = store_with(
        &[("web-1", "b", true), ("web-2", "a", false)],
        prefer(&[Scope::Region, Scope::Zone], Mode::Strict),
    );
    let state = &store;
    let svc = state.service_by_key(KEY).unwrap();
    let client = state.workload_by_name("client", "curl-1").unwrap();
    let err = choose_endpoint(
        svc,
        svc.port(80).unwrap(),
        Some(client),
        &mut StdRng::seed_from_u64(7),
    )
    .unwrap_err();
    assert_eq!(
        err,
        LbError::NoLocalEndpoints {
            service: KEY.into(),
            scopes: vec![Scope::Region, Scope::Zone]
        }
    );
    // An unknown source matches no locality at all.
    let err = choose_endpoint(
        svc,
        svc.port(80).unwrap(),
        None,
        &mut StdRng::seed_from_u64(7),
    )
    .unwrap_err();
    assert!(matches!(err, LbError::NoLocalEndpoints { .. }));
}

#[test]
fn power_of_two_choices_avoids_the_most_loaded_endpoint() {
    let store = store_with(
        &[
            ("web-1", "a", true),
            ("web-2", "a", true),
            ("web-3", "a", true),
        ],
        None,
    );
    let state = &store;
    let busy = state.workload_by_name("shop", "web-2").unwrap();
    let _guards: Vec<_> = (0..5).map(|_| busy.track_connection()).collect();
    let counts = tally(&store, 300, 8);
    // The busiest of three is never picked (it always loses its pair); the others share.
    assert_eq!(names(&counts), ["web-1", "web-3"]);
    assert!(counts.values().all(|&n| n > 100), "{counts:?}");
}

#[test]
fn equal_load_spreads_evenly_and_seeds_are_deterministic() {
    let store = store_with(
        &[
            ("web-1", "a", true),
            ("web-2", "a", true),
            ("web-3", "a", true),
        ],
        None,
    );
    let counts = tally(&store, 3000, 9);
    assert!(
        counts.values().all(|&n| (800..1200).contains(&n)),
        "{counts:?}"
    );
    assert_eq!(tally(&store, 50, 10), tally(&store, 50, 10));
}

#[test]
fn tracked_connections_steer_new_picks() {
    let store = store_with(&[("web-1", "a", true), ("web-2", "a", true)], None);
    let state = &store;
    let svc = state.service_by_key(KEY).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    // Holding each chosen connection open alternates between the two endpoints.
    let mut guards = Vec::new();
    let mut picks = Vec::new();
    for _ in 0..6 {
        let choice = choose_endpoint(svc, svc.port(80).unwrap(), None, &mut rng).unwrap();
        picks.push(choice.endpoint.workload.proto().name.clone());
        guards.push(choice.endpoint.workload.track_connection());
    }
    let web1 = picks.iter().filter(|p| *p == "web-1").count();
    assert_eq!(web1, 3, "{picks:?}");
}
