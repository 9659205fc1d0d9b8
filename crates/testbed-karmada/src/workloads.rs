//! Workloads on the Karmada API server: the objects testbed applied (found by their `testbed/owner` label),
//! each wanted object whoever made it, and whether Karmada has placed them and the members run them
//! healthy (their ResourceBindings).
//!
//! Every object is written with server-side apply (field manager `testbed`, forced: testbed owns the fields
//! it writes, and an edit by hand of one of them is drift it undoes). An object is deleted only when it
//! carries this testbed's label; an object of the same name without it is someone else's, which the plan
//! reports as a conflict and apply never touches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed_config::manifests::{runs_pods, PlaceableKind, PLACEABLE_KINDS};
use testbed_kube::{ApiConfig, Binding, KubeClient, ObjectRef};
use testbed_plan::workload::{flatten, object_key, parse_key, OWNER_LABEL, PROPAGATION_POLICY, WORKLOAD_LABEL};
use testbed_plan::{Action, Address, Health, Kind, Observed, Owner, Resource, Spec};
use testbed_provider::{ActionLog, ProviderError};

use crate::{failed, shown, KarmadaProvider};

/// Every kind testbed applies for workloads, the policies included.
fn kinds() -> impl Iterator<Item = PlaceableKind> {
    PLACEABLE_KINDS.iter().copied().chain([PROPAGATION_POLICY])
}

pub(crate) fn object_ref(kind: &PlaceableKind, namespace: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef {
        group: kind.group().to_owned(),
        version: kind.version().to_owned(),
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    }
}

/// An object's labels.
fn labels(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// What one object of a workload needs to be done: applied on every member it is placed on, and healthy
/// there when it runs pods.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    /// Members with the object, and whether it is done there.
    members: Vec<(String, Result<(), String>)>,
    /// Why the object is not placed at all, if it is not.
    unplaced: Option<String>,
}

/// Where each object of a workload is, from its ResourceBinding (`None`: not propagated, e.g. a Namespace,
/// which Karmada's namespace controller copies to every member without a binding).
fn placement_of(kind: &str, namespace: Option<&str>, name: &str, bindings: &[Binding]) -> Option<Placed> {
    let namespace = namespace?;
    let binding = bindings.iter().find(|b| {
        b.resource.kind == kind && b.resource.namespace.as_deref() == Some(namespace) && b.resource.name == name
    });
    let Some(b) = binding else {
        return Some(Placed { members: vec![], unplaced: Some("no ResourceBinding yet: no policy selects it".into()) });
    };
    if let Some(s) = b.scheduled.as_ref().filter(|s| !s.is_true()) {
        let why: Vec<&str> =
            [s.reason.as_deref(), s.message.as_deref()].into_iter().flatten().filter(|t| !t.is_empty()).collect();
        return Some(Placed { members: vec![], unplaced: Some(format!("not scheduled: {}", why.join(": "))) });
    }
    if b.clusters.is_empty() {
        return Some(Placed { members: vec![], unplaced: Some("not scheduled to any member yet".into()) });
    }
    let members = b
        .clusters
        .iter()
        .map(|t| {
            let status = b.aggregated.iter().find(|a| a.cluster == t.name);
            let done = match status {
                None => Err("not applied yet".to_owned()),
                Some(a) if !a.applied => {
                    Err(format!("not applied{}", a.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()))
                }
                Some(a) if runs_pods(kind) && a.health != "Healthy" => {
                    Err(format!("{}{}", a.health.to_lowercase(), ready_count(a.status.as_ref())))
                }
                Some(_) => Ok(()),
            };
            (t.name.clone(), done)
        })
        .collect();
    Some(Placed { members, unplaced: None })
}

