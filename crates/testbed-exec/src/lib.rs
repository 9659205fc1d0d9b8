//! The executor: walks a plan's DAG with bounded parallelism, failure propagation and Ctrl-C handling.
//!
//! [`execute`] starts an action once every action it depends on has finished successfully, running up to
//! [`ExecOptions::parallelism`] actions at once. The rules follow Terraform's graph walk:
//!
//! - a failed action never stops the run: every action that (transitively) depends on it is
//!   [`Outcome::Skipped`], naming the failure, and every independent branch goes on to completion;
//! - among the actions that are ready, the one with the longest remaining path to the end of the plan starts
//!   first (ties by address), so results are deterministic and the run's makespan approaches the plan's
//!   [`critical_path`];
//! - a cascaded delete ([`Action::runs`] is false) has no work of its own: it completes as soon as its
//!   dependencies complete, without calling the runner and without taking a parallelism slot;
//! - the first [`Interrupt`] (Ctrl-C) stops new actions from starting and lets the running ones finish; the
//!   second aborts the running ones.
//!
//! Timings use [`tokio::time::Instant`], so tests under tokio's paused clock measure virtual time.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petgraph::graph::NodeIndex;
use petgraph::Direction;
use testbed_plan::{Action, Address, Op, Plan};
use testbed_provider::{ActionLog, ActionRunner, ErrorKind, LogEntry, ProviderError};
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

/// An estimate of how long an action takes (used to order ready actions, never as a timeout).
pub type Estimate = Arc<dyn Fn(&Action) -> Duration + Send + Sync>;

/// How to run a plan.
#[derive(Clone)]
pub struct ExecOptions {
    /// How many actions may run at once (at least 1; 0 is treated as 1). Cascaded deletes do not count.
    pub parallelism: usize,
    /// Expected duration of each action, to start the actions on the longest remaining path first. Without
    /// it every running action weighs the same.
    pub estimate: Option<Estimate>,
}

impl ExecOptions {
    pub fn new(parallelism: usize) -> Self {
        ExecOptions { parallelism, estimate: None }
    }

    pub fn with_estimate(mut self, estimate: impl Fn(&Action) -> Duration + Send + Sync + 'static) -> Self {
        self.estimate = Some(Arc::new(estimate));
        self
    }
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions::new(default_parallelism())
    }
}

impl fmt::Debug for ExecOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecOptions")
            .field("parallelism", &self.parallelism)
            .field("estimate", &self.estimate.as_ref().map(|_| "Fn(&Action) -> Duration"))
            .finish()
    }
}

/// The default number of actions run at once: 8.
///
/// Members are built in parallel, and a member's steps (launching a container, installing MicroK8s inside
/// it, side-loading images) spend most of their time waiting on LXD, snapd and the network rather than on
/// the host's CPU. Eight lets a typical testbed's members all progress together while bounding the load on
/// the single LXD daemon, the host's disk and the download bandwidth they share. It does not depend on the
/// host's CPU count for the same reason.
pub fn default_parallelism() -> usize {
    8
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and succeeded (or, for a cascaded delete, its container's work succeeded).
    Done,
    /// It ran and failed, or its task panicked.
    Failed { error: ProviderError },
    /// It did not run because an action it depends on failed; `because` names that failed action.
    Skipped { because: Address },
    /// It did not start because the run was interrupted (Ctrl-C) before it was ready or while it waited.
    NotStarted,
    /// It was running and was aborted by a second interrupt.
    Interrupted,
}

impl Outcome {
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done)
    }

    /// A short word for the outcome, as in the summary line.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
            Outcome::NotStarted => "not started",
            Outcome::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Failed { error } => write!(f, "failed: {}", error.report()),
            Outcome::Skipped { because } => write!(f, "skipped: {because} failed"),
            other => f.write_str(other.label()),
        }
    }
}

/// What happened to one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    pub address: Address,
    pub op: Op,
    pub outcome: Outcome,
    /// When it started, since the start of the run (absent if it never started).
    pub started: Option<Duration>,
    /// How long it ran (absent if it never started).
    pub duration: Option<Duration>,
}

