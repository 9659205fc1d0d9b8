//! The planner: a pure function of (desired, observed) to a plan DAG. No I/O, no clock, no randomness.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::desired::DesiredState;
use crate::observed::{ForeignUse, Health, Observed, ObservedState, Owner};
use crate::plan::{Action, Change, Conflict, Op, Plan, PlanError};
use crate::resource::{Address, Kind, Layer, Lifecycle, Resource, Spec};

/// What phase 2 decided for each wanted resource that needs an action: the operation, why, and the changes.
type Decisions<'a> = BTreeMap<&'a Address, (Op, String, Vec<Change>)>;

/// Plans what it takes to turn `observed` into `desired`, in named phases, each a function below: hold the
/// layers that could not be observed, refuse conflicts, decide each wanted resource's operation (and say
/// what a control-plane replace costs), find the orphans (keeping what something else still uses), make the
/// nodes, then the edges.
pub fn plan(desired: &DesiredState, observed: &ObservedState) -> Result<Plan, PlanError> {
    // A member without an address would be a container without one, and a Karmada endpoint `https://:16443`.
    if !desired.unaddressed.is_empty() {
        return Err(PlanError::Unaddressed(desired.unaddressed.clone()));
    }
    let mut notes = unobservable_notes(observed);
    let held = hold_unobservable(desired, observed, &mut notes);
    let (desired, observed) = match &held {
        Some((d, o)) => (d, o),
        None => (desired, observed),
    };

    // 1. Wanted addresses held by someone else.
    refuse_conflicts(desired, observed)?;
    // 2. What each wanted resource needs, in dependency order so that rebuilds propagate.
    let mut ops = decide(desired, observed, &mut notes)?;
    note_replacement_costs(desired, &ops, &mut notes);
    // 3. Owned resources the file no longer wants.
    let (orphans, kept) = orphans(desired, observed, &mut notes);
    // 4. Nodes. A replace is two: its delete, ordered as a destroy orders deletes (after everything that
    // needs the old resource is gone: a membership is unjoined before its container goes), then its create.
    let Nodes { mut graph, forward, deleting } = nodes(desired, observed, &mut ops, &orphans);
    // 5. Edges.
    add_edges(&mut graph, &forward, &deleting, desired, &mut notes);
    if let Err(cycle) = petgraph::algo::toposort(&graph, None) {
        return Err(PlanError::Cycle(graph[cycle.node_id()].address.clone()));
    }
    Ok(Plan { graph, notes, kept })
}

/// What the plan says first: each layer that could not be observed, and what that does to the plan.
fn unobservable_notes(observed: &ObservedState) -> Vec<String> {
    observed
        .unobservable
        .iter()
        .map(|u| {
            if u.held {
                format!(
                    "{} could not be observed ({}); its resources are left out of this plan until it can be",
                    u.layer.name(),
                    u.reason
                )
            } else {
                format!("{} could not be observed ({}); its resources are shown as missing", u.layer.name(), u.reason)
            }
        })
        .collect()
}

/// Phase 0: a layer whose state is unknown is neither created nor deleted: guessing would redo or undo real
/// work. The desired and observed states without the held layers' resources (and without the deletes they
/// may still need), or `None` when every layer was observed.
fn hold_unobservable(
    desired: &DesiredState,
    observed: &ObservedState,
    notes: &mut Vec<String>,
) -> Option<(DesiredState, ObservedState)> {
    let held: BTreeSet<Layer> = observed.unobservable.iter().filter(|u| u.held).map(|u| u.layer).collect();
    if held.is_empty() {
        return None;
    }
    {
        let mut d = desired.clone();
        d.resources.retain(|_, r| !held.contains(&r.kind.layer()));
        let mut o = observed.clone();
        o.resources.retain(|_, r| !held.contains(&r.kind.layer()));
        // Nor is anything deleted that a resource of that layer may still use (a container whose membership
        // cannot be seen): deletes wait, in the order they would have run, until the layer can be observed.
        let needed_by_held = |k: Kind| Kind::ALL.iter().any(|h| held.contains(&h.layer()) && h.needs_transitively(k));
        let postponed: BTreeSet<Address> = o
            .resources
            .values()
            .filter(|r| !d.resources.contains_key(&r.address) && needed_by_held(r.kind))
            .map(|r| r.address.clone())
            .collect();
        if !postponed.is_empty() {
            o.resources.retain(|a, _| !postponed.contains(a));
            notes.push(format!(
                "deleting {} waits until {} can be observed: {} may still use {}",
                postponed.iter().map(Address::as_str).collect::<Vec<_>>().join(", "),
                held.iter().map(|l| l.name()).collect::<Vec<_>>().join(", "),
                if postponed.len() == 1 { "its resources" } else { "their resources" },
                if postponed.len() == 1 { "it" } else { "them" },
            ));
        }
        Some((d, o))
    }
}

