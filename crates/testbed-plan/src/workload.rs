//! Workloads as testbed applies them: each manifest object with testbed's labels and the digest of what
//! was applied, the PropagationPolicy testbed writes from the file's placement, and the flat form of an
//! object that plans compare field by field.
//!
//! Pure: the steps catalogue takes the objects to send from here, the planner their settings, and the
//! Karmada provider flattens what it reads back with [`flatten`], so the three always agree.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use testbed_config::manifests::{PlaceableKind, WorkloadManifests};
use testbed_config::{Config, ReplicaMode, Workload};

use crate::resource::Spec;

/// The label naming the testbed that applied an object (the file's `name`), as on everything testbed
/// registers with Kubernetes (the `karmada-system` namespace, each `Cluster`): the one copy.
pub const OWNER_LABEL: &str = "testbed/owner";
/// The label naming the workload an object belongs to.
pub const WORKLOAD_LABEL: &str = "testbed/workload";
/// The annotation holding the digest of the object as testbed last applied it (its labels included, this
/// annotation left out): a change in the file changes it, whatever field changed.
pub const APPLIED_ANNOTATION: &str = "testbed/applied";
/// The spec key that carries that digest.
pub const APPLIED_KEY: &str = "applied";

/// Karmada's PropagationPolicy, as testbed writes and observes it.
pub const PROPAGATION_POLICY: PlaceableKind = PlaceableKind {
    api_version: "policy.karmada.io/v1alpha1",
    kind: "PropagationPolicy",
    plural: "propagationpolicies",
    namespaced: true,
    order: 4,
};

/// One object testbed applies for a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedObject {
    pub workload: String,
    pub kind: PlaceableKind,
    pub namespace: Option<String>,
    pub name: String,
    /// The object as sent: the manifest's, with testbed's labels and the digest annotation.
    pub object: Value,
    /// The digest of the object as applied (the annotation's value).
    pub digest: String,
    /// Where the file wrote it (`examples/workloads/nginx.yaml:12`), or the workload for the policy
    /// testbed writes.
    pub source: String,
}

impl AppliedObject {
    /// `deployment/default/nginx`: the last part of its address, unique within its workload.
    pub fn key(&self) -> String {
        object_key(self.kind.kind, self.namespace.as_deref(), &self.name)
    }

