//! `testbed drill failover MEMBER`: seed 003's failover test as a command (docs/drill.md).
//!
//! It records where every workload runs, fails MEMBER as Karmada's own failover tests do (a
//! `cluster.karmada.io/not-ready:NoExecute` taint on its Cluster: `testbed_karmada::drill`), watches the
//! ResourceBindings and MEMBER's pods until the workloads run elsewhere (at most the longest toleration of
//! their policies plus `--margin`), restores MEMBER, waits until its Cluster is Ready again and reports
//! where the workloads settled, as a timeline of what it saw and when.
//!
//! Time is read from the clock of the world Karmada runs in ([`Session::clock`]): this host's, or the
//! simulated machine's, which runs ahead while the drill waits on it, so that a drill on the simulated
//! machine does not wait out a real minute; the timeline then says its times are simulated.
//!
//! The drill takes the run lock like apply (one run at a time per world). On Ctrl-C (or SIGTERM) it stops
//! watching and restores MEMBER before it exits; a second Ctrl-C gives up the restore, and the drill says how
//! to restore by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use miette::Diagnostic;
use serde::Serialize;
use testbed_exec::Interrupt;
use testbed_karmada::drill::{drill_taint, ClusterTaint, Tolerated, WorkloadPlacement};
use testbed_karmada::KarmadaProvider;
use testbed_lxd::LxdProvider;
use testbed_provider::{Clock, ProviderError};
use thiserror::Error;

use crate::cli::{Cli, FailoverArgs};
use crate::error::CliError;
use crate::session::Session;

/// The version of `drill failover --json`'s format: a change that removes or renames a field bumps the
/// major number.
pub const FORMAT_VERSION: &str = "1.0";

/// How often the drill looks at Karmada.
const POLL: Duration = Duration::from_secs(1);
/// How long the drill waits for MEMBER to be Ready again once restored.
const RESTORE_LIMIT: Duration = Duration::from_secs(300);
/// How long past the move the drill waits for the old pods to go (a purge mode of `Never` keeps them).
const PODS_GRACE: Duration = Duration::from_secs(30);
/// How long Karmada may take to see a stopped member not Ready (karmada-controller-manager's
/// `--cluster-monitor-grace-period` is 40 s by default), added to the wait with `--stop`.
const STOP_DETECTION: Duration = Duration::from_secs(60);

/// Why a drill does not start, or could not finish.
#[derive(Debug, Error, Diagnostic)]
pub enum DrillError {
    #[error("cluster failover is off in Karmada: karmada-controller-manager runs without the Failover feature gate and no-execute taint eviction, so a failed member's workloads would stay where they are")]
    #[diagnostic(
        code(testbed::drill::failover_off),
        help("set `failover = true` under [karmada] in {} (or give a workload `failover`), then run `testbed apply`, which switches it on", config.display())
    )]
    FailoverOff { config: PathBuf },

    #[error("no workload has a failover policy: none of the file's workloads tolerates a failed member for a while and then moves")]
    #[diagnostic(
        code(testbed::drill::no_failover_workload),
        help("give a [[workloads]] entry of {} `failover = {{ toleration_seconds = 60, purge_mode = \"Gracefully\" }}` and a `spread` below its members (examples/failover.toml), then run `testbed apply`", config.display())
    )]
    NoFailoverWorkload { config: PathBuf },

    #[error("no workload with a failover policy runs on {member}: {elsewhere}")]
    #[diagnostic(
        code(testbed::drill::not_on_member),
        help("drill a member such a workload runs on: `testbed drill failover {suggest}`")
    )]
    NotOnMember { member: String, elsewhere: String, suggest: String },

    #[error("{member} is not registered with Karmada")]
    #[diagnostic(code(testbed::drill::not_joined), help("run `testbed apply` to join it, then drill it"))]
    NotJoined { member: String },

    #[error("{member} is not Ready in Karmada ({why}): the drill fails a healthy member and watches it recover")]
    #[diagnostic(
        code(testbed::drill::not_ready),
        help("`testbed status` shows what is wrong; `testbed apply` repairs what it can")
    )]
    NotReady { member: String, why: String },

    /// A call to Karmada failed.
    #[error("{message}")]
    #[diagnostic(code(testbed::drill::karmada))]
    Karmada {
        message: String,
        #[help]
        hint: Option<String>,
    },
}

