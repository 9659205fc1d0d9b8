//! An in-process fake Kubernetes API for tests (feature `fake`).
//!
//! [`FakeKube`] listens on `127.0.0.1:<ephemeral port>`, over plain HTTP ([`FakeKube::start`]) or HTTPS
//! with a certificate generated at test time ([`FakeKube::start_tls`], [`FakeTls`]), and serves
//! real-shaped JSON for what testbed reads and writes. From the typed state ([`FakeState`]'s nodes, pods,
//! Deployments, namespaces, Services, Clusters, ClusterTaintPolicies):
//!
//! - discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/apps/v1`, and on a Karmada API server
//!   `/apis/cluster.karmada.io/v1alpha1`, `/apis/policy.karmada.io/v1alpha1` and
//!   `/apis/work.karmada.io/v1alpha2` (testbed's calls name their resources and do not consult discovery);
//! - `/api/v1/nodes` and `/api/v1/nodes/<name>`;
//! - `/api/v1/pods`, `/api/v1/namespaces/<ns>/pods` (by `labelSelector`) and `.../pods/<name>`, from
//!   [`FakeState::pods`]: a `PodList` whose items have no `apiVersion` and `kind`, each with `status.podIP`,
//!   `status.podIPs`, its conditions (`Initialized`, `Ready`, `ContainersReady`, `PodScheduled`), phase and
//!   container statuses (a waiting container with the kubelet's reason and message);
//! - `.../pods/<name>/portforward?ports=P`, upgraded to a WebSocket (`v4.channel.k8s.io`) as the kubelet
//!   serves it: the pod's containers answer on the addresses they listen on ([`FakeContainer::listens`]),
//!   and nothing listening is containerd's refusal on the error channel (see the `port_forward` module);
//! - `/api/v1/events` and `/api/v1/namespaces/<ns>/events`, from [`FakeState::events`];
//! - `/apis/apps/v1/deployments`, `/apis/apps/v1/namespaces/<ns>/deployments` and `.../deployments/<name>`;
//! - `/apis/cluster.karmada.io/v1alpha1/clusters` and `.../clusters/<name>` (only when the state says the
//!   server is a Karmada API server);
//! - `/api/v1/namespaces`, `/api/v1/namespaces/<name>`, `/api/v1/services`,
//!   `/api/v1/namespaces/<ns>/services` and `.../services/<name>`;
//! - `/apis/policy.karmada.io/v1alpha1/clustertaintpolicies/<name>` (Karmada API servers only).
//!
//! From the object store ([`FakeState::objects`], keyed by REST path), on every path of the kinds it serves
//! (`/api/v1/namespaces/<ns>/<plural>/<name>`, `/api/v1/<plural>/<name>`,
//! `/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`, `/apis/<group>/<version>/<plural>/<name>`, and
//! their lists, in a namespace and across all): Namespaces, ServiceAccounts, ConfigMaps, Secrets,
//! PersistentVolumeClaims, Services, Deployments, StatefulSets, DaemonSets, and on a Karmada API server
//! PropagationPolicies, ClusterPropagationPolicies, OverridePolicies and ClusterOverridePolicies. The typed
//! state answers first; a namespace, Service or Deployment it lacks is looked for in the store, and their
//! lists hold both. Lists take a `labelSelector` (`a=b,c!=d`, `key`, `!key`, `key in (x,y)`) and are
//! `<Kind>List`s whose items carry `apiVersion` and `kind` for a custom resource only, as a real server
//! sends them. Karmada's ResourceBindings are served from [`FakeState::resource_bindings`] (Karmada API
//! servers only, read-only: whoever builds the state computes them), at
//! `/apis/work.karmada.io/v1alpha2/resourcebindings`, `.../namespaces/<ns>/resourcebindings` and
//! `.../resourcebindings/<name>`.
//!
//! Writes: `PATCH` with a JSON merge patch (`Content-Type: application/merge-patch+json`) on a namespace
//! (`metadata.labels`) and on a Cluster (`metadata.labels`, `spec.apiEndpoint`, `spec.taints`), and on any object of the
//! store; the answer is the patched object, as a real API server sends it. Other fields of a patch on a
//! typed object are accepted and forgotten (the fake keeps only what it models). Server-side apply (`PATCH`
//! with `application/apply-patch+yaml`; without a `fieldManager` it is a `422`, as kube-apiserver answers)
//! creates or sets a ClusterTaintPolicy, and creates or updates any object of the store with server-side
//! apply's semantics for one manager at a time (see the `store` module: the fields a manager no longer
//! applies are removed, other writers' fields stay, `status` is never applied, defaults are filled in as a
//! real server fills them, a Secret's `stringData` is folded into `data`). A strategic merge patch sets a
//! Deployment's container command. `DELETE` removes an object of the store (a namespace with what the store
//! holds in it) and answers as kube-apiserver does for a background deletion: the object for a
//! ServiceAccount or a Namespace, a `Status` `Success` for the rest. Every other method is a `405`. Each
//! write is handed to the state's sink, when a world outside the fake keeps the state ([`FakeWrite`];
//! [`FakeWrite::Object`] for the store).
//!
//! A missing object is a `404` with the `Status` a real API server sends (`details.name` set); a path the
//! server does not know is a `404` `Status` without details. With [`FakeState::required_token`] set, a
//! request without that bearer token (and without a client certificate signed by the fake's CA) gets a
//! `401` `Status`.
//!
//! The test changes what is served through [`FakeKube::update`] at any time, and can make chosen requests
//! fail as a real API server fails when its storage does ([`FakeKube::fail_requests`], [`FakeFailure`]).
//!
//! This is a fake: it proves the client code handles real-shaped answers. It is not a Kubernetes API
//! server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{ApiConfig, Credentials};
use crate::observe::{ConditionStatus, CLUSTER_API_VERSION, CONTROL_PLANE_DEPLOYMENTS, KARMADA_NAMESPACE};

mod port_forward;
mod store;

pub use port_forward::ANSWER as PORT_FORWARD_ANSWER;

use store::Selector;

/// The timestamp every fake object was created at.
const CREATED: &str = "2026-01-05T09:00:00Z";
/// The timestamp every fake condition last changed at.
const CHANGED: &str = "2026-01-05T09:01:30Z";

// ---------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------

/// What the fake serves. Tests build one, hand it to [`FakeKube::start`], and change it with
/// [`FakeKube::update`].
#[derive(Debug, Clone)]
pub struct FakeState {
    /// `/version`'s `gitVersion`.
    pub git_version: String,
    /// The nodes.
    pub nodes: Vec<FakeNode>,
    /// The Deployments (any namespace).
    pub deployments: Vec<FakeDeployment>,
    /// Whether the server serves `cluster.karmada.io/v1alpha1` (a Karmada API server) or not (a plain
    /// cluster such as the host's MicroK8s).
    pub serves_karmada: bool,
    /// The Karmada clusters (served only when `serves_karmada`).
    pub clusters: Vec<FakeCluster>,
    /// The pods (any namespace), served at `/api/v1/pods`, `/api/v1/namespaces/<ns>/pods` (both by
    /// `labelSelector`) and `.../pods/<name>`. A simulated world fills them for a member's API server from
    /// its own state.
    pub pods: Vec<FakePod>,
    /// When set, every request must carry `Authorization: Bearer <token>` (or a client certificate that
    /// the fake's CA signed); others get `401`.
    pub required_token: Option<String>,
    /// Paths (prefixes) the client may not read: `403` with the message an RBAC denial carries.
    pub forbidden_paths: Vec<String>,
    /// The namespaces.
    pub namespaces: Vec<FakeNamespace>,
    /// The Services (any namespace).
    pub services: Vec<FakeService>,
    /// Karmada ClusterTaintPolicies by name, as applied: `{"labels": {...}, "spec": {...}}` (served only when
    /// `serves_karmada`).
    pub taint_policies: BTreeMap<String, Value>,
    /// The object store: objects of the kinds the store serves, by REST path
    /// (`/apis/apps/v1/namespaces/default/deployments/nginx`, `/api/v1/namespaces/monitoring`: what
    /// `ObjectRef::api_path` gives), as served. Server-side apply, merge patches and deletes of those paths
    /// change it; a test may set objects directly, as another writer would.
    pub objects: BTreeMap<String, Value>,
    /// Karmada ResourceBindings (`work.karmada.io/v1alpha2`), as served (served only when `serves_karmada`).
    /// The fake does not compute them: whoever builds the state (a test, a simulated world) does.
    pub resource_bindings: Vec<Value>,
    /// Events about pods (core `v1` `Event`s), served at `/api/v1/events` and
    /// `/api/v1/namespaces/<ns>/events`, oldest first. Whoever builds the state says what happened (a simulated
    /// kubelet's image pulls).
    pub events: Vec<FakeEvent>,
}

/// An event about a pod, as a kubelet records it (`kubectl describe pod` lists them under `Events:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeEvent {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// `Pulling`, `Failed`, `BackOff`, ...
    pub reason: String,
    pub message: String,
    /// How many times it happened.
    pub count: i32,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            git_version: "v1.32.3".to_string(),
            nodes: Vec::new(),
            deployments: Vec::new(),
            serves_karmada: false,
            clusters: Vec::new(),
            pods: Vec::new(),
            required_token: None,
            forbidden_paths: Vec::new(),
            namespaces: Vec::new(),
            services: Vec::new(),
            taint_policies: BTreeMap::new(),
            objects: BTreeMap::new(),
            resource_bindings: Vec::new(),
            events: Vec::new(),
        }
    }
}

