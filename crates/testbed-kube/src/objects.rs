//! Any object, of any kind, by its API resource: what a `[[workloads]]` entry applies to the Karmada API
//! server (Namespaces, ConfigMaps, Deployments, PropagationPolicies, ...), read back, listed by label and
//! deleted; and Karmada's `ResourceBinding`s, which say where Karmada placed each object and how it fares
//! there.
//!
//! The kind is given explicitly ([`ObjectRef`]: group, version, kind, plural), so nothing here consults the
//! server's discovery documents. Objects are `serde_json::Value`s, as the server sends them.

use std::fmt;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::Value;

use crate::config::KubeClient;
use crate::error::KubeObserveError;
use crate::observe::{Condition, ConditionStatus};
use crate::taint_policy::FIELD_MANAGER;

/// One object on an API server: its kind's API resource, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The API group, empty for the core group (`""`, `apps`, `policy.karmada.io`).
    pub group: String,
    /// The version (`v1`, `v1alpha1`).
    pub version: String,
    /// The kind (`Deployment`).
    pub kind: String,
    /// The resource's plural (`deployments`).
    pub plural: String,
    /// The namespace; `None` for a cluster-scoped kind.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// The object of `kind` (`apiVersion` `api_version`, as `apps/v1` or `v1`) called `name`, in `namespace`
    /// (`None` for a cluster-scoped kind).
    pub fn new(api_version: &str, kind: &str, plural: &str, namespace: Option<&str>, name: &str) -> Self {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        ObjectRef {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// The object's REST path: `/apis/apps/v1/namespaces/default/deployments/nginx`,
    /// `/api/v1/namespaces/monitoring`.
    pub fn api_path(&self) -> String {
        let mut path = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(namespace) = &self.namespace {
            path.push_str("/namespaces/");
            path.push_str(namespace);
        }
        path.push('/');
        path.push_str(&self.plural);
        path.push('/');
        path.push_str(&self.name);
        path
    }

    fn resource(&self) -> ApiResource {
        resource(&self.group, &self.version, &self.kind, &self.plural)
    }

    fn api(&self, client: &KubeClient) -> Api<DynamicObject> {
        match &self.namespace {
            Some(namespace) => Api::namespaced_with(client.kube().clone(), namespace, &self.resource()),
            None => Api::all_with(client.kube().clone(), &self.resource()),
        }
    }
}

/// `deployments.apps/default/nginx`, `namespaces/monitoring`.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.plural)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(namespace) = &self.namespace {
            write!(f, "/{namespace}")?;
        }
        write!(f, "/{}", self.name)
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version(group, version),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// An object as JSON, with its `apiVersion` and `kind` (a real server leaves them out of the items of a
/// built-in kind's list).
fn to_json(object: DynamicObject, group: &str, version: &str, kind: &str) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(fields) = value.as_object_mut() {
        fields.entry("apiVersion").or_insert_with(|| Value::String(api_version(group, version)));
        fields.entry("kind").or_insert_with(|| Value::String(kind.to_owned()));
    }
    value
}

/// Whether a 404 is about the object `name` itself (a missing object names itself in the `Status`), not
/// about a path the server does not serve at all.
fn names_object(status: &kube::core::Status, name: &str) -> bool {
    status.details.as_ref().is_some_and(|d| d.name == name) || status.message.contains(&format!("\"{name}\" not found"))
}

/// Whether a 404 names nothing: the server does not serve the path at all (a missing object, or the missing
/// namespace of an object being created, is named in the `Status`'s details).
fn names_nothing(status: &kube::core::Status) -> bool {
    status.details.as_ref().is_none_or(|d| d.name.is_empty())
}

fn not_served(client: &KubeClient, group: &str, version: &str, plural: &str) -> KubeObserveError {
    let karmada = group.ends_with("karmada.io");
    KubeObserveError::NotServed {
        server: client.server().to_string(),
        api: format!("{} {plural}", api_version(group, version)),
        hint: if karmada {
            "Karmada's own kinds live on the Karmada API server, not on the host cluster: use the Karmada kubeconfig (karmada-apiserver.config in karmadactl init's data directory), and check that this Karmada release has the kind".to_string()
        } else {
            "Check the kind's apiVersion and plural, and that the API server serves that group and version (a custom resource needs its CustomResourceDefinition installed)".to_string()
        },
    }
}

