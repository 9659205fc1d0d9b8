//! Issue 13: `[[workloads]]` on the simulated world: plan, apply, a next plan with no changes, drift undone,
//! and a removed workload deleting only what testbed applied. The simulated Karmada propagates what testbed
//! applies (crates/testbed-sim/src/propagation.rs); nothing here ran against a real Karmada.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A lab directory holding `example` as its testbed.toml, with the examples' manifests beside it.
fn lab(example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::copy(examples.join(example), dir.path().join("testbed.toml")).unwrap();
    copy_dir(&examples.join("workloads"), &dir.path().join("workloads"));
    dir
}

fn testbed(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(dir)
        .args(["-c", "testbed.toml", "--simulate", "all"])
        .args(args)
        .env("TESTBED_SIM_SPEED", "0")
        .env_remove("TESTBED_SIM_FAIL")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn apply(dir: &Path) {
    let out = testbed(dir, &["apply", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn assert_converged(dir: &Path) {
    let plan = testbed(dir, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

fn world(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".testbed/sim.json")).unwrap()).unwrap()
}

fn save(dir: &Path, world: &Value) {
    std::fs::write(dir.join(".testbed/sim.json"), serde_json::to_string(world).unwrap()).unwrap();
}

/// The objects on the simulated Karmada API server, by REST path.
fn karmada_objects(world: &mut Value) -> &mut serde_json::Map<String, Value> {
    world["world"]["host"]["microk8s"]["karmada"]["etcd"]["objects"].as_object_mut().expect("Karmada's objects")
}

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/nginx";

#[test]
fn the_nginx_demo_converges_is_repaired_after_an_edit_and_leaves_what_testbed_did_not_apply() {
    let dir = lab("nginx-demo.toml");
    let d = dir.path();
    let plan = text(&testbed(d, &["plan"]));
    for address in [
        "+ workload_object.nginx.deployment/default/nginx",
        "+ workload_object.nginx.service/default/nginx",
        "+ workload_object.nginx.propagationpolicy/default/testbed-nginx",
        "+ workload.nginx",
    ] {
        assert!(plan.contains(address), "{address}:\n{plan}");
    }
    apply(d);
    assert_converged(d);

    // What testbed applied is labelled as its own, and Karmada placed it on every member.
    let mut w = world(d);
    let objects = karmada_objects(&mut w);
    let deployment = objects[DEPLOYMENT].clone();
    assert_eq!(deployment["metadata"]["labels"]["testbed/owner"], "testbed", "{deployment}");
    assert_eq!(deployment["metadata"]["labels"]["testbed/workload"], "nginx", "{deployment}");
    let policy = &objects["/apis/policy.karmada.io/v1alpha1/namespaces/default/propagationpolicies/testbed-nginx"];
    assert_eq!(
        policy["spec"]["placement"]["clusterAffinity"]["clusterNames"],
        serde_json::json!(["member1", "member2", "member3"])
    );
    assert_eq!(policy["spec"]["placement"]["replicaScheduling"]["replicaSchedulingType"], "Duplicated");
    let status = text(&testbed(d, &["status"]));
    assert!(status.contains("member1 (healthy), member2 (healthy), member3 (healthy)"), "{status}");

    // Someone scales the Deployment by hand and adds an object of their own: the plan shows the field, apply
    // puts it back, and their object is not touched.
    objects.get_mut(DEPLOYMENT).unwrap()["spec"]["replicas"] = 5.into();
    let foreign = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "notes", "namespace": "default", "labels": {"testbed/workload": "nginx"}},
        "data": {"who": "someone else"}});
    objects.insert("/api/v1/namespaces/default/configmaps/notes".into(), foreign.clone());
    save(d, &w);
    let plan = text(&testbed(d, &["plan"]));
    assert!(plan.contains("~ workload_object.nginx.deployment/default/nginx"), "{plan}");
    assert!(plan.contains("spec.replicas: \"5\" → \"2\""), "{plan}");
    assert!(!plan.contains("configmaps/notes") && !plan.contains("configmap/default/notes"), "{plan}");
    apply(d);
    assert_converged(d);
    let mut w = world(d);
    assert_eq!(karmada_objects(&mut w)[DEPLOYMENT]["spec"]["replicas"], 2);

    // The file no longer has the workload: what testbed applied goes, the other object stays.
    let file = std::fs::read_to_string(d.join("testbed.toml")).unwrap();
    let cut = file.find("\n[[workloads]]").unwrap();
    std::fs::write(d.join("testbed.toml"), &file[..cut]).unwrap();
    let plan = text(&testbed(d, &["plan"]));
    for address in [
        "- workload_object.nginx.deployment/default/nginx",
        "- workload_object.nginx.service/default/nginx",
        "- workload_object.nginx.propagationpolicy/default/testbed-nginx",
        "- workload.nginx",
    ] {
        assert!(plan.contains(address), "{address}:\n{plan}");
    }
    assert!(plan.contains("Plan: 0 to create, 0 to update, 0 to replace, 4 to destroy."), "{plan}");
    apply(d);
    assert_converged(d);
    let mut w = world(d);
    let left: Vec<String> = karmada_objects(&mut w).keys().cloned().collect();
    assert_eq!(left, ["/api/v1/namespaces/default/configmaps/notes"]);
}

#[test]
fn dry_run_shows_each_object_as_it_is_applied() {
    let dir = lab("nginx-demo.toml");
    let out = testbed(dir.path(), &["apply", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The workload's actions: each block from its header line to the next header.
    let dry = &stdout[stdout.find("Dry run:").expect("the dry run's steps")..];
    let mut blocks: Vec<String> = Vec::new();
    for line in dry.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let workload: Vec<&String> = blocks.iter().filter(|b| b.starts_with("+ workload")).collect();
    assert_eq!(workload.len(), 4, "{dry}");
    let shown: String = workload.into_iter().map(String::as_str).collect();
    assert!(
        shown.contains("PATCH /apis/apps/v1/namespaces/default/deployments/nginx?fieldManager=testbed&force=true"),
        "{shown}"
    );
    insta::assert_snapshot!(shown);
}
