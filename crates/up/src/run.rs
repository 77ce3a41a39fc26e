//! `weft up`'s life cycle: pick the mode (network namespaces as root, else explicit mode on
//! loopback), check prerequisites, claim the instance, plan the config, bring the mesh up,
//! print the table, (optionally) run the demo, follow edits of the directory, and remove
//! everything on shutdown.

use crate::layout::Layout;
use crate::loopback::{self, LoopbackConfig};
use crate::mesh::{Mesh, MeshSettings, remove_instance_dir};
use crate::plan::MeshPlan;
use crate::{UpError, bundled, demo, table};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weft_api::{ConfigStore, Severity};
use weft_control::translate::TranslateOptions;

/// How long edits to the directory must settle before they are applied.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// Everything `weft up` is told on its command line.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The manifests; `None` runs the bundled example mesh.
    pub config_dir: Option<PathBuf>,
    /// Where instances keep their files (`<state_dir>/<prefix>/`).
    pub state_dir: PathBuf,
    /// Prefix of every namespace name (`[a-z0-9]{1,16}`).
    pub prefix: String,
    /// The weft binary to run components and `weft` containers with.
    pub weft: PathBuf,
    /// Run the scripted tour once the mesh is ready.
    pub demo: bool,
    /// Stop after the demo (for tests and scripts) instead of staying in the foreground.
    pub exit_after_demo: bool,
    /// How long to wait for the control plane and node proxies.
    pub ready_timeout: Duration,
    /// Translation settings (must match what `weft control` uses: its defaults).
    pub translate: TranslateOptions,
    /// Run in explicit mode on loopback even as root (without root it always does).
    pub explicit: bool,
    /// Where to serve the dashboard (`None`: no dashboard).
    pub dashboard: Option<std::net::SocketAddr>,
    /// Share of requests waypoints and gateways trace (0..1), keeping the last spans for
    /// the dashboard's Traces panel (`None`: tracing off).
    pub trace_sampling: Option<f64>,
}

