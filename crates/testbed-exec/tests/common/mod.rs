//! A fake runner and hand-built plans for the executor's tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use testbed_exec::Event;
use testbed_plan::{Action, Address, Kind, Op, Plan};
use testbed_provider::{ActionLog, ActionRunner, ProviderError};
use tokio::time::Instant;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn addr(name: &str) -> Address {
    Address::new(Kind::Image, &[name])
}

pub fn action(name: &str) -> Action {
    Action {
        address: addr(name),
        kind: Kind::Image,
        member: None,
        op: Op::Create,
        reason: "wanted".into(),
        changes: vec![],
        desired: None,
        observed: None,
        cascade: None,
        replace: false,
    }
}

/// A delete carried out by deleting `container`.
pub fn cascaded(name: &str, container: &str) -> Action {
    Action { op: Op::Delete, cascade: Some(addr(container)), ..action(name) }
}

/// A plan of `actions`, with edges `(before, after)` between their names.
pub fn plan(actions: Vec<Action>, edges: &[(&str, &str)]) -> Plan {
    let mut plan = Plan::default();
    for a in actions {
        plan.graph.add_node(a);
    }
    for (a, b) in edges {
        let x = plan.find(addr(a).as_str()).unwrap_or_else(|| panic!("no action {a}"));
        let y = plan.find(addr(b).as_str()).unwrap_or_else(|| panic!("no action {b}"));
        plan.graph.add_edge(x, y, ());
    }
    plan
}

/// What the fake runner saw of one call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub start_seq: usize,
    pub finish_seq: Option<usize>,
    pub start: Instant,
    pub finish: Option<Instant>,
}

/// Sleeps each action's duration (virtual time under a paused clock), records when it ran, and fails or panics
/// on chosen addresses.
#[derive(Default)]
pub struct Fake {
    pub durations: BTreeMap<Address, Duration>,
    pub fail: BTreeSet<Address>,
    pub panic: BTreeSet<Address>,
    seq: AtomicUsize,
    current: AtomicUsize,
    pub max_concurrent: AtomicUsize,
    pub calls: Mutex<BTreeMap<Address, Vec<Call>>>,
}

impl Fake {
    pub fn new() -> Self {
        Fake::default()
    }

    pub fn duration(mut self, name: &str, d: Duration) -> Self {
        self.durations.insert(addr(name), d);
        self
    }

    pub fn failing(mut self, name: &str) -> Self {
        self.fail.insert(addr(name));
        self
    }

    pub fn panicking(mut self, name: &str) -> Self {
        self.panic.insert(addr(name));
        self
    }

    /// The duration of an action (1 s unless set): also the estimate given to the executor.
    pub fn duration_of(&self, a: &Action) -> Duration {
        self.durations.get(&a.address).copied().unwrap_or(secs(1))
    }

    pub fn calls(&self) -> BTreeMap<Address, Vec<Call>> {
        self.calls.lock().unwrap().clone()
    }

    pub fn called(&self) -> BTreeSet<Address> {
        self.calls.lock().unwrap().keys().cloned().collect()
    }
}

struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ActionRunner for Fake {
    async fn run(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let start_seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(&self.current);
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        self.calls.lock().unwrap().entry(action.address.clone()).or_default().push(Call {
            start_seq,
            finish_seq: None,
            start: Instant::now(),
            finish: None,
        });
        log.command(&["fake", "run", action.address.as_str()]);
        tokio::time::sleep(self.duration_of(action)).await;
        if self.panic.contains(&action.address) {
            panic!("the fake runner panics on {}", action.address);
        }
        let finish_seq = self.seq.fetch_add(1, Ordering::SeqCst);
        if let Some(call) = self.calls.lock().unwrap().get_mut(&action.address).and_then(|v| v.last_mut()) {
            call.finish_seq = Some(finish_seq);
            call.finish = Some(Instant::now());
        }
        log.output("ok");
        if self.fail.contains(&action.address) {
            return Err(ProviderError::failed(format!("{} broke", action.address)).with_hint("try again"));
        }
        Ok(())
    }
}

/// Collects events for later inspection.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn sink(&self) -> impl Fn(Event) + Send + Sync + 'static {
        let v = Arc::clone(&self.0);
        move |e| v.lock().unwrap().push(e)
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The events about one address.
    pub fn of(&self, a: &Address) -> Vec<Event> {
        self.all()
            .into_iter()
            .filter(|e| match e {
                Event::Started { address, .. } | Event::Log { address, .. } | Event::Finished { address, .. } => {
                    address == a
                }
            })
            .collect()
    }
}
