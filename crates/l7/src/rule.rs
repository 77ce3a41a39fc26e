//! The compiled form of one wire route rule: what the waypoint does with a request once
//! the rule is chosen. Its [`Filters`], its backends and the weighted choice among them
//! ([`Rule::pick_backend`]), its [`Timeouts`] and its [`RetryPolicy`].

#[cfg(test)]
mod tests;

use crate::filters::Filters;
use crate::retry::RetryPolicy;
use crate::routes::FieldError;
use crate::session::SessionPersistence;
use rand::Rng;
use std::time::Duration;
use weft_proto::l7 as pb;

/// A rule of a route, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Option<String>,
    index: usize,
    filters: Filters,
    backends: Vec<RouteBackend>,
    /// Sum of the backends' weights.
    total_weight: u64,
    timeouts: Timeouts,
    retry: Option<RetryPolicy>,
    session: Option<SessionPersistence>,
}

/// A backend of a rule: a service port of the workload API, or the reason it is unusable.
#[derive(Debug, Clone)]
pub struct RouteBackend {
    service: String,
    port: u16,
    weight: u32,
    filters: Filters,
    unresolved: Option<String>,
    via_waypoint: bool,
}

/// The two timeouts of a rule (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `timeouts.request`: the whole exchange with the client, retries included; expiry
    /// answers 504.
    pub request: Option<Duration>,
    /// `timeouts.backendRequest`: one attempt to a backend; expiry ends the attempt (which
    /// may be retried) or answers 504.
    pub backend_request: Option<Duration>,
}

/// Why no backend can take a request; the spec's answer is 500 in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The rule has no backend, or all weights are 0.
    #[error("the rule has no backend with a weight above 0")]
    NoBackend,
    /// The request fell in the share of a backend reference that cannot be used.
    #[error("backend {service} cannot be used: {reason}")]
    Unresolved {
        /// The reference as the control plane named it.
        service: String,
        /// Why (missing Service, no ReferenceGrant, unknown kind, …).
        reason: String,
    },
}

