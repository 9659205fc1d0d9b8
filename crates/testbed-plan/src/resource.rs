//! Resources: every piece of the testbed, each with a stable address, a kind, the layer that manages it,
//! and its desired settings.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A resource's stable address: `kind.name` or `kind.member.name`, e.g. `lxd_instance.member4`,
/// `proxy.member4.api`, `host.microk8s`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    pub fn new(kind: Kind, rest: &[&str]) -> Address {
        let mut s = kind.prefix().to_owned();
        for r in rest {
            s.push('.');
            s.push_str(r);
        }
        Address(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether one segment equals `name` (how "address contains member4" is meant).
    pub fn has_segment(&self, name: &str) -> bool {
        self.segments().any(|s| s == name)
    }

    /// The kind named by the first segment, if it is one testbed knows.
    pub fn kind(&self) -> Option<Kind> {
        let first = self.0.split('.').next()?;
        let rest = self.0.split_once('.').map(|(_, r)| r).unwrap_or("");
        Kind::ALL.iter().copied().find(|k| {
            k.prefix() == first
                && match k {
                    // `host.*` resources share the first segment; the second tells them apart.
                    Kind::HostPackages => rest == "packages",
                    Kind::HostSysctl => rest == "sysctl",
                    Kind::HostFirewall => rest == "firewall",
                    Kind::HostNodeports => rest == "nodeports",
                    Kind::HostMicrok8s => rest == "microk8s",
                    Kind::HostAddons => rest == "addons",
                    _ => true,
                }
        })
    }

    /// Parses an address as written by a user or another tool.
    pub fn parse(s: &str) -> Option<Address> {
        let a = Address(s.to_owned());
        a.kind().map(|_| a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The part of the world a resource lives in; each layer has a real and a simulated provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Host,
    Lxd,
    Microk8s,
    Registry,
    Karmada,
}

impl Layer {
    pub const ALL: [Layer; 5] = [Layer::Host, Layer::Lxd, Layer::Microk8s, Layer::Registry, Layer::Karmada];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Host => "host",
            Layer::Lxd => "lxd",
            Layer::Microk8s => "microk8s",
            Layer::Registry => "registry",
            Layer::Karmada => "karmada",
        }
    }

    pub fn parse(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// What a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// snapd, LXD, kubectl and karmadactl on the host.
    HostPackages,
    /// `fs.inotify` limits on the host.
    HostSysctl,
    /// Firewall rules that let the bridge reach out and the host reach in.
    HostFirewall,
    /// The firewall rule that lets the registry's and the Karmada API's NodePorts answer only on loopback
    /// and the bridge.
    HostNodeports,
    /// The host's own MicroK8s.
    HostMicrok8s,
    /// Addons of the host MicroK8s (dns, hostpath-storage).
    HostAddons,
    /// The members' MicroK8s snap of one channel and its base snap, with their assertions, downloaded once
    /// into testbed's download directory on the host.
    SnapDownload,
    /// The LXD bridge network.
    LxdNetwork,
    /// The LXD storage pool for members' root disks.
    LxdStoragePool,
    /// The member profile.
    LxdProfile,
    /// One member's container.
    LxdInstance,
    /// A proxy device on a member's container (`api`, or an application proxy).
    Proxy,
    /// MicroK8s installed and ready inside a member.
    Microk8s,
    /// Addons enabled in a member's MicroK8s.
    Microk8sAddons,
    /// A member's admin kubeconfig, written on the host (0600).
    Kubeconfig,
    /// The local registry (host MicroK8s registry addon).
    Registry,
    /// One image in the local registry.
    Image,
    /// One image side-loaded into a member's MicroK8s.
    Sideload,
    /// The Karmada control plane on the host cluster.
    KarmadaControlPlane,
    /// One member's membership in Karmada (push join or pull registration).
    KarmadaMember,
    /// One Kubernetes object of a workload (its manifests' objects and its PropagationPolicy), applied to
    /// the Karmada API server: `workload_object.WORKLOAD.KIND/NAMESPACE/NAME`.
    WorkloadObject,
    /// A workload as a whole: done when Karmada has scheduled its objects and the members report them
    /// healthy (`workload.NAME`).
    Workload,
}

/// What `destroy` does with a resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Created, changed and deleted by testbed (when it owns it).
    Owned,
    /// Ensured by testbed and left in place on destroy: host packages and kernel settings are the host's,
    /// and other software may rely on them.
    Retained,
}

impl Kind {
    pub const ALL: [Kind; 22] = [
        Kind::HostPackages,
        Kind::HostSysctl,
        Kind::HostFirewall,
        Kind::HostNodeports,
        Kind::HostMicrok8s,
        Kind::HostAddons,
        Kind::SnapDownload,
        Kind::LxdNetwork,
        Kind::LxdStoragePool,
        Kind::LxdProfile,
        Kind::LxdInstance,
        Kind::Proxy,
        Kind::Microk8s,
        Kind::Microk8sAddons,
        Kind::Kubeconfig,
        Kind::Registry,
        Kind::Image,
        Kind::Sideload,
        Kind::KarmadaControlPlane,
        Kind::KarmadaMember,
        Kind::WorkloadObject,
        Kind::Workload,
    ];

