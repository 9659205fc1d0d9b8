//! `testbed apply --dry-run`: every action with the exact commands and API calls it would run, in order.
//! Snapshots for the default file and the pull-mode example, reviewed against the seeds' scripts and the
//! real tools' flags (docs/steps.md says where each comes from).

mod support;

use std::path::Path;
use std::process::Command;

fn dry_run(example: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(example);
    std::fs::copy(src, dir.path().join("testbed.toml")).expect("copy");
    support::copy_example_workloads(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(dir.path())
        .args(["-c", "testbed.toml", "--simulate", "all"])
        .args(args)
        .env("TESTBED_SIM_SPEED", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run testbed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !dir.path().join(".testbed/sim.json").exists(),
        "a dry run changes nothing, not even the simulated machine"
    );
    assert!(!dir.path().join(".testbed/sim.json.lock").exists(), "nor takes a lock");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `testbed` on the simulated machine in `dir`, against its `testbed.toml`.
fn testbed(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(dir)
        .args(["-c", "testbed.toml", "--simulate", "all"])
        .args(args)
        .env("TESTBED_SIM_SPEED", "0")
        .output()
        .unwrap()
}

#[test]
fn dry_run_of_the_default_file() {
    insta::assert_snapshot!(dry_run("testbed.toml", &["apply", "--dry-run"]));
}

#[test]
fn dry_run_of_pull_mode() {
    let out = dry_run("examples/pull-mode.toml", &["apply", "--dry-run"]);
    assert!(out.contains("--token <secret:join-token>"), "the token is a placeholder, never a value");
    insta::assert_snapshot!(out);
}

#[test]
fn dry_run_of_destroy_after_apply_orders_unjoins_before_containers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testbed.toml"), dir.path().join("testbed.toml"))
        .unwrap();
    let run = |args: &[&str]| testbed(dir.path(), args);
    assert!(run(&["apply", "--yes"]).status.success());
    let out = String::from_utf8(run(&["destroy", "--dry-run", "--target", "member2"]).stdout).unwrap();
    let unjoin = out.find("karmadactl unjoin member2").expect("unjoin");
    let delete = out.find("DELETE /1.0/instances/member2").expect("container delete");
    assert!(unjoin < delete, "{out}");
    assert!(!out.contains("member1") && !out.contains("member3"), "{out}");
}

/// Issue 11, item 6a: a member whose image changes is unjoined from the old cluster before its container
/// is deleted, as destroy does, and joined again only once the new container is there.
#[test]
fn dry_run_of_a_changed_member_image_unjoins_before_the_container_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("testbed.toml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testbed.toml"), &file).unwrap();
    let run = |args: &[&str]| testbed(dir.path(), args);
    assert!(run(&["apply", "--yes"]).status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("name = \"member2\"\n"), "{text}");
    std::fs::write(&file, text.replace("name = \"member2\"\n", "name = \"member2\"\nimage = \"ubuntu:24.04\"\n"))
        .unwrap();
    let out = run(&["apply", "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    let unjoin = out.find("karmadactl unjoin member2").expect("unjoin");
    let delete = out.find("DELETE /1.0/instances/member2").expect("container delete");
    let create = out.find("POST /1.0/instances").expect("container create");
    let join = out.find("karmadactl join member2").expect("join");
    assert!(unjoin < delete, "the old cluster is unjoined before its container goes:\n{out}");
    assert!(delete < create && create < join, "{out}");
    assert!(!out.contains("member1") && !out.contains("member3"), "{out}");
}

/// Each Karmada minor testbed knows inits with that release's own flags and image tags (read from
/// karmadactl's sources, docs/karmada-versions.md, not from testbed's table), and its lab converges on the
/// simulated machine, whose karmadactl deploys what that release deploys.
#[test]
fn each_known_karmada_release_inits_with_its_own_images_and_converges() {
    // (version, kube-apiserver and kube-controller-manager tag, etcd tag, etcd's init container)
    let releases = [
        ("v1.15.9", "v1.31.3", "3.5.16-0", true),
        ("v1.16.8", "v1.34.1", "3.6.0-0", false),
        ("v1.17.5", "v1.35.2", "3.6.6-0", false),
        ("v1.18.2", "v1.35.2", "3.6.6-0", false),
        ("v1.19.0", "v1.36.2", "3.6.8-0", false),
    ];
    for (version, kube, etcd, init_container) in releases {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("[karmada]\nversion = \"{version}\"\n\n[[members]]\nname = \"member1\"\napi_port = 16441\n");
        std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
        let dry = testbed(dir.path(), &["apply", "--dry-run"]);
        let text = String::from_utf8_lossy(&dry.stdout);
        let init = text.lines().find(|l| l.contains("karmadactl init")).unwrap_or_else(|| panic!("{version}: {text}"));
        for wanted in [
            format!("--karmada-apiserver-image localhost:32000/kube-apiserver:{kube}"),
            format!("--karmada-kube-controller-manager-image localhost:32000/kube-controller-manager:{kube}"),
            format!("--etcd-image localhost:32000/etcd:{etcd}"),
            format!("--karmada-scheduler-image localhost:32000/karmada-scheduler:{version}"),
        ] {
            assert!(init.contains(&wanted), "{version}: {wanted} in {init}");
        }
        assert_eq!(init.contains("--etcd-init-image"), init_container, "{version}: {init}");
        let apply = testbed(dir.path(), &["apply", "--yes"]);
        assert!(apply.status.success(), "{version}: {}", String::from_utf8_lossy(&apply.stdout));
        let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "{version}: {}", String::from_utf8_lossy(&plan.stdout));
    }
}

