//! Incremental translation: a change re-translates only what depends on it, and the result is
//! always identical to translating the new configuration from scratch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use weft_api::{ConfigSnapshot, Kind, LoadedObject, Object, ObjectRef, load_paths};
use weft_control::translate::{
    ADDRESS, ResourceKey, TranslateOptions, Translator, pod_uid, translate,
};

fn mesh_objects() -> Vec<LoadedObject> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/translate-mesh");
    load_paths(&[dir]).objects
}

fn object_ref(kind: Kind, namespace: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    }
}

/// A copy of `objects` with the object `target` changed by `edit` (or removed when `edit`
/// returns false).
fn edited(
    objects: &[LoadedObject],
    target: &ObjectRef,
    edit: impl Fn(&mut Object) -> bool,
) -> Vec<LoadedObject> {
    let mut found = false;
    let out = objects
        .iter()
        .filter_map(|loaded| {
            if loaded.object.object_ref() != *target {
                return Some(loaded.clone());
            }
            found = true;
            let mut copy = loaded.clone();
            edit(&mut copy.object).then_some(copy)
        })
        .collect();
    assert!(found, "{target} is in the test mesh");
    out
}

fn workload(namespace: &str, name: &str) -> ResourceKey {
    ResourceKey::address(pod_uid("Kubernetes", namespace, name))
}

fn policy(name: &str) -> ResourceKey {
    ResourceKey::authorization(name)
}

/// Runs one incremental step and checks it against a full translation of the new config.
fn step(
    translator: &mut Translator,
    old: &[LoadedObject],
    new: Vec<LoadedObject>,
) -> weft_control::translate::Change {
    let old = ConfigSnapshot::new(old.to_vec());
    let new = ConfigSnapshot::new(new);
    let before = translator.output().clone();
    let change = translator.update(&old, &new);
    let full = translate(&new, translator.options());
    assert_eq!(
        *translator.output(),
        full,
        "incremental result equals a full translation"
    );
    assert!(change.updated.is_subset(&change.retranslated));
    assert!(change.removed.is_subset(&change.retranslated));
    for key in &change.retranslated {
        let changed = before.version(key) != full.version(key);
        let reported = change.updated.contains(key) || change.removed.contains(key);
        assert_eq!(
            changed, reported,
            "{key}: reported change matches version change"
        );
    }
    change
}

fn translator_for(objects: &[LoadedObject]) -> Translator {
    let mut translator = Translator::new(TranslateOptions::default());
    translator.full(&ConfigSnapshot::new(objects.to_vec()));
    translator
}

#[test]
fn editing_a_policy_rule_retranslates_only_that_policy() {
    let objects = mesh_objects();
    let mut translator = translator_for(&objects);
    let target = object_ref(Kind::AuthorizationPolicy, Some("shop"), "reviews-allow");
    let new = edited(&objects, &target, |object| {
        let Object::AuthorizationPolicy(policy) = object else {
            return true;
        };
        let rules = policy.spec.rules.get_or_insert_default();
        rules[0].to = None;
        true
    });
    let change = step(&mut translator, &objects, new);
    let only_policy = BTreeSet::from([policy("shop/reviews-allow")]);
    assert_eq!(change.retranslated, only_policy);
    assert_eq!(change.updated, only_policy);
    assert!(change.removed.is_empty());
}

#[test]
fn editing_a_policy_selector_retranslates_the_policy_and_the_workloads_it_moved_between() {
    let objects = mesh_objects();
    let mut translator = translator_for(&objects);
    let target = object_ref(Kind::AuthorizationPolicy, Some("shop"), "reviews-allow");
    let new = edited(&objects, &target, |object| {
        let Object::AuthorizationPolicy(policy) = object else {
            return true;
        };
        let selector = policy.spec.selector.get_or_insert_default();
        selector.match_labels = BTreeMap::from([("app".to_owned(), "ratings".to_owned())]);
        true
    });
    let change = step(&mut translator, &objects, new);
    let vm = ResourceKey::address(
        "Kubernetes/networking.istio.io/WorkloadEntry/shop/ratings-vm-1".to_owned(),
    );
    let expected = BTreeSet::from([
        policy("shop/reviews-allow"),
        workload("shop", "reviews-0"),
        workload("shop", "reviews-1"),
        vm,
    ]);
    assert_eq!(change.retranslated, expected);
    // the policy's content did not change (same rules), only who lists it
    assert_eq!(
        change.updated,
        expected
            .iter()
            .filter(|k| k.type_url == ADDRESS.type_url)
            .cloned()
            .collect()
    );
}

