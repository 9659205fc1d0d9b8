//! The simulated Karmada's propagation: from the resource templates and PropagationPolicies on its API
//! server and the state of its Clusters to the ResourceBindings Karmada's scheduler and status controllers
//! would write: which policy claims each template, which members it is scheduled to with how many
//! replicas, and whether each member reports it applied and healthy.
//!
//! Modelled on Karmada's behaviour (pkg/scheduler and pkg/util/helper of karmada-io/karmada): a policy
//! claims a template in its own namespace through `resourceSelectors` (by explicit `priority`, then the
//! most specific selector: a name beats a label selector beats a kind alone, then the policy's name); the
//! candidates are `clusterAffinity.clusterNames` (every Cluster when absent) less `exclude`, less those
//! that are not Ready (Karmada taints them NoSchedule); `Duplicated` gives each candidate the template's
//! replicas, `Divided` + `Weighted` divides them by `staticWeightList` (weights of 0 all around count as 1
//! each); `spreadConstraints` by cluster keep at most `maxGroups` members, the heaviest first. Objects
//! without replicas go to every chosen member. A member reports what it runs applied while its MicroK8s
//! runs, and, for what runs pods, `Healthy` once as many of its pods are Ready as it has replicas there
//! (`Unhealthy` before: a pod whose image cannot be pulled is not Ready), with the status Karmada's
//! interpreter reflects (a Deployment's `replicas`, `readyReplicas`, ...). Karmada's `aggregatedStatus`
//! carries no reason for the health; the pods' own status on the member does.
//!
//! Placement is sticky, as Karmada's: a binding is scheduled again only when its template's replicas or its
//! policy change, or when a member it is on is evicted. Eviction (cluster failover) follows Karmada's taint
//! manager: with the controller manager's `Failover` gate and no-execute eviction on, a member tainted
//! `NoExecute` (by hand, or by a ClusterTaintPolicy while it is not Ready) loses its workloads once the taint
//! is older than the policy's `clusterTolerations` allow for it (at once without a toleration); they are
//! scheduled on the other candidates, and nothing moves back when the member recovers. With the gate off a
//! taint moves nothing, as in Karmada (failover silently does nothing).
//!
//! This is a simulation: placement by cluster names, static weights and spread only; no resource
//! estimator, no dynamic weights, no OverridePolicy, no application-health failover (an unhealthy workload
//! stays where it is). It never reports a real placement.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use testbed_config::manifests::{placeable, runs_pods};

use crate::world::{KarmadaEtcd, Scheduled, SimTaint};

/// What the propagation needs to know of one Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterState {
    pub name: String,
    /// Its `Ready` condition is `True` (the scheduler filters out the others, which Karmada taints
    /// `cluster.karmada.io/not-ready:NoSchedule`).
    pub ready: bool,
    /// Its MicroK8s runs: what is applied there runs and reports healthy.
    pub runs: bool,
}

/// A template: an object on the Karmada API server that a policy can propagate.
struct Template<'a> {
    api_version: &'a str,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    object: &'a Value,
}

fn template(object: &Value) -> Option<Template<'_>> {
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?;
    let known = placeable(api_version, kind)?;
    if !known.namespaced {
        return None;
    }
    Some(Template {
        api_version,
        kind,
        namespace: object["metadata"]["namespace"].as_str()?,
        name: object["metadata"]["name"].as_str()?,
        object,
    })
}

/// How specifically `selector` selects `t`: 3 by name, 2 by label selector, 1 by kind; `None` when it does not.
fn selects(selector: &Value, t: &Template<'_>) -> Option<u8> {
    if selector["apiVersion"].as_str() != Some(t.api_version) || selector["kind"].as_str() != Some(t.kind) {
        return None;
    }
    if let Some(ns) = selector["namespace"].as_str() {
        if ns != t.namespace {
            return None;
        }
    }
    if let Some(name) = selector["name"].as_str() {
        return (name == t.name).then_some(3);
    }
    if let Some(labels) = selector["labelSelector"]["matchLabels"].as_object() {
        let have = &t.object["metadata"]["labels"];
        return labels.iter().all(|(k, v)| have[k] == *v).then_some(2);
    }
    Some(1)
}