impl FakeState {
    /// A host cluster: one Ready node called `host`, no Karmada.
    pub fn host_cluster() -> Self {
        FakeState { nodes: vec![FakeNode::ready("host")], ..FakeState::default() }
    }

    /// A host cluster on which `karmadactl init` finished: every control-plane Deployment available, the
    /// `karmada-system` namespace (no labels) and the `karmada-apiserver` NodePort Service on port 32443.
    pub fn host_with_karmada() -> Self {
        let mut state = FakeState::host_cluster();
        state.deployments =
            CONTROL_PLANE_DEPLOYMENTS.iter().map(|name| FakeDeployment::available(KARMADA_NAMESPACE, name)).collect();
        state.put_namespace(FakeNamespace::new(KARMADA_NAMESPACE));
        state.put_service(FakeService::node_port(KARMADA_NAMESPACE, "karmada-apiserver", 5443, 32443));
        state
    }

    /// Adds or replaces (by name) a namespace.
    pub fn put_namespace(&mut self, namespace: FakeNamespace) {
        self.namespaces.retain(|n| n.name != namespace.name);
        self.namespaces.push(namespace);
    }

    /// The namespace called `name`.
    pub fn namespace_mut(&mut self, name: &str) -> Option<&mut FakeNamespace> {
        self.namespaces.iter_mut().find(|n| n.name == name)
    }

    /// Adds or replaces (by namespace and name) a Service.
    pub fn put_service(&mut self, service: FakeService) {
        self.services.retain(|s| !(s.namespace == service.namespace && s.name == service.name));
        self.services.push(service);
    }

    /// What `karmadactl deinit` leaves: no Deployments, Services or namespace of the control plane.
    pub fn remove_karmada(&mut self) {
        self.deployments.retain(|d| d.namespace != KARMADA_NAMESPACE);
        self.services.retain(|s| s.namespace != KARMADA_NAMESPACE);
        self.namespaces.retain(|n| n.name != KARMADA_NAMESPACE);
    }

    /// A Karmada API server with no clusters yet.
    pub fn karmada_apiserver() -> Self {
        FakeState { serves_karmada: true, git_version: "v1.31.3".to_string(), ..FakeState::default() }
    }

    /// Adds or replaces (by name) a cluster.
    pub fn put_cluster(&mut self, cluster: FakeCluster) {
        self.clusters.retain(|c| c.name != cluster.name);
        self.clusters.push(cluster);
    }

    /// Removes a cluster (an unjoin).
    pub fn remove_cluster(&mut self, name: &str) {
        self.clusters.retain(|c| c.name != name);
    }

    /// The cluster called `name`.
    pub fn cluster_mut(&mut self, name: &str) -> Option<&mut FakeCluster> {
        self.clusters.iter_mut().find(|c| c.name == name)
    }

    /// Adds or replaces (by name) a node.
    pub fn put_node(&mut self, node: FakeNode) {
        self.nodes.retain(|n| n.name != node.name);
        self.nodes.push(node);
    }

    /// The node called `name`.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut FakeNode> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// Adds or replaces (by namespace and name) a Deployment.
    pub fn put_deployment(&mut self, deployment: FakeDeployment) {
        self.deployments.retain(|d| !(d.namespace == deployment.namespace && d.name == deployment.name));
        self.deployments.push(deployment);
    }

    /// Removes a Deployment.
    pub fn remove_deployment(&mut self, namespace: &str, name: &str) {
        self.deployments.retain(|d| !(d.namespace == namespace && d.name == name));
    }

    /// The Deployment `namespace/name`.
    pub fn deployment_mut(&mut self, namespace: &str, name: &str) -> Option<&mut FakeDeployment> {
        self.deployments.iter_mut().find(|d| d.namespace == namespace && d.name == name)
    }

    /// Adds or replaces (by namespace and name) a pod.
    pub fn put_pod(&mut self, pod: FakePod) {
        self.pods.retain(|p| !(p.namespace == pod.namespace && p.name == pod.name));
        self.pods.push(pod);
    }

    /// Removes a pod.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        self.pods.retain(|p| !(p.namespace == namespace && p.name == name));
    }
}

/// A pod. Served `Running` once every container runs, `Pending` before (no IP yet: no sandbox; an IP and a
/// waiting container: the kubelet could not start it), with its conditions (`Ready` and `ContainersReady`
/// as `ready` says) and a status per container, as a kubelet reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIP` (and `podIPs`); `None` while the pod has none.
    pub ip: Option<String>,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// Its containers (init containers first). Empty: one container, named after the pod's
    /// `app.kubernetes.io/name` or `app` label, running `docker.io/library/busybox:1.36`.
    pub containers: Vec<FakeContainer>,
}

/// A container of a [`FakePod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    pub name: String,
    pub image: String,
    /// One of the pod's `initContainers` (served `terminated`, `Completed`, unless it waits).
    pub init: bool,
    /// `state.waiting`: the kubelet's reason (`ErrImagePull`, ...) and message; `None`: it runs.
    pub waiting: Option<(String, String)>,
    /// What its previous run wrote before it exited with code 1 (`lastState.terminated`, served at
    /// `.../pods/<name>/log?previous=true`); `None`: it has not run before.
    pub previous_log: Option<String>,
    /// Where its application accepts connections (`0.0.0.0:80`, `127.0.0.1:5000`): what a port-forward to
    /// the pod reaches (`.../pods/<name>/portforward`, which connects to the pod's loopback), and what a
    /// connection to the pod's address reaches in a world that routes to pods. Empty: nothing listens.
    pub listens: Vec<SocketAddr>,
    /// The TCP `containerPort`s its spec declares (`spec.containers[].ports`), which say nothing of where it
    /// listens.
    pub ports: Vec<u16>,
}

impl FakePod {
    /// A Running, Ready pod at `ip`.
    pub fn ready(namespace: &str, name: &str, ip: &str) -> Self {
        FakePod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels: BTreeMap::new(),
            ip: Some(ip.to_string()),
            ready: true,
            containers: Vec::new(),
        }
    }

    /// A Running pod at `ip` whose container is not ready (its readiness probe fails).
    pub fn not_ready(namespace: &str, name: &str, ip: &str) -> Self {
        FakePod { ready: false, ..FakePod::ready(namespace, name, ip) }
    }

    /// A Pending pod: scheduled, no sandbox and no IP yet.
    pub fn pending(namespace: &str, name: &str) -> Self {
        FakePod { ip: None, ready: false, ..FakePod::ready(namespace, name, "") }
    }

    /// With this label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// With this container (after those it has).
    pub fn container(mut self, container: FakeContainer) -> Self {
        self.containers.push(container);
        self
    }
}

/// A node.
#[derive(Debug, Clone)]
pub struct FakeNode {
    /// Its name.
    pub name: String,
    /// Its `Ready` condition: status, reason, message. `None`: the kubelet has posted none yet.
    pub ready: Option<(ConditionStatus, String, String)>,
    /// `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: String,
}

impl FakeNode {
    /// A Ready node, as a healthy kubelet reports it.
    pub fn ready(name: &str) -> Self {
        FakeNode {
            name: name.to_string(),
            ready: Some((
                ConditionStatus::True,
                "KubeletReady".to_string(),
                "kubelet is posting ready status".to_string(),
            )),
            kubelet_version: "v1.32.3".to_string(),
        }
    }

    /// A NotReady node, as a kubelet without a working network plugin reports it.
    pub fn not_ready(name: &str) -> Self {
        FakeNode {
            ready: Some((
                ConditionStatus::False,
                "KubeletNotReady".to_string(),
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".to_string(),
            )),
            ..FakeNode::ready(name)
        }
    }

    /// A node whose kubelet stopped posting status (the node controller sets `Unknown`).
    pub fn unknown(name: &str) -> Self {
        FakeNode {
            ready: Some((
                ConditionStatus::Unknown,
                "NodeStatusUnknown".to_string(),
                "Kubelet stopped posting node status.".to_string(),
            )),
            ..FakeNode::ready(name)
        }
    }
}

/// A Deployment.
#[derive(Debug, Clone)]
pub struct FakeDeployment {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas` (and readyReplicas).
    pub available_replicas: i32,
    /// The container's image; `None`: `localhost:32000/<name>:v1.19.0`, as `karmadactl init
    /// --private-image-registry localhost:32000` of release v1.19.0 (testbed's default) names the Karmada
    /// images.
    pub image: Option<String>,
    /// The container's `command`; not served when empty.
    pub command: Vec<String>,
}

impl FakeDeployment {
    /// One replica, available.
    pub fn available(namespace: &str, name: &str) -> Self {
        FakeDeployment {
            namespace: namespace.to_string(),
            name: name.to_string(),
            replicas: 1,
            available_replicas: 1,
            image: None,
            command: Vec::new(),
        }
    }

    /// With this container command.
    pub fn command(mut self, command: Vec<String>) -> Self {
        self.command = command;
        self
    }

    /// With this container image.
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.to_string());
        self
    }

    /// The container's image as served.
    pub fn image_or_default(&self) -> String {
        self.image.clone().unwrap_or_else(|| format!("localhost:32000/{}:v1.19.0", self.name))
    }

    /// One replica wanted, none available (an image that cannot be pulled, say).
    pub fn unavailable(namespace: &str, name: &str) -> Self {
        FakeDeployment { available_replicas: 0, ..FakeDeployment::available(namespace, name) }
    }
}

/// A namespace.
#[derive(Debug, Clone)]
pub struct FakeNamespace {
    /// Its name.
    pub name: String,
    /// `metadata.labels` (besides `kubernetes.io/metadata.name`, which the server always adds).
    pub labels: BTreeMap<String, String>,
}

