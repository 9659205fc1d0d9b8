//! `testbed status`: the lab as a person reads it — one row per member, the shared parts, the workloads,
//! and what is not as the file wants — or as JSON. Exit 0 when everything is as the file wants, 2 when
//! something is not (missing, stopped, drifted, or a layer that could not be observed), 1 on error.

use std::process::ExitCode;

use serde::Serialize;
use testbed_plan::{Address, DesiredState, Health, Kind, Layer, ObservedState, Owner};

use crate::cli::Cli;
use crate::error::CliError;
use crate::session::Session;

/// The version of `status --json`'s format: a change that removes or renames a field bumps the major number;
/// one that adds fields, the minor.
const STATUS_FORMAT_VERSION: &str = "1.1";

/// One resource: what the file wants and what is there.
#[derive(Serialize)]
struct ResourceEntry {
    address: String,
    kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<String>,
    wanted: bool,
    state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// Apply would change it (or cannot tell: its layer could not be observed, or the plan is refused).
    #[serde(skip)]
    in_plan: bool,
}

/// A resource's state, compared with the file.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// There, working, as the file wants it.
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "missing")]
    Missing,
    /// Its layer could not be observed.
    #[serde(rename = "unknown")]
    Unknown,
    /// Something of the same name that testbed did not make.
    #[serde(rename = "not testbed's")]
    NotTestbeds,
    /// testbed's, and no longer in the file: apply deletes it.
    #[serde(rename = "owned, not in the file")]
    NotInTheFile,
    #[serde(rename = "needs repair")]
    NeedsRepair,
    /// There, with other settings than the file's.
    #[serde(rename = "differs")]
    Differs,
}

impl State {
    fn words(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Missing => "missing",
            State::Unknown => "unknown",
            State::NotTestbeds => "not testbed's",
            State::NotInTheFile => "owned, not in the file",
            State::NeedsRepair => "needs repair",
            State::Differs => "differs",
        }
    }
}

impl ResourceEntry {
    fn ok(&self) -> bool {
        self.state == State::Ok
    }
}

/// A part of the lab as a table cell shows it: whether it is there and working, and what it is.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Condition {
    /// There, and working.
    Ready,
    /// There, not working (stopped, not Ready, or drifted from the file).
    NotReady,
    /// Not there.
    Missing,
    /// Its layer could not be observed.
    Unknown,
}

#[derive(Serialize)]
struct Part {
    condition: Condition,
    /// What it is: a channel, a version, a mode, an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<String>,
    /// Why it is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

#[derive(Serialize)]
struct Placement {
    workload: String,
    healthy: bool,
}

#[derive(Serialize)]
struct MemberRow {
    name: String,
    container: Part,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    api: Part,
    microk8s: Part,
    karmada: Part,
    workloads: Vec<Placement>,
}

#[derive(Serialize)]
struct Shared {
    host_microk8s: Part,
    registry: Part,
    /// The file's images, and how many of them are in the local registry.
    images: Images,
    control_plane: Part,
}

#[derive(Serialize)]
struct Images {
    listed: usize,
    in_registry: usize,
}

#[derive(Serialize)]
struct WorkloadRow {
    name: String,
    condition: Condition,
    /// Each member it runs on, and whether it is healthy there.
    placed_on: Vec<(String, bool)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    format_version: &'static str,
    simulated: Vec<&'static str>,
    /// Everything is as the file wants.
    healthy: bool,
    members: Vec<MemberRow>,
    shared: Shared,
    workloads: Vec<WorkloadRow>,
    resources: Vec<ResourceEntry>,
    unobservable: &'a [testbed_plan::Unobservable],
}

/// Every resource the file wants or testbed owns, with its state.
fn resources(session: &Session, desired: &DesiredState, observed: &ObservedState) -> Vec<ResourceEntry> {
    let mut entries = Vec::new();
    let mut addresses: Vec<_> = desired.resources.keys().chain(observed.resources.keys()).collect();
    addresses.sort();
    addresses.dedup();
    let unknown = |w: &testbed_plan::Resource| {
        observed.unobservable.iter().find(|u| u.held && u.layer == w.kind.layer()).map(|u| u.layer.name())
    };
    for a in addresses {
        let want = desired.resources.get(a);
        let have = observed.get(a);
        let (state, detail) = match (want, have) {
            (Some(w), None) => match unknown(w) {
                Some(layer) => (State::Unknown, Some(format!("{layer} could not be observed"))),
                None => (State::Missing, None),
            },
            (_, Some(testbed_plan::Observed { owner: Owner::Other(d), .. })) => (State::NotTestbeds, Some(d.clone())),
            (None, Some(_)) => (State::NotInTheFile, None),
            (Some(w), Some(o)) => {
                let changes = testbed_plan::planner::diff(w.kind, &w.spec, &o.spec);
                match (&o.health, changes.is_empty()) {
                    (Health::NeedsRepair(why), _) => (State::NeedsRepair, Some(why.clone())),
                    (Health::Ok, true) => (State::Ok, None),
                    (Health::Ok, false) => (State::Differs, Some(testbed_plan::planner::describe(&changes))),
                }
            }
            (None, None) => continue,
        };
        let kind = want.map(|w| w.kind).or(have.map(|h| h.kind)).unwrap_or(Kind::HostPackages);
        // Where a workload runs, per member, and whether a simulated Karmada placed it there.
        let detail = match (kind, have.map(|h| testbed_karmada::placed_on(&h.spec))) {
            (Kind::Workload, Some(on)) => {
                let placed = format!("placed{} on {on}", simulated_placement(session));
                Some(match detail {
                    Some(d) => format!("{placed}; {d}"),
                    None => placed,
                })
            }
            _ => detail,
        };
        let member = want.and_then(|w| w.member.clone()).or(have.and_then(|h| h.member.clone()));
        entries.push(ResourceEntry {
            address: a.as_str().to_owned(),
            kind,
            member,
            wanted: want.is_some(),
            state,
            detail,
            in_plan: false,
        });
    }
    entries
}

/// " by the simulated Karmada" when Karmada is simulated: a simulated placement is never shown as a real one.
fn simulated_placement(session: &Session) -> &'static str {
    if session.simulated.contains(&Layer::Karmada) {
        " by the simulated Karmada"
    } else {
        ""
    }
}

