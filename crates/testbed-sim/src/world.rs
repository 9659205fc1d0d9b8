//! The simulated machine's state: a bare Debian host that testbed fills with packages, LXD objects,
//! MicroK8s clusters, a local registry and Karmada.
//!
//! Every object records who made it (`owner`), the way the real ones do (LXD `user.testbed.owner` keys, a
//! label on a Kubernetes object, a marker line in a file). `Some("testbed")` means testbed made it;
//! `None` or any other value means someone else did. What lives inside something else is nested in it, so
//! deleting a container takes its proxies and MicroK8s with it, and removing the host MicroK8s takes the
//! registry and the Karmada control plane.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::lxd_daemon::state::LxdDaemon;

/// The owner value testbed writes on what it creates.
pub const TESTBED: &str = "testbed";

/// The host MicroK8s API server's port, and a member's inside its container: the file model's.
pub use testbed_config::model::{HOST_MICROK8S_API_PORT, MEMBER_API_PORT};

/// The owner value of something testbed creates.
pub fn testbed() -> Option<String> {
    Some(TESTBED.to_owned())
}

/// The whole simulated machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimWorld {
    pub host: SimHost,
    /// The simulated LXD daemon's objects ([`crate::lxd_daemon`]): what the real LXD provider reads and
    /// writes through the daemon's REST API.
    #[serde(default)]
    pub lxd_daemon: LxdDaemon,
    /// The addresses whose steps fail once in this run (`TESTBED_SIM_FAIL`), for the seams that inject
    /// faults. Never saved; [`SimWorld::consumed_failures`] is.
    #[serde(skip)]
    pub(crate) fail_once: BTreeSet<String>,
    /// The program calls and LXD requests that fail in this run, and the seed. Never saved; what a
    /// once-fault spent is, in [`SimWorld::consumed_failures`].
    #[serde(skip)]
    pub(crate) faults: crate::faults::Faults,
    /// The internet line store downloads share in this run. Never saved.
    #[serde(skip)]
    pub(crate) line: crate::snap_store::Line,
    /// The real local registry's images (`localhost:PORT/NAME:TAG`), as last read, when the registry is
    /// real: what the control plane's pods can pull. Never saved.
    #[serde(skip)]
    pub(crate) real_registry_images: Option<BTreeSet<String>>,
    /// Addresses whose injected failure (`TESTBED_SIM_FAIL`) has already happened.
    pub consumed_failures: BTreeSet<String>,
    /// Source of cluster identities (a MicroK8s cluster's kube-system namespace UID).
    pub next_cluster_id: u64,
    /// What the simulation keeps inside the containers (MicroK8s and what runs in it), by container name.
    /// Each entry belongs to the container with its `identity` (`volatile.uuid`): a container re-created
    /// under the same name starts empty. Only the inside is kept here; whether the container runs, its
    /// address and its proxies are read through the LXD provider (from the simulated daemon, or a real LXD:
    /// [`crate::SimMachine::with_real_containers`]) before every step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inside: BTreeMap<String, Inside>,
    /// How far the machine's clock runs ahead of this host's, in milliseconds: the time that passed on it
    /// while testbed waited on its clock ([`crate::SimMachine::clock`]) beyond the real time the wait took.
    /// It only grows, so the machine's time never goes back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clock_ahead_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SimWorld {
    /// The machine's time: milliseconds since the Unix epoch on its clock (this host's, plus
    /// [`SimWorld::clock_ahead_ms`]).
    pub fn now_ms(&self) -> u64 {
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        host.saturating_add(self.clock_ahead_ms)
    }
}

