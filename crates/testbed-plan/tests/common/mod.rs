//! Shared by the planner's tests: hand-made observed states.

use testbed_plan::desired::DesiredState;
use testbed_plan::{Observed, ObservedState, Owner};

/// What a machine that exactly matches `d` looks like to observation.
pub fn converged(d: &DesiredState) -> ObservedState {
    let mut o = ObservedState::default();
    for r in d.resources.values() {
        o.insert(Observed::new(r.address.clone(), r.kind, r.member.as_deref(), Owner::Testbed, r.spec.clone()));
        if let Some(ip) = r.spec.get("ipv4").and_then(|s| s.parse().ok()) {
            o.bridge_addresses.insert(ip);
        }
    }
    o
}
