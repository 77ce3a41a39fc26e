//! The node proxy's binding of the policy engine (crate `weft-policy`, which owns compiled
//! policies and their evaluation): the state snapshot is where open connections find their
//! workload's current [`PolicySet`] when policies change.

use weft_policy::{PolicyLookup, PolicySet};

use crate::state::MeshState;

impl PolicyLookup for MeshState {
    fn policies_for(&self, workload_uid: &str) -> Option<&PolicySet> {
        self.policies_by_uid(workload_uid)
    }
}
