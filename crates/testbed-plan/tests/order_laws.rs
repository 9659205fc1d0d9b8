//! The planner's ordering laws, over random changes to a converged machine (resources gone, drifted, or
//! changed in a way that forces their replacement): whatever the mix, a delete comes after the deletes of
//! everything that needs the deleted resource (in a replace too: a membership is unjoined before its
//! container goes), a create or change comes after those of what it needs, and a replace creates again only
//! after its delete.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::converged;

use proptest::prelude::*;
use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{plan, Address, Kind, ObservedState, Op};

fn desired_for(members: usize) -> DesiredState {
    let ports = [16441, 16442, 16444, 16445];
    let text: String =
        (0..members).map(|i| format!("[[members]]\nname = \"member{}\"\napi_port = {}\n\n", i + 1, ports[i])).collect();
    let config = testbed_config::parse(Path::new("testbed.toml"), &text).expect("valid test config");
    desired::build(&config, &ObservedState::default())
}

/// A setting of `kind` whose change forces a replacement, when it has one.
fn replacing_key(kind: Kind) -> Option<&'static str> {
    ["image", "driver", "type", "port", "target", "version", "mode"].into_iter().find(|k| kind.forces_replacement(k))
}

/// Every resource `a` needs, directly or through others.
fn needs<'a>(d: &'a DesiredState, a: &'a Address) -> BTreeSet<&'a Address> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&Address> = d.resources[a].depends_on.iter().collect();
    while let Some(x) = todo.pop() {
        if seen.insert(x) {
            todo.extend(d.resources.get(x).into_iter().flat_map(|r| &r.depends_on));
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deletes_go_after_what_needs_them_and_creates_after_what_they_need(
        members in 1usize..=4,
        changes in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3), 0..10),
    ) {
        let d = desired_for(members);
        let mut o = converged(&d);
        let addresses: Vec<Address> = d.resources.keys().cloned().collect();
        for (i, what) in &changes {
            let a = i.get(&addresses);
            match what {
                0 => {
                    o.resources.remove(a);
                }
                1 => {
                    if let (Some(r), Some(key)) = (o.resources.get_mut(a), replacing_key(d.resources[a].kind)) {
                        r.spec.insert(key.into(), "something-else".into());
                    }
                }
                _ => {
                    if let Some(r) = o.resources.get_mut(a) {
                        if let Some(key) = r.spec.keys().find(|k| !d.resources[a].kind.forces_replacement(k)).cloned() {
                            r.spec.insert(key, "drifted".into());
                        }
                    }
                }
            }
        }
        let p = match plan(&d, &o) {
            Ok(p) => p,
            // A mix the planner refuses (a conflict) changes nothing: no order to check.
            Err(_) => return Ok(()),
        };
        let actions = p.actions();
        let mut forward: BTreeMap<&Address, usize> = BTreeMap::new();
        let mut delete: BTreeMap<&Address, usize> = BTreeMap::new();
        for (i, a) in actions.iter().enumerate() {
            match a.op {
                // A delete carried out by its container's has nothing of its own to order.
                Op::Delete if a.runs() => {
                    delete.insert(&a.address, i);
                }
                Op::Delete => {}
                _ => {
                    forward.insert(&a.address, i);
                }
            }
        }
        let shown = || actions.iter().map(|a| format!("{:?} {}", a.op, a.address)).collect::<Vec<_>>();
        for (a, &i) in &delete {
            if let Some(&j) = forward.get(a) {
                prop_assert!(i < j, "{a} is created again before its delete: {:?}", shown());
            }
        }
        for s in d.resources.keys() {
            for r in needs(&d, s) {
                if let (Some(&ds), Some(&dr)) = (delete.get(s), delete.get(r)) {
                    prop_assert!(ds < dr, "{r} is deleted before {s}, which needs it: {:?}", shown());
                }
                if let (Some(&fs), Some(&fr)) = (forward.get(s), forward.get(r)) {
                    prop_assert!(fr < fs, "{s} is made before {r}, which it needs: {:?}", shown());
                }
            }
        }
    }
}