/// What happened to a whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One entry per action, in [`Plan::order`] order.
    pub actions: Vec<ActionReport>,
    /// Wall-clock time from the start of the run to its end.
    pub makespan: Duration,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.actions.iter().filter(|a| f(&a.outcome)).count()
    }

    pub fn done(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Done))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped { .. }))
    }

    pub fn not_started(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotStarted))
    }

    pub fn interrupted(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Interrupted))
    }

    /// Whether every action is done.
    pub fn success(&self) -> bool {
        self.actions.iter().all(|a| a.outcome.is_done())
    }

    /// The failed actions and their errors, in plan order (errors carry a [`ProviderError::hint`]).
    pub fn failures(&self) -> impl Iterator<Item = (&Address, &ProviderError)> {
        self.actions.iter().filter_map(|a| match &a.outcome {
            Outcome::Failed { error } => Some((&a.address, error)),
            _ => None,
        })
    }

    /// E.g. `Apply: 12 done, 1 failed, 3 skipped.` for `run = "Apply"`, with `, 2 not started` and
    /// `, 1 interrupted` added when there are any.
    pub fn summary_line(&self, run: &str) -> String {
        let mut s = format!("{run}: {} done, {} failed, {} skipped", self.done(), self.failed(), self.skipped());
        if self.not_started() > 0 {
            s.push_str(&format!(", {} not started", self.not_started()));
        }
        if self.interrupted() > 0 {
            s.push_str(&format!(", {} interrupted", self.interrupted()));
        }
        s.push('.');
        s
    }
}

/// What the executor tells its caller as the run goes. Every action gets exactly one `Finished`; those that
/// start get a `Started` before it, and their `Log` entries come in between. Skipped actions get their
/// `Finished` as soon as the failure that skips them is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        address: Address,
        op: Op,
    },
    Log {
        address: Address,
        entry: LogEntry,
    },
    /// `duration` is how long the action ran: zero for actions that never started (skipped, not started) and
    /// for cascaded deletes.
    Finished {
        address: Address,
        op: Op,
        outcome: Outcome,
        duration: Duration,
    },
}

/// A cloneable handle to stop a run: the first [`Interrupt::interrupt`] stops new actions from starting and
/// lets running ones finish; the second aborts the running ones.
#[derive(Clone, Debug)]
pub struct Interrupt {
    tx: Arc<watch::Sender<u32>>,
    /// The signal that first stopped the run, when a signal did.
    signal: Arc<std::sync::atomic::AtomicI32>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

impl Interrupt {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        Interrupt { tx: Arc::new(tx), signal: Arc::default() }
    }

    /// Asks the run to stop (first call) or to abort what is running (second call).
    pub fn interrupt(&self) {
        self.tx.send_modify(|n| *n = n.saturating_add(1));
    }

    /// How many times [`Interrupt::interrupt`] was called.
    pub fn count(&self) -> u32 {
        *self.tx.borrow()
    }

    /// Spawns a task that calls [`Interrupt::interrupt`] on every Ctrl-C (SIGINT) and every SIGTERM (what
    /// `kill`, a CI runner's cancel or a service manager sends), for the CLI. Must be called inside a tokio
    /// runtime. Once it runs, these signals no longer kill the process: the run stops, or aborts, and returns
    /// its report. The task ends if the signals cannot be listened for.
    pub fn listen_for_signals(&self) -> tokio::task::JoinHandle<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let me = self.clone();
        tokio::spawn(async move {
            let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                (Ok(int), Ok(term)) => (int, term),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("cannot listen for Ctrl-C and SIGTERM: {e}");
                    return;
                }
            };
            loop {
                let number = tokio::select! {
                    Some(()) = int.recv() => SignalKind::interrupt().as_raw_value(),
                    Some(()) = term.recv() => SignalKind::terminate().as_raw_value(),
                    else => return,
                };
                let _ = me.signal.compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst);
                me.interrupt();
                tracing::debug!(count = me.count(), signal = number, "interrupted");
            }
        })
    }

    /// The exit status for a run a signal stopped, as a shell reports a process the signal ended: 128 plus
    /// the signal's number (130 for Ctrl-C, 143 for SIGTERM). None when no signal stopped it.
    pub fn signal_exit_status(&self) -> Option<u8> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => u8::try_from(128 + n).ok(),
        }
    }

    /// Watches the number of interrupts, e.g. to tell the user "stopping; press Ctrl-C again to abort".
    pub fn subscribe(&self) -> watch::Receiver<u32> {
        self.tx.subscribe()
    }
}

