//! What `testbed drill failover` asks of Karmada and does to it: whether cluster failover is switched on,
//! a member's `Cluster` (Ready, taints), the drill's taint put on and taken off, and where each of the
//! file's workloads runs now (its ResourceBindings, and its pods on a member).
//!
//! The drill's taint is the one a failed member gets: `cluster.karmada.io/not-ready`, effect `NoExecute`,
//! which testbed's ClusterTaintPolicy adds while a Cluster is not Ready and which the PropagationPolicies
//! testbed writes for a workload with `failover` tolerate for its `toleration_seconds`. Karmada's own
//! failover e2e tests taint a Cluster the same way (`test/e2e/suites/base/failover_test.go` adds
//! `NotReadyTaintTemplate`, a `not-ready:NoExecute` taint, and tolerates it). Its value, [`DRILL_VALUE`],
//! tells it from the policy's (which has none): the drill removes only its own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use testbed_config::manifests::runs_pods;
pub use testbed_kube::{ClusterStatus, ClusterTaint};
use testbed_plan::workload::PROPAGATION_POLICY;
use testbed_plan::{Address, Kind};
use testbed_provider::ProviderError;

use crate::workloads::match_labels;
use crate::{failover_switched_on, KarmadaProvider, CONTROLLER_MANAGER};

/// The key of the drill's taint: Karmada's for a cluster that is not ready.
pub const DRILL_TAINT_KEY: &str = "cluster.karmada.io/not-ready";
/// The value of the drill's taint: what tells it from the ClusterTaintPolicy's.
pub const DRILL_VALUE: &str = "testbed-drill";

/// The taint the drill puts on a member's Cluster.
pub fn drill_taint() -> ClusterTaint {
    ClusterTaint::new(DRILL_TAINT_KEY, Some(DRILL_VALUE), "NoExecute")
}

/// How long a workload's policy lets it stay on a member with a taint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tolerated {
    /// Not at all: Karmada evicts it at once (no toleration matches the taint).
    Not,
    /// For this long (`tolerationSeconds`).
    For(Duration),
    /// For ever (a matching toleration without `tolerationSeconds`).
    Forever,
}

/// One of the file's workloads that runs pods, as Karmada has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadPlacement {
    /// The workload's name (`[[workloads]] name`).
    pub workload: String,
    /// How long its policies tolerate the drill's taint (the shortest of its objects').
    pub tolerated: Tolerated,
    /// Whether a policy of it tolerates the taint for a while: the workload fails over after its
    /// toleration (what `failover` in the file writes, or a policy file that says the same).
    pub fails_over: bool,
    /// The members its objects that run pods are scheduled to (their ResourceBindings' `spec.clusters`),
    /// each with whether Karmada reports every one of them healthy there.
    pub members: BTreeMap<String, bool>,
}

impl WorkloadPlacement {
    /// Whether it is scheduled on `member`.
    pub fn on(&self, member: &str) -> bool {
        self.members.contains_key(member)
    }

    /// Whether it is healthy on `member` (scheduled there and healthy).
    pub fn healthy_on(&self, member: &str) -> bool {
        self.members.get(member).copied().unwrap_or(false)
    }
}

/// How long `policy`'s `clusterTolerations` tolerate `taint`, as Karmada's taint manager reads them
/// (`corev1.Toleration.ToleratesTaint`: the effect empty or the taint's; `Exists` with the key empty or the
/// taint's, `Equal` (the default) with the key and value the taint's).
pub fn tolerated(policy: &Value, taint: &ClusterTaint) -> Tolerated {
    let tolerations = policy["spec"]["placement"]["clusterTolerations"].as_array().into_iter().flatten();
    let mut best = Tolerated::Not;
    for t in tolerations {
        let effect_ok = t["effect"].as_str().is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t["key"].as_str().unwrap_or_default();
        let matches = match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => key.is_empty() || key == taint.key,
            "Equal" => {
                key == taint.key
                    && t["value"].as_str().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
            _ => false,
        };
        if !(effect_ok && matches) {
            continue;
        }
        let this = match t["tolerationSeconds"].as_i64() {
            Some(s) => Tolerated::For(Duration::from_secs(u64::try_from(s).unwrap_or(0))),
            None => Tolerated::Forever,
        };
        best = best.max(this);
    }
    best
}

