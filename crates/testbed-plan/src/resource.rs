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
        // `host.*` resources share the first segment; the second tells them apart.
        Kind::ALL.iter().copied().find(|k| k.prefix() == first && k.host_name().is_none_or(|name| rest == name))
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

/// Everything the planner knows about a kind, in one row of [`KINDS`]: a new kind is one row.
struct KindInfo {
    kind: Kind,
    /// The first address segment.
    prefix: &'static str,
    /// For the `host.*` kinds, which share their prefix: the second segment.
    host_name: Option<&'static str>,
    layer: Layer,
    lifecycle: Lifecycle,
    /// Settings whose change cannot be made in place.
    replaced_on: &'static [&'static str],
    /// Rebuilt when a resource it depends on is created or replaced.
    follows_replacement: bool,
    /// One someone else made is used as it is.
    uses_foreign: bool,
    /// Deleted with its member's container.
    lives_in_container: bool,
    /// Belongs to one member.
    member_scoped: bool,
    /// The kinds it directly needs.
    needs: &'static [Kind],
}

/// A row with the common defaults: owned, replaced on no setting, and none of the flags.
const fn row(kind: Kind, prefix: &'static str, layer: Layer, needs: &'static [Kind]) -> KindInfo {
    KindInfo {
        kind,
        prefix,
        host_name: None,
        layer,
        lifecycle: Lifecycle::Owned,
        replaced_on: &[],
        follows_replacement: false,
        uses_foreign: false,
        lives_in_container: false,
        member_scoped: false,
        needs,
    }
}