/// The policy that claims `t`, if any.
fn claiming<'p>(policies: &[&'p Value], t: &Template<'_>) -> Option<&'p Value> {
    policies
        .iter()
        .filter(|p| p["metadata"]["namespace"].as_str() == Some(t.namespace))
        .filter_map(|p| {
            let best = p["spec"]["resourceSelectors"].as_array()?.iter().filter_map(|s| selects(s, t)).max()?;
            let priority = p["spec"]["priority"].as_i64().unwrap_or(0);
            Some((priority, best, *p))
        })
        // Highest explicit priority, then the most specific selector, then the first name.
        .max_by(|a, b| {
            a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then_with(|| {
                let name = |p: &Value| p["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                name(b.2).cmp(&name(a.2))
            })
        })
        .map(|(_, _, p)| p)
}

/// The members `placement` schedules to, with their replicas (`None` for an object without replicas).
fn schedule(
    placement: &Value,
    replicas: Option<i64>,
    clusters: &[ClusterState],
    tainted: &[String],
) -> Vec<(String, Option<i64>)> {
    let affinity = &placement["clusterAffinity"];
    let named: Option<Vec<&str>> =
        affinity["clusterNames"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect());
    let excluded: Vec<&str> =
        affinity["exclude"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let candidates: Vec<&ClusterState> = clusters
        .iter()
        .filter(|c| c.ready && !tainted.contains(&c.name))
        .filter(|c| named.as_ref().is_none_or(|n| n.contains(&c.name.as_str())))
        .filter(|c| !excluded.contains(&c.name.as_str()))
        .collect();
    let scheduling = &placement["replicaScheduling"];
    let divided = scheduling["replicaSchedulingType"].as_str() == Some("Divided");
    let listed = |c: &str| -> i64 {
        scheduling["weightPreference"]["staticWeightList"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["targetCluster"]["clusterNames"].as_array().is_some_and(|n| n.iter().any(|x| x == c)))
            .map(|w| w["weight"].as_i64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    let mut weighted: Vec<(&ClusterState, i64)> =
        candidates.iter().map(|c| (*c, if divided { listed(&c.name) } else { 1 })).collect();
    if weighted.iter().all(|(_, w)| *w == 0) {
        for w in &mut weighted {
            w.1 = 1;
        }
    }
    // The heaviest first (ties by name), as many as the spread constraint allows.
    weighted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    let max_groups = placement["spreadConstraints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["spreadByField"].as_str() == Some("cluster"))
        .filter_map(|s| s["maxGroups"].as_u64())
        .min();
    if divided {
        weighted.retain(|(_, w)| *w > 0);
    }
    if let Some(n) = max_groups {
        weighted.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let mut chosen: Vec<(String, Option<i64>)> = match (divided, replicas) {
        (true, Some(total)) => {
            // Largest remainder: each gets its share rounded down, the rest go one by one to the heaviest.
            let sum: i64 = weighted.iter().map(|(_, w)| w).sum::<i64>().max(1);
            let mut shares: Vec<(String, i64, i64)> =
                weighted.iter().map(|(c, w)| (c.name.clone(), total * w / sum, (total * w) % sum)).collect();
            let mut left = total - shares.iter().map(|s| s.1).sum::<i64>();
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2));
            for i in order {
                if left == 0 {
                    break;
                }
                shares[i].1 += 1;
                left -= 1;
            }
            shares.into_iter().filter(|s| s.1 > 0).map(|(n, r, _)| (n, Some(r))).collect()
        }
        (_, replicas) => weighted.iter().map(|(c, _)| (c.name.clone(), replicas)).collect(),
    };
    chosen.sort();
    chosen
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-05T09:02:00Z",
    })
}

/// How long `policy` lets a workload stay on a member tainted `key:NoExecute` (`None`: for ever), in
/// milliseconds: its `placement.clusterTolerations` (Karmada's taint manager evicts at once what does not
/// tolerate the taint).
fn toleration_ms(policy: &Value, key: &str) -> Option<u64> {
    let tolerations = policy["spec"]["placement"]["clusterTolerations"].as_array();
    let matching = tolerations.into_iter().flatten().find(|t| {
        let effect_ok = t["effect"].as_str().is_none_or(|e| e.is_empty() || e == "NoExecute");
        let key_ok = match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => t["key"].as_str().is_none_or(|k| k.is_empty() || k == key),
            _ => t["key"].as_str() == Some(key),
        };
        effect_ok && key_ok
    });
    match matching {
        None => Some(0),
        Some(t) => t["tolerationSeconds"].as_u64().map(|s| s * 1000),
    }
}

/// What one binding is scheduled from: its policy, the policy's placement and the template's replicas.
fn inputs(policy: &Value, replicas: Option<i64>) -> String {
    format!(
        "{}/{}:{}:{}",
        policy["metadata"]["namespace"].as_str().unwrap_or_default(),
        policy["metadata"]["name"].as_str().unwrap_or_default(),
        policy["spec"]["placement"],
        replicas.map(|r| r.to_string()).unwrap_or_default()
    )
}

fn replicas_of(t: &Template<'_>) -> Option<i64> {
    match t.kind {
        "Deployment" | "StatefulSet" => Some(t.object["spec"]["replicas"].as_i64().unwrap_or(1)),
        _ => None,
    }
}

fn binding_key(t: &Template<'_>) -> String {
    format!("{}/{}-{}", t.namespace, t.name, t.kind.to_ascii_lowercase())
}

/// Runs Karmada's controllers once over its etcd at `now`: ClusterTaintPolicies taint the Clusters that
/// are not Ready `NoExecute` (and untaint them once Ready); with `failover_on`, the taint manager evicts
/// workloads from members tainted `NoExecute` past their toleration; the scheduler places new bindings
/// and those whose inputs changed or that were evicted from a member.
pub(crate) fn reconcile(etcd: &mut KarmadaEtcd, clusters: &[ClusterState], failover_on: bool, now: u64) {
    // The cluster taint controller, from the ClusterTaintPolicies' taints (testbed's adds not-ready:NoExecute).
    let policy_taints: Vec<(String, String)> = etcd
        .taint_policies
        .values()
        .flat_map(|p| p["spec"]["taints"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| Some((t["key"].as_str()?.to_owned(), t["effect"].as_str()?.to_owned())))
        .collect();
    for c in clusters {
        let Some(record) = etcd.clusters.get_mut(&c.name) else { continue };
        if c.ready {
            record.taints.retain(|t| !t.by_policy);
        } else {
            for (key, effect) in &policy_taints {
                if !record.taints.iter().any(|t| t.key == *key && t.effect == *effect) {
                    record.taints.push(SimTaint {
                        key: key.clone(),
                        value: None,
                        effect: effect.clone(),
                        added_at_ms: now,
                        by_policy: true,
                    });
                }
            }
        }
    }
    let no_execute: BTreeMap<String, Vec<SimTaint>> = etcd
        .clusters
        .iter()
        .map(|(n, c)| (n.clone(), c.taints.iter().filter(|t| t.effect == "NoExecute").cloned().collect::<Vec<_>>()))
        .filter(|(_, t)| !t.is_empty())
        .collect();
    let tainted: Vec<String> = no_execute.keys().cloned().collect();

    let policies: Vec<&Value> = etcd
        .objects
        .values()
        .filter(|o| o["kind"] == "PropagationPolicy" && o["apiVersion"] == "policy.karmada.io/v1alpha1")
        .collect();
    let mut next: BTreeMap<String, Scheduled> = BTreeMap::new();
    for t in etcd.objects.values().filter_map(template) {
        let Some(policy) = claiming(&policies, &t) else { continue };
        let replicas = replicas_of(&t);
        let key = binding_key(&t);
        let wanted_inputs = inputs(policy, replicas);
        let mut record = etcd.scheduled.get(&key).cloned().filter(|r| r.inputs == wanted_inputs);
        // The taint manager: a member tainted NoExecute for longer than the policy tolerates loses it.
        let mut evicted_now = false;
        if let (Some(r), true) = (record.as_mut(), failover_on) {
            let before = r.clusters.len();
            let evict: Vec<String> = r
                .clusters
                .iter()
                .filter(|(member, _)| {
                    no_execute.get(member).into_iter().flatten().any(|taint| {
                        toleration_ms(policy, &taint.key)
                            .is_some_and(|tol| now.saturating_sub(taint.added_at_ms) >= tol)
                    })
                })
                .map(|(m, _)| m.clone())
                .collect();
            r.clusters.retain(|(m, _)| !evict.contains(m));
            r.evicted.extend(evict.into_iter().map(|m| (m, now)));
            evicted_now = r.clusters.len() != before;
        }
        // A Duplicated workload goes to a member that joined (or became Ready) since: Karmada's scheduler
        // looks again at the bindings a new Cluster matches.
        let duplicated =
            policy["spec"]["placement"]["replicaScheduling"]["replicaSchedulingType"].as_str() != Some("Divided");
        let grown = duplicated
            && record.as_ref().is_some_and(|r| {
                schedule(&policy["spec"]["placement"], replicas, clusters, &tainted).iter().any(|(m, _)| {
                    !r.clusters.iter().any(|(have, _)| have == m) && !r.evicted.iter().any(|(e, _)| e == m)
                })
            });
        let record = match record {
            Some(r) if !evicted_now && !grown && !r.clusters.is_empty() => r,
            Some(r) => {
                let clusters = schedule(&policy["spec"]["placement"], replicas, clusters, &tainted);
                Scheduled { inputs: wanted_inputs, clusters, evicted: r.evicted }
            }
            None => {
                let clusters = schedule(&policy["spec"]["placement"], replicas, clusters, &tainted);
                Scheduled { inputs: wanted_inputs, clusters, evicted: Vec::new() }
            }
        };
        next.insert(key, record);
    }
    etcd.scheduled = next;
}

/// How many of each binding's pods are Ready on each member, of how many: by (member, binding key).
pub(crate) type PodCounts = BTreeMap<(String, String), (i64, i64)>;

/// A workload's status on one member as Karmada's resource interpreter reflects it into `aggregatedStatus`
/// (karmada `pkg/resourceinterpreter/default/native/reflectstatus.go`: the replica counts of the kind's
/// status, zeros left out as the API's `omitempty` does).
fn reflected_status(kind: &str, ready: i64, total: i64) -> Option<Value> {
    let fields: Vec<(&str, i64)> = match kind {
        "Deployment" => vec![
            ("replicas", total),
            ("updatedReplicas", total),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
            ("unavailableReplicas", total - ready),
        ],
        "StatefulSet" => vec![
            ("replicas", total),
            ("readyReplicas", ready),
            ("currentReplicas", total),
            ("updatedReplicas", total),
            ("availableReplicas", ready),
        ],
        "DaemonSet" => vec![
            ("currentNumberScheduled", total),
            ("desiredNumberScheduled", total),
            ("numberReady", ready),
            ("numberAvailable", ready),
            ("numberUnavailable", total - ready),
            ("updatedNumberScheduled", total),
        ],
        _ => return None,
    };
    Some(Value::Object(fields.into_iter().filter(|(_, n)| *n != 0).map(|(k, n)| (k.to_owned(), json!(n))).collect()))
}

/// The ResourceBindings of the templates on the Karmada API server, as `reconcile` last placed them; `pods`
/// says how the members' pods of each fare.
pub(crate) fn bindings(etcd: &KarmadaEtcd, clusters: &[ClusterState], pods: &PodCounts) -> Vec<Value> {
    let policies: Vec<&Value> = etcd
        .objects
        .values()
        .filter(|o| o["kind"] == "PropagationPolicy" && o["apiVersion"] == "policy.karmada.io/v1alpha1")
        .collect();
    let mut out = Vec::new();
    for t in etcd.objects.values().filter_map(template) {
        let Some(policy) = claiming(&policies, &t) else { continue };
        let replicas = replicas_of(&t);
        let targets: Vec<(String, Option<i64>)> =
            etcd.scheduled.get(&binding_key(&t)).map(|s| s.clusters.clone()).unwrap_or_default();
        let scheduled = !targets.is_empty();
        let key = binding_key(&t);
        let aggregated: Vec<Value> = targets
            .iter()
            .map(|(name, share)| {
                let runs = clusters.iter().any(|c| c.name == *name && c.runs);
                let (ready, total) = pods.get(&(name.clone(), key.clone())).copied().unwrap_or((0, 0));
                // As many Ready as it has replicas there (a DaemonSet: one).
                let healthy = !runs_pods(t.kind) || ready >= share.unwrap_or(1);
                let health = match (runs, healthy) {
                    (false, _) => "Unknown",
                    (true, true) => "Healthy",
                    (true, false) => "Unhealthy",
                };
                let mut status = json!({"clusterName": name, "applied": runs, "health": health});
                if !runs {
                    status["appliedMessage"] = json!(format!("cluster {name} does not answer"));
                } else if let Some(reflected) =
                    runs_pods(t.kind).then(|| reflected_status(t.kind, ready, total)).flatten()
                {
                    status["status"] = reflected;
                }
                status
            })
            .collect();
        let fully_applied = scheduled && aggregated.iter().all(|a| a["applied"] == true);
        let ready = clusters.iter().filter(|c| c.ready).count();
        let message = if scheduled {
            "Binding has been scheduled successfully.".to_owned()
        } else {
            format!(
                "0/{} clusters are available: {} cluster(s) not ready or not selected.",
                clusters.len(),
                clusters.len() - ready.min(clusters.len())
            )
        };
        let name = format!("{}-{}", t.name, t.kind.to_ascii_lowercase());
        out.push(json!({
            "apiVersion": "work.karmada.io/v1alpha2",
            "kind": "ResourceBinding",
            "metadata": {
                "name": name,
                "namespace": t.namespace,
                "labels": {
                    "propagationpolicy.karmada.io/name": policy["metadata"]["name"],
                    "propagationpolicy.karmada.io/namespace": t.namespace,
                },
            },
            "spec": {
                "resource": {"apiVersion": t.api_version, "kind": t.kind, "namespace": t.namespace, "name": t.name},
                "replicas": replicas.unwrap_or(0),
                "clusters": targets.iter().map(|(n, r)| match r {
                    Some(r) => json!({"name": n, "replicas": r}),
                    None => json!({"name": n}),
                }).collect::<Vec<_>>(),
            },
            "status": {
                "conditions": [
                    condition("Scheduled", scheduled, if scheduled { "Success" } else { "NoClusterFit" }, &message),
                    condition("FullyApplied", fully_applied, if fully_applied { "FullyAppliedSuccess" } else { "FullyAppliedFailed" }, ""),
                ],
                "aggregatedStatus": aggregated,
            },
        }));
    }
    out
}

/// A pod a member should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its ResourceBinding's key (`namespace/name-kind`).
    pub owner: String,
    /// Its containers, init containers first.
    pub containers: Vec<ContainerSpec>,
}

/// A container of a pod template: `name`, `image`, `imagePullPolicy` (absent: the default) and the TCP
/// `containerPort`s it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub policy: Option<String>,
    pub init: bool,
    pub ports: Vec<u16>,
}