/// What the table shows of one resource: its condition from its entry, and `what` from the observed spec (or
/// the wanted one while it is missing).
fn part(
    entries: &[ResourceEntry],
    desired: &DesiredState,
    observed: &ObservedState,
    address: &Address,
    what: impl Fn(&testbed_plan::Spec) -> Option<String>,
) -> Part {
    let entry = entries.iter().find(|e| e.address == address.as_str());
    let spec = observed.get(address).map(|o| &o.spec).or(desired.resources.get(address).map(|r| &r.spec));
    let what = spec.and_then(&what);
    let (condition, why) = match entry.map(|e| (e.state, e.detail.clone())) {
        Some((State::Ok, _)) => (Condition::Ready, None),
        Some((State::Missing, _)) | None => (Condition::Missing, None),
        Some((State::Unknown, why)) => (Condition::Unknown, why),
        Some((state, why)) => (Condition::NotReady, Some(why.unwrap_or_else(|| state.words().to_owned()))),
    };
    Part { condition, what, why }
}

fn channel_and_revision(s: &testbed_plan::Spec) -> Option<String> {
    let channel = s.get("channel")?;
    Some(match s.get("revision").filter(|r| !r.is_empty()) {
        Some(r) => format!("{channel} (rev {r})"),
        None => channel.clone(),
    })
}

fn rows(
    session: &Session,
    desired: &DesiredState,
    observed: &ObservedState,
    entries: &[ResourceEntry],
    workloads: &[WorkloadRow],
) -> Vec<MemberRow> {
    session
        .config
        .file
        .members
        .iter()
        .map(|m| {
            let at = |kind: Kind, parts: &[&str]| Address::new(kind, parts);
            let instance = at(Kind::LxdInstance, &[&m.name]);
            // What LXD says of the container (`Running`, `Stopped`), once there is one.
            let mut container = part(entries, desired, observed, &instance, |_| None);
            container.what = observed.get(&instance).and_then(|o| o.spec.get(testbed_lxd::INSTANCE_STATUS).cloned());
            let address = observed.get(&instance).and_then(|o| o.spec.get("ipv4").cloned()).filter(|a| !a.is_empty());
            let api = part(entries, desired, observed, &at(Kind::Proxy, &[&m.name, "api"]), |s| {
                s.get("listen").map(|l| l.trim_start_matches("tcp:").to_owned())
            });
            let microk8s = part(entries, desired, observed, &at(Kind::Microk8s, &[&m.name]), channel_and_revision);
            let karmada =
                part(entries, desired, observed, &at(Kind::KarmadaMember, &[&m.name]), |s| s.get("mode").cloned());
            let placed = workloads
                .iter()
                .filter_map(|w| {
                    w.placed_on
                        .iter()
                        .find(|(on, _)| on == &m.name)
                        .map(|(_, healthy)| Placement { workload: w.name.clone(), healthy: *healthy })
                })
                .collect();
            MemberRow { name: m.name.clone(), container, address, api, microk8s, karmada, workloads: placed }
        })
        .collect()
}

