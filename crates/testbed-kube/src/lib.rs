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
//! - [`server_version`]: the API server's `/version`.
//!
//! Failures are [`KubeObserveError`]s that tell an unreachable API, a TLS failure, rejected credentials and
//! the rest apart, name the server, and never carry a credential.
//!
//! With the `fake` feature, [`fake`] is an in-process fake Kubernetes API (plain HTTP or HTTPS) that serves
//! real-shaped objects from a state the test controls.

mod config;
mod error;
mod observe;

#[cfg(feature = "fake")]
pub mod fake;

pub use config::{ApiConfig, Credentials, KubeClient};
pub use error::KubeObserveError;
pub use observe::{
    cluster, clusters, control_plane, describe_cluster, nodes_ready, server_version, ClusterStatus, ClusterTaint,
    ComponentReport, Condition, ConditionStatus, ControlPlaneReport, NodeReport, NodesReport, SyncMode,
    CLUSTER_API_VERSION, CONTROL_PLANE_DEPLOYMENTS, KARMADA_NAMESPACE,
};
