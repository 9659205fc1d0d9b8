//! Issue 13, item 4: a proxy that follows a pod, through the binary on the simulated machine (every layer
//! simulated): the first apply creates the workload and then the proxy at its pod's address, a pod
//! recreated at another address is a planned update with both addresses, and apply re-points the proxy. The
//! simulated member API serves the pods the simulated Karmada runs there; the simulated host answers a request
//! through the proxy when a Ready pod is at the address the device connects to. Nothing here ran against a
//! real LXD or a real cluster: crates/testbed-lxd/tests/real_lxd.rs and tests/real_lxd_cli.rs do the real LXD
//! part.

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

fn world(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".testbed/sim.json")).unwrap()).unwrap()
}

fn save(dir: &Path, world: &Value) {
    std::fs::write(dir.join(".testbed/sim.json"), serde_json::to_string(world).unwrap()).unwrap();
}

/// The pods member1 runs, by `namespace/name`.
fn pods(world: &mut Value) -> &mut serde_json::Map<String, Value> {
    world["world"]["inside"]["member1"]["microk8s"]["pods"].as_object_mut().expect("member1's pods")
}

/// The `connect` of member1's proxy device `prometheus` in the simulated LXD daemon.
fn connect(world: &Value) -> String {
    world["world"]["lxd_daemon"]["instances"]["member1"]["devices"]["prometheus"]["connect"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("no proxy device: {}", world["world"]["lxd_daemon"]["instances"]["member1"]["devices"])
        })
        .to_owned()
}

#[test]
fn a_pod_proxy_follows_its_pod_to_a_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("testbed.toml"), FILE).unwrap();
    std::fs::write(d.join("prometheus.yaml"), MANIFEST).unwrap();

    // Nothing runs yet: the dry run shows the pod looked up when the proxy is applied, then the device and
    // the wait for an answer.
    let dry = testbed(d, &["apply", "--dry-run"]);
    let shown = text(&dry);
    assert!(dry.status.success(), "{shown}");
    let block = &shown[shown.find("+ proxy.member1.prometheus (create)").unwrap_or_else(|| panic!("{shown}"))..];
    let lookup =
        block.find("GET /api/v1/namespaces/monitoring/pods?labelSelector=app.kubernetes.io%2Fname%3Dprometheus");
    let device = block.find("connect tcp:<pod-ip>:9090");
    let answer = block.find("wait for an answer through 127.0.0.1:9091");
    assert!(lookup.is_some() && lookup < device && device < answer, "{block}");

    // One apply creates the workload and then the proxy, at the address of the pod it runs.
    let apply = testbed(d, &["apply", "--yes"]);
    let out = text(&apply);
    assert!(apply.status.success(), "{out}");
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s:?} not in {out}"));
    assert!(at("workload.prometheus: created") < at("proxy.member1.prometheus: creating"), "{out}");
    assert!(out.contains("proxy.member1.prometheus: created"), "{out}");
    let mut w = world(d);
    let (key, first) = {
        let pods = pods(&mut w);
        assert_eq!(pods.len(), 1, "{pods:?}");
        let (key, pod) = pods.iter().next().unwrap();
        (key.clone(), pod["ip"].as_str().unwrap().to_owned())
    };
    assert!(key.starts_with("monitoring/prometheus-"), "{key}");
    assert_eq!(connect(&w), format!("tcp:{first}:9090"));
    let converged = testbed(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "{}", text(&converged));

    // The pod is recreated under its name at another address (as a StatefulSet's pod is; the simulated
    // world gives a pod deleted outright the member's next free address, which may be its old one).
    let second = {
        let (net, last) = first.rsplit_once('.').unwrap();
        format!("{net}.{}", last.parse::<u8>().unwrap() + 100)
    };
    pods(&mut w)[&key]["ip"] = Value::String(second.clone());
    save(d, &w);
    let plan = testbed(d, &["plan", "--detailed-exitcode"]);
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    let update = format!("connect: \"tcp:{first}:9090\" → \"tcp:{second}:9090\"");
    let line = shown.lines().find(|l| l.contains("proxy.member1.prometheus")).unwrap_or_else(|| panic!("{shown}"));
    assert!(line.contains("update") && line.contains(&update), "{shown}");
    assert!(shown.contains("Plan: 0 to create, 1 to update, 0 to replace, 0 to destroy."), "{shown}");

    // Apply re-points the proxy; the request through it is answered by the new pod.
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(connect(&world(d)), format!("tcp:{second}:9090"));
    let converged = testbed(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "{}", text(&converged));
}

/// A selector that matches none of the pods the member runs: apply waits for a Ready pod, then fails the
/// proxy saying what it saw and where to look; everything else is applied.
#[test]
fn a_pod_proxy_without_a_matching_pod_fails_saying_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("testbed.toml"), FILE.replace("name=prometheus\"", "name=grafana\"")).unwrap();
    std::fs::write(d.join("prometheus.yaml"), MANIFEST).unwrap();
    let apply = testbed(d, &["apply", "--yes"]);
    let out = text(&apply);
    assert_eq!(apply.status.code(), Some(1), "{out}");
    assert!(out.contains("Apply: 35 done, 1 failed, 0 skipped."), "{out}");
    assert!(
        out.contains("no Ready pod in namespace monitoring of member1 matches app.kubernetes.io/name=grafana after"),
        "{out}"
    );
    assert!(out.contains("no pod matches"), "{out}");
    assert!(out.contains("get pods -l app.kubernetes.io/name=grafana -o wide"), "{out}");
    let w = world(d);
    let devices = &w["world"]["lxd_daemon"]["instances"]["member1"]["devices"];
    assert!(devices.get("prometheus").is_none(), "no device without a pod to point it at: {devices}");
}

/// A proxy whose `pod.port` is not where the application listens: apply waits for an answer through the
/// proxy, then asks the pod directly through a port-forward, and says that nothing listens on that port
/// inside the pod, in the kubelet's words, and that the file's port is what to change. With the port fixed,
/// apply converges.
#[test]
fn a_pod_proxy_to_a_port_nothing_listens_on_fails_with_what_the_pod_said_directly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrong = FILE.replace("port = 9090 }", "port = 9095 }");
    assert_ne!(wrong, FILE);
    std::fs::write(d.join("testbed.toml"), &wrong).unwrap();
    std::fs::write(d.join("prometheus.yaml"), MANIFEST).unwrap();
    let apply = testbed(d, &["apply", "--yes"]);
    let out = text(&apply);
    assert_eq!(apply.status.code(), Some(1), "{out}");
    assert!(out.contains("nothing answered through 127.0.0.1:9091 within"), "{out}");
    assert!(
        out.contains("asked directly through a port-forward, nothing listens on port 9095 inside the pod (error forwarding port 9095 to pod "),
        "{out}"
    );
    assert!(out.contains("failed to connect to localhost:9095 inside namespace"), "{out}");
    assert!(out.contains("set the proxy's `pod.port` in the file to the port it listens on"), "{out}");
    // What the pod's author meant it to listen on, read from its spec.
    assert!(
        out.contains("the application does not listen on port 9095, and the pod declares containerPort 9090"),
        "{out}"
    );

    std::fs::write(d.join("testbed.toml"), FILE).unwrap();
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(connect(&world(d)).ends_with(":9090"), "{}", connect(&world(d)));
}