impl FakeNamespace {
    /// An active namespace without labels of its own.
    pub fn new(name: &str) -> Self {
        FakeNamespace { name: name.to_string(), labels: BTreeMap::new() }
    }

    /// With this label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

/// A Service with one port.
#[derive(Debug, Clone)]
pub struct FakeService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.ports[0].port` (and targetPort).
    pub port: i32,
    /// `spec.ports[0].nodePort`; `None` for a ClusterIP Service.
    pub node_port: Option<i32>,
}

impl FakeService {
    /// A NodePort Service, as `karmadactl init` makes `karmada-apiserver` (port 5443, nodePort `--port`).
    pub fn node_port(namespace: &str, name: &str, port: i32, node_port: i32) -> Self {
        FakeService { namespace: namespace.to_string(), name: name.to_string(), port, node_port: Some(node_port) }
    }
}

/// A Karmada `Cluster`.
#[derive(Debug, Clone)]
pub struct FakeCluster {
    /// Its name.
    pub name: String,
    /// `spec.syncMode`: `Push` or `Pull`.
    pub sync_mode: String,
    /// `spec.apiEndpoint`.
    pub api_endpoint: String,
    /// `spec.id`.
    pub id: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints[]`.
    pub taints: Vec<FakeTaint>,
    /// The `Ready` condition: status, reason, message. `None`: Karmada has not posted status yet.
    pub ready: Option<(ConditionStatus, String, String)>,
    /// `status.kubernetesVersion`.
    pub kubernetes_version: Option<String>,
}

impl FakeCluster {
    /// A joined (push mode), Ready cluster, as karmada-controller-manager reports it. Its endpoint and id
    /// are derived from the name.
    pub fn ready(name: &str) -> Self {
        let n: u32 = name.bytes().map(u32::from).sum::<u32>() % 200 + 10;
        FakeCluster {
            name: name.to_string(),
            sync_mode: "Push".to_string(),
            api_endpoint: format!("https://10.123.45.{n}:16443"),
            id: fake_uid("kube-system", name),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            ready: Some((
                ConditionStatus::True,
                "ClusterReady".to_string(),
                "cluster is healthy and ready to accept workloads".to_string(),
            )),
            kubernetes_version: Some("v1.32.3".to_string()),
        }
    }

    /// A cluster Karmada cannot reach (`Ready=False`, `ClusterNotReachable`), with the taint Karmada
    /// adds to such a cluster.
    pub fn not_reachable(name: &str) -> Self {
        FakeCluster {
            ready: Some((
                ConditionStatus::False,
                "ClusterNotReachable".to_string(),
                "cluster is not reachable".to_string(),
            )),
            taints: vec![FakeTaint::new("cluster.karmada.io/unreachable", "NoSchedule")],
            ..FakeCluster::ready(name)
        }
    }

    /// A cluster whose health endpoint does not answer ok (`Ready=False`, `ClusterNotReady`).
    pub fn not_ready(name: &str) -> Self {
        FakeCluster {
            ready: Some((
                ConditionStatus::False,
                "ClusterNotReady".to_string(),
                "cluster is reachable but health endpoint responded without ok".to_string(),
            )),
            taints: vec![FakeTaint::new("cluster.karmada.io/not-ready", "NoSchedule")],
            ..FakeCluster::ready(name)
        }
    }

    /// Registered in pull mode (`spec.apiEndpoint` is then usually empty).
    pub fn pull(mut self) -> Self {
        self.sync_mode = "Pull".to_string();
        self.api_endpoint = String::new();
        self
    }

    /// With this label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

/// A taint on a Karmada `Cluster` (`spec.taints[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTaint {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `NoExecute`.
    pub effect: String,
    /// `timeAdded` (RFC 3339) as the server keeps it; `None` is served as the fake's fixed time.
    pub time_added: Option<String>,
}

impl FakeTaint {
    /// A taint without a value, added at the fake's fixed time.
    pub fn new(key: &str, effect: &str) -> FakeTaint {
        FakeTaint { key: key.to_owned(), value: None, effect: effect.to_owned(), time_added: None }
    }

    fn json(&self) -> Value {
        let mut t =
            json!({"key": self.key, "effect": self.effect, "timeAdded": self.time_added.as_deref().unwrap_or(CHANGED)});
        if let Some(value) = &self.value {
            t["value"] = json!(value);
        }
        t
    }

