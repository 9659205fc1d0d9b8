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
//! without replicas go to every chosen member. A member reports what it runs healthy while its MicroK8s
//! runs.
//!
//! This is a simulation: placement by cluster names, static weights and spread only; no resource
//! estimator, no dynamic weights, no OverridePolicy, no failover yet. It never reports a real placement.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use testbed_config::manifests::{placeable, runs_pods};

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
fn schedule(placement: &Value, replicas: Option<i64>, clusters: &[ClusterState]) -> Vec<(String, Option<i64>)> {
    let affinity = &placement["clusterAffinity"];
    let named: Option<Vec<&str>> =
        affinity["clusterNames"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect());
    let excluded: Vec<&str> =
        affinity["exclude"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let candidates: Vec<&ClusterState> = clusters
        .iter()
        .filter(|c| c.ready)
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

/// The ResourceBindings for `objects` (the Karmada API server's objects, any kind) over `clusters`.
pub(crate) fn bindings(objects: &BTreeMap<String, Value>, clusters: &[ClusterState]) -> Vec<Value> {
    let policies: Vec<&Value> = objects
        .values()
        .filter(|o| o["kind"] == "PropagationPolicy" && o["apiVersion"] == "policy.karmada.io/v1alpha1")
        .collect();
    let mut out = Vec::new();
    for t in objects.values().filter_map(template) {
        let Some(policy) = claiming(&policies, &t) else { continue };
        let replicas = runs_pods(t.kind).then(|| {
            if t.kind == "DaemonSet" {
                1
            } else {
                t.object["spec"]["replicas"].as_i64().unwrap_or(1)
            }
        });
        let targets = schedule(&policy["spec"]["placement"], replicas.filter(|_| t.kind != "DaemonSet"), clusters);
        let scheduled = !targets.is_empty();
        let aggregated: Vec<Value> = targets
            .iter()
            .map(|(name, _)| {
                let runs = clusters.iter().any(|c| c.name == *name && c.runs);
                let mut status = json!({
                    "clusterName": name,
                    "applied": runs,
                    "health": if runs { "Healthy" } else { "Unknown" },
                });
                if !runs {
                    status["appliedMessage"] = json!(format!("cluster {name} does not answer"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters(states: &[(&str, bool)]) -> Vec<ClusterState> {
        states.iter().map(|(n, ok)| ClusterState { name: (*n).into(), ready: *ok, runs: *ok }).collect()
    }

    fn objects(placement: Value) -> BTreeMap<String, Value> {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "namespace": "default"}, "spec": {"replicas": 4}});
        let policy = json!({"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}], "placement": placement}});
        [("d".to_owned(), deployment), ("p".to_owned(), policy)].into()
    }

    fn placed(b: &[Value]) -> Vec<(String, i64)> {
        b[0]["spec"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c["replicas"].as_i64().unwrap_or(-1)))
            .collect()
    }

    #[test]
    fn duplicated_gives_every_ready_named_member_all_replicas() {
        let b = bindings(
            &objects(
                json!({"clusterAffinity": {"clusterNames": ["member1", "member2"]}, "replicaScheduling": {"replicaSchedulingType": "Duplicated"}}),
            ),
            &clusters(&[("member1", true), ("member2", true), ("member3", true)]),
        );
        assert_eq!(placed(&b), [("member1".into(), 4), ("member2".into(), 4)]);
        assert_eq!(b[0]["status"]["aggregatedStatus"][0]["health"], "Healthy");
    }

    #[test]
    fn static_weights_with_a_spread_of_one_follow_seed_three_and_move_when_the_heaviest_is_not_ready() {
        let placement = json!({
            "clusterAffinity": {"clusterNames": ["member1", "member2", "member3"]},
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
                "weightPreference": {"staticWeightList": [
                    {"targetCluster": {"clusterNames": ["member1"]}, "weight": 1},
                    {"targetCluster": {"clusterNames": ["member2"]}, "weight": 0},
                    {"targetCluster": {"clusterNames": ["member3"]}, "weight": 0}]}},
            "spreadConstraints": [{"spreadByField": "cluster", "maxGroups": 1, "minGroups": 1}]});
        let all = clusters(&[("member1", true), ("member2", true), ("member3", true)]);
        assert_eq!(placed(&bindings(&objects(placement.clone()), &all)), [("member1".into(), 4)]);
        let member1_down = clusters(&[("member1", false), ("member2", true), ("member3", true)]);
        assert_eq!(placed(&bindings(&objects(placement), &member1_down)), [("member2".into(), 4)]);
    }

    #[test]
    fn divided_weights_use_the_largest_remainder() {
        let placement = json!({
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
                "weightPreference": {"staticWeightList": [
                    {"targetCluster": {"clusterNames": ["member1"]}, "weight": 2},
                    {"targetCluster": {"clusterNames": ["member2"]}, "weight": 1}]}}});
        let b = bindings(&objects(placement), &clusters(&[("member1", true), ("member2", true), ("member3", true)]));
        assert_eq!(placed(&b), [("member1".into(), 3), ("member2".into(), 1)]);
    }

    #[test]
    fn nothing_ready_is_not_scheduled() {
        let b = bindings(&objects(json!({})), &clusters(&[("member1", false)]));
        assert_eq!(b[0]["status"]["conditions"][0]["status"], "False");
        assert!(placed(&b).is_empty());
    }
}