impl UpConfig {
    /// The bundled mesh, defaults everywhere.
    #[must_use]
    pub fn new(state_dir: PathBuf, prefix: &str, weft: PathBuf) -> Self {
        Self {
            config_dir: None,
            state_dir,
            prefix: prefix.to_owned(),
            weft,
            demo: false,
            exit_after_demo: false,
            ready_timeout: Duration::from_secs(30),
            translate: TranslateOptions::default(),
            explicit: false,
            dashboard: weft_dashboard::DEFAULT_LISTEN.parse().ok(),
            trace_sampling: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpOutcome {
    /// `--demo` ran and some step did not go as expected.
    pub demo_failed: bool,
}

/// Runs `weft up` until `shutdown` completes (or after the demo with `exit_after_demo`),
/// then removes everything it made. Progress goes to stdout.
///
/// # Errors
/// Prerequisites, config, namespaces or components failed; what was made is removed again.
pub async fn run(
    config: UpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<UpOutcome, UpError> {
    let explicit = config.explicit || !nix::unistd::geteuid().is_root();
    if explicit {
        println!("{}", loopback::start_message(config.explicit));
    } else {
        weft_netns::check_prerequisites().map_err(|e| UpError::Prerequisite(e.to_string()))?;
    }
    let layout = Layout::new(&config.state_dir, &config.prefix);
    claim_instance(&layout, explicit)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let (cancel, stop) = (Arc::clone(&cancel), Arc::clone(&stop));
        tokio::spawn(async move {
            shutdown.await;
            cancel.store(true, Ordering::Relaxed);
            stop.notify_one();
        });
    }
    let result = match open_config(&config, &layout) {
        Ok((store, config_dir)) => {
            let started = tokio::task::block_in_place(|| {
                let planner = Planner::new(explicit, &layout)?;
                start(&config, &layout, &store, config_dir, planner, &cancel)
            });
            match started {
                Ok((mesh, planner)) => serve(&config, mesh, planner, &store, &stop, &cancel).await,
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Start-up failed after the instance was claimed: leave nothing behind.
        if !explicit {
            let _ = weft_netns::teardown(layout.root(), layout.prefix());
        }
        let _ = remove_instance_dir(&layout);
    }
    result
}

/// How the config becomes a plan: as written (network namespaces), or on loopback
/// addresses with the effective config `weft control` reads (explicit mode).
#[derive(Debug)]
enum Planner {
    Namespaces,
    Loopback(Box<LoopbackConfig>),
}

impl Planner {
    fn new(explicit: bool, layout: &Layout) -> Result<Self, UpError> {
        Ok(if explicit {
            Self::Loopback(Box::new(LoopbackConfig::new(layout)?))
        } else {
            Self::Namespaces
        })
    }

    fn plan(
        &mut self,
        store: &ConfigStore,
        options: &TranslateOptions,
    ) -> Result<MeshPlan, UpError> {
        let snapshot = store.snapshot();
        Ok(match self {
            Self::Namespaces => MeshPlan::build(&snapshot, options)?,
            Self::Loopback(config) => config.plan(&snapshot, options)?,
        })
    }
}

/// Makes the instance directory ours: refuses when another live `weft up` owns it, cleans
/// up after one that crashed, then writes our pid.
fn claim_instance(layout: &Layout, explicit: bool) -> Result<(), UpError> {
    if let Some(pid) = crate::down::running_pid(layout) {
        return Err(UpError::AlreadyRunning {
            prefix: layout.prefix().to_owned(),
            pid,
        });
    }
    let leftovers = layout.root().exists()
        || !explicit
            && weft_netns::list_netns()?
                .iter()
                .any(|ns| ns.name().starts_with(&format!("{}-", layout.prefix())));
    if leftovers {
        println!(
            "cleaning up what a previous `weft up --prefix {}` left behind",
            layout.prefix()
        );
        crate::down::remove_instance(layout)?;
    }
    let file = |op| {
        move |source| UpError::File {
            op,
            path: layout.pid_file(),
            source,
        }
    };
    std::fs::create_dir_all(layout.root()).map_err(file("create the directory of"))?;
    std::fs::write(layout.pid_file(), std::process::id().to_string()).map_err(file("write"))
}

/// The config store and the directory `weft control` reads.
fn open_config(config: &UpConfig, layout: &Layout) -> Result<(Arc<ConfigStore>, PathBuf), UpError> {
    let dir = match &config.config_dir {
        Some(dir) => std::path::absolute(dir).map_err(|source| UpError::File {
            op: "resolve",
            path: dir.clone(),
            source,
        })?,
        None => {
            let dir = layout.bundled_config_dir();
            bundled::write_to(&dir).map_err(|source| UpError::File {
                op: "write the bundled examples to",
                path: dir.clone(),
                source,
            })?;
            dir
        }
    };
    let store = ConfigStore::open(&dir)?;
    let errors: Vec<String> = store
        .file_errors()
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(UpError::Config {
            dir: dir.display().to_string(),
            errors: errors.join("\n"),
        });
    }
    Ok((store, dir))
}

fn start(
    config: &UpConfig,
    layout: &Layout,
    store: &ConfigStore,
    config_dir: PathBuf,
    mut planner: Planner,
    cancel: &Arc<AtomicBool>,
) -> Result<(Mesh, Planner), UpError> {
    let plan = planner.plan(store, &config.translate)?;
    for skipped in &plan.skipped {
        println!("not started: {skipped}");
    }
    println!(
        "weft up: {} nodes, {} pods from {} (state in {})",
        plan.nodes.len(),
        plan.pods.len(),
        config_dir.display(),
        layout.root().display()
    );
    let mut settings = MeshSettings {
        weft: config.weft.clone(),
        layout: layout.clone(),
        config_dir,
        domain_suffix: config.translate.domain_suffix.clone(),
        ready_timeout: config.ready_timeout,
        trace_sampling: config.trace_sampling,
    };
    let mut mesh = match &planner {
        Planner::Namespaces => Mesh::create(settings, &plan)?,
        Planner::Loopback(loopback) => {
            let net = loopback.net();
            println!(
                "explicit mode: control plane on {}, node proxies on {}.., pods on 127.{}.<1+node>.x; \
                 weft control reads {}",
                net.control_ip(),
                net.node_ip(0),
                net.octet(),
                loopback.effective_dir().display()
            );
            settings.config_dir = loopback.effective_dir().to_owned();
            Mesh::create_loopback(settings, &plan, net)
        }
    };
    // Components first: a waypoint's pod needs the control plane's CA root and address.
    if let Err(e) = mesh.start_components(cancel) {
        let _ = mesh.shutdown();
        return Err(e);
    }
    let problems = mesh.apply(plan);
    for problem in problems.iter().filter(|p| !p.starts_with("added pod")) {
        println!("{problem}");
    }
    for line in mesh.wait_waypoints_ready(cancel) {
        println!("{line}");
    }
    Ok((mesh, planner))
}

async fn serve(
    config: &UpConfig,
    mut mesh: Mesh,
    mut planner: Planner,
    store: &Arc<ConfigStore>,
    stop: &tokio::sync::Notify,
    cancel: &AtomicBool,
) -> Result<UpOutcome, UpError> {
    let mut outcome = UpOutcome::default();
    print!("\n{}", table::pod_table(mesh.plan()));
    for line in mesh.gateway_lines() {
        println!("{line}");
    }
    // Started before the demo, so its calls are on the graph; stops with this function.
    let mut _dashboard = None;
    if let Some(listen) = config.dashboard {
        let (running, line) = crate::dashboard::start(&mesh, listen).await;
        println!("{line}");
        _dashboard = running;
    }
    if !mesh.captures_pods() && !mesh.is_explicit() {
        println!(
            "\nnote: this weft node has no --pod-socket: pods are not captured in-pod yet, so \
             enrolled pods' traffic is not tunnelled"
        );
    }
    if config.demo && !cancel.load(Ordering::Relaxed) {
        let report = tokio::task::block_in_place(|| demo::run(&mesh));
        print!("\n{}", report.text);
        outcome.demo_failed = !report.all_as_expected;
        if config.exit_after_demo {
            return tokio::task::block_in_place(|| mesh.shutdown()).map(|()| outcome);
        }
    }
    let watch = match &config.config_dir {
        Some(_) => Some(store.watch(WATCH_DEBOUNCE)?),
        None => None,
    };
    let mut events = store.subscribe();
    let (requests, mut restarts) = tokio::sync::mpsc::channel(4);
    crate::requests::listen(mesh.layout(), requests)?;
    println!(
        "\nmesh is up{}; logs: weft logs POD; Ctrl-C removes everything",
        if watch.is_some() {
            ", following edits"
        } else {
            ""
        }
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.notified() => break,
            Some(_) = events.recv() => {
                while events.try_recv().is_ok() {}
                tokio::task::block_in_place(|| {
                    apply_edit(config, &mut mesh, &mut planner, store, cancel);
                });
            }
            Some((target, reply)) = restarts.recv() => {
                let result = tokio::task::block_in_place(|| mesh.restart(&target));
                match &result {
                    Ok(done) => println!("{done}"),
                    Err(why) => println!("restart {}: {why}", target.words().join(" ")),
                }
                let _ = reply.send(result);
            }
            _ = tick.tick() => {
                for exited in mesh.exited() {
                    println!("{exited}");
                }
            }
        }
    }
    drop(watch);
    println!("stopping: removing every namespace, process and file of this mesh");
    tokio::task::block_in_place(|| mesh.shutdown()).map(|()| outcome)
}

fn apply_edit(
    config: &UpConfig,
    mesh: &mut Mesh,
    planner: &mut Planner,
    store: &ConfigStore,
    cancel: &AtomicBool,
) {
    for finding in store.file_errors() {
        println!("config error (last good version kept): {finding}");
    }
    match planner.plan(store, &config.translate) {
        Ok(plan) => {
            let gateways_before = mesh.gateway_lines();
            for line in mesh.apply(plan) {
                println!("{line}");
            }
            for line in mesh.wait_waypoints_ready(cancel) {
                println!("{line}");
            }
            for line in mesh.gateway_lines() {
                if !gateways_before.contains(&line) {
                    println!("{line}");
                }
            }
        }
        Err(e) => println!("config edit not applied: {e}"),
    }
}