/// Phase 1: wanted addresses held by someone else, for kinds that are not used as they are.
fn refuse_conflicts(desired: &DesiredState, observed: &ObservedState) -> Result<(), PlanError> {
    let conflicts: Vec<Conflict> = desired
        .resources
        .values()
        .filter_map(|r| match observed.get(&r.address).map(|o| &o.owner) {
            Some(Owner::Other(found)) if !r.kind.uses_foreign() => {
                Some(Conflict { address: r.address.clone(), found: found.clone() })
            }
            _ => None,
        })
        .collect();
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Conflicts(conflicts))
    }
}

/// Phase 2: the operation each wanted resource needs (none, create, update, replace), in dependency order so
/// that a rebuild propagates to what lives in or carries what is rebuilt.
fn decide<'a>(
    desired: &'a DesiredState,
    observed: &ObservedState,
    notes: &mut Vec<String>,
) -> Result<Decisions<'a>, PlanError> {
    let mut ops: Decisions<'a> = BTreeMap::new();
    for r in desired_order(desired)? {
        let o = observed.get(&r.address);
        let decided = match o {
            None => Some((Op::Create, create_reason(r), Vec::new())),
            Some(o) => {
                let changes = diff(r.kind, &r.spec, &o.spec);
                let foreign = matches!(o.owner, Owner::Other(_));
                if foreign && r.kind.lifecycle() == Lifecycle::Owned {
                    // Someone else's bridge, pool, MicroK8s or registry: used, never changed.
                    let why = match (&o.health, changes.is_empty()) {
                        (Health::NeedsRepair(why), true) => Some(why.clone()),
                        (_, false) => Some(describe(&changes)),
                        _ => None,
                    };
                    if let Some(why) = why {
                        notes.push(format!("{} exists and is not testbed's; used as it is, although {why}", r.address));
                    }
                    None
                } else if let Some(c) = changes.iter().find(|c| r.forces_replacement(&c.key)) {
                    Some((Op::Replace, format!("{} (forces replacement)", describe(std::slice::from_ref(c))), changes))
                } else if !changes.is_empty() {
                    Some((Op::Update, describe(&changes), changes))
                } else if let Health::NeedsRepair(why) = &o.health {
                    Some((Op::Update, why.clone(), changes))
                } else {
                    None
                }
            }
        };
        // What lives in a rebuilt container, or carries a rebuilt cluster's credentials, is rebuilt too.
        let rebuilt_dep = (r.kind.follows_replacement() && o.is_some())
            .then(|| {
                // A new download rebuilds nothing: what was installed from another is refreshed in place
                // when its channel or revision differs.
                r.depends_on.iter().find(|d| {
                    d.kind() != Some(Kind::SnapDownload) && matches!(ops.get(d), Some((Op::Create | Op::Replace, _, _)))
                })
            })
            .flatten();
        let decided = match (decided, rebuilt_dep) {
            (None, Some(d)) => {
                Some((Op::Replace, format!("rebuilt because {d} is {}", rebuilt_word(ops[d].0)), Vec::new()))
            }
            (Some((Op::Update, why, ch)), Some(d)) => {
                Some((Op::Replace, format!("{why}; rebuilt because {d} is {}", rebuilt_word(ops[d].0)), ch))
            }
            (decided, _) => decided,
        };
        if let Some(d) = decided {
            ops.insert(&r.address, d);
        }
    }
    Ok(ops)
}

