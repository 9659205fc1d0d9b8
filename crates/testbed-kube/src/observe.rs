//! The observations: nodes, the Karmada control plane, Karmada `Cluster` objects.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Service};
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, Object};
use serde::Deserialize;

use crate::config::KubeClient;
use crate::error::KubeObserveError;

/// The namespace of the Karmada control plane on the host cluster.
pub const KARMADA_NAMESPACE: &str = "karmada-system";

/// The Deployments `karmadactl init` creates in [`KARMADA_NAMESPACE`].
pub const CONTROL_PLANE_DEPLOYMENTS: [&str; 6] = [
    "karmada-apiserver",
    "karmada-aggregated-apiserver",
    "karmada-controller-manager",
    "karmada-scheduler",
    "karmada-webhook",
    "kube-controller-manager",
];

/// The API version of Karmada's `Cluster`.
pub const CLUSTER_API_VERSION: &str = "cluster.karmada.io/v1alpha1";

/// A condition's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`, or anything else.
    Unknown,
}

impl ConditionStatus {
    pub(crate) fn parse(status: &str) -> Self {
        match status {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        })
    }
}

/// One condition of an object (`status.conditions[type=...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// The machine-readable reason (`KubeletReady`, `ClusterNotReachable`, ...).
    pub reason: Option<String>,
    /// The human-readable message.
    pub message: Option<String>,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: Option<String>,
}

impl Condition {
    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// `"(reason: message)"`, `"(reason)"`, `"(message)"` or `""`.
    fn explanation(&self) -> String {
        match (non_empty(&self.reason), non_empty(&self.message)) {
            (Some(reason), Some(message)) => format!(" ({reason}: {message})"),
            (Some(only), None) | (None, Some(only)) => format!(" ({only})"),
            (None, None) => String::new(),
        }
    }
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

/// Writes `Ready`, `NotReady (reason: message)`, `Unknown (...)` or `no Ready condition yet`.
fn write_ready(f: &mut fmt::Formatter<'_>, ready: Option<&Condition>) -> fmt::Result {
    match ready {
        None => f.write_str("no Ready condition yet"),
        Some(c) => {
            let word = match c.status {
                ConditionStatus::True => "Ready",
                ConditionStatus::False => "NotReady",
                ConditionStatus::Unknown => "Unknown",
            };
            // The reason of a Ready cluster or node says nothing new: keep the line short.
            if c.is_true() {
                f.write_str(word)
            } else {
                write!(f, "{word}{}", c.explanation())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------------

/// Every node of a cluster, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodesReport {
    /// The nodes.
    pub nodes: Vec<NodeReport>,
}

/// One node and its `Ready` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The node's name.
    pub name: String,
    /// Its `Ready` condition, `None` while the kubelet has not posted one.
    pub ready: Option<Condition>,
    /// The kubelet's version (`status.nodeInfo.kubeletVersion`).
    pub kubelet_version: Option<String>,
}

impl NodeReport {
    /// Whether `Ready` is `True`.
    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(Condition::is_true)
    }
}

impl NodesReport {
    /// Whether there is at least one node and every node is Ready.
    pub fn all_ready(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(NodeReport::is_ready)
    }

    /// The names of the nodes that are not Ready.
    pub fn not_ready(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| !n.is_ready()).map(|n| n.name.as_str()).collect()
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl fmt::Display for NodeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: ", self.name)?;
        write_ready(f, self.ready.as_ref())?;
        if let Some(version) = &self.kubelet_version {
            write!(f, ", kubelet {version}")?;
        }
        Ok(())
    }
}

impl fmt::Display for NodesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes.is_empty() {
            return f.write_str("no nodes");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{node}")?;
        }
        Ok(())
    }
}

