//! The real control-plane process (`weft_control::process::run`) started in-process on
//! ephemeral loopback ports, with its own config dir, state dir and token file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use weft_control::ca_service::CaServiceConfig;
use weft_control::process::{BoundAddrs, ControlConfig, Objects, run};
use weft_control::secure_server::SecureServerConfig;
use weft_control::translate::TranslateOptions;

/// Token of the node proxy on `node-a`.
pub const NODE_A_TOKEN: &str = "node-a-token-5f1e0c9a7b3d";
/// Token of the node proxy on `node-b`.
pub const NODE_B_TOKEN: &str = "node-b-token-8c2d4e6f0a1b";

/// A running control plane; stopped when dropped.
pub struct RunningControl {
    /// Where it listens.
    pub addrs: BoundAddrs,
    dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningControl {
    /// The watched config directory.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The token file (node-a's and node-b's tokens at start).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("tokens.yaml")
    }

    /// The state directory (CA root under `ca/`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The mesh root certificate (PEM) the control plane generated.
    pub fn root_pem(&self) -> String {
        super::client::root_pem(&self.state_dir())
    }

    /// GET `path` on the admin port: (status code, body).
    ///
    /// # Panics
    /// If the admin port does not answer.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let (status, body) = weft_serve::get(&self.addrs.admin.to_string(), path)
            .await
            .unwrap_or_else(|err| panic!("admin {path}: {err}"));
        (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
    }

    /// GET a JSON admin page.
    ///
    /// # Panics
    /// If it does not answer 200 with JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.admin_get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{path}: {err}: {body}"))
    }
}

impl Drop for RunningControl {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Fills a fresh config dir with `populate`, writes a token file for node-a and node-b,
/// and starts the control plane on 127.0.0.1 port 0 (secure and admin).
///
/// # Panics
/// If the control plane does not start.
pub async fn start_control(populate: impl FnOnce(&Path)) -> RunningControl {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    populate(&config_dir);
    let token_file = dir.path().join("tokens.yaml");
    std::fs::write(
        &token_file,
        format!(
            "tokens:\n  - token: {NODE_A_TOKEN}\n    node: node-a\n  - token: {NODE_B_TOKEN}\n    node: node-b\n"
        ),
    )
    .expect("token file");
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = ControlConfig {
        objects: Objects::Directory(config_dir),
        state_dir: dir.path().join("state"),
        ca_dir: None,
        token_file,
        secure_addr: loopback,
        plaintext_xds_addr: None,
        admin_addr: loopback,
        translate: TranslateOptions::default(),
        secure: SecureServerConfig::default(),
        ca: CaServiceConfig::default(),
        watch_debounce: Duration::from_millis(100),
        xds: weft_xds::ServerConfig::default(),
    };
    let (bound_tx, bound_rx) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(run(
        config,
        move |addrs| {
            let _ = bound_tx.send(addrs);
        },
        shutdown,
    ));
    let Ok(addrs) = bound_rx.await else {
        panic!("control plane did not start: {:?}", task.await)
    };
    RunningControl {
        addrs,
        dir,
        stop: Some(stop),
    }
}

/// Copies the bundled example mesh (`examples/*.yaml`, not `examples/broken`) into `dir`.
///
/// # Panics
/// If the examples cannot be read.
pub fn copy_examples(dir: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for entry in std::fs::read_dir(&examples).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, dir.join(name)).expect("copy example");
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `wait`.
///
/// # Panics
/// With `what` when time runs out.
pub async fn eventually<T, F>(what: &str, wait: Duration, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