impl From<ProviderError> for DrillError {
    fn from(e: ProviderError) -> DrillError {
        DrillError::Karmada { message: e.report().to_string(), hint: e.hint().map(str::to_owned) }
    }
}

/// How the member was failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum How {
    /// A NoExecute taint on its Cluster.
    Taint { taint: String },
    /// Its container stopped (`--stop`).
    Stop,
}

/// One thing the drill did or saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum What {
    /// The member's Cluster was tainted.
    Tainted { member: String, taint: String },
    /// The member's container was stopped.
    Stopped { member: String },
    /// Karmada reports the member's Cluster not Ready.
    NotReady { member: String },
    /// Karmada (testbed's ClusterTaintPolicy) tainted the member's Cluster NoExecute.
    TaintedByKarmada { member: String, taint: String },
    /// Karmada no longer schedules the workload on the member.
    Evicted { workload: String, member: String },
    /// Karmada scheduled the workload on another member.
    Scheduled { workload: String, member: String },
    /// Karmada reports the workload healthy on that member.
    Ready { workload: String, member: String },
    /// The member runs none of the workload's pods any more.
    PodsGone { workload: String, member: String },
    /// The drill's taint was taken off the member's Cluster.
    Untainted { member: String, taint: String },
    /// The member's container was started again.
    Started { member: String },
    /// The member's Cluster is Ready again, without the drill's taint.
    MemberReady { member: String },
}

/// An event, at a time since the member was failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Milliseconds since the member was failed, on the drill's clock.
    pub at_ms: u64,
    #[serde(flatten)]
    pub what: What,
}

/// Where a workload runs: each member with whether Karmada reports it healthy there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    pub workload: String,
    pub members: Vec<OnMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnMember {
    pub member: String,
    pub healthy: bool,
}

/// How the drill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Outcome {
    /// Every workload on the member ran healthy elsewhere, and the member was restored.
    Passed { moved_after_ms: u64 },
    /// The workloads did not all run elsewhere within the limit (the member was restored).
    NotMoved { limit_ms: u64, still: Vec<String> },
    /// The drill's taint went before the workloads moved: someone else removed it.
    TaintRemoved { at_ms: u64 },
    /// Ctrl-C or SIGTERM stopped the drill; whether the member was restored.
    Interrupted { restored: bool },
    /// The member could not be restored.
    NotRestored { why: String, by_hand: String },
}

/// What a drill did and saw: what `drill failover` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub format_version: &'static str,
    pub drill: &'static str,
    pub member: String,
    #[serde(flatten)]
    pub how: How,
    /// The times are the simulated machine's clock, not real ones.
    pub simulated_time: bool,
    /// How long the workloads' policies let them stay on a failed member, and the limit of the wait.
    pub toleration_ms: Option<u64>,
    pub limit_ms: u64,
    pub before: Vec<Placed>,
    pub events: Vec<Event>,
    pub after: Vec<Placed>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// `61 s`, `1.5 s`, `250 ms`: a time of the timeline.