/// The modules a stock Ubuntu or Debian kernel has (loaded or loadable), among those the MicroK8s profile
/// lists.
pub fn default_kernel_modules() -> BTreeSet<String> {
    [
        "ip_vs",
        "ip_vs_rr",
        "ip_vs_wrr",
        "ip_vs_sh",
        "ip_tables",
        "ip6_tables",
        "netlink_diag",
        "nf_nat",
        "overlay",
        "br_netfilter",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// What the simulation has put inside one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inside {
    /// The identity of the container this belongs to ([`testbed_provider::ContainerFacts::identity`]).
    pub identity: String,
    pub microk8s: Option<MemberMicrok8s>,
    /// Whether snapd in it has seeded (`snap wait system seed.loaded` returned): before that, `snap install`
    /// is refused (real-tools.md, behaviour 2).
    #[serde(default)]
    pub seeded: bool,
    /// Its files, as the programs testbed runs in it and LXD's file API change them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, crate::coreutils::Entry>,
    /// The base snaps installed (a fresh container's image seeds none that MicroK8s uses).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub bases: BTreeSet<String>,
    /// The snap revisions whose assertions `snap ack` added: (snap, revision).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acked: BTreeSet<(String, u32)>,
}

impl Inside {
    /// A container's inside as its image leaves it.
    pub fn fresh(identity: impl Into<String>) -> Inside {
        Inside {
            identity: identity.into(),
            microk8s: None,
            seeded: false,
            files: BTreeMap::new(),
            bases: BTreeSet::new(),
            acked: BTreeSet::new(),
        }
    }
}

/// A cluster's certificates: the CA (with its key, to sign the API server's certificate) and the admin
/// client certificate `microk8s config` hands out. Simulated credentials: they open nothing real.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPki {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterPki(<simulated keys>)")
    }
}

impl ClusterPki {
    /// A new CA and an admin certificate (`CN=admin`, `O=system:masters`) it signed.
    pub fn generate() -> ClusterPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("ring generates an ECDSA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "10.152.183.1");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("a CA signs itself");
        let ca_pem = ca_cert.pem();
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let admin_key = KeyPair::generate().expect("ring generates an ECDSA key");
        let mut admin = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin.distinguished_name.push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer).expect("the CA signs");
        ClusterPki { ca_pem, ca_key_pem, admin_cert_pem: admin_cert.pem(), admin_key_pem: admin_key.serialize_pem() }
    }
}

impl Default for SimWorld {
    fn default() -> Self {
        SimWorld::bare_host()
    }
}

/// The host itself. Its files (programs, `/etc`, `/proc/sys`) are a directory beside the state file
/// ([`crate::host_root`]); this is what the simulated programs keep besides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimHost {
    /// The package database (dpkg's and snapd's): installed packages, by name.
    pub packages: BTreeMap<String, Package>,
    /// The iptables rules, as `iptables -S` prints them (`-A FORWARD -i lxdbr0 ... -j ACCEPT`).
    #[serde(default)]
    pub iptables: Vec<String>,
    /// The raw table's rules, the same way (`-A PREROUTING ! -i lxdbr0 -p tcp ... -j DROP`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iptables_raw: Vec<String>,
    /// Ports held by processes testbed knows nothing about.
    pub foreign_ports: BTreeSet<u16>,
    /// Kernel modules this host's kernel can load (what LXD's `linux.kernel_modules` needs at start):
    /// an Ubuntu or Debian kernel's, by default.
    #[serde(default = "default_kernel_modules")]
    pub kernel_modules: BTreeSet<String>,
    /// The host's own MicroK8s, with what runs in it.
    pub microk8s: Option<HostMicrok8s>,
    /// The Karmada etcd data a `karmadactl deinit` left in `/var/lib/karmada-etcd` (while that directory is
    /// there, a later init starts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub karmada_etcd: Option<KarmadaEtcd>,
    /// What the host fetched from the internet (curl, karmadactl init's own CRD download), by URL: how
    /// many times.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub downloads: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// The version, where it matters (karmadactl).
    pub version: Option<String>,
    /// `apt` or `snap`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostMicrok8s {
    pub channel: String,
    pub running: bool,
    pub owner: Option<String>,
    /// Enabled addons.
    pub addons: BTreeSet<String>,
    pub addons_owner: Option<String>,
    /// What the `registry` addon's registry holds, while the addon is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::registry::LocalRegistry>,
    pub karmada: Option<ControlPlane>,
    /// The `karmada-system` namespace's labels, when a `karmadactl deinit` without `--purge-namespace`
    /// left the namespace behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub karmada_namespace: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<ClusterPki>,
}

