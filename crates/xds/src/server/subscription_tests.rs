use super::*;
use crate::resource::Snapshot;

const T: &str = "type.googleapis.com/test.T";

fn resource(name: &str, aliases: &[&str], value: &[u8]) -> XdsResource {
    XdsResource::new(
        name,
        aliases.iter().map(|a| (*a).to_owned()).collect(),
        prost_types::Any {
            type_url: T.into(),
            value: value.to_vec(),
        },
    )
}

fn snapshot(resources: Vec<XdsResource>) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.replace(T, resources);
    snap
}

fn types(snap: &Snapshot) -> Arc<TypeResources> {
    Arc::clone(snap.resources(T).expect("type present"))
}

fn names(delta: &Delta) -> (Vec<String>, Vec<String>) {
    let mut upserts: Vec<String> = delta.upserts.iter().map(|r| r.name.clone()).collect();
    let mut removed = delta.removed.clone();
    upserts.sort();
    removed.sort();
    (upserts, removed)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn empty_first_request_is_wildcard_and_star_minus_star_is_nothing() {
    let snap = snapshot(vec![resource("a", &[], b"1"), resource("b", &[], b"2")]);
    let mut wildcard = TypeSubscription::first_request(vec![], vec![], HashMap::new());
    let delta = wildcard
        .next_delta(&types(&snap), usize::MAX)
        .expect("response");
    assert_eq!(names(&delta).0, strings(&["a", "b"]));

    let mut nothing =
        TypeSubscription::first_request(strings(&["*"]), strings(&["*"]), HashMap::new());
    let delta = nothing
        .next_delta(&types(&snap), usize::MAX)
        .expect("initial response");
    assert_eq!(names(&delta), (vec![], vec![]));
    assert!(nothing.next_delta(&types(&snap), usize::MAX).is_none());
}

#[test]
fn alias_subscription_sends_real_name_and_reports_absent_once() {
    let snap = snapshot(vec![resource("uid-1", &["net/10.0.0.1"], b"1")]);
    let mut sub = TypeSubscription::first_request(
        strings(&["net/10.0.0.1", "net/10.0.0.9"]),
        vec![],
        HashMap::new(),
    );
    let delta = sub.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(
        names(&delta),
        (strings(&["uid-1"]), strings(&["net/10.0.0.9"]))
    );
    sub.resources_changed();
    assert!(sub.next_delta(&types(&snap), usize::MAX).is_none());

    let later = snapshot(vec![
        resource("uid-1", &["net/10.0.0.1"], b"1"),
        resource("uid-9", &["net/10.0.0.9"], b"9"),
    ]);
    sub.resources_changed();
    let delta = sub
        .next_delta(&types(&later), usize::MAX)
        .expect("response");
    assert_eq!(names(&delta), (strings(&["uid-9"]), vec![]));
}

#[test]
fn unsubscribe_removes_what_the_client_holds() {
    let snap = snapshot(vec![resource("a", &[], b"1"), resource("b", &[], b"2")]);
    let mut sub = TypeSubscription::first_request(strings(&["a", "b"]), vec![], HashMap::new());
    sub.next_delta(&types(&snap), usize::MAX).expect("response");
    sub.change(vec![], strings(&["b"]));
    let delta = sub.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(names(&delta), (vec![], strings(&["b"])));
}

#[test]
fn a_deleted_subscribed_resource_is_removed_once() {
    let snap = snapshot(vec![resource("a", &[], b"1"), resource("b", &[], b"2")]);
    let mut sub = TypeSubscription::first_request(strings(&["a"]), vec![], HashMap::new());
    sub.next_delta(&types(&snap), usize::MAX).expect("response");
    let without_a = snapshot(vec![resource("b", &[], b"2")]);
    sub.resources_changed();
    let delta = sub
        .next_delta(&types(&without_a), usize::MAX)
        .expect("response");
    assert_eq!(names(&delta), (vec![], strings(&["a"])));
    let unrelated_edit = snapshot(vec![resource("b", &[], b"3")]);
    sub.resources_changed();
    assert!(
        sub.next_delta(&types(&unrelated_edit), usize::MAX)
            .is_none()
    );
}

#[test]
fn initial_versions_send_only_changes_and_removals() {
    let snap = snapshot(vec![resource("a", &[], b"1"), resource("b", &[], b"2")]);
    let a_version = snap
        .resources(T)
        .and_then(|t| t.get("a"))
        .expect("a")
        .version
        .clone();
    let initial = HashMap::from([
        ("a".to_owned(), a_version),
        ("b".to_owned(), "stale".to_owned()),
        ("gone".to_owned(), "x".to_owned()),
    ]);
    let mut sub = TypeSubscription::first_request(vec![], vec![], initial);
    let delta = sub.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(names(&delta), (strings(&["b"]), strings(&["gone"])));
}

#[test]
fn responses_are_split_by_size_and_complete_eventually() {
    let many: Vec<XdsResource> = (0..10)
        .map(|i| resource(&format!("r{i}"), &[], &[0u8; 100]))
        .collect();
    let snap = snapshot(many);
    let mut sub = TypeSubscription::first_request(vec![], vec![], HashMap::new());
    let mut total = 0;
    let mut responses = 0;
    while let Some(delta) = sub.next_delta(&types(&snap), 350) {
        assert!(delta.upserts.len() <= 3);
        total += delta.upserts.len();
        responses += 1;
    }
    assert_eq!(total, 10);
    assert!(responses >= 4);
}

#[test]
fn wildcard_stream_behind_by_a_few_changes_or_many_gets_exactly_the_difference() {
    let mut snap = snapshot(vec![resource("a", &[], b"1"), resource("b", &[], b"2")]);
    let mut sub = TypeSubscription::first_request(vec![], vec![], HashMap::new());
    sub.next_delta(&types(&snap), usize::MAX).expect("initial");

    // a few changes: served from the change log
    snap.apply(T, [resource("a", &[], b"1b"), resource("c", &[], b"3")], []);
    snap.apply(T, [], ["b".to_owned()]);
    snap.apply(T, [resource("c", &[], b"3")], []); // no-op
    sub.resources_changed();
    let delta = sub.next_delta(&types(&snap), usize::MAX).expect("delta");
    assert_eq!(names(&delta), (strings(&["a", "c"]), strings(&["b"])));
    sub.resources_changed();
    assert!(sub.next_delta(&types(&snap), usize::MAX).is_none());

    // more changes than the log keeps: a full diff gives the same answer
    for i in 0..100u32 {
        snap.apply(T, [resource("d", &[], &i.to_le_bytes())], []);
    }
    snap.apply(T, [], ["a".to_owned()]);
    sub.resources_changed();
    let delta = sub.next_delta(&types(&snap), usize::MAX).expect("delta");
    assert_eq!(names(&delta), (strings(&["d"]), strings(&["a"])));
}

#[test]
fn change_log_diff_respects_the_response_size_cap() {
    let mut snap = snapshot(vec![resource("a", &[], b"1")]);
    let mut sub = TypeSubscription::first_request(vec![], vec![], HashMap::new());
    sub.next_delta(&types(&snap), usize::MAX).expect("initial");
    snap.apply(
        T,
        [resource("x", &[], &[0; 100]), resource("y", &[], &[1; 100])],
        ["a".to_owned()],
    );
    sub.resources_changed();
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    while let Some(delta) = sub.next_delta(&types(&snap), 1) {
        assert!(delta.upserts.len() <= 1, "one resource per capped response");
        let (u, r) = names(&delta);
        upserts.extend(u);
        removed.extend(r);
    }
    upserts.sort();
    assert_eq!((upserts, removed), (strings(&["x", "y"]), strings(&["a"])));
}

#[test]
fn a_split_full_diff_sends_each_resource_and_removal_once_even_if_resources_change_midway() {
    let many = |round: u8| -> Vec<XdsResource> {
        (0..10)
            .map(|i| resource(&format!("r{i}"), &[], &[round; 100]))
            .collect()
    };
    let mut snap = snapshot(many(0));
    let declared = HashMap::from([("gone".to_owned(), "v1".to_owned())]);
    let mut sub = TypeSubscription::first_request(vec![], vec![], declared);
    let mut sent = Vec::new();
    let mut removed = Vec::new();
    for _ in 0..2 {
        let delta = sub
            .next_delta(&types(&snap), 350)
            .expect("partial response");
        let (upserts, gone) = names(&delta);
        sent.extend(upserts);
        removed.extend(gone);
    }
    assert_eq!(removed, strings(&["gone"]));
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        sent.len(),
        "a resource was sent twice: {sent:?}"
    );

    // the resources change before the split diff finished: the client still converges
    snap.replace(T, many(1));
    sub.resources_changed();
    let mut latest = HashMap::new();
    while let Some(delta) = sub.next_delta(&types(&snap), 350) {
        assert!(delta.removed.is_empty());
        for resource in delta.upserts {
            latest.insert(resource.name.clone(), resource.version.clone());
        }
    }
    let current = types(&snap);
    assert_eq!(latest.len(), 10);
    assert!(
        latest
            .iter()
            .all(|(name, version)| current.get(name).unwrap().version == *version)
    );
}

