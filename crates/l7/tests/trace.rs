//! `weft_l7::trace`: header parsing as tables of rows, then a request's context continued,
//! started and injected in each header form.

use http::HeaderMap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use weft_l7::trace::{
    B3Single, Parent, Sampler, SpanId, TraceContext, TraceId, parse_b3_single, parse_traceparent,
    uuid_v4,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
        .collect()
}

fn parent(sampled: Option<bool>) -> Parent {
    Parent {
        trace_id: TraceId::parse(TRACE).unwrap(),
        span_id: SpanId::parse(SPAN).unwrap(),
        sampled,
    }
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

#[test]
fn traceparent_rows() {
    let rows: &[(&str, Option<Parent>)] = &[
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some(parent(Some(true))),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            Some(parent(Some(false))),
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-03",
            Some(parent(Some(true))),
        ),
        // a later version may append fields
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
            Some(parent(Some(true))),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            None,
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            None,
        ),
        ("00-a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            None,
        ),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        ("", None),
    ];
    for (value, expected) in rows {
        assert_eq!(parse_traceparent(value), *expected, "{value}");
    }
}

#[test]
fn b3_single_rows() {
    let short = Parent {
        trace_id: TraceId::parse("a3ce929d0e0e4736").unwrap(),
        ..parent(Some(true))
    };
    let rows: &[(&str, Option<B3Single>)] = &[
        (
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            Some(B3Single::Context(parent(Some(true)))),
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            Some(B3Single::Context(parent(None))),
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d-1111111111111111",
            Some(B3Single::Context(parent(Some(true)))),
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            Some(B3Single::Context(parent(Some(false)))),
        ),
        (
            "a3ce929d0e0e4736-00f067aa0ba902b7-1",
            Some(B3Single::Context(short)),
        ),
        ("0", Some(B3Single::DecisionOnly(false))),
        ("d", Some(B3Single::DecisionOnly(true))),
        ("4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-x", None),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-zz",
            None,
        ),
        ("4bf92f3577b34da6a3ce929d0e0e4736", None),
    ];
    for (value, expected) in rows {
        assert_eq!(parse_b3_single(value), *expected, "{value}");
    }
    assert_eq!(
        short.trace_id.to_string(),
        "0000000000000000a3ce929d0e0e4736"
    );
}

#[test]
fn w3c_parent_is_continued_and_upstream_sees_the_proxy_span() {
    let incoming = headers(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=opaque"),
        ("x-request-id", "req-1"),
    ]);
    let ctx = TraceContext::begin(&incoming, &Sampler::from_percent(0.0), &mut rng());
    assert_eq!(ctx.trace_id.to_string(), TRACE);
    assert_eq!(ctx.parent_span_id.unwrap().to_string(), SPAN);
    assert_ne!(ctx.span_id.to_string(), SPAN);
    assert!(ctx.sampled, "the caller's decision wins over a 0% rate");
    assert_eq!(ctx.request_id, "req-1");
    let mut out = incoming.clone();
    ctx.inject(&mut out);
    assert_eq!(
        get(&out, "traceparent"),
        format!("00-{TRACE}-{}-01", ctx.span_id)
    );
    assert_eq!(get(&out, "tracestate"), "vendor=opaque");
    assert_eq!(get(&out, "x-request-id"), "req-1");
    assert!(out.get("x-b3-traceid").is_none() && out.get("b3").is_none());
}

#[test]
fn unsampled_parent_stays_unsampled_at_full_rate() {
    let incoming = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    let ctx = TraceContext::begin(&incoming, &Sampler::from_percent(100.0), &mut rng());
    assert!(!ctx.sampled);
    assert!(ctx.traceparent().ends_with("-00"));
}