/// What a replace costs beyond its own lines, said once: replacing the control plane takes every membership
/// and everything applied to the Karmada API with it.
fn note_replacement_costs(desired: &DesiredState, ops: &Decisions<'_>, notes: &mut Vec<String>) {
    for (address, (op, _, changes)) in ops {
        let Some(r) = desired.resources.get(*address) else { continue };
        if *op != Op::Replace || r.kind != Kind::KarmadaControlPlane {
            continue;
        }
        let why = changes.iter().filter(|c| r.forces_replacement(&c.key)).cloned().collect::<Vec<_>>();
        let rejoin: Vec<&str> = desired
            .resources
            .values()
            .filter(|m| m.kind == Kind::KarmadaMember && m.depends_on.contains(address))
            .filter_map(|m| m.member.as_deref())
            .collect();
        let members = match rejoin.as_slice() {
            [] => String::new(),
            [one] => format!(", and {one} re-joins"),
            many => format!(", and {} re-join", many.join(", ")),
        };
        notes.push(format!(
            "{address} is replaced ({}): karmadactl deinit, then init{members}. Cost: everything applied to the Karmada API (policies, federated workloads) is deleted, and the federation is down until every member is Ready again",
            describe(&why)
        ));
    }
}

/// Phase 3: owned resources the file no longer wants, sorted by address, without those kept because
/// something testbed does not own uses them (and what those need); and the kept addresses.
fn orphans<'a>(
    desired: &DesiredState,
    observed: &'a ObservedState,
    notes: &mut Vec<String>,
) -> (Vec<&'a Observed>, Vec<Address>) {
    let mut orphans: Vec<&Observed> = observed
        .resources
        .values()
        .filter(|o| {
            o.owner == Owner::Testbed
                && o.kind.lifecycle() == Lifecycle::Owned
                && !desired.resources.contains_key(&o.address)
        })
        .collect();
    orphans.sort_by(|a, b| a.address.cmp(&b.address));
    // Those that something testbed does not own uses are kept, and so is what they need (a control plane
    // kept for someone's Cluster still needs the host MicroK8s it runs in): the notes say what to do.
    let again = if desired.resources.is_empty() { "testbed destroy" } else { "testbed apply" };
    let mut kept: Vec<Address> = Vec::new();
    for o in orphans.iter().filter(|o| !o.in_use_by.is_empty()) {
        notes.push(kept_note(o, again));
        kept.push(o.address.clone());
    }
    let users: Vec<&Observed> = orphans.iter().copied().filter(|o| !o.in_use_by.is_empty()).collect();
    for u in &users {
        let needed: Vec<&Address> = orphans
            .iter()
            .filter(|o| {
                o.in_use_by.is_empty()
                    && !kept.contains(&o.address)
                    && (u.member.is_none() || o.member == u.member)
                    && u.kind.needs_transitively(o.kind)
            })
            .map(|o| &o.address)
            .collect();
        if needed.is_empty() {
            continue;
        }
        notes.push(format!(
            "kept: {}: {} is kept and needs {}",
            needed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
            u.address,
            if needed.len() == 1 { "it" } else { "them" }
        ));
        kept.extend(needed.into_iter().cloned());
    }
    orphans.retain(|o| !kept.contains(&o.address));
    (orphans, kept)
}

/// The plan's nodes: the node that creates or changes each address, and the node that deletes it (a replace
/// has both).
struct Nodes {
    graph: DiGraph<Action, ()>,
    forward: BTreeMap<Address, NodeIndex>,
    deleting: BTreeMap<Address, NodeIndex>,
}