/// Sends the first part of an update of `x` and `y` (one per response) and returns the
/// name that went out.
fn first_part_of_two(snap: &mut Snapshot, sub: &mut TypeSubscription) -> String {
    snap.apply(
        T,
        [resource("x", &[], &[1; 100]), resource("y", &[], &[1; 100])],
        [],
    );
    sub.resources_changed();
    let part = sub.next_delta(&types(snap), 150).expect("first part");
    assert!(part.more && part.upserts.len() == 1);
    part.upserts[0].name.clone()
}

#[test]
fn a_split_update_always_ends_with_a_last_part_even_when_the_rest_vanished() {
    // the unsent rest is reverted to what the client holds
    let mut snap = snapshot(vec![
        resource("x", &[], &[0; 100]),
        resource("y", &[], &[0; 100]),
    ]);
    let mut sub = TypeSubscription::first_request(vec![], vec![], HashMap::new());
    sub.next_delta(&types(&snap), usize::MAX).expect("initial");
    let sent = first_part_of_two(&mut snap, &mut sub);
    let rest = if sent == "x" { "y" } else { "x" };
    snap.apply(T, [resource(rest, &[], &[0; 100])], []);
    sub.resources_changed();
    let last = sub.next_delta(&types(&snap), 150).expect("a last part");
    assert!(!last.more && last.upserts.is_empty() && last.removed.is_empty());
    assert!(sub.next_delta(&types(&snap), 150).is_none());

    // the unsent rest is deleted during the first sync
    let mut snap = snapshot(vec![]);
    let mut sub = TypeSubscription::first_request(vec![], vec![], HashMap::new());
    let sent = first_part_of_two(&mut snap, &mut sub);
    let rest = if sent == "x" { "y" } else { "x" };
    snap.apply(T, [], [rest.to_owned()]);
    sub.resources_changed();
    let last = sub.next_delta(&types(&snap), 150).expect("a last part");
    assert!(!last.more);
}