    /// The first address segment.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::HostPackages
            | Kind::HostSysctl
            | Kind::HostFirewall
            | Kind::HostNodeports
            | Kind::HostMicrok8s
            | Kind::HostAddons => "host",
            Kind::SnapDownload => "snap_download",
            Kind::LxdNetwork => "lxd_network",
            Kind::LxdStoragePool => "lxd_storage_pool",
            Kind::LxdProfile => "lxd_profile",
            Kind::LxdInstance => "lxd_instance",
            Kind::Proxy => "proxy",
            Kind::Microk8s => "microk8s",
            Kind::Microk8sAddons => "microk8s_addons",
            Kind::Kubeconfig => "kubeconfig",
            Kind::Registry => "registry",
            Kind::Image => "image",
            Kind::Sideload => "sideload",
            Kind::KarmadaControlPlane => "karmada",
            Kind::KarmadaMember => "karmada_member",
            Kind::WorkloadObject => "workload_object",
            Kind::Workload => "workload",
        }
    }

    pub fn layer(self) -> Layer {
        match self {
            Kind::HostPackages | Kind::HostSysctl | Kind::HostFirewall | Kind::HostNodeports => Layer::Host,
            Kind::LxdNetwork | Kind::LxdStoragePool | Kind::LxdProfile | Kind::LxdInstance | Kind::Proxy => Layer::Lxd,
            Kind::HostMicrok8s
            | Kind::HostAddons
            | Kind::SnapDownload
            | Kind::Microk8s
            | Kind::Microk8sAddons
            | Kind::Kubeconfig => Layer::Microk8s,
            Kind::Registry | Kind::Image | Kind::Sideload => Layer::Registry,
            Kind::KarmadaControlPlane | Kind::KarmadaMember | Kind::WorkloadObject | Kind::Workload => Layer::Karmada,
        }
    }

    pub fn lifecycle(self) -> Lifecycle {
        match self {
            // The download cache is kept too: the next lab installs from it without the store.
            Kind::HostPackages | Kind::HostSysctl | Kind::SnapDownload => Lifecycle::Retained,
            _ => Lifecycle::Owned,
        }
    }

    /// Settings whose change cannot be made in place: the resource is replaced.
    pub fn forces_replacement(self, key: &str) -> bool {
        matches!(
            (self, key),
            (Kind::LxdInstance, "image")
                | (Kind::LxdStoragePool, "driver")
                | (Kind::LxdNetwork, "type")
                | (Kind::Registry, "port")
                | (Kind::Image, "target")
                // Only `karmadactl init` sets these: a change is a deinit and a new init.
                | (
                    Kind::KarmadaControlPlane,
                    "version" | "api_port" | "data_dir" | "advertise_address" | "image_registry" | "failover"
                )
                | (Kind::KarmadaMember, "mode")
        )
    }

    /// Whether the machine's value `have` satisfies the wanted value. Equality, except for kernel limits,
    /// which testbed raises and never lowers: a higher value is fine.
    pub fn satisfied(self, want: &str, have: Option<&str>) -> bool {
        match (self, have) {
            (_, None) => false,
            (Kind::HostSysctl, Some(h)) => match (h.parse::<u64>(), want.parse::<u64>()) {
                (Ok(h), Ok(w)) => h >= w,
                _ => h == want,
            },
            (_, Some(h)) => h == want,
        }
    }

    /// Whether this kind must be rebuilt when a resource it depends on is created or replaced: what lives
    /// inside a container dies with it, a kubeconfig carries the cluster's credentials, and a membership
    /// carries the cluster's identity.
    pub fn follows_replacement(self) -> bool {
        matches!(
            self,
            Kind::Proxy
                | Kind::Microk8s
                | Kind::Microk8sAddons
                | Kind::Sideload
                | Kind::Kubeconfig
                | Kind::KarmadaMember
                // What was applied to a Karmada API server goes with it.
                | Kind::WorkloadObject
                | Kind::Workload
        )
    }

    /// Whether a resource of this kind that someone else made is used as it is (a bridge, a storage pool,
    /// the host's own MicroK8s): no action, no conflict. Other kinds found under a wanted name are a
    /// conflict the user must resolve.
    pub fn uses_foreign(self) -> bool {
        matches!(
            self,
            Kind::HostPackages
                | Kind::HostSysctl
                | Kind::HostFirewall
                | Kind::LxdNetwork
                | Kind::LxdStoragePool
                | Kind::HostMicrok8s
                | Kind::HostAddons
                | Kind::Registry
                | Kind::Image
        )
    }

    /// Kinds a resource of this kind directly needs (the kind-level shape of the graph; it orders deletes,
    /// including of resources the file no longer describes).
    pub fn needs(self) -> &'static [Kind] {
        match self {
            Kind::HostPackages => &[],
            Kind::HostSysctl
            | Kind::LxdNetwork
            | Kind::LxdStoragePool
            | Kind::LxdProfile
            | Kind::HostMicrok8s
            | Kind::SnapDownload => &[Kind::HostPackages],
            Kind::HostFirewall => &[Kind::LxdNetwork],
            Kind::HostNodeports => &[],
            Kind::LxdInstance => &[Kind::LxdNetwork, Kind::LxdStoragePool, Kind::LxdProfile, Kind::HostSysctl],
            Kind::Proxy => &[Kind::LxdInstance],
            Kind::Microk8s => &[Kind::LxdInstance, Kind::HostFirewall, Kind::SnapDownload],
            Kind::Microk8sAddons | Kind::Sideload => &[Kind::Microk8s],
            Kind::Kubeconfig => &[Kind::Microk8s, Kind::Proxy],
            Kind::HostAddons => &[Kind::HostMicrok8s],
            // The registry and the control plane never answer on the network before the rule is in force.
            Kind::Registry => &[Kind::HostMicrok8s, Kind::HostNodeports],
            Kind::Image => &[Kind::Registry],
            Kind::KarmadaControlPlane => &[
                Kind::HostPackages,
                Kind::HostAddons,
                Kind::HostNodeports,
                Kind::Registry,
                Kind::Image,
                Kind::LxdNetwork,
            ],
            Kind::KarmadaMember => &[Kind::KarmadaControlPlane, Kind::Kubeconfig, Kind::Microk8sAddons, Kind::Image],
            Kind::WorkloadObject => &[Kind::KarmadaControlPlane, Kind::KarmadaMember],
            Kind::Workload => &[Kind::WorkloadObject, Kind::KarmadaMember, Kind::Image, Kind::Sideload],
        }
    }

    /// Whether this kind needs `other`, directly or through other kinds.
    pub fn needs_transitively(self, other: Kind) -> bool {
        let mut stack: Vec<Kind> = self.needs().to_vec();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(k) = stack.pop() {
            if k == other {
                return true;
            }
            if seen.insert(k) {
                stack.extend_from_slice(k.needs());
            }
        }
        false
    }

    /// Whether this kind lives inside its member's container, so that deleting the container deletes it.
    pub fn lives_in_container(self) -> bool {
        matches!(self, Kind::Proxy | Kind::Microk8s | Kind::Microk8sAddons | Kind::Sideload)
    }

    /// Whether resources of this kind belong to one member.
    pub fn is_member_scoped(self) -> bool {
        matches!(
            self,
            Kind::LxdInstance
                | Kind::Proxy
                | Kind::Microk8s
                | Kind::Microk8sAddons
                | Kind::Kubeconfig
                | Kind::Sideload
                | Kind::KarmadaMember
        )
    }
}

