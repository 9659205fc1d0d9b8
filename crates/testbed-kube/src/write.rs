//! The few writes testbed makes through the API: labels that record ownership, and a Cluster's endpoint.
//!
//! Each is one JSON merge patch (`PATCH` with `Content-Type: application/merge-patch+json`), which changes
//! only the fields it names and leaves every other label and field as it is.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use crate::config::KubeClient;
use crate::error::KubeObserveError;
use crate::observe::{cluster_resource, cluster_status, ClusterObject, ClusterStatus};

/// `{"metadata":{"labels":{key: value}}}`; `None` removes the label.
fn label_patch(key: &str, value: Option<&str>) -> Value {
    json!({"metadata": {"labels": {key: value}}})
}

/// Sets (or with `None` removes) one label on the namespace `name`
/// (`PATCH /api/v1/namespaces/<name>`); returns the namespace's labels afterwards.
pub async fn set_namespace_label(
    client: &KubeClient,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<BTreeMap<String, String>, KubeObserveError> {
    let api: Api<Namespace> = Api::all(client.kube().clone());
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Merge(label_patch(key, value)))
        .await
        .map_err(|e| client.error(e, &format!("label namespace {name}")))?;
    Ok(patched.metadata.labels.unwrap_or_default())
}

fn cluster_api(client: &KubeClient) -> Api<ClusterObject> {
    Api::all_with(client.kube().clone(), &cluster_resource())
}

/// Sets (or with `None` removes) one label on the Karmada `Cluster` `name`
/// (`PATCH /apis/cluster.karmada.io/v1alpha1/clusters/<name>` on the Karmada API server); returns the
/// cluster as patched.
pub async fn set_cluster_label(
    client: &KubeClient,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<ClusterStatus, KubeObserveError> {
    let patched = cluster_api(client)
        .patch(name, &PatchParams::default(), &Patch::Merge(label_patch(key, value)))
        .await
        .map_err(|e| client.error(e, &format!("label Karmada cluster {name}")))?;
    Ok(cluster_status(patched))
}

/// Sets `spec.apiEndpoint` of the Karmada `Cluster` `name`: where karmada-controller-manager dials the
/// member (push mode). Returns the cluster as patched.
pub async fn set_cluster_api_endpoint(
    client: &KubeClient,
    name: &str,
    endpoint: &str,
) -> Result<ClusterStatus, KubeObserveError> {
    let patched = cluster_api(client)
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"apiEndpoint": endpoint}})))
        .await
        .map_err(|e| client.error(e, &format!("set spec.apiEndpoint of Karmada cluster {name}")))?;
    Ok(cluster_status(patched))
}
