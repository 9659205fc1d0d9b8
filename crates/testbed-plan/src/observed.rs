//! What observation found on the machine. Providers produce it; the planner only reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::resource::{Address, Kind, Layer, Spec};

/// Who a live resource belongs to, as recorded on the resource itself (LXD `user.testbed.*` keys, a
/// label on a Kubernetes object, a marker line in a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "owner", content = "detail")]
pub enum Owner {
    Testbed,
    /// Someone else made it; the string says what was found, for messages.
    Other(String),
}

/// Whether a present resource works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "health", content = "reason")]
pub enum Health {
    Ok,
    /// Present but not working in a way apply can repair (a stopped container, a stopped MicroK8s).
    NeedsRepair(String),
}

/// Something testbed does not own that uses a resource testbed owns: while it is there, the resource is
/// kept rather than deleted, and the plan says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum ForeignUse {
    /// A container in LXD's `used_by` that testbed does not own.
    Container(String),
    /// A profile in LXD's `used_by` that testbed does not own.
    Profile(String),
    /// A Karmada `Cluster` testbed did not join or register (no `testbed/owner` label of this testbed).
    Cluster(String),
    /// A `REPOSITORY:TAG` in the local registry that testbed did not copy there.
    Tag(String),
}

impl ForeignUse {
    /// What the user does to free the resource.
    pub fn remedy(&self) -> &'static str {
        match self {
            ForeignUse::Container(_) => "move or delete the container",
            ForeignUse::Profile(_) => "delete the profile",
            ForeignUse::Cluster(_) => {
                "unjoin it (`karmadactl unjoin`, or `karmadactl unregister` for a pull-mode cluster)"
            }
            ForeignUse::Tag(_) => "delete it from the registry (or keep the registry)",
        }
    }
}

impl std::fmt::Display for ForeignUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForeignUse::Container(n) => write!(f, "container {n}"),
            ForeignUse::Profile(n) => write!(f, "profile {n}"),
            ForeignUse::Cluster(n) => write!(f, "Cluster `{n}` was not joined by testbed"),
            ForeignUse::Tag(t) => write!(f, "tag `{t}` was not copied there by testbed"),
        }
    }
}

/// One live resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub address: Address,
    pub kind: Kind,
    pub member: Option<String>,
    pub owner: Owner,
    pub spec: Spec,
    pub health: Health,
    /// Things testbed does not own that use this resource (LXD's `used_by`: someone's container on
    /// testbed's bridge; a Cluster someone registered on testbed's Karmada; a tag someone pushed into
    /// testbed's registry). An owned resource in use is kept rather than deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_use_by: Vec<ForeignUse>,
}

impl Observed {
    /// A live resource that works and that nothing foreign uses.
    pub fn new(address: Address, kind: Kind, member: Option<&str>, owner: Owner, spec: Spec) -> Observed {
        Observed {
            address,
            kind,
            member: member.map(str::to_owned),
            owner,
            spec,
            health: Health::Ok,
            in_use_by: Vec::new(),
        }
    }
}

/// A layer could not be observed at all (daemon not running, API unreachable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unobservable {
    pub layer: Layer,
    pub reason: String,
    /// The layer is there but its state could not be read (the Karmada API does not answer although its
    /// kubeconfig exists): its resources are left out of the plan instead of being guessed missing. When
    /// false, the layer is taken to be absent (LXD not installed yet on a fresh host) and its resources are
    /// planned as missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Everything observation found, keyed by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedState {
    pub resources: BTreeMap<Address, Observed>,
    /// Every IPv4 address in use on the member bridge, whoever's instance holds it.
    pub bridge_addresses: BTreeSet<Ipv4Addr>,
    /// The revision the snap store has now in each MicroK8s channel (fully qualified), as `snap info
    /// microk8s` on the host lists them: what a download of that channel would fetch. Empty when the store
    /// could not be asked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snap_revisions: BTreeMap<String, String>,
    /// Where each wanted pod proxy's pod is now, by the proxy's address: `tcp:POD_IP:PORT` of the first Ready
    /// pod (by name) its selector matches in its member's cluster. A pod proxy without an entry has no Ready
    /// pod now (or its lookup failed: [`ObservedState::pod_lookup_failures`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_addresses: BTreeMap<String, String>,
    /// Why a wanted pod proxy's pod could not be looked up (the member's API did not answer), by the proxy's
    /// address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_lookup_failures: BTreeMap<String, String>,
    pub unobservable: Vec<Unobservable>,
}

impl ObservedState {
    pub fn get(&self, a: &Address) -> Option<&Observed> {
        self.resources.get(a)
    }

    pub fn insert(&mut self, o: Observed) {
        self.resources.insert(o.address.clone(), o);
    }
}
