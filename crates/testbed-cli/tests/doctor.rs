//! Issue 14, item 3: `testbed doctor` on the simulated machine (every layer simulated): a converged lab
//! passes; a pod that cannot pull its image is reported with the kubelet's reason and events; an application
//! proxy whose pod is not Ready is told apart from one whose proxy is at fault. Nothing here ran against a real
//! LXD or a real cluster: tests/real_lxd_doctor.rs runs the LXD part for real.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use support::{PROMETHEUS_FILE as FILE, PROMETHEUS_MANIFEST as MANIFEST};

fn testbed(dir: &Path, args: &[&str]) -> Output {
    support::simulated(dir, args)
}

fn text(out: &Output) -> String {
    support::said(out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A converged lab of [`FILE`].
fn converged() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("testbed.toml"), FILE).unwrap();
    std::fs::write(d.join("prometheus.yaml"), MANIFEST).unwrap();
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    dir
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The findings of `doctor --json` that are about `check` (on `member`).
fn findings<'a>(doc: &'a Value, check: &str, member: &str) -> Vec<&'a Value> {
    doc["findings"].as_array().unwrap().iter().filter(|f| f["check"] == check && f["member"] == member).collect()
}

#[test]
fn a_converged_lab_passes_then_a_pod_that_cannot_pull_is_reported_with_the_kubelets_reason() {
    let dir = converged();
    let d = dir.path();
    let doctor = testbed(d, &["doctor"]);
    assert_eq!(doctor.status.code(), Some(0), "{}", text(&doctor));
    assert!(text(&doctor).contains("Simulated: all layers"), "a simulated answer says so: {}", text(&doctor));
    insta::assert_snapshot!("converged", stdout(&doctor));

    // Another lab whose Deployment names an image no registry has: its pod waits with ErrImagePull.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("testbed.toml"), FILE).unwrap();
    let bad = MANIFEST.replace("quay.io/prometheus/prometheus:v3.5.0", "localhost:32000/prometheus:v9.9.9");
    std::fs::write(d.join("prometheus.yaml"), bad).unwrap();
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(!apply.status.success(), "{}", text(&apply));

    let doctor = testbed(d, &["doctor"]);
    let out = stdout(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    // The pod: the kubelet's reason and message, and the events `kubectl describe` shows.
    let pod_line = out
        .lines()
        .find(|l| l.contains("pods") && l.contains("monitoring/prometheus-"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(pod_line.contains("FAIL"), "{pod_line}");
    assert!(pod_line.contains("container prometheus waits: ErrImagePull: rpc error: code = NotFound"), "{pod_line}");
    assert!(
        pod_line.contains("events: Failed: Failed to pull image \"localhost:32000/prometheus:v9.9.9\": rpc error"),
        "{pod_line}"
    );
    assert!(pod_line.contains("Failed: Error: ErrImagePull"), "{pod_line}");
    assert!(out.contains("list it in [[images]]"), "the next step: {out}");
    // The proxy: its pod is at fault, not the proxy.
    assert!(
        out.contains("testbed adds it once its pod is Ready, and its pod is not (")
            && out.contains("the pod is at fault, not the proxy"),
        "{out}"
    );
    // member2 runs nothing of it and is healthy.
    let doc = json(&testbed(d, &["doctor", "--json", "member2"]));
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["members"], serde_json::json!(["member2"]));
    assert_eq!(doc["summary"]["fail"], 0, "{doc:#}");
    assert!(doc["findings"].as_array().unwrap().iter().all(|f| f["member"].is_null() || f["member"] == "member2"));
    insta::assert_snapshot!("pod_cannot_pull", out);
}

/// A proxy that forwards to an address its pod no longer has is the proxy's fault: the pod is Ready, and the
/// finding says so, with `testbed apply` as the repair.
#[test]
fn an_app_proxy_whose_pod_moved_is_told_apart_from_a_pod_that_is_not_ready() {
    let dir = converged();
    let d = dir.path();
    // The pod is recreated at another address; the proxy still forwards to the old one.
    let state = d.join(".testbed/sim.json");
    let mut world: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let pods = world["world"]["inside"]["member1"]["microk8s"]["pods"].as_object_mut().unwrap();
    let pod = pods.values_mut().next().unwrap();
    let old = pod["ip"].as_str().unwrap().to_owned();
    let new = format!("{}.{}", old.rsplit_once('.').unwrap().0, 200);
    pod["ip"] = Value::from(new.clone());
    std::fs::write(&state, world.to_string()).unwrap();

    let doctor = testbed(d, &["doctor", "--json"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    let doc = json(&doctor);
    let proxy = findings(&doc, "app_proxy", "member1");
    assert_eq!(proxy.len(), 1, "{doc:#}");
    let p = proxy[0];
    assert_eq!((p["status"].as_str(), p["subject"].as_str()), (Some("fail"), Some("prometheus")));
    let seen = p["seen"].as_str().unwrap();
    assert!(
        seen.contains(&format!("it forwards to tcp:{old}:9090, but its pod"))
            && seen.contains(&format!("is at {new} now")),
        "{seen}"
    );
    assert_eq!(p["next"], "`testbed apply` points it at the pod again");
    assert_eq!(p["simulated"], true);
    // The pod itself is fine: the pods check passes.
    let pods = findings(&doc, "pods", "member1");
    assert_eq!(pods.iter().map(|f| f["status"].as_str().unwrap()).collect::<Vec<_>>(), ["pass"], "{doc:#}");

    // apply re-points it, and doctor passes again.
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let doctor = testbed(d, &["doctor"]);
    assert_eq!(doctor.status.code(), Some(0), "{}", text(&doctor));
}

/// Where member1's Prometheus container listens, changed in the simulated world as if its application were
/// configured so: the proxy forwards to the pod's address and port 9090 as before.
fn listen_at(dir: &Path, was: &str, at: &str) {
    let state = dir.join(".testbed/sim.json");
    let mut world: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let pods = world["world"]["inside"]["member1"]["microk8s"]["pods"].as_object_mut().unwrap();
    let pod = pods.values_mut().next().unwrap();
    assert_eq!(pod["containers"][0]["listens"], serde_json::json!([was]), "{pod:#}");
    pod["containers"][0]["listens"] = serde_json::json!([at]);
    std::fs::write(&state, world.to_string()).unwrap();
}

/// The port-forward test: a proxy that gets no answer while its pod is Ready where it forwards. When the pod
/// answers a port-forward (its application listens on the pod's loopback only), the way to the pod is at
/// fault; when a port-forward is refused inside the pod too (it listens on another port), the application is,
/// in containerd's words. The pod itself is Ready both times: the pods check passes.
#[test]
fn an_app_proxy_without_an_answer_is_told_apart_from_its_pod_by_a_port_forward() {
    let dir = converged();
    let d = dir.path();
    let proxy_of = |doc: &Value| -> Value {
        let proxy = findings(doc, "app_proxy", "member1");
        assert_eq!(proxy.len(), 1, "{doc:#}");
        assert_eq!((proxy[0]["status"].as_str(), proxy[0]["subject"].as_str()), (Some("fail"), Some("prometheus")));
        let pods = findings(doc, "pods", "member1");
        assert_eq!(pods.iter().map(|f| f["status"].as_str().unwrap()).collect::<Vec<_>>(), ["pass"], "{doc:#}");
        proxy[0].clone()
    };

    // The application listens on 127.0.0.1 only: a port-forward reaches it, the proxy does not.
    listen_at(d, "0.0.0.0:9090", "127.0.0.1:9090");
    let doctor = testbed(d, &["doctor", "--json", "member1"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    let p = proxy_of(&json(&doctor));
    let seen = p["seen"].as_str().unwrap();
    assert!(seen.starts_with("no answer through 127.0.0.1:9091 (accepted, then closed without a byte back)"), "{seen}");
    assert!(seen.contains("and answers directly (a request through a port-forward to its port 9090 got"), "{seen}");
    assert!(seen.ends_with(":9090 is at fault, not the pod"), "{seen}");
    let next = p["next"].as_str().unwrap();
    assert!(next.contains("listens on 127.0.0.1 only") && next.contains("make it listen on 0.0.0.0"), "{next}");
    // As a person reads it.
    let doctor = testbed(d, &["doctor", "member1"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    insta::assert_snapshot!("proxy_answered_only_through_a_port_forward", stdout(&doctor));

    // It listens on another port: a port-forward to 9090 is refused inside the pod, and that is what is said.
    listen_at(d, "127.0.0.1:9090", "0.0.0.0:9095");
    let doctor = testbed(d, &["doctor", "--json", "member1"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    let p = proxy_of(&json(&doctor));
    let seen = p["seen"].as_str().unwrap();
    assert!(seen.contains("does not answer directly either: a port-forward to its port 9090 was refused inside the pod (error forwarding port 9090 to pod "), "{seen}");
    assert!(
        seen.contains("failed to connect to localhost:9090 inside namespace")
            && seen.ends_with("connect: connection refused): the application is at fault, not the proxy"),
        "{seen}"
    );
    let next = p["next"].as_str().unwrap();
    assert!(next.starts_with("nothing listens on port 9090 in the pod") && next.contains("`pod.port`"), "{next}");
    assert_eq!(p["simulated"], true);
}

#[test]
fn an_unknown_member_is_a_usage_error_that_lists_the_members() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("testbed.toml"), FILE).unwrap();
    std::fs::write(dir.path().join("prometheus.yaml"), MANIFEST).unwrap();
    let out = testbed(dir.path(), &["doctor", "member9"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("the file has no member \"member9\""), "{said}");
    assert!(said.contains("its members are: member1, member2"), "{said}");
    assert!(out.stdout.is_empty(), "no findings: {said}");
}

/// Nothing built (not even LXD on the simulated host): the host's LXD check fails with the next step, and
/// each member's checks are skipped, not failed again.
#[test]
fn a_lab_not_built_yet_fails_at_the_containers_and_skips_what_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("testbed.toml"), FILE).unwrap();
    std::fs::write(dir.path().join("prometheus.yaml"), MANIFEST).unwrap();
    let out = testbed(dir.path(), &["doctor", "--json", "member1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&out);
    let lxd: Vec<&Value> = doc["findings"].as_array().unwrap().iter().filter(|f| f["check"] == "lxd").collect();
    assert_eq!(lxd[0]["status"], "fail", "{doc:#}");
    assert!(lxd[0]["next"].as_str().unwrap().contains("`testbed plan` installs it if it is missing"), "{doc:#}");
    for check in ["container", "api_proxy", "host_port", "tls", "api", "nodes", "pods", "app_proxy"] {
        let f = findings(&doc, check, "member1");
        assert_eq!(f.len(), 1, "{check}: {doc:#}");
        assert_eq!(f[0]["status"], "skipped", "{check}: {doc:#}");
    }
}
