use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;

use super::*;

fn options(dir: &Path) -> InstallOptions {
    InstallOptions {
        bin_dir: dir.join("bin"),
        conf_dir: dir.join("net.d"),
        socket: PathBuf::from("/var/run/weft/cni.sock"),
        exclude_namespaces: vec!["kube-system".into()],
    }
}

fn write(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, value.to_string()).unwrap();
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn types(list: &Value) -> Vec<String> {
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_owned())
        .collect()
}

fn bridge_list(name: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name,
           "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}]})
}

/// A file standing in for the weft binary.
fn fake_binary(dir: &Path) -> PathBuf {
    let path = dir.join("weft");
    std::fs::write(&path, b"#!/bin/sh\n").unwrap();
    path
}

#[test]
fn install_chains_the_first_list_only_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let first = opts.conf_dir.join("10-pods.conflist");
    let second = opts.conf_dir.join("20-other.conflist");
    write(&first, &bridge_list("pods"));
    write(&second, &bridge_list("other"));
    std::fs::write(opts.conf_dir.join("00-notes.txt"), "not a config").unwrap();

    let chained = install(&opts, &fake_binary(dir.path())).unwrap();
    assert_eq!(
        chained,
        Chained {
            path: first.clone(),
            changed: true
        }
    );
    assert_eq!(types(&read(&first)), ["bridge", "weft-cni"]);
    assert_eq!(
        read(&first)["plugins"][1]["socket"],
        "/var/run/weft/cni.sock"
    );
    assert_eq!(read(&second), bridge_list("other"));
    let binary = opts.bin_dir.join("weft-cni");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&binary).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755);

    let again = install(&opts, &fake_binary(dir.path())).unwrap();
    assert!(!again.changed);
    assert_eq!(types(&read(&first)), ["bridge", "weft-cni"]);
    // no temporary files left behind
    let hidden = std::fs::read_dir(&opts.conf_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(hidden, 0);
}

#[test]
fn a_single_conf_is_replaced_by_a_list_of_the_same_stem() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let conf = opts.conf_dir.join("05-bridge.conf");
    write(
        &conf,
        &json!({"cniVersion": "0.4.0", "name": "pods", "type": "bridge", "ipam": {"type": "host-local"}}),
    );
    let chained = chain(&opts).unwrap();
    assert_eq!(chained.path, opts.conf_dir.join("05-bridge.conflist"));
    assert!(!conf.exists());
    let list = read(&chained.path);
    assert_eq!(list["cniVersion"], "0.4.0");
    assert_eq!(types(&list), ["bridge", "weft-cni"]);
}

#[test]
fn uninstall_takes_the_entry_and_binary_away_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let path = opts.conf_dir.join("10-pods.conflist");
    write(&path, &bridge_list("pods"));
    install(&opts, &fake_binary(dir.path())).unwrap();
    assert_eq!(uninstall(&opts).unwrap(), vec![path.clone()]);
    assert_eq!(read(&path), bridge_list("pods"));
    assert!(!opts.bin_dir.join("weft-cni").exists());
    assert!(uninstall(&opts).unwrap().is_empty());
}

#[test]
fn nothing_to_chain_to_and_broken_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    std::fs::create_dir_all(&opts.conf_dir).unwrap();
    assert!(matches!(chain(&opts), Err(InstallError::NoConfig(_))));
    std::fs::write(opts.conf_dir.join("10-x.conflist"), "{ broken").unwrap();
    let error = chain(&opts).unwrap_err().to_string();
    assert!(
        error.contains("10-x.conflist") && error.contains("not JSON"),
        "{error}"
    );
}

#[test]
fn watch_puts_the_entry_back_after_the_cluster_cni_rewrites_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let path = opts.conf_dir.join("10-pods.conflist");
    write(&path, &bridge_list("pods"));
    let running = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (opts, running) = (opts.clone(), Arc::clone(&running));
        std::thread::spawn(move || {
            let mut reports = 0;
            watch(
                &opts,
                Duration::from_millis(20),
                &|| running.load(Ordering::SeqCst),
                &mut |_| {
                    reports += 1;
                },
            );
            reports
        })
    };
    let chained = || types(&read(&path)).last().is_some_and(|t| t == "weft-cni");
    let wait_until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_until("the first chaining", &chained);
    // The cluster's CNI agent writes its file again, without weft-cni.
    let tmp = opts.conf_dir.join(".rewrite");
    std::fs::write(&tmp, bridge_list("pods").to_string()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_until("the entry to come back", &chained);
    running.store(false, Ordering::SeqCst);
    assert!(watcher.join().unwrap() >= 2, "each re-chaining is reported");
}