/// " (0/2 ready)": the Ready replicas of the status Karmada reflects from a member (a Deployment's or a
/// StatefulSet's `readyReplicas` of `replicas`, a DaemonSet's `numberReady` of `desiredNumberScheduled`;
/// Karmada leaves zeros out); empty without one.
fn ready_count(status: Option<&Value>) -> String {
    let Some(s) = status else { return String::new() };
    let count = |key: &str| s[key].as_i64().unwrap_or(0);
    let (ready, of) = if s.get("desiredNumberScheduled").is_some() {
        (count("numberReady"), count("desiredNumberScheduled"))
    } else if s.get("replicas").is_some() {
        (count("readyReplicas"), count("replicas"))
    } else {
        return String::new();
    };
    format!(" ({ready}/{of} ready)")
}

/// `app=nginx,tier=web`: the `spec.selector.matchLabels` of a Deployment, StatefulSet or DaemonSet.
pub(crate) fn match_labels(object: &Value) -> String {
    object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// Whether a kubelet reason is about getting the image.
fn about_the_image(reason: &str) -> bool {
    matches!(reason, "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" | "ErrImageInspect")
}

/// A workload's health and where it runs, from the placement of its objects.
/// The observed spec key of a workload, followed by a member's name, that says whether the workload runs
/// there healthy ([`HEALTHY`]) or not ([`NOT_HEALTHY`]).
pub const PLACED_ON_MEMBER: &str = "on.";
pub const HEALTHY: &str = "healthy";
pub const NOT_HEALTHY: &str = "not healthy";

fn workload_health(objects: &[(String, Option<Placed>)]) -> (Health, BTreeMap<String, bool>) {
    let mut problems = Vec::new();
    let mut running: BTreeMap<String, bool> = BTreeMap::new();
    for (key, placed) in objects {
        let Some(p) = placed else { continue };
        if let Some(why) = &p.unplaced {
            problems.push(format!("{key}: {why}"));
        }
        for (member, done) in &p.members {
            let ok = running.entry(member.clone()).or_insert(true);
            if let Err(why) = done {
                *ok = false;
                problems.push(format!("{key} on {member}: {why}"));
            }
        }
    }
    let health = if problems.is_empty() { Health::Ok } else { Health::NeedsRepair(problems.join("; ")) };
    (health, running)
}

/// Where a workload runs, from its observed spec's `on.MEMBER` keys, for people: `member1 (healthy),
/// member2 (not healthy)`, or `nowhere yet`.
pub fn placed_on(spec: &Spec) -> String {
    let on: Vec<String> = spec
        .iter()
        .filter_map(|(key, word)| Some(format!("{} ({word})", key.strip_prefix(PLACED_ON_MEMBER)?)))
        .collect();
    if on.is_empty() {
        "nowhere yet".to_owned()
    } else {
        on.join(", ")
    }
}

impl KarmadaProvider {
    /// The workload objects testbed applied, every wanted one whoever made it, and each workload's health.
    pub(crate) async fn observe_workloads(
        &self,
        karmada: &KubeClient,
        wanted: &[Resource],
    ) -> Result<Vec<Observed>, ProviderError> {
        let unreadable = |e| {
            crate::state_unknown(
                "the Karmada API server's objects could not be listed".into(),
                "check that the Karmada API answers: `kubectl --kubeconfig <karmada-apiserver.config> get deployments -A`"
                    .into(),
            )
            .caused_by(e)
        };
        let mut out: BTreeMap<Address, Observed> = BTreeMap::new();
        let selector = format!("{OWNER_LABEL}={}", self.testbed);
        for kind in kinds() {
            let live =
                testbed_kube::list_objects(karmada, kind.group(), kind.version(), kind.kind, kind.plural, &selector)
                    .await
                    .map_err(unreadable)?;
            for object in live {
                let l = labels(&object);
                let Some(workload) = l.get(WORKLOAD_LABEL) else { continue };
                let namespace = object["metadata"]["namespace"].as_str();
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let key = object_key(kind.kind, namespace, name);
                let address = Address::new(Kind::WorkloadObject, &[workload, &key]);
                out.insert(
                    address.clone(),
                    Observed::new(address, Kind::WorkloadObject, None, Owner::Testbed, flatten(kind.kind, &object)),
                );
            }
        }
        // A wanted object that carries no label of this testbed's: someone else's, unless it is absent.
        let unlabelled: Vec<&Resource> =
            wanted.iter().filter(|r| r.kind == Kind::WorkloadObject && !out.contains_key(&r.address)).collect();
        for r in unlabelled {
            let Some((kind, namespace, name)) = parse_key(&r.name) else { continue };
            let found = testbed_kube::get_object(karmada, &object_ref(&kind, namespace.as_deref(), &name))
                .await
                .map_err(unreadable)?;
            if let Some(object) = found {
                let owner = match labels(&object).get(OWNER_LABEL) {
                    Some(other) => Owner::Other(format!(
                        "{} {name} carries {OWNER_LABEL}={other}: another testbed applied it",
                        kind.kind
                    )),
                    None => Owner::Other(format!(
                        "{} {name} exists on the Karmada API server without the label {OWNER_LABEL}: testbed did not apply it",
                        kind.kind
                    )),
                };
                out.insert(
                    r.address.clone(),
                    Observed::new(r.address.clone(), Kind::WorkloadObject, None, owner, flatten(kind.kind, &object)),
                );
            }
        }

        // Workloads: present once any of their objects is; healthy once every object is placed and done.
        let mut workloads: BTreeSet<String> = wanted
            .iter()
            .filter(|r| r.kind == Kind::Workload)
            .filter_map(|r| r.address.as_str().split_once('.').map(|(_, w)| w.to_owned()))
            .collect();
        for o in out.values().filter(|o| o.owner == Owner::Testbed) {
            if let Some(w) = o.address.as_str().split('.').nth(1) {
                workloads.insert(w.to_owned());
            }
        }
        if workloads.is_empty() {
            return Ok(out.into_values().collect());
        }
        let bindings = testbed_kube::resource_bindings(karmada).await.map_err(unreadable)?;
        let mut result: Vec<Observed> = Vec::new();
        for w in &workloads {
            let prefix = format!("{}.{w}.", Kind::WorkloadObject.prefix());
            let owned: Vec<&Observed> =
                out.values().filter(|o| o.owner == Owner::Testbed && o.address.as_str().starts_with(&prefix)).collect();
            if owned.is_empty() {
                continue;
            }
            // The wanted objects when the file has the workload, else the ones testbed left.
            let keys: Vec<String> = {
                let wanted_keys: Vec<String> = wanted
                    .iter()
                    .filter(|r| r.kind == Kind::WorkloadObject && r.address.as_str().starts_with(&prefix))
                    .map(|r| r.name.clone())
                    .collect();
                if wanted_keys.is_empty() {
                    owned.iter().map(|o| o.address.as_str()[prefix.len()..].to_owned()).collect()
                } else {
                    wanted_keys
                }
            };
            let placed: Vec<(String, Option<Placed>)> = keys
                .iter()
                .filter_map(|key| {
                    let (kind, namespace, name) = parse_key(key)?;
                    if kind.kind == PROPAGATION_POLICY.kind {
                        return None;
                    }
                    Some((key.clone(), placement_of(kind.kind, namespace.as_deref(), &name, &bindings)))
                })
                .collect();
            let (health, members) = workload_health(&placed);
            let address = Address::new(Kind::Workload, &[w]);
            let mut spec = Spec::new();
            for (member, healthy) in members {
                let word = if healthy { HEALTHY } else { NOT_HEALTHY };
                spec.insert(format!("{PLACED_ON_MEMBER}{member}"), word.into());
            }
            let mut o = Observed::new(address, Kind::Workload, None, Owner::Testbed, spec);
            o.health = health;
            result.push(o);
        }
        result.extend(out.into_values());
        Ok(result)
    }

    /// Server-side apply of one workload object, as the catalogue's context holds it.
    pub(crate) async fn apply_object(
        &self,
        action: &Action,
        address: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let a = &action.address;
        let Some(o) = self.cx.workload_objects.get(address) else {
            return Err(ProviderError::failed(format!("{a}: the file holds no such object (an internal error)")));
        };
        let karmada = self.karmada_client(a)?;
        let r = object_ref(&o.kind, o.namespace.as_deref(), &o.name);
        // Someone else's object of the same name is never taken over, even if it appeared after the plan.
        if let Some(live) = testbed_kube::get_object(&karmada, &r).await.map_err(|e| {
            failed(format!("{a}: cannot read {r}"), "check that the Karmada API answers, then apply again").caused_by(e)
        })? {
            if labels(&live).get(OWNER_LABEL) != Some(&self.testbed) {
                return Err(ProviderError::precondition(format!(
                    "{a}: {r} exists and testbed did not apply it (no {OWNER_LABEL}={} label)",
                    self.testbed
                ))
                .with_hint("rename the object in the manifest, or delete the existing one yourself"));
            }
        }
        testbed_kube::apply_object(&karmada, &r, &o.object).await.map_err(|e| {
            failed(
                format!("{a}: the Karmada API server refused {r}"),
                format!("check the manifest ({}): the server's message says which field", o.source),
            )
            .caused_by(e)
        })?;
        log.note(format!("applied {r} (server-side apply, field manager testbed)"));
        Ok(())
    }

    /// Whether the object at `path` is this testbed's: `false` when it is gone (nothing to delete); an
    /// error when it is someone else's.
    pub(crate) async fn object_owned(&self, action: &Action, path: &str) -> Result<bool, ProviderError> {
        let a = &action.address;
        let karmada = self.karmada_client(a)?;
        let key = a.as_str().splitn(3, '.').nth(2).unwrap_or_default();
        let Some((kind, namespace, name)) = parse_key(key) else {
            return Err(ProviderError::failed(format!("{a}: {path} is not an object testbed applies")));
        };
        let r = object_ref(&kind, namespace.as_deref(), &name);
        let live = testbed_kube::get_object(&karmada, &r).await.map_err(|e| {
            failed(format!("{a}: cannot read {r}"), "apply again once the Karmada API answers").caused_by(e)
        })?;
        match live {
            None => Ok(false),
            Some(live) if labels(&live).get(OWNER_LABEL) == Some(&self.testbed) => Ok(true),
            Some(_) => Err(ProviderError::precondition(format!(
                "{a}: {r} is not testbed's (no {OWNER_LABEL}={} label): it is left alone",
                self.testbed
            ))),
        }
    }

    pub(crate) async fn delete_object(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let a = &action.address;
        let karmada = self.karmada_client(a)?;
        let key = a.as_str().splitn(3, '.').nth(2).unwrap_or_default();
        let Some((kind, namespace, name)) = parse_key(key) else {
            return Err(ProviderError::failed(format!("{a}: not an object testbed applies")));
        };
        let r = object_ref(&kind, namespace.as_deref(), &name);
        let existed = testbed_kube::delete_object(&karmada, &r).await.map_err(|e| {
            failed(format!("{a}: cannot delete {r}"), "apply again once the Karmada API answers").caused_by(e)
        })?;
        log.note(if existed { format!("deleted {r}") } else { format!("{r} was gone already") });
        Ok(())
    }

    /// Waits until every object of `workload` is placed and done on its members.
    pub(crate) async fn wait_workload(
        &self,
        action: &Action,
        workload: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let a = &action.address;
        let karmada = self.karmada_client(a)?;
        let wanted: Vec<Resource> = self
            .cx
            .workload_objects
            .iter()
            .filter(|(_, o)| o.workload == workload)
            .map(|(address, o)| Resource {
                address: Address::parse(address).unwrap_or_else(|| Address::new(Kind::WorkloadObject, &[workload])),
                kind: Kind::WorkloadObject,
                member: None,
                name: o.key(),
                spec: Spec::new(),
                depends_on: vec![],
            })
            .chain(std::iter::once(Resource {
                address: Address::new(Kind::Workload, &[workload]),
                kind: Kind::Workload,
                member: None,
                name: workload.to_owned(),
                spec: Spec::new(),
                depends_on: vec![],
            }))
            .collect();
        let start = Instant::now();
        loop {
            let seen = self.observe_workloads(&karmada, &wanted).await;
            let this = seen.as_ref().ok().and_then(|s| s.iter().find(|o| o.address == *a).cloned());
            let last = match this.as_ref().map(|o| &o.health) {
                Some(Health::Ok) => {
                    let placed = this.as_ref().map(|o| placed_on(&o.spec)).unwrap_or_default();
                    log.note(format!("{workload} runs on {placed} after {}", shown(start.elapsed())));
                    return Ok(());
                }
                Some(Health::NeedsRepair(why)) => why.clone(),
                None => match &seen {
                    Err(e) => e.report().to_string(),
                    Ok(_) => "none of its objects is on the Karmada API server".into(),
                },
            };
            if start.elapsed() >= self.wait {
                // Karmada says only "unhealthy": the members' kubelets say why.
                let (reasons, images) = self.pod_reasons(&karmada, workload).await;
                let why =
                    if reasons.is_empty() { String::new() } else { format!("; the pods say: {}", reasons.join("; ")) };
                let dir = &self.cx.kubeconfig_dir;
                let hint = if images {
                    format!(
                        "a member could not pull an image: an image of the local registry is named localhost:{}/NAME:TAG and must be in [[images]] (the plan shows it as image.NAME), and a side-loaded one must be in that member (sideload = true); `kubectl --kubeconfig {dir}/MEMBER.config describe pod POD` shows the kubelet's events",
                        self.cx.registry_port
                    )
                } else {
                    format!(
                        "see `kubectl --kubeconfig {} get resourcebindings -A` and, on the member, `kubectl --kubeconfig {dir}/MEMBER.config describe pod` of the pods that are not Ready",
                        self.karmada_kubeconfig.display()
                    )
                };
                return Err(failed(
                    format!("{a}: not scheduled and healthy after {}: {last}{why}", shown(self.wait)),
                    hint,
                ));
            }
            log.progress(last.clone());
            tokio::time::sleep(self.poll).await;
        }
    }
}

impl KarmadaProvider {
    /// A client of `member`'s API through its kubeconfig for people (`KUBECONFIG_DIR/MEMBER.config`, testbed's
    /// own file, read where it is); `None` when there is none to use.
    pub(crate) fn member_client(&self, member: &str) -> Option<KubeClient> {
        let text = std::fs::read_to_string(Path::new(&self.cx.kubeconfig_dir).join(format!("{member}.config"))).ok()?;
        let config = ApiConfig::from_kubeconfig_yaml(&text, None)
            .ok()?
            .with_timeouts(Duration::from_secs(5), Duration::from_secs(10))
            .with_network(self.network.clone());
        self.clients.for_kubeconfig(&text, &config).ok()
    }

    /// Why the pods of `workload`'s objects are not Ready on the members where Karmada does not report them
    /// healthy, as each member's kubelet says (the pods' `state.waiting`), one entry per reason and message
    /// naming the pods (`MEMBER/POD`); and whether a reason is about getting an image. A member that cannot
    /// be asked is passed over: this only adds to what Karmada said.
    async fn pod_reasons(&self, karmada: &KubeClient, workload: &str) -> (Vec<String>, bool) {
        let Ok(bindings) = testbed_kube::resource_bindings(karmada).await else { return (Vec::new(), false) };
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut images = false;
        let objects = self.cx.workload_objects.values().filter(|o| o.workload == workload && runs_pods(o.kind.kind));
        for o in objects {
            let (Some(namespace), selector) = (o.namespace.as_deref(), match_labels(&o.object)) else { continue };
            if selector.is_empty() {
                continue;
            }
            let Some(b) = bindings.iter().find(|b| {
                b.resource.kind == o.kind.kind
                    && b.resource.namespace.as_deref() == Some(namespace)
                    && b.resource.name == o.name
            }) else {
                continue;
            };
            for t in &b.clusters {
                if b.health_on(&t.name).is_some_and(|h| h.is_healthy()) {
                    continue;
                }
                let Some(client) = self.member_client(&t.name) else { continue };
                let Ok(pods) = testbed_kube::pods(&client, namespace, &selector).await else { continue };
                for p in pods.iter().filter(|p| !p.ready) {
                    for w in &p.waiting {
                        images |= about_the_image(&w.reason);
                        let why = match &w.message {
                            Some(m) => format!("{}: {m}", w.reason),
                            None => w.reason.clone(),
                        };
                        grouped.entry(why).or_default().push(format!("{}/{}", t.name, p.name));
                    }
                }
            }
        }
        let reasons = grouped.into_iter().map(|(why, pods)| format!("{why} (pods {})", pods.join(", "))).collect();
        (reasons, images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed_kube::{BindingResource, ClusterHealth, TargetCluster};

    #[test]
    fn a_workload_is_healthy_only_when_every_placed_member_reports_it() {
        let binding = |health: &str| Binding {
            namespace: "default".into(),
            name: "nginx-deployment".into(),
            generation: None,
            resource: BindingResource {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("default".into()),
                name: "nginx".into(),
            },
            replicas: Some(2),
            scheduler_observed_generation: None,
            clusters: vec![
                TargetCluster { name: "member1".into(), replicas: Some(2) },
                TargetCluster { name: "member2".into(), replicas: Some(2) },
            ],
            scheduled: None,
            fully_applied: None,
            aggregated: vec![
                ClusterHealth {
                    cluster: "member1".into(),
                    applied: true,
                    health: "Healthy".into(),
                    message: None,
                    status: None,
                },
                ClusterHealth {
                    cluster: "member2".into(),
                    applied: true,
                    health: health.into(),
                    message: None,
                    status: None,
                },
            ],
        };
        let placed = |b: &Binding| placement_of("Deployment", Some("default"), "nginx", std::slice::from_ref(b));
        // The observed spec's `on.MEMBER` keys, and the sentence made of them.
        let on = |members: &BTreeMap<String, bool>| {
            let spec: Spec = members
                .iter()
                .map(|(m, ok)| (format!("{PLACED_ON_MEMBER}{m}"), if *ok { HEALTHY } else { NOT_HEALTHY }.to_owned()))
                .collect();
            placed_on(&spec)
        };
        let (health, members) = workload_health(&[("deployment/default/nginx".into(), placed(&binding("Healthy")))]);
        assert_eq!(health, Health::Ok);
        assert_eq!(on(&members), "member1 (healthy), member2 (healthy)");
        assert_eq!(members, BTreeMap::from([("member1".into(), true), ("member2".into(), true)]));
        let (health, members) = workload_health(&[("deployment/default/nginx".into(), placed(&binding("Unhealthy")))]);
        assert_eq!(health, Health::NeedsRepair("deployment/default/nginx on member2: unhealthy".into()));
        assert_eq!(on(&members), "member1 (healthy), member2 (not healthy)");
        assert_eq!(members, BTreeMap::from([("member1".into(), true), ("member2".into(), false)]));
        let (health, _) = workload_health(&[(
            "deployment/default/nginx".into(),
            placement_of("Deployment", Some("default"), "nginx", &[]),
        )]);
        assert!(matches!(health, Health::NeedsRepair(ref why) if why.contains("no ResourceBinding")), "{health:?}");
        assert_eq!(on(&BTreeMap::new()), "nowhere yet");
    }

    #[test]
    fn an_unhealthy_member_says_how_many_replicas_are_ready_as_karmada_reflects_them() {
        let deployment = serde_json::json!({"replicas": 2, "updatedReplicas": 2, "unavailableReplicas": 2});
        assert_eq!(ready_count(Some(&deployment)), " (0/2 ready)");
        let daemon_set = serde_json::json!({"desiredNumberScheduled": 1, "numberReady": 1});
        assert_eq!(ready_count(Some(&daemon_set)), " (1/1 ready)");
        assert_eq!(ready_count(Some(&serde_json::json!({}))), "");
        assert_eq!(ready_count(None), "");
        let object = serde_json::json!({"spec": {"selector": {"matchLabels": {"app": "nginx", "tier": "web"}}}});
        assert_eq!(match_labels(&object), "app=nginx,tier=web");
    }
}