/// The Karmada control plane `karmadactl init` installed on the host cluster, as its objects there hold it
/// (the Deployments' images, the `karmada-apiserver` Service's node port, the `karmada-system` namespace's
/// labels) and as its etcd holds it (the Karmada API server's CA, bootstrap tokens, `Cluster` objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// Each component Deployment's image, by Deployment name (`karmada-scheduler` →
    /// `localhost:32000/karmada-scheduler:v1.15.9`).
    pub images: BTreeMap<String, String>,
    /// The `karmada-apiserver` Service's node port (init's `--port`).
    pub api_port: u16,
    /// init's `--karmada-data`.
    pub data_dir: String,
    /// init's `--karmada-apiserver-advertise-address`: the server in the kubeconfig init writes.
    pub advertise_address: String,
    /// The `karmada-system` namespace's labels.
    pub namespace_labels: BTreeMap<String, String>,
    /// The images the host's containerd has pulled for it: its pods keep running on them, whatever the
    /// registry holds later.
    #[serde(default)]
    pub pulled: BTreeSet<String>,
    /// What is in its etcd.
    pub etcd: KarmadaEtcd,
    /// karmada-controller-manager's container command: init's default with its extra args merged in.
    /// Empty in a state file written before testbed modelled it: the default of the installed release.
    #[serde(default)]
    pub controller_manager_command: Vec<String>,
}

/// What the Karmada control plane keeps in its etcd (on the host under `/var/lib/karmada-etcd`, where
/// `karmadactl deinit` leaves it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KarmadaEtcd {
    /// The Karmada API server's CA, and the admin certificate init's kubeconfig carries.
    pub pki: ClusterPki,
    /// Bootstrap tokens `karmadactl token create` made.
    #[serde(default)]
    pub tokens: BTreeSet<String>,
    /// Registered member clusters (`Cluster` objects), by name.
    pub clusters: BTreeMap<String, ClusterRecord>,
    /// ClusterTaintPolicies as applied (`{"labels": {...}, "spec": {...}}`), by name.
    #[serde(default)]
    pub taint_policies: BTreeMap<String, serde_json::Value>,
    /// Where the scheduler placed each resource template, by its ResourceBinding's `namespace/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduled: BTreeMap<String, Scheduled>,
    /// Every other object on the Karmada API server (resource templates, PropagationPolicies), as served
    /// (with `metadata.managedFields`, where the fields testbed last applied are kept), by its REST path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Push,
    Pull,
}

impl SyncMode {
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Push => "push",
            SyncMode::Pull => "pull",
        }
    }
}

/// A `Cluster` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    pub sync_mode: SyncMode,
    /// `spec.apiEndpoint`.
    pub api_endpoint: Option<String>,
    /// The member's kube-system namespace UID (Karmada's `spec.id`).
    pub id: String,
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Pull mode: when the agent creates it (milliseconds since the Unix epoch); it is not there before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appears_at_ms: Option<u64>,
    /// `spec.taints`: put there by hand (`kubectl taint`, as Karmada's own failover tests do) or by a
    /// ClusterTaintPolicy while the cluster is not Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<SimTaint>,
}

/// A taint on a `Cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTaint {
    pub key: String,
    /// `value`, when the taint has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule` or `NoExecute`.
    pub effect: String,
    /// When it was added (`timeAdded`), milliseconds since the Unix epoch.
    pub added_at_ms: u64,
    /// Added by a ClusterTaintPolicy (and removed by it once the cluster is Ready again), not by hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_policy: bool,
}

/// Where Karmada's scheduler placed one resource template (its ResourceBinding's `spec.clusters`), and
/// what it placed it from: a binding is scheduled again only when its template's replicas or its policy
/// change, or a cluster it is on is evicted (Karmada does not move a workload back by itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduled {
    /// The policy (namespace/name) and the digest of its placement, and the template's replicas.
    pub inputs: String,
    /// Members with their share of the replicas (none for a kind without replicas).
    pub clusters: Vec<(String, Option<i64>)>,
    /// Members it was evicted from (a NoExecute taint past its toleration), as `(member, when)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evicted: Vec<(String, u64)>,
}

