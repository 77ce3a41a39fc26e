//! Indexing, scoping and validation tests for the mesh state.

use std::net::IpAddr;

use weft_proto::security::{Action, Scope};
use weft_proto::workload::{Address, address};

use super::*;
use crate::validation::Problem;
use weft_policy::testing::{authz, deny, mtls, one, plaintext, rule};
use weft_policy::{OpenConnection, Verdict, recheck};
pub(crate) use weft_upstream::testing::{member, pod, service, svc_address, uid, wl_address};

const WEB_KEY: &str = "shop/web.shop.svc.cluster.local";

fn shop_store() -> StateStore {
    let store = StateStore::new();
    let outcome = store.update_addresses(
        [
            wl_address(member(
                pod("shop", "web-1", "10.0.1.1"),
                WEB_KEY,
                &[(80, 8080)],
            )),
            wl_address(member(
                pod("shop", "web-2", "10.0.1.2"),
                WEB_KEY,
                &[(80, 0)],
            )),
            wl_address(pod("ops", "admin-1", "10.0.2.1")),
            svc_address(service(
                "shop",
                "web",
                "10.96.0.10",
                &[(80, 9090), (443, 0)],
            )),
        ],
        &[],
    );
    assert_eq!(outcome.rejected, vec![]);
    store
}

