//! The watched ConfigStore: real files in a temporary directory, real inotify events.
//! No sleeps: each test waits on the event channel with a timeout.

use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use weft_api::{ConfigEvent, ConfigStore};

const DEBOUNCE: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(10);

fn service_account(name: &str, label: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    v: \"{label}\"\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    // Write then rename, as editors and `kubectl`-style tools do, so the watcher never
    // sees a half-written file.
    let temp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, dir.join(file)).unwrap();
}

async fn next_events(
    events: &mut UnboundedReceiver<ConfigEvent>,
    count: usize,
) -> Vec<ConfigEvent> {
    let mut out = Vec::new();
    while out.len() < count {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("timed out waiting for a config event");
        out.push(event.expect("store dropped"));
    }
    out
}

fn describe(event: &ConfigEvent) -> String {
    let kind = match event {
        ConfigEvent::Added(_) => "added",
        ConfigEvent::Updated { .. } => "updated",
        ConfigEvent::Deleted(_) => "deleted",
    };
    format!("{kind} {}", event.object_ref())
}

#[tokio::test]
async fn watch_emits_add_update_delete_and_keeps_last_good_objects_of_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service_account("alpha", "1"));
    let store = ConfigStore::open(dir.path()).unwrap();
    assert_eq!(store.snapshot().objects().len(), 1);
    let mut events = store.subscribe();
    let _watch = store.watch(DEBOUNCE).unwrap();

    // add a file in a subdirectory
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(
        &dir.path().join("sub"),
        "b.yaml",
        &service_account("beta", "1"),
    );
    let added = next_events(&mut events, 1).await;
    assert_eq!(
        added.iter().map(describe).collect::<Vec<_>>(),
        ["added ServiceAccount/demo/beta"]
    );

    // edit
    write(dir.path(), "a.yaml", &service_account("alpha", "2"));
    let updated = next_events(&mut events, 1).await;
    let ConfigEvent::Updated { old, new } = &updated[0] else {
        panic!("{updated:?}")
    };
    assert_eq!(
        (old.object.label("v"), new.object.label("v")),
        (Some("1"), Some("2"))
    );

    // break: the object stays, the error is exposed
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: [unclosed\n",
    );
    let generation = store.generation();
    wait_for(|| store.generation() > generation).await;
    assert!(
        store
            .snapshot()
            .contains(weft_api::Kind::ServiceAccount, Some("demo"), "alpha")
    );
    let errors = store.file_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, weft_api::Code::YamlSyntax);
    assert!(errors[0].source.file.ends_with("a.yaml"));

    // fix it with a new version: one update, error gone
    write(dir.path(), "a.yaml", &service_account("alpha", "3"));
    let fixed = next_events(&mut events, 1).await;
    assert_eq!(
        fixed.iter().map(describe).collect::<Vec<_>>(),
        ["updated ServiceAccount/demo/alpha"]
    );
    assert!(store.file_errors().is_empty());

    // delete
    std::fs::remove_file(dir.path().join("sub/b.yaml")).unwrap();
    let deleted = next_events(&mut events, 1).await;
    assert_eq!(
        deleted.iter().map(describe).collect::<Vec<_>>(),
        ["deleted ServiceAccount/demo/beta"]
    );
    assert!(events.try_recv().is_err(), "no extra events");
}

#[tokio::test]
async fn a_burst_of_writes_is_debounced_into_one_reload() {
    let dir = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(dir.path()).unwrap();
    let mut events = store.subscribe();
    let _watch = store.watch(Duration::from_millis(300)).unwrap();
    for version in 0..5 {
        write(
            dir.path(),
            "burst.yaml",
            &service_account("burst", &version.to_string()),
        );
    }
    let first = next_events(&mut events, 1).await;
    let ConfigEvent::Added(object) = &first[0] else {
        panic!("{first:?}")
    };
    assert_eq!(
        object.object.label("v"),
        Some("4"),
        "the burst ends in one add of the last version"
    );
}

#[test]
fn reload_without_watching_reports_changes_directly() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "x.yaml", &service_account("x", "1"));
    let store = ConfigStore::open(dir.path()).unwrap();
    write(
        dir.path(),
        "x.yaml",
        &format!(
            "{}---\n{}",
            service_account("x", "1"),
            service_account("y", "1")
        ),
    );
    let events = store.reload();
    assert_eq!(
        events.iter().map(describe).collect::<Vec<_>>(),
        ["added ServiceAccount/demo/y"]
    );
    assert!(store.reload().is_empty(), "nothing changed");
    assert!(ConfigStore::open(&dir.path().join("missing")).is_err());
}

async fn wait_for(condition: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

#[test]
fn reload_follows_the_first_definer_of_a_duplicated_object_and_in_place_edits() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service_account("dup", "from-a"));
    write(dir.path(), "b.yaml", &service_account("dup", "from-b"));
    let store = ConfigStore::open(dir.path()).unwrap();
    assert!(
        store.reload().is_empty(),
        "a reload without edits changes nothing"
    );

    // the first file (path order) wins; removing it hands the object to the second file
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let events = store.reload();
    assert_eq!(
        events.iter().map(describe).collect::<Vec<_>>(),
        ["updated ServiceAccount/demo/dup"]
    );
    let ConfigEvent::Updated { new, .. } = &events[0] else {
        unreachable!()
    };
    assert!(format!("{:?}", new.object).contains("from-b"));

    // an edit in place (same inode, same size) is still seen
    std::fs::write(dir.path().join("b.yaml"), service_account("dup", "from-c")).unwrap();
    let events = store.reload();
    assert_eq!(
        events.iter().map(describe).collect::<Vec<_>>(),
        ["updated ServiceAccount/demo/dup"]
    );

    // the last definer gone: the object is deleted
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let events = store.reload();
    assert_eq!(
        events.iter().map(describe).collect::<Vec<_>>(),
        ["deleted ServiceAccount/demo/dup"]
    );
    assert!(store.snapshot().objects().is_empty());
}