/// A pod a member runs for a workload Karmada propagated there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`, from the member's pod range.
    pub ip: Option<String>,
    /// Ready: the member's MicroK8s runs and every container's image was had (in its containerd, or
    /// pulled).
    pub ready: bool,
    /// The ResourceBinding it runs for (`namespace/name-kind`): what Karmada counts it towards.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Its containers (init containers first), as the kubelet last started them or failed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<SimContainer>,
}

/// A container of a [`SimPod`]: its image, and why it waits when it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimContainer {
    pub name: String,
    pub image: String,
    /// One of the pod's `initContainers`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// `state.waiting`: the kubelet's reason (`ErrImagePull`, `ErrImageNeverPull`, `InvalidImageName`) and
    /// message; `None` once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Where its application accepts connections once it runs: each TCP `containerPort` the template
    /// declares, on every address (`0.0.0.0:80`). An application that listens on `127.0.0.1` only is
    /// reached by a port-forward (which connects to the pod's loopback) and not at the pod's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listens: Vec<std::net::SocketAddr>,
    /// The TCP `containerPort`s its template declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// Why a container waits, as the kubelet reports it in the pod's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// MicroK8s inside a member's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberMicrok8s {
    pub channel: String,
    pub running: bool,
    pub owner: Option<String>,
    /// The cluster's kube-system namespace UID.
    pub cluster_id: String,
    pub addons: BTreeSet<String>,
    pub addons_owner: Option<String>,
    /// The images its containerd holds, by containerd name (`docker.io/library/flask-demo:2.0`): imported
    /// (side-loaded) or pulled for a pod.
    #[serde(default)]
    pub images: BTreeSet<String>,
    /// The pods it runs for workloads Karmada propagated to it, by `namespace/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pods: BTreeMap<String, SimPod>,
    /// Whether a karmada-agent (pull mode) is installed in it.
    pub karmada_agent: bool,
    /// Installed from a file (`snap install ./microk8s_N.snap`): it tracks no channel (`snap list` shows
    /// `-`); `channel` is then the channel the file was downloaded from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_file: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<ClusterPki>,
}

/// What holds a host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    Foreign,
    HostMicrok8s,
    Registry,
    KarmadaApi,
    Proxy { container: String, device: String },
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortHolder::Foreign => f.write_str("another process on the host"),
            PortHolder::HostMicrok8s => f.write_str("the host MicroK8s API server"),
            PortHolder::Registry => f.write_str("the local registry"),
            PortHolder::KarmadaApi => f.write_str("the Karmada API server"),
            PortHolder::Proxy { container, device } => {
                write!(f, "proxy device {device} of container {container}")
            }
        }
    }
}

impl SimWorld {
    /// A freshly installed Ubuntu 24.04 server: snapd and the usual tools, nothing of testbed's, the
    /// kernel's default settings (its files: [`crate::host_root::lay_out`]).
    pub fn bare_host() -> SimWorld {
        let preinstalled = crate::host_root::PREINSTALLED
            .iter()
            .map(|p| (p.to_string(), Package { version: None, source: "apt".into() }));
        SimWorld {
            host: SimHost {
                packages: preinstalled.collect(),
                iptables: Vec::new(),
                iptables_raw: Vec::new(),
                foreign_ports: BTreeSet::new(),
                kernel_modules: default_kernel_modules(),
                microk8s: None,
                karmada_etcd: None,
                downloads: BTreeMap::new(),
            },
            lxd_daemon: LxdDaemon::default(),
            fail_once: BTreeSet::new(),
            faults: Default::default(),
            line: Default::default(),
            real_registry_images: None,
            consumed_failures: BTreeSet::new(),
            next_cluster_id: 1,
            inside: BTreeMap::new(),
            clock_ahead_ms: 0,
        }
    }

    pub fn has_package(&self, name: &str) -> bool {
        self.host.packages.contains_key(name)
    }

    /// Whether the LXD (or Incus) daemon is installed.
    pub fn lxd_installed(&self) -> bool {
        self.has_package("lxd") || self.has_package("incus") || !self.lxd_daemon.profiles.is_empty()
    }

