//! Hostile config input: real FIFOs, symlinks, huge and deeply nested files, directories
//! moved away or made unreadable, in temporary directories. Work that could hang runs on a
//! thread with a deadline, so a regression fails instead of stalling the suite.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use weft_api::{Code, ConfigEvent, ConfigStore, Kind, LoadedObject};

const DEADLINE: Duration = Duration::from_secs(20);

fn service_account(name: &str) -> String {
    format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: demo\n")
}

/// `count` ServiceAccounts as one multi-document file.
fn many_service_accounts(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("---\n{}", service_account(&format!("{prefix}-{i}"))))
        .collect()
}

/// Runs `work` on its own thread; panics if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}: it hangs or stalls"))
}

fn codes_for(findings: &[weft_api::Finding], file: &Path) -> Vec<Code> {
    findings
        .iter()
        .filter(|f| f.source.file == file)
        .map(|f| f.code)
        .collect()
}

#[test]
fn a_fifo_or_a_symlink_to_dev_zero_named_yaml_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    std::fs::write(root.join("good.yaml"), service_account("good")).unwrap();
    let fifo = root.join("pipe.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let zero = root.join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();

    let loaded = within(DEADLINE, move || weft_api::load_paths(&[root]));
    assert_eq!(loaded.objects.len(), 1, "{:?}", loaded.findings);
    for (file, what) in [(&fifo, "a FIFO"), (&zero, "a character device")] {
        assert_eq!(codes_for(&loaded.findings, file), [Code::NotARegularFile]);
        let finding = loaded
            .findings
            .iter()
            .find(|f| f.source.file == *file)
            .unwrap();
        assert!(finding.message.contains(what), "{finding}");
    }
}

#[test]
fn symlink_loops_are_walked_once_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("a.yaml"), service_account("a")).unwrap();
    std::fs::write(root.join("sub/b.yaml"), service_account("b")).unwrap();
    // without tracking, two links back to the root at each level is a walk of 2^40 paths
    for (link, target) in [("l1", ".."), ("l2", ".."), ("l3", "../sub")] {
        std::os::unix::fs::symlink(target, root.join("sub").join(link)).unwrap();
    }
    std::os::unix::fs::symlink(".", root.join("self")).unwrap();

    let walk_root = root.clone();
    let (files, findings) = within(DEADLINE, move || {
        weft_api::load::collect_manifest_files(&[walk_root])
    });
    assert_eq!(files, [root.join("a.yaml"), root.join("sub/b.yaml")]);
    let loops: Vec<_> = findings
        .iter()
        .filter(|f| f.code == Code::DirectoryLoop)
        .collect();
    assert_eq!(loops.len(), 4, "{findings:?}");
    assert!(loops[0].message.contains("already read"), "{}", loops[0]);
}

#[test]
fn yaml_nested_100k_deep_is_refused_by_the_depth_limit_at_once() {
    let cases = [
        ("flow.yaml", format!("kind: {}\n", "[".repeat(100_000))),
        ("map.yaml", format!("a: 1\nb: {}\n", "{a: ".repeat(100_000))),
        ("block.yaml", format!("{}x\n", "- ".repeat(100_000))),
    ];
    let started = Instant::now();
    for (name, text) in cases {
        let loaded = within(DEADLINE, move || {
            weft_api::parse_manifests(&text, Path::new(name))
        });
        assert!(loaded.objects.is_empty());
        let [finding] = &loaded.findings[..] else {
            panic!("{name}: {:?}", loaded.findings)
        };
        assert_eq!(finding.code, Code::OverLimit, "{finding}");
        assert!(
            finding.message.contains("deeper than 128 levels"),
            "{finding}"
        );
        assert_eq!(finding.source.line, if name == "map.yaml" { 2 } else { 1 });
    }
    // the previous parser spent seconds (flow) to minutes (flow maps) on these
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_document_over_the_size_limit_is_refused_and_the_next_one_read() {
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{}\"\n",
        "a".repeat(weft_api::load::MAX_DOCUMENT_BYTES)
    );
    let text = format!("{big}---\n{}", service_account("after"));
    let loaded = weft_api::parse_manifests(&text, Path::new("big.yaml"));
    assert_eq!(loaded.objects.len(), 1);
    assert_eq!(loaded.findings.len(), 1, "{:?}", loaded.findings);
    assert_eq!(loaded.findings[0].code, Code::OverLimit);
    assert!(loaded.findings[0].message.contains("bytes, over the limit"));
}

#[test]
fn a_20_mb_file_of_195k_objects_is_refused_at_once_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), service_account("kept")).unwrap();
    let huge = dir.path().join("huge.yaml");
    let text = many_service_accounts("flood-of-service-accounts", 195_000);
    assert!(text.len() > 20_000_000, "{}", text.len());
    std::fs::write(&huge, text).unwrap();

    let root = dir.path().to_owned();
    let started = Instant::now();
    let store = within(DEADLINE, move || ConfigStore::open(&root).unwrap());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "opening took {took:?}");
    assert_eq!(store.snapshot().objects().len(), 1);
    let errors = store.file_errors();
    assert_eq!(codes_for(&errors, &huge), [Code::OverLimit], "{errors:?}");
    assert!(
        errors[0].message.contains("over the limit"),
        "{}",
        errors[0]
    );
}

