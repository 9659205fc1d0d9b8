//! What a user notices of a run: order, failures, timing, cascaded deletes, Ctrl-C, panics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use testbed_exec::{critical_path, execute, serial_sum, Event, ExecOptions, Interrupt, Outcome, Report};
use testbed_plan::{Address, Op, Plan};
use testbed_provider::{ActionRunner, LogEntry, ProviderError};

async fn run(plan: &Plan, fake: Arc<Fake>, parallelism: usize) -> (Report, Events) {
    run_with(plan, fake, parallelism, &Interrupt::new()).await
}

async fn run_with(plan: &Plan, fake: Arc<Fake>, parallelism: usize, interrupt: &Interrupt) -> (Report, Events) {
    let events = Events::default();
    let estimate = Arc::clone(&fake);
    let options = ExecOptions::new(parallelism).with_estimate(move |a| estimate.duration_of(a));
    let report = execute(plan, fake as Arc<dyn ActionRunner>, &options, interrupt, events.sink()).await;
    (report, events)
}

fn outcome<'r>(report: &'r Report, name: &str) -> &'r Outcome {
    &report.actions.iter().find(|a| a.address == addr(name)).unwrap_or_else(|| panic!("no {name} in report")).outcome
}

fn skipped_because(name: &str) -> Outcome {
    Outcome::Skipped { because: addr(name) }
}

