//! Karmada's `ClusterTaintPolicy` (`policy.karmada.io/v1alpha1`, cluster-scoped, since Karmada v1.14): the
//! only thing that puts a NoExecute taint on a Cluster by its conditions. Karmada's cluster controller itself
//! adds only NoSchedule taints (`cluster.karmada.io/not-ready`, `.../unreachable`), so cluster failover needs
//! such a policy besides the controller manager's Failover gate and no-execute eviction
//! (docs/karmada-versions.md, section 4).
//!
//! testbed keeps one, [`FAILOVER_POLICY`], written with server-side apply (field manager `testbed`).

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, ObjectMeta, Patch, PatchParams};
use kube::core::{NotUsed, Object};
use serde::{Deserialize, Serialize};

use crate::config::KubeClient;
use crate::error::KubeObserveError;

/// The name of the policy testbed keeps.
pub const FAILOVER_POLICY: &str = "testbed-failover";
/// The taint it adds: the key Karmada's own documentation uses for a cluster that is not Ready.
pub const FAILOVER_TAINT_KEY: &str = "cluster.karmada.io/not-ready";
/// The field manager of testbed's server-side applies.
pub const FIELD_MANAGER: &str = "testbed";

/// `spec` of a ClusterTaintPolicy (karmada `pkg/apis/policy/v1alpha1/clustertaint_types.go`; the same from
/// v1.15 to v1.19). `targetClusters` absent: every cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaintPolicySpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_on_conditions: Vec<MatchCondition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_on_conditions: Vec<MatchCondition>,
    #[serde(default)]
    pub taints: Vec<PolicyTaint>,
}

/// A condition of the Cluster (`conditionType`), matched by `operator` (`In`, `NotIn`) against
/// `statusValues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchCondition {
    pub condition_type: String,
    pub operator: String,
    pub status_values: Vec<String>,
}

/// A taint the policy adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTaint {
    pub key: String,
    pub effect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

type PolicyObject = Object<TaintPolicySpec, NotUsed>;

fn resource() -> ApiResource {
    ApiResource {
        group: "policy.karmada.io".into(),
        version: "v1alpha1".into(),
        api_version: "policy.karmada.io/v1alpha1".into(),
        kind: "ClusterTaintPolicy".into(),
        plural: "clustertaintpolicies".into(),
    }
}

fn api(client: &KubeClient) -> Api<PolicyObject> {
    Api::all_with(client.kube().clone(), &resource())
}

/// What testbed's failover policy says: taint a Cluster `NoExecute` while its `Ready` condition is `False` or
/// `Unknown`, and remove the taint once it is `True` again.
pub fn failover_policy_spec() -> TaintPolicySpec {
    let ready = |values: &[&str]| MatchCondition {
        condition_type: "Ready".into(),
        operator: "In".into(),
        status_values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    TaintPolicySpec {
        add_on_conditions: vec![ready(&["False", "Unknown"])],
        remove_on_conditions: vec![ready(&["True"])],
        taints: vec![PolicyTaint { key: FAILOVER_TAINT_KEY.into(), effect: "NoExecute".into(), value: None }],
    }
}

/// A ClusterTaintPolicy as it is on the server: its labels and spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintPolicy {
    pub labels: BTreeMap<String, String>,
    pub spec: TaintPolicySpec,
}

/// The ClusterTaintPolicy `name` on the Karmada API server; `None` when there is none.
pub async fn taint_policy(client: &KubeClient, name: &str) -> Result<Option<TaintPolicy>, KubeObserveError> {
    match api(client).get_opt(name).await {
        Ok(found) => Ok(found.map(|o| TaintPolicy { labels: o.metadata.labels.unwrap_or_default(), spec: o.spec })),
        Err(e) => Err(client.error(e, &format!("get ClusterTaintPolicy {name}"))),
    }
}

/// Creates or updates the ClusterTaintPolicy `name` with server-side apply (`PATCH` with
/// `application/apply-patch+yaml`, field manager [`FIELD_MANAGER`], forced: testbed owns these fields).
pub async fn apply_taint_policy(
    client: &KubeClient,
    name: &str,
    labels: BTreeMap<String, String>,
    spec: TaintPolicySpec,
) -> Result<TaintPolicy, KubeObserveError> {
    let mut object = PolicyObject::new(name, &resource(), spec);
    object.metadata = ObjectMeta { name: Some(name.to_owned()), labels: Some(labels), ..ObjectMeta::default() };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api(client)
        .patch(name, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| client.error(e, &format!("apply ClusterTaintPolicy {name}")))?;
    Ok(TaintPolicy { labels: applied.metadata.labels.unwrap_or_default(), spec: applied.spec })
}
