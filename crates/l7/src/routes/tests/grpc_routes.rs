//! GRPCRoute rows: service and method matches and the GRPCRoute precedence steps.

use super::{GRPC, check, grpc, grpc_at, http, prefix};

#[test]
fn grpc_matching_and_precedence() {
    let method = |m: &str| format!("rules: [{{matches: [{{method: {{{m}}}}}]}}]");
    let svc = || vec![grpc("g", &method("service: pkg.Echo, method: Say"))];
    check(vec![
        (
            "service and method exact",
            svc(),
            "POST svc /pkg.Echo/Say",
            GRPC,
            "default/g#0.0",
        ),
        (
            "another method does not match",
            svc(),
            "POST svc /pkg.Echo/Other",
            GRPC,
            "404",
        ),
        (
            "a request that is not gRPC does not match",
            svc(),
            "POST svc /pkg.Echo/Say",
            &[],
            "404",
        ),
        (
            "a GET is not gRPC",
            svc(),
            "GET svc /pkg.Echo/Say",
            GRPC,
            "404",
        ),
        (
            "service only",
            vec![grpc("g", &method("service: pkg.Echo"))],
            "POST svc /pkg.Echo/Any",
            GRPC,
            "default/g#0.0",
        ),
        (
            "method only",
            vec![grpc("g", &method("method: Say"))],
            "POST svc /other.Svc/Say",
            GRPC,
            "default/g#0.0",
        ),
        (
            "regex service and method",
            vec![grpc(
                "g",
                &method("type: RegularExpression, service: 'pkg\\.v[0-9]+\\.Echo', method: 'S.*'"),
            )],
            "POST svc /pkg.v2.Echo/Say",
            GRPC,
            "default/g#0.0",
        ),
        (
            "regex is anchored",
            vec![grpc(
                "g",
                &method("type: RegularExpression, service: 'pkg'"),
            )],
            "POST svc /pkg.Echo/Say",
            GRPC,
            "404",
        ),
        (
            "a rule without matches matches every gRPC request",
            vec![grpc("all", "rules: [{backendRefs: [{name: b, port: 80}]}]")],
            "POST svc /x.Y/Z",
            GRPC,
            "default/all#0.0",
        ),
        (
            "hostname first: exact hostname beats a longer service",
            vec![
                grpc("svc", &method("service: pkg.Echo, method: Say")),
                grpc(
                    "host",
                    &format!("hostnames: [api.test], {}", method("method: Say")),
                ),
            ],
            "POST api.test /pkg.Echo/Say",
            GRPC,
            "default/host#0.0",
        ),
        (
            "more service characters win",
            vec![
                grpc("short", &method("method: Say")),
                grpc("long", &method("service: pkg.Echo")),
            ],
            "POST svc /pkg.Echo/Say",
            GRPC,
            "default/long#0.0",
        ),
        (
            "then more method characters",
            vec![
                grpc("any", &method("service: pkg.Echo")),
                grpc("say", &method("service: pkg.Echo, method: Say")),
            ],
            "POST svc /pkg.Echo/Say",
            GRPC,
            "default/say#0.0",
        ),
        (
            "then more header matches",
            vec![
                grpc("plain", &method("service: pkg.Echo")),
                grpc(
                    "hdr",
                    "rules: [{matches: [{method: {service: pkg.Echo}, headers: [{name: v, value: \"2\"}]}]}]",
                ),
            ],
            "POST svc /pkg.Echo/Say",
            &[("content-type", "application/grpc+proto"), ("v", "2")],
            "default/hdr#0.0",
        ),
        (
            "then the oldest route",
            vec![
                grpc_at("a", "2024-01-01T00:00:00Z", &method("service: pkg.Echo")),
                grpc_at("b", "2023-01-01T00:00:00Z", &method("service: pkg.Echo")),
            ],
            "POST svc /pkg.Echo/Say",
            GRPC,
            "default/b#0.0",
        ),
        (
            "then by name",
            vec![
                grpc("b", &method("service: pkg.Echo")),
                grpc("a", &method("service: pkg.Echo")),
            ],
            "POST svc /pkg.Echo/Say",
            GRPC,
            "default/a#0.0",
        ),
        (
            "HTTPRoute and GRPCRoute on different hostnames both serve",
            vec![
                grpc(
                    "g",
                    &format!("hostnames: [grpc.test], {}", method("service: pkg.Echo")),
                ),
                http("h", &format!("hostnames: [web.test], {}", prefix("/"))),
            ],
            "POST web.test /pkg.Echo/Say",
            GRPC,
            "default/h#0.0",
        ),
    ]);
}