impl KarmadaProvider {
    fn drill_address() -> Address {
        Address::new(Kind::KarmadaControlPlane, &["control_plane"])
    }

    /// Whether karmada-controller-manager runs with cluster failover switched on (the `Failover` feature
    /// gate and no-execute taint eviction), read from its Deployment on the host cluster.
    pub async fn failover_is_on(&self) -> Result<bool, ProviderError> {
        let host = self.require_host(&Self::drill_address())?;
        let report = testbed_kube::control_plane(&host).await.map_err(|e| {
            ProviderError::unavailable("the Karmada control plane on the host cluster could not be read")
                .with_hint("check the host MicroK8s (`microk8s status`) and run `testbed status`")
                .caused_by(e)
        })?;
        let command = report.get(CONTROLLER_MANAGER).map(|c| c.command.as_slice()).unwrap_or_default();
        Ok(failover_switched_on(command))
    }

    /// The `Cluster` of `member` in Karmada, `None` when it is not registered.
    pub async fn member_cluster(&self, member: &str) -> Result<Option<ClusterStatus>, ProviderError> {
        let karmada = self.karmada_client(&Self::drill_address())?;
        testbed_kube::cluster(&karmada, member).await.map_err(|e| unreadable(e, &format!("Karmada cluster {member}")))
    }

    /// Puts `taint` on `member`'s Cluster (nothing changes when it is there); the Cluster as it is then.
    pub async fn taint_member(&self, member: &str, taint: &ClusterTaint) -> Result<ClusterStatus, ProviderError> {
        let karmada = self.karmada_client(&Self::drill_address())?;
        testbed_kube::add_cluster_taint(&karmada, member, taint).await.map_err(|e| {
            ProviderError::failed(format!("could not taint Karmada cluster {member} {taint}"))
                .with_hint("check the Karmada API with `testbed status`, then run the drill again")
                .caused_by(e)
        })
    }

    /// Takes `taint` off `member`'s Cluster (nothing changes when it is not there); the Cluster as it is then.
    pub async fn untaint_member(&self, member: &str, taint: &ClusterTaint) -> Result<ClusterStatus, ProviderError> {
        let karmada = self.karmada_client(&Self::drill_address())?;
        testbed_kube::remove_cluster_taint(&karmada, member, taint).await.map_err(|e| {
            ProviderError::failed(format!("could not remove the taint {taint} from Karmada cluster {member}"))
                .with_hint(self.untaint_by_hand(member, taint))
                .caused_by(e)
        })
    }

    /// Where each of the file's workloads that run pods is now, from their ResourceBindings, with how long
    /// their policies tolerate `taint`.
    pub async fn placements(&self, taint: &ClusterTaint) -> Result<Vec<WorkloadPlacement>, ProviderError> {
        let karmada = self.karmada_client(&Self::drill_address())?;
        let bindings =
            testbed_kube::resource_bindings(&karmada).await.map_err(|e| unreadable(e, "Karmada's ResourceBindings"))?;
        let mut out: BTreeMap<String, WorkloadPlacement> = BTreeMap::new();
        let objects = self.cx.workload_objects.values();
        let policies: Vec<_> = objects.clone().filter(|o| o.kind.kind == PROPAGATION_POLICY.kind).collect();
        for o in objects.filter(|o| runs_pods(o.kind.kind)) {
            // The policy that claims it: its workload's, in its namespace (testbed writes one per namespace; a
            // policy file is the workload's too).
            let policy = policies.iter().find(|p| p.workload == o.workload && p.namespace == o.namespace);
            let tolerated = policy.map_or(Tolerated::Not, |p| tolerated(&p.object, taint));
            let entry = out.entry(o.workload.clone()).or_insert_with(|| WorkloadPlacement {
                workload: o.workload.clone(),
                tolerated,
                fails_over: false,
                members: BTreeMap::new(),
            });
            entry.tolerated = entry.tolerated.min(tolerated);
            entry.fails_over |= matches!(tolerated, Tolerated::For(_));
            let binding = bindings.iter().find(|b| {
                b.resource.kind == o.kind.kind && b.resource.namespace == o.namespace && b.resource.name == o.name
            });
            for t in binding.map(|b| b.clusters.as_slice()).unwrap_or_default() {
                let healthy = binding.and_then(|b| b.health_on(&t.name)).is_some_and(|h| h.is_healthy());
                let ok = entry.members.entry(t.name.clone()).or_insert(true);
                *ok &= healthy;
            }
        }
        Ok(out.into_values().collect())
    }

