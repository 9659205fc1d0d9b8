//! The shape of `testbed.toml`. Every section has defaults that reproduce the seeds' testbed, so an empty
//! file already describes a host, a Karmada control plane and no members.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole desired-state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestbedFile {
    /// This testbed's name. Everything it creates carries it, so that several testbeds can share one host
    /// (one LXD) without touching each other's resources.
    #[serde(default = "default_name")]
    pub name: String,
    /// The host server: its own MicroK8s cluster and the tools testbed needs there.
    #[serde(default)]
    pub host: Host,
    /// LXD (or Incus), which runs one container per member.
    #[serde(default)]
    pub lxd: Lxd,
    /// The local image registry served by the host MicroK8s `registry` addon.
    #[serde(default)]
    pub registry: Registry,
    /// The Karmada control plane on the host cluster and how members join it.
    #[serde(default)]
    pub karmada: Karmada,
    /// Member clusters: one LXD container running MicroK8s each.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Extra images: copied into the local registry, or side-loaded into members.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Application proxies: a host port forwarded into a member (e.g. straight to a pod's address).
    #[serde(default)]
    pub proxies: Vec<Proxy>,
    /// Applications run across the federation: Kubernetes manifests applied to the Karmada API server and
    /// propagated to members by a PropagationPolicy testbed writes from the placement given here.
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

/// `[host]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Host {
    /// Snap channel of the host MicroK8s: `TRACK/RISK[/BRANCH]` (e.g. `1.35/stable`), `RISK[/BRANCH]`, or a
    /// track alone (read as `TRACK/stable`).
    pub microk8s_channel: String,
    /// Addons enabled on the host MicroK8s (the registry addon is managed by `[registry]`): names of
    /// lowercase letters, digits and `-`, at most 63 characters, without `:ARGS`.
    pub addons: Vec<String>,
    /// Directory for member kubeconfig files (mode 0600), relative to this file unless absolute; not empty,
    /// at most 4096 bytes.
    pub kubeconfig_dir: String,
    /// `fs.inotify.max_user_instances` wanted on the host (raised, never lowered).
    pub inotify_max_user_instances: u64,
    /// `fs.inotify.max_user_watches` wanted on the host (raised, never lowered).
    pub inotify_max_user_watches: u64,
    /// Whether the registry (`[registry] port`) and the Karmada API (`[karmada] api_port`) answer on every
    /// address of the host, as MicroK8s' NodePorts do. By default (`false`) testbed owns a firewall rule
    /// that lets them answer only on loopback and on the bridge: the registry has no authentication.
    pub expose_node_ports: bool,
    /// Whether the members' MicroK8s snap is downloaded once on the host (`snap download`, with its base
    /// snap and their assertions, kept in testbed's download directory) and installed in each member from
    /// that file, pushed through LXD's file API (`true`, the default), or downloaded from the snap store by
    /// each member itself (`snap install --channel`; for members that reach a fast store proxy of their own).
    pub microk8s_download_once: bool,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            microk8s_channel: "1.35/stable".into(),
            addons: vec!["dns".into(), "hostpath-storage".into()],
            kubeconfig_dir: ".testbed/kubeconfigs".into(),
            inotify_max_user_instances: 1_048_576,
            inotify_max_user_watches: 1_048_576,
            expose_node_ports: false,
            microk8s_download_once: true,
        }
    }
}

/// Which container manager runs the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Lxd,
    Incus,
}

/// `[lxd]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Lxd {
    /// `lxd` or `incus`.
    pub backend: Backend,
    /// Bridge network the members attach to.
    pub bridge: String,
    /// The bridge's own address with prefix length, as LXD's `ipv4.address` (e.g. `10.123.45.1/24`).
    /// Always explicit: LXD's automatic subnet probe fails on many hosts.
    pub ipv4_address: String,
    /// Storage pool for the members' root disks: 1-63 ASCII letters, digits, `-` and `_`, starting with a
    /// letter or digit.
    pub storage_pool: String,
    /// Driver used if testbed has to create the pool (`dir`, `zfs`, `btrfs`, ...): 1-32 lowercase letters.
    pub storage_driver: String,
    /// Default image for members: `ubuntu:ALIAS`, `ubuntu-daily:ALIAS` or `images:ALIAS` from those image
    /// servers (e.g. `ubuntu:22.04`), or a local alias.
    pub image: String,
    /// Name of the member profile testbed manages: 1-63 ASCII letters, digits, `-` and `_`, starting with a
    /// letter or digit.
    pub profile: String,
    /// Overrides of the member profile's config keys (e.g. a reduced `linux.kernel_modules`). Only `raw.*`
    /// values may span lines.
    pub profile_config: BTreeMap<String, String>,
}