/// Phase 4: a node per decided operation (two for a replace) and one per orphan's delete; what lives in a
/// container that goes is marked as going with it.
fn nodes(desired: &DesiredState, observed: &ObservedState, ops: &mut Decisions<'_>, orphans: &[&Observed]) -> Nodes {
    let mut graph: DiGraph<Action, ()> = DiGraph::new();
    // The node that creates or changes each address, and the node that deletes it (a replace has both).
    let mut forward: BTreeMap<Address, NodeIndex> = BTreeMap::new();
    let mut deleting: BTreeMap<Address, NodeIndex> = BTreeMap::new();
    // Containers that go (deleted, or the delete half of a replace): what lives in them goes with them.
    let going: BTreeSet<Address> = ops
        .iter()
        .filter(|(a, (op, _, _))| {
            *op == Op::Replace && desired.resources.get(**a).is_some_and(|r| r.kind == Kind::LxdInstance)
        })
        .map(|(a, _)| (*a).clone())
        .chain(orphans.iter().filter(|o| o.kind == Kind::LxdInstance).map(|o| o.address.clone()))
        .collect();
    let cascade_of = |kind: Kind, member: Option<&str>| {
        member
            .filter(|_| kind.lives_in_container())
            .map(|m| Address::new(Kind::LxdInstance, &[m]))
            .filter(|c| going.contains(c))
    };
    for r in desired.resources.values() {
        let Some((op, reason, changes)) = ops.remove(&r.address) else { continue };
        let observed_now = observed.get(&r.address).cloned();
        let replace = op == Op::Replace;
        if replace {
            let cascade = cascade_of(r.kind, r.member.as_deref());
            let n = graph.add_node(Action {
                address: r.address.clone(),
                kind: r.kind,
                member: r.member.clone(),
                op: Op::Delete,
                reason: reason.clone(),
                changes: changes.clone(),
                desired: None,
                observed: observed_now.clone(),
                cascade,
                replace: true,
            });
            deleting.insert(r.address.clone(), n);
        }
        let n = graph.add_node(Action {
            address: r.address.clone(),
            kind: r.kind,
            member: r.member.clone(),
            op: if replace { Op::Create } else { op },
            reason,
            changes,
            desired: Some(r.clone()),
            observed: observed_now,
            cascade: None,
            replace,
        });
        forward.insert(r.address.clone(), n);
    }
    for o in orphans {
        let container = cascade_of(o.kind, o.member.as_deref());
        let reason = match &container {
            Some(c) => format!("no longer in the file; goes with {c}"),
            None => "owned by testbed and no longer in the file".to_owned(),
        };
        let n = graph.add_node(Action {
            address: o.address.clone(),
            kind: o.kind,
            member: o.member.clone(),
            op: Op::Delete,
            reason,
            changes: Vec::new(),
            desired: None,
            observed: Some((*o).clone()),
            cascade: container,
            replace: false,
        });
        deleting.insert(o.address.clone(), n);
    }
    Nodes { graph, forward, deleting }
}