/// How an action weighs when ordering and in [`critical_path`]: cascaded deletes weigh nothing.
fn weight(a: &Action, duration: &dyn Fn(&Action) -> Duration) -> Duration {
    if a.runs() {
        duration(a)
    } else {
        Duration::ZERO
    }
}

/// The longest path through the plan, summing each action's duration (cascaded deletes weigh 0): the
/// shortest possible makespan with unbounded parallelism.
pub fn critical_path(plan: &Plan, duration: impl Fn(&Action) -> Duration) -> Duration {
    let g = &plan.graph;
    let mut finish = vec![Duration::ZERO; g.node_count()];
    let mut longest = Duration::ZERO;
    for n in plan.order() {
        let before =
            g.neighbors_directed(n, Direction::Incoming).map(|p| finish[p.index()]).max().unwrap_or(Duration::ZERO);
        finish[n.index()] = before + weight(&g[n], &duration);
        longest = longest.max(finish[n.index()]);
    }
    longest
}

/// The sum of every action's duration (cascaded deletes weigh 0): the makespan with parallelism 1.
pub fn serial_sum(plan: &Plan, duration: impl Fn(&Action) -> Duration) -> Duration {
    plan.graph.node_weights().map(|a| weight(a, &duration)).sum()
}

/// For each node (by index), the longest path from its start to the end of the plan, itself included.
fn remaining_paths(plan: &Plan, order: &[NodeIndex], duration: &dyn Fn(&Action) -> Duration) -> Vec<Duration> {
    let g = &plan.graph;
    let mut rest = vec![Duration::ZERO; g.node_count()];
    for &n in order.iter().rev() {
        let after =
            g.neighbors_directed(n, Direction::Outgoing).map(|s| rest[s.index()]).max().unwrap_or(Duration::ZERO);
        rest[n.index()] = after + weight(&g[n], duration);
    }
    rest
}

type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// How one action ended, while the run goes.
struct Finish {
    outcome: Outcome,
    started: Option<Duration>,
    duration: Option<Duration>,
}

/// The state of one run.
struct Walk<'p> {
    plan: &'p Plan,
    on_event: Sink,
    /// Per node: how many predecessors have not finished Done.
    waiting: Vec<usize>,
    /// Per node: how it ended, once it has.
    finished: Vec<Option<Finish>>,
    /// Actions whose predecessors are all done, highest priority first.
    ready: BTreeSet<(Reverse<Duration>, &'p Address, NodeIndex)>,
    priority: Vec<Duration>,
}

impl<'p> Walk<'p> {
    fn make_ready(&mut self, n: NodeIndex) {
        self.ready.insert((Reverse(self.priority[n.index()]), &self.plan.graph[n].address, n));
    }