/// Every node and its `Ready` condition (`GET /api/v1/nodes`).
pub async fn nodes_ready(client: &KubeClient) -> Result<NodesReport, KubeObserveError> {
    let api: Api<Node> = Api::all(client.kube().clone());
    let list = api.list(&ListParams::default()).await.map_err(|e| client.error(e, "list nodes"))?;
    let mut nodes: Vec<NodeReport> = list
        .items
        .into_iter()
        .map(|node| {
            let status = node.status.unwrap_or_default();
            let ready =
                status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").map(|c| Condition {
                    status: ConditionStatus::parse(&c.status),
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time.map(|t| t.0.to_string()),
                });
            NodeReport {
                name: node.metadata.name.unwrap_or_default(),
                ready,
                kubelet_version: status.node_info.map(|info| info.kubelet_version).filter(|v| !v.is_empty()),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(NodesReport { nodes })
}

// ---------------------------------------------------------------------------------------------------
// Control plane
// ---------------------------------------------------------------------------------------------------

/// The Karmada control-plane Deployments, in the order of [`CONTROL_PLANE_DEPLOYMENTS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneReport {
    /// One entry per expected Deployment.
    pub components: Vec<ComponentReport>,
}

/// One control-plane Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    /// The Deployment's name.
    pub name: String,
    /// Whether it exists.
    pub present: bool,
    /// Whether it is available: it wants at least one replica, and either `status.availableReplicas >=
    /// spec.replicas` or its `Available` condition is `True`.
    pub available: bool,
    /// `spec.replicas` (1 when unset), if present.
    pub desired_replicas: Option<i32>,
    /// `status.availableReplicas` (0 when unset), if present.
    pub available_replicas: Option<i32>,
    /// The `Available` condition, if any.
    pub available_condition: Option<Condition>,
    /// The images of its Pod template's containers, in order (empty when absent).
    pub images: Vec<String>,
    /// Its first container's `command` followed by its `args` (empty when absent).
    pub command: Vec<String>,
}

impl ControlPlaneReport {
    /// Whether every component is present and available.
    pub fn is_healthy(&self) -> bool {
        self.components.iter().all(|c| c.present && c.available)
    }

    /// The components that do not exist.
    pub fn missing(&self) -> Vec<&str> {
        self.components.iter().filter(|c| !c.present).map(|c| c.name.as_str()).collect()
    }

    /// The components that exist but are not available.
    pub fn unavailable(&self) -> Vec<&str> {
        self.components.iter().filter(|c| c.present && !c.available).map(|c| c.name.as_str()).collect()
    }

    /// Whether nothing of the control plane exists (Karmada is not installed).
    pub fn is_absent(&self) -> bool {
        self.components.iter().all(|c| !c.present)
    }

    /// The component called `name`.
    pub fn get(&self, name: &str) -> Option<&ComponentReport> {
        self.components.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for ComponentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        if !self.present {
            return f.write_str("missing");
        }
        let desired = self.desired_replicas.unwrap_or(1);
        let available = self.available_replicas.unwrap_or(0);
        if self.available {
            return write!(f, "available ({available}/{desired})");
        }
        write!(f, "not available ({available}/{desired} replicas available")?;
        match &self.available_condition {
            Some(c) => write!(f, "; Available={}{})", c.status, c.explanation()),
            None => f.write_str(")"),
        }
    }
}

impl fmt::Display for ControlPlaneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, component) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{component}")?;
        }
        Ok(())
    }
}

fn component(name: &str, deployment: Option<&Deployment>) -> ComponentReport {
    let Some(deployment) = deployment else {
        return ComponentReport {
            name: name.to_string(),
            present: false,
            available: false,
            desired_replicas: None,
            available_replicas: None,
            available_condition: None,
            images: Vec::new(),
            command: Vec::new(),
        };
    };
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = deployment.status.as_ref();
    let available_replicas = status.and_then(|s| s.available_replicas).unwrap_or(0);
    let available_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Available"))
        .map(|c| Condition {
            status: ConditionStatus::parse(&c.status),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.as_ref().map(|t| t.0.to_string()),
        });
    let available =
        desired > 0 && (available_replicas >= desired || available_condition.as_ref().is_some_and(Condition::is_true));
    let images = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|pod| pod.containers.iter().filter_map(|c| c.image.clone()).collect())
        .unwrap_or_default();
    let command = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|pod| pod.containers.first())
        .map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()).cloned().collect())
        .unwrap_or_default();
    ComponentReport {
        name: name.to_string(),
        present: true,
        available,
        desired_replicas: Some(desired),
        available_replicas: Some(available_replicas),
        available_condition,
        images,
        command,
    }
}