/// Phase 5: the edges. Every lookup goes through a map keyed by address, kind or claim, never over every node
/// for each node: a plan of thousands of leftovers stays near-linear.
fn add_edges(
    graph: &mut DiGraph<Action, ()>,
    forward: &BTreeMap<Address, NodeIndex>,
    deleting: &BTreeMap<Address, NodeIndex>,
    desired: &DesiredState,
    notes: &mut Vec<String>,
) {
    let nodes: Vec<NodeIndex> = graph.node_indices().collect();
    let mut edges: BTreeSet<(NodeIndex, NodeIndex)> = BTreeSet::new();
    // What each delete frees (a host port, an address), for the creates that claim it.
    let mut freed: BTreeMap<(Kind, String), Vec<NodeIndex>> = BTreeMap::new();
    for &z in deleting.values() {
        for c in claims_of_observed(&graph[z]) {
            freed.entry((graph[z].kind, c)).or_default().push(z);
        }
    }
    for &x in &nodes {
        let ax = &graph[x];
        match ax.op {
            Op::Create | Op::Update | Op::Replace => {
                // Forward actions follow the file's dependencies, through resources that are not in the
                // plan: a membership repaired after its container was stopped waits for the container to
                // be started and its MicroK8s with it, though its kubeconfig in between needs nothing.
                if let Some(r) = &ax.desired {
                    let mut seen: BTreeSet<&Address> = BTreeSet::new();
                    let mut todo: Vec<&Address> = r.depends_on.iter().collect();
                    while let Some(d) = todo.pop() {
                        if !seen.insert(d) {
                            continue;
                        }
                        match forward.get(d) {
                            Some(&y) => {
                                edges.insert((y, x));
                            }
                            None if deleting.contains_key(d) => {}
                            None => {
                                if let Some(between) = desired.resources.get(d) {
                                    todo.extend(between.depends_on.iter());
                                }
                            }
                        }
                    }
                }
                // A replace creates again only once its delete is done.
                if ax.replace {
                    if let Some(&d) = deleting.get(&ax.address) {
                        edges.insert((d, x));
                    }
                }
                // A create must wait for the delete that frees what it claims (a host port, an address).
                for c in claims(ax.kind, ax.desired.as_ref().map(|r| &r.spec)) {
                    for &z in freed.get(&(ax.kind, c)).into_iter().flatten() {
                        edges.insert((z, x));
                    }
                }
            }
            Op::Delete => {
                if let Some(c) = &ax.cascade {
                    if let Some(&p) = deleting.get(c) {
                        edges.insert((p, x));
                    }
                }
                // The delete half of a replace runs against what the resource depends on (an unjoin
                // talks to the member's cluster). When that is missing, already gone (a container
                // re-created by hand, without MicroK8s), the old one cannot be waited for: the delete
                // waits for it to be made again instead.
                if ax.replace && ax.cascade.is_none() {
                    let mut seen: BTreeSet<&Address> = BTreeSet::new();
                    let mut todo: Vec<&Address> =
                        desired.resources.get(&ax.address).into_iter().flat_map(|r| &r.depends_on).collect();
                    while let Some(d) = todo.pop() {
                        if !seen.insert(d) {
                            continue;
                        }
                        if let Some(&y) = forward.get(d).filter(|&&y| graph[y].op == Op::Create && !graph[y].replace) {
                            edges.insert((y, x));
                        }
                        todo.extend(desired.resources.get(d).into_iter().flat_map(|r| &r.depends_on));
                    }
                }
            }
        }
    }
    // Deletes wait for whatever needs the deleted resource: its dependents' deletes, and for a delete that
    // is no half of a replace, their changes too (a replace's dependents change after its create instead).
    let dependent_kinds: BTreeMap<Kind, Vec<Kind>> = Kind::ALL
        .iter()
        .map(|&k| (k, Kind::ALL.iter().copied().filter(|d| d.needs_transitively(k)).collect()))
        .collect();
    let mut by_kind: BTreeMap<(Kind, Option<&str>), Vec<NodeIndex>> = BTreeMap::new();
    for &z in &nodes {
        let az = &graph[z];
        by_kind.entry((az.kind, None)).or_default().push(z);
        if let Some(m) = az.member.as_deref() {
            by_kind.entry((az.kind, Some(m))).or_default().push(z);
        }
    }
    for &x in &nodes {
        let ax = &graph[x];
        if ax.op != Op::Delete || ax.cascade.is_some() {
            continue;
        }
        for &k in &dependent_kinds[&ax.kind] {
            // A member's resource waits only for that member's; a shared one for everyone's.
            for &z in by_kind.get(&(k, ax.member.as_deref())).into_iter().flatten() {
                let az = &graph[z];
                if z == x || (ax.replace && az.op != Op::Delete) {
                    continue;
                }
                if az.op == Op::Delete && az.cascade.as_ref() == Some(&ax.address) {
                    continue;
                }
                edges.insert((z, x));
            }
        }
    }
    // A MicroK8s refresh (a changed channel, or the channel's new revision) runs in one member at a time,
    // in the file's member order: each waits for the one before it, which ends with that member Ready, so a
    // failed refresh stops the rest (the executor skips what depends on a failed action).
    let rolling = rolling_refreshes(graph, desired);
    for pair in rolling.windows(2) {
        edges.insert((pair[0], pair[1]));
    }
    if rolling.len() > 1 {
        notes.push(format!(
            "MicroK8s is refreshed in place one member at a time, each Ready before the next (a failure stops the rest): {}",
            rolling.iter().map(|&n| graph[n].member.clone().unwrap_or_default()).collect::<Vec<_>>().join(" → ")
        ));
    }
    for (a, b) in edges {
        graph.add_edge(a, b, ());
    }
}

/// Whether an action refreshes a member's MicroK8s in place: an update whose channel or revision changes.
pub fn is_refresh(a: &Action) -> bool {
    a.kind == Kind::Microk8s
        && a.op == Op::Update
        && a.changes.iter().any(|c| c.key == "channel" || c.key == "revision")
}

/// The members' MicroK8s refreshes, in the order of the members in the file (their addresses' order when
/// the file's is not known).
fn rolling_refreshes(graph: &DiGraph<Action, ()>, desired: &DesiredState) -> Vec<NodeIndex> {
    let mut refreshes: Vec<NodeIndex> = graph.node_indices().filter(|&n| is_refresh(&graph[n])).collect();
    let position = |n: &NodeIndex| {
        let m = graph[*n].member.as_deref().unwrap_or_default();
        desired.member_order.iter().position(|x| x == m).unwrap_or(usize::MAX)
    };
    refreshes.sort_by(|a, b| position(a).cmp(&position(b)).then_with(|| graph[*a].address.cmp(&graph[*b].address)));
    refreshes
}