    /// How many of `workload`'s pods `member` runs, and how many of them are Ready, as the member's API says
    /// (its kubeconfig for people); `None` when the member cannot be asked.
    pub async fn pods_on(&self, member: &str, workload: &str) -> Option<(usize, usize)> {
        let client = self.member_client(member)?;
        let (mut ready, mut total) = (0, 0);
        let objects = self.cx.workload_objects.values().filter(|o| o.workload == workload && runs_pods(o.kind.kind));
        for o in objects {
            let (Some(namespace), selector) = (o.namespace.as_deref(), match_labels(&o.object)) else { continue };
            if selector.is_empty() {
                continue;
            }
            let pods = testbed_kube::pods(&client, namespace, &selector).await.ok()?;
            total += pods.len();
            ready += pods.iter().filter(|p| p.ready).count();
        }
        Some((ready, total))
    }
}

impl KarmadaProvider {
    /// What to run by hand to take the drill's taint off `member`'s Cluster (karmadactl's `taint`, which
    /// removes the taints with the key and effect).
    pub fn untaint_by_hand(&self, member: &str, taint: &ClusterTaint) -> String {
        format!(
            "run `karmadactl --kubeconfig {} taint clusters {member} {}:{}-`, or `testbed drill failover {member}` again, which takes a taint of an earlier drill off first",
            self.karmada_kubeconfig.display(),
            taint.key,
            taint.effect
        )
    }
}

fn unreadable(e: testbed_kube::KubeObserveError, what: &str) -> ProviderError {
    ProviderError::unavailable(format!("{what} could not be read"))
        .with_hint("check the Karmada API with `testbed status`")
        .caused_by(e)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(tolerations: Value) -> Value {
        json!({"spec": {"placement": {"clusterTolerations": tolerations}}})
    }

    #[test]
    fn the_drill_taint_is_tolerated_as_karmadas_taint_manager_reads_tolerations() {
        let taint = drill_taint();
        // What testbed writes for `failover = { toleration_seconds = 60 }`: Exists on the key, any value.
        let written = policy(json!([
            {"key": "cluster.karmada.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            {"key": "cluster.karmada.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        ]));
        assert_eq!(tolerated(&written, &taint), Tolerated::For(Duration::from_secs(60)));
        // No toleration: evicted at once; another key or effect does not match.
        assert_eq!(tolerated(&json!({}), &taint), Tolerated::Not);
        let other =
            policy(json!([{"key": "fail-test", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}]));
        assert_eq!(tolerated(&other, &taint), Tolerated::Not);
        let no_schedule =
            policy(json!([{"key": "cluster.karmada.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]));
        assert_eq!(tolerated(&no_schedule, &taint), Tolerated::Not);
        // Equal compares the value too (absent: empty), and no tolerationSeconds is for ever.
        let equal =
            policy(json!([{"key": "cluster.karmada.io/not-ready", "value": "testbed-drill", "effect": "NoExecute"}]));
        assert_eq!(tolerated(&equal, &taint), Tolerated::Forever);
        let other_value =
            policy(json!([{"key": "cluster.karmada.io/not-ready", "effect": "NoExecute", "tolerationSeconds": 5}]));
        assert_eq!(tolerated(&other_value, &taint), Tolerated::Not);
        // An empty key with Exists tolerates every taint.
        let all = policy(json!([{"operator": "Exists", "tolerationSeconds": 30}]));
        assert_eq!(tolerated(&all, &taint), Tolerated::For(Duration::from_secs(30)));
    }
}