#[test]
fn workloads_are_indexed_by_uid_address_and_name() {
    let state = shop_store().snapshot();
    let web1 = state.workload_by_uid(&uid("shop", "web-1")).unwrap();
    assert_eq!(web1.addresses(), &["10.0.1.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        web1.identity().to_string(),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    let by_ip = state
        .workload_by_addr("", "10.0.1.1".parse().unwrap())
        .unwrap();
    assert_eq!(by_ip.uid(), web1.uid());
    assert!(
        state
            .workload_by_addr("other-net", "10.0.1.1".parse().unwrap())
            .is_none()
    );
    assert_eq!(
        state.workload_by_name("ops", "admin-1").unwrap().uid(),
        uid("ops", "admin-1")
    );
    // An IPv4-mapped IPv6 address (dual-stack socket) finds the IPv4 workload.
    assert!(
        state
            .workload_by_addr("", "::ffff:10.0.1.2".parse().unwrap())
            .is_some()
    );
}

#[test]
fn services_are_indexed_by_vip_and_key_with_endpoints() {
    let state = shop_store().snapshot();
    let svc = state
        .service_by_vip("", "10.96.0.10".parse().unwrap())
        .unwrap();
    assert_eq!(svc.key(), WEB_KEY);
    assert!(std::ptr::eq(
        svc.as_ref(),
        state.service_by_key(WEB_KEY).unwrap().as_ref()
    ));
    let endpoints: Vec<_> = svc
        .endpoints()
        .iter()
        .map(|e| e.workload.uid().to_owned())
        .collect();
    assert_eq!(endpoints, [uid("shop", "web-1"), uid("shop", "web-2")]);
    let port80 = svc.port(80).unwrap();
    // web-1 maps 80 -> 8080 itself; web-2 leaves it to the service (80 -> 9090).
    assert_eq!(svc.endpoints()[0].target_port(port80), 8080);
    assert_eq!(svc.endpoints()[1].target_port(port80), 9090);
    // Port 443 has no target anywhere: same port.
    assert_eq!(svc.endpoints()[1].target_port(svc.port(443).unwrap()), 443);
}

#[test]
fn resolve_classifies_destinations() {
    let state = shop_store().snapshot();
    let resolve = |addr: &str| state.resolve("", addr.parse().unwrap());
    assert!(
        matches!(resolve("10.96.0.10:80"), Destination::Service { port, .. } if port.service_port == 80)
    );
    assert!(matches!(resolve("10.96.0.10:81"), Destination::Unknown));
    assert!(
        matches!(resolve("10.0.2.1:22"), Destination::Workload(w) if w.uid() == uid("ops", "admin-1"))
    );
    assert!(matches!(resolve("8.8.8.8:53"), Destination::Unknown));
}

#[test]
fn bad_resources_are_rejected_alone_and_keep_their_previous_version() {
    let store = shop_store();
    let mut short = pod("shop", "web-1", "10.0.1.1");
    short.addresses.push(vec![1, 2, 3]);
    let mut no_uid = pod("shop", "web-9", "10.0.1.9");
    no_uid.uid.clear();
    let bad_port = service("shop", "db", "10.96.0.11", &[(70_000, 0)]);
    let bad_key = member(pod("shop", "web-5", "10.0.1.5"), "no-slash", &[(80, 80)]);
    let mut bad_status = pod("shop", "web-6", "10.0.1.6");
    bad_status.status = 9;
    let outcome = store.update_addresses(
        [
            wl_address(short),
            (
                "Kubernetes//Pod/shop/web-9".into(),
                Address {
                    r#type: Some(address::Type::Workload(no_uid)),
                },
            ),
            svc_address(bad_port),
            wl_address(bad_key),
            wl_address(bad_status),
            ("nothing".into(), Address { r#type: None }),
            (
                "wrong-name".into(),
                wl_address(pod("shop", "web-7", "10.0.1.7")).1,
            ),
            wl_address(pod("shop", "web-3", "10.0.1.3")),
        ],
        &[],
    );
    let got: Vec<_> = outcome
        .rejected
        .iter()
        .map(|e| (e.resource.as_str(), e.field.as_str(), e.problem.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                uid("shop", "web-1").as_str(),
                "addresses[1]",
                Problem::AddressLength(3)
            ),
            ("Kubernetes//Pod/shop/web-9", "uid", Problem::Empty),
            (
                "shop/db.shop.svc.cluster.local",
                "ports[0].service_port",
                Problem::PortOutOfRange(70_000)
            ),
            (
                uid("shop", "web-5").as_str(),
                "services[\"no-slash\"]",
                Problem::Malformed("service key \"no-slash\" is not <namespace>/<hostname>".into())
            ),
            (
                uid("shop", "web-6").as_str(),
                "status",
                Problem::UnknownEnum(9)
            ),
            ("nothing", "type", Problem::Unset),
            (
                "wrong-name",
                "name",
                Problem::NameMismatch {
                    expected: uid("shop", "web-7")
                }
            ),
        ]
    );
    let state = store.snapshot();
    // The good resource of the same update is applied; the rejected web-1 keeps its old
    // (single-address) version.
    assert!(state.workload_by_uid(&uid("shop", "web-3")).is_some());
    assert_eq!(
        state
            .workload_by_uid(&uid("shop", "web-1"))
            .unwrap()
            .addresses()
            .len(),
        1
    );
    assert!(
        state
            .service_by_key("shop/db.shop.svc.cluster.local")
            .is_none()
    );
}

#[test]
fn workloads_whose_identity_is_not_a_spiffe_id_are_rejected_naming_the_field() {
    let store = shop_store();
    let mut bad_td = pod("shop", "web-6", "10.0.1.6");
    bad_td.trust_domain = "Upper.Case".into();
    let mut bad_sa = pod("shop", "web-7", "10.0.1.7");
    bad_sa.service_account = "a b".into();
    let mut slash_sa = pod("shop", "web-8", "10.0.1.8");
    slash_sa.service_account = "x/sa/y".into();
    let outcome = store.update_addresses(
        [wl_address(bad_td), wl_address(bad_sa), wl_address(slash_sa)],
        &[],
    );
    let got: Vec<_> = outcome
        .rejected
        .iter()
        .map(|e| (e.resource.clone(), e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (uid("shop", "web-6"), "trust_domain"),
            (uid("shop", "web-7"), "service_account"),
            (
                uid("shop", "web-8"),
                "namespace/service_account/trust_domain"
            ),
        ]
    );
    assert!(
        outcome.rejected[1].to_string().contains("may only contain"),
        "{}",
        outcome.rejected[1]
    );
    assert!(
        store
            .snapshot()
            .workload_by_uid(&uid("shop", "web-7"))
            .is_none()
    );
}

#[test]
fn removal_drops_workload_from_every_index() {
    let store = shop_store();
    let _ = store.update_addresses([], &[uid("shop", "web-2")]);
    let state = store.snapshot();
    assert!(state.workload_by_uid(&uid("shop", "web-2")).is_none());
    assert!(
        state
            .workload_by_addr("", "10.0.1.2".parse().unwrap())
            .is_none()
    );
    assert!(state.workload_by_name("shop", "web-2").is_none());
    assert_eq!(state.service_by_key(WEB_KEY).unwrap().endpoints().len(), 1);
}

#[test]
fn connection_counts_survive_rebuilds() {
    let store = shop_store();
    let guard = store
        .snapshot()
        .workload_by_uid(&uid("shop", "web-1"))
        .unwrap()
        .track_connection();
    let _ = store.update_addresses([wl_address(pod("shop", "web-4", "10.0.1.4"))], &[]);
    let web1 = store
        .snapshot()
        .workload_by_uid(&uid("shop", "web-1"))
        .unwrap()
        .clone();
    assert_eq!(web1.active_connections(), 1);
    drop(guard);
    assert_eq!(web1.active_connections(), 0);
}

#[test]
fn subscribers_see_each_generation() {
    let store = shop_store();
    let mut rx = store.subscribe();
    let before = *rx.borrow_and_update();
    let outcome = store.update_authorizations([], &[]);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), outcome.generation);
    assert_eq!(outcome.generation, before + 1);
    assert_eq!(store.snapshot().generation(), outcome.generation);
}

fn keyed(p: weft_proto::security::Authorization) -> (String, weft_proto::security::Authorization) {
    (format!("{}/{}", p.namespace, p.name), p)
}

#[test]
fn policy_scope_global_namespace_and_selector() {
    let store = shop_store();
    let mut web1 = member(pod("shop", "web-1", "10.0.1.1"), WEB_KEY, &[(80, 8080)]);
    web1.authorization_policies = vec!["shop/web-only".into(), "shop/not-yet-received".into()];
    let _ = store.update_addresses([wl_address(web1)], &[]);
    let outcome = store.update_authorizations(
        [
            keyed(authz(
                "istio-system/mesh",
                Scope::Global,
                Action::Deny,
                vec![one(weft_proto::security::Match {
                    destination_ports: vec![23],
                    ..Default::default()
                })],
            )),
            keyed(authz(
                "shop/ns-wide",
                Scope::Namespace,
                Action::Allow,
                vec![rule(vec![])],
            )),
            keyed(authz(
                "shop/web-only",
                Scope::WorkloadSelector,
                Action::Deny,
                vec![rule(vec![])],
            )),
        ],
        &[],
    );
    assert_eq!(outcome.rejected, vec![]);
    let state = store.snapshot();
    let names = |ns: &str, name: &str| {
        let w = state.workload_by_name(ns, name).unwrap();
        state
            .policies_of(w)
            .policies()
            .map(|p| p.key().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("shop", "web-1"),
        ["istio-system/mesh", "shop/web-only", "shop/ns-wide"]
    );
    assert_eq!(
        names("shop", "web-2"),
        ["istio-system/mesh", "shop/ns-wide"]
    );
    assert_eq!(names("ops", "admin-1"), ["istio-system/mesh"]);
    let web1 = state.workload_by_name("shop", "web-1").unwrap();
    assert_eq!(state.policies_of(web1).missing(), ["shop/not-yet-received"]);
    // Fail closed: the missing policy could be a DENY.
    let decision = state.policies_of(web1).evaluate(&mtls(
        "cluster.local/ns/shop/sa/web",
        "10.0.2.1",
        "10.0.1.1:8080",
    ));
    assert!(!decision.is_allowed(), "{decision}");
    assert_eq!(
        decision.outcome.policy.as_deref(),
        Some("shop/not-yet-received")
    );
    assert_eq!(
        decision.outcome.reason,
        weft_policy::Reason::PolicyNotReceived
    );
}

#[test]
fn recheck_reports_connections_a_new_policy_denies() {
    let store = shop_store();
    let from_admin = mtls("cluster.local/ns/ops/sa/admin", "10.0.2.1", "10.0.1.1:8080");
    let from_plain = plaintext("10.0.2.1", "10.0.1.1:8080");
    let to_web2 = plaintext("10.0.2.1", "10.0.1.2:8080");
    let web1 = uid("shop", "web-1");
    let web2 = uid("shop", "web-2");
    let open = [
        OpenConnection {
            id: 1,
            destination_workload: &web1,
            facts: &from_admin,
        },
        OpenConnection {
            id: 2,
            destination_workload: &web1,
            facts: &from_plain,
        },
        OpenConnection {
            id: 3,
            destination_workload: &web2,
            facts: &to_web2,
        },
        OpenConnection {
            id: 4,
            destination_workload: "Kubernetes//Pod/gone/x",
            facts: &from_plain,
        },
    ];
    assert!(recheck(&store.snapshot(), open).is_empty());
    let mut strict = deny(
        "shop/strict",
        vec![one(weft_proto::security::Match {
            not_principals: vec![weft_policy::testing::presence()],
            ..Default::default()
        })],
    );
    strict.scope = Scope::WorkloadSelector.into();
    let mut web1_pod = member(pod("shop", "web-1", "10.0.1.1"), WEB_KEY, &[(80, 8080)]);
    web1_pod.authorization_policies = vec!["shop/strict".into()];
    let _ = store.update_addresses([wl_address(web1_pod)], &[]);
    let _ = store.update_authorizations([keyed(strict)], &[]);
    let denied = recheck(&store.snapshot(), open);
    let ids: Vec<_> = denied
        .iter()
        .map(|(id, d)| (*id, d.outcome.verdict, d.outcome.policy.as_deref()))
        .collect();
    assert_eq!(ids, [(2, Verdict::Deny, Some("shop/strict"))]);
}

#[test]
fn local_config_yaml_builds_a_state() {
    let yaml = r#"
workloads:
  - uid: Kubernetes//Pod/shop/web-1
    name: web-1
    namespace: shop
    addresses: ["CgABAQ=="]
    tunnelProtocol: HBONE
    serviceAccount: web
    services:
      shop/web.shop.svc.cluster.local: { ports: [{ servicePort: 80, targetPort: 8080 }] }
services:
  - name: web
    namespace: shop
    hostname: web.shop.svc.cluster.local
    addresses: [{ address: "CmAACg==" }]
    ports: [{ servicePort: 80, targetPort: 8080 }]
policies:
  - { name: allow-nothing, namespace: shop, scope: NAMESPACE, action: ALLOW }
"#;
    let config = LocalConfig::parse(std::path::Path::new("mesh.yaml"), yaml).unwrap();
    let store = StateStore::new();
    let _ = store.replace_all(config);
    let state = store.snapshot();
    let web = state
        .workload_by_addr("", "10.0.1.1".parse().unwrap())
        .unwrap();
    assert_eq!(web.identity().principal(), "cluster.local/ns/shop/sa/web");
    let svc = state
        .service_by_vip("", "10.96.0.10".parse().unwrap())
        .unwrap();
    assert_eq!(svc.endpoints().len(), 1);
    let decision = state
        .policies_of(web)
        .evaluate(&plaintext("10.0.2.1", "10.0.1.1:8080"));
    assert_eq!(decision.outcome.verdict, Verdict::Deny);
}

#[test]
fn local_config_json_is_accepted_too() {
    let json = r#"{"policies": [{"name": "p", "namespace": "shop", "action": "DENY"}]}"#;
    let state = LocalConfig::parse(std::path::Path::new("mesh.json"), json)
        .unwrap()
        .to_state();
    assert_eq!(state.policy("shop/p").unwrap().action(), Action::Deny);
}

#[test]
fn local_config_errors_say_where() {
    let parse = |text: &str| {
        LocalConfig::parse(std::path::Path::new("mesh.yaml"), text)
            .unwrap_err()
            .to_string()
    };
    let unknown_list = parse("gateways: []");
    assert!(
        unknown_list.contains("mesh.yaml") && unknown_list.contains("gateways"),
        "{unknown_list}"
    );
    let typo = parse("workloads: [{ uid: a, nmae: x }]");
    assert!(
        typo.contains("workloads[0]") && typo.contains("nmae"),
        "{typo}"
    );
    let invalid = parse("workloads: [{ uid: a, name: x, namespace: y, addresses: [\"AQI=\"] }]");
    assert!(
        invalid.contains("addresses[0]") && invalid.contains("got 2"),
        "{invalid}"
    );
    let duplicate = parse("policies: [{ name: p, namespace: s }, { name: p, namespace: s }]");
    assert!(
        duplicate.contains("\"s/p\"") && duplicate.contains("already has this name"),
        "{duplicate}"
    );
    let missing =
        LocalConfig::load(std::path::Path::new("/nonexistent/weft/mesh.yaml")).unwrap_err();
    assert!(
        matches!(missing, LocalConfigError::Read { .. }),
        "{missing}"
    );
}

#[test]
fn names_are_built_on_first_use_shared_and_follow_a_new_record() {
    use weft_proto::workload::Workload;
    use weft_upstream::testing::{pod, uid, wl_address};

    let store = StateStore::new();
    let added = store.update_addresses([wl_address(pod("shop", "web-1", "10.0.1.1"))], &[]);
    assert_eq!(added.rejected, vec![]);
    let state = store.snapshot();
    let web = state.workload_by_uid(&uid("shop", "web-1")).unwrap();
    let first = web.names();
    assert!(Arc::ptr_eq(&first, &web.names()), "one Arc per record");
    assert_eq!(*first, WorkloadNames::of(web));
    // An unrelated delta keeps the workload, and so its names.
    let other = store.update_addresses([wl_address(pod("shop", "db-1", "10.0.1.2"))], &[]);
    assert_eq!(other.rejected, vec![]);
    let state = store.snapshot();
    let web = state.workload_by_uid(&uid("shop", "web-1")).unwrap();
    assert!(Arc::ptr_eq(&first, &web.names()));

    let moved = Workload {
        canonical_revision: "v2".into(),
        ..pod("shop", "web-1", "10.0.1.1")
    };
    let changed = store.update_addresses([wl_address(moved)], &[]);
    assert_eq!(changed.rejected, vec![]);
    let state = store.snapshot();
    let web = state.workload_by_uid(&uid("shop", "web-1")).unwrap();
    assert!(web.names().baggage.ends_with("service.version=v2"));
}
