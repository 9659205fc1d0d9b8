//! The few writes testbed makes through the API: labels that record ownership, a Cluster's endpoint, and the
//! taint `testbed drill failover` puts on a Cluster and takes off again.
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
use crate::observe::{cluster_resource, cluster_status, ClusterObject, ClusterStatus, ClusterTaint, TaintWire};
use crate::taint_policy::FIELD_MANAGER;

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

/// How many times a taint write reads the Cluster again after a `409 Conflict` (someone else, such as
/// Karmada's cluster controller, wrote it in between) before it gives up.
const TAINT_WRITE_ATTEMPTS: usize = 5;

/// Adds `taint` to `spec.taints` of the Karmada `Cluster` `name`, as Karmada's own e2e tests do
/// (`test/e2e/framework/cluster.go`, `AddClusterTaint`): the Cluster is read, the taint appended to what is
/// there, and the list written back with a JSON merge patch that carries the `resourceVersion` read, so that
/// the write is refused (`409 Conflict`, read again) rather than undo a taint someone else wrote meanwhile.
/// Field manager `testbed`. Karmada's API server stamps `timeAdded` on a NoExecute taint written without one
/// (`pkg/apis/cluster/mutation`, `mutateClusterTaints`). Nothing is written when the same taint (key, value,
/// effect) is there already. Returns the cluster as it is afterwards.
pub async fn add_cluster_taint(
    client: &KubeClient,
    name: &str,
    taint: &ClusterTaint,
) -> Result<ClusterStatus, KubeObserveError> {
    change_cluster_taints(client, name, &format!("taint Karmada cluster {name} {taint}"), |have| {
        if have.iter().any(|t| t.taint().same(taint)) {
            return None;
        }
        let mut out = have.to_vec();
        out.push(TaintWire {
            key: taint.key.clone(),
            value: taint.value.clone(),
            effect: taint.effect.clone(),
            time_added: taint.time_added.clone(),
        });
        Some(out)
    })
    .await
}

/// Removes every taint with `taint`'s key, value and effect from the Karmada `Cluster` `name` (the others
/// stay, with their times), written as [`add_cluster_taint`] writes. Nothing is written when there is none.
/// Returns the cluster as it is afterwards.
pub async fn remove_cluster_taint(
    client: &KubeClient,
    name: &str,
    taint: &ClusterTaint,
) -> Result<ClusterStatus, KubeObserveError> {
    change_cluster_taints(client, name, &format!("remove taint {taint} from Karmada cluster {name}"), |have| {
        have.iter()
            .any(|t| t.taint().same(taint))
            .then(|| have.iter().filter(|t| !t.taint().same(taint)).cloned().collect())
    })
    .await
}

/// Reads the Cluster, asks `change` for its new taints (`None`: as they are), and writes them.
async fn change_cluster_taints(
    client: &KubeClient,
    name: &str,
    what: &str,
    change: impl Fn(&[TaintWire]) -> Option<Vec<TaintWire>>,
) -> Result<ClusterStatus, KubeObserveError> {
    let api = cluster_api(client);
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let object = api.get(name).await.map_err(|e| client.error(e, what))?;
        let Some(taints) = change(&object.spec.taints) else { return Ok(cluster_status(object)) };
        let patch = json!({
            "metadata": {"resourceVersion": object.metadata.resource_version},
            "spec": {"taints": taints},
        });
        match api.patch(name, &params, &Patch::Merge(patch)).await {
            Ok(patched) => return Ok(cluster_status(patched)),
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < TAINT_WRITE_ATTEMPTS => continue,
            Err(e) => return Err(client.error(e, what)),
        }
    }
}