/// The containers of a pod template's spec, init containers first.
fn containers(spec: &Value) -> Vec<ContainerSpec> {
    [("initContainers", true), ("containers", false)]
        .into_iter()
        .flat_map(|(field, init)| {
            spec[field].as_array().into_iter().flatten().map(move |c| ContainerSpec {
                name: c["name"].as_str().unwrap_or_default().to_owned(),
                image: c["image"].as_str().unwrap_or_default().to_owned(),
                policy: c["imagePullPolicy"].as_str().map(str::to_owned),
                init,
                ports: c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["protocol"].as_str().is_none_or(|proto| proto == "TCP"))
                    .filter_map(|p| u16::try_from(p["containerPort"].as_u64()?).ok())
                    .collect(),
            })
        })
        .collect()
}

/// The pods each member runs for the scheduled templates, by member. A
/// Deployment's pods are named after a digest of its pod template (a changed template makes new pods), a
/// StatefulSet's by ordinal, a DaemonSet's one per member. What an eviction with `purgeMode: Never` left on
/// a member stays there.
pub(crate) fn pods(etcd: &KarmadaEtcd) -> BTreeMap<String, Vec<PodSpec>> {
    let policies: Vec<&Value> = etcd
        .objects
        .values()
        .filter(|o| o["kind"] == "PropagationPolicy" && o["apiVersion"] == "policy.karmada.io/v1alpha1")
        .collect();
    let mut out: BTreeMap<String, Vec<PodSpec>> = BTreeMap::new();
    for t in etcd.objects.values().filter_map(template).filter(|t| runs_pods(t.kind)) {
        let Some(record) = etcd.scheduled.get(&binding_key(&t)) else { continue };
        let labels: BTreeMap<String, String> = t.object["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default();
        let pod_containers = containers(&t.object["spec"]["template"]["spec"]);
        let owner = binding_key(&t);
        let hash = {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(t.object["spec"]["template"].to_string().as_bytes());
            d.iter().take(5).map(|b| format!("{b:02x}")).collect::<String>()
        };
        let never = claiming(&policies, &t)
            .is_some_and(|p| p["spec"]["failover"]["application"]["purgeMode"].as_str() == Some("Never"));
        let mut on: Vec<(String, i64)> = record.clusters.iter().map(|(m, r)| (m.clone(), r.unwrap_or(1))).collect();
        if never {
            on.extend(record.evicted.iter().map(|(m, _)| (m.clone(), 1)));
        }
        for (member, count) in on {
            for i in 0..count.max(0) {
                let name = match t.kind {
                    "StatefulSet" => format!("{}-{i}", t.name),
                    "DaemonSet" => format!("{}-{}", t.name, &hash[..5]),
                    _ => format!("{}-{}-{i}", t.name, &hash[..10]),
                };
                out.entry(member.clone()).or_default().push(PodSpec {
                    namespace: t.namespace.to_owned(),
                    name,
                    labels: labels.clone(),
                    owner: owner.clone(),
                    containers: pod_containers.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{ClusterPki, ClusterRecord, SyncMode};

    fn clusters(states: &[(&str, bool)]) -> Vec<ClusterState> {
        states.iter().map(|(n, ok)| ClusterState { name: (*n).into(), ready: *ok, runs: *ok }).collect()
    }

    fn etcd(placement: Value, members: &[&str]) -> KarmadaEtcd {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "namespace": "default"}, "spec": {"replicas": 4,
            "template": {"metadata": {"labels": {"app": "app"}}}}});
        let policy = json!({"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}], "placement": placement}});
        KarmadaEtcd {
            pki: ClusterPki::generate(),
            tokens: Default::default(),
            clusters: members
                .iter()
                .map(|m| {
                    let record = ClusterRecord {
                        sync_mode: SyncMode::Push,
                        api_endpoint: None,
                        id: (*m).into(),
                        labels: Default::default(),
                        appears_at_ms: None,
                        taints: vec![],
                    };
                    ((*m).to_owned(), record)
                })
                .collect(),
            taint_policies: Default::default(),
            scheduled: Default::default(),
            objects: [("d".to_owned(), deployment), ("p".to_owned(), policy)].into(),
        }
    }

    fn placed(e: &KarmadaEtcd, c: &[ClusterState]) -> Vec<(String, i64)> {
        let b = bindings(e, c, &PodCounts::new());
        b[0]["spec"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c["replicas"].as_i64().unwrap_or(-1)))
            .collect()
    }

    const THREE: &[&str] = &["member1", "member2", "member3"];

    fn seed_three() -> Value {
        // Seed 003's policy, as Karmada's CRD takes it: a weight of 0 is left out of the list (weights start at 1).
        json!({
            "clusterAffinity": {"clusterNames": ["member1", "member2", "member3"]},
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
                "weightPreference": {"staticWeightList": [{"targetCluster": {"clusterNames": ["member1"]}, "weight": 1}]}},
            "spreadConstraints": [{"spreadByField": "cluster", "maxGroups": 1, "minGroups": 1}],
            "clusterTolerations": [{"key": "cluster.karmada.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]})
    }

    #[test]
    fn duplicated_gives_every_ready_named_member_all_replicas() {
        let mut e = etcd(
            json!({"clusterAffinity": {"clusterNames": ["member1", "member2"]}, "replicaScheduling": {"replicaSchedulingType": "Duplicated"}}),
            THREE,
        );
        let all = clusters(&[("member1", true), ("member2", true), ("member3", true)]);
        reconcile(&mut e, &all, false, 0);
        assert_eq!(placed(&e, &all), [("member1".into(), 4), ("member2".into(), 4)]);
        assert_eq!(bindings(&e, &all, &ready(&e, 4))[0]["status"]["aggregatedStatus"][0]["health"], "Healthy");
        assert_eq!(pods(&e)["member1"].len(), 4);
    }

    /// Every member's pods of every binding counted, `ready` of them Ready.
    fn ready(e: &KarmadaEtcd, ready: i64) -> PodCounts {
        let mut counts = PodCounts::new();
        for (member, specs) in pods(e) {
            for p in specs {
                let c = counts.entry((member.clone(), p.owner)).or_default();
                c.1 += 1;
                c.0 = (c.0 + 1).min(ready);
            }
        }
        counts
    }

    #[test]
    fn a_member_whose_pods_are_not_all_ready_reports_the_workload_unhealthy_with_its_replica_counts() {
        let mut e = etcd(json!({"clusterAffinity": {"clusterNames": ["member1"]}}), THREE);
        let all = clusters(&[("member1", true), ("member2", true), ("member3", true)]);
        reconcile(&mut e, &all, false, 0);
        let specs = &pods(&e)["member1"];
        assert_eq!(specs[0].owner, "default/app-deployment");
        let status = |counts: &PodCounts| bindings(&e, &all, counts)[0]["status"]["aggregatedStatus"][0].clone();
        let none = status(&ready(&e, 0));
        assert_eq!(none["health"], "Unhealthy");
        assert_eq!(none["applied"], true);
        // Zeros are left out, as the API's omitempty does.
        assert_eq!(none["status"], json!({"replicas": 4, "updatedReplicas": 4, "unavailableReplicas": 4}), "{none}");
        assert!(none.get("appliedMessage").is_none(), "Karmada carries no reason for the health: {none}");
        assert_eq!(status(&ready(&e, 3))["health"], "Unhealthy");
        let all_ready = status(&ready(&e, 4));
        assert_eq!(all_ready["health"], "Healthy");
        assert_eq!(all_ready["status"]["readyReplicas"], 4);
    }

    #[test]
    fn a_no_execute_taint_moves_seed_threes_workload_after_its_toleration_only_with_failover_on() {
        let all = clusters(&[("member1", true), ("member2", true), ("member3", true)]);
        let mut e = etcd(seed_three(), THREE);
        reconcile(&mut e, &all, true, 1_000);
        assert_eq!(placed(&e, &all), [("member1".into(), 4)]);
        let taint = SimTaint {
            key: "cluster.karmada.io/not-ready".into(),
            value: None,
            effect: "NoExecute".into(),
            added_at_ms: 10_000,
            by_policy: false,
        };
        e.clusters.get_mut("member1").unwrap().taints.push(taint);
        // Within the toleration, and with the gate off at any time, it stays.
        reconcile(&mut e, &all, true, 69_999);
        assert_eq!(placed(&e, &all), [("member1".into(), 4)]);
        let mut off = e.clone();
        reconcile(&mut off, &all, false, 500_000);
        assert_eq!(placed(&off, &all), [("member1".into(), 4)]);
        // Past it, it moves to the next member (weights of 0 all around count as equal: the first by name).
        reconcile(&mut e, &all, true, 70_000);
        assert_eq!(placed(&e, &all), [("member2".into(), 4)]);
        assert_eq!(e.scheduled.values().next().unwrap().evicted, [("member1".to_owned(), 70_000)]);
        // The taint goes: nothing moves back by itself.
        e.clusters.get_mut("member1").unwrap().taints.clear();
        reconcile(&mut e, &all, true, 80_000);
        assert_eq!(placed(&e, &all), [("member2".into(), 4)]);
    }

    #[test]
    fn a_taint_policy_taints_a_member_that_is_not_ready_and_untaints_it_when_ready() {
        let mut e = etcd(seed_three(), THREE);
        e.taint_policies.insert(
            "testbed-failover".into(),
            json!({"spec": {"taints": [{"key": "cluster.karmada.io/not-ready", "effect": "NoExecute"}]}}),
        );
        let down = clusters(&[("member1", false), ("member2", true), ("member3", true)]);
        reconcile(&mut e, &down, true, 5_000);
        assert_eq!(e.clusters["member1"].taints.len(), 1);
        assert!(e.clusters["member1"].taints[0].by_policy);
        let up = clusters(&[("member1", true), ("member2", true), ("member3", true)]);
        reconcile(&mut e, &up, true, 6_000);
        assert!(e.clusters["member1"].taints.is_empty());
    }

    #[test]
    fn divided_weights_use_the_largest_remainder() {
        let placement = json!({
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
                "weightPreference": {"staticWeightList": [
                    {"targetCluster": {"clusterNames": ["member1"]}, "weight": 2},
                    {"targetCluster": {"clusterNames": ["member2"]}, "weight": 1}]}}});
        let all = clusters(&[("member1", true), ("member2", true), ("member3", true)]);
        let mut e = etcd(placement, THREE);
        reconcile(&mut e, &all, false, 0);
        assert_eq!(placed(&e, &all), [("member1".into(), 3), ("member2".into(), 1)]);
    }

    #[test]
    fn nothing_ready_is_not_scheduled_until_a_member_is() {
        let mut e = etcd(json!({}), &["member1"]);
        let down = clusters(&[("member1", false)]);
        reconcile(&mut e, &down, false, 0);
        assert_eq!(bindings(&e, &down, &PodCounts::new())[0]["status"]["conditions"][0]["status"], "False");
        assert!(placed(&e, &down).is_empty());
        let up = clusters(&[("member1", true)]);
        reconcile(&mut e, &up, false, 1);
        assert_eq!(placed(&e, &up), [("member1".into(), 4)]);
    }
}