    /// Records how `n` ended and lets its dependents go on (or skips them).
    fn finish(&mut self, n: NodeIndex, outcome: Outcome, started: Option<Duration>, duration: Option<Duration>) {
        let g = &self.plan.graph;
        let a = &g[n];
        tracing::debug!(address = %a.address, op = a.op.name(), outcome = %outcome, ?duration, "action finished");
        (self.on_event)(Event::Finished {
            address: a.address.clone(),
            op: a.op,
            outcome: outcome.clone(),
            duration: duration.unwrap_or_default(),
        });
        match &outcome {
            Outcome::Done => {
                for s in g.neighbors_directed(n, Direction::Outgoing) {
                    self.waiting[s.index()] = self.waiting[s.index()].saturating_sub(1);
                    if self.waiting[s.index()] == 0 && self.finished[s.index()].is_none() {
                        self.make_ready(s);
                    }
                }
            }
            Outcome::Failed { .. } => {
                let because = &a.address;
                let mut stack: Vec<NodeIndex> = g.neighbors_directed(n, Direction::Outgoing).collect();
                while let Some(d) = stack.pop() {
                    if self.finished[d.index()].is_some() {
                        // Already skipped, with everything after it.
                        continue;
                    }
                    let skipped = Outcome::Skipped { because: because.clone() };
                    tracing::debug!(address = %g[d].address, because = %because, "action skipped");
                    (self.on_event)(Event::Finished {
                        address: g[d].address.clone(),
                        op: g[d].op,
                        outcome: skipped.clone(),
                        duration: Duration::ZERO,
                    });
                    self.finished[d.index()] = Some(Finish { outcome: skipped, started: None, duration: None });
                    stack.extend(g.neighbors_directed(d, Direction::Outgoing));
                }
            }
            // Whatever waits on an interrupted action was stopped by the user: it is reported not started.
            Outcome::Skipped { .. } | Outcome::NotStarted | Outcome::Interrupted => {}
        }
        self.finished[n.index()] = Some(Finish { outcome, started, duration });
    }
}

/// Why a runner task ended without a result.
fn join_failure(e: JoinError, a: &Action) -> Outcome {
    if e.is_cancelled() {
        return Outcome::Interrupted;
    }
    let why = match e.try_into_panic() {
        Ok(payload) => match payload.downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => payload.downcast_ref::<String>().cloned().unwrap_or_else(|| "no message".to_owned()),
        },
        Err(e) => e.to_string(),
    };
    Outcome::Failed {
        error: ProviderError::failed(format!(
            "internal error: the {} of {} stopped unexpectedly (panic: {why})",
            a.op.name(),
            a.address
        ))
        .with_hint("this is a bug in testbed; the log has the details of what the action ran"),
    }
}