/// The karmada.control_plane block of a dry run: what init is called with.
fn control_plane_block(dry_run: &str) -> String {
    let start = dry_run.find("+ karmada.control_plane (create)").expect("the control plane is created");
    let rest = &dry_run[start..];
    let end = rest[1..].find("\n+ ").map_or(rest.len(), |i| i + 1);
    rest[..end].trim_end().to_owned()
}

/// Issue 12: the init of v1.15.9, of a v1.17 patch and of v1.19.0, each with its own flags and image tags,
/// checked against testbed's version table (the flags that exist, the fixed tags) and snapshotted whole.
#[test]
fn dry_run_of_init_for_each_supported_release_follows_the_version_table() {
    use testbed_config::karmada_release::{release, EtcdInitImage};
    for version in ["v1.15.9", "v1.17.5", "v1.19.0"] {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("[karmada]\nversion = \"{version}\"\n\n[[members]]\nname = \"member1\"\napi_port = 16441\n");
        std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
        let out = testbed(dir.path(), &["apply", "--dry-run"]);
        assert!(out.status.success(), "{version}: {}", String::from_utf8_lossy(&out.stderr));
        let block = control_plane_block(&String::from_utf8_lossy(&out.stdout));
        let table = release(version).expect("a known release");
        let init = block.lines().find(|l| l.contains("karmadactl init")).unwrap();
        assert!(init.contains(&format!("/kube-apiserver:{} ", table.kube)), "{version}: {init}");
        assert!(init.contains(&format!("/etcd:{} ", table.etcd)), "{version}: {init}");
        let init_image = matches!(table.etcd_init_image, EtcdInitImage::Used { .. });
        assert_eq!(init.contains("--etcd-init-image"), init_image, "{version}: {init}");
        assert!(!init.contains("-extra-args"), "failover is off: no extra args: {init}");
        insta::assert_snapshot!(format!("init_{}", version.replace('.', "_")), block);
    }
}

/// Issue 12: with failover on, a v1.19 init switches the controller manager's Failover gate and no-execute
/// eviction on through `--karmada-controller-manager-extra-args`, and the lab converges with them on.
#[test]
fn the_failover_example_inits_with_the_gate_and_no_execute_eviction_and_converges() {
    let out = dry_run("examples/failover.toml", &["apply", "--dry-run"]);
    let block = control_plane_block(&out);
    let init = block.lines().find(|l| l.contains("karmadactl init")).unwrap();
    for arg in testbed_config::karmada_release::FAILOVER_CONTROLLER_MANAGER_ARGS {
        assert!(init.contains(&format!(" --karmada-controller-manager-extra-args={arg} ")), "{arg}: {init}");
    }
    insta::assert_snapshot!(block);

    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/failover.toml");
    std::fs::copy(src, dir.path().join("testbed.toml")).unwrap();
    support::copy_example_workloads(dir.path());
    assert!(testbed(dir.path(), &["apply", "--yes"]).status.success());
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
    // The policy that taints a failed cluster NoExecute is in the (simulated) Karmada API, labelled as
    // testbed's; someone deletes it: the next plan repairs the control plane in place, not a new init.
    let state = dir.path().join(".testbed/sim.json");
    let mut world: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let policies = &mut world["world"]["host"]["microk8s"]["karmada"]["etcd"]["taint_policies"];
    let policy = &policies["testbed-failover"];
    assert_eq!(policy["labels"]["testbed/owner"], "testbed", "{policy}");
    assert_eq!(policy["spec"]["taints"][0]["effect"], "NoExecute", "{policy}");
    *policies = serde_json::json!({});
    std::fs::write(&state, serde_json::to_string(&world).unwrap()).unwrap();
    let plan = String::from_utf8(testbed(dir.path(), &["plan"]).stdout).unwrap();
    assert!(
        plan.contains("~ karmada.control_plane") && plan.contains("the ClusterTaintPolicy testbed-failover is missing"),
        "{plan}"
    );
    assert!(plan.contains("Plan: 0 to create, 1 to update, 0 to replace, 0 to destroy."), "{plan}");
    assert!(testbed(dir.path(), &["apply", "--yes"]).status.success());
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
    // Switching it off is a new init: the plan says so, with its cost. (The example's workload fails over
    // too, which keeps it on: it goes with it.)
    let text = std::fs::read_to_string(dir.path().join("testbed.toml")).unwrap();
    let text = &text[..text.find("\n[[workloads]]").expect("the example's workload")];
    std::fs::write(dir.path().join("testbed.toml"), text.replace("failover = true", "failover = false")).unwrap();
    let plan = String::from_utf8(testbed(dir.path(), &["plan"]).stdout).unwrap();
    assert!(plan.contains("karmada.control_plane is replaced (failover: \"true\" → \"false\")"), "{plan}");
}

