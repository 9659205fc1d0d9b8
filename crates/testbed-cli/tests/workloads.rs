//! Issue 13: `[[workloads]]` on the simulated world: plan, apply, a next plan with no changes, drift undone,
//! and a removed workload deleting only what testbed applied. The simulated Karmada propagates what testbed
//! applies (crates/testbed-sim/src/propagation.rs); nothing here ran against a real Karmada.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

/// A lab directory holding `example` as its testbed.toml, with the examples' manifests beside it.
fn lab(example: &str) -> tempfile::TempDir {
    support::example_lab(example)
}

fn testbed(dir: &Path, args: &[&str]) -> Output {
    support::simulated(dir, args)
}

fn text(out: &Output) -> String {
    support::said(out)
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

/// seed 004's database password (a Secret's `stringData`) reaches no output of testbed's and no file it leaves:
/// not the plan, its JSON, `status --json`, the dry run or the run logs (only the simulated Karmada holds it,
/// as a real API server would).
#[test]
fn a_secrets_values_reach_no_output_and_no_log() {
    let dir = lab("three-tier.toml");
    let d = dir.path();
    let mut said = String::new();
    for args in
        [&["plan"][..], &["plan", "--json"], &["apply", "--dry-run"], &["apply", "--yes"], &["status", "--json"]]
    {
        let out = testbed(d, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        said.push_str(&text(&out));
    }
    for entry in std::fs::read_dir(d.join(".testbed/logs")).unwrap() {
        said.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(said.contains("secret/mcapp/postgres-secret"), "the Secret was applied: {said}");
    for value in ["change-me", "Y2hhbmdlLW1l"] {
        assert!(!said.contains(value), "{value} was shown");
    }
    let mut w = world(d);
    let stored = &karmada_objects(&mut w)["/api/v1/namespaces/mcapp/secrets/postgres-secret"];
    assert_eq!(
        stored["data"]["POSTGRES_PASSWORD"], "Y2hhbmdlLW1l",
        "the API server has it, base64 as Kubernetes keeps it"
    );
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

fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// What `status --json` says of each workload: `ADDRESS STATE (DETAIL)`, the detail saying where it is placed.
fn workload_lines(dir: &Path) -> Vec<String> {
    let out = testbed(dir, &["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "workload")
        .map(|r| {
            format!(
                "{} {} ({})",
                r["address"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
                r["detail"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// What `status --json` says of the workload at `address`.
fn status_line(dir: &Path, address: &str) -> String {
    let lines = workload_lines(dir);
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{address} ")))
        .unwrap_or_else(|| panic!("{address}: {lines:?}"))
        .clone()
}

/// Issue 13's failover Must-show, on the simulated Karmada: seed 003's workload runs on member1 (weight 1,
/// spread 1); member1 is tainted NoExecute as Karmada's own tests do; within the toleration it stays, after
/// it the workload runs on the next member, and `status` says so. It does not come back by itself.
#[test]
fn seed_threes_workload_moves_to_the_next_member_after_its_toleration() {
    let dir = lab("failover.toml");
    let d = dir.path();
    apply(d);
    assert_converged(d);
    let line = status_line(d, "workload.my-app");
    assert!(line.contains("placed by the simulated Karmada on member1 (healthy)"), "{line}");
    let mut w = world(d);
    let policy = &karmada_objects(&mut w)
        ["/apis/policy.karmada.io/v1alpha1/namespaces/default/propagationpolicies/testbed-my-app"];
    assert_eq!(policy["spec"]["placement"]["spreadConstraints"][0]["maxGroups"], 1, "{policy}");
    assert_eq!(policy["spec"]["placement"]["clusterTolerations"][0]["tolerationSeconds"], 60, "{policy}");
    assert_eq!(policy["spec"]["failover"]["application"]["purgeMode"], "Gracefully", "{policy}");

    let taint = |age_ms: u64| {
        let mut w = world(d);
        w["world"]["host"]["microk8s"]["karmada"]["etcd"]["clusters"]["member1"]["taints"] = serde_json::json!([
            {"key": "cluster.karmada.io/not-ready", "effect": "NoExecute", "added_at_ms": now_ms() - age_ms}
        ]);
        save(d, &w);
    };
    // Tainted 30 s ago: within the 60 s the policy tolerates, it stays.
    taint(30_000);
    let line = status_line(d, "workload.my-app");
    assert!(line.contains("on member1 (healthy)"), "{line}");
    // Tainted 61 s ago: evicted, and scheduled on the next member.
    taint(61_000);
    let line = status_line(d, "workload.my-app");
    assert!(line.contains("placed by the simulated Karmada on member2 (healthy)"), "{line}");
    let w = world(d);
    let pods = |m: &str| w["world"]["inside"][m]["microk8s"]["pods"].as_object().map_or(0, |p| p.len());
    assert_eq!((pods("member1"), pods("member2"), pods("member3")), (0, 2, 0));
    // Failing over is Karmada's doing: the file is still met.
    assert_converged(d);
    // The taint goes: the workload stays where it settled.
    let mut w = world(d);
    w["world"]["host"]["microk8s"]["karmada"]["etcd"]["clusters"]["member1"]["taints"] = serde_json::json!([]);
    save(d, &w);
    let line = status_line(d, "workload.my-app");
    assert!(line.contains("on member2 (healthy)"), "{line}");
}

/// A purge mode the file's Karmada release does not accept is refused before anything runs, with the values
/// that release takes.
#[test]
fn a_purge_mode_the_release_rejects_is_refused_at_validation() {
    let dir = lab("failover.toml");
    let d = dir.path();
    let file = std::fs::read_to_string(d.join("testbed.toml")).unwrap();
    let old = file.replace("purge_mode = \"Gracefully\"", "purge_mode = \"Graciously\"");
    std::fs::write(
        d.join("testbed.toml"),
        format!("[karmada]\nversion = \"v1.15.9\"\n{}", old.replace("[karmada]\n", "")),
    )
    .unwrap();
    let ok = testbed(d, &["validate"]);
    assert!(ok.status.success(), "v1.15 still takes the deprecated name: {}", text(&ok));
    std::fs::write(d.join("testbed.toml"), &old).unwrap();
    let refused = testbed(d, &["plan"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(said.contains("Graciously") && said.contains("Directly, Gracefully, Never"), "{said}");
    assert!(!d.join(".testbed/sim.json").exists(), "nothing ran");
}

/// The file without its `[[workloads]]` blocks, and the `[[proxies]]` that follow their pods (each block up
/// to the next table or the end).
fn without_workloads(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == "[[workloads]]" || line.trim() == "[[proxies]]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Issue 13's first Must-show, for every example with workloads, on the simulated world: plan, apply, a next
/// plan with no changes, an edit by hand repaired, and the workloads removed from the file deleting what
/// testbed applied and nothing else.
#[test]
fn every_workload_example_converges_repairs_drift_and_removes_only_its_own_objects() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .filter(|n| std::fs::read_to_string(examples.join(n)).unwrap().contains("\n[[workloads]]"))
        .collect();
    names.sort();
    assert_eq!(names, ["custom-image.toml", "failover.toml", "monitoring.toml", "nginx-demo.toml", "three-tier.toml"]);
    for name in names {
        let dir = lab(&name);
        let d = dir.path();
        // The side-loaded image's archive, built offline (custom-image.toml).
        std::fs::create_dir_all(d.join("images")).unwrap();
        std::fs::write(
            d.join("images/flask-demo-2.0.tar"),
            testbed_sim::containerd::docker_archive(&["flask-demo:2.0"]),
        )
        .unwrap();
        apply(d);
        assert_converged(d);
        let lines = workload_lines(d);
        assert!(!lines.is_empty(), "{name}");
        for line in lines {
            assert!(
                line.contains(" ok (") && line.contains("(healthy)") && !line.contains("not healthy"),
                "{name}: {line}"
            );
        }

        // Someone scales a workload's first Deployment or StatefulSet by hand.
        let mut w = world(d);
        let objects = karmada_objects(&mut w);
        let (path, scaled) = objects
            .iter_mut()
            .find(|(_, o)| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
            .map(|(p, o)| {
                let r = o["spec"]["replicas"].as_i64().unwrap();
                o["spec"]["replicas"] = (r + 3).into();
                (p.clone(), o.clone())
            })
            .expect("a workload that runs pods");
        let foreign = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "someone-elses", "namespace": "default"}, "data": {"kept": "yes"}});
        objects.insert("/api/v1/namespaces/default/configmaps/someone-elses".into(), foreign);
        save(d, &w);
        let plan = text(&testbed(d, &["plan"]));
        let workload = scaled["metadata"]["labels"]["testbed/workload"].as_str().unwrap();
        let key = format!(
            "{}/{}/{}",
            scaled["kind"].as_str().unwrap().to_lowercase(),
            scaled["metadata"]["namespace"].as_str().unwrap(),
            scaled["metadata"]["name"].as_str().unwrap()
        );
        assert!(
            plan.contains(&format!("~ workload_object.{workload}.{key}")) && plan.contains("spec.replicas"),
            "{name}: {plan}"
        );
        assert!(plan.contains("Plan: 0 to create, 1 to update, 0 to replace, 0 to destroy."), "{name}: {plan}");
        apply(d);
        assert_converged(d);

        // The workloads leave the file: testbed's objects go, the other one stays.
        let file = std::fs::read_to_string(d.join("testbed.toml")).unwrap();
        std::fs::write(d.join("testbed.toml"), without_workloads(&file)).unwrap();
        let plan = text(&testbed(d, &["plan"]));
        assert!(!plan.contains("someone-elses") && !plan.contains("+ ") && !plan.contains("~ "), "{name}: {plan}");
        apply(d);
        assert_converged(d);
        let mut w = world(d);
        let left: Vec<String> = karmada_objects(&mut w).keys().cloned().collect();
        assert_eq!(left, ["/api/v1/namespaces/default/configmaps/someone-elses"], "{name} ({path})");
    }
}

/// Where a member's MicroK8s looks up `localhost:32000` (containerd's `hosts.toml`).
const LOCAL_HOSTS_TOML: &str = "/var/snap/microk8s/current/args/certs.d/localhost:32000/hosts.toml";

/// The containers of `member`'s pods as the simulated kubelet left them: (image, waiting reason and message).
fn containers(w: &Value, member: &str) -> Vec<(String, Option<String>)> {
    let pods = w["world"]["inside"][member]["microk8s"]["pods"].as_object().cloned().unwrap_or_default();
    pods.values()
        .flat_map(|p| p["containers"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let waiting = c
                .get("waiting")
                .map(|w| format!("{}: {}", w["reason"].as_str().unwrap(), w["message"].as_str().unwrap()));
            (c["image"].as_str().unwrap().to_owned(), waiting)
        })
        .collect()
}

/// Issue 13, item 3: the nginx demo's Deployment names `localhost:32000/nginx:1.27`, the copy `[[images]]` puts
/// in the host's registry. Each member pulls it from there because testbed points the member's
/// `localhost:32000` at the host's registry on the bridge; without that file a pod that must pull fails as
/// the kubelet does (the member's own `localhost:32000` refuses), the plan repairs the member's MicroK8s, and
/// apply rewrites the file and the workload comes back healthy.
#[test]
fn the_nginx_demo_pulls_its_image_from_the_local_registry_through_the_members_localhost_file() {
    let dir = lab("nginx-demo.toml");
    let d = dir.path();
    let plan = text(&testbed(d, &["plan"]));
    assert!(plan.contains("+ image.nginx"), "{plan}");
    apply(d);
    assert_converged(d);
    let status = text(&testbed(d, &["status"]));
    assert!(status.contains("member1 (healthy), member2 (healthy), member3 (healthy)"), "{status}");
    let w = world(d);
    for m in ["member1", "member2", "member3"] {
        let file = &w["world"]["inside"][m]["files"][LOCAL_HOSTS_TOML]["file"]["content"];
        let file = file.as_str().unwrap_or_else(|| panic!("{m}'s file for localhost:32000: {file}"));
        assert!(file.contains("server = \"http://10.123.45.1:32000\""), "{file}");
        assert!(file.contains("[host.\"http://10.123.45.1:32000\"]"), "{file}");
        // Pulled from the host's registry into the member's containerd, and running.
        let images: Vec<&str> = w["world"]["inside"][m]["microk8s"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(images.contains(&"localhost:32000/nginx:1.27"), "{m}: {images:?}");
        assert_eq!(containers(&w, m), vec![("localhost:32000/nginx:1.27".to_owned(), None); 2], "{m}");
    }

    // Someone removes member2's file, and member2's pods are made anew on a containerd without the image:
    // they must pull it, and the member's own localhost:32000 has nothing.
    let mut w = world(d);
    let inside = &mut w["world"]["inside"]["member2"];
    inside["files"].as_object_mut().unwrap().remove(LOCAL_HOSTS_TOML).expect("the file was there");
    let k = &mut inside["microk8s"];
    k["images"] = Value::Array(
        k["images"].as_array().unwrap().iter().filter(|i| *i != "localhost:32000/nginx:1.27").cloned().collect(),
    );
    k["pods"] = serde_json::json!({});
    save(d, &w);
    let line = status_line(d, "workload.nginx");
    assert!(line.contains("member2 (not healthy)"), "{line}");
    let w = world(d);
    let failed = containers(&w, "member2");
    assert_eq!(failed.len(), 2, "{failed:?}");
    for (image, waiting) in failed {
        assert_eq!(image, "localhost:32000/nginx:1.27");
        assert_eq!(
            waiting.as_deref(),
            Some(
                "ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack image \"localhost:32000/nginx:1.27\": failed to resolve reference \"localhost:32000/nginx:1.27\": failed to do request: Head \"http://localhost:32000/v2/nginx/manifests/1.27\": dial tcp 127.0.0.1:32000: connect: connection refused"
            )
        );
    }
    let plan = text(&testbed(d, &["plan"]));
    assert!(plan.contains("~ microk8s.member2"), "{plan}");
    assert!(
        plan.contains(&format!("its route from localhost:32000 to the local registry ({LOCAL_HOSTS_TOML}) is missing")),
        "{plan}"
    );
    apply(d);
    assert_converged(d);
    let w = world(d);
    assert!(w["world"]["inside"]["member2"]["files"][LOCAL_HOSTS_TOML]["file"]["content"]
        .as_str()
        .is_some_and(|f| f.contains("http://10.123.45.1:32000")));
    assert_eq!(containers(&w, "member2"), vec![("localhost:32000/nginx:1.27".to_owned(), None); 2]);
    let status = text(&testbed(d, &["status"]));
    assert!(status.contains("member1 (healthy), member2 (healthy), member3 (healthy)"), "{status}");
}

/// A workload whose image is not in the local registry (not in `[[images]]`) is never healthy: apply waits
/// for it, then fails with what the members' kubelets say about the pull.
#[test]
fn a_workload_whose_image_is_not_in_the_local_registry_fails_with_the_pull_error() {
    let dir = lab("nginx-demo.toml");
    let d = dir.path();
    let manifests = d.join("workloads/nginx-demo/deployment.yaml");
    let deployment = std::fs::read_to_string(&manifests).unwrap();
    std::fs::write(&manifests, deployment.replace("localhost:32000/nginx:1.27", "localhost:32000/missing:1.0"))
        .unwrap();
    // TESTBED_SIM_SPEED=0 (see `testbed`) shortens the workload's wait to a second.
    let out = testbed(d, &["apply", "--yes"]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("workload.nginx: not scheduled and healthy after"), "{said}");
    assert!(said.contains("deployment/default/nginx on member1: unhealthy (0/2 ready)"), "{said}");
    assert!(
        said.contains(
            "ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image \"localhost:32000/missing:1.0\": failed to resolve reference \"localhost:32000/missing:1.0\": localhost:32000/missing:1.0: not found"
        ),
        "{said}"
    );
    assert!(said.contains("member3/nginx-"), "every member's pods are named: {said}");
    assert!(said.contains("must be in [[images]]"), "{said}");
    // Everything else converged: only the workload is left to do.
    let plan = text(&testbed(d, &["plan"]));
    assert!(plan.contains("~ workload.nginx"), "{plan}");
    assert!(!plan.contains("microk8s."), "{plan}");
}