/// Why an owned resource the plan would delete is kept, and what the user does about it.
fn kept_note(o: &Observed, again: &str) -> String {
    let lxd = o.in_use_by.iter().all(|u| matches!(u, ForeignUse::Container(_) | ForeignUse::Profile(_)));
    let users: Vec<String> = o.in_use_by.iter().map(ToString::to_string).collect();
    if lxd {
        return format!(
            "{} is kept although the file no longer wants it: {} that testbed does not own use{} it",
            o.address,
            users.join(", "),
            if users.len() == 1 { "s" } else { "" }
        );
    }
    let mut remedies: Vec<&str> = o.in_use_by.iter().map(ForeignUse::remedy).collect();
    remedies.dedup();
    format!("kept: {}: {}; {}, then run `{again}` again", o.address, users.join("; "), remedies.join(" and "))
}

fn rebuilt_word(op: Op) -> &'static str {
    match op {
        Op::Create => "created",
        _ => "replaced",
    }
}

/// Settings that differ, key by key. Keys only the machine has are not drift: the file says nothing of
/// them (LXD adds its own keys, for one).
pub fn diff(kind: Kind, want: &Spec, have: &Spec) -> Vec<Change> {
    want.iter()
        .filter(|(k, v)| !kind.satisfied(v, have.get(*k).map(String::as_str)))
        .map(|(k, v)| Change { key: k.clone(), from: have.get(k).cloned(), to: Some(v.clone()) })
        .collect()
}

/// `key: "old" → "new"`, joined.
pub fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| match &c.from {
            Some(f) => format!("{}: {:?} → {:?}", c.key, f, c.to.as_deref().unwrap_or("")),
            None => format!("{}: unset → {:?}", c.key, c.to.as_deref().unwrap_or("")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a resource holds exclusively on the machine: a host port, a bridge address.
fn claims(kind: Kind, spec: Option<&Spec>) -> Vec<String> {
    let Some(spec) = spec else { return vec![] };
    match kind {
        Kind::Proxy => {
            spec.get("listen").and_then(|l| l.rsplit(':').next()).map(|p| vec![format!("port {p}")]).unwrap_or_default()
        }
        Kind::LxdInstance => {
            spec.get("ipv4").filter(|s| !s.is_empty()).map(|ip| vec![format!("address {ip}")]).unwrap_or_default()
        }
        Kind::Image => spec.get("target").map(|t| vec![format!("tag {t}")]).unwrap_or_default(),
        _ => vec![],
    }
}

fn claims_of_observed(a: &Action) -> Vec<String> {
    claims(a.kind, a.observed.as_ref().map(|o| &o.spec))
}

/// Desired resources in dependency order (ties by address), so each one sees its dependencies' decisions.
fn desired_order(desired: &DesiredState) -> Result<Vec<&Resource>, PlanError> {
    let mut remaining: BTreeMap<&Address, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&Address, Vec<&Address>> = BTreeMap::new();
    for r in desired.resources.values() {
        let deps: Vec<&Address> = r.depends_on.iter().filter(|d| desired.resources.contains_key(*d)).collect();
        remaining.insert(&r.address, deps.len());
        for d in deps {
            dependents.entry(d).or_default().push(&r.address);
        }
    }
    let mut ready: BTreeSet<&Address> = remaining.iter().filter(|(_, n)| **n == 0).map(|(a, _)| *a).collect();
    let mut out = Vec::with_capacity(desired.resources.len());
    while let Some(a) = ready.pop_first() {
        out.push(&desired.resources[a]);
        for d in dependents.get(a).into_iter().flatten() {
            let n = remaining.get_mut(d).expect("dependent is a desired resource");
            *n -= 1;
            if *n == 0 {
                ready.insert(d);
            }
        }
    }
    if out.len() != desired.resources.len() {
        let stuck = remaining.iter().find(|(_, n)| **n > 0).map(|(a, _)| (*a).clone());
        return Err(PlanError::Cycle(stuck.unwrap_or_else(|| Address::new(Kind::HostPackages, &["packages"]))));
    }
    Ok(out)
}

/// Why a resource that is not there is created; for a rule that closes ports, which ports and to whom.
fn create_reason(r: &Resource) -> String {
    match r.kind {
        Kind::HostNodeports => {
            let setting = |k: &str| r.spec.get(k).map(String::as_str).unwrap_or_default();
            format!(
                "not present: host ports {} (the registry, the Karmada API) answer on every host address; after this, only from the host itself and {}",
                setting("ports"),
                setting("bridge")
            )
        }
        _ => "not present".to_owned(),
    }
}