    /// The REST path of the object on an API server.
    pub fn api_path(&self) -> String {
        api_path(&self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// `deployment/default/nginx`, `namespace/monitoring`.
pub fn object_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match namespace {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// `/apis/apps/v1/namespaces/default/deployments/nginx`, `/api/v1/namespaces/monitoring`.
pub fn api_path(kind: &PlaceableKind, namespace: Option<&str>, name: &str) -> String {
    let base = match kind.group() {
        "" => format!("/api/{}", kind.version()),
        g => format!("/apis/{g}/{}", kind.version()),
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{}/{name}", kind.plural),
        None => format!("{base}/{}/{name}", kind.plural),
    }
}

/// The kind, namespace and name an object key (`deployment/default/nginx`) names, for a kind testbed
/// applies.
pub fn parse_key(key: &str) -> Option<(PlaceableKind, Option<String>, String)> {
    let mut parts = key.splitn(3, '/');
    let kind = parts.next()?;
    let known = testbed_config::manifests::PLACEABLE_KINDS
        .iter()
        .copied()
        .chain([PROPAGATION_POLICY])
        .find(|k| k.kind.eq_ignore_ascii_case(kind))?;
    let (namespace, name) = match (parts.next(), parts.next()) {
        (Some(ns), Some(name)) if known.namespaced => (Some(ns.to_owned()), name.to_owned()),
        (Some(name), None) if !known.namespaced => (None, name.to_owned()),
        _ => return None,
    };
    Some((known, namespace, name))
}

/// The name of the PropagationPolicy testbed writes for `workload` (one in each namespace it uses).
pub fn policy_name(workload: &str) -> String {
    format!("testbed-{workload}")
}

/// The members a workload is placed on: its `members`, else every member, in the file's order.
pub fn placement(config: &Config, w: &Workload) -> Vec<String> {
    match &w.members {
        Some(ms) => config.file.members.iter().filter(|m| ms.contains(&m.name)).map(|m| m.name.clone()).collect(),
        None => config.file.members.iter().map(|m| m.name.clone()).collect(),
    }
}

/// Every object testbed applies for the file's workloads, in apply order within each workload (namespaces
/// first, the policy last).
pub fn applied_objects(config: &Config) -> Vec<AppliedObject> {
    let mut out = Vec::new();
    for (w, loaded) in config.file.workloads.iter().zip(&config.workloads) {
        out.extend(workload_objects(config, w, loaded));
    }
    out
}

fn workload_objects(config: &Config, w: &Workload, loaded: &WorkloadManifests) -> Vec<AppliedObject> {
    let labels = |object: &mut Value| {
        let meta = object.as_object_mut().map(|o| o.entry("metadata").or_insert_with(|| json!({})));
        if let Some(Value::Object(meta)) = meta {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert(OWNER_LABEL.into(), json!(config.file.name));
                l.insert(WORKLOAD_LABEL.into(), json!(w.name));
            }
        }
    };
    let mut objects: Vec<AppliedObject> = loaded
        .objects
        .iter()
        .map(|o| {
            let mut object = o.object.clone();
            labels(&mut object);
            finish(&w.name, *o.kind, o.namespace.clone(), o.name.clone(), object, o.source.clone())
        })
        .collect();
    objects.sort_by_key(|o| o.kind.order);
    match &loaded.policy {
        Some(policy) => {
            let mut object = policy.clone();
            let namespace =
                object["metadata"]["namespace"].as_str().map(str::to_owned).unwrap_or_else(|| "default".into());
            object["metadata"]["namespace"] = json!(namespace);
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            labels(&mut object);
            let source = w.policy.clone().unwrap_or_default();
            objects.push(finish(&w.name, PROPAGATION_POLICY, Some(namespace), name, object, source));
        }
        None => {
            // One policy per namespace the workload's objects live in; Namespaces themselves are propagated
            // to every member by Karmada's namespace controller.
            let mut by_namespace: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for o in &loaded.objects {
                if let Some(ns) = &o.namespace {
                    by_namespace.entry(ns).or_default().push(json!({
                        "apiVersion": o.kind.api_version,
                        "kind": o.kind.kind,
                        "name": o.name,
                    }));
                }
            }
            for (ns, selectors) in by_namespace {
                let mut object = generated_policy(config, w, ns, selectors);
                labels(&mut object);
                let name = policy_name(&w.name);
                let source = format!("[[workloads]] {}", w.name);
                objects.push(finish(&w.name, PROPAGATION_POLICY, Some(ns.to_owned()), name, object, source));
            }
        }
    }
    objects
}

/// The PropagationPolicy testbed writes for `w` in `namespace`, selecting `selectors`.
fn generated_policy(config: &Config, w: &Workload, namespace: &str, selectors: Vec<Value>) -> Value {
    let members = placement(config, w);
    let mode = w.replicas.unwrap_or(if w.weights.is_some() { ReplicaMode::Divided } else { ReplicaMode::Duplicated });
    let scheduling = match mode {
        ReplicaMode::Duplicated => json!({"replicaSchedulingType": "Duplicated"}),
        ReplicaMode::Divided => {
            // Karmada's CRD takes weights from 1: a member of weight 0 is left out of the list, which gives it
            // no replicas while a listed member is a candidate (and an equal share when none is).
            let weight = |m: &str| w.weights.as_ref().map_or(1, |ws| ws.get(m).copied().unwrap_or(0));
            let list: Vec<Value> = members
                .iter()
                .filter(|m| weight(m) > 0)
                .map(|m| json!({"targetCluster": {"clusterNames": [m]}, "weight": weight(m)}))
                .collect();
            json!({
                "replicaSchedulingType": "Divided",
                "replicaDivisionPreference": "Weighted",
                "weightPreference": {"staticWeightList": list},
            })
        }
    };
    let mut placement = json!({
        "clusterAffinity": {"clusterNames": members},
        "replicaScheduling": scheduling,
    });
    if let Some(n) = w.spread {
        placement["spreadConstraints"] = json!([{"spreadByField": "cluster", "maxGroups": n, "minGroups": 1}]);
    }
    if let Some(f) = &w.failover {
        // Cluster failover: a member tainted NoExecute (Karmada's taint keys for a cluster not Ready or not
        // reachable, which testbed's ClusterTaintPolicy adds) keeps the workload this long, then loses it.
        let toleration = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": f.toleration_seconds});
        placement["clusterTolerations"] =
            json!([toleration("cluster.karmada.io/not-ready"), toleration("cluster.karmada.io/unreachable")]);
    }
    let mut spec = json!({"resourceSelectors": selectors, "placement": placement});
    if let Some(f) = &w.failover {
        spec["failover"] = json!({"application": {
            "decisionConditions": {"tolerationSeconds": f.toleration_seconds},
            "purgeMode": f.purge_mode,
        }});
    }
    json!({
        "apiVersion": PROPAGATION_POLICY.api_version,
        "kind": PROPAGATION_POLICY.kind,
        "metadata": {"name": policy_name(&w.name), "namespace": namespace},
        "spec": spec,
    })
}

fn finish(
    workload: &str,
    kind: PlaceableKind,
    namespace: Option<String>,
    name: String,
    mut object: Value,
    source: String,
) -> AppliedObject {
    if kind.kind == "Secret" {
        fold_string_data(&mut object);
    }
    let digest = digest(&object);
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        if let Value::Object(a) = meta.entry("annotations").or_insert_with(|| json!({})) {
            a.insert(APPLIED_ANNOTATION.into(), json!(digest));
        }
    }
    AppliedObject { workload: workload.to_owned(), kind, namespace, name, object, digest, source }
}

/// A Secret's `stringData` folded into `data` (base64), as the API server stores it: it never serves
/// `stringData` back, so comparing needs the stored form.
fn fold_string_data(object: &mut Value) {
    let Some(Value::Object(string_data)) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let data = object.as_object_mut().map(|o| o.entry("data").or_insert_with(|| json!({})));
    if let Some(Value::Object(data)) = data {
        for (k, v) in string_data {
            let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

/// The first 16 hex digits of the SHA-256 of the object's canonical JSON (keys sorted).
fn digest(object: &Value) -> String {
    let hash = Sha256::digest(canonical(object).as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let inner: Vec<String> =
                sorted.into_iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v))).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// An object's settings as a plan compares them: every leaf value by its path
/// (`spec.template.spec.containers[0].image`, `metadata.labels["app.kubernetes.io/name"]`), each list's
/// length as `PATH[count]`, a Secret's values as digests (never the values), and [`APPLIED_KEY`] from the
/// annotation. Server-managed metadata and `status` are left out. Empty maps and lists are left out too:
/// the API server drops them.
pub fn flatten(kind: &str, object: &Value) -> Spec {
    let mut out = Spec::new();
    if let Some(d) = object["metadata"]["annotations"][APPLIED_ANNOTATION].as_str() {
        out.insert(APPLIED_KEY.into(), d.to_owned());
    }
    let Value::Object(top) = object else { return out };
    for (k, v) in top {
        match k.as_str() {
            "status" => {}
            "metadata" => {
                for field in ["name", "namespace", "labels", "annotations"] {
                    if let Some(v) = v.get(field) {
                        walk(&format!("metadata.{field}"), v, &mut out, false);
                    }
                }
            }
            "data" | "stringData" if kind == "Secret" => walk(k, v, &mut out, true),
            _ => walk(&segment("", k), v, &mut out, false),
        }
    }
    out.remove(&format!("metadata.annotations[\"{APPLIED_ANNOTATION}\"]"));
    out
}

fn segment(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.to_owned())),
    }
}

fn walk(path: &str, v: &Value, out: &mut Spec, secret: bool) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                walk(&segment(path, k), v, out, secret);
            }
        }
        Value::Array(a) => {
            if a.is_empty() {
                return;
            }
            out.insert(format!("{path}[count]"), a.len().to_string());
            for (i, v) in a.iter().enumerate() {
                walk(&format!("{path}[{i}]"), v, out, secret);
            }
        }
        Value::String(s) if secret => {
            let hash = Sha256::digest(s.as_bytes());
            out.insert(
                path.to_owned(),
                format!("sha256:{}", hash.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>()),
            );
        }
        Value::String(s) => {
            out.insert(path.to_owned(), s.clone());
        }
        other => {
            out.insert(path.to_owned(), other.to_string());
        }
    }
}

