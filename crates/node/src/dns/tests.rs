//! Name resolution table: which names the DNS proxy answers, with what, and what it does
//! with the rest.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Answer, DnsResolver};
use crate::state::{LocalConfig, StateStore};

const MESH: &str = r#"
services:
  - name: web
    namespace: shop
    hostname: web.shop.svc.cluster.local
    addresses: [{ address: "CmAAAQ==" }, { address: "/QAAAAAAAAAAAAAAAAAACg==" }]
    ports: [{ servicePort: 80, targetPort: 8080 }]
  - name: api
    namespace: shop
    hostname: api.example.com
    addresses: [{ address: "8PAAAQ==" }]
    ports: [{ servicePort: 443, targetPort: 443 }]
  - name: db
    namespace: shop
    hostname: db.shop.svc.cluster.local
    ports: [{ servicePort: 5432, targetPort: 5432 }]
  - name: partner
    namespace: shop
    hostname: partner.example.com
    ports: [{ servicePort: 443, targetPort: 443 }]
workloads:
  - uid: Kubernetes//Pod/shop/db-0
    name: db-0
    namespace: shop
    addresses: ["CgABBQ=="]
    services:
      shop/db.shop.svc.cluster.local: { ports: [{ servicePort: 5432, targetPort: 5432 }] }
  - uid: Kubernetes//Pod/shop/db-1
    name: db-1
    namespace: shop
    addresses: ["CgABBg=="]
    services:
      shop/db.shop.svc.cluster.local: { ports: [{ servicePort: 5432, targetPort: 5432 }] }
  - uid: Kubernetes//Pod/shop/db-2
    name: db-2
    namespace: shop
    addresses: ["CgABBw=="]
    status: UNHEALTHY
    services:
      shop/db.shop.svc.cluster.local: { ports: [{ servicePort: 5432, targetPort: 5432 }] }
  - uid: Kubernetes/networking.istio.io/ServiceEntry/shop/partner/partner.example.com
    name: partner
    namespace: shop
    hostname: partner.example.com
    services:
      shop/partner.example.com: { ports: [{ servicePort: 443, targetPort: 443 }] }
"#;

fn resolver(forward: bool) -> DnsResolver {
    let store = Arc::new(StateStore::new());
    let config = LocalConfig::parse(Path::new("dns-test.yaml"), MESH).expect("test mesh parses");
    store.replace_all(config);
    DnsResolver::new(store, "cluster.local", forward)
}

fn query(name: &str, kind: RecordType) -> Vec<u8> {
    let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    message.to_vec().unwrap()
}

