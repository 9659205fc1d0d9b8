//! The few writes testbed makes through the API: labels that record ownership, and a Cluster's endpoint.
//!
//! Each is one JSON merge patch (`PATCH` with `Content-Type: application/merge-patch+json`), which changes
//! only the fields it names and leaves every other label and field as it is; a container's command is a
//! strategic merge patch, which finds the container by its name.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
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

/// Sets the `command` of the container `container` of the Deployment `namespace/name` (a strategic merge
/// patch, `PATCH /apis/apps/v1/namespaces/<ns>/deployments/<name>` with
/// `application/strategic-merge-patch+json`: the container is found by name, its other fields and the other
/// containers stay). The Deployment rolls its pods out again.
pub async fn set_container_command(
    client: &KubeClient,
    namespace: &str,
    name: &str,
    container: &str,
    command: &[String],
) -> Result<(), KubeObserveError> {
    let api: Api<Deployment> = Api::namespaced(client.kube().clone(), namespace);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "command": command}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(|e| client.error(e, &format!("set the command of {namespace}/{name}")))?;
    Ok(())
}