/// The Karmada control-plane Deployments in `karmada-system` on the host cluster
/// (`GET /apis/apps/v1/namespaces/karmada-system/deployments`).
pub async fn control_plane(client: &KubeClient) -> Result<ControlPlaneReport, KubeObserveError> {
    let api: Api<Deployment> = Api::namespaced(client.kube().clone(), KARMADA_NAMESPACE);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| client.error(e, "list the Deployments in karmada-system"))?;
    let components = CONTROL_PLANE_DEPLOYMENTS
        .iter()
        .map(|name| {
            let deployment = list.items.iter().find(|d| d.metadata.name.as_deref() == Some(name));
            component(name, deployment)
        })
        .collect();
    Ok(ControlPlaneReport { components })
}

// ---------------------------------------------------------------------------------------------------
// Karmada clusters
// ---------------------------------------------------------------------------------------------------

/// How Karmada talks to a member (`spec.syncMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMode {
    /// The control plane dials the member (`karmadactl join`).
    Push,
    /// An agent on the member dials the control plane (`karmadactl register`).
    Pull,
    /// Something this version does not know.
    Other(String),
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncMode::Push => f.write_str("Push"),
            SyncMode::Pull => f.write_str("Pull"),
            SyncMode::Other(other) => f.write_str(other),
        }
    }
}

/// One taint on a cluster (`spec.taints[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTaint {
    /// The key.
    pub key: String,
    /// The value, if any.
    pub value: Option<String>,
    /// `NoSchedule`, `NoExecute`, ...
    pub effect: String,
    /// `timeAdded` (RFC 3339), which Karmada's API server stamps on a NoExecute taint written without one
    /// and its taint manager counts a toleration from.
    pub time_added: Option<String>,
}

impl ClusterTaint {
    /// A taint to write: the server stamps its `timeAdded`.
    pub fn new(key: &str, value: Option<&str>, effect: &str) -> ClusterTaint {
        ClusterTaint {
            key: key.to_owned(),
            value: value.map(str::to_owned),
            effect: effect.to_owned(),
            time_added: None,
        }
    }

    /// Whether `other` is the same taint: the same key, value and effect (whenever it was added).
    pub fn same(&self, other: &ClusterTaint) -> bool {
        self.key == other.key && self.value == other.value && self.effect == other.effect
    }
}

impl fmt::Display for ClusterTaint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}:{}", self.key, self.effect),
            None => write!(f, "{}:{}", self.key, self.effect),
        }
    }
}

/// A Karmada `Cluster` as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The cluster's (member's) name.
    pub name: String,
    /// The object's uid.
    pub uid: Option<String>,
    /// `spec.syncMode`.
    pub sync_mode: Option<SyncMode>,
    /// `spec.apiEndpoint`: where the control plane dials the member (push mode).
    pub api_endpoint: Option<String>,
    /// `spec.id`: the member's `kube-system` namespace uid.
    pub id: Option<String>,
    /// The object's labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<ClusterTaint>,
    /// The `Ready` condition, `None` until Karmada has posted one.
    pub ready: Option<Condition>,
    /// `status.kubernetesVersion`.
    pub kubernetes_version: Option<String>,
}

impl ClusterStatus {
    /// Whether `Ready` is `True`.
    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(Condition::is_true)
    }

    /// The reason of the `Ready` condition (`ClusterReady`, `ClusterNotReady`, `ClusterNotReachable`).
    pub fn ready_reason(&self) -> Option<&str> {
        self.ready.as_ref().and_then(|c| c.reason.as_deref())
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {}: ", self.name)?;
        write_ready(f, self.ready.as_ref())?;
        if let Some(mode) = &self.sync_mode {
            write!(f, ", {mode} mode")?;
        }
        if let Some(endpoint) = &self.api_endpoint {
            write!(f, ", endpoint {endpoint}")?;
        }
        if let Some(version) = &self.kubernetes_version {
            write!(f, ", Kubernetes {version}")?;
        }
        for taint in &self.taints {
            write!(f, ", taint {taint}")?;
        }
        Ok(())
    }
}