/// One row per kind, in [`Kind::ALL`]'s order.
const KINDS: [KindInfo; 22] = [
    KindInfo {
        host_name: Some("packages"),
        lifecycle: Lifecycle::Retained,
        uses_foreign: true,
        ..row(Kind::HostPackages, "host", Layer::Host, &[])
    },
    KindInfo {
        host_name: Some("sysctl"),
        lifecycle: Lifecycle::Retained,
        uses_foreign: true,
        ..row(Kind::HostSysctl, "host", Layer::Host, &[Kind::HostPackages])
    },
    KindInfo {
        host_name: Some("firewall"),
        uses_foreign: true,
        ..row(Kind::HostFirewall, "host", Layer::Host, &[Kind::LxdNetwork])
    },
    KindInfo { host_name: Some("nodeports"), ..row(Kind::HostNodeports, "host", Layer::Host, &[]) },
    KindInfo {
        host_name: Some("microk8s"),
        uses_foreign: true,
        ..row(Kind::HostMicrok8s, "host", Layer::Microk8s, &[Kind::HostPackages])
    },
    KindInfo {
        host_name: Some("addons"),
        uses_foreign: true,
        ..row(Kind::HostAddons, "host", Layer::Microk8s, &[Kind::HostMicrok8s])
    },
    // The download cache is kept: the next lab installs from it without the store.
    KindInfo {
        lifecycle: Lifecycle::Retained,
        ..row(Kind::SnapDownload, "snap_download", Layer::Microk8s, &[Kind::HostPackages])
    },
    KindInfo {
        replaced_on: &["type"],
        uses_foreign: true,
        ..row(Kind::LxdNetwork, "lxd_network", Layer::Lxd, &[Kind::HostPackages])
    },
    KindInfo {
        replaced_on: &["driver"],
        uses_foreign: true,
        ..row(Kind::LxdStoragePool, "lxd_storage_pool", Layer::Lxd, &[Kind::HostPackages])
    },
    row(Kind::LxdProfile, "lxd_profile", Layer::Lxd, &[Kind::HostPackages]),
    KindInfo {
        replaced_on: &["image"],
        member_scoped: true,
        ..row(
            Kind::LxdInstance,
            "lxd_instance",
            Layer::Lxd,
            &[Kind::LxdNetwork, Kind::LxdStoragePool, Kind::LxdProfile, Kind::HostSysctl],
        )
    },
    KindInfo {
        follows_replacement: true,
        lives_in_container: true,
        member_scoped: true,
        ..row(Kind::Proxy, "proxy", Layer::Lxd, &[Kind::LxdInstance])
    },
    KindInfo {
        follows_replacement: true,
        lives_in_container: true,
        member_scoped: true,
        ..row(Kind::Microk8s, "microk8s", Layer::Microk8s, &[Kind::LxdInstance, Kind::HostFirewall, Kind::SnapDownload])
    },
    KindInfo {
        follows_replacement: true,
        lives_in_container: true,
        member_scoped: true,
        ..row(Kind::Microk8sAddons, "microk8s_addons", Layer::Microk8s, &[Kind::Microk8s])
    },
    // A kubeconfig carries the cluster's credentials.
    KindInfo {
        follows_replacement: true,
        member_scoped: true,
        ..row(Kind::Kubeconfig, "kubeconfig", Layer::Microk8s, &[Kind::Microk8s, Kind::Proxy])
    },
    // The registry never answers on the network before the NodePort rule is in force.
    KindInfo {
        replaced_on: &["port"],
        uses_foreign: true,
        ..row(Kind::Registry, "registry", Layer::Registry, &[Kind::HostMicrok8s, Kind::HostNodeports])
    },
    KindInfo {
        replaced_on: &["target"],
        uses_foreign: true,
        ..row(Kind::Image, "image", Layer::Registry, &[Kind::Registry])
    },
    KindInfo {
        follows_replacement: true,
        lives_in_container: true,
        member_scoped: true,
        ..row(Kind::Sideload, "sideload", Layer::Registry, &[Kind::Microk8s])
    },
    // Only `karmadactl init` sets these settings: a change is a deinit and a new init. The control plane
    // never answers on the network before the NodePort rule is in force.
    KindInfo {
        replaced_on: &["version", "api_port", "data_dir", "advertise_address", "image_registry", "failover"],
        ..row(
            Kind::KarmadaControlPlane,
            "karmada",
            Layer::Karmada,
            &[Kind::HostPackages, Kind::HostAddons, Kind::HostNodeports, Kind::Registry, Kind::Image, Kind::LxdNetwork],
        )
    },
    // A membership carries the cluster's identity.
    KindInfo {
        replaced_on: &["mode"],
        follows_replacement: true,
        member_scoped: true,
        ..row(
            Kind::KarmadaMember,
            "karmada_member",
            Layer::Karmada,
            &[Kind::KarmadaControlPlane, Kind::Kubeconfig, Kind::Microk8sAddons, Kind::Image],
        )
    },
    // What was applied to a Karmada API server goes with it.
    KindInfo {
        follows_replacement: true,
        ..row(
            Kind::WorkloadObject,
            "workload_object",
            Layer::Karmada,
            &[Kind::KarmadaControlPlane, Kind::KarmadaMember],
        )
    },
    KindInfo {
        follows_replacement: true,
        ..row(
            Kind::Workload,
            "workload",
            Layer::Karmada,
            &[Kind::WorkloadObject, Kind::KarmadaMember, Kind::Image, Kind::Sideload],
        )
    },
];

impl Kind {
    pub const ALL: [Kind; 22] = {
        let mut all = [Kind::HostPackages; 22];
        let mut i = 0;
        while i < KINDS.len() {
            all[i] = KINDS[i].kind;
            i += 1;
        }
        all
    };