    /// The taints of a Cluster's `spec` as a client wrote them (`timeAdded` kept when given).
    fn from_spec(spec: &Value) -> Vec<FakeTaint> {
        spec["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some(FakeTaint {
                    key: t["key"].as_str()?.to_owned(),
                    value: t["value"].as_str().filter(|v| !v.is_empty()).map(str::to_owned),
                    effect: t["effect"].as_str()?.to_owned(),
                    time_added: t["timeAdded"].as_str().map(str::to_owned),
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------
// JSON, as a real API server writes it
// ---------------------------------------------------------------------------------------------------

/// A stable, uuid-shaped id from a kind and a name.
fn fake_uid(kind: &str, name: &str) -> String {
    // FNV-1a, twice with different seeds: 128 bits, deterministic.
    let hash = |seed: u64| {
        let mut h = seed;
        for b in kind.bytes().chain([b'/']).chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    };
    let (a, b) = (hash(0xcbf29ce484222325), hash(0x84222325cbf29ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn metadata(kind: &str, namespace: Option<&str>, name: &str, resource_version: u64) -> Value {
    let mut meta = json!({
        "name": name,
        "uid": fake_uid(kind, &format!("{}/{name}", namespace.unwrap_or(""))),
        "resourceVersion": resource_version.to_string(),
        "creationTimestamp": CREATED,
    });
    if let Some(namespace) = namespace {
        meta["namespace"] = json!(namespace);
    }
    meta
}

fn condition_json(type_: &str, (status, reason, message): &(ConditionStatus, String, String)) -> Value {
    json!({
        "type": type_,
        "status": status.to_string(),
        "lastTransitionTime": CHANGED,
        "reason": reason,
        "message": message,
    })
}

fn node_json(node: &FakeNode, resource_version: u64) -> Value {
    let mut meta = metadata("Node", None, &node.name, resource_version);
    meta["labels"] = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "microk8s.io/cluster": "true",
        "node.kubernetes.io/microk8s-controlplane": "microk8s-controlplane",
    });
    let pressure = |type_: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": "False",
            "lastHeartbeatTime": CHANGED, "lastTransitionTime": CREATED,
            "reason": reason, "message": message,
        })
    };
    let mut conditions = vec![
        pressure("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ];
    if let Some(ready) = &node.ready {
        let mut c = condition_json("Ready", ready);
        c["lastHeartbeatTime"] = json!(CHANGED);
        conditions.push(c);
    }
    json!({
        "metadata": meta,
        "spec": {},
        "status": {
            "capacity": {"cpu": "2", "memory": "4010000Ki", "pods": "110", "ephemeral-storage": "30787492Ki"},
            "allocatable": {"cpu": "2", "memory": "3907600Ki", "pods": "110", "ephemeral-storage": "29739940Ki"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "10.123.45.1"},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": fake_uid("machine", &node.name).replace('-', ""),
                "systemUUID": fake_uid("system", &node.name),
                "bootID": fake_uid("boot", &node.name),
                "kernelVersion": "6.1.0-28-amd64",
                "osImage": "Ubuntu 24.04.1 LTS",
                "containerRuntimeVersion": "containerd://1.7.27",
                "kubeletVersion": node.kubelet_version,
                "kubeProxyVersion": node.kubelet_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

fn deployment_json(d: &FakeDeployment, resource_version: u64) -> Value {
    let mut meta = metadata("Deployment", Some(&d.namespace), &d.name, resource_version);
    meta["generation"] = json!(1);
    meta["labels"] = json!({"app": d.name});
    meta["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
    let available = d.replicas > 0 && d.available_replicas >= d.replicas;
    let mut status = json!({
        "observedGeneration": 1,
        "replicas": d.replicas,
        "updatedReplicas": d.replicas,
        "conditions": [
            if available {
                json!({"type": "Available", "status": "True", "lastUpdateTime": CHANGED, "lastTransitionTime": CHANGED,
                       "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."})
            } else {
                json!({"type": "Available", "status": "False", "lastUpdateTime": CHANGED, "lastTransitionTime": CHANGED,
                       "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."})
            },
            json!({"type": "Progressing", "status": "True", "lastUpdateTime": CHANGED, "lastTransitionTime": CREATED,
                   "reason": if available { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                   "message": if available {
                       format!("ReplicaSet \"{}-5d4c9b7f8\" has successfully progressed.", d.name)
                   } else {
                       format!("ReplicaSet \"{}-5d4c9b7f8\" is progressing.", d.name)
                   }}),
        ],
    });
    if d.available_replicas > 0 {
        status["readyReplicas"] = json!(d.available_replicas);
        status["availableReplicas"] = json!(d.available_replicas);
    }
    if d.replicas > d.available_replicas {
        status["unavailableReplicas"] = json!(d.replicas - d.available_replicas);
    }
    let mut container = json!({"name": d.name, "image": d.image_or_default(), "imagePullPolicy": "IfNotPresent"});
    if !d.command.is_empty() {
        container["command"] = json!(d.command);
    }
    json!({
        "metadata": meta,
        "spec": {
            "replicas": d.replicas,
            "selector": {"matchLabels": {"app": d.name}},
            "template": {
                "metadata": {"labels": {"app": d.name}},
                "spec": {"containers": [container]},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": status,
    })
}

/// The node every fake pod runs on, and its address (`status.hostIP`).
const POD_NODE: (&str, &str) = ("member", "10.123.45.10");

fn pod_json(p: &FakePod, resource_version: u64) -> Value {
    let mut meta = metadata("Pod", Some(&p.namespace), &p.name, resource_version);
    if !p.labels.is_empty() {
        meta["labels"] = json!(p.labels);
    }
    let default_container = || FakeContainer {
        name: p.labels.get("app.kubernetes.io/name").or(p.labels.get("app")).cloned().unwrap_or_else(|| p.name.clone()),
        image: "docker.io/library/busybox:1.36".into(),
        init: false,
        waiting: None,
        previous_log: None,
        listens: Vec::new(),
        ports: Vec::new(),
    };
    let containers = if p.containers.is_empty() { vec![default_container()] } else { p.containers.clone() };
    let unready: Vec<&str> =
        containers.iter().filter(|c| !c.init && (!p.ready || c.waiting.is_some())).map(|c| c.name.as_str()).collect();
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let mut c = json!({
            "type": type_,
            "status": if ok { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": if ok { CHANGED } else { CREATED },
        });
        if let Some(reason) = reason.filter(|_| !ok) {
            c["reason"] = json!(reason);
            c["message"] = json!(format!("containers with unready status: [{}]", unready.join(" ")));
        }
        c
    };
    let initialized = !containers.iter().any(|c| c.init && c.waiting.is_some());
    let running = p.ip.is_some() && !containers.iter().any(|c| c.waiting.is_some());
    let mut status = json!({
        "phase": if running { "Running" } else { "Pending" },
        "conditions": [
            condition("Initialized", initialized, Some("ContainersNotInitialized")),
            condition("Ready", p.ready, Some("ContainersNotReady")),
            condition("ContainersReady", p.ready, Some("ContainersNotReady")),
            condition("PodScheduled", true, None),
        ],
        "hostIP": POD_NODE.1,
        "hostIPs": [{"ip": POD_NODE.1}],
        "qosClass": "BestEffort",
    });
    let container_status = |c: &FakeContainer| {
        let started = c.waiting.is_none() && !c.init;
        let state = match &c.waiting {
            Some((reason, message)) => json!({"waiting": {"reason": reason, "message": message}}),
            None if c.init => json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": CREATED,
                "finishedAt": CHANGED}}),
            None => json!({"running": {"startedAt": CHANGED}}),
        };
        let last_state = match &c.previous_log {
            Some(_) => {
                json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": CREATED, "finishedAt": CHANGED}})
            }
            None => json!({}),
        };
        let mut status = json!({
            "name": c.name,
            "state": state,
            "lastState": last_state,
            "ready": started && p.ready,
            "restartCount": if c.previous_log.is_some() { 5 } else { 0 },
            "image": c.image,
            "imageID": "",
            "started": started,
        });
        if c.waiting.is_none() {
            status["imageID"] =
                json!(format!("{}@sha256:{}", c.image.split(':').next().unwrap_or_default(), "0".repeat(64)));
            status["containerID"] = json!(format!(
                "containerd://{}",
                fake_uid("container", &format!("{}/{}", p.name, c.name)).replace('-', "")
            ));
        }
        status
    };
    if let Some(ip) = &p.ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
        status["startTime"] = json!(CREATED);
        status["containerStatuses"] = containers.iter().filter(|c| !c.init).map(container_status).collect();
        if containers.iter().any(|c| c.init) {
            status["initContainerStatuses"] = containers.iter().filter(|c| c.init).map(container_status).collect();
        }
    }
    let spec_of = |c: &FakeContainer| {
        let mut spec = json!({"name": c.name, "image": c.image, "imagePullPolicy": "IfNotPresent"});
        if !c.ports.is_empty() {
            spec["ports"] = c.ports.iter().map(|p| json!({"containerPort": p, "protocol": "TCP"})).collect();
        }
        spec
    };
    let mut spec = json!({
        "containers": containers.iter().filter(|c| !c.init).map(spec_of).collect::<Vec<_>>(),
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "nodeName": POD_NODE.0,
        "schedulerName": "default-scheduler",
        "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
    });
    if containers.iter().any(|c| c.init) {
        spec["initContainers"] = containers.iter().filter(|c| c.init).map(spec_of).collect();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": status,
    })
}

/// `.../pods/<name>/log`: a container's output as text (served as a JSON string, which the response writes
/// as `text/plain`), the last `tailLines` lines; with `previous=true` its previous run's, or the API
/// server's 400 when it has none.
fn pod_log(p: &FakePod, query: &str) -> (StatusCode, Value) {
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| store::percent_decode(v))
    };
    let containers: Vec<&FakeContainer> = p.containers.iter().filter(|c| !c.init).collect();
    let name = param("container").or_else(|| (containers.len() == 1).then(|| containers[0].name.clone()));
    let Some(c) = name.as_deref().and_then(|n| p.containers.iter().find(|c| c.name == n)) else {
        let message = match name {
            Some(n) => format!("container {n} is not valid for pod {}", p.name),
            None => format!("a container name must be specified for pod {}", p.name),
        };
        return (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", &message, None));
    };
    let previous = param("previous").as_deref() == Some("true");
    let text = match (&c.previous_log, previous) {
        (Some(log), true) => log.clone(),
        (None, true) => {
            let message = format!("previous terminated container \"{}\" in pod \"{}\" not found", c.name, p.name);
            return (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", &message, None));
        }
        (_, false) => String::new(),
    };
    let tail = param("tailLines").and_then(|n| n.parse::<usize>().ok());
    let lines: Vec<&str> = text.lines().collect();
    let kept = match tail {
        Some(n) if n < lines.len() => &lines[lines.len() - n..],
        _ => &lines[..],
    };
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    (StatusCode::OK, Value::String(out))
}

fn cluster_json(c: &FakeCluster, resource_version: u64) -> Value {
    let mut meta = metadata("Cluster", None, &c.name, resource_version);
    meta["generation"] = json!(1);
    meta["finalizers"] = json!(["karmada.io/cluster-controller"]);
    if !c.labels.is_empty() {
        meta["labels"] = json!(c.labels);
    }
    let mut spec = json!({
        "id": c.id,
        "syncMode": c.sync_mode,
        "impersonatorSecretRef": {"namespace": "karmada-cluster", "name": format!("{}-impersonator", c.name)},
        "resourceModels": [],
    });
    if !c.api_endpoint.is_empty() {
        spec["apiEndpoint"] = json!(c.api_endpoint);
        spec["secretRef"] = json!({"namespace": "karmada-cluster", "name": c.name});
    }
    if !c.taints.is_empty() {
        spec["taints"] = c.taints.iter().map(FakeTaint::json).collect();
    }
    let mut status = json!({});
    if let Some(ready) = &c.ready {
        status["conditions"] = json!([condition_json("Ready", ready)]);
    }
    if let Some(version) = &c.kubernetes_version {
        status["kubernetesVersion"] = json!(version);
    }
    json!({
        "apiVersion": CLUSTER_API_VERSION,
        "kind": "Cluster",
        "metadata": meta,
        "spec": spec,
        "status": status,
    })
}

fn namespace_json(n: &FakeNamespace, resource_version: u64) -> Value {
    let mut meta = metadata("Namespace", None, &n.name, resource_version);
    let mut labels = json!({"kubernetes.io/metadata.name": n.name});
    for (k, v) in &n.labels {
        labels[k] = json!(v);
    }
    meta["labels"] = labels;
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

fn service_json(s: &FakeService, resource_version: u64) -> Value {
    let mut meta = metadata("Service", Some(&s.namespace), &s.name, resource_version);
    meta["labels"] = json!({"app": s.name});
    let mut port = json!({
        "name": format!("{}-port", s.name.trim_start_matches("karmada-")),
        "protocol": "TCP",
        "port": s.port,
        "targetPort": s.port,
    });
    if let Some(node_port) = s.node_port {
        port["nodePort"] = json!(node_port);
    }
    let ip = service_ip(&s.name);
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": if s.node_port.is_some() { "NodePort" } else { "ClusterIP" },
            "selector": {"app": s.name},
            "ports": [port],
            "clusterIP": ip,
            "clusterIPs": [ip],
            "sessionAffinity": "None",
            "externalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    })
}

/// The cluster IP of a [`FakeService`].
fn service_ip(name: &str) -> String {
    let n: u32 = name.bytes().map(u32::from).sum::<u32>() % 250 + 2;
    format!("10.152.183.{n}")
}

fn status_json(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

fn not_found(group: &str, plural: &str, name: &str) -> (StatusCode, Value) {
    let resource = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
    let mut details = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    (StatusCode::NOT_FOUND, status_json(404, "NotFound", &format!("{resource} \"{name}\" not found"), Some(details)))
}

fn unknown_path() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        status_json(404, "NotFound", "the server could not find the requested resource", Some(json!({}))),
    )
}

fn list_json(api_version: &str, kind: &str, resource_version: u64, items: Vec<Value>, with_types: bool) -> Value {
    // A real server leaves apiVersion and kind out of the items of a built-in list, and keeps them in
    // the items of an aggregated or custom resource's list.
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            if !with_types {
                if let Some(obj) = item.as_object_mut() {
                    obj.remove("apiVersion");
                    obj.remove("kind");
                }
            }
            item
        })
        .collect();
    json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items,
    })
}

fn with_types(mut value: Value, api_version: &str, kind: &str) -> Value {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("apiVersion".to_string(), json!(api_version));
        obj.insert("kind".to_string(), json!(kind));
    }
    value
}

fn api_resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({
        "name": name,
        "singularName": kind.to_lowercase(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The store's kinds in `group`/`version`, as discovery lists them.
fn store_resources(group: &str, version: &str, state: &FakeState) -> Vec<Value> {
    store::KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version && (state.serves_karmada || !k.karmada))
        .flat_map(|k| {
            let verbs: &[&str] = if k.writable { ALL_VERBS } else { &["get", "list", "watch"] };
            let mut resources = vec![api_resource(k.plural, k.kind, k.namespaced, verbs, k.short)];
            if !matches!(k.kind, "ConfigMap" | "Secret" | "ServiceAccount") {
                resources.push(api_resource(
                    &format!("{}/status", k.plural),
                    k.kind,
                    k.namespaced,
                    &["get", "patch", "update"],
                    &[],
                ));
            }
            resources
        })
        .collect()
}

fn discovery(path: &str, state: &FakeState) -> Option<Value> {
    let group = |name: &str, version: &str| {
        json!({
            "name": name,
            "versions": [{"groupVersion": format!("{name}/{version}"), "version": version}],
            "preferredVersion": {"groupVersion": format!("{name}/{version}"), "version": version},
        })
    };
    let resource_list = |group_version: &str, resources: Vec<Value>| {
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        })
    };
    // Listed by name, each once: the typed resources first.
    let merged = |typed: Vec<Value>, stored: Vec<Value>| {
        let mut all = typed;
        for r in stored {
            if !all.iter().any(|t| t["name"] == r["name"]) {
                all.push(r);
            }
        }
        all
    };
    Some(match path {
        "/version" => json!({
            "major": state.git_version.trim_start_matches('v').split('.').next().unwrap_or("1"),
            "minor": state.git_version.split('.').nth(1).unwrap_or("0"),
            "gitVersion": state.git_version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-03-11T19:52:32Z",
            "goVersion": "go1.23.6",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
        "/api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.123.45.1:16443"}],
        }),
        "/apis" => {
            let mut groups = vec![group("apps", "v1")];
            if state.serves_karmada {
                groups.push(group("cluster.karmada.io", "v1alpha1"));
                groups.push(group("policy.karmada.io", "v1alpha1"));
                groups.push(group("work.karmada.io", "v1alpha2"));
            }
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/api/v1" => json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": merged(
                vec![
                    api_resource("nodes", "Node", false, ALL_VERBS, &["no"]),
                    api_resource("nodes/status", "Node", false, &["get", "patch", "update"], &[]),
                    api_resource("pods", "Pod", true, ALL_VERBS, &["po"]),
                    api_resource("pods/status", "Pod", true, &["get", "patch", "update"], &[]),
                ],
                store_resources("", "v1", state),
            ),
        }),
        "/apis/apps" => group("apps", "v1"),
        "/apis/apps/v1" => resource_list("apps/v1", store_resources("apps", "v1", state)),
        "/apis/cluster.karmada.io" if state.serves_karmada => group("cluster.karmada.io", "v1alpha1"),
        "/apis/cluster.karmada.io/v1alpha1" if state.serves_karmada => resource_list(
            CLUSTER_API_VERSION,
            vec![
                api_resource("clusters", "Cluster", false, ALL_VERBS, &[]),
                api_resource("clusters/status", "Cluster", false, &["get", "patch", "update"], &[]),
                api_resource(
                    "clusters/proxy",
                    "ClusterProxyOptions",
                    false,
                    &["create", "delete", "get", "patch", "update"],
                    &[],
                ),
            ],
        ),
        "/apis/policy.karmada.io" if state.serves_karmada => group("policy.karmada.io", "v1alpha1"),
        "/apis/policy.karmada.io/v1alpha1" if state.serves_karmada => resource_list(
            "policy.karmada.io/v1alpha1",
            merged(
                vec![api_resource("clustertaintpolicies", "ClusterTaintPolicy", false, ALL_VERBS, &[])],
                store_resources("policy.karmada.io", "v1alpha1", state),
            ),
        ),
        "/apis/work.karmada.io" if state.serves_karmada => group("work.karmada.io", "v1alpha2"),
        "/apis/work.karmada.io/v1alpha2" if state.serves_karmada => {
            resource_list("work.karmada.io/v1alpha2", store_resources("work.karmada.io", "v1alpha2", state))
        }
        _ => return None,
    })
}