/// a -> b, a -> c, b -> d, c -> d.
fn diamond() -> Plan {
    plan(vec![action("a"), action("b"), action("c"), action("d")], &[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
}

#[tokio::test(start_paused = true)]
async fn nothing_starts_before_its_dependencies_are_done() {
    let p = diamond();
    let fake = Arc::new(Fake::new().duration("a", secs(5)).duration("b", secs(3)).duration("c", secs(7)));
    let (report, _) = run(&p, Arc::clone(&fake), 4).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(report.summary_line("Apply"), "Apply: 4 done, 0 failed, 0 skipped.");

    let calls = fake.calls();
    for e in p.graph.edge_indices() {
        let (x, y) = p.graph.edge_endpoints(e).unwrap();
        let before = calls[&p.graph[x].address][0];
        let after = calls[&p.graph[y].address][0];
        assert!(
            before.finish_seq.unwrap() < after.start_seq,
            "{} started before {} finished",
            p.graph[y].address,
            p.graph[x].address
        );
        assert!(before.finish.unwrap() <= after.start);
    }
    // b and c ran side by side; d waited for the slower c.
    let d = report.actions.iter().find(|a| a.address == addr("d")).unwrap();
    assert_eq!(d.started, Some(secs(12)));
    assert_eq!(d.duration, Some(secs(1)));
    assert_eq!(report.makespan, secs(13));
    // The report follows the plan's order.
    let order: Vec<Address> = p.actions().into_iter().map(|a| a.address.clone()).collect();
    assert_eq!(report.actions.iter().map(|a| a.address.clone()).collect::<Vec<_>>(), order);
}

#[tokio::test(start_paused = true)]
async fn a_failure_skips_its_dependents_and_nothing_else() {
    // x -> y -> z fails at x; w and v are independent and take longer; u depends on both x and w.
    let p = plan(
        vec![action("x"), action("y"), action("z"), action("w"), action("v"), action("u")],
        &[("x", "y"), ("y", "z"), ("x", "u"), ("w", "u"), ("w", "v")],
    );
    let fake = Arc::new(Fake::new().failing("x").duration("w", secs(10)).duration("v", secs(10)));
    let (report, events) = run(&p, Arc::clone(&fake), 8).await;

    assert!(matches!(outcome(&report, "x"), Outcome::Failed { error } if error.hint() == Some("try again")));
    assert_eq!(outcome(&report, "y"), &skipped_because("x"));
    assert_eq!(outcome(&report, "z"), &skipped_because("x"));
    assert_eq!(outcome(&report, "u"), &skipped_because("x"));
    assert_eq!(outcome(&report, "w"), &Outcome::Done);
    assert_eq!(outcome(&report, "v"), &Outcome::Done);
    assert_eq!(report.summary_line("Apply"), "Apply: 2 done, 1 failed, 3 skipped.");
    assert!(!report.success());
    assert_eq!(report.failures().map(|(a, _)| a.clone()).collect::<Vec<_>>(), vec![addr("x")]);
    // The run went on for the independent branch.
    assert_eq!(report.makespan, secs(20));
    assert_eq!(fake.called(), [addr("x"), addr("w"), addr("v")].into_iter().collect());

    // Every action gets exactly one Finished; skipped ones are told as soon as the failure is known.
    for a in &report.actions {
        let finished = events.of(&a.address).iter().filter(|e| matches!(e, Event::Finished { .. })).count();
        assert_eq!(finished, 1, "{}", a.address);
    }
    let all = events.all();
    let y_skipped = all.iter().position(|e| matches!(e, Event::Finished { address, .. } if *address == addr("y")));
    let w_done = all.iter().position(|e| matches!(e, Event::Finished { address, .. } if *address == addr("w")));
    assert!(y_skipped < w_done);
}

/// Four members, each a chain of steps of different lengths, after a shared setup step; one member also
/// side-loads two images in parallel.
fn testbed_like() -> (Plan, Fake) {
    let mut actions = vec![action("setup")];
    let mut edges: Vec<(String, String)> = vec![];
    let mut fake = Fake::new().duration("setup", secs(20));
    for m in 1..=4 {
        let steps = [("launch", 10 + m), ("microk8s", 60 + 7 * m), ("addons", 15), ("join", 5 * m)];
        let mut prev = "setup".to_owned();
        for (step, d) in steps {
            let name = format!("{step}-m{m}");
            actions.push(action(&name));
            fake = fake.duration(&name, secs(d));
            edges.push((prev.clone(), name.clone()));
            prev = name;
        }
    }
    for img in ["img1", "img2"] {
        actions.push(action(img));
        fake = fake.duration(img, secs(30));
        edges.push(("addons-m3".into(), img.into()));
    }
    let edges: Vec<(&str, &str)> = edges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    (plan(actions, &edges), fake)
}

#[tokio::test(start_paused = true)]
async fn with_enough_parallelism_the_makespan_is_the_critical_path() {
    let (p, fake) = testbed_like();
    let fake = Arc::new(fake);
    let cp = critical_path(&p, |a| fake.duration_of(a));
    let (report, _) = run(&p, Arc::clone(&fake), 8).await;
    assert!(report.success());
    assert!(report.makespan >= cp);
    assert!(report.makespan.as_secs_f64() <= cp.as_secs_f64() * 1.1, "{:?} vs critical path {cp:?}", report.makespan);
    assert!(fake.max_concurrent.load(std::sync::atomic::Ordering::SeqCst) <= 8);
}

#[tokio::test(start_paused = true)]
async fn with_parallelism_one_the_makespan_is_the_serial_sum() {
    let (p, fake) = testbed_like();
    let fake = Arc::new(fake);
    let sum = serial_sum(&p, |a| fake.duration_of(a));
    let (report, _) = run(&p, Arc::clone(&fake), 1).await;
    assert!(report.success());
    assert_eq!(report.makespan, sum);
    assert_eq!(fake.max_concurrent.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_longest_remaining_path_starts_first() {
    // A chain z1 -> z2 -> z3 and three independent actions, all 10 s, two slots. By address alone b and c
    // would start first and the run would take 40 s; starting the chain first takes 30 s.
    let p = plan(
        vec![action("b"), action("c"), action("d"), action("z1"), action("z2"), action("z3")],
        &[("z1", "z2"), ("z2", "z3")],
    );
    let fake = Fake::new();
    let fake = ["b", "c", "d", "z1", "z2", "z3"].iter().fold(fake, |f, n| f.duration(n, secs(10)));
    let fake = Arc::new(fake);
    let (report, _) = run(&p, Arc::clone(&fake), 2).await;
    assert!(report.success());
    assert_eq!(report.makespan, secs(30));
    assert_eq!(report.makespan, critical_path(&p, |a| fake.duration_of(a)));

    // Unit weights (no estimate) give the same order here.
    let fake2 = Arc::new(["b", "c", "d", "z1", "z2", "z3"].iter().fold(Fake::new(), |f, n| f.duration(n, secs(10))));
    let report = execute(&p, fake2 as Arc<dyn ActionRunner>, &ExecOptions::new(2), &Interrupt::new(), |_| {}).await;
    assert_eq!(report.makespan, secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_cascaded_delete_completes_without_calling_the_runner() {
    // Deleting the container deletes its proxy; the proxy's delete has nothing of its own to run. With one slot
    // it must not wait for the slot either: it completes while `other` runs.
    let mut container = action("container");
    container.op = Op::Delete;
    let p = plan(
        vec![container, cascaded("proxy", "container"), action("other"), action("after-proxy")],
        &[("container", "proxy"), ("proxy", "after-proxy")],
    );
    let fake = Arc::new(Fake::new().duration("container", secs(5)).duration("other", secs(3)));
    let (report, events) = run(&p, Arc::clone(&fake), 1).await;
    assert!(report.success(), "{report:?}");
    assert!(!fake.called().contains(&addr("proxy")));
    let proxy = report.actions.iter().find(|a| a.address == addr("proxy")).unwrap();
    assert_eq!(proxy.outcome, Outcome::Done);
    assert_eq!(proxy.started, Some(secs(5)));
    assert_eq!(proxy.duration, Some(Duration::ZERO));
    assert!(matches!(events.of(&addr("proxy"))[..], [Event::Started { op: Op::Delete, .. }, Event::Finished { .. }]));
    // container (5) then other (3) then after-proxy (1), one at a time; the cascade took no time and no slot.
    assert_eq!(report.makespan, secs(9));
    assert_eq!(serial_sum(&p, |a| fake.duration_of(a)), secs(9));
    assert_eq!(critical_path(&p, |a| fake.duration_of(a)), secs(6));
}

#[tokio::test(start_paused = true)]
async fn a_cascaded_delete_is_skipped_when_its_container_fails() {
    let p = plan(vec![action("container"), cascaded("proxy", "container")], &[("container", "proxy")]);
    let fake = Arc::new(Fake::new().failing("container"));
    let (report, _) = run(&p, Arc::clone(&fake), 2).await;
    assert_eq!(outcome(&report, "proxy"), &skipped_because("container"));
}

/// a (10 s) -> d; b and c independent (10 s); two slots: a and b start, c and d wait.
fn interrupt_plan() -> (Plan, Arc<Fake>) {
    let p = plan(vec![action("a"), action("b"), action("c"), action("d")], &[("a", "d")]);
    let fake = ["a", "b", "c", "d"].iter().fold(Fake::new(), |f, n| f.duration(n, secs(10)));
    (p, Arc::new(fake))
}

fn interrupt_at(interrupt: &Interrupt, at: &[u64]) {
    for &t in at {
        let i = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(secs(t)).await;
            i.interrupt();
        });
    }
}

#[tokio::test(start_paused = true)]
async fn one_interrupt_lets_running_actions_finish_and_starts_nothing_new() {
    let (p, fake) = interrupt_plan();
    let interrupt = Interrupt::new();
    interrupt_at(&interrupt, &[5]);
    let (report, events) = run_with(&p, Arc::clone(&fake), 2, &interrupt).await;

    assert_eq!(outcome(&report, "a"), &Outcome::Done);
    assert_eq!(outcome(&report, "b"), &Outcome::Done);
    assert_eq!(outcome(&report, "c"), &Outcome::NotStarted);
    assert_eq!(outcome(&report, "d"), &Outcome::NotStarted);
    assert_eq!(fake.called(), [addr("a"), addr("b")].into_iter().collect());
    assert_eq!(report.makespan, secs(10));
    assert_eq!(report.summary_line("Apply"), "Apply: 2 done, 0 failed, 0 skipped, 2 not started.");
    assert!(!report.success());
    assert!(events.of(&addr("c")).iter().all(|e| matches!(e, Event::Finished { outcome: Outcome::NotStarted, .. })));
}

#[tokio::test(start_paused = true)]
async fn two_interrupts_abort_running_actions() {
    let (p, fake) = interrupt_plan();
    let interrupt = Interrupt::new();
    interrupt_at(&interrupt, &[5, 6]);
    let (report, events) = run_with(&p, Arc::clone(&fake), 2, &interrupt).await;

    for name in ["a", "b"] {
        let a = report.actions.iter().find(|r| r.address == addr(name)).unwrap();
        assert_eq!(a.outcome, Outcome::Interrupted, "{name}");
        assert_eq!(a.duration, Some(secs(6)));
    }
    assert_eq!(outcome(&report, "c"), &Outcome::NotStarted);
    assert_eq!(outcome(&report, "d"), &Outcome::NotStarted);
    assert_eq!(report.makespan, secs(6));
    assert_eq!(report.summary_line("Apply"), "Apply: 0 done, 0 failed, 0 skipped, 2 not started, 2 interrupted.");
    // The runner never got to finish.
    assert!(fake.calls().values().all(|v| v[0].finish.is_none()));
    assert!(events.of(&addr("a")).contains(&Event::Finished {
        address: addr("a"),
        op: Op::Create,
        outcome: Outcome::Interrupted,
        duration: secs(6)
    }));
    assert_eq!(interrupt.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_before_the_run_starts_nothing() {
    let (p, fake) = interrupt_plan();
    let interrupt = Interrupt::new();
    interrupt.interrupt();
    let (report, _) = run_with(&p, Arc::clone(&fake), 2, &interrupt).await;
    assert_eq!(report.not_started(), 4);
    assert!(fake.called().is_empty());
    assert_eq!(report.makespan, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_runner_fails_its_action_not_the_run() {
    let p = plan(vec![action("boom"), action("after"), action("fine")], &[("boom", "after")]);
    let fake = Arc::new(Fake::new().panicking("boom").duration("fine", secs(4)));
    let (report, _) = run(&p, Arc::clone(&fake), 4).await;
    match outcome(&report, "boom") {
        Outcome::Failed { error } => {
            let text = error.report().to_string();
            assert!(text.contains("panic") && text.contains("the fake runner panics on image.boom"), "{text}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(outcome(&report, "after"), &skipped_because("boom"));
    assert_eq!(outcome(&report, "fine"), &Outcome::Done);
}

#[tokio::test(start_paused = true)]
async fn a_runner_that_reports_interruption_is_interrupted() {
    struct Stopped;
    #[async_trait::async_trait]
    impl ActionRunner for Stopped {
        async fn run(&self, _: &testbed_plan::Action, _: &testbed_provider::ActionLog) -> Result<(), ProviderError> {
            Err(ProviderError::interrupted())
        }
    }
    let p = plan(vec![action("a"), action("b")], &[("a", "b")]);
    let report = execute(&p, Arc::new(Stopped), &ExecOptions::default(), &Interrupt::new(), |_| {}).await;
    assert_eq!(outcome(&report, "a"), &Outcome::Interrupted);
    assert_eq!(outcome(&report, "b"), &Outcome::NotStarted);
}

#[tokio::test(start_paused = true)]
async fn log_entries_arrive_between_started_and_finished() {
    let p = plan(vec![action("a")], &[]);
    let (report, events) = run(&p, Arc::new(Fake::new()), 1).await;
    assert!(report.success());
    let a = addr("a");
    assert_eq!(
        events.of(&a),
        vec![
            Event::Started { address: a.clone(), op: Op::Create },
            Event::Log {
                address: a.clone(),
                entry: LogEntry::Command(vec!["fake".into(), "run".into(), "image.a".into()])
            },
            Event::Log { address: a.clone(), entry: LogEntry::Output("ok".into()) },
            Event::Finished { address: a.clone(), op: Op::Create, outcome: Outcome::Done, duration: secs(1) },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_plan_is_a_success() {
    let report =
        execute(&Plan::default(), Arc::new(Fake::new()), &ExecOptions::new(0), &Interrupt::new(), |_| {}).await;
    assert!(report.success());
    assert_eq!(report.summary_line("Apply"), "Apply: 0 done, 0 failed, 0 skipped.");
    assert_eq!(report.makespan, Duration::ZERO);
}