/// The object with a Secret's values replaced by their digests, for what is printed (`--dry-run`).
pub fn shown(kind: &str, object: &Value) -> Value {
    if kind != "Secret" {
        return object.clone();
    }
    let mut o = object.clone();
    for field in ["data", "stringData"] {
        if let Some(Value::Object(m)) = o.get_mut(field) {
            let hidden: Map<String, Value> = m.keys().map(|k| (k.clone(), json!("<hidden>"))).collect();
            *m = hidden;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_settings_name_every_leaf_and_hide_secret_values() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "x", "resourceVersion": "7",
                "labels": {"app.kubernetes.io/name": "nginx"}, "annotations": {APPLIED_ANNOTATION: "abc"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "args": []}]}}},
            "status": {"availableReplicas": 2}
        });
        let flat = flatten("Deployment", &deployment);
        assert_eq!(flat["spec.replicas"], "2");
        assert_eq!(flat["spec.template.spec.containers[0].image"], "nginx:1.27");
        assert_eq!(flat["spec.template.spec.containers[count]"], "1");
        assert_eq!(flat["metadata.labels[\"app.kubernetes.io/name\"]"], "nginx");
        assert_eq!(flat[APPLIED_KEY], "abc");
        assert!(
            !flat.keys().any(|k| k.contains("uid")
                || k.contains("status")
                || k.contains("args")
                || k.contains("testbed/applied")),
            "{flat:?}"
        );

        let secret =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "cGFzcw=="}});
        let flat = flatten("Secret", &secret);
        assert!(flat["data.password"].starts_with("sha256:"), "{flat:?}");
        assert!(!flat.values().any(|v| v.contains("cGFzcw")), "{flat:?}");
        assert_eq!(shown("Secret", &secret)["data"]["password"], "<hidden>");
    }

    #[test]
    fn string_data_is_compared_as_the_server_stores_it() {
        let mut written = json!({"kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "pass"}});
        fold_string_data(&mut written);
        let stored = json!({"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "cGFzcw=="}});
        assert_eq!(flatten("Secret", &written), flatten("Secret", &stored));
    }

    #[test]
    fn the_digest_ignores_key_order() {
        let a = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
        let b: Value = serde_json::from_str(r#"{"b": {"d": "x", "c": [1, 2]}, "a": 1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": 2, "b": {"c": [1, 2], "d": "x"}})));
    }
}