fn seconds(ms: u64) -> String {
    if ms >= 10_000 || ms.is_multiple_of(1000) {
        format!("{} s", (ms + 500) / 1000)
    } else if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

fn placed_line(p: &Placed) -> String {
    if p.members.is_empty() {
        return "nowhere".to_owned();
    }
    p.members
        .iter()
        .map(|m| format!("{} ({})", m.member, if m.healthy { "healthy" } else { "not healthy" }))
        .collect::<Vec<_>>()
        .join(", ")
}

impl What {
    fn text(&self) -> String {
        match self {
            What::Tainted { member, taint } => format!("{member} tainted {taint}"),
            What::Stopped { member } => format!("{member}'s container stopped"),
            What::NotReady { member } => format!("{member} not Ready in Karmada"),
            What::TaintedByKarmada { member, taint } => format!("{member} tainted {taint} by Karmada"),
            What::Started { member } => format!("{member}'s container started"),
            What::Evicted { workload, member } => format!("{workload} evicted from {member}"),
            What::Scheduled { workload, member } => format!("{workload} scheduled on {member}"),
            What::Ready { workload, member } => format!("{workload} Ready on {member}"),
            What::PodsGone { workload, member } => format!("{workload}: no pods left on {member}"),
            What::Untainted { member, taint } => format!("{member} untainted {taint}"),
            What::MemberReady { member } => format!("{member} Ready again"),
        }
    }
}

impl Timeline {
    /// The timeline as a person reads it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = match &self.how {
            How::Taint { taint } => writeln!(out, "Failover drill of {}: its Cluster tainted {taint}.", self.member),
            How::Stop => writeln!(out, "Failover drill of {}: its container stopped.", self.member),
        };
        if self.simulated_time {
            let _ = writeln!(out, "Times are on the simulated machine's clock: they are not real ones.");
        }
        let width = self.before.iter().chain(&self.after).map(|p| p.workload.len()).max().unwrap_or(0);
        let _ = writeln!(out, "\nBefore:");
        for p in &self.before {
            let _ = writeln!(out, "    {:<width$}  {}", p.workload, placed_line(p));
        }
        let _ = writeln!(out);
        let times: Vec<String> = self.events.iter().map(|e| seconds(e.at_ms)).collect();
        let tw = times.iter().map(String::len).max().unwrap_or(0);
        for (e, t) in self.events.iter().zip(&times) {
            let _ = writeln!(out, "    {t:>tw$}  {}", e.what.text());
        }
        if !self.after.is_empty() {
            let _ = writeln!(out, "\nSettled:");
            for p in &self.after {
                let _ = writeln!(out, "    {:<width$}  {}", p.workload, placed_line(p));
            }
        }
        let _ = writeln!(out);
        let tolerated = self.toleration_ms.map(|t| format!(" (tolerated for {})", seconds(t))).unwrap_or_default();
        let _ = match &self.outcome {
            Outcome::Passed { moved_after_ms } => writeln!(
                out,
                "Failover drill passed: the workloads on {} ran elsewhere {} after it failed{tolerated}, and {} is restored. Karmada does not move them back by itself.",
                self.member,
                seconds(*moved_after_ms),
                self.member
            ),
            Outcome::NotMoved { limit_ms, still } => writeln!(
                out,
                "Failover drill failed: {} did not run healthy elsewhere within {}{tolerated}; {} is restored.",
                still.join(", "),
                seconds(*limit_ms),
                self.member
            ),
            Outcome::TaintRemoved { at_ms } => writeln!(
                out,
                "Failover drill failed: the drill's taint was removed from {} by someone else at {}, before the workloads moved (Karmada's ClusterTaintPolicy controller removes a not-ready taint from a Ready cluster when its conditions change).",
                self.member,
                seconds(*at_ms)
            ),
            Outcome::Interrupted { restored: true } => {
                writeln!(out, "Failover drill interrupted; {} is restored.", self.member)
            }
            Outcome::Interrupted { restored: false } | Outcome::NotRestored { .. } => Ok(()),
        };
        if let Outcome::NotRestored { why, by_hand } = &self.outcome {
            let _ = writeln!(out, "Failover drill could not restore {}: {why}.\n  next: {by_hand}", self.member);
        }
        out
    }
}

/// The placements as the timeline shows them.
fn placed(placements: &[WorkloadPlacement]) -> Vec<Placed> {
    placements
        .iter()
        .map(|p| Placed {
            workload: p.workload.clone(),
            members: p.members.iter().map(|(m, h)| OnMember { member: m.clone(), healthy: *h }).collect(),
        })
        .collect()
}

/// What the drill has seen of one workload.
#[derive(Debug, Default)]
struct Seen {
    evicted: bool,
    scheduled: BTreeSet<String>,
    ready: BTreeSet<String>,
    pods_gone: bool,
}