fn workload_rows(
    session: &Session,
    desired: &DesiredState,
    observed: &ObservedState,
    entries: &[ResourceEntry],
) -> Vec<WorkloadRow> {
    session
        .config
        .workloads
        .iter()
        .map(|w| {
            let address = Address::new(Kind::Workload, &[&w.name]);
            let p = part(entries, desired, observed, &address, |_| None);
            let placed_on = observed
                .get(&address)
                .map(|o| {
                    o.spec
                        .iter()
                        .filter_map(|(k, v)| {
                            let member = k.strip_prefix(testbed_karmada::PLACED_ON_MEMBER)?;
                            Some((member.to_owned(), v == testbed_karmada::HEALTHY))
                        })
                        .collect()
                })
                .unwrap_or_default();
            WorkloadRow { name: w.name.clone(), condition: p.condition, placed_on, why: p.why }
        })
        .collect()
}

fn shared(desired: &DesiredState, observed: &ObservedState, entries: &[ResourceEntry]) -> Shared {
    let at = |kind: Kind, name: &str| Address::new(kind, &[name]);
    let host_microk8s =
        part(entries, desired, observed, &at(Kind::HostMicrok8s, "microk8s"), |s| s.get("channel").cloned());
    let registry = part(entries, desired, observed, &at(Kind::Registry, "local"), |s| {
        s.get("port").map(|p| format!("localhost:{p}"))
    });
    let control_plane = part(entries, desired, observed, &at(Kind::KarmadaControlPlane, "control_plane"), |s| {
        let version = s.get("version")?;
        Some(match s.get("failover").map(String::as_str) {
            Some("true") => format!("Karmada {version}, failover on"),
            _ => format!("Karmada {version}"),
        })
    });
    let images: Vec<&ResourceEntry> = entries.iter().filter(|e| e.kind == Kind::Image && e.wanted).collect();
    let present = images.iter().filter(|e| e.ok()).count();
    Shared { host_microk8s, registry, images: Images { listed: images.len(), in_registry: present }, control_plane }
}

/// A cell's text: what the part is, and its condition in words.
fn cell(p: &Part, ready: &str, not_ready: &str) -> String {
    let state = match p.condition {
        Condition::Ready => ready,
        Condition::NotReady => not_ready,
        Condition::Missing => return "-".into(),
        Condition::Unknown => "unknown",
    };
    match (&p.what, state.is_empty()) {
        (Some(w), false) => format!("{w}, {state}"),
        (Some(w), true) => w.clone(),
        (None, _) => state.to_owned(),
    }
}

/// How many missing resources the text names one by one; more are counted.
const MISSING_NAMED: usize = 8;