fn ask(resolver: &DnsResolver, name: &str, kind: RecordType, ns: &str) -> Message {
    match resolver.answer(&query(name, kind), ns).unwrap() {
        Answer::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
        Answer::Forward => panic!("{name} was forwarded"),
    }
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn service_names_resolve_to_vips_from_any_search_form() {
    let dns = resolver(false);
    let table = [
        (
            "web.shop.svc.cluster.local.",
            RecordType::A,
            "other",
            ips(&["10.96.0.1"]),
        ),
        (
            "WEB.Shop.svc.cluster.local",
            RecordType::A,
            "other",
            ips(&["10.96.0.1"]),
        ),
        ("web.shop", RecordType::A, "other", ips(&["10.96.0.1"])),
        ("web", RecordType::A, "shop", ips(&["10.96.0.1"])),
        ("web", RecordType::AAAA, "shop", ips(&["fd00::a"])),
        (
            "api.example.com",
            RecordType::A,
            "elsewhere",
            ips(&["240.240.0.1"]),
        ),
    ];
    for (name, kind, ns, want) in table {
        let answer = ask(&dns, name, kind, ns);
        assert_eq!(answer.id, 4242, "{name}: id echoed");
        assert_eq!(answer.message_type, MessageType::Response);
        assert_eq!(answer.response_code, ResponseCode::NoError, "{name}");
        assert!(
            answer.authoritative,
            "{name}: mesh answers are authoritative"
        );
        assert_eq!(
            addresses(&answer),
            want,
            "{name} {kind} from namespace {ns}"
        );
        assert_eq!(answer.queries.len(), 1, "{name}: question echoed");
    }
}

#[test]
fn known_name_without_that_family_is_nodata() {
    let answer = ask(
        &resolver(false),
        "api.example.com",
        RecordType::AAAA,
        "shop",
    );
    assert_eq!(answer.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
}

#[test]
fn short_name_is_relative_to_the_asking_pods_namespace_only() {
    let answer = ask(&resolver(false), "web", RecordType::A, "other");
    assert_eq!(answer.response_code, ResponseCode::Refused);
}

#[test]
fn unknown_names_fail_fast_without_upstream() {
    let dns = resolver(false);
    let cluster = ask(&dns, "nope.shop.svc.cluster.local", RecordType::A, "shop");
    assert_eq!(cluster.response_code, ResponseCode::NXDomain);
    let outside = ask(&dns, "example.org", RecordType::A, "shop");
    assert_eq!(outside.response_code, ResponseCode::Refused);
    assert!(!outside.recursion_available);
}

#[test]
fn unknown_names_are_forwarded_when_an_upstream_exists() {
    let dns = resolver(true);
    let forwarded = dns
        .answer(&query("example.org", RecordType::A), "shop")
        .unwrap();
    assert_eq!(forwarded, Answer::Forward);
    // Mesh names are still answered locally.
    assert_eq!(
        addresses(&ask(&dns, "web.shop", RecordType::A, "x")),
        ips(&["10.96.0.1"])
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let dns = resolver(false);
    assert!(dns.answer(&[0x12, 0x34, 0x01], "shop").is_err());
    assert!(dns.answer(&[], "shop").is_err());
}

#[test]
fn state_changes_are_seen_by_the_next_query() {
    let dns = resolver(false);
    assert_eq!(
        addresses(&ask(&dns, "web.shop", RecordType::A, "x")).len(),
        1
    );
    let moved = MESH.replace("CmAAAQ==", "CmAAAg==");
    let config = LocalConfig::parse(Path::new("dns-test.yaml"), &moved).unwrap();
    dns.store.replace_all(config);
    assert_eq!(
        addresses(&ask(&dns, "web.shop", RecordType::A, "x")),
        ips(&["10.96.0.2"])
    );
}

/// RFC 9619: a QUERY carries exactly one question; none or several is FORMERR.
#[test]
fn a_query_of_no_or_many_questions_is_formerr_without_echoing_them() {
    let dns = resolver(true);
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    for i in 0..300 {
        let name = Name::from_ascii(format!("n{i}.shop.svc.cluster.local")).unwrap();
        message.add_query(Query::query(name, RecordType::A));
    }
    let many = message.to_vec().unwrap();
    let Answer::Reply(bytes) = dns.answer(&many, "shop").unwrap() else {
        panic!("a query of many questions was forwarded");
    };
    let reply = Message::from_vec(&bytes).unwrap();
    assert_eq!(reply.response_code, ResponseCode::FormErr);
    assert_eq!((reply.id, reply.queries.len()), (7, 0));
    let failure = Message::from_vec(&DnsResolver::server_failure(&many).unwrap()).unwrap();
    assert_eq!(failure.response_code, ResponseCode::ServFail);
    assert!(failure.queries.is_empty());
    let none = Message::new(8, MessageType::Query, OpCode::Query)
        .to_vec()
        .unwrap();
    let Answer::Reply(bytes) = dns.answer(&none, "shop").unwrap() else {
        panic!("a query without a question was forwarded");
    };
    let reply = Message::from_vec(&bytes).unwrap();
    assert_eq!((reply.id, reply.response_code), (8, ResponseCode::FormErr));
    let one = query("elsewhere.example.org", RecordType::A);
    let failure = Message::from_vec(&DnsResolver::server_failure(&one).unwrap()).unwrap();
    assert_eq!(
        failure.queries.len(),
        1,
        "a single question is still echoed"
    );
}

#[test]
fn a_service_without_vip_resolves_to_its_healthy_endpoints_or_goes_upstream() {
    // a headless Service: its ready pods, as cluster DNS answers it
    let answer = ask(&resolver(false), "db", RecordType::A, "shop");
    assert_eq!(addresses(&answer), ips(&["10.0.1.5", "10.0.1.6"]));
    // an entry without addresses whose endpoint is known by name: not the mesh's to answer
    let query = query("partner.example.com.", RecordType::A);
    let forwarded = resolver(true).answer(&query, "shop").unwrap();
    assert!(matches!(forwarded, Answer::Forward), "{forwarded:?}");
}
