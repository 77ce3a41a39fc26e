//! Control-plane scale figures (run by `bench/control-plane.sh`): generates a mesh of YAML
//! files (default 10,000 pods, 1,000 services), measures load and translation in this
//! process, then runs the real `weft control` binary as its own process (so its RSS is its
//! alone), connects spec clients (default 100, each its own TLS connection and delta ADS
//! stream), and measures the full push to all of them and, over repeated policy-file
//! edits, the latency from the file write to the delta reaching every client. Prints a
//! Markdown table.
//!
//! `control_plane_bench --weft PATH [--small] [--clients N] [--edits N]`, or
//! `control_plane_bench [--small] --generate-only DIR` to just write the mesh.

#![allow(dead_code)] // shares the test support modules, not all of which it uses

#[path = "../tests/process_support/client.rs"]
mod client;
#[path = "../tests/process_support/mesh.rs"]
mod mesh;
#[path = "../tests/process_support/swarm.rs"]
mod swarm;

use mesh::{EDITED_FILE, EDITED_POLICY, MeshSize, expected_names, policy_yaml, write_mesh};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_control::translate::{TranslateOptions, Translator};

const TOKEN: &str = "bench-node-token-0123456789";
const WAIT: Duration = Duration::from_secs(300);

struct Args {
    weft: PathBuf,
    size: MeshSize,
    clients: usize,
    edits: usize,
    /// Only write the mesh here and exit (to profile `weft control` on it by hand).
    generate_only: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        weft: PathBuf::from("target/release/weft"),
        size: MeshSize::LARGE,
        clients: 100,
        edits: 20,
        generate_only: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || {
            argv.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--weft" => args.weft = PathBuf::from(value()),
            "--small" => args.size = MeshSize::SMALL,
            "--clients" => args.clients = value().parse().expect("--clients N"),
            "--edits" => args.edits = value().parse().expect("--edits N"),
            "--generate-only" => args.generate_only = Some(PathBuf::from(value())),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// One row of the output table.
struct Row(String, String, String);

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.generate_only {
        std::fs::create_dir_all(dir).expect("output dir");
        write_mesh(dir, &args.size).expect("write mesh");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    write_mesh(&config_dir, &args.size).expect("write mesh");
    let mut rows = vec![Row(
        "mesh".into(),
        format!(
            "{} pods, {} services",
            args.size.pods(),
            args.size.services()
        ),
        "generated YAML: 1 Deployment + 1 Service per file".into(),
    )];
    let expected = translation_figures(&config_dir, &mut rows);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(process_figures(&args, dir.path(), expected, &mut rows));
    print_table(&args, &rows);
}

/// Load (YAML parse + expansion) and full translation, best of 3, in this process.
fn translation_figures(config_dir: &Path, rows: &mut Vec<Row>) -> swarm::Expected {
    let mut load = Duration::MAX;
    let mut translate = Duration::MAX;
    let mut last = None;
    for _ in 0..3 {
        let started = Instant::now();
        let store = weft_api::ConfigStore::open(config_dir).expect("config dir");
        let snapshot = store.snapshot();
        load = load.min(started.elapsed());
        let started = Instant::now();
        let mut translator = Translator::new(TranslateOptions::default());
        translator.full(&snapshot);
        translate = translate.min(started.elapsed());
        last = Some(translator.into_output());
    }
    let output = last.expect("translated");
    rows.push(Row(
        "load config dir".into(),
        ms(load),
        "read + parse + expand, best of 3".into(),
    ));
    rows.push(Row(
        "full translation".into(),
        ms(translate),
        "Translator::full, best of 3".into(),
    ));
    rows.push(Row(
        "resources / first-push size".into(),
        format!(
            "{} / {:.1} MB",
            output.resource_count(),
            mb(output.encoded_size())
        ),
        "encoded protobuf bytes of every resource".into(),
    ));
    expected_names(&output)
}

async fn process_figures(args: &Args, dir: &Path, expected: swarm::Expected, rows: &mut Vec<Row>) {
    let secure = free_port();
    let admin = free_port();
    std::fs::write(
        dir.join("tokens.yaml"),
        format!("tokens:\n  - token: {TOKEN}\n    node: node-00\n"),
    )
    .expect("token file");
    let started = Instant::now();
    let mut control = ControlProcess::spawn(&args.weft, dir, secure, admin);
    wait_ready(admin, &mut control).await;
    rows.push(Row(
        "`weft control` start to ready".into(),
        ms(started.elapsed()),
        "spawn -> /ready answers (CA, load, translate, bind)".into(),
    ));
    rows.push(Row(
        "RSS idle".into(),
        control.rss(),
        "VmRSS after start, no clients".into(),
    ));

    let root = client::root_pem(&dir.join("state"));
    let channels = swarm::connect_all(secure, &root, args.clients)
        .await
        .expect("connect");
    let push_started = Instant::now();
    let mut clients = swarm::start(channels, TOKEN, &Arc::new(expected));
    let synced = clients.wait_synced(WAIT).await;
    let last = synced.iter().max().expect("clients");
    rows.push(Row(
        format!("full push to {} clients", args.clients),
        ms(*last - push_started),
        "streams opened at once -> last client holds every resource (ACKing each response)".into(),
    ));
    rows.push(Row(
        format!("RSS with {} clients synced", args.clients),
        control.rss(),
        format!("VmRSS; peak VmHWM {}", control.status_field("VmHWM")),
    ));

    let (to_all, per_client) = edit_latencies(args, dir, &mut clients).await;
    rows.push(Row(
        format!("edit -> delta at all {} clients", args.clients),
        format!(
            "p50 {} / p99 {} / max {}",
            ms(pct(&to_all, 50)),
            ms(pct(&to_all, 99)),
            ms(pct(&to_all, 100))
        ),
        format!(
            "{} policy-file edits; file write -> last client has the changed policy",
            args.edits
        ),
    ));
    rows.push(Row(
        "edit -> delta per client".into(),
        format!(
            "p50 {} / p99 {}",
            ms(pct(&per_client, 50)),
            ms(pct(&per_client, 99))
        ),
        format!("{} samples", per_client.len()),
    ));
    rows.push(Row(
        "RSS after the edits".into(),
        control.rss(),
        format!("VmRSS; peak VmHWM {}", control.status_field("VmHWM")),
    ));
}

async fn edit_latencies(
    args: &Args,
    dir: &Path,
    clients: &mut swarm::Swarm,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut to_all = Vec::new();
    let mut per_client = Vec::new();
    let path = dir.join("config").join(EDITED_FILE);
    for revision in 1..=args.edits {
        let written = Instant::now();
        std::fs::write(&path, policy_yaml("ns-0", revision)).expect("edit");
        let arrival = clients.wait_update(EDITED_POLICY, WAIT).await;
        let latencies: Vec<Duration> = arrival.arrivals.iter().map(|at| *at - written).collect();
        to_all.push(latencies.iter().copied().max().expect("clients"));
        per_client.extend(latencies);
        // Pacing, not synchronisation (every client already has this edit): the next edit
        // starts after a quiet moment, as separate human edits would.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    to_all.sort();
    per_client.sort();
    (to_all, per_client)
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], percentile: usize) -> Duration {
    let rank = (sorted.len() * percentile).div_ceil(100).max(1);
    sorted[rank - 1]
}

struct ControlProcess(Child);

impl ControlProcess {
    fn spawn(weft: &Path, dir: &Path, secure: SocketAddr, admin: SocketAddr) -> Self {
        let log = std::fs::File::create(dir.join("control.log")).expect("log file");
        let child = Command::new(weft)
            .arg("control")
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--token-file")
            .arg(dir.join("tokens.yaml"))
            .args([
                "--secure-addr",
                &secure.to_string(),
                "--admin-addr",
                &admin.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("{}: {err}", weft.display()));
        Self(child)
    }

    fn status_field(&self, field: &str) -> String {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).expect("/proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|kb| {
                let kb: f64 = kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0.0);
                format!("{:.0} MB", kb / 1024.0)
            })
            .unwrap_or_default()
    }

    fn rss(&self) -> String {
        self.status_field("VmRSS")
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(admin: SocketAddr, control: &mut ControlProcess) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = weft_serve::get(&admin.to_string(), "/ready").await;
        if ready.is_ok_and(|(status, _)| status.is_success()) {
            return;
        }
        if let Ok(Some(exit)) = control.0.try_wait() {
            panic!("weft control exited: {exit}");
        }
        assert!(Instant::now() < deadline, "weft control not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port free right now (the bench is not a test: a rare race just fails the run).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr")
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

#[allow(clippy::cast_precision_loss)]
fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "\n| figure ({} clients, {} edits) | value | how |\n|---|---|---|",
        args.clients, args.edits
    );
    for Row(figure, value, how) in rows {
        println!("| {figure} | {value} | {how} |");
    }
}