#[test]
fn reloads_cost_the_change_and_a_removed_file_leaves_nothing_behind() {
    const OBJECTS: usize = 8_000;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, many_service_accounts("sa", OBJECTS)).unwrap();
    // the cost of reading the file once is the yardstick (debug builds are slow)
    let started = Instant::now();
    assert_eq!(weft_api::load_file(&big).objects.len(), OBJECTS);
    let parse = started.elapsed();

    let empty = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(empty.path()).unwrap();
    let mut events = store.subscribe();
    std::fs::rename(&big, empty.path().join("big.yaml")).unwrap();
    let started = Instant::now();
    assert_eq!(store.reload().len(), OBJECTS);
    let added = started.elapsed();
    // before, each object was looked up by a linear search of its file: minutes
    assert!(
        added < parse * 3 + Duration::from_secs(1),
        "add {added:?}, parse {parse:?}"
    );

    let mut alive: Vec<Weak<LoadedObject>> = Vec::new();
    while let Ok(event) = events.try_recv() {
        let ConfigEvent::Added(object) = event else {
            panic!("{event:?}")
        };
        alive.push(Arc::downgrade(&object));
    }
    assert_eq!(alive.len(), OBJECTS);

    std::fs::remove_file(empty.path().join("big.yaml")).unwrap();
    let started = Instant::now();
    let deleted = store.reload();
    assert!(started.elapsed() < parse + Duration::from_secs(1));
    assert_eq!(deleted.len(), OBJECTS);
    drop(deleted);
    while events.try_recv().is_ok() {}
    assert!(
        alive.iter().all(|object| object.upgrade().is_none()),
        "the store keeps objects of a removed file"
    );
    assert!(store.snapshot().objects().is_empty());
}

#[test]
fn a_config_directory_moved_away_keeps_its_objects_and_says_so() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("config");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.yaml"), service_account("a")).unwrap();
    let store = ConfigStore::open(&root).unwrap();

    std::fs::rename(&root, parent.path().join("elsewhere")).unwrap();
    assert_eq!(store.reload(), [], "nothing is deleted");
    assert!(
        store
            .snapshot()
            .contains(Kind::ServiceAccount, Some("demo"), "a")
    );
    let errors = store.file_errors();
    assert_eq!(codes_for(&errors, &root), [Code::ReadError], "{errors:?}");
    assert!(errors[0].message.contains("stay in force"), "{}", errors[0]);

    std::fs::rename(parent.path().join("elsewhere"), &root).unwrap();
    assert_eq!(store.reload(), []);
    assert!(store.file_errors().is_empty());
}

/// Runs `work` on a thread whose file access is checked as user `nobody` (the file-system
/// uid is per thread; leaving uid 0 drops the capabilities that bypass permissions).
fn as_nobody<T: Send + 'static>(probe: PathBuf, work: impl FnOnce() -> T + Send + 'static) -> T {
    within(DEADLINE, move || {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(65534));
        assert!(
            std::fs::read_dir(&probe).is_err(),
            "setfsuid did not take away access to {}: this test needs root",
            probe.display()
        );
        work()
    })
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn unreadable_directories_keep_their_objects_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let sub = root.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(root.join("a.yaml"), service_account("a")).unwrap();
    std::fs::write(sub.join("b.yaml"), service_account("b")).unwrap();
    chmod(&root, 0o755);
    let store = ConfigStore::open(&root).unwrap();
    assert_eq!(store.snapshot().objects().len(), 2);

    // a subdirectory: reported, its objects kept, the rest still followed
    chmod(&sub, 0o700);
    std::fs::write(root.join("c.yaml"), service_account("c")).unwrap();
    let reloading = Arc::clone(&store);
    let events = as_nobody(sub.clone(), move || reloading.reload());
    assert_eq!(
        events
            .iter()
            .map(ConfigEvent::object_ref)
            .map(|r| r.name)
            .collect::<Vec<_>>(),
        ["c"]
    );
    assert_eq!(store.snapshot().objects().len(), 3);
    let errors = store.file_errors();
    assert_eq!(codes_for(&errors, &sub), [Code::ReadError], "{errors:?}");

    // the whole directory
    chmod(&root, 0o700);
    let reloading = Arc::clone(&store);
    assert_eq!(as_nobody(root.clone(), move || reloading.reload()), []);
    assert_eq!(store.snapshot().objects().len(), 3);
    assert_eq!(codes_for(&store.file_errors(), &root), [Code::ReadError]);

    chmod(&root, 0o755);
    assert_eq!(store.reload(), []);
    assert!(store.file_errors().is_empty());
}