/// Creates or updates `object` at `r` with server-side apply (`PATCH` with `application/apply-patch+yaml`,
/// field manager [`FIELD_MANAGER`], forced: testbed owns the fields it applies). Fields testbed applied
/// before and no longer applies are removed by the server; fields other writers set stay. Returns the
/// object as the server answered (with the fields the server defaulted, `metadata.uid`, `resourceVersion`,
/// `managedFields`, ...).
///
/// `object` must carry `apiVersion`, `kind` and `metadata.name` matching `r`.
pub async fn apply_object(client: &KubeClient, r: &ObjectRef, object: &Value) -> Result<Value, KubeObserveError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match r.api(client).patch(&r.name, &params, &Patch::Apply(object)).await {
        Ok(applied) => Ok(to_json(applied, &r.group, &r.version, &r.kind)),
        Err(kube::Error::Api(status)) if status.code == 404 && names_nothing(&status) => {
            Err(not_served(client, &r.group, &r.version, &r.plural))
        }
        Err(e) => Err(client.error(e, &format!("apply {r}"))),
    }
}

/// The object at `r` as the server has it; `None` when there is none.
///
/// A server that does not serve the kind at all is an error ([`KubeObserveError::NotServed`]), not a missing
/// object.
pub async fn get_object(client: &KubeClient, r: &ObjectRef) -> Result<Option<Value>, KubeObserveError> {
    match r.api(client).get(&r.name).await {
        Ok(object) => Ok(Some(to_json(object, &r.group, &r.version, &r.kind))),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            if names_object(&status, &r.name) {
                Ok(None)
            } else {
                Err(not_served(client, &r.group, &r.version, &r.plural))
            }
        }
        Err(e) => Err(client.error(e, &format!("get {r}"))),
    }
}

/// Every object of a kind the label selector (`testbed/owner=lab,testbed/workload=web`; empty: all)
/// matches, in every namespace (`GET /apis/<group>/<version>/<plural>?labelSelector=...`), each with its
/// `apiVersion` and `kind`.
pub async fn list_objects(
    client: &KubeClient,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    label_selector: &str,
) -> Result<Vec<Value>, KubeObserveError> {
    let what = if label_selector.is_empty() {
        format!("list {}", resource_name(group, plural))
    } else {
        format!("list {} labelled {label_selector}", resource_name(group, plural))
    };
    list(client, &resource(group, version, kind, plural), label_selector, &what).await
}

async fn list(
    client: &KubeClient,
    resource: &ApiResource,
    label_selector: &str,
    what: &str,
) -> Result<Vec<Value>, KubeObserveError> {
    let api: Api<DynamicObject> = Api::all_with(client.kube().clone(), resource);
    let mut params = ListParams::default();
    if !label_selector.is_empty() {
        params = params.labels(label_selector);
    }
    match api.list(&params).await {
        Ok(list) => {
            Ok(list.items.into_iter().map(|o| to_json(o, &resource.group, &resource.version, &resource.kind)).collect())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(not_served(client, &resource.group, &resource.version, &resource.plural))
        }
        Err(e) => Err(client.error(e, what)),
    }
}

/// `deployments.apps`, `configmaps`.
fn resource_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}

/// Deletes the object at `r`, its dependents deleted in the background (`propagationPolicy: Background`);
/// `true` when it existed, `false` when there was nothing to delete.
///
/// An object with finalizers (a Namespace, whose content the namespace controller deletes first) may still
/// be there, terminating, for a while after this returns.
pub async fn delete_object(client: &KubeClient, r: &ObjectRef) -> Result<bool, KubeObserveError> {
    match r.api(client).delete(&r.name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            if names_object(&status, &r.name) {
                Ok(false)
            } else {
                Err(not_served(client, &r.group, &r.version, &r.plural))
            }
        }
        Err(e) => Err(client.error(e, &format!("delete {r}"))),
    }
}

// ---------------------------------------------------------------------------------------------------
// Karmada ResourceBindings
// ---------------------------------------------------------------------------------------------------

/// The API version of Karmada's `ResourceBinding`.
pub const RESOURCE_BINDING_API_VERSION: &str = "work.karmada.io/v1alpha2";