    /// The bridge the host forwards for (the `FORWARD -i BRIDGE` and `-o BRIDGE` rules are both there).
    pub fn forwards(&self, bridge: &str) -> bool {
        let has = |dir: &str| self.host.iptables.iter().any(|r| r.starts_with(&format!("-A FORWARD {dir} {bridge} ")));
        has("-i") && has("-o")
    }

    /// Whether any bridge is forwarded.
    pub fn forwards_any(&self) -> bool {
        self.host.iptables.iter().any(|r| r.starts_with("-A FORWARD -i "))
    }

    /// LXD as someone installed it by hand (the daemon with its default profile), if it is not there.
    pub fn install_lxd_by_hand(&mut self) {
        if self.lxd_daemon.profiles.is_empty() {
            self.lxd_daemon = crate::lxd_daemon::state::LxdDaemon::installed();
        }
    }

    /// The host MicroK8s, if it is installed and running.
    pub fn running_host_microk8s(&self) -> Option<&HostMicrok8s> {
        self.host.microk8s.as_ref().filter(|m| m.running)
    }

    pub fn registry(&self) -> Option<&crate::registry::LocalRegistry> {
        self.host.microk8s.as_ref().and_then(|m| m.registry.as_ref())
    }

    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.host.microk8s.as_ref().and_then(|m| m.karmada.as_ref())
    }

    /// Who holds `port` on the host, ignoring `except`.
    pub fn port_holder(&self, port: u16, except: Option<&PortHolder>) -> Option<PortHolder> {
        self.ports_in_use().into_iter().find(|(p, h)| *p == port && Some(h) != except).map(|(_, h)| h)
    }

    /// An instance of the simulated LXD daemon, to change by hand (stop it, remove a device).
    pub fn lxd_instance_mut(&mut self, name: &str) -> Option<&mut crate::lxd_daemon::state::Instance> {
        self.lxd_daemon.instances.get_mut(name)
    }

    /// Stops an instance of the simulated LXD daemon, as `lxc stop` would.
    pub fn stop_lxd_instance(&mut self, name: &str) -> bool {
        match self.lxd_daemon.instances.get_mut(name) {
            Some(i) => {
                i.status = crate::lxd_daemon::state::Status::Stopped;
                i.dhcp_ipv4 = None;
                true
            }
            None => false,
        }
    }

    /// Adds a running container that testbed did not create (no `user.testbed.*` keys), as `lxc launch`
    /// would, with a static `ipv4` on `network`.
    pub fn launch_foreign_instance(&mut self, name: &str, network: &str, ipv4: &str) {
        use crate::lxd_daemon::state::{Instance, Status};
        self.install_lxd_by_hand();
        let id = self.lxd_daemon.new_id();
        let nic: crate::lxd_daemon::state::Map =
            [("type", "nic"), ("name", "eth0"), ("network", network), ("ipv4.address", ipv4)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let root = [("type", "disk"), ("path", "/"), ("pool", "default")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let instance = Instance {
            status: Status::Running,
            description: String::new(),
            config: [("volatile.uuid".to_owned(), format!("00000000-0000-4000-9000-{id:012}"))].into_iter().collect(),
            devices: [("eth0".to_owned(), nic), ("root".to_owned(), root)].into_iter().collect(),
            profiles: vec!["default".into()],
            dhcp_ipv4: None,
        };
        self.lxd_daemon.instances.insert(name.to_owned(), instance);
    }

    /// Host ports held by something other than an LXD proxy device: other programs, the host MicroK8s
    /// API server, the registry and the Karmada API server.
    pub fn host_ports_outside_lxd(&self) -> BTreeSet<u16> {
        let mut out = self.host.foreign_ports.clone();
        if let Some(m) = &self.host.microk8s {
            out.insert(HOST_MICROK8S_API_PORT);
            out.extend(m.registry.as_ref().map(|_| crate::registry::ADDON_PORT));
            out.extend(m.karmada.as_ref().map(|k| k.api_port));
        }
        out
    }

    /// Every host port in use and what holds it.
    pub fn ports_in_use(&self) -> Vec<(u16, PortHolder)> {
        let mut out: Vec<(u16, PortHolder)> =
            self.host.foreign_ports.iter().map(|p| (*p, PortHolder::Foreign)).collect();
        if let Some(m) = &self.host.microk8s {
            out.push((HOST_MICROK8S_API_PORT, PortHolder::HostMicrok8s));
            if m.registry.is_some() {
                out.push((crate::registry::ADDON_PORT, PortHolder::Registry));
            }
            if let Some(k) = &m.karmada {
                out.push((k.api_port, PortHolder::KarmadaApi));
            }
        }
        // The proxy devices of running containers: forkproxy holds their host side.
        for (container, inst) in self.lxd_daemon.instances.iter().filter(|(_, i)| i.running()) {
            for (device, d) in &self.lxd_daemon.expanded(inst).devices {
                let port = d.get("listen").and_then(|l| listen_port(l));
                if let (Some(p), Some("proxy")) = (port, d.get("type").map(String::as_str)) {
                    out.push((p, PortHolder::Proxy { container: container.clone(), device: device.clone() }));
                }
            }
        }
        out
    }

    /// A fresh cluster identity.
    pub(crate) fn new_cluster_id(&mut self) -> String {
        let n = self.next_cluster_id;
        self.next_cluster_id = self.next_cluster_id.saturating_add(1);
        format!("00000000-0000-4000-8000-{n:012}")
    }
}

/// `tcp:127.0.0.1:16441` → 16441.
pub fn listen_port(listen: &str) -> Option<u16> {
    listen.rsplit(':').next()?.parse().ok()
}

/// `10.123.45.1/24` → (10.123.45.1, 24).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((addr, len))
}