    fn info(self) -> &'static KindInfo {
        // KINDS is in declaration order (a test checks it), so the discriminant is the row.
        &KINDS[self as usize]
    }

    /// The first address segment.
    pub fn prefix(self) -> &'static str {
        self.info().prefix
    }

    /// For the `host.*` kinds, which share the prefix `host`: the second address segment.
    fn host_name(self) -> Option<&'static str> {
        self.info().host_name
    }

    pub fn layer(self) -> Layer {
        self.info().layer
    }

    pub fn lifecycle(self) -> Lifecycle {
        self.info().lifecycle
    }

    /// Settings whose change cannot be made in place: the resource is replaced.
    pub fn forces_replacement(self, key: &str) -> bool {
        self.info().replaced_on.contains(&key)
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
    /// inside a container dies with it, a kubeconfig carries the cluster's credentials, a membership carries
    /// the cluster's identity, and what was applied to a Karmada API server goes with it.
    pub fn follows_replacement(self) -> bool {
        self.info().follows_replacement
    }

    /// Whether a resource of this kind that someone else made is used as it is (a bridge, a storage pool,
    /// the host's own MicroK8s): no action, no conflict. Other kinds found under a wanted name are a
    /// conflict the user must resolve.
    pub fn uses_foreign(self) -> bool {
        self.info().uses_foreign
    }

    /// Kinds a resource of this kind directly needs (the kind-level shape of the graph; it orders deletes,
    /// including of resources the file no longer describes).
    pub fn needs(self) -> &'static [Kind] {
        self.info().needs
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
        self.info().lives_in_container
    }

    /// Whether resources of this kind belong to one member.
    pub fn is_member_scoped(self) -> bool {
        self.info().member_scoped
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
    /// Whether a change of `key` cannot be made in place: the kind's rule, and for a workload object the
    /// fields the Kubernetes API server refuses to change (a Deployment's selector, a StatefulSet's claim
    /// templates, a claim's spec but its size, ...): such an object is deleted and applied again.
    pub fn forces_replacement(&self, key: &str) -> bool {
        if self.kind != Kind::WorkloadObject {
            return self.kind.forces_replacement(key);
        }
        let kind = self.name.split('/').next().unwrap_or_default();
        let under = |prefix: &str| {
            key == prefix || key.starts_with(&format!("{prefix}.")) || key.starts_with(&format!("{prefix}["))
        };
        match kind {
            "deployment" | "daemonset" => under("spec.selector"),
            "statefulset" => {
                under("spec.selector")
                    || under("spec.serviceName")
                    || under("spec.volumeClaimTemplates")
                    || under("spec.podManagementPolicy")
            }
            "persistentvolumeclaim" => under("spec") && !under("spec.resources.requests.storage"),
            "service" => under("spec.clusterIP") || under("spec.clusterIPs"),
            _ => false,
        }
    }

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
    fn immutable_fields_of_a_workload_object_force_its_replacement() {
        let object = |key: &str| Resource {
            address: Address::new(Kind::WorkloadObject, &["app", key]),
            kind: Kind::WorkloadObject,
            member: None,
            name: key.to_owned(),
            spec: Spec::new(),
            depends_on: vec![],
        };
        let deployment = object("deployment/default/web");
        assert!(deployment.forces_replacement("spec.selector.matchLabels.app"));
        assert!(!deployment.forces_replacement("spec.replicas"));
        assert!(!deployment.forces_replacement("spec.selectorx"));
        let claim = object("persistentvolumeclaim/mcapp/data");
        assert!(claim.forces_replacement("spec.accessModes[0]"));
        assert!(!claim.forces_replacement("spec.resources.requests.storage"));
        // A Service's selector may change; its cluster IP may not.
        let service = object("service/default/web");
        assert!(!service.forces_replacement("spec.selector.app"));
        assert!(service.forces_replacement("spec.clusterIP"));
        assert!(object("statefulset/mcapp/db")
            .forces_replacement("spec.volumeClaimTemplates[0].spec.resources.requests.storage"));
    }

    #[test]
    fn the_kinds_table_has_one_row_per_kind_in_declaration_order() {
        for (i, row) in KINDS.iter().enumerate() {
            assert_eq!(row.kind as usize, i, "{:?} is row {i}", row.kind);
            assert_eq!(Kind::ALL[i], row.kind);
        }
        // Each kind's needs are kinds before it in no cycle: the kind graph is a DAG.
        for k in Kind::ALL {
            assert!(!k.needs_transitively(k), "{k:?} needs itself");
        }
    }

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
