//! Random plans: dependency order, failure propagation and the parallelism bound always hold.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use proptest::prelude::*;
use testbed_exec::{critical_path, execute, serial_sum, ExecOptions, Interrupt, Outcome};
use testbed_plan::Plan;
use testbed_provider::ActionRunner;

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    /// Edges `i -> j` with `i < j`.
    edges: Vec<(usize, usize)>,
    durations: Vec<u64>,
    failing: Vec<bool>,
    cascade: Vec<bool>,
    parallelism: usize,
}

fn name(i: usize) -> String {
    format!("n{i:02}")
}

fn cases() -> impl Strategy<Value = Case> {
    (1usize..=30).prop_flat_map(|n| {
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|j| (0..j).map(move |i| (i, j))).collect();
        let npairs = pairs.len();
        (
            proptest::collection::vec(proptest::bool::weighted(0.12), npairs),
            proptest::collection::vec(1u64..20, n),
            proptest::collection::vec(proptest::bool::weighted(0.1), n),
            proptest::collection::vec(proptest::bool::weighted(0.1), n),
            1usize..=8,
        )
            .prop_map(move |(keep, durations, failing, cascade, parallelism)| Case {
                n,
                edges: pairs.iter().zip(keep).filter(|(_, k)| *k).map(|(e, _)| *e).collect(),
                durations,
                failing,
                cascade,
                parallelism,
            })
    })
}

/// The plan and runner of a case. An action becomes a cascaded delete of its first predecessor when chosen
/// and it has one (cascaded deletes never fail: they run nothing).
fn build(c: &Case) -> (Plan, Fake) {
    let mut fake = Fake::new();
    let mut actions = vec![];
    for i in 0..c.n {
        let first_pred = c.edges.iter().find(|(_, j)| *j == i).map(|(p, _)| *p);
        match first_pred {
            Some(p) if c.cascade[i] => actions.push(cascaded(&name(i), &name(p))),
            _ => {
                actions.push(action(&name(i)));
                if c.failing[i] {
                    fake = fake.failing(&name(i));
                }
            }
        }
        fake = fake.duration(&name(i), secs(c.durations[i]));
    }
    let names: Vec<(String, String)> = c.edges.iter().map(|(i, j)| (name(*i), name(*j))).collect();
    let edges: Vec<(&str, &str)> = names.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    (plan(actions, &edges), fake)
}

fn ancestors(p: &Plan, n: NodeIndex) -> BTreeSet<NodeIndex> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<NodeIndex> = p.graph.neighbors_directed(n, Direction::Incoming).collect();
    while let Some(x) = stack.pop() {
        if seen.insert(x) {
            stack.extend(p.graph.neighbors_directed(x, Direction::Incoming));
        }
    }
    seen
}

fn check(c: Case) -> Result<(), TestCaseError> {
    let (p, fake) = build(&c);
    let fake = Arc::new(fake);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let estimate = Arc::clone(&fake);
    let options = ExecOptions::new(c.parallelism).with_estimate(move |a| estimate.duration_of(a));
    let runner = Arc::clone(&fake) as Arc<dyn ActionRunner>;
    let report = rt.block_on(execute(&p, runner, &options, &Interrupt::new(), |_| {}));
    let g = &p.graph;
    let calls = fake.calls();

    prop_assert_eq!(report.actions.len(), c.n);
    // The parallelism bound.
    prop_assert!(fake.max_concurrent.load(Ordering::SeqCst) <= c.parallelism);

    for n in g.node_indices() {
        let a = &g[n];
        let r = report.actions.iter().find(|r| r.address == a.address).unwrap();
        // Dependency order: whatever started did so after each predecessor finished Done.
        if let Some(started) = r.started {
            for pred in g.neighbors_directed(n, Direction::Incoming) {
                let pr = report.actions.iter().find(|r| r.address == g[pred].address).unwrap();
                prop_assert_eq!(&pr.outcome, &Outcome::Done);
                prop_assert!(pr.started.unwrap() + pr.duration.unwrap() <= started);
                if let (Some(before), Some(after)) = (calls.get(&g[pred].address), calls.get(&a.address)) {
                    prop_assert!(before[0].finish_seq.unwrap() < after[0].start_seq);
                }
            }
        }
        // Failure propagation.
        let failing_ancestors: BTreeSet<_> =
            ancestors(&p, n).into_iter().map(|x| g[x].address.clone()).filter(|x| fake.fail.contains(x)).collect();
        if !failing_ancestors.is_empty() {
            match &r.outcome {
                Outcome::Skipped { because } => prop_assert!(failing_ancestors.contains(because)),
                other => prop_assert!(false, "{} should be skipped, is {:?}", a.address, other),
            }
            prop_assert!(!calls.contains_key(&a.address));
        } else if fake.fail.contains(&a.address) {
            let failed = matches!(r.outcome, Outcome::Failed { .. });
            prop_assert!(failed, "{} should have failed", a.address);
        } else {
            prop_assert_eq!(&r.outcome, &Outcome::Done, "{}", a.address);
        }
        // The runner ran exactly the actions that run and were not skipped, once each.
        let ran = calls.get(&a.address).map_or(0, |v| v.len());
        let expected = usize::from(a.runs() && failing_ancestors.is_empty());
        prop_assert_eq!(ran, expected, "{}", a.address);
    }

    // Timing: never better than the critical path nor worse than running everything one at a time; exact at
    // the extremes when nothing fails.
    let d = |a: &testbed_plan::Action| fake.duration_of(a);
    prop_assert!(report.makespan <= serial_sum(&p, d));
    if fake.fail.is_empty() {
        prop_assert!(report.makespan >= critical_path(&p, d));
        if c.parallelism == 1 {
            prop_assert_eq!(report.makespan, serial_sum(&p, d));
        }
        if c.parallelism >= c.n {
            prop_assert_eq!(report.makespan, critical_path(&p, d));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_dags_keep_order_bound_and_propagate_failures(c in cases()) {
        check(c)?;
    }

    /// Enough slots and no failures: every action starts the moment its dependencies are done.
    #[test]
    fn random_dags_with_enough_slots_take_the_critical_path(mut c in cases()) {
        c.failing = vec![false; c.n];
        c.parallelism = c.n;
        check(c)?;
    }
}