/// Runs `plan`: see the crate documentation for the rules. Never panics because an action does; returns when
/// every action has finished, been skipped, or been stopped by `interrupt`.
pub async fn execute(
    plan: &Plan,
    runner: Arc<dyn ActionRunner>,
    options: &ExecOptions,
    interrupt: &Interrupt,
    on_event: impl Fn(Event) + Send + Sync + 'static,
) -> Report {
    let start = Instant::now();
    let since_start = move || Instant::now().saturating_duration_since(start);
    let g = &plan.graph;
    let parallelism = options.parallelism.max(1);
    let order = plan.order();
    let unit = |_: &Action| Duration::from_secs(1);
    let priority = match &options.estimate {
        Some(f) => remaining_paths(plan, &order, f.as_ref()),
        None => remaining_paths(plan, &order, &unit),
    };
    let mut walk = Walk {
        plan,
        on_event: Arc::new(on_event),
        waiting: g.node_indices().map(|n| g.neighbors_directed(n, Direction::Incoming).count()).collect(),
        finished: (0..g.node_count()).map(|_| None).collect(),
        ready: BTreeSet::new(),
        priority,
    };
    for n in g.node_indices() {
        if walk.waiting[n.index()] == 0 {
            walk.make_ready(n);
        }
    }

    let mut rx = interrupt.subscribe();
    let mut level = 0;
    let mut set: JoinSet<Result<(), ProviderError>> = JoinSet::new();
    // Running tasks: their node and when they started.
    let mut running: HashMap<Id, (NodeIndex, Duration)> = HashMap::new();
    loop {
        let now_level = *rx.borrow_and_update();
        if now_level > level {
            level = now_level;
            let abort = level >= 2;
            tracing::debug!(abort, running = running.len(), "interrupted");
            if abort {
                set.abort_all();
            }
        }

        // Start what may start: cascaded deletes always (they do nothing but record their container's work),
        // other actions while there is a free slot and no interrupt.
        while let Some(key) =
            walk.ready.iter().find(|(_, _, n)| !g[*n].runs() || (level == 0 && running.len() < parallelism)).copied()
        {
            walk.ready.remove(&key);
            let n = key.2;
            let action = &g[n];
            let started = since_start();
            tracing::debug!(address = %action.address, op = action.op.name(), "action started");
            (walk.on_event)(Event::Started { address: action.address.clone(), op: action.op });
            if !action.runs() {
                walk.finish(n, Outcome::Done, Some(started), Some(Duration::ZERO));
                continue;
            }
            let action = action.clone();
            let runner = Arc::clone(&runner);
            let sink = Arc::clone(&walk.on_event);
            let address = action.address.clone();
            let log = ActionLog::new(move |entry| sink(Event::Log { address: address.clone(), entry }));
            let handle = set.spawn(async move { runner.run(&action, &log).await });
            running.insert(handle.id(), (n, started));
        }

        if set.is_empty() {
            break;
        }
        tokio::select! {
            changed = rx.changed(), if level < 2 => {
                if changed.is_err() {
                    // Cannot happen while `interrupt` is borrowed; stop listening all the same.
                    level = 2;
                }
            }
            joined = set.join_next_with_id() => {
                let Some(joined) = joined else { continue };
                let (id, result) = match joined {
                    Ok((id, result)) => (id, Ok(result)),
                    Err(e) => (e.id(), Err(e)),
                };
                let Some((n, started)) = running.remove(&id) else { continue };
                let duration = since_start().saturating_sub(started);
                let outcome = match result {
                    Ok(Ok(())) => Outcome::Done,
                    Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => Outcome::Interrupted,
                    Ok(Err(error)) => Outcome::Failed { error },
                    Err(e) => join_failure(e, &g[n]),
                };
                walk.finish(n, outcome, Some(started), Some(duration));
            }
        }
    }

    // Whatever has not finished was stopped by an interrupt before it started, or (in a plan with a cycle,
    // which the planner never makes) could never start.
    let in_order: BTreeSet<NodeIndex> = order.iter().copied().collect();
    let mut all = order.clone();
    all.extend(g.node_indices().filter(|n| !in_order.contains(n)));
    for &n in &all {
        if walk.finished[n.index()].is_none() {
            let outcome = if in_order.contains(&n) {
                Outcome::NotStarted
            } else {
                Outcome::Failed {
                    error: ProviderError::failed(format!(
                        "internal error: {} is part of a dependency cycle in the plan",
                        g[n].address
                    )),
                }
            };
            walk.finish(n, outcome, None, None);
        }
    }

    let actions = all
        .iter()
        .map(|&n| {
            let a = &g[n];
            let f = walk.finished[n.index()].take().unwrap_or(Finish {
                outcome: Outcome::NotStarted,
                started: None,
                duration: None,
            });
            ActionReport {
                address: a.address.clone(),
                op: a.op,
                outcome: f.outcome,
                started: f.started,
                duration: f.duration,
            }
        })
        .collect();
    Report { actions, makespan: since_start() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_mentions_only_what_happened() {
        let a = |s: &str, outcome| ActionReport {
            address: Address::parse(s).unwrap(),
            op: Op::Create,
            outcome,
            started: None,
            duration: None,
        };
        let mut r = Report {
            actions: vec![
                a("image.one", Outcome::Done),
                a("image.two", Outcome::Failed { error: ProviderError::failed("no") }),
                a("image.three", Outcome::Skipped { because: Address::parse("image.two").unwrap() }),
            ],
            makespan: Duration::ZERO,
        };
        assert_eq!(r.summary_line("Apply"), "Apply: 1 done, 1 failed, 1 skipped.");
        assert!(!r.success());
        r.actions.push(a("image.four", Outcome::NotStarted));
        r.actions.push(a("image.five", Outcome::Interrupted));
        assert_eq!(r.summary_line("Apply"), "Apply: 1 done, 1 failed, 1 skipped, 1 not started, 1 interrupted.");
        assert_eq!(r.failures().count(), 1);
    }

    #[test]
    fn default_parallelism_is_at_least_one() {
        assert!(default_parallelism() >= 1);
        assert_eq!(ExecOptions::default().parallelism, default_parallelism());
    }
}