impl Default for Lxd {
    fn default() -> Self {
        Lxd {
            backend: Backend::Lxd,
            bridge: "lxdbr0".into(),
            ipv4_address: "10.123.45.1/24".into(),
            storage_pool: "default".into(),
            storage_driver: "dir".into(),
            image: "ubuntu:22.04".into(),
            profile: "microk8s".into(),
            profile_config: BTreeMap::new(),
        }
    }
}

/// `[registry]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Registry {
    /// Host port of the registry: the MicroK8s registry addon's NodePort, which MicroK8s fixes at 32000.
    #[schemars(range(min = 1024))]
    pub port: u16,
    /// Platforms copied from multi-platform images: `OS/ARCH[/VARIANT]`, e.g. `linux/amd64`, `linux/arm/v7`.
    pub platforms: Vec<String>,
    /// Where images are read from instead of their own registry, keyed by the source registry's host as image
    /// references name it (`docker.io`, `registry.k8s.io`, `ghcr.io`, `localhost:5000`, ...): a pull-through
    /// cache, an offline mirror, or a test registry. Registries without an entry are reached directly over
    /// HTTPS (`docker.io` at `registry-1.docker.io`).
    pub mirrors: BTreeMap<String, Mirror>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { port: 32000, platforms: vec!["linux/amd64".into()], mirrors: BTreeMap::new() }
    }
}

/// `[registry.mirrors."HOST"]`: the endpoint images of registry HOST are read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `https://HOST[:PORT]` or `http://HOST[:PORT]`: scheme, host and port only (no path, no credentials).
    /// The mirror serves the same repositories and tags as the registry it stands in for.
    pub endpoint: String,
    /// Plain HTTP, without TLS: required for, and only allowed with, an `http://` endpoint.
    #[serde(default)]
    pub insecure: bool,
}

impl Mirror {
    /// The endpoint as `(https, "host[:port]")`, or `None` if it is not a valid endpoint (validation reports
    /// that; a validated file always has `Some`).
    pub fn endpoint_parts(&self) -> Option<(bool, String)> {
        crate::mirror::parse_endpoint(&self.endpoint).ok()
    }
}

/// How members become part of Karmada.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum JoinMode {
    /// `karmadactl join`: the control plane reaches each member's API.
    #[default]
    Push,
    /// `karmadactl register`: a karmada-agent in each member reaches the control plane.
    Pull,
}

/// `[karmada]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Karmada {
    /// karmadactl release; its image table decides which images the control plane needs.
    pub version: String,
    /// Default join mode for members: `push` or `pull`.
    pub join_mode: JoinMode,
    /// NodePort of the Karmada API server on the host (`karmadactl init --port`), 30000-32767.
    #[schemars(range(min = 1024))]
    pub api_port: u16,
    /// Where `karmadactl init` writes its data; init wipes this folder and destroy removes it, so it must be
    /// an absolute folder of its own: not `/`, not a folder directly under `/`, not a shared one such as
    /// `/var/lib` or `/home`.
    pub data_dir: String,
    /// Cluster failover: when a member's cluster stops being Ready, Karmada taints it NoExecute and moves
    /// the workloads whose policies allow it elsewhere. Switches on karmada-controller-manager's `Failover`
    /// feature gate and no-execute taint eviction (through init's `--karmada-controller-manager-extra-args`
    /// from v1.16, by patching the controller-manager's Deployment on v1.15) and keeps a ClusterTaintPolicy
    /// that adds the NoExecute taint. `true`: on; `false`: off (switching it off on a built lab is a new
    /// init). Absent: off, as in Karmada, unless a `[[workloads]]` entry has `failover`, which turns it on;
    /// once on it stays on while the key is absent (no new init when that workload goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<bool>,
}

