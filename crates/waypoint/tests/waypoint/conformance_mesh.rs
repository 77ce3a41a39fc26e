//! The Gateway API conformance profile MESH-HTTP through a real waypoint, one test per
//! extended feature, each written from the feature's definition the way the suite exercises
//! it: a mesh client calls a Service (by its ClusterIP, through its HBONE tunnel) whose
//! waypoint applies the HTTPRoutes attached to that Service. Services `echo` (VIP `.2.1`,
//! backend `echo-a`) and `echo-v2` (VIP `.2.2`, backend `echo-v2`) in namespace `ns`.

use weft_proto::l7 as pb;
use weft_proto::l7::filter::Kind;

use crate::harness::*;

/// An HTTPRoute of `namespace` attached to service `echo`.
fn echo_route(namespace: &str, rules: Vec<pb::Rule>) -> pb::Route {
    pb::Route {
        namespace: namespace.into(),
        name: format!("echo-{namespace}"),
        rules,
        ..Default::default()
    }
}

fn service(name: &str) -> pb::Backend {
    pb::Backend {
        service: key(name),
        port: u32::from(SERVICE_PORT),
        weight: 1,
        ..Default::default()
    }
}

fn rule(matches: Vec<pb::Match>, filters: Vec<Kind>, backends: Vec<pb::Backend>) -> pb::Rule {
    pb::Rule {
        matches,
        filters: filters
            .into_iter()
            .map(|kind| pb::Filter { kind: Some(kind) })
            .collect(),
        backends,
        ..Default::default()
    }
}

fn path(kind: pb::MatchType, value: &str) -> pb::Match {
    pb::Match {
        path: Some(pb::PathMatch {
            r#type: kind.into(),
            value: value.into(),
        }),
        ..Default::default()
    }
}

/// A response header modifier setting `name: value`.
fn sets_response(name: &str, value: &str) -> Kind {
    Kind::ResponseHeaderModifier(pb::HeaderModifier {
        set: vec![pb::Header {
            name: name.into(),
            value: value.into(),
        }],
        ..Default::default()
    })
}

fn redirect(redirect: pb::Redirect) -> Kind {
    Kind::RequestRedirect(redirect)
}

fn full_path(value: &str) -> Option<pb::PathModifier> {
    Some(pb::PathModifier {
        kind: Some(pb::path_modifier::Kind::ReplaceFullPath(value.into())),
    })
}

fn prefix_to(value: &str) -> Option<pb::PathModifier> {
    Some(pb::PathModifier {
        kind: Some(pb::path_modifier::Kind::ReplacePrefixMatch(value.into())),
    })
}

/// Starts `echo` and `echo-v2` with `echo_routes` attached to `echo`.
async fn mesh(echo_routes: Vec<pb::Route>) -> Mesh {
    let specs = vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")];
    let resource = waypoint_resource(&[("echo", echo_routes), ("echo-v2", vec![])], vec![]);
    Mesh::start(specs, resource).await
}