fn restricted(name: &str, value: &[u8], readers: &[&str]) -> XdsResource {
    let mut resource = resource(name, &[], value);
    resource.version = format!("{}-{}", resource.version, readers.join(","));
    resource.readable_by(strings(readers))
}

/// A resource restricted to some principals goes only to streams authenticated as one of
/// them, whether they subscribe by name or by wildcard; anyone else is told it is absent,
/// and a stream that loses the right has the resource removed.
#[test]
fn a_restricted_resource_reaches_only_its_readers() {
    let mut snap = snapshot(vec![
        resource("open", &[], b"1"),
        restricted("gw", b"key", &["node/n1"]),
    ]);
    let explicit = |principal: Option<&str>| {
        let sub = TypeSubscription::first_request(strings(&["gw"]), vec![], HashMap::new());
        match principal {
            Some(p) => sub.read_as(p),
            None => sub,
        }
    };
    let mut reader = explicit(Some("node/n1"));
    let delta = reader
        .next_delta(&types(&snap), usize::MAX)
        .expect("response");
    assert_eq!(names(&delta), (strings(&["gw"]), vec![]));
    for other in [Some("node/n2"), Some("spiffe://td/ns/a/sa/gw"), None] {
        let mut sub = explicit(other);
        let delta = sub.next_delta(&types(&snap), usize::MAX).expect("response");
        assert_eq!(names(&delta), (vec![], strings(&["gw"])), "{other:?}");
    }

    let wildcard =
        |p: &str| TypeSubscription::first_request(vec![], vec![], HashMap::new()).read_as(p);
    let (mut n1, mut n2) = (wildcard("node/n1"), wildcard("node/n2"));
    let delta = n1.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(names(&delta).0, strings(&["gw", "open"]));
    let delta = n2.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(names(&delta).0, strings(&["open"]));

    // the gateway moved to node n2: n1 loses it (through the change log), n2 gets it
    snap.apply(T, [restricted("gw", b"key", &["node/n2"])], []);
    for sub in [&mut n1, &mut n2, &mut reader] {
        sub.resources_changed();
    }
    let delta = n1.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(names(&delta), (vec![], strings(&["gw"])));
    let delta = n2.next_delta(&types(&snap), usize::MAX).expect("response");
    assert_eq!(names(&delta), (strings(&["gw"]), vec![]));
    let delta = reader
        .next_delta(&types(&snap), usize::MAX)
        .expect("response");
    assert_eq!(names(&delta), (vec![], strings(&["gw"])));
}
