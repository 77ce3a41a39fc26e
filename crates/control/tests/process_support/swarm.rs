//! Many spec clients on one control plane: every client opens its own TLS connection and
//! delta ADS stream (wildcard Address + Authorization), ACKs everything, and reports when
//! it holds the full expected set and, afterwards, every update it receives.

use super::client::{AdsClient, tls_channel};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use weft_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};

/// The resource names every client must end up holding.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// `istio.workload.Address` names.
    pub addresses: BTreeSet<String>,
    /// `istio.security.Authorization` names.
    pub authorizations: BTreeSet<String>,
}

/// What a client task tells the driver.
#[derive(Debug)]
pub enum Report {
    /// The client holds as many resources as expected; `exact` is whether the names match.
    Synced {
        client: usize,
        at: Instant,
        exact: bool,
    },
    /// A later response.
    Update {
        client: usize,
        at: Instant,
        type_url: String,
        names: Vec<String>,
        removed: Vec<String>,
    },
    /// The stream failed.
    Failed { client: usize, error: String },
}

/// Connected clients and their reports.
pub struct Swarm {
    /// Reports of all clients, in arrival order.
    pub reports: mpsc::UnboundedReceiver<Report>,
    /// Number of clients.
    pub size: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens `count` TLS connections to `secure` (handshakes done before any stream starts).
///
/// # Errors
/// The first connection failure.
pub async fn connect_all(
    secure: SocketAddr,
    root_pem: &str,
    count: usize,
) -> Result<Vec<Channel>, tonic::transport::Error> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(tls_channel(secure, root_pem).await?);
    }
    Ok(channels)
}

/// Starts one stream per channel, all at once. Each client syncs, then reports updates.
pub fn start(channels: Vec<Channel>, token: &str, expected: &Arc<Expected>) -> Swarm {
    let (sender, reports) = mpsc::unbounded_channel();
    let size = channels.len();
    let tasks = channels
        .into_iter()
        .enumerate()
        .map(|(client, channel)| {
            let sender = sender.clone();
            let expected = Arc::clone(expected);
            let token = token.to_owned();
            tokio::spawn(async move {
                if let Err(error) = drive(client, channel, &token, &expected, &sender).await {
                    let _ = sender.send(Report::Failed { client, error });
                }
            })
        })
        .collect();
    Swarm {
        reports,
        size,
        tasks,
    }
}

const RESPONSE_WAIT: Duration = Duration::from_secs(120);
const UPDATE_WAIT: Duration = Duration::from_secs(3600);

async fn drive(
    client: usize,
    channel: Channel,
    token: &str,
    expected: &Expected,
    reports: &mpsc::UnboundedSender<Report>,
) -> Result<(), String> {
    let node_id = format!("bench~127.0.0.1~client-{client}.bench~bench.svc.cluster.local");
    let mut ads = AdsClient::open(
        channel,
        Some(token),
        &node_id,
        &[ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL],
    )
    .await
    .map_err(|status| status.to_string())?;
    ads.sync_until(RESPONSE_WAIT, |ads| {
        ads.count(ADDRESS_TYPE_URL) >= expected.addresses.len()
            && ads.count(AUTHORIZATION_TYPE_URL) >= expected.authorizations.len()
    })
    .await
    .map_err(|status| status.to_string())?;
    let at = Instant::now();
    let exact = ads
        .held(ADDRESS_TYPE_URL)
        .keys()
        .eq(expected.addresses.iter())
        && ads
            .held(AUTHORIZATION_TYPE_URL)
            .keys()
            .eq(expected.authorizations.iter());
    let _ = reports.send(Report::Synced { client, at, exact });
    loop {
        let response = ads
            .recv_ack(UPDATE_WAIT)
            .await
            .map_err(|status| status.to_string())?;
        let update = Report::Update {
            client,
            at: Instant::now(),
            type_url: response.type_url,
            names: response.resources.into_iter().map(|r| r.name).collect(),
            removed: response.removed_resources,
        };
        if reports.send(update).is_err() {
            return Ok(());
        }
    }
}

impl Swarm {
    /// Waits until every client reports it holds the full set; returns, per client, when.
    ///
    /// # Panics
    /// If a client fails, holds the wrong names, or `wait` runs out.
    pub async fn wait_synced(&mut self, wait: Duration) -> Vec<Instant> {
        let mut synced = vec![None; self.size];
        while synced.iter().any(Option::is_none) {
            match self.next(wait).await {
                Report::Synced { client, at, exact } => {
                    assert!(exact, "client {client} holds other names than expected");
                    synced[client] = Some(at);
                }
                other => panic!("before every client synced: {other:?}"),
            }
        }
        synced.into_iter().flatten().collect()
    }

    /// After an edit to `name`: waits until every client has received an update naming it;
    /// returns per client when, and every update seen meanwhile (type, names, removed).
    ///
    /// # Panics
    /// If a client fails or `wait` runs out.
    pub async fn wait_update(&mut self, name: &str, wait: Duration) -> EditArrival {
        let mut arrivals = vec![None; self.size];
        let mut updates = Vec::new();
        while arrivals.iter().any(Option::is_none) {
            match self.next(wait).await {
                Report::Update {
                    client,
                    at,
                    type_url,
                    names,
                    removed,
                } => {
                    if names.iter().chain(&removed).any(|n| n == name) {
                        arrivals[client] = Some(at);
                    }
                    updates.push((type_url, names, removed));
                }
                other => panic!("while waiting for {name}: {other:?}"),
            }
        }
        EditArrival {
            arrivals: arrivals.into_iter().flatten().collect(),
            updates,
        }
    }

    async fn next(&mut self, wait: Duration) -> Report {
        let report = tokio::time::timeout(wait, self.reports.recv())
            .await
            .unwrap_or_else(|_| panic!("no client report within {wait:?}"))
            .expect("client reports");
        if let Report::Failed { client, error } = &report {
            panic!("client {client} failed: {error}");
        }
        report
    }
}

/// What the clients received after one edit.
#[derive(Debug)]
pub struct EditArrival {
    /// Per client: when the update naming the edited resource arrived.
    pub arrivals: Vec<Instant>,
    /// Every update received meanwhile: (type URL, names, removed names).
    pub updates: Vec<(String, Vec<String>, Vec<String>)>,
}