/// What one look at Karmada adds to the timeline, for the workloads that were on `member`.
fn observe_step(
    member: &str,
    at_ms: u64,
    now: &[WorkloadPlacement],
    seen: &mut BTreeMap<String, Seen>,
    events: &mut Vec<Event>,
) {
    for (workload, s) in seen.iter_mut() {
        let Some(p) = now.iter().find(|p| &p.workload == workload) else { continue };
        let mut push = |what: What| events.push(Event { at_ms, what });
        if !s.evicted && !p.on(member) {
            s.evicted = true;
            push(What::Evicted { workload: workload.clone(), member: member.to_owned() });
        }
        for (m, healthy) in p.members.iter().filter(|(m, _)| m.as_str() != member) {
            if s.scheduled.insert(m.clone()) {
                push(What::Scheduled { workload: workload.clone(), member: m.clone() });
            }
            if *healthy && s.ready.insert(m.clone()) {
                push(What::Ready { workload: workload.clone(), member: m.clone() });
            }
        }
    }
}

/// Whether `p` runs healthy away from `member`.
fn moved(p: &WorkloadPlacement, member: &str) -> bool {
    !p.on(member) && !p.members.is_empty() && p.members.values().all(|h| *h)
}

/// How the drill fails the member.
enum Failure {
    /// The drill's taint on its Cluster.
    Taint,
    /// Its container stopped, through the LXD layer's provider.
    Stop(Arc<LxdProvider>),
}

struct Drill<'a> {
    karmada: Arc<KarmadaProvider>,
    failure: Failure,
    clock: Arc<dyn Clock>,
    member: &'a str,
    taint: ClusterTaint,
    /// When the member was failed, on the clock.
    t0: Duration,
    events: Vec<Event>,
}