impl Default for Karmada {
    fn default() -> Self {
        Karmada {
            version: crate::karmada_release::DEFAULT_VERSION.into(),
            failover: None,
            join_mode: JoinMode::Push,
            api_port: 32443,
            data_dir: "/etc/karmada".into(),
        }
    }
}

/// `[[members]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Member, container and Karmada cluster name: 1-48 lowercase letters, digits and hyphens, starting with
    /// a letter.
    pub name: String,
    /// Host port of the proxy to this member's API server (container port 16443).
    #[schemars(range(min = 1024))]
    pub api_port: u16,
    /// Address the API proxy listens on, `127.0.0.1` unless the file asks otherwise.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Static IPv4 address on the bridge; derived from the subnet (and kept stable) when absent.
    #[serde(default)]
    pub ipv4: Option<String>,
    /// Image for this member's container (as `[lxd] image`); `[lxd] image` when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// CPU limit (`limits.cpu`), e.g. `"2"`.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory limit (`limits.memory`), e.g. `"4GiB"`.
    #[serde(default)]
    pub memory: Option<String>,
    /// MicroK8s snap channel inside the member (as `[host] microk8s_channel`); the host's channel when absent.
    #[serde(default)]
    pub microk8s_channel: Option<String>,
    /// MicroK8s addons in the member (as `[host] addons`: names only).
    #[serde(default = "default_member_addons")]
    pub addons: Vec<String>,
    /// Join mode for this member; `[karmada] join_mode` when absent.
    #[serde(default)]
    pub join_mode: Option<JoinMode>,
}

pub(crate) fn default_name() -> String {
    "testbed".into()
}

pub(crate) fn default_listen() -> String {
    "127.0.0.1".into()
}

fn default_member_addons() -> Vec<String> {
    vec!["dns".into(), "hostpath-storage".into()]
}

/// `[[images]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Short name used in resource addresses (`image.NAME`); derived from the reference when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Source reference, e.g. `docker.io/library/nginx:1.27`.
    pub source: String,
    /// Side-load into members (through a tar archive) instead of copying into the local registry.
    #[serde(default)]
    pub sideload: bool,
    /// A docker-archive or OCI tar to side-load, relative to this file unless absolute.
    #[serde(default)]
    pub archive: Option<String>,
    /// Members that receive a side-loaded image; all members when absent.
    #[serde(default)]
    pub members: Option<Vec<String>>,
}

/// `[[proxies]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["target"]}, {"required": ["pod"]}]))]
pub struct Proxy {
    /// Proxy name, unique within its member (`proxy.MEMBER.NAME`).
    pub name: String,
    /// The member whose container the proxy forwards into.
    pub member: String,
    /// Port on the host.
    #[schemars(range(min = 1024))]
    pub host_port: u16,
    /// Where connections go, seen from inside the container: `tcp:ADDRESS:PORT` (or `udp:`), a fixed
    /// address. Exactly one of `target` and `pod` is given.
    #[serde(default)]
    pub target: Option<String>,
    /// The pod connections go to, found by its labels in the member's cluster: the proxy connects to the
    /// first Ready pod (by name) that `selector` matches in `namespace`, at its pod IP and `port`, and follows
    /// it when the pod is recreated with another address. Exactly one of `target` and `pod` is given.
    #[serde(default)]
    pub pod: Option<PodTarget>,
    /// Address the proxy listens on, `127.0.0.1` unless the file asks otherwise.
    #[serde(default = "default_listen")]
    pub listen: String,
}

/// `pod = { namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus", port = 9090 }`: the
/// pod an application proxy follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodTarget {
    /// The pod's namespace (a DNS label: lowercase letters, digits and `-`, at most 63 characters).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// A label selector of equality terms, `KEY=VALUE[,KEY=VALUE]`, as `kubectl get pods -l` takes it; keys
    /// and values follow Kubernetes' label rules.
    pub selector: String,
    /// The port the pod listens on (its container port), 1-65535.
    #[schemars(range(min = 1))]
    pub port: u16,
}

