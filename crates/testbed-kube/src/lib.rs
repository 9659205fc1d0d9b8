//! Observation of Kubernetes and Karmada through their APIs.
//!
//! [`KubeClient`] is built from a kubeconfig-like [`ApiConfig`] (server URL, CA certificate, a token or a
//! client certificate, `insecure-skip-tls-verify`). The observation functions read what testbed needs to
//! know and nothing more:
//!
//! - [`nodes_ready`]: every node and its `Ready` condition;
//! - [`control_plane`]: the Karmada control-plane Deployments in `karmada-system` on the host cluster;
//! - [`cluster`] and [`clusters`]: Karmada `Cluster` objects (`cluster.karmada.io/v1alpha1`) on the Karmada
//!   API server;
//! - [`server_version`]: the API server's `/version`;
//! - [`namespace_labels`] and [`service_node_ports`]: a namespace's labels, a Service's node ports;
//! - [`pods`]: the pods a label selector matches in a namespace, with their pod IP and readiness;
//!   [`pods_everywhere`]: every pod of the cluster; [`pod_events`]: the events about one pod;
//!   [`previous_log`]: the last lines a crashed container wrote;
//! - [`tls_handshake`]: whether a TLS server answers at an address at all (before any credential is sent);
//! - [`pod_answers`]: whether a pod answers a request on a port through the API's port-forward
//!   (`kubectl port-forward`), past everything between the host and the pod's address.
//!
//! Writes (module `write`), each one JSON merge patch: [`set_namespace_label`], [`set_cluster_label`] (the
//! ownership labels testbed puts on what it made), [`set_cluster_api_endpoint`], and [`add_cluster_taint`]
//! and [`remove_cluster_taint`] (a drill's taint on a Cluster).
//!
//! Objects of any kind (module `objects`), by their [`ObjectRef`]: [`apply_object`] (server-side apply, field
//! manager `testbed`), [`get_object`], [`list_objects`] (by label selector, every namespace) and
//! [`delete_object`]; and Karmada's `ResourceBinding`s ([`resource_bindings`]), which say where Karmada placed
//! each object and whether it is healthy there.
//!
//! Pods ([`pods`]): where each is, whether it is Ready and why its containers wait, as the kubelet says: what
//! a proxy that follows a pod needs, and why a workload Karmada reports unhealthy on a member is.
//!
//! Failures are [`KubeObserveError`]s that tell an unreachable API, a TLS failure, rejected credentials and
//! the rest apart, name the server, and never carry a credential.
//!
//! With the `fake` feature, [`fake`] is an in-process fake Kubernetes API (plain HTTP or HTTPS) that serves
//! real-shaped objects from a state the test controls.

mod clients;
mod config;
pub mod contexts;
mod error;
mod handshake;
mod objects;
mod observe;
mod port_forward;
mod taint_policy;
mod write;
pub mod yaml;

#[cfg(feature = "fake")]
pub mod fake;

pub use clients::Clients;
pub use config::{ApiConfig, Credentials, KubeClient, Network};
pub use error::KubeObserveError;
pub use handshake::{tls_handshake, Handshake, HandshakeFailure};
pub use objects::{
    apply_object, binding_of, delete_object, get_object, list_objects, parse_binding, resource_bindings, Binding,
    BindingResource, ClusterHealth, ObjectRef, TargetCluster, RESOURCE_BINDING_API_VERSION,
};
pub use observe::{
    cluster, clusters, control_plane, declared_ports, describe_cluster, namespace_labels, nodes_ready, pod_events,
    pods, pods_everywhere, previous_log, server_version, service_node_ports, ClusterStatus, ClusterTaint,
    ComponentReport, Condition, ConditionStatus, ContainerWaiting, ControlPlaneReport, EventReport, NodeReport,
    NodesReport, PodReport, SyncMode, CLUSTER_API_VERSION, CONTROL_PLANE_DEPLOYMENTS, KARMADA_NAMESPACE,
};
pub use port_forward::{pod_answers, PortForwardFailure};
pub use taint_policy::{
    apply_taint_policy, failover_policy_spec, taint_policy, TaintPolicy, TaintPolicySpec, FAILOVER_POLICY,
    FIELD_MANAGER,
};
pub use write::{
    add_cluster_taint, remove_cluster_taint, set_cluster_api_endpoint, set_cluster_label, set_container_command,
    set_namespace_label,
};