/// A Karmada `ResourceBinding` (`work.karmada.io/v1alpha2`, namespaced): the binding Karmada's detector makes
/// for each namespaced object a PropagationPolicy matches (named `<name>-<kind, lower case>`, in the object's
/// namespace), which the scheduler fills with the clusters it chose and the controllers with how the object
/// fares on each. Field names as in karmada `pkg/apis/work/v1alpha2/binding_types.go` (the same from v1.15 to
/// v1.19).
///
/// A cluster-scoped object (a Namespace) has none: a ClusterPropagationPolicy gives it a
/// `ClusterResourceBinding` instead, and without one Karmada's namespace sync controller propagates a
/// Namespace to every member (unless it is labelled `namespace.karmada.io/skip-auto-propagation: "true"`)
/// with no binding at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The binding's namespace (the object's).
    pub namespace: String,
    /// The binding's name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The object bound (`spec.resource`).
    pub resource: BindingResource,
    /// `spec.replicas`: the replicas the object asks for, for a kind Karmada divides (0 or absent: `None`).
    pub replicas: Option<i32>,
    /// `spec.clusters`: where the scheduler placed the object, with each cluster's share of the replicas.
    pub clusters: Vec<TargetCluster>,
    /// `status.schedulerObservedGeneration`: the generation the scheduler last scheduled.
    pub scheduler_observed_generation: Option<i64>,
    /// The `Scheduled` condition (reasons `Success`, `NoClusterFit`, `Unschedulable`, `SchedulerError`,
    /// `QuotaExceeded`), `None` until the scheduler has posted one.
    pub scheduled: Option<Condition>,
    /// The `FullyApplied` condition (`FullyAppliedSuccess` once the object is applied on every cluster
    /// chosen, `FullyAppliedFailed` otherwise).
    pub fully_applied: Option<Condition>,
    /// `status.aggregatedStatus`: the object on each cluster, sorted by cluster as Karmada writes it.
    pub aggregated: Vec<ClusterHealth>,
}

/// The object a binding binds (`spec.resource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingResource {
    /// `apiVersion` (`apps/v1`).
    pub api_version: String,
    /// `kind` (`Deployment`).
    pub kind: String,
    /// `namespace`, `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// `name`.
    pub name: String,
}

/// A cluster the scheduler chose (`spec.clusters[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCluster {
    /// The cluster's name.
    pub name: String,
    /// Its share of the replicas; `None` for a kind without replicas (Karmada leaves it out when 0).
    pub replicas: Option<i32>,
}

/// The object on one cluster (`status.aggregatedStatus[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterHealth {
    /// `clusterName`.
    pub cluster: String,
    /// `applied`: whether the object was applied on the cluster (Karmada leaves it out when false).
    pub applied: bool,
    /// `health`: `Healthy`, `Unhealthy` or `Unknown` (also when Karmada left it out). Karmada reports a kind
    /// its resource interpreter has no health check for (a ConfigMap, a Secret) as `Healthy` once applied,
    /// and `Unknown` where the apply failed.
    pub health: String,
    /// `appliedMessage`: why the apply failed, when it did.
    pub message: Option<String>,
    /// `status`: the object's status on the cluster as Karmada's interpreter reflects it (for a Deployment:
    /// `replicas`, `readyReplicas`, `availableReplicas`, ...).
    pub status: Option<Value>,
}

impl ClusterHealth {
    /// Whether the object is applied and `Healthy` there.
    pub fn is_healthy(&self) -> bool {
        self.applied && self.health == "Healthy"
    }
}

impl Binding {
    /// Whether the `Scheduled` condition is `True`.
    pub fn is_scheduled(&self) -> bool {
        self.scheduled.as_ref().is_some_and(Condition::is_true)
    }

    /// Whether the `FullyApplied` condition is `True`.
    pub fn is_fully_applied(&self) -> bool {
        self.fully_applied.as_ref().is_some_and(Condition::is_true)
    }

    /// Whether the scheduler has scheduled this generation of the binding (and not only an earlier one).
    pub fn is_scheduled_current(&self) -> bool {
        self.is_scheduled()
            && match (self.generation, self.scheduler_observed_generation) {
                (Some(generation), Some(observed)) => observed >= generation,
                _ => true,
            }
    }

    /// Whether every cluster chosen reports the object applied and `Healthy` (and at least one was chosen).
    pub fn is_healthy(&self) -> bool {
        !self.clusters.is_empty()
            && self.clusters.iter().all(|c| self.health_on(&c.name).is_some_and(ClusterHealth::is_healthy))
    }