impl Rule {
    /// Compiles the action part of a wire rule. `prefix_only` tells whether the rule has
    /// exactly one match and it is a `PathPrefix` (what `ReplacePrefixMatch` needs).
    pub(crate) fn compile(
        rule: &pb::Rule,
        index: usize,
        prefix_only: bool,
        at: &str,
    ) -> Result<Self, FieldError> {
        let filters = Filters::compile(&rule.filters, prefix_only, &format!("{at}.filters"))?;
        let backends = (rule.backends.iter().enumerate())
            .map(|(i, b)| RouteBackend::compile(b, prefix_only, &format!("{at}.backendRefs[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
        Ok(Rule {
            name: (!rule.name.is_empty()).then(|| rule.name.clone()),
            index,
            filters,
            backends,
            total_weight,
            timeouts: Timeouts::compile(rule, at)?,
            retry: rule.retry.as_ref().map(RetryPolicy::from_wire),
            session: (rule.session.as_ref())
                .map(|s| SessionPersistence::compile(s, &format!("{at}.sessionPersistence")))
                .transpose()?,
        })
    }

    /// The rule's `name`, if set.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Index of the rule in the route's `rules`.
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The rule's filters, in the order written.
    #[must_use]
    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// Every backend, weight 0 included.
    #[must_use]
    pub fn backends(&self) -> &[RouteBackend] {
        &self.backends
    }

    /// The timeouts.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The retry policy, if the rule has one.
    #[must_use]
    pub fn retry(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref()
    }

    /// The rule's session persistence, if it has one.
    #[must_use]
    pub fn session(&self) -> Option<&SessionPersistence> {
        self.session.as_ref()
    }

    /// The backend at `index` when it can take requests (resolved, weight above 0): where
    /// a session token sends a request.
    #[must_use]
    pub fn usable_backend(&self, index: usize) -> Option<&RouteBackend> {
        self.backends
            .get(index)
            .filter(|b| b.weight > 0 && b.unresolved.is_none())
    }

    /// Chooses a backend by weight with `rng`, with its index in the rule.
    ///
    /// # Errors
    /// As [`Rule::pick_backend`].
    pub fn pick_indexed<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<(usize, &RouteBackend), BackendError> {
        let backend = self.pick_backend(rng)?;
        let index = self.backends.iter().position(|b| std::ptr::eq(b, backend));
        Ok((index.unwrap_or_default(), backend))
    }

    /// Chooses a backend by weight with `rng`.
    ///
    /// # Errors
    /// [`BackendError`] when the request cannot be forwarded: the spec's 500.
    pub fn pick_backend<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<&RouteBackend, BackendError> {
        if self.total_weight == 0 {
            return Err(BackendError::NoBackend);
        }
        self.pick_backend_at(rng.random_range(0..self.total_weight))
    }

    /// Chooses the backend whose share of `0..total weight` holds `roll` (the deterministic
    /// half of [`Rule::pick_backend`]): backends take consecutive ranges in list order.
    ///
    /// # Errors
    /// As [`Rule::pick_backend`]; a `roll` past the total weight is [`BackendError::NoBackend`].
    pub fn pick_backend_at(&self, roll: u64) -> Result<&RouteBackend, BackendError> {
        let mut start = 0;
        for backend in &self.backends {
            start += u64::from(backend.weight);
            if roll < start {
                return match &backend.unresolved {
                    None => Ok(backend),
                    Some(reason) => Err(BackendError::Unresolved {
                        service: backend.service.clone(),
                        reason: reason.clone(),
                    }),
                };
            }
        }
        Err(BackendError::NoBackend)
    }
}

impl RouteBackend {
    pub(crate) fn compile(
        backend: &pb::Backend,
        prefix_only: bool,
        at: &str,
    ) -> Result<Self, FieldError> {
        let unresolved = (!backend.unresolved.is_empty()).then(|| backend.unresolved.clone());
        let port = u16::try_from(backend.port)
            .ok()
            .filter(|p| *p != 0 || unresolved.is_some())
            .ok_or_else(|| {
                (
                    format!("{at}.port"),
                    format!("{} is not a port", backend.port),
                )
            })?;
        if unresolved.is_none() && backend.service.is_empty() {
            return Err((
                format!("{at}.name"),
                "no service and no reason it is unresolved".into(),
            ));
        }
        Ok(RouteBackend {
            service: backend.service.clone(),
            port,
            weight: backend.weight,
            filters: Filters::compile(&backend.filters, prefix_only, &format!("{at}.filters"))?,
            unresolved,
            via_waypoint: backend.via_waypoint,
        })
    }

    /// The workload API's service key `<namespace>/<hostname>`.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The service port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether a gateway reaches this backend through the service's waypoint.
    #[must_use]
    pub fn via_waypoint(&self) -> bool {
        self.via_waypoint
    }

    /// The weight (0: never chosen).
    #[must_use]
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Filters applied only to requests sent to this backend, after the rule's.
    #[must_use]
    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// Why the reference cannot be used, if so (its share of requests is answered 500).
    #[must_use]
    pub fn unresolved(&self) -> Option<&str> {
        self.unresolved.as_deref()
    }
}

impl Timeouts {
    fn compile(rule: &pb::Rule, at: &str) -> Result<Self, FieldError> {
        let ms = |value: u64| (value > 0).then(|| Duration::from_millis(value));
        let timeouts = Timeouts {
            request: ms(rule.request_timeout_ms),
            backend_request: ms(rule.backend_request_timeout_ms),
        };
        if let (Some(request), Some(backend)) = (timeouts.request, timeouts.backend_request)
            && backend > request
        {
            return Err((
                format!("{at}.timeouts.backendRequest"),
                format!("{backend:?} is longer than timeouts.request ({request:?})"),
            ));
        }
        Ok(timeouts)
    }
}