#[test]
fn unchanged_object_pushes_nothing() {
    let objects = mesh_objects();
    let mut translator = translator_for(&objects);
    let snapshot = ConfigSnapshot::new(objects.clone());
    let target = object_ref(Kind::Service, Some("shop"), "reviews");
    let change = translator.apply_change(&snapshot, &[target]);
    assert!(change.retranslated.contains(&ResourceKey::address(
        "shop/reviews.shop.svc.cluster.local".to_owned()
    )));
    assert!(change.is_empty(), "same content, same versions: {change:?}");
}

#[test]
fn assorted_edits_match_full_translation() {
    type Edit = (ObjectRef, fn(&mut Object) -> bool);
    let edits: Vec<Edit> = vec![
        (object_ref(Kind::Service, Some("web"), "frontend"), |_| {
            false
        }),
        (object_ref(Kind::Namespace, None, "web"), |object| {
            object.metadata_mut().labels = None;
            true
        }),
        (
            object_ref(Kind::PeerAuthentication, Some("shop"), "reviews-metrics"),
            |_| false,
        ),
        (
            object_ref(Kind::PeerAuthentication, Some("istio-system"), "mesh"),
            |object| {
                let Object::PeerAuthentication(pa) = object else {
                    return true;
                };
                pa.spec.mtls = None;
                true
            },
        ),
        (
            object_ref(Kind::Deployment, Some("web"), "frontend"),
            |object| {
                let Object::Deployment(deployment) = object else {
                    return true;
                };
                deployment.spec.get_or_insert_default().replicas = Some(3);
                true
            },
        ),
        (
            object_ref(Kind::WorkloadEntry, Some("shop"), "ratings-vm-1"),
            |_| false,
        ),
        (
            object_ref(Kind::Gateway, Some("shop"), "waypoint"),
            |object| {
                let labels = object.metadata_mut().labels.get_or_insert_default();
                labels.insert("istio.io/waypoint-for".to_owned(), "workload".to_owned());
                true
            },
        ),
        (
            object_ref(Kind::ServiceEntry, Some("shop"), "payments"),
            |object| {
                let Object::ServiceEntry(entry) = object else {
                    return true;
                };
                entry.spec.hosts.push("api2.payments.example".to_owned());
                true
            },
        ),
        (object_ref(Kind::Node, None, "node-a"), |_| false),
        (
            object_ref(Kind::AuthorizationPolicy, Some("shop"), "audit-all"),
            |object| {
                let Object::AuthorizationPolicy(policy) = object else {
                    return true;
                };
                policy.spec.action = None;
                true
            },
        ),
    ];
    let mut objects = mesh_objects();
    let mut translator = translator_for(&objects);
    let total = translator.output().resource_count();
    for (target, edit) in edits {
        let new = edited(&objects, &target, edit);
        let change = step(&mut translator, &objects, new.clone());
        assert!(!change.is_empty(), "editing {target} changes something");
        assert!(
            change.retranslated.len() < total + 4,
            "{target}: {} keys",
            change.retranslated.len()
        );
        objects = new;
    }
}

#[test]
fn adding_a_policy_reaches_the_workloads_it_selects() {
    let objects = mesh_objects();
    let mut translator = translator_for(&objects);
    let mut new = objects.clone();
    let text = r"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: frontend-allow, namespace: web}
spec:
  selector: {matchLabels: {app: frontend}}
  rules: [{from: [{source: {namespaces: [shop]}}]}]
";
    new.extend(weft_api::parse_manifests(text, std::path::Path::new("added.yaml")).objects);
    let change = step(&mut translator, &objects, new);
    let expected = BTreeSet::from([
        policy("web/frontend-allow"),
        workload("web", "debug"),
        workload("web", "frontend-0"),
        workload("web", "frontend-1"),
    ]);
    assert_eq!(change.retranslated, expected);
    assert_eq!(change.updated, expected);
}
