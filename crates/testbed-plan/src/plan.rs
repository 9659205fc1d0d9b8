//! The plan: a DAG of actions. An edge `a -> b` means `a` must succeed before `b` starts.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use serde::{Deserialize, Serialize};

use crate::observed::Observed;
use crate::resource::{Address, Kind, Resource};

/// What an action does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Update,
    /// Delete, then create again: the change cannot be made in place.
    Replace,
    Delete,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Replace => "replace",
            Op::Delete => "delete",
        }
    }

    /// The symbol shown in plan text, in the spirit of Terraform's.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Create => "+",
            Op::Update => "~",
            Op::Replace => "-/+",
            Op::Delete => "-",
        }
    }
}

/// One setting that differs between the machine and the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub address: Address,
    pub kind: Kind,
    pub member: Option<String>,
    pub op: Op,
    /// Why, in words a user reads in the plan.
    pub reason: String,
    pub changes: Vec<Change>,
    /// What the file wants (absent for deletes).
    pub desired: Option<Resource>,
    /// What is there now (absent for creates).
    pub observed: Option<Observed>,
    /// A delete carried out by deleting this container: nothing to run of its own.
    pub cascade: Option<Address>,
    /// One half of a replace: a replace is planned as a delete (`op` is [`Op::Delete`]), ordered as a
    /// destroy orders deletes, after the deletes of everything that needs the old resource, and a create
    /// (`op` is [`Op::Create`]) after it. `op` is what runs; [`Action::shown_op`] is what the user is told.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
}

impl Action {
    /// Whether the action runs anything (a cascaded delete only records its container's work).
    pub fn runs(&self) -> bool {
        self.cascade.is_none()
    }

    /// The operation as plans show and count it: [`Op::Replace`] for either half of a replace.
    pub fn shown_op(&self) -> Op {
        if self.replace {
            Op::Replace
        } else {
            self.op
        }
    }
}

/// Counts by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
}

impl Summary {
    pub fn total(&self) -> usize {
        self.create + self.update + self.replace + self.delete
    }
}

/// The plan DAG plus what the planner wants the user to know.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub graph: DiGraph<Action, ()>,
    /// Things that are not actions but matter: a foreign bridge used as it is, a layer that could not be
    /// observed.
    pub notes: Vec<String>,
    /// Resources testbed owns and would delete, kept because something it does not own uses them (or uses
    /// what needs them): the notes say what and what to do. A destroy that keeps any has not finished.
    pub kept: Vec<Address>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Counts by operation; a replace's two halves count as one replace.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for a in self.graph.node_weights().filter(|a| !(a.replace && a.op == Op::Delete)) {
            match a.shown_op() {
                Op::Create => s.create += 1,
                Op::Update => s.update += 1,
                Op::Replace => s.replace += 1,
                Op::Delete => s.delete += 1,
            }
        }
        s
    }

    /// Node indices in a deterministic topological order: among ready actions, by address.
    pub fn order(&self) -> Vec<NodeIndex> {
        let g = &self.graph;
        let mut indegree: BTreeMap<NodeIndex, usize> =
            g.node_indices().map(|n| (n, g.neighbors_directed(n, Direction::Incoming).count())).collect();
        let mut ready: BTreeSet<(&Address, NodeIndex)> =
            indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| (&g[*n].address, *n)).collect();
        let mut out = Vec::with_capacity(g.node_count());
        while let Some(first) = ready.iter().next().copied() {
            ready.remove(&first);
            out.push(first.1);
            for next in g.neighbors_directed(first.1, Direction::Outgoing) {
                let d = indegree.get_mut(&next).expect("every node has an indegree entry");
                *d -= 1;
                if *d == 0 {
                    ready.insert((&g[next].address, next));
                }
            }
        }
        out
    }

    /// Actions in display order.
    pub fn actions(&self) -> Vec<&Action> {
        self.order().into_iter().map(|n| &self.graph[n]).collect()
    }

    /// Addresses of the actions that must finish before `n`.
    pub fn depends_on(&self, n: NodeIndex) -> Vec<&Address> {
        let mut v: Vec<&Address> =
            self.graph.neighbors_directed(n, Direction::Incoming).map(|p| &self.graph[p].address).collect();
        v.sort();
        v
    }

    pub fn find(&self, address: &str) -> Option<NodeIndex> {
        self.graph.node_indices().find(|n| self.graph[*n].address.as_str() == address)
    }

    /// Keeps the actions matching any target and everything they need first (their ancestors in the DAG).
    /// A target is an address, an address prefix (`proxy.member1`), or a member name.
    pub fn targeted(&self, targets: &[String]) -> Plan {
        if targets.is_empty() {
            return self.clone();
        }
        let g = &self.graph;
        let mut keep: BTreeSet<NodeIndex> = BTreeSet::new();
        let mut stack: Vec<NodeIndex> =
            g.node_indices().filter(|n| targets.iter().any(|t| matches_target(&g[*n], t))).collect();
        while let Some(n) = stack.pop() {
            if keep.insert(n) {
                stack.extend(g.neighbors_directed(n, Direction::Incoming));
            }
        }
        let mut graph = DiGraph::new();
        let mut map = BTreeMap::new();
        for n in &keep {
            map.insert(*n, graph.add_node(g[*n].clone()));
        }
        for e in g.edge_indices() {
            let (a, b) = g.edge_endpoints(e).expect("edge has endpoints");
            if let (Some(x), Some(y)) = (map.get(&a), map.get(&b)) {
                graph.add_edge(*x, *y, ());
            }
        }
        // What was kept counts only where a target would have reached it: a destroy of one member has not
        // left the control plane behind.
        let kept = self.kept.iter().filter(|k| targets.iter().any(|t| address_matches(k, None, t))).cloned().collect();
        Plan { graph, notes: self.notes.clone(), kept }
    }
}

/// Whether an action is selected by a `--target` value.
pub fn matches_target(a: &Action, target: &str) -> bool {
    address_matches(&a.address, a.member.as_deref(), target)
}

fn address_matches(address: &Address, member: Option<&str>, target: &str) -> bool {
    let addr = address.as_str();
    addr == target || addr.strip_prefix(target).is_some_and(|rest| rest.starts_with('.')) || member == Some(target)
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{} resource{} that testbed would manage already exist{} and belong to someone else:\n{}",
        .0.len(), if .0.len() == 1 { "" } else { "s" }, if .0.len() == 1 { "s" } else { "" },
        .0.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n"))]
    Conflicts(Vec<Conflict>),
    #[error("{} ha{} no address: the file gives {} no ipv4, and every address the subnet ([lxd] ipv4_address) offers members is held by another container on the bridge. Give {} an ipv4 in the file, free addresses on the bridge, or widen the subnet.",
        .0.join(", "), if .0.len() == 1 { "s" } else { "ve" }, if .0.len() == 1 { "it" } else { "them" },
        if .0.len() == 1 { "it" } else { "them" })]
    Unaddressed(Vec<String>),
    #[error("internal error: the plan has a dependency cycle through {0}")]
    Cycle(Address),
}

/// A wanted address held by something testbed does not own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub address: Address,
    pub found: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; testbed will not change or delete it. Rename or remove it yourself, or rename the member in the file.",
            self.address, self.found
        )
    }
}
