//! Endpoint selection for a service: healthy endpoints only (unless the service's
//! `health_policy` is `ALLOW_ALL`), locality preference from `load_balancing`
//! (`routing_preference` scopes with mode `FAILOVER` — the default when a preference is
//! given — or `STRICT`), then power-of-two-choices on each workload's active connection
//! count. Selection makes two passes over the endpoint list and does not allocate.
//!
//! Mode `PASSTHROUGH` is treated as "no locality preference" here; a data path that wants
//! to honour it connects to the original destination instead of calling [`choose_endpoint`].

use rand::Rng;
use weft_proto::workload::load_balancing::{HealthPolicy, Mode, Scope};
use weft_proto::workload::{LoadBalancing, Workload};

use crate::{Endpoint, MeshService, MeshWorkload, PortMapping};

/// The chosen endpoint and the port to connect to on it.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The endpoint (its workload carries the connection counter:
    /// call `choice.endpoint.workload.track_connection()` once connected).
    pub endpoint: Endpoint,
    /// Target port on the workload.
    pub target_port: u16,
}

/// Why no endpoint could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    /// The service has no endpoints at all.
    #[error("service {service} has no endpoints")]
    NoEndpoints {
        /// `<ns>/<hostname>`.
        service: String,
    },
    /// Endpoints exist but none is healthy.
    #[error("service {service} has {total} endpoints but none is healthy")]
    NoHealthyEndpoints {
        /// `<ns>/<hostname>`.
        service: String,
        /// Number of endpoints.
        total: usize,
    },
    /// `STRICT` locality mode and no healthy endpoint shares the required locality.
    #[error(
        "service {service} requires locality match {scopes:?} (STRICT) and no healthy endpoint has it"
    )]
    NoLocalEndpoints {
        /// `<ns>/<hostname>`.
        service: String,
        /// The scopes that had to match.
        scopes: Vec<Scope>,
    },
}

/// Chooses an endpoint of `service` for a connection to its `port`, from `source` (the
/// client workload, used for locality; `None` if unknown, which matches no locality).
///
/// # Errors
/// See [`LbError`].
pub fn choose_endpoint<R: Rng + ?Sized>(
    service: &MeshService,
    port: PortMapping,
    source: Option<&MeshWorkload>,
    rng: &mut R,
) -> Result<Choice, LbError> {
    let policy = Policy::of(service.proto().load_balancing.as_ref());
    let endpoints = service.endpoints();
    let source = source.map(MeshWorkload::proto);
    let rank = |e: &Endpoint| policy.rank(source, e.workload.proto());
    let usable = |e: &&Endpoint| policy.allow_unhealthy || e.workload.is_healthy();

    let best = endpoints.iter().filter(usable).map(rank).max();
    let Some(best) = best else {
        return Err(no_usable(service));
    };
    if policy.strict && best < policy.scopes.len() {
        return Err(LbError::NoLocalEndpoints {
            service: service.key().to_owned(),
            scopes: policy.scopes.clone(),
        });
    }
    let candidates = || {
        endpoints
            .iter()
            .filter(usable)
            .filter(move |e| rank(e) == best)
    };
    let endpoint = power_of_two_choices(candidates, rng);
    Ok(Choice {
        target_port: endpoint.target_port(port),
        endpoint: endpoint.clone(),
    })
}

fn no_usable(service: &MeshService) -> LbError {
    let service_key = service.key().to_owned();
    match service.endpoints().len() {
        0 => LbError::NoEndpoints {
            service: service_key,
        },
        total => LbError::NoHealthyEndpoints {
            service: service_key,
            total,
        },
    }
}

/// Picks two distinct candidates at random and returns the one with fewer active
/// connections (the first on a tie). `candidates` must yield at least one endpoint.
fn power_of_two_choices<'a, I, R>(candidates: impl Fn() -> I, rng: &mut R) -> &'a Endpoint
where
    I: Iterator<Item = &'a Endpoint>,
    R: Rng + ?Sized,
{
    let count = candidates().count();
    let nth = |n: usize| {
        candidates()
            .nth(n)
            .expect("index below the candidate count")
    };
    if count == 1 {
        return nth(0);
    }
    let first = rng.random_range(0..count);
    let mut second = rng.random_range(0..count - 1);
    if second >= first {
        second += 1;
    }
    let (a, b) = (nth(first), nth(second));
    if b.workload.active_connections() < a.workload.active_connections() {
        b
    } else {
        a
    }
}

/// The parts of `LoadBalancing` that selection uses.
struct Policy {
    scopes: Vec<Scope>,
    strict: bool,
    allow_unhealthy: bool,
}

impl Policy {
    fn of(lb: Option<&LoadBalancing>) -> Self {
        let Some(lb) = lb else {
            return Self {
                scopes: Vec::new(),
                strict: false,
                allow_unhealthy: false,
            };
        };
        let mode = lb.mode();
        let scopes = if mode == Mode::Passthrough {
            Vec::new()
        } else {
            lb.routing_preference().collect()
        };
        Self {
            scopes,
            strict: mode == Mode::Strict,
            allow_unhealthy: lb.health_policy() == HealthPolicy::AllowAll,
        }
    }

    /// How many leading preference scopes the endpoint shares with the source.
    fn rank(&self, source: Option<&Workload>, endpoint: &Workload) -> usize {
        let Some(source) = source else {
            return 0;
        };
        self.scopes
            .iter()
            .take_while(|scope| same_scope(**scope, source, endpoint))
            .count()
    }
}

fn same_scope(scope: Scope, a: &Workload, b: &Workload) -> bool {
    let known_equal = |x: &str, y: &str| !x.is_empty() && x == y;
    let locality = |f: fn(&weft_proto::workload::Locality) -> &str| match (&a.locality, &b.locality)
    {
        (Some(la), Some(lb)) => known_equal(f(la), f(lb)),
        _ => false,
    };
    match scope {
        Scope::UnspecifiedScope => true,
        Scope::Region => locality(|l| &l.region),
        Scope::Zone => locality(|l| &l.zone),
        Scope::Subzone => locality(|l| &l.subzone),
        Scope::Node => known_equal(&a.node, &b.node),
        Scope::Cluster => a.cluster_id == b.cluster_id,
        Scope::Network => a.network == b.network,
    }
}

#[cfg(test)]
mod tests;