/// GETs `path` from service `echo` (VIP `.2.1`) as a caller in namespace `NS`.
async fn call(mesh: &Mesh, path: &str) -> Answer {
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    send(&mut h1, get(path, &[])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_cluster_ip_matching_routes_by_the_address_called_not_the_host() {
    let tagged = rule(
        vec![],
        vec![sets_response("x-header-set", "set")],
        vec![service("echo")],
    );
    let mesh = mesh(vec![echo_route(NS, vec![tagged])]).await;
    let client = mesh.client().await;
    // echo's address with echo-v2's Host: echo's route applies.
    let with_host = |host: &str| {
        http::Request::get("/")
            .header("host", host)
            .body(empty())
            .unwrap()
    };
    let mut to_echo = client.h1(mesh.net.vip(1)).await;
    let answer = send(&mut to_echo, with_host("echo-v2")).await;
    assert_eq!(answer.header("x-header-set"), "set", "{answer:?}");
    assert_eq!(answer.header("x-backend"), "echo-a");
    // echo-v2's address with echo's Host: no route of echo applies.
    let mut to_v2 = client.h1(mesh.net.vip(2)).await;
    let answer = send(&mut to_v2, with_host("echo")).await;
    assert_eq!(answer.header("x-header-set"), "", "{answer:?}");
    assert_eq!(answer.header("x-backend"), "echo-v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_consumer_route_applies_only_to_callers_from_its_namespace() {
    let producer = rule(
        vec![],
        vec![sets_response("x-producer", "yes")],
        vec![service("echo")],
    );
    let consumer = rule(
        vec![],
        vec![sets_response("x-header-set", "set")],
        vec![service("echo-v2")],
    );
    let mesh = mesh(vec![
        echo_route(NS, vec![producer]),
        echo_route("consumer", vec![consumer]),
    ])
    .await;
    let from_consumer = mesh.client_in("consumer").await;
    let mut h1 = from_consumer.h1(mesh.net.vip(1)).await;
    let answer = send(&mut h1, get("/", &[])).await;
    assert_eq!(
        (answer.status, answer.header("x-header-set")),
        (200, "set"),
        "{answer:?}"
    );
    assert_eq!(answer.header("x-backend"), "echo-v2");
    assert_eq!(
        answer.header("x-producer"),
        "",
        "the consumer's routes replace the producer's"
    );
    // The producer's namespace, and any other, get the producer route.
    for namespace in [NS, "elsewhere"] {
        let client = mesh.client_in(namespace).await;
        let mut h1 = client.h1(mesh.net.vip(1)).await;
        let answer = send(&mut h1, get("/", &[])).await;
        assert_eq!(answer.header("x-header-set"), "", "{namespace}: {answer:?}");
        assert_eq!(answer.header("x-producer"), "yes", "{namespace}");
        assert_eq!(answer.header("x-backend"), "echo-a", "{namespace}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_rewrite_path_replaces_a_prefix_or_the_whole_path() {
    let url_rewrite = |path| {
        Kind::UrlRewrite(pb::Rewrite {
            path,
            ..Default::default()
        })
    };
    let rules = vec![
        rule(
            vec![path(pb::MatchType::Prefix, "/prefix/one")],
            vec![url_rewrite(prefix_to("/one"))],
            vec![service("echo")],
        ),
        rule(
            vec![path(pb::MatchType::Prefix, "/strip-prefix")],
            vec![url_rewrite(prefix_to("/"))],
            vec![service("echo")],
        ),
        rule(
            vec![path(pb::MatchType::Prefix, "/full/one")],
            vec![url_rewrite(full_path("/one"))],
            vec![service("echo")],
        ),
    ];
    let mesh = mesh(vec![echo_route(NS, rules)]).await;
    for (sent, seen) in [
        ("/prefix/one/two", "/one/two"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/full/one/two", "/one"),
    ] {
        let answer = call(&mesh, sent).await;
        assert_eq!(answer.body, format!("echo-a GET {seen} 0"), "{sent}");
    }
}

/// The `Location` and status each request path gets from `redirects` (one rule per
/// path prefix).
async fn redirected(redirects: Vec<(&str, pb::Redirect)>, paths: &[&str]) -> Vec<(u16, String)> {
    let rules = redirects
        .into_iter()
        .map(|(prefix, r)| {
            rule(
                vec![path(pb::MatchType::Prefix, prefix)],
                vec![redirect(r)],
                vec![],
            )
        })
        .collect();
    let mesh = mesh(vec![echo_route(NS, rules)]).await;
    let mut answers = Vec::new();
    for sent in paths {
        let answer = call(&mesh, sent).await;
        answers.push((answer.status, answer.header("location").to_owned()));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_scheme_redirect_changes_the_scheme_and_its_port() {
    let to_https = pb::Redirect {
        scheme: "https".into(),
        ..Default::default()
    };
    let to_https_8443 = pb::Redirect {
        scheme: "https".into(),
        port: 8443,
        status_code: 301,
        ..Default::default()
    };
    let answers = redirected(
        vec![("/scheme", to_https), ("/port", to_https_8443)],
        &["/scheme/a?q=1", "/port"],
    )
    .await;
    assert_eq!(
        answers,
        [
            (302, "https://echo/scheme/a?q=1".to_owned()),
            (301, "https://echo:8443/port".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_redirect_port_keeps_scheme_host_and_path() {
    let to_8083 = pb::Redirect {
        port: 8083,
        ..Default::default()
    };
    let to_80 = pb::Redirect {
        hostname: "example.org".into(),
        port: 80,
        ..Default::default()
    };
    let answers = redirected(
        vec![("/port", to_8083), ("/default", to_80)],
        &["/port/x", "/default"],
    )
    .await;
    assert_eq!(
        answers,
        [
            (302, "http://echo:8083/port/x".to_owned()),
            (302, "http://example.org/default".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_redirect_path_replaces_a_prefix_or_the_whole_path() {
    let prefix = pb::Redirect {
        path: prefix_to("/replacement-prefix"),
        ..Default::default()
    };
    let full = pb::Redirect {
        path: full_path("/replacement-full"),
        status_code: 307,
        ..Default::default()
    };
    let answers = redirected(
        vec![("/original-prefix", prefix), ("/full", full)],
        &["/original-prefix/lemon", "/full/path/original"],
    )
    .await;
    assert_eq!(
        answers,
        [
            (302, "http://echo/replacement-prefix/lemon".to_owned()),
            (307, "http://echo/replacement-full".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_backend_request_header_modification_applies_per_backend() {
    let mut modified = service("echo");
    modified.filters = vec![pb::Filter {
        kind: Some(Kind::RequestHeaderModifier(pb::HeaderModifier {
            set: vec![pb::Header {
                name: "x-backend-set".into(),
                value: "echo".into(),
            }],
            add: vec![pb::Header {
                name: "x-multi".into(),
                value: "added".into(),
            }],
            remove: vec!["x-remove-me".into()],
        })),
    }];
    let rules = vec![
        rule(
            vec![path(pb::MatchType::Prefix, "/v2")],
            vec![],
            vec![service("echo-v2")],
        ),
        rule(vec![], vec![], vec![modified]),
    ];
    let mesh = mesh(vec![echo_route(NS, rules)]).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let headers = [("x-multi", "sent"), ("x-remove-me", "gone")];
    let answer = send(&mut h1, get("/", &headers)).await;
    assert_eq!(answer.header("x-backend"), "echo-a", "{answer:?}");
    assert_eq!(answer.header("x-seen-x-backend-set"), "echo");
    let multi: Vec<&str> = answer
        .headers
        .get_all("x-seen-x-multi")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(multi, ["sent", "added"]);
    assert_eq!(answer.header("x-seen-x-remove-me"), "");
    // The other backend's requests are not modified.
    let answer = send(&mut h1, get("/v2", &headers)).await;
    assert_eq!(answer.header("x-backend"), "echo-v2", "{answer:?}");
    assert_eq!(answer.header("x-seen-x-backend-set"), "");
    assert_eq!(answer.header("x-seen-x-remove-me"), "gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_query_param_matching_chooses_the_backend() {
    let query = |pairs: &[(&str, &str)]| pb::Match {
        query_params: pairs
            .iter()
            .map(|(name, value)| pb::KeyMatch {
                name: (*name).into(),
                r#type: pb::MatchType::Exact.into(),
                value: (*value).into(),
            })
            .collect(),
        ..Default::default()
    };
    let rules = vec![
        rule(
            vec![query(&[("animal", "whale")])],
            vec![],
            vec![service("echo")],
        ),
        rule(
            vec![query(&[("animal", "dolphin"), ("color", "blue")])],
            vec![],
            vec![service("echo-v2")],
        ),
    ];
    let mesh = mesh(vec![echo_route(NS, rules)]).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    for (sent, status, backend) in [
        ("/?animal=whale", 200, "echo-a"),
        ("/?animal=dolphin&color=blue", 200, "echo-v2"),
        ("/?color=blue&animal=dolphin&extra=1", 200, "echo-v2"),
        ("/?animal=dolphin", 404, ""),
        ("/?ANIMAL=whale", 404, ""),
        ("/", 404, ""),
    ] {
        let answer = send(&mut h1, get(sent, &[])).await;
        assert_eq!(
            (answer.status, answer.header("x-backend")),
            (status, backend),
            "{sent}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_httproute_named_rule_routes_like_an_unnamed_one() {
    let mut named = rule(
        vec![path(pb::MatchType::Exact, "/named")],
        vec![],
        vec![service("echo")],
    );
    named.name = "named-rule".into();
    let unnamed = rule(
        vec![path(pb::MatchType::Exact, "/unnamed")],
        vec![],
        vec![service("echo-v2")],
    );
    let mesh = mesh(vec![echo_route(NS, vec![named, unnamed])]).await;
    let named = call(&mesh, "/named").await;
    assert_eq!(named.body, "echo-a GET /named 0", "{named:?}");
    let unnamed = call(&mesh, "/unnamed").await;
    assert_eq!(unnamed.body, "echo-v2 GET /unnamed 0", "{unnamed:?}");
}