/// Whether `ip` is a usable host address of the subnet `(gateway, prefix)`, other than the gateway.
pub fn subnet_allows(subnet: (Ipv4Addr, u8), ip: Ipv4Addr) -> bool {
    let (gateway, len) = subnet;
    let mask: u32 = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    let net = u32::from(gateway) & mask;
    let x = u32::from(ip);
    let broadcast = net | !mask;
    (x & mask) == net && x != net && x != broadcast && ip != gateway
}

/// The accessors every MicroK8s (the host's, a member's) has alike.
macro_rules! snap_accessors {
    () => {
        fn channel(&self) -> &str {
            &self.channel
        }
        fn set_channel(&mut self, channel: String) {
            self.channel = channel;
        }
        fn running(&self) -> bool {
            self.running
        }
        fn set_running(&mut self, running: bool) {
            self.running = running;
        }
        fn addons(&mut self) -> &mut BTreeSet<String> {
            &mut self.addons
        }
        fn pki(&mut self) -> &mut Option<ClusterPki> {
            &mut self.pki
        }
    };
}

impl crate::microk8s_snap::Snapped for HostMicrok8s {
    snap_accessors!();

    fn enabled(&self) -> BTreeSet<String> {
        self.addons.clone()
    }

    fn addon_changed(&mut self, addon: &str, enabled: bool) {
        // The registry's content goes with the addon (`microk8s disable registry` deletes its namespace
        // and claim).
        if addon == "registry" {
            match enabled {
                true => self.registry = Some(self.registry.take().unwrap_or_default()),
                false => self.registry = None,
            }
        }
    }
}

impl crate::microk8s_snap::Snapped for MemberMicrok8s {
    snap_accessors!();

    fn installed_from_file(&self) -> bool {
        self.from_file
    }

    fn set_from_file(&mut self, from_file: bool) {
        self.from_file = from_file;
    }

    fn enabled(&self) -> BTreeSet<String> {
        self.addons.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_accept_host_addresses_only() {
        let s = parse_cidr("10.123.45.1/24").expect("valid");
        assert!(subnet_allows(s, "10.123.45.2".parse().expect("ip")));
        assert!(!subnet_allows(s, "10.123.45.1".parse().expect("ip")));
        assert!(!subnet_allows(s, "10.123.45.255".parse().expect("ip")));
        assert!(!subnet_allows(s, "10.123.46.2".parse().expect("ip")));
        assert!(parse_cidr("10.0.0.1/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
    }

    #[test]
    fn listen_ports_parse() {
        assert_eq!(listen_port("tcp:127.0.0.1:16441"), Some(16441));
        assert_eq!(listen_port("tcp:127.0.0.1:x"), None);
    }
}
