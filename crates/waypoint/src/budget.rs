//! The per-service retry budgets: one `weft_l7::RetryBudget` per service key (retries in
//! flight to a service may not exceed a share of its requests in flight), created on first
//! use and shared by every request to the service.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use weft_l7::RetryBudget;

/// Retry budgets by service key (or workload uid for workload-addressed traffic).
#[derive(Debug, Default)]
pub struct RetryBudgets {
    services: Mutex<HashMap<String, RetryBudget>>,
}

impl RetryBudgets {
    /// The budget of `service` (clones share the counts).
    pub fn of(&self, service: &str) -> RetryBudget {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(budget) = services.get(service) {
            return budget.clone();
        }
        services.entry(service.to_owned()).or_default().clone()
    }
}