impl Drill<'_> {
    fn at_ms(&self) -> u64 {
        u64::try_from(self.clock.now().saturating_sub(self.t0).as_millis()).unwrap_or(u64::MAX)
    }

    fn push(&mut self, what: What) {
        let at_ms = self.at_ms();
        self.events.push(Event { at_ms, what });
    }

    /// Fails the member.
    async fn fail(&mut self) -> Result<(), DrillError> {
        let member = self.member.to_owned();
        match &self.failure {
            Failure::Taint => {
                self.karmada.taint_member(&member, &self.taint).await?;
                self.t0 = self.clock.now();
                self.push(What::Tainted { member, taint: self.taint.to_string() });
            }
            Failure::Stop(lxd) => {
                lxd.set_running(&member, false).await?;
                self.t0 = self.clock.now();
                self.push(What::Stopped { member });
            }
        }
        Ok(())
    }

    /// What Karmada says of the member's Cluster while it is failed: not Ready, tainted NoExecute by its
    /// ClusterTaintPolicy (a stopped member); each once.
    fn observe_cluster(&mut self, cluster: &testbed_karmada::drill::ClusterStatus, seen: &mut (bool, bool)) {
        let member = self.member.to_owned();
        if !seen.0 && !cluster.is_ready() {
            seen.0 = true;
            self.push(What::NotReady { member: member.clone() });
        }
        let by_karmada = cluster.taints.iter().find(|t| t.effect == "NoExecute" && !t.same(&self.taint));
        if let (false, Some(t)) = (seen.1, by_karmada) {
            seen.1 = true;
            self.push(What::TaintedByKarmada { member, taint: t.to_string() });
        }
    }

    /// Watches the workloads that were on the member until every one runs healthy elsewhere (and its old
    /// pods are gone, for a while), or until `limit`.
    async fn watch(&mut self, workloads: &[String], limit: Duration) -> Result<Outcome, DrillError> {
        let mut seen: BTreeMap<String, Seen> = workloads.iter().map(|w| (w.clone(), Seen::default())).collect();
        let mut moved_at: Option<u64> = None;
        let mut cluster_seen = (false, false);
        // The workloads that do not run healthy elsewhere yet, as last seen.
        let mut still: Vec<String> = workloads.to_vec();
        let stopped = matches!(self.failure, Failure::Stop(_));
        loop {
            let at_ms = self.at_ms();
            match self.karmada.placements(&self.taint).await {
                Ok(now) => {
                    observe_step(self.member, at_ms, &now, &mut seen, &mut self.events);
                    let moved_now =
                        |w: &String| now.iter().find(|p| &p.workload == w).is_some_and(|p| moved(p, self.member));
                    still = workloads.iter().filter(|w| !moved_now(w)).cloned().collect();
                    if still.is_empty() && moved_at.is_none() {
                        moved_at = Some(at_ms);
                    }
                }
                Err(e) => tracing::warn!("the drill could not read the bindings: {}", e.report()),
            }
            // A stopped member's API does not answer: its pods cannot be seen.
            for (w, s) in seen.iter_mut().filter(|(_, s)| !stopped && s.evicted && !s.pods_gone) {
                if let Some((_, 0)) = self.karmada.pods_on(self.member, w).await {
                    s.pods_gone = true;
                    self.events.push(Event {
                        at_ms,
                        what: What::PodsGone { workload: w.clone(), member: self.member.to_owned() },
                    });
                }
            }
            if let Ok(Some(c)) = self.karmada.member_cluster(self.member).await {
                self.observe_cluster(&c, &mut cluster_seen);
                if !stopped && moved_at.is_none() && !c.taints.iter().any(|t| t.same(&self.taint)) {
                    return Ok(Outcome::TaintRemoved { at_ms });
                }
            }
            let elapsed = Duration::from_millis(at_ms);
            if let Some(m) = moved_at {
                let pods_done = stopped || seen.values().all(|s| s.pods_gone);
                if pods_done || elapsed >= Duration::from_millis(m) + PODS_GRACE || elapsed >= limit {
                    return Ok(Outcome::Passed { moved_after_ms: m });
                }
            } else if elapsed >= limit {
                return Ok(Outcome::NotMoved { limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX), still });
            }
            self.clock.sleep(POLL).await;
        }
    }

    /// Takes the drill's taint off (or starts the container) and waits until the member's Cluster is Ready
    /// without a NoExecute taint of the drill's key (a ClusterTaintPolicy's goes once the Cluster is Ready).
    async fn restore(&mut self) -> Result<(), DrillError> {
        let member = self.member.to_owned();
        match &self.failure {
            Failure::Taint => {
                self.karmada.untaint_member(&member, &self.taint).await?;
                self.push(What::Untainted { member, taint: self.taint.to_string() });
            }
            Failure::Stop(lxd) => {
                lxd.set_running(&member, true).await?;
                self.push(What::Started { member });
            }
        }
        let since = self.clock.now();
        let failed = |t: &ClusterTaint| t.key == self.taint.key && t.effect == self.taint.effect;
        loop {
            // A read that fails (the API busy for a moment) is tried again, up to the limit.
            let cluster = self.karmada.member_cluster(self.member).await;
            if cluster.as_ref().is_ok_and(|c| c.as_ref().is_some_and(|c| c.is_ready() && !c.taints.iter().any(failed)))
            {
                self.push(What::MemberReady { member: self.member.to_owned() });
                return Ok(());
            }
            if self.clock.now().saturating_sub(since) >= RESTORE_LIMIT {
                return Err(match cluster {
                    Ok(Some(c)) => DrillError::NotReady { member: self.member.to_owned(), why: c.to_string() },
                    Ok(None) => DrillError::NotJoined { member: self.member.to_owned() },
                    Err(e) => e.into(),
                });
            }
            self.clock.sleep(POLL).await;
        }
    }
}