#[test]
fn new_trace_when_absent_sampled_by_rate_with_new_request_id() {
    let all = TraceContext::begin(&HeaderMap::new(), &Sampler::from_percent(100.0), &mut rng());
    assert!(all.sampled && all.parent_span_id.is_none());
    assert_eq!(all.request_id.len(), 36);
    let none = TraceContext::begin(&HeaderMap::new(), &Sampler::from_percent(0.0), &mut rng());
    assert!(!none.sampled);
    let mut r = rng();
    let sampler = Sampler::from_percent(25.0);
    let hits = (0..4000)
        .filter(|_| TraceContext::begin(&HeaderMap::new(), &sampler, &mut r).sampled)
        .count();
    assert!((800..1200).contains(&hits), "25% of 4000 sampled: {hits}");
    // a broken traceparent is ignored: a new trace starts
    let broken = headers(&[("traceparent", "00-zz-zz-01")]);
    let ctx = TraceContext::begin(&broken, &Sampler::from_percent(100.0), &mut rng());
    assert!(ctx.parent_span_id.is_none());
    let mut out = broken.clone();
    ctx.inject(&mut out);
    assert_eq!(
        parse_traceparent(get(&out, "traceparent")).unwrap().span_id,
        ctx.span_id
    );
}

#[test]
fn b3_multi_is_continued_and_rewritten_in_both_forms() {
    let incoming = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", SPAN),
        ("x-b3-parentspanid", "1111111111111111"),
        ("x-b3-sampled", "1"),
    ]);
    let ctx = TraceContext::begin(&incoming, &Sampler::from_percent(0.0), &mut rng());
    assert_eq!(ctx.trace_id.to_string(), "0000000000000000a3ce929d0e0e4736");
    assert!(ctx.sampled);
    let mut out = incoming.clone();
    ctx.inject(&mut out);
    assert_eq!(
        get(&out, "x-b3-traceid"),
        "a3ce929d0e0e4736",
        "64-bit ids answered in kind"
    );
    assert_eq!(get(&out, "x-b3-spanid"), ctx.span_id.to_string());
    assert_eq!(get(&out, "x-b3-parentspanid"), SPAN);
    assert_eq!(get(&out, "x-b3-sampled"), "1");
    let w3c = parse_traceparent(get(&out, "traceparent")).unwrap();
    assert_eq!((w3c.trace_id, w3c.span_id), (ctx.trace_id, ctx.span_id));
}

#[test]
fn b3_debug_flag_samples() {
    let incoming = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-flags", "1"),
    ]);
    assert!(TraceContext::begin(&incoming, &Sampler::from_percent(0.0), &mut rng()).sampled);
}

#[test]
fn b3_single_is_continued_and_rewritten() {
    let incoming = headers(&[(
        "b3",
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-1111111111111111",
    )]);
    let ctx = TraceContext::begin(&incoming, &Sampler::from_percent(0.0), &mut rng());
    let mut out = incoming.clone();
    ctx.inject(&mut out);
    assert_eq!(get(&out, "b3"), format!("{TRACE}-{}-1-{SPAN}", ctx.span_id));
    assert!(out.get("x-b3-traceid").is_none());
    assert_eq!(
        get(&out, "traceparent"),
        format!("00-{TRACE}-{}-01", ctx.span_id)
    );
}

#[test]
fn b3_decision_only_starts_a_trace_with_that_decision() {
    let incoming = headers(&[("b3", "0")]);
    let ctx = TraceContext::begin(&incoming, &Sampler::from_percent(100.0), &mut rng());
    assert!(!ctx.sampled && ctx.parent_span_id.is_none());
}

#[test]
fn w3c_wins_over_b3_and_b3_is_rewritten_to_match() {
    let incoming = headers(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-b3-traceid", "11111111111111111111111111111111"),
        ("x-b3-spanid", "2222222222222222"),
    ]);
    let ctx = TraceContext::begin(&incoming, &Sampler::from_percent(0.0), &mut rng());
    assert_eq!(ctx.trace_id.to_string(), TRACE);
    let mut out = incoming.clone();
    ctx.inject(&mut out);
    assert_eq!(get(&out, "x-b3-traceid"), TRACE);
    assert_eq!(get(&out, "x-b3-parentspanid"), SPAN);
}

#[test]
fn uuid_v4_format() {
    let mut r = rng();
    for _ in 0..100 {
        let id = uuid_v4(&mut r);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(parts[2].starts_with('4'), "{id}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{id}"
        );
    }
}