impl PodTarget {
    /// How plans and the LXD device's record name it: `NAMESPACE/SELECTOR:PORT`.
    pub fn describe(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.selector, self.port)
    }

    /// Reads back what [`PodTarget::describe`] wrote (a namespace has no `/`, a selector no `:`).
    pub fn parse(described: &str) -> Option<PodTarget> {
        let (namespace, rest) = described.split_once('/')?;
        let (selector, port) = rest.rsplit_once(':')?;
        Some(PodTarget { namespace: namespace.to_owned(), selector: selector.to_owned(), port: port.parse().ok()? })
    }
}

fn default_namespace() -> String {
    "default".into()
}

/// `[[workloads]]`: manifests applied to the Karmada API server, and where Karmada places them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Workload name: one segment of its resources' addresses (`workload.NAME`) and the value of the
    /// `testbed/workload` label on everything testbed applies for it. 1-63 lowercase letters, digits and
    /// `-`, starting with a letter and ending with a letter or digit; unique among workloads.
    pub name: String,
    /// YAML files (several documents each, separated by `---`), or directories whose `*.yaml` and `*.yml`
    /// files are read in name order; relative to this file unless absolute.
    pub manifests: Vec<String>,
    /// The members the workload is placed on (Karmada cluster names), each once; every member when absent.
    #[serde(default)]
    pub members: Option<Vec<String>>,
    /// `duplicated`: every member runs the full replica count. `divided`: the replicas are divided among the
    /// members by `weights` (equal weights when absent). Default: `divided` when `weights` is given,
    /// `duplicated` otherwise.
    #[serde(default)]
    pub replicas: Option<ReplicaMode>,
    /// Static weights per member for divided replicas (Karmada's `staticWeightList`), e.g.
    /// `{ member1 = 1, member2 = 0, member3 = 0 }`: keys are members the workload is placed on; a member
    /// whose weight is 0 (or that has none) gets no replicas; at least one weight is above 0.
    #[serde(default)]
    pub weights: Option<BTreeMap<String, u32>>,
    /// At most this many members run the workload at a time (a `spreadConstraints` entry by cluster with
    /// `maxGroups`); the others stand by for failover. From 1 to the number of members it is placed on.
    #[serde(default)]
    pub spread: Option<u32>,
    /// Move the workload away from a member where it is not healthy (Karmada's application failover, which
    /// works without `[karmada] failover`: that is cluster failover).
    #[serde(default)]
    pub failover: Option<WorkloadFailover>,
    /// A PropagationPolicy file written by hand, used instead of the one testbed writes from the keys
    /// above (which must then be absent); relative to this file unless absolute.
    #[serde(default)]
    pub policy: Option<String>,
}

/// How a workload's replicas are spread over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaMode {
    /// Every member runs all the replicas (Karmada's `Duplicated`).
    Duplicated,
    /// The replicas are divided by static weights (Karmada's `Divided` with `Weighted` preference).
    Divided,
}

/// `failover = { toleration_seconds = 60, purge_mode = "Gracefully" }`: Karmada's
/// `failover.application`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFailover {
    /// How long the workload may be unhealthy on a member before it is moved (`decisionConditions.
    /// tolerationSeconds`), 0-3600. Karmada's default is 300.
    #[serde(default = "default_toleration_seconds")]
    pub toleration_seconds: u32,
    /// How the old copy is removed (`purgeMode`): `Directly`, `Gracefully` (after the new one is healthy)
    /// or `Never`; which values are accepted depends on the Karmada version (docs/reference.md).
    #[serde(default = "default_purge_mode")]
    pub purge_mode: String,
}

fn default_toleration_seconds() -> u32 {
    300
}

fn default_purge_mode() -> String {
    "Gracefully".into()
}

/// Ports the host itself uses: host MicroK8s API server.
pub const HOST_MICROK8S_API_PORT: u16 = 16443;
/// The port every member's API server listens on inside its container.
pub const MEMBER_API_PORT: u16 = 16443;