/// Issue 12: a new `[karmada] version` on a converged lab is a replace of the control plane: the plan says
/// so once, with what it costs and which members re-join; karmadactl is updated first, each release image
/// is copied at its new tag, and apply converges on the new release.
#[test]
fn a_new_karmada_version_on_a_converged_lab_plans_the_control_plane_replace_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("testbed.toml");
    let members =
        "[[members]]\nname = \"member1\"\napi_port = 16441\n\n[[members]]\nname = \"member2\"\napi_port = 16442\n";
    std::fs::write(&file, format!("[karmada]\nversion = \"v1.15.9\"\n\n{members}")).unwrap();
    assert!(testbed(dir.path(), &["apply", "--yes"]).status.success());
    std::fs::write(&file, format!("[karmada]\nversion = \"v1.19.0\"\n\n{members}")).unwrap();
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2));
    let text = String::from_utf8(plan.stdout).unwrap();
    let notes: Vec<&str> = text.lines().filter(|l| l.starts_with("Note:")).collect();
    assert_eq!(
        notes,
        ["Note: karmada.control_plane is replaced (version: \"v1.15.9\" → \"v1.19.0\"): karmadactl deinit, then init, and member1, member2 re-join. Cost: everything applied to the Karmada API (policies, federated workloads) is deleted, and the federation is down until every member is Ready again"],
        "{text}"
    );
    insta::assert_snapshot!(text);
    let apply = testbed(dir.path(), &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", String::from_utf8_lossy(&apply.stdout));
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
    // The control plane the simulated machine runs is the new release's.
    let world = std::fs::read_to_string(dir.path().join(".testbed/sim.json")).unwrap();
    assert!(world.contains("\"localhost:32000/karmada-scheduler:v1.19.0\""), "the new release runs");
    assert!(!world.contains("\"localhost:32000/karmada-scheduler:v1.15.9\""), "the old one is gone");
}

/// Issue 12: v1.15's init cannot take extra args, so failover on v1.15.9 is a patch of the controller
/// manager's Deployment after init (then a wait for the control plane), and the lab converges with it on.
#[test]
fn failover_on_v1_15_patches_the_controller_manager_after_init_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let file =
        "[karmada]\nversion = \"v1.15.9\"\nfailover = true\n\n[[members]]\nname = \"member1\"\napi_port = 16441\n";
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
    let out = testbed(dir.path(), &["apply", "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let block = control_plane_block(&String::from_utf8_lossy(&out.stdout));
    assert!(!block.contains("-extra-args"), "v1.15 has no extra args: {block}");
    let steps: Vec<&str> = block.lines().map(str::trim).collect();
    let init = steps.iter().position(|l| l.contains("karmadactl init")).unwrap();
    let patch = steps
        .iter()
        .position(|l| {
            l.starts_with(
                "kubernetes: PATCH /apis/apps/v1/namespaces/karmada-system/deployments/karmada-controller-manager",
            )
        })
        .unwrap_or_else(|| panic!("{block}"));
    let policy = steps.iter().position(|l| l.contains("clustertaintpolicies/testbed-failover")).unwrap();
    assert!(init < patch && patch < policy, "{block}");
    assert!(testbed(dir.path(), &["apply", "--yes"]).status.success());
    let world = std::fs::read_to_string(dir.path().join(".testbed/sim.json")).unwrap();
    assert!(world.contains("\"--feature-gates=Failover=true\""), "the controller manager runs with the gate");
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
}
