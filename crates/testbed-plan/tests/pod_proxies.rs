//! Proxies that follow a pod: their `connect` is where observation found the pod, a placeholder until it
//! finds one, and a pod that moved is an update that shows both addresses; they come after the workloads
//! placed on their member.

mod common;

use testbed_config::Config;
use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{plan, Address, ObservedState, Op};

const PROXY: &str = "proxy.member1.prometheus";

/// Two members, a workload on member1 only and one on every member, and a pod proxy into member1 beside a
/// proxy to a fixed address.
fn lab() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: monitoring\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: {name}\n        image: docker.io/library/busybox:1.36\n"
        )
    };
    std::fs::write(dir.path().join("prometheus.yaml"), manifest("prometheus")).unwrap();
    std::fs::write(dir.path().join("web.yaml"), manifest("web")).unwrap();
    std::fs::write(dir.path().join("other.yaml"), manifest("other")).unwrap();
    let text = r#"
[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442

[[workloads]]
name = "prometheus"
manifests = ["prometheus.yaml"]
members = ["member1"]

[[workloads]]
name = "web"
manifests = ["web.yaml"]

[[workloads]]
name = "other"
manifests = ["other.yaml"]
members = ["member2"]

[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
pod = { namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus", port = 9090 }

[[proxies]]
name = "fixed"
member = "member1"
host_port = 9092
target = "tcp:10.1.33.99:80"
"#;
    let path = dir.path().join("testbed.toml");
    std::fs::write(&path, text).unwrap();
    let config = testbed_config::load(&path).unwrap_or_else(|e| panic!("{}", e.lines().join("\n")));
    (dir, config)
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn connect(d: &DesiredState, a: &str) -> String {
    d.resources[&addr(a)].spec["connect"].clone()
}

fn found_at(ip: &str) -> ObservedState {
    let mut o = ObservedState::default();
    o.pod_addresses.insert(PROXY.into(), format!("tcp:{ip}:9090"));
    o
}

#[test]
fn the_address_is_where_observation_found_the_pod() {
    let (_dir, c) = lab();
    let d = desired::build(&c, &found_at("10.1.33.11"));
    assert_eq!(connect(&d, PROXY), "tcp:10.1.33.11:9090");
    assert_eq!(d.resources[&addr(PROXY)].spec["pod"], "monitoring/app.kubernetes.io/name=prometheus:9090");
    // The fixed proxy keeps its target and follows nothing.
    assert_eq!(connect(&d, "proxy.member1.fixed"), "tcp:10.1.33.99:80");
    assert!(!d.resources[&addr("proxy.member1.fixed")].spec.contains_key("pod"));
}

#[test]
fn without_a_ready_pod_the_address_is_a_placeholder_that_says_why() {
    let (_dir, c) = lab();
    let d = desired::build(&c, &ObservedState::default());
    assert_eq!(connect(&d, PROXY), "pod monitoring/app.kubernetes.io/name=prometheus:9090 (no Ready pod yet)");
    assert!(desired::is_pod_placeholder(&connect(&d, PROXY)));
    let mut failed = ObservedState::default();
    failed.pod_lookup_failures.insert(PROXY.into(), "member1's API did not answer".into());
    let d = desired::build(&c, &failed);
    assert_eq!(
        connect(&d, PROXY),
        "pod monitoring/app.kubernetes.io/name=prometheus:9090 (not looked up: member1's API did not answer)"
    );
}

#[test]
fn a_pod_proxy_comes_after_the_workloads_placed_on_its_member() {
    let (_dir, c) = lab();
    let d = desired::build(&c, &ObservedState::default());
    let mut deps: Vec<String> = d.resources[&addr(PROXY)].depends_on.iter().map(ToString::to_string).collect();
    deps.sort();
    // `other` runs on member2 only: the proxy into member1 does not wait for it.
    assert_eq!(deps, ["lxd_instance.member1", "workload.prometheus", "workload.web"]);
    let fixed: Vec<String> =
        d.resources[&addr("proxy.member1.fixed")].depends_on.iter().map(ToString::to_string).collect();
    assert_eq!(fixed, ["lxd_instance.member1"]);

    let p = plan(&d, &ObservedState::default()).unwrap();
    let order: Vec<String> = p.actions().iter().map(|a| a.address.to_string()).collect();
    let at = |a: &str| order.iter().position(|x| x == a).unwrap_or_else(|| panic!("{a} not in {order:?}"));
    assert!(at("workload.prometheus") < at(PROXY) && at("workload.web") < at(PROXY), "{order:?}");
    let create = p.actions().into_iter().find(|a| a.address.as_str() == PROXY).unwrap();
    assert_eq!(create.op, Op::Create);
}

#[test]
fn a_pod_recreated_at_another_address_is_an_update_showing_both() {
    let (_dir, c) = lab();
    let before = desired::build(&c, &found_at("10.1.33.11"));
    let mut observed = common::converged(&before);
    assert!(plan(&before, &observed).unwrap().is_empty(), "converged while the pod stays");

    // The pod is recreated: observation finds it at another address.
    observed.pod_addresses = found_at("10.1.33.12").pod_addresses;
    let after = desired::build(&c, &observed);
    let p = plan(&after, &observed).unwrap();
    let actions = p.actions();
    assert_eq!(actions.len(), 1, "{:?}", actions.iter().map(|a| &a.address).collect::<Vec<_>>());
    let a = actions[0];
    assert_eq!((a.address.as_str(), a.op), (PROXY, Op::Update));
    assert_eq!(a.reason, r#"connect: "tcp:10.1.33.11:9090" → "tcp:10.1.33.12:9090""#);

    // No Ready pod now: the update says so, and apply finds the pod itself.
    observed.pod_addresses.clear();
    let gone = desired::build(&c, &observed);
    let p = plan(&gone, &observed).unwrap();
    let a = p.actions()[0];
    assert_eq!(
        a.reason,
        r#"connect: "tcp:10.1.33.11:9090" → "pod monitoring/app.kubernetes.io/name=prometheus:9090 (no Ready pod yet)""#
    );
}

/// A proxy whose file entry changes from a fixed target to a pod is an update that says it now follows the
/// pod.
#[test]
fn a_target_proxy_turned_into_a_pod_proxy_is_an_update() {
    let (dir, c) = lab();
    let text = std::fs::read_to_string(dir.path().join("testbed.toml")).unwrap();
    let fixed = text.replace(
        r#"pod = { namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus", port = 9090 }"#,
        r#"target = "tcp:10.1.33.11:9090""#,
    );
    std::fs::write(dir.path().join("testbed.toml"), fixed).unwrap();
    let old = testbed_config::load(&dir.path().join("testbed.toml")).unwrap();
    let observed = common::converged(&desired::build(&old, &ObservedState::default()));
    let mut now = observed.clone();
    now.pod_addresses = found_at("10.1.33.11").pod_addresses;
    let d = desired::build(&c, &now);
    let p = plan(&d, &now).unwrap();
    let a = p.actions()[0];
    assert_eq!((a.address.as_str(), a.op), (PROXY, Op::Update));
    assert_eq!(a.reason, r#"pod: unset → "monitoring/app.kubernetes.io/name=prometheus:9090""#);
}
