//! Pods as the kubelet reports them on a member: whether each is Ready, and why its containers wait. Karmada
//! says only that a workload is `Unhealthy` on a member (its `aggregatedStatus` has no reason); the reason
//! is in the pods' own status there (`status.containerStatuses[].state.waiting`: `ErrImagePull` with
//! containerd's error, `CrashLoopBackOff`, ...).

use serde_json::Value;

use crate::config::KubeClient;
use crate::error::KubeObserveError;
use crate::objects::list_objects;

/// One pod, as its status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    pub namespace: String,
    pub name: String,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
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

/// A pod's report from the object the API server sent; `None` without a name.
pub fn parse_pod(object: &Value) -> Option<PodReport> {
    let name = object["metadata"]["name"].as_str()?.to_owned();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
    let status = &object["status"];
    let ready =
        status["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
    let waiting = [("initContainerStatuses", true), ("containerStatuses", false)]
        .into_iter()
        .flat_map(|(field, init)| {
            status[field].as_array().into_iter().flatten().filter_map(move |c| {
                let w = c["state"]["waiting"].as_object()?;
                Some(ContainerWaiting {
                    container: c["name"].as_str().unwrap_or_default().to_owned(),
                    init,
                    reason: w.get("reason").and_then(Value::as_str).unwrap_or("Waiting").to_owned(),
                    message: w.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_owned),
                })
            })
        })
        .collect();
    Some(PodReport { namespace, name, ready, waiting })
}

/// The pods in `namespace` that `label_selector` matches (`app=nginx`), by name.
pub async fn pods(
    client: &KubeClient,
    namespace: &str,
    label_selector: &str,
) -> Result<Vec<PodReport>, KubeObserveError> {
    let mut out: Vec<PodReport> = list_objects(client, "", "v1", "Pod", "pods", label_selector)
        .await?
        .iter()
        .filter_map(parse_pod)
        .filter(|p| p.namespace == namespace)
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_that_cannot_pull_its_image_says_why() {
        let pod = json!({"metadata": {"name": "nginx-1", "namespace": "default"}, "status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [
                {"name": "nginx", "ready": false, "state": {"waiting": {"reason": "ErrImagePull",
                    "message": "rpc error: code = NotFound desc = failed to pull and unpack image"}}},
                {"name": "sidecar", "ready": true, "state": {"running": {}}}]}});
        let p = parse_pod(&pod).unwrap();
        assert!(!p.ready);
        assert_eq!(
            p.waiting,
            [ContainerWaiting {
                container: "nginx".into(),
                init: false,
                reason: "ErrImagePull".into(),
                message: Some("rpc error: code = NotFound desc = failed to pull and unpack image".into()),
            }]
        );
        let running = json!({"metadata": {"name": "nginx-2", "namespace": "default"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(parse_pod(&running).unwrap().ready);
    }
}
