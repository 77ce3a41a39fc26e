//! Backend choice and timeouts of a compiled rule, as tables over the roll that picks.

use super::{BackendError, Rule};
use std::time::Duration;
use weft_proto::l7 as pb;

fn backend(service: &str, weight: u32, unresolved: &str) -> pb::Backend {
    pb::Backend {
        service: service.to_owned(),
        port: 8080,
        weight,
        unresolved: unresolved.to_owned(),
        ..pb::Backend::default()
    }
}

fn rule(backends: Vec<pb::Backend>) -> Rule {
    let wire = pb::Rule {
        backends,
        ..pb::Rule::default()
    };
    Rule::compile(&wire, 0, true, "spec.rules[0]").expect("rule")
}

/// The outcome of a pick, rendered: the service, or `500 (why)`.
fn pick(rule: &Rule, roll: u64) -> String {
    match rule.pick_backend_at(roll) {
        Ok(backend) => backend.service().to_owned(),
        Err(BackendError::NoBackend) => "500 (no backend)".to_owned(),
        Err(BackendError::Unresolved { reason, .. }) => format!("500 ({reason})"),
    }
}

#[test]
fn weighted_choice_gives_each_backend_its_share() {
    let split = rule(vec![backend("a", 90, ""), backend("b", 10, "")]);
    let zero = rule(vec![backend("a", 0, ""), backend("b", 5, "")]);
    let all_zero = rule(vec![backend("a", 0, ""), backend("b", 0, "")]);
    let none = rule(vec![]);
    let broken = rule(vec![
        backend("a", 1, ""),
        backend("gone", 1, "Service default/gone not found"),
    ]);
    // (what, rule, roll, expected)
    let rows = [
        ("first share", &split, 0, "a"),
        ("end of the first share", &split, 89, "a"),
        ("second share", &split, 90, "b"),
        ("end of the second share", &split, 99, "b"),
        ("weight 0 is never chosen", &zero, 0, "b"),
        ("weight 0 is never chosen, last roll", &zero, 4, "b"),
        ("all weights 0", &all_zero, 0, "500 (no backend)"),
        ("no backends", &none, 0, "500 (no backend)"),
        ("resolved half", &broken, 0, "a"),
        (
            "unresolved half answers 500",
            &broken,
            1,
            "500 (Service default/gone not found)",
        ),
        ("a roll past the total", &split, 100, "500 (no backend)"),
    ];
    let mut failures = Vec::new();
    for (what, rule, roll, want) in rows {
        let got = pick(rule, roll);
        if got != want {
            failures.push(format!("{what}: roll {roll} -> {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let mut rng = rand::rng();
    assert_eq!(
        all_zero.pick_backend(&mut rng).err(),
        Some(BackendError::NoBackend)
    );
    assert!((0..200).all(|_| {
        zero.pick_backend(&mut rng)
            .is_ok_and(|b| b.service() == "b")
    }));
}

#[test]
fn a_seeded_rng_splits_close_to_the_weights() {
    use rand::SeedableRng;
    let split = rule(vec![backend("a", 80, ""), backend("b", 20, "")]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let to_b = (0..10_000)
        .filter(|_| {
            split
                .pick_backend(&mut rng)
                .is_ok_and(|b| b.service() == "b")
        })
        .count();
    assert!((1_800..2_200).contains(&to_b), "{to_b} of 10000 went to b");
}

#[test]
fn timeouts_are_optional_and_backend_request_fits_in_request() {
    let timeouts = |request_timeout_ms, backend_request_timeout_ms| {
        let wire = pb::Rule {
            request_timeout_ms,
            backend_request_timeout_ms,
            ..pb::Rule::default()
        };
        Rule::compile(&wire, 0, true, "spec.rules[0]").map(|r| r.timeouts())
    };
    let both = timeouts(1_000, 250).expect("timeouts");
    assert_eq!(both.request, Some(Duration::from_secs(1)));
    assert_eq!(both.backend_request, Some(Duration::from_millis(250)));
    let none = timeouts(0, 0).expect("timeouts");
    assert_eq!((none.request, none.backend_request), (None, None));
    let Err((field, _)) = timeouts(100, 200) else {
        panic!("a backendRequest longer than request is accepted")
    };
    assert_eq!(field, "spec.rules[0].timeouts.backendRequest");
}