/// The answer to one GET, from the state: the typed objects first, then the object store. A namespace,
/// Service or Deployment the typed state lacks is looked for in the store, and their lists hold both.
fn route(path: &str, query: &str, state: &FakeState, resource_version: u64) -> (StatusCode, Value) {
    if let Some(doc) = discovery(path, state) {
        return (StatusCode::OK, doc);
    }
    let selector = match Selector::from_query(query) {
        Ok(selector) => selector,
        Err(message) => return (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", &message, None)),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |v: Value| (StatusCode::OK, v);
    let target = store::parse(path, state.serves_karmada);
    // A list of typed objects and the store's of the same kind, both filtered by the selector.
    let merged_list = |typed: Vec<Value>| {
        let target = target.as_ref().expect("a path of a kind the store serves");
        let mut items: Vec<Value> = typed.into_iter().filter(|item| selector.matches(item)).collect();
        items.extend(store::items(state, target, &selector));
        ok(store::list(target.kind, resource_version, items))
    };
    // A typed object, else the store's.
    let typed_or_stored = |typed: Option<Value>| match typed {
        Some(object) => ok(object),
        None => {
            let target = target.as_ref().expect("a path of a kind the store serves");
            store::get(state, target, &selector, resource_version)
        }
    };
    match segments.as_slice() {
        ["api", "v1", "nodes"] => ok(list_json(
            "v1",
            "NodeList",
            resource_version,
            state.nodes.iter().map(|n| node_json(n, resource_version)).filter(|n| selector.matches(n)).collect(),
            false,
        )),
        ["api", "v1", "nodes", name] => match state.nodes.iter().find(|n| n.name == *name) {
            Some(n) => ok(with_types(node_json(n, resource_version), "v1", "Node")),
            None => not_found("", "nodes", name),
        },
        ["api", "v1", "pods"] => ok(pod_list(state, None, &selector, resource_version)),
        ["api", "v1", "events"] => ok(event_list(state, None, resource_version)),
        ["api", "v1", "namespaces", namespace, "events"] => ok(event_list(state, Some(namespace), resource_version)),
        ["api", "v1", "namespaces", namespace, "pods"] => {
            ok(pod_list(state, Some(namespace), &selector, resource_version))
        }
        ["api", "v1", "namespaces", namespace, "pods", name] => {
            match state.pods.iter().find(|p| p.namespace == *namespace && p.name == *name) {
                Some(p) => ok(pod_json(p, resource_version)),
                None => not_found("", "pods", name),
            }
        }
        ["api", "v1", "namespaces", namespace, "pods", name, "log"] => {
            match state.pods.iter().find(|p| p.namespace == *namespace && p.name == *name) {
                Some(p) => pod_log(p, query),
                None => not_found("", "pods", name),
            }
        }
        ["api", "v1", "namespaces"] => {
            merged_list(state.namespaces.iter().map(|n| namespace_json(n, resource_version)).collect())
        }
        ["api", "v1", "namespaces", name] => typed_or_stored(
            state.namespaces.iter().find(|n| n.name == *name).map(|n| namespace_json(n, resource_version)),
        ),
        ["api", "v1", "services"] => {
            merged_list(state.services.iter().map(|s| service_json(s, resource_version)).collect())
        }
        ["api", "v1", "namespaces", namespace, "services"] => merged_list(
            state
                .services
                .iter()
                .filter(|s| s.namespace == *namespace)
                .map(|s| service_json(s, resource_version))
                .collect(),
        ),
        ["api", "v1", "namespaces", namespace, "services", name] => typed_or_stored(
            state
                .services
                .iter()
                .find(|s| s.namespace == *namespace && s.name == *name)
                .map(|s| service_json(s, resource_version)),
        ),
        ["apis", "apps", "v1", "deployments"] => {
            merged_list(state.deployments.iter().map(|d| deployment_json(d, resource_version)).collect())
        }
        ["apis", "apps", "v1", "namespaces", namespace, "deployments"] => merged_list(
            state
                .deployments
                .iter()
                .filter(|d| d.namespace == *namespace)
                .map(|d| deployment_json(d, resource_version))
                .collect(),
        ),
        ["apis", "apps", "v1", "namespaces", namespace, "deployments", name] => typed_or_stored(
            state
                .deployments
                .iter()
                .find(|d| d.namespace == *namespace && d.name == *name)
                .map(|d| with_types(deployment_json(d, resource_version), "apps/v1", "Deployment")),
        ),
        ["apis", "cluster.karmada.io", "v1alpha1", "clusters"] if state.serves_karmada => ok(list_json(
            CLUSTER_API_VERSION,
            "ClusterList",
            resource_version,
            state.clusters.iter().map(|c| cluster_json(c, resource_version)).filter(|c| selector.matches(c)).collect(),
            true,
        )),
        ["apis", "cluster.karmada.io", "v1alpha1", "clusters", name] if state.serves_karmada => {
            match state.clusters.iter().find(|c| c.name == *name) {
                Some(c) => ok(cluster_json(c, resource_version)),
                None => not_found("cluster.karmada.io", "clusters", name),
            }
        }
        ["apis", "policy.karmada.io", "v1alpha1", "clustertaintpolicies", name] if state.serves_karmada => {
            match state.taint_policies.get(*name) {
                Some(p) => ok(taint_policy_json(name, p, resource_version)),
                None => not_found("policy.karmada.io", "clustertaintpolicies", name),
            }
        }
        _ => match &target {
            Some(target) => store::get(state, target, &selector, resource_version),
            None => unknown_path(),
        },
    }
}

/// The pods (of `namespace`, when given) that `selector` matches, as a `PodList`.
fn pod_list(state: &FakeState, namespace: Option<&str>, selector: &Selector, resource_version: u64) -> Value {
    let mut pods: Vec<&FakePod> = state.pods.iter().filter(|p| namespace.is_none_or(|ns| p.namespace == ns)).collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let items = pods.into_iter().map(|p| pod_json(p, resource_version)).filter(|p| selector.matches(p)).collect();
    list_json("v1", "PodList", resource_version, items, false)
}

fn event_list(state: &FakeState, namespace: Option<&str>, resource_version: u64) -> Value {
    let items = state
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| namespace.is_none_or(|ns| e.namespace == ns))
        .map(|(i, e)| {
            // Named as the recorder names them: the object's name and a unique suffix.
            let name = format!("{}.{:016x}", e.pod, i + 1);
            json!({
                "metadata": metadata("Event", Some(&e.namespace), &name, resource_version),
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": e.namespace,
                    "name": e.pod,
                    "uid": fake_uid("Pod", &format!("{}/{}", e.namespace, e.pod)),
                    "apiVersion": "v1",
                },
                "reason": e.reason,
                "message": e.message,
                "source": {"component": "kubelet", "host": POD_NODE.0},
                "firstTimestamp": CREATED,
                "lastTimestamp": CHANGED,
                "count": e.count,
                "type": e.type_,
                "eventTime": null,
                "reportingComponent": "kubelet",
                "reportingInstance": POD_NODE.0,
            })
        })
        .collect();
    list_json("v1", "EventList", resource_version, items, false)
}