/// `testbed drill failover MEMBER`.
pub async fn failover(cli: &Cli, args: &FailoverArgs) -> Result<ExitCode, CliError> {
    let (session, locks) = Session::open_locked(cli, "drill failover", args.lock.lock_timeout)?;
    for n in &locks.notes {
        eprintln!("Note: {n}");
    }
    eprintln!("{}", session.simulation_banner());
    let member = args.member.as_str();
    let members: Vec<&str> = session.config.file.members.iter().map(|m| m.name.as_str()).collect();
    if !members.contains(&member) {
        return Err(CliError::usage(
            format!("{member:?} is not a member of {}", cli.config.display()),
            Some(format!("drill one of: {}", members.join(", "))),
        ));
    }
    let karmada = session.karmada.clone().ok_or_else(|| {
        CliError::usage(
            "the Karmada layer has no provider to drill with",
            Some("run `testbed status` to see why".into()),
        )
    })?;
    let config = session.config.path.clone();
    let failure = match (args.stop, &session.lxd) {
        (false, _) => Failure::Taint,
        (true, Some(lxd)) => Failure::Stop(lxd.clone()),
        (true, None) => {
            return Err(CliError::usage(
                "--stop needs the LXD layer, which has no provider here",
                Some("drill without --stop: the taint fails the member as Karmada sees a failure".into()),
            ))
        }
    };
    let taint = drill_taint();
    // A stopped member is tainted only once Karmada has seen it not Ready: that takes its time too.
    let detection = if args.stop { STOP_DETECTION } else { Duration::ZERO };
    let ready = prepare(&karmada, member, &taint, &config, args.margin + detection).await?;

    let mut drill =
        Drill { karmada, failure, clock: session.clock.clone(), member, taint, t0: Duration::ZERO, events: vec![] };
    let interrupt = Interrupt::new();
    interrupt.listen_for_signals();
    let mut presses = interrupt.subscribe();

    drill.fail().await?;
    let how = match drill.failure {
        Failure::Taint => format!("Tainted {member} {}", drill.taint),
        Failure::Stop(_) => format!("Stopped {member}'s container"),
    };
    eprintln!(
        "{how}; watching for up to {} (longest toleration {}{} + margin {}). Ctrl-C restores {member} and stops.",
        seconds(ms(ready.limit)),
        ready.toleration.map_or("none".to_owned(), |t| seconds(ms(t))),
        if args.stop { format!(" + {} for Karmada to notice", seconds(ms(STOP_DETECTION))) } else { String::new() },
        seconds(ms(args.margin)),
    );

    let watched = tokio::select! {
        w = drill.watch(&ready.workloads, ready.limit) => Some(w),
        _ = presses.changed() => None,
    };
    if watched.is_none() {
        eprintln!("\nInterrupt: restoring {member} before stopping. Press Ctrl-C again to stop without restoring.");
    }
    let restored = tokio::select! {
        r = drill.restore() => Some(r),
        _ = presses.changed() => None,
    };
    let after = drill.karmada.placements(&drill.taint).await.map(|p| placed(&p)).unwrap_or_default();
    let by_hand = match &drill.failure {
        Failure::Taint => drill.karmada.untaint_by_hand(member, &drill.taint),
        Failure::Stop(_) => format!("start it by hand: `lxc start {member}` (`incus start {member}` with Incus)"),
    };
    let outcome = match (watched, restored) {
        (_, None) => Outcome::NotRestored { why: "the drill was stopped before it was".into(), by_hand },
        (_, Some(Err(e))) => Outcome::NotRestored { why: e.to_string(), by_hand },
        (None, Some(Ok(()))) => Outcome::Interrupted { restored: true },
        (Some(Err(e)), Some(Ok(()))) => return Err(e.into()),
        (Some(Ok(o)), Some(Ok(()))) => o,
    };
    let timeline = Timeline {
        format_version: FORMAT_VERSION,
        drill: "failover",
        member: member.to_owned(),
        how: match drill.failure {
            Failure::Taint => How::Taint { taint: drill.taint.to_string() },
            Failure::Stop(_) => How::Stop,
        },
        simulated_time: drill.clock.simulated(),
        toleration_ms: ready.toleration.map(ms),
        limit_ms: ms(ready.limit),
        before: ready.before,
        events: drill.events,
        after,
        outcome,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&timeline).map_err(|e| CliError::usage(e.to_string(), None))?;
        println!("{text}");
    } else {
        print!("{}", timeline.text());
    }
    Ok(match &timeline.outcome {
        Outcome::Passed { .. } => ExitCode::SUCCESS,
        Outcome::Interrupted { .. } | Outcome::NotRestored { .. } if interrupt.signal_exit_status().is_some() => {
            ExitCode::from(interrupt.signal_exit_status().unwrap_or(1))
        }
        _ => ExitCode::FAILURE,
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the drill starts from.
struct Ready {
    before: Vec<Placed>,
    /// The workloads on the member that are to move (those whose policies do not tolerate the taint for ever).
    workloads: Vec<String>,
    /// The longest toleration among them.
    toleration: Option<Duration>,
    limit: Duration,
}

/// Checks that the drill can run (failover on, the member joined and Ready, a workload with a failover
/// policy on it), takes off a taint an earlier drill left, and records where the workloads run.
async fn prepare(
    karmada: &KarmadaProvider,
    member: &str,
    taint: &ClusterTaint,
    config: &Path,
    margin: Duration,
) -> Result<Ready, DrillError> {
    if !karmada.failover_is_on().await? {
        return Err(DrillError::FailoverOff { config: config.to_path_buf() });
    }
    let Some(cluster) = karmada.member_cluster(member).await? else {
        return Err(DrillError::NotJoined { member: member.to_owned() });
    };
    if cluster.taints.iter().any(|t| t.same(taint)) {
        eprintln!("Note: {member} still has the taint {taint} of an earlier drill; taking it off first.");
        karmada.untaint_member(member, taint).await?;
    } else if !cluster.is_ready() {
        return Err(DrillError::NotReady { member: member.to_owned(), why: cluster.to_string() });
    }
    let placements = karmada.placements(taint).await?;
    let failing_over: Vec<&WorkloadPlacement> = placements.iter().filter(|p| p.fails_over).collect();
    if failing_over.is_empty() {
        return Err(DrillError::NoFailoverWorkload { config: config.to_path_buf() });
    }
    if !failing_over.iter().any(|p| p.on(member)) {
        let elsewhere: Vec<String> = failing_over
            .iter()
            .map(|p| {
                let on: Vec<&str> = p.members.keys().map(String::as_str).collect();
                if on.is_empty() {
                    format!("{} runs nowhere yet", p.workload)
                } else {
                    format!("{} runs on {}", p.workload, on.join(", "))
                }
            })
            .collect();
        let suggest = failing_over.iter().find_map(|p| p.members.keys().next().cloned()).unwrap_or_default();
        return Err(DrillError::NotOnMember { member: member.to_owned(), elsewhere: elsewhere.join("; "), suggest });
    }
    let on_member: Vec<&WorkloadPlacement> =
        placements.iter().filter(|p| p.on(member) && p.tolerated != Tolerated::Forever).collect();
    let toleration = on_member
        .iter()
        .filter_map(|p| match p.tolerated {
            Tolerated::For(d) => Some(d),
            _ => None,
        })
        .max();
    Ok(Ready {
        before: placed(&placements),
        workloads: on_member.iter().map(|p| p.workload.clone()).collect(),
        toleration,
        limit: toleration.unwrap_or_default() + margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(workload: &str, members: &[(&str, bool)]) -> WorkloadPlacement {
        WorkloadPlacement {
            workload: workload.into(),
            tolerated: Tolerated::For(Duration::from_secs(60)),
            fails_over: true,
            members: members.iter().map(|(m, h)| ((*m).to_owned(), *h)).collect(),
        }
    }

    #[test]
    fn each_change_is_recorded_once_when_first_seen() {
        let mut seen: BTreeMap<String, Seen> = [("my-app".to_owned(), Seen::default())].into();
        let mut events = Vec::new();
        observe_step("member1", 30_000, &[placement("my-app", &[("member1", true)])], &mut seen, &mut events);
        assert!(events.is_empty(), "{events:?}");
        observe_step("member1", 61_000, &[placement("my-app", &[("member2", false)])], &mut seen, &mut events);
        observe_step("member1", 62_000, &[placement("my-app", &[("member2", false)])], &mut seen, &mut events);
        observe_step("member1", 74_000, &[placement("my-app", &[("member2", true)])], &mut seen, &mut events);
        let got: Vec<(u64, String)> = events.iter().map(|e| (e.at_ms, e.what.text())).collect();
        assert_eq!(
            got,
            [
                (61_000, "my-app evicted from member1".to_owned()),
                (61_000, "my-app scheduled on member2".to_owned()),
                (74_000, "my-app Ready on member2".to_owned()),
            ]
        );
    }

    #[test]
    fn a_workload_has_moved_only_when_it_runs_healthy_away_from_the_member() {
        assert!(!moved(&placement("a", &[("member1", true), ("member2", true)]), "member1"));
        assert!(!moved(&placement("a", &[("member2", false)]), "member1"));
        assert!(!moved(&placement("a", &[]), "member1"));
        assert!(moved(&placement("a", &[("member2", true)]), "member1"));
    }

    fn seed_three_timeline(simulated: bool) -> Timeline {
        let taint = drill_taint().to_string();
        let on = |m: &str| vec![OnMember { member: m.into(), healthy: true }];
        let at = |s: u64, what: What| Event { at_ms: s * 1000, what };
        let w = || "my-app".to_owned();
        Timeline {
            format_version: FORMAT_VERSION,
            drill: "failover",
            member: "member1".into(),
            how: How::Taint { taint: taint.clone() },
            simulated_time: simulated,
            toleration_ms: Some(60_000),
            limit_ms: 180_000,
            before: vec![Placed { workload: w(), members: on("member1") }],
            events: vec![
                at(0, What::Tainted { member: "member1".into(), taint: taint.clone() }),
                at(61, What::Evicted { workload: w(), member: "member1".into() }),
                at(61, What::Scheduled { workload: w(), member: "member2".into() }),
                at(74, What::Ready { workload: w(), member: "member2".into() }),
                at(75, What::PodsGone { workload: w(), member: "member1".into() }),
                at(76, What::Untainted { member: "member1".into(), taint }),
                at(77, What::MemberReady { member: "member1".into() }),
            ],
            after: vec![Placed { workload: w(), members: on("member2") }],
            outcome: Outcome::Passed { moved_after_ms: 74_000 },
        }
    }

    #[test]
    fn the_timeline_reads_as_seed_threes_test_went() {
        insta::assert_snapshot!(seed_three_timeline(false).text());
    }

    #[test]
    fn a_timeline_on_the_simulated_clock_says_its_times_are_not_real() {
        let text = seed_three_timeline(true).text();
        assert!(text.contains("simulated machine's clock: they are not real ones"), "{text}");
        assert!(!seed_three_timeline(false).text().contains("simulated"));
    }

    #[test]
    fn the_json_timeline_has_a_format_version_and_one_object_per_event() {
        let doc = serde_json::to_value(seed_three_timeline(true)).unwrap();
        assert_eq!(doc["format_version"], "1.0");
        assert_eq!(doc["how"], "taint");
        assert_eq!(doc["simulated_time"], true);
        assert_eq!(doc["result"], "passed");
        assert_eq!(doc["moved_after_ms"], 74_000);
        assert_eq!(
            doc["events"][1],
            serde_json::json!({"at_ms": 61_000, "event": "evicted", "workload": "my-app", "member": "member1"})
        );
    }

    #[test]
    fn a_drill_that_could_not_restore_says_how_to_by_hand() {
        let mut t = seed_three_timeline(false);
        t.events.truncate(4);
        t.after.clear();
        t.outcome = Outcome::NotRestored {
            why: "the drill was stopped before it was".into(),
            by_hand: "run `karmadactl taint clusters member1 cluster.karmada.io/not-ready:NoExecute-`".into(),
        };
        let text = t.text();
        assert!(
            text.ends_with("Failover drill could not restore member1: the drill was stopped before it was.\n  next: run `karmadactl taint clusters member1 cluster.karmada.io/not-ready:NoExecute-`\n"),
            "{text}"
        );
        assert!(!text.contains("Settled"), "{text}");
    }

    #[test]
    fn times_are_whole_seconds_from_ten_seconds_on() {
        assert_eq!(seconds(0), "0 s");
        assert_eq!(seconds(250), "250 ms");
        assert_eq!(seconds(1_500), "1.5 s");
        assert_eq!(seconds(61_400), "61 s");
        assert_eq!(seconds(61_600), "62 s");
    }
}