/// The container's cell: what LXD says of it, lowercase (`running`, `stopped`), or `missing`.
fn container_cell(p: &Part) -> String {
    match (&p.condition, &p.what) {
        (Condition::Missing, _) => "missing".into(),
        (Condition::Unknown, _) => "unknown".into(),
        (_, Some(status)) => status.to_lowercase(),
        (Condition::Ready, None) => "running".into(),
        (Condition::NotReady, None) => "not running".into(),
    }
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, text) in r.iter().enumerate() {
            line.push_str(text);
            if c + 1 < r.len() {
                line.push_str(&" ".repeat(widths[c] - text.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub async fn status(cli: &Cli, json: bool) -> Result<ExitCode, CliError> {
    let session = Session::open(cli)?;
    let (desired, observed) = session.observe().await;
    let mut entries = resources(&session, &desired, &observed);
    // As the file wants: what plan would say, "No changes." (A resource that is not testbed's but is used as
    // it is, such as someone's storage pool, is fine; one the plan must change, or cannot, is not.)
    let plan = testbed_plan::plan(&desired, &observed);
    let pending: Option<std::collections::BTreeSet<String>> =
        plan.as_ref().ok().map(|p| p.actions().iter().map(|a| a.address.as_str().to_owned()).collect());
    let healthy = observed.unobservable.is_empty() && pending.as_ref().is_some_and(|p| p.is_empty());
    for e in &mut entries {
        e.in_plan = match &pending {
            Some(p) => p.contains(&e.address) || e.state == State::Unknown,
            None => !e.ok(),
        };
    }
    let code = if healthy { ExitCode::SUCCESS } else { ExitCode::from(2) };
    let workloads = workload_rows(&session, &desired, &observed, &entries);
    let members = rows(&session, &desired, &observed, &entries, &workloads);
    let shared = shared(&desired, &observed, &entries);

    if json {
        let doc = StatusDoc {
            format_version: STATUS_FORMAT_VERSION,
            simulated: session.simulated.iter().map(|l| l.name()).collect(),
            healthy,
            members,
            shared,
            workloads,
            resources: entries,
            unobservable: &observed.unobservable,
        };
        let text = serde_json::to_string_pretty(&doc).map_err(|e| CliError::usage(e.to_string(), None))?;
        println!("{text}");
        return Ok(code);
    }
    eprintln!("{}", session.simulation_banner());
    for u in &observed.unobservable {
        println!("Note: {} could not be observed: {}", u.layer.name(), u.reason);
    }
    let mut grid =
        vec![["MEMBER", "CONTAINER", "ADDRESS", "API", "MICROK8S", "KARMADA", "WORKLOADS"].map(str::to_owned).to_vec()];
    for m in &members {
        let workloads: Vec<String> = m
            .workloads
            .iter()
            .map(|p| if p.healthy { p.workload.clone() } else { format!("{} (not healthy)", p.workload) })
            .collect();
        grid.push(vec![
            m.name.clone(),
            container_cell(&m.container),
            m.address.clone().unwrap_or_else(|| "-".into()),
            cell(&m.api, "", "not listening"),
            cell(&m.microk8s, "Ready", "not Ready"),
            cell(&m.karmada, "Ready", "not Ready"),
            if workloads.is_empty() { "-".into() } else { workloads.join(", ") },
        ]);
    }
    print!("{}", table(&grid));
    println!();
    let images = format!("{} of {} images", shared.images.in_registry, shared.images.listed);
    let registry = match shared.registry.condition {
        Condition::Ready => format!("{}, {images}", cell(&shared.registry, "", "")),
        _ => cell(&shared.registry, "", "not ready"),
    };
    print!(
        "{}",
        table(&[
            vec!["SHARED".into(), "STATE".into()],
            vec!["host MicroK8s".into(), cell(&shared.host_microk8s, "Ready", "not Ready")],
            vec!["registry".into(), registry],
            vec!["control plane".into(), cell(&shared.control_plane, "Ready", "not Ready")],
        ])
    );
    if !workloads.is_empty() {
        println!();
        let mut grid =
            vec![vec!["WORKLOAD".to_owned(), format!("PLACED{} ON", simulated_placement(&session).to_uppercase())]];
        for w in &workloads {
            let on: Vec<String> = w
                .placed_on
                .iter()
                .map(|(m, healthy)| format!("{m} ({})", if *healthy { "healthy" } else { "not healthy" }))
                .collect();
            grid.push(vec![w.name.clone(), if on.is_empty() { "nowhere yet".into() } else { on.join(", ") }]);
        }
        print!("{}", table(&grid));
    }
    let wanted = entries.iter().filter(|e| e.wanted).count();
    let ok = entries.iter().filter(|e| e.wanted && !e.in_plan).count();
    if healthy {
        println!("\nAll {wanted} resources are as the file wants.");
        return Ok(code);
    }
    println!("\nNot as the file wants: {ok} of {wanted} resources are in place.");
    let off: Vec<&ResourceEntry> = entries.iter().filter(|e| e.in_plan && e.state != State::Missing).collect();
    let width = off.iter().map(|e| e.address.len()).max().unwrap_or(0);
    for e in off {
        let detail = e.detail.as_ref().map(|d| format!("  ({d})")).unwrap_or_default();
        println!("  {:<width$}  {}{detail}", e.address, e.state.words(), width = width);
    }
    let missing: Vec<&str> = entries.iter().filter(|e| e.state == State::Missing).map(|e| e.address.as_str()).collect();
    match missing.len() {
        0 => {}
        1..=MISSING_NAMED => println!("  missing: {}", missing.join(", ")),
        n => println!("  {n} missing (`testbed plan` lists them)"),
    }
    if let Err(e) = &plan {
        println!("  the plan is refused: {e}");
    }
    println!("Run `testbed plan` to see what apply would do.");
    Ok(code)
}