/// A ClusterTaintPolicy as the API server sends it, from what was applied (`labels`, `spec`).
fn taint_policy_json(name: &str, applied: &Value, resource_version: u64) -> Value {
    let mut meta = metadata("ClusterTaintPolicy", None, name, resource_version);
    meta["generation"] = json!(1);
    if let Some(labels) = applied.get("labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        meta["labels"] = labels.clone();
    }
    json!({
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "ClusterTaintPolicy",
        "metadata": meta,
        "spec": applied.get("spec").cloned().unwrap_or(json!({})),
    })
}

// ---------------------------------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------------------------------

/// A CA and a server certificate it signed for `127.0.0.1` and `localhost`, generated at test time, plus a
/// client certificate the same CA signed.
#[derive(Clone)]
pub struct FakeTls {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// The server's certificate, PEM.
    pub server_cert_pem: String,
    /// The server's private key, PEM.
    pub server_key_pem: String,
    /// A client certificate (`CN=kube-admin`, `O=system:masters`) the CA signed, PEM.
    pub client_cert_pem: String,
    /// Its private key, PEM.
    pub client_key_pem: String,
}

impl std::fmt::Debug for FakeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTls").finish_non_exhaustive()
    }
}

impl FakeTls {
    /// New keys and certificates; the CA's common name is `ca_name`.
    pub fn generate(ca_name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("generate a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate a server key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server parameters");
        server_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer).expect("sign the server certificate");

        let client_key = KeyPair::generate().expect("generate a client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        client_params.distinguished_name.push(DnType::CommonName, "kube-admin");
        client_params.distinguished_name.push(DnType::OrganizationName, "system:masters");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).expect("sign the client certificate");

        FakeTls {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// A server certificate for `names` (IP addresses or DNS names) that an existing CA signs: the CA's
    /// certificate and key, PEM, and its common name (the new certificate's issuer). The client fields are
    /// left empty.
    pub fn server_signed_by(ca_pem: &str, ca_key_pem: &str, ca_name: &str, names: &[String]) -> io::Result<Self> {
        use rcgen::BasicConstraints;
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| invalid(&e))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid(&e))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().map_err(|e| invalid(&e))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| invalid(&e))?;
        params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).map_err(|e| invalid(&e))?;
        Ok(FakeTls {
            ca_pem: ca_pem.to_owned(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
            client_cert_pem: String::new(),
            client_key_pem: String::new(),
        })
    }

    fn server_config(&self) -> io::Result<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let chain = CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| invalid(&e))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca.map_err(|e| invalid(&e))?).map_err(|e| invalid(&e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| invalid(&e))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| invalid(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

// ---------------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------------

/// Where a server's state comes from at each request, when a world outside the fake keeps it: `None`
/// means nothing serves the address now (the connection is dropped).
pub type StateSource = Arc<dyn Fn() -> Option<FakeState> + Send + Sync>;

/// Where a write goes, when a world outside the fake keeps the state: called with what a `PATCH` or `DELETE`
/// changed, before the answer is sent (so that the next read, from the source, sees it).
pub type StateSink = Arc<dyn Fn(&FakeWrite) + Send + Sync>;

/// What one write (`PATCH`, `DELETE`) changed, of what the fake models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeWrite {
    /// A namespace's labels, as they are now.
    Namespace { name: String, labels: BTreeMap<String, String> },
    /// A Cluster's labels, `spec.apiEndpoint` and `spec.taints`, as they are now (taints as the client wrote
    /// them: a new NoExecute taint without `timeAdded` is stamped by the server, which is the world's).
    Cluster { name: String, labels: BTreeMap<String, String>, api_endpoint: String, taints: Vec<FakeTaint> },
    /// A ClusterTaintPolicy as applied: `{"labels": {...}, "spec": {...}}`.
    TaintPolicy { name: String, object: Value },
    /// A Deployment's container command, as it is now.
    DeploymentCommand { namespace: String, name: String, command: Vec<String> },
    /// An object of the store ([`FakeState::objects`]) at its REST path, as it is now: `None` once deleted.
    Object { path: String, object: Option<Value> },
}

/// Which requests fail, consulted for every request that got past authentication and authorization (where
/// a real API server reaches its storage): the method (`GET`, `PATCH`) and the path, without the query.
pub type FaultHook = Arc<dyn Fn(&str, &str) -> Option<FakeFailure> + Send + Sync>;

/// How a request fails when a [`FaultHook`] says it does: the HTTP status and the `Status` object a real
/// API server sends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFailure {
    /// The HTTP status, also the `Status`'s `code`.
    pub code: u16,
    /// The `Status`'s `reason`; empty for kube-apiserver's `StatusReasonUnknown`, which leaves it out.
    pub reason: String,
    /// The `Status`'s `message`.
    pub message: String,
}

impl FakeFailure {
    /// An error that kube-apiserver's storage passed up unconverted (etcd's own, such as
    /// `etcdserver: request timed out`): kube-apiserver answers it with a 500 `Status` whose message is the
    /// error's text and whose reason is `StatusReasonUnknown` (the empty string, left out of the JSON).
    /// Source: k8s.io/apiserver pkg/endpoints/handlers/responsewriters/status.go, `ErrorToAPIStatus`,
    /// its branch for "an error that is not an metav1.Status"; kubectl shows it as
    /// `Error from server: etcdserver: request timed out`, without a reason in parentheses.
    pub fn unconverted(message: impl Into<String>) -> Self {
        FakeFailure { code: 500, reason: String::new(), message: message.into() }
    }

    fn answer(&self) -> (StatusCode, Value) {
        let mut status = status_json(self.code, &self.reason, &self.message, None);
        if self.reason.is_empty() {
            if let Some(fields) = status.as_object_mut() {
                fields.remove("reason");
            }
        }
        (StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), status)
    }
}

struct Shared {
    source: Option<StateSource>,
    sink: Option<StateSink>,
    faults: Mutex<Option<FaultHook>>,
    state: Mutex<FakeState>,
    requests: Mutex<Vec<String>>,
    resource_version: Mutex<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake API server. Stops when dropped.
pub struct FakeKube {
    url: String,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKube").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    /// Serves `state` over plain HTTP on `127.0.0.1:<ephemeral port>`.
    pub async fn start(state: FakeState) -> io::Result<Self> {
        Self::spawn(state, None).await
    }