/// One line for a cluster that was looked up by name: its status, or that it is not registered.
pub fn describe_cluster(name: &str, observed: Option<&ClusterStatus>) -> String {
    match observed {
        Some(cluster) => cluster.to_string(),
        None => format!("cluster {name}: not registered with Karmada"),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterSpecWire {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    sync_mode: Option<String>,
    #[serde(default)]
    api_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) taints: Vec<TaintWire>,
}

/// A taint as the API carries it (`timeAdded` kept, so that a taint written back keeps its time).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaintWire {
    pub(crate) key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<String>,
    pub(crate) effect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time_added: Option<String>,
}

impl TaintWire {
    pub(crate) fn taint(&self) -> ClusterTaint {
        ClusterTaint {
            key: self.key.clone(),
            value: self.value.clone().filter(|v| !v.is_empty()),
            effect: self.effect.clone(),
            time_added: self.time_added.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterStatusWire {
    #[serde(default)]
    kubernetes_version: Option<String>,
    #[serde(default)]
    conditions: Vec<ConditionWire>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConditionWire {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    last_transition_time: Option<String>,
}

pub(crate) type ClusterObject = Object<ClusterSpecWire, ClusterStatusWire>;

pub(crate) fn cluster_resource() -> ApiResource {
    ApiResource {
        group: "cluster.karmada.io".to_string(),
        version: "v1alpha1".to_string(),
        api_version: CLUSTER_API_VERSION.to_string(),
        kind: "Cluster".to_string(),
        plural: "clusters".to_string(),
    }
}

fn cluster_api(client: &KubeClient) -> Api<ClusterObject> {
    Api::all_with(client.kube().clone(), &cluster_resource())
}

pub(crate) fn cluster_status(object: ClusterObject) -> ClusterStatus {
    let status = object.status.unwrap_or_default();
    ClusterStatus {
        name: object.metadata.name.unwrap_or_default(),
        uid: object.metadata.uid,
        sync_mode: object.spec.sync_mode.map(|mode| match mode.as_str() {
            "Push" => SyncMode::Push,
            "Pull" => SyncMode::Pull,
            _ => SyncMode::Other(mode),
        }),
        api_endpoint: object.spec.api_endpoint.filter(|e| !e.is_empty()),
        id: object.spec.id.filter(|id| !id.is_empty()),
        labels: object.metadata.labels.unwrap_or_default(),
        taints: object.spec.taints.iter().map(TaintWire::taint).collect(),
        ready: status.conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| Condition {
            status: ConditionStatus::parse(&c.status),
            reason: c.reason,
            message: c.message,
            last_transition_time: c.last_transition_time,
        }),
        kubernetes_version: status.kubernetes_version.filter(|v| !v.is_empty()),
    }
}

pub(crate) fn not_served(client: &KubeClient) -> KubeObserveError {
    KubeObserveError::NotServed {
        server: client.server().to_string(),
        api: format!("{CLUSTER_API_VERSION} clusters"),
        hint: "Karmada's Cluster objects live on the Karmada API server, not on the host cluster: use the Karmada kubeconfig (karmada-apiserver.config in karmadactl init's data directory), and check that karmada-aggregated-apiserver is available".to_string(),
    }
}

/// The Karmada `Cluster` called `name` (`GET /apis/cluster.karmada.io/v1alpha1/clusters/<name>` on the
/// Karmada API server); `None` when no such cluster is registered.
///
/// A server that does not serve `cluster.karmada.io` at all (the host cluster's API instead of Karmada's)
/// is an error ([`KubeObserveError::NotServed`]), not a missing cluster.
pub async fn cluster(client: &KubeClient, name: &str) -> Result<Option<ClusterStatus>, KubeObserveError> {
    match cluster_api(client).get(name).await {
        Ok(object) => Ok(Some(cluster_status(object))),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            // A missing object names itself in the details; a path the server does not know does not.
            let names_it = status.details.as_ref().is_some_and(|d| d.name == name)
                || status.message.contains(&format!("\"{name}\" not found"));
            if names_it {
                Ok(None)
            } else {
                Err(not_served(client))
            }
        }
        Err(e) => Err(client.error(e, &format!("get Karmada cluster {name}"))),
    }
}

/// Every Karmada `Cluster`, sorted by name (`GET /apis/cluster.karmada.io/v1alpha1/clusters`).
pub async fn clusters(client: &KubeClient) -> Result<Vec<ClusterStatus>, KubeObserveError> {
    match cluster_api(client).list(&ListParams::default()).await {
        Ok(list) => {
            let mut clusters: Vec<ClusterStatus> = list.items.into_iter().map(cluster_status).collect();
            clusters.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(clusters)
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Err(not_served(client)),
        Err(e) => Err(client.error(e, "list Karmada clusters")),
    }
}

/// The API server's version (`GET /version`), e.g. `v1.32.3`.
pub async fn server_version(client: &KubeClient) -> Result<String, KubeObserveError> {
    let info = client.kube().apiserver_version().await.map_err(|e| client.error(e, "read its version"))?;
    Ok(info.git_version)
}

// ---------------------------------------------------------------------------------------------------
// Namespaces and Services
// ---------------------------------------------------------------------------------------------------

/// The labels of the namespace called `name` (`GET /api/v1/namespaces/<name>`); `None` when it does not
/// exist.
pub async fn namespace_labels(
    client: &KubeClient,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, KubeObserveError> {
    let api: Api<Namespace> = Api::all(client.kube().clone());
    match api.get_opt(name).await {
        Ok(found) => Ok(found.map(|ns| ns.metadata.labels.unwrap_or_default())),
        Err(e) => Err(client.error(e, &format!("get namespace {name}"))),
    }
}

/// The node ports of the Service `namespace/name` (`GET /api/v1/namespaces/<ns>/services/<name>`), in the
/// order of its ports; `None` when the Service does not exist.
pub async fn service_node_ports(
    client: &KubeClient,
    namespace: &str,
    name: &str,
) -> Result<Option<Vec<i32>>, KubeObserveError> {
    let api: Api<Service> = Api::namespaced(client.kube().clone(), namespace);
    match api.get_opt(name).await {
        Ok(found) => Ok(found.map(|svc| {
            svc.spec.and_then(|s| s.ports).unwrap_or_default().into_iter().filter_map(|p| p.node_port).collect()
        })),
        Err(e) => Err(client.error(e, &format!("get service {namespace}/{name}"))),
    }
}

// ---------------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------------

/// One pod, as its status says: where it is (for a proxy that follows it) and why its containers wait (for a
/// workload Karmada reports unhealthy: Karmada's `aggregatedStatus` has no reason, the pod's status has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    /// The pod's name.
    pub name: String,
    /// `status.podIP`, once the pod has one.
    pub ip: Option<String>,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`), once set.
    pub phase: Option<String>,
    /// Its containers that wait (init containers first), with why.
    pub waiting: Vec<ContainerWaiting>,
}

/// A container that waits: `state.waiting` of its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerWaiting {
    pub container: String,
    /// One of the pod's init containers.
    pub init: bool,
    /// `ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`, `ContainerCreating`, ...
    pub reason: String,
    /// The kubelet's message, when it gave one.
    pub message: Option<String>,
}

/// The pods in `namespace` that `label_selector` matches (`GET /api/v1/namespaces/<ns>/pods?labelSelector=`),
/// sorted by name. An empty selector matches every pod.
pub async fn pods(
    client: &KubeClient,
    namespace: &str,
    label_selector: &str,
) -> Result<Vec<PodReport>, KubeObserveError> {
    let api: Api<Pod> = Api::namespaced(client.kube().clone(), namespace);
    let params =
        if label_selector.is_empty() { ListParams::default() } else { ListParams::default().labels(label_selector) };
    let list = api
        .list(&params)
        .await
        .map_err(|e| client.error(e, &format!("list the pods in {namespace} matching {label_selector:?}")))?;
    let mut pods: Vec<PodReport> = list.items.into_iter().map(pod_report).collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pods)
}

/// A pod as [`PodReport`] says it.
fn pod_report(pod: Pod) -> PodReport {
    let status = pod.status.unwrap_or_default();
    let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
    let containers = [(status.init_container_statuses, true), (status.container_statuses, false)];
    let waiting = containers
        .into_iter()
        .flat_map(|(statuses, init)| statuses.unwrap_or_default().into_iter().map(move |c| (c, init)))
        .filter_map(|(c, init)| {
            let w = c.state?.waiting?;
            Some(ContainerWaiting {
                container: c.name,
                init,
                reason: w.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "Waiting".into()),
                message: w.message.filter(|m| !m.is_empty()),
            })
        })
        .collect();
    PodReport {
        name: pod.metadata.name.unwrap_or_default(),
        ip: status.pod_ip.filter(|ip| !ip.is_empty()),
        ready,
        phase: status.phase.filter(|p| !p.is_empty()),
        waiting,
    }
}

/// Every pod of the cluster (`GET /api/v1/pods`), with its namespace, sorted by namespace and name: what
/// `kubectl get pods -A` lists.
pub async fn pods_everywhere(client: &KubeClient) -> Result<Vec<(String, PodReport)>, KubeObserveError> {
    let api: Api<Pod> = Api::all(client.kube().clone());
    let list =
        api.list(&ListParams::default()).await.map_err(|e| client.error(e, "list the pods of every namespace"))?;
    let mut pods: Vec<(String, PodReport)> = list
        .items
        .into_iter()
        .map(|pod| (pod.metadata.namespace.clone().unwrap_or_default(), pod_report(pod)))
        .collect();
    pods.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    Ok(pods)
}

/// The last `lines` lines the previous run of `container` in pod `name` wrote (`kubectl logs --previous
/// --tail N`): why a container in a crash loop exits.
pub async fn previous_log(
    client: &KubeClient,
    namespace: &str,
    name: &str,
    container: &str,
    lines: i64,
) -> Result<String, KubeObserveError> {
    let api: Api<Pod> = Api::namespaced(client.kube().clone(), namespace);
    let params = kube::api::LogParams {
        container: Some(container.to_owned()),
        previous: true,
        tail_lines: Some(lines),
        ..Default::default()
    };
    api.logs(name, &params)
        .await
        .map_err(|e| client.error(e, &format!("read the previous log of {container} in {namespace}/{name}")))
}

/// The TCP ports pod `name`'s containers declare (`spec.containers[].ports[].containerPort`, protocol TCP
/// or unset), sorted and each once. A declaration says nothing of where the application listens; it is what
/// the pod's author meant it to.
pub async fn declared_ports(client: &KubeClient, namespace: &str, name: &str) -> Result<Vec<u16>, KubeObserveError> {
    let api: Api<Pod> = Api::namespaced(client.kube().clone(), namespace);
    let pod = api.get(name).await.map_err(|e| client.error(e, &format!("read pod {namespace}/{name}")))?;
    let mut ports: Vec<u16> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().is_none_or(|proto| proto == "TCP"))
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// One event about an object, as `kubectl describe` lists it under `Events:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReport {
    /// `Normal` or `Warning`.
    pub type_: String,
    /// The reporter's reason (`Pulling`, `Failed`, `BackOff`, `FailedScheduling`, ...).
    pub reason: String,
    /// What happened, in the reporter's words.
    pub message: String,
    /// How many times it happened (`count`, at least 1).
    pub count: i32,
}

/// The events about pod `name` in `namespace` (`GET /api/v1/namespaces/<ns>/events`, those whose
/// `involvedObject` is that pod), oldest first.
pub async fn pod_events(
    client: &KubeClient,
    namespace: &str,
    name: &str,
) -> Result<Vec<EventReport>, KubeObserveError> {
    let api: Api<Event> = Api::namespaced(client.kube().clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| client.error(e, &format!("list the events in {namespace}")))?;
    let mut events: Vec<(Option<String>, EventReport)> = list
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod") && e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            let when = e.last_timestamp.as_ref().or(e.first_timestamp.as_ref()).map(|t| t.0.to_string());
            let report = EventReport {
                type_: e.type_.unwrap_or_else(|| "Normal".into()),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
                count: e.count.unwrap_or(1).max(1),
            };
            (when, report)
        })
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(events.into_iter().map(|(_, e)| e).collect())
}