    /// How the object fares on `cluster`, if Karmada has said.
    pub fn health_on(&self, cluster: &str) -> Option<&ClusterHealth> {
        self.aggregated.iter().find(|h| h.cluster == cluster)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingWire {
    #[serde(default)]
    metadata: BindingMeta,
    #[serde(default)]
    spec: BindingSpecWire,
    #[serde(default)]
    status: BindingStatusWire,
}

#[derive(Debug, Default, Deserialize)]
struct BindingMeta {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingSpecWire {
    #[serde(default)]
    resource: ObjectReferenceWire,
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    clusters: Vec<TargetClusterWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectReferenceWire {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct TargetClusterWire {
    #[serde(default)]
    name: String,
    #[serde(default)]
    replicas: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingStatusWire {
    #[serde(default)]
    scheduler_observed_generation: Option<i64>,
    #[serde(default)]
    conditions: Vec<ConditionWire>,
    #[serde(default)]
    aggregated_status: Vec<AggregatedStatusWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConditionWire {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    last_transition_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregatedStatusWire {
    #[serde(default)]
    cluster_name: String,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    applied: bool,
    #[serde(default)]
    applied_message: Option<String>,
    #[serde(default)]
    health: Option<String>,
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// A `ResourceBinding` from its JSON; `None` when it is not one (no name).
pub fn parse_binding(object: &Value) -> Option<Binding> {
    let wire: BindingWire = serde_json::from_value(object.clone()).ok()?;
    let name = non_empty(wire.metadata.name)?;
    let condition = |type_: &str| {
        wire.status.conditions.iter().find(|c| c.type_ == type_).map(|c| Condition {
            status: ConditionStatus::parse(&c.status),
            reason: non_empty(c.reason.clone()),
            message: non_empty(c.message.clone()),
            last_transition_time: non_empty(c.last_transition_time.clone()),
        })
    };
    Some(Binding {
        namespace: wire.metadata.namespace.unwrap_or_default(),
        name,
        generation: wire.metadata.generation,
        resource: BindingResource {
            api_version: wire.spec.resource.api_version,
            kind: wire.spec.resource.kind,
            namespace: non_empty(wire.spec.resource.namespace),
            name: wire.spec.resource.name,
        },
        replicas: wire.spec.replicas.filter(|r| *r != 0),
        clusters: wire
            .spec
            .clusters
            .into_iter()
            .map(|c| TargetCluster { name: c.name, replicas: c.replicas.filter(|r| *r != 0) })
            .collect(),
        scheduler_observed_generation: wire.status.scheduler_observed_generation,
        scheduled: condition("Scheduled"),
        fully_applied: condition("FullyApplied"),
        aggregated: wire
            .status
            .aggregated_status
            .into_iter()
            .map(|a| ClusterHealth {
                cluster: a.cluster_name,
                applied: a.applied,
                health: non_empty(a.health).unwrap_or_else(|| "Unknown".to_owned()),
                message: non_empty(a.applied_message),
                status: a.status.filter(|s| !s.is_null()),
            })
            .collect(),
    })
}

/// Every `ResourceBinding` on the Karmada API server, in every namespace, sorted by namespace and name
/// (`GET /apis/work.karmada.io/v1alpha2/resourcebindings`).
pub async fn resource_bindings(client: &KubeClient) -> Result<Vec<Binding>, KubeObserveError> {
    let resource = resource("work.karmada.io", "v1alpha2", "ResourceBinding", "resourcebindings");
    let objects = list(client, &resource, "", "list Karmada ResourceBindings").await?;
    let mut bindings: Vec<Binding> = objects.iter().filter_map(parse_binding).collect();
    bindings.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(bindings)
}

/// The binding of the object at `r` among `bindings`: Karmada binds an object by its `apiVersion`, kind,
/// namespace and name.
pub fn binding_of<'a>(bindings: &'a [Binding], r: &ObjectRef) -> Option<&'a Binding> {
    let api_version = r.api_version();
    bindings.iter().find(|b| {
        b.resource.api_version == api_version
            && b.resource.kind == r.kind
            && b.resource.name == r.name
            && b.resource.namespace == r.namespace
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        let deployment = ObjectRef::new("apps/v1", "Deployment", "deployments", Some("default"), "nginx");
        assert_eq!(deployment.api_path(), "/apis/apps/v1/namespaces/default/deployments/nginx");
        assert_eq!(deployment.to_string(), "deployments.apps/default/nginx");
        assert_eq!(deployment.api_version(), "apps/v1");
        let namespace = ObjectRef::new("v1", "Namespace", "namespaces", None, "monitoring");
        assert_eq!(namespace.api_path(), "/api/v1/namespaces/monitoring");
        assert_eq!(namespace.to_string(), "namespaces/monitoring");
        assert_eq!(namespace.group, "");
        let config = ObjectRef::new("v1", "ConfigMap", "configmaps", Some("web"), "settings");
        assert_eq!(config.api_path(), "/api/v1/namespaces/web/configmaps/settings");
        let policy = ObjectRef::new(
            "policy.karmada.io/v1alpha1",
            "ClusterPropagationPolicy",
            "clusterpropagationpolicies",
            None,
            "p",
        );
        assert_eq!(policy.api_path(), "/apis/policy.karmada.io/v1alpha1/clusterpropagationpolicies/p");
        assert_eq!(policy.to_string(), "clusterpropagationpolicies.policy.karmada.io/p");
    }
}