    /// Serves `state` over HTTPS with `tls`'s server certificate; clients may present a client certificate
    /// `tls`'s CA signed.
    pub async fn start_tls(state: FakeState, tls: &FakeTls) -> io::Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config()?));
        let mut fake = Self::spawn(state, Some(acceptor)).await?;
        fake.ca_pem = Some(tls.ca_pem.clone());
        Ok(fake)
    }

    async fn spawn(state: FakeState, tls: Option<tokio_rustls::TlsAcceptor>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            source: None,
            sink: None,
            faults: Mutex::new(None),
            state: Mutex::new(state),
            requests: Mutex::new(Vec::new()),
            resource_version: Mutex::new(1000),
        });
        let task = tokio::spawn(accept_loop(listener, tls, shared.clone()));
        Ok(FakeKube { url: format!("{scheme}://{addr}"), ca_pem: None, shared, task })
    }

    /// Serves over HTTPS on `listener`, with the state `source` gives at each request (a simulated world's);
    /// while it gives none, connections are dropped as they come. Must be called within a Tokio runtime.
    pub fn serve_tls_from(listener: std::net::TcpListener, tls: &FakeTls, source: StateSource) -> io::Result<Self> {
        Self::serve_tls_with(listener, tls, source, None)
    }

    /// As [`FakeKube::serve_tls_from`], and each write is handed to `sink` (the world's), so that it
    /// lasts beyond the next read of the source.
    pub fn serve_tls_with(
        listener: std::net::TcpListener,
        tls: &FakeTls,
        source: StateSource,
        sink: Option<StateSink>,
    ) -> io::Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config()?));
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = TcpListener::from_std(listener)?;
        let state = source().unwrap_or_default();
        let shared = Arc::new(Shared {
            source: Some(source),
            sink,
            faults: Mutex::new(None),
            state: Mutex::new(state),
            requests: Mutex::new(Vec::new()),
            resource_version: Mutex::new(1000),
        });
        let task = tokio::spawn(accept_loop(listener, Some(acceptor), shared.clone()));
        Ok(FakeKube { url: format!("https://{addr}"), ca_pem: Some(tls.ca_pem.clone()), shared, task })
    }

    /// Whether it still serves (its runtime may have ended).
    pub fn is_serving(&self) -> bool {
        !self.task.is_finished()
    }

    /// The server URL (`http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client config for this server: its URL and, over HTTPS, its CA; no credentials.
    pub fn config(&self) -> ApiConfig {
        let config = ApiConfig::new(self.url.clone());
        match &self.ca_pem {
            Some(ca) => config.with_ca_pem(ca.clone()),
            None => config,
        }
    }

    /// [`Self::config`] with the state's required token, if any.
    pub fn authorized_config(&self) -> ApiConfig {
        let token = lock(&self.shared.state).required_token.clone();
        match token {
            Some(token) => self.config().with_credentials(Credentials::token(token)),
            None => self.config(),
        }
    }

    /// Changes what is served; later requests see the change, and objects get a new resourceVersion.
    pub fn update(&self, change: impl FnOnce(&mut FakeState)) {
        change(&mut lock(&self.shared.state));
        *lock(&self.shared.resource_version) += 1;
    }

    /// From now on, every request `hook` names fails as it says (after authentication and authorization,
    /// before anything is read or written): a `PATCH` that fails changes nothing.
    pub fn fail_requests(&self, hook: FaultHook) {
        *lock(&self.shared.faults) = Some(hook);
    }

    /// A copy of what is served now.
    pub fn state(&self) -> FakeState {
        lock(&self.shared.state).clone()
    }

    /// The requests served so far, as `"GET /api/v1/nodes"`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        if let Some(source) = &shared.source {
            match source() {
                Some(state) => *lock(&shared.state) = state,
                // Nothing serves this address now.
                None => continue,
            }
        }
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), shared, false).await,
                Some(acceptor) => {
                    // A failed handshake (the client did not trust us) just ends the connection.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let client_cert = stream.get_ref().1.peer_certificates().is_some_and(|certs| !certs.is_empty());
                    serve_connection(TokioIo::new(stream), shared, client_cert).await
                }
            }
        });
    }
}

async fn serve_connection<I>(io: I, shared: Arc<Shared>, client_cert: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(request, &shared, client_cert).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
}

async fn answer(mut request: Request<Incoming>, shared: &Shared, client_cert: bool) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt as _;
    let upgrade = upgrade_to_websocket(&mut request);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    lock(&shared.requests).push(format!("{} {}", parts.method, parts.uri));
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Some(fresh) = shared.source.as_ref().and_then(|source| source()) {
        *lock(&shared.state) = fresh;
    }
    let state = lock(&shared.state).clone();
    let resource_version = *lock(&shared.resource_version);

    let (status, body) = if let Some(prefix) =
        state.forbidden_paths.iter().find(|prefix| path.starts_with(prefix.as_str()))
    {
        let resource = prefix.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        (
            StatusCode::FORBIDDEN,
            status_json(
                403,
                "Forbidden",
                &format!("{resource} is forbidden: User \"testbed\" cannot list resource \"{resource}\" at the cluster scope"),
                Some(json!({"kind": resource})),
            ),
        )
    } else {
        let authorized = match &state.required_token {
            None => true,
            Some(token) => {
                let bearer = parts
                    .headers
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                client_cert || bearer == Some(token.as_str())
            }
        };
        let hook = lock(&shared.faults).clone();
        if !authorized {
            (StatusCode::UNAUTHORIZED, status_json(401, "Unauthorized", "Unauthorized", None))
        } else if let Some(failure) = hook.and_then(|fails| fails(parts.method.as_str(), &path)) {
            failure.answer()
        } else if let Some((namespace, name)) = port_forward_path(&path).filter(|_| parts.method == Method::GET) {
            match port_forward(&state, namespace, name, parts.uri.query().unwrap_or(""), upgrade) {
                Ok(switching) => return switching,
                Err(refused) => refused,
            }
        } else if parts.method == Method::GET {
            route(&path, parts.uri.query().unwrap_or(""), &state, resource_version)
        } else if parts.method == Method::PATCH || parts.method == Method::DELETE {
            let (status, answer, writes) = if parts.method == Method::PATCH {
                let content_type = parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                let query = parts.uri.query().unwrap_or("");
                patch(shared, &path, query, content_type, &body)
            } else {
                delete(shared, &path)
            };
            if let Some(sink) = &shared.sink {
                writes.iter().for_each(|write| sink(write));
            }
            (status, answer)
        } else {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                status_json(405, "MethodNotAllowed", "the fake API server only answers GET, PATCH and DELETE", None),
            )
        }
    };
    // A log is text; everything else the fake answers is JSON.
    let (content_type, body) = match body {
        Value::String(text) if status == StatusCode::OK => ("text/plain", text),
        other => ("application/json", other.to_string()),
    };
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header("Audit-Id", fake_uid("audit", &format!("{path}{resource_version}")))
        .header("Cache-Control", "no-cache, private")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// A WebSocket upgrade the request asks for: its key, the subprotocols it offers, and the upgraded
/// connection to come.
struct WebSocketUpgrade {
    key: String,
    protocols: String,
    on: hyper::upgrade::OnUpgrade,
}

fn upgrade_to_websocket(request: &mut Request<Incoming>) -> Option<WebSocketUpgrade> {
    let header = |name: hyper::header::HeaderName| {
        request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned).unwrap_or_default()
    };
    if !header(hyper::header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return None;
    }
    let key = header(hyper::header::SEC_WEBSOCKET_KEY);
    let protocols = header(hyper::header::SEC_WEBSOCKET_PROTOCOL);
    Some(WebSocketUpgrade { key, protocols, on: hyper::upgrade::on(request) })
}

/// `/api/v1/namespaces/<ns>/pods/<name>/portforward`: the pod's namespace and name.
fn port_forward_path(path: &str) -> Option<(&str, &str)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "namespaces", namespace, "pods", name, "portforward"] => Some((namespace, name)),
        _ => None,
    }
}

/// A port-forward to a pod: `101 Switching Protocols` and the forwarding served on the upgraded connection
/// ([`port_forward::serve`]), or the API server's refusal.
fn port_forward(
    state: &FakeState,
    namespace: &str,
    name: &str,
    query: &str,
    upgrade: Option<WebSocketUpgrade>,
) -> Result<Response<Full<Bytes>>, (StatusCode, Value)> {
    let bad = |message: &str| (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", message, None));
    let Some(pod) = state.pods.iter().find(|p| p.namespace == namespace && p.name == name) else {
        return Err(not_found("", "pods", name));
    };
    let Some(port) = port_forward::port_of(query) else {
        return Err(bad("at least one port must be specified"));
    };
    let Some(upgrade) = upgrade else {
        return Err(bad("Upgrade request required"));
    };
    if !upgrade.protocols.split(',').any(|p| p.trim() == port_forward::PROTOCOL) {
        return Err(bad(&format!("unable to upgrade: the client offers none of [{}]", port_forward::PROTOCOL)));
    }
    if pod.ip.is_none() {
        return Err(bad(&format!("pod {name} does not have a host assigned")));
    }
    let reached = port_forward::reaches(pod, port);
    tokio::spawn(port_forward::serve(upgrade.on, port, reached));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(upgrade.key.as_bytes());
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(hyper::header::SEC_WEBSOCKET_PROTOCOL, port_forward::PROTOCOL)
        .body(Full::new(Bytes::new()))
        .expect("a valid response"))
}

/// RFC 7386: a JSON merge patch applied to `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().expect("an object");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

/// The answer to one PATCH: the object patched in the state, the patched object, and what changed.
fn patch(
    shared: &Shared,
    path: &str,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value, Vec<FakeWrite>) {
    let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    let answer = |result: Result<(Value, FakeWrite), (StatusCode, Value)>| match result {
        Ok((object, write)) => (StatusCode::OK, object, vec![write]),
        Err((status, answer)) => (status, answer, Vec::new()),
    };
    let answers = |result: Result<(Value, Vec<FakeWrite>), (StatusCode, Value)>| match result {
        Ok((object, writes)) => (StatusCode::OK, object, writes),
        Err((status, answer)) => (status, answer, Vec::new()),
    };
    if media == Some("application/strategic-merge-patch+json") {
        return answer(container_command_patch(shared, path, body));
    }
    if media == Some("application/apply-patch+yaml") {
        // As kube-apiserver, before anything else: an apply names its field manager.
        let Some(manager) = store::field_manager(query) else {
            let (status, answer) = store::field_manager_required();
            return (status, answer, Vec::new());
        };
        if path.starts_with("/apis/policy.karmada.io/v1alpha1/clustertaintpolicies/") {
            return answer(server_side_apply(shared, path, body));
        }
        let mut state = lock(&shared.state);
        let target = store::parse(path, state.serves_karmada).filter(|t| t.name.is_some() && t.kind.writable);
        let Some(target) = target else {
            let (status, answer) = store::not_writable(store::parse(path, state.serves_karmada).as_ref());
            return (status, answer, Vec::new());
        };
        if typed_object_exists(&state, path) {
            let (status, answer) = typed_not_writable("applies");
            return (status, answer, Vec::new());
        }
        let mut rv = lock(&shared.resource_version);
        return match store::apply(&mut state, &target, &manager, body, *rv + 1) {
            Ok(written) => {
                if !written.writes.is_empty() {
                    *rv += 1;
                }
                (StatusCode::OK, written.answer, written.writes)
            }
            Err((status, answer)) => (status, answer, Vec::new()),
        };
    }
    answers(patch_object(shared, path, content_type, body))
}