/// Desired or observed settings of a resource, as canonical strings (lists comma-joined, sorted where
/// order does not matter). Comparing two specs key by key is the whole diff.
pub type Spec = BTreeMap<String, String>;

/// One resource the file wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub address: Address,
    pub kind: Kind,
    /// The member it belongs to, for member-scoped kinds.
    pub member: Option<String>,
    /// The last segment that is not the kind or member (`api` in `proxy.member1.api`).
    pub name: String,
    pub spec: Spec,
    /// Resources that must exist (and be converged) before this one can be created or changed.
    pub depends_on: Vec<Address>,
}

impl Resource {
    /// The container this resource lives in, if any.
    pub fn container(&self) -> Option<Address> {
        if self.kind.lives_in_container() {
            self.member.as_deref().map(|m| Address::new(Kind::LxdInstance, &[m]))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_to_their_kind() {
        for k in Kind::ALL {
            let a = match k {
                Kind::HostPackages => Address::new(k, &["packages"]),
                Kind::HostSysctl => Address::new(k, &["sysctl"]),
                Kind::HostFirewall => Address::new(k, &["firewall"]),
                Kind::HostNodeports => Address::new(k, &["nodeports"]),
                Kind::HostMicrok8s => Address::new(k, &["microk8s"]),
                Kind::HostAddons => Address::new(k, &["addons"]),
                _ => Address::new(k, &["member4", "x"]),
            };
            assert_eq!(a.kind(), Some(k), "{a}");
        }
        assert!(Address::parse("nonsense.member1").is_none());
        assert!(Address::parse("host.nothing").is_none());
        assert!(Address::new(Kind::Proxy, &["member4", "api"]).has_segment("member4"));
        assert!(!Address::new(Kind::Proxy, &["member40", "api"]).has_segment("member4"));
    }
}