/// The answer to one DELETE: an object of the store deleted.
fn delete(shared: &Shared, path: &str) -> (StatusCode, Value, Vec<FakeWrite>) {
    let mut state = lock(&shared.state);
    let parsed = store::parse(path, state.serves_karmada);
    let Some(target) = parsed.filter(|t| t.name.is_some() && t.kind.writable) else {
        let (status, answer) = store::not_writable(parsed.as_ref());
        return (status, answer, Vec::new());
    };
    if !state.objects.contains_key(path.trim_end_matches('/')) && typed_object_exists(&state, path) {
        let (status, answer) = typed_not_writable("deletes");
        return (status, answer, Vec::new());
    }
    match store::delete(&mut state, &target) {
        Ok(written) => {
            *lock(&shared.resource_version) += 1;
            (StatusCode::OK, written.answer, written.writes)
        }
        Err((status, answer)) => (status, answer, Vec::new()),
    }
}

/// The answer to an apply or delete of an object the typed state models (which the fake changes only as it
/// models: labels, a Cluster's endpoint, a container's command).
fn typed_not_writable(verb: &str) -> (StatusCode, Value) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        status_json(
            405,
            "MethodNotAllowed",
            &format!("the fake API server {verb} only the objects of its store, not those its typed state models"),
            None,
        ),
    )
}

/// Whether `path` is a namespace, Service or Deployment the typed state models.
fn typed_object_exists(state: &FakeState, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "namespaces", name] => state.namespaces.iter().any(|n| n.name == *name),
        ["api", "v1", "namespaces", namespace, "services", name] => {
            state.services.iter().any(|s| s.namespace == *namespace && s.name == *name)
        }
        ["apis", "apps", "v1", "namespaces", namespace, "deployments", name] => {
            state.deployments.iter().any(|d| d.namespace == *namespace && d.name == *name)
        }
        _ => false,
    }
}

fn patch_object(
    shared: &Shared,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Value, Vec<FakeWrite>), (StatusCode, Value)> {
    if content_type.map(|c| c.split(';').next().unwrap_or("").trim()) != Some("application/merge-patch+json") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            status_json(
                415,
                "UnsupportedMediaType",
                &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (the fake takes only application/merge-patch+json, got {})", content_type.unwrap_or("none")),
                None,
            ),
        ));
    }
    let patch_doc: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                status_json(400, "BadRequest", "error decoding patch: invalid JSON object", None),
            ))
        }
    };
    let segments: Vec<String> = path.trim_matches('/').split('/').map(str::to_string).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut state = lock(&shared.state);
    let resource_version = {
        let mut rv = lock(&shared.resource_version);
        *rv += 1;
        *rv
    };
    match segments.as_slice() {
        ["api", "v1", "namespaces", name] if state.namespace_mut(name).is_some() => {
            let Some(ns) = state.namespace_mut(name) else {
                return Err(not_found("", "namespaces", name));
            };
            let mut object = namespace_json(ns, resource_version);
            merge_patch(&mut object, &patch_doc);
            let mut labels = string_map(object["metadata"].get("labels"));
            labels.remove("kubernetes.io/metadata.name");
            ns.labels = labels.clone();
            Ok((namespace_json(ns, resource_version), vec![FakeWrite::Namespace { name: (*name).to_owned(), labels }]))
        }
        ["apis", "cluster.karmada.io", "v1alpha1", "clusters", name] if state.serves_karmada => {
            let Some(cluster) = state.cluster_mut(name) else {
                return Err(not_found("cluster.karmada.io", "clusters", name));
            };
            let mut object = cluster_json(cluster, resource_version);
            merge_patch(&mut object, &patch_doc);
            cluster.labels = string_map(object["metadata"].get("labels"));
            cluster.api_endpoint = object["spec"].get("apiEndpoint").and_then(Value::as_str).unwrap_or("").to_string();
            cluster.taints = FakeTaint::from_spec(&object["spec"]);
            let write = FakeWrite::Cluster {
                name: (*name).to_owned(),
                labels: cluster.labels.clone(),
                api_endpoint: cluster.api_endpoint.clone(),
                taints: cluster.taints.clone(),
            };
            Ok((cluster_json(cluster, resource_version), vec![write]))
        }
        _ => {
            let parsed = store::parse(path, state.serves_karmada);
            let Some(target) = parsed.filter(|t| t.name.is_some() && t.kind.writable) else {
                return Err(store::not_writable(parsed.as_ref()));
            };
            let written = store::merge_patch_stored(&mut state, &target, &patch_doc, resource_version)?;
            Ok((written.answer, written.writes))
        }
    }
}

/// A strategic merge patch on a Deployment, of what the fake models: its container's `command` (the
/// container found by name, as a strategic merge patch merges containers).
fn container_command_patch(
    shared: &Shared,
    path: &str,
    body: &[u8],
) -> Result<(Value, FakeWrite), (StatusCode, Value)> {
    let bad = |message: &str| (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", message, None));
    let patch: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("error decoding patch: {e}")))?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["apis", "apps", "v1", "namespaces", namespace, "deployments", name] = segments.as_slice() else {
        return Err(unknown_path());
    };
    let mut state = lock(&shared.state);
    let resource_version = {
        let mut rv = lock(&shared.resource_version);
        *rv += 1;
        *rv
    };
    let Some(d) = state.deployment_mut(namespace, name) else {
        return Err(not_found("apps", "deployments", name));
    };
    let containers = patch["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    for c in containers {
        if c["name"] != d.name.as_str() {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                status_json(
                    422,
                    "Invalid",
                    "the fake's Deployments have one container, named after the Deployment",
                    None,
                ),
            ));
        }
        if let Some(command) = c["command"].as_array() {
            d.command = command.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect();
        }
    }
    let write = FakeWrite::DeploymentCommand {
        namespace: (*namespace).to_owned(),
        name: (*name).to_owned(),
        command: d.command.clone(),
    };
    Ok((deployment_json(d, resource_version), write))
}

/// Server-side apply (`application/apply-patch+yaml`) of a ClusterTaintPolicy, which the state models: the
/// object is created or its labels and spec are set to the applied ones. As a real API server, the applied
/// object's kind and name must be the path's.
fn server_side_apply(shared: &Shared, path: &str, body: &[u8]) -> Result<(Value, FakeWrite), (StatusCode, Value)> {
    let bad = |message: &str| (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", message, None));
    // The patch is YAML; kube sends JSON, which is YAML too (the fake reads JSON only).
    let applied: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("error decoding YAML: {e}")))?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut state = lock(&shared.state);
    let resource_version = {
        let mut rv = lock(&shared.resource_version);
        *rv += 1;
        *rv
    };
    match segments.as_slice() {
        ["apis", "policy.karmada.io", "v1alpha1", "clustertaintpolicies", name] if state.serves_karmada => {
            if applied["kind"] != "ClusterTaintPolicy" || applied["metadata"]["name"] != *name {
                return Err(bad(
                    "the name of the object does not match the name on the URL, or its kind is not ClusterTaintPolicy",
                ));
            }
            let object = json!({
                "labels": applied["metadata"].get("labels").cloned().unwrap_or(json!({})),
                "spec": applied.get("spec").cloned().unwrap_or(json!({})),
            });
            state.taint_policies.insert((*name).to_owned(), object.clone());
            let answer = taint_policy_json(name, &object, resource_version);
            Ok((answer, FakeWrite::TaintPolicy { name: (*name).to_owned(), object }))
        }
        _ => Err(unknown_path()),
    }
}

// ---------------------------------------------------------------------------------------------------
// Endpoints that misbehave
// ---------------------------------------------------------------------------------------------------

/// A `http://127.0.0.1:PORT` address where nothing listens, held for as long as this lives: the port is
/// bound and never listened on, so a connection is refused and no other server (another test's, running at
/// the same time) can be given the port. (Binding and releasing it raced with them.)
pub struct RefusingAddress {
    _bound: tokio::net::TcpSocket,
    url: String,
}

impl RefusingAddress {
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A [`RefusingAddress`] on loopback.
pub async fn unused_url() -> io::Result<RefusingAddress> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = socket.local_addr()?;
    Ok(RefusingAddress { _bound: socket, url: format!("http://{addr}") })
}

/// A listener that accepts every connection and closes it at once, as an LXD proxy device does when
/// nothing listens inside its container. Stops when dropped.
pub struct DroppingListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DroppingListener {
    /// Starts one on `127.0.0.1:<ephemeral port>`.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
            }
        });
        Ok(DroppingListener { addr, task })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DroppingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener that accepts every connection and never answers (a hung server, or a firewall that lets
/// the handshake through and then drops everything). Stops when dropped.
pub struct SilentListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentListener {
    /// Starts one on `127.0.0.1:<ephemeral port>`.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    held.push(stream);
                }
            }
        });
        Ok(SilentListener { addr, task })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
