//! The command line as a user meets it: exit codes, messages, confirmation, lock, logs, targets.
//! Every run here uses `--simulate all` with a simulated machine in a temporary directory.

use std::path::PathBuf;
use std::process::{Command, Output};

mod support;

use support::{Lab, THREE};

impl Lab {
    fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write config");
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_testbed"));
        cmd.arg("-c").arg(self.config()).arg("--simulate").arg("all").args(args);
        cmd.env("TESTBED_SIM_SPEED", "0")
            .env_remove("TESTBED_SIM_FAIL")
            .env_remove("TESTBED_SIM_SEED")
            .env_remove("RUST_LOG");
        cmd.stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run testbed")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Applies under the faults of `TESTBED_SIM_FAIL`, asserts that the apply failed, and gives what it
    /// printed.
    fn apply_failing(&self, faults: &str) -> String {
        let out = self.run_with(&["apply", "--yes"], &[("TESTBED_SIM_FAIL", faults)]);
        assert_eq!(code(&out), 1, "{faults}: {}", stdout(&out));
        stdout(&out)
    }

    /// Applies without faults, and asserts that the machine converges: the apply succeeds and the plan after
    /// it is empty (what a spent or lifted fault leaves).
    fn converges(&self, why: &str) {
        let again = self.run(&["apply", "--yes"]);
        assert_eq!(code(&again), 0, "{why}: {}", stdout(&again));
        assert_eq!(stdout(&self.run(&["plan"])).trim(), "No changes.");
    }

    fn sim_state(&self) -> Option<String> {
        std::fs::read_to_string(self.path().join(".testbed/sim.json")).ok()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The progress line that reports `address` FAILED, or nothing.
fn failed_line<'a>(text: &'a str, address: &str) -> &'a str {
    text.lines().find(|l| l.contains(&format!("{address}: FAILED"))).unwrap_or_default()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn apply_then_plan_says_no_changes_and_detailed_exitcode_follows() {
    let lab = Lab::new(THREE);
    let plan = lab.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}{}", stdout(&plan), stderr(&plan));
    assert!(stdout(&plan).contains("+ lxd_instance.member1"), "{}", stdout(&plan));
    assert!(stderr(&plan).contains("Simulated: all layers"), "the simulation is never hidden: {}", stderr(&plan));

    let apply = lab.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}{}", stdout(&apply), stderr(&apply));
    assert!(stdout(&apply).contains("failed"), "summary names the counts: {}", stdout(&apply));

    let again = lab.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}{}", stdout(&again), stderr(&again));
    assert_eq!(stdout(&again).trim(), "No changes.");
}

#[test]
fn apply_without_a_terminal_refuses_unless_yes_and_changes_nothing() {
    let lab = Lab::new(THREE);
    let out = lab.run(&["apply"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("without confirmation"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let plan = lab.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "nothing was applied");
}

#[test]
fn plan_json_is_one_object_with_the_documented_fields() {
    let lab = Lab::new(THREE);
    let out = lab.run(&["plan", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is one JSON object");
    assert_eq!(v["format_version"], "1.1");
    assert_eq!(v["simulated"], serde_json::json!(["host", "lxd", "microk8s", "registry", "karmada"]), "{v}");
    let actions = v["actions"].as_array().expect("actions");
    assert!(!actions.is_empty());
    for a in actions {
        assert!(a["address"].is_string() && a["reason"].is_string() && a["depends_on"].is_array(), "{a}");
        assert!(["create", "update", "replace", "delete"].contains(&a["action"].as_str().unwrap_or("")), "{a}");
    }
    // Dependency order: every dependency appears earlier.
    let mut seen = std::collections::BTreeSet::new();
    for a in actions {
        for d in a["depends_on"].as_array().unwrap() {
            assert!(seen.contains(d.as_str().unwrap()), "{} listed before its dependency {d}", a["address"]);
        }
        seen.insert(a["address"].as_str().unwrap().to_owned());
    }
    let s = &v["summary"];
    let total: u64 = ["create", "update", "replace", "delete"].iter().map(|k| s[k].as_u64().unwrap()).sum();
    assert_eq!(total as usize, actions.len());
}

#[test]
fn an_injected_failure_fails_the_run_and_the_next_apply_converges() {
    let lab = Lab::new(THREE);
    let out = lab.run_with(&["apply", "--yes"], &[("TESTBED_SIM_FAIL", "microk8s.member2")]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("microk8s.member2: FAILED"), "{text}");
    assert!(text.contains("karmada_member.member2: skipped, because"), "{text}");
    assert!(text.contains("karmada_member.member1: created"), "independent branches finish: {text}");
    assert!(text.contains("1 failed"), "{text}");

    let plan = lab.run(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    let left: Vec<&str> = v["actions"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert!(left.iter().all(|a| a.split('.').any(|s| s == "member2")), "only member2's steps are left: {left:?}");

    let again = lab.run(&["apply", "--yes"]);
    assert_eq!(code(&again), 0, "{}", stdout(&again));
    assert_eq!(stdout(&lab.run(&["plan"])).trim(), "No changes.");
}

#[test]
fn a_program_call_or_an_lxd_request_fails_as_the_real_one_and_the_next_apply_converges() {
    let lab = Lab::new(THREE);
    let text = lab.apply_failing("program:snap.install@member2,lxd:PUT:/1.0/instances/member3/state");
    // snapd's own words for a daemon it cannot reach, and LXD's error envelope, reach the user.
    assert!(failed_line(&text, "microk8s.member2").contains("cannot communicate with server"), "{text}");
    assert!(failed_line(&text, "lxd_instance.member3").contains("Failed to begin transaction"), "{text}");
    assert!(text.contains("karmada_member.member1: created"), "member1 is untouched by both: {text}");
    lab.converges("once-faults are spent");
}

#[test]
fn an_always_fault_fails_every_run_until_it_is_lifted() {
    let lab = Lab::new(THREE);
    for _ in 0..2 {
        let text = lab.apply_failing("program:snap.install@member2=always");
        assert!(text.contains("microk8s.member2: FAILED"), "{text}");
    }
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let bad = lab.run_with(&["plan"], &[("TESTBED_SIM_FAIL", "program:snap@")]);
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("TESTBED_SIM_FAIL") && stderr(&bad).contains("`@`"), "{}", stderr(&bad));
}

#[test]
fn a_kubernetes_api_request_fails_as_kube_apiserver_does_and_the_next_apply_converges() {
    let lab = Lab::new(THREE);
    // Labelling karmada-system right after init, on the host cluster's API; and the first look at member1's
    // nodes through the kubeconfig testbed just wrote, which the wait for Ready asks again.
    let text = lab.apply_failing("kube:PATCH:/api/v1/namespaces/karmada-system@host,kube:GET:/api/v1/nodes@member1");
    // kube-apiserver's words for an etcd that timed out reach the user, with the fault that made them.
    assert!(
        failed_line(&text, "karmada.control_plane").contains(
            "HTTP 500: etcdserver: request timed out (simulated: TESTBED_SIM_FAIL=kube:PATCH:/api/v1/namespaces/karmada-system@host)"
        ),
        "{text}"
    );
    assert!(text.contains("kubeconfig.member1: created"), "the wait for Ready asked again: {text}");
    assert!(text.contains("Apply: 33 done, 1 failed, 3 skipped."), "only the memberships wait for Karmada: {text}");
    let log = std::fs::read_dir(lab.path().join(".testbed/logs")).unwrap().next().unwrap().unwrap().path();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.lines().any(|l| l.contains("member1: waiting for the API")
            && l.contains(
                "etcdserver: request timed out (simulated: TESTBED_SIM_FAIL=kube:GET:/api/v1/nodes@member1)"
            )),
        "{log}"
    );
    lab.converges("once-faults are spent");
}

#[test]
fn a_membership_whose_label_call_failed_is_repaired_not_taken_for_someone_elses() {
    let lab = Lab::new(THREE);
    // The PATCH that labels member1's Cluster as testbed's, right after `karmadactl join` made it.
    let text = lab.apply_failing("kube:PATCH:/apis/cluster.karmada.io/v1alpha1/clusters/member1@karmada");
    assert!(
        failed_line(&text, "karmada_member.member1").contains("member1 is registered, but testbed could not label it"),
        "{text}"
    );
    assert_eq!(text.matches(": FAILED").count(), 1, "only member1's membership fails: {text}");
    // The Cluster join made is labelled after the failure, so the next plan does not see a stranger's.
    let plan = stdout(&lab.run(&["plan"]));
    assert!(!plan.contains("conflict") && !plan.contains("without testbed's label"), "{plan}");
    lab.converges("the membership testbed made is repaired");
}

#[test]
fn an_always_kubernetes_api_fault_fails_every_run_until_it_is_lifted() {
    let lab = Lab::new(THREE);
    let always = "kube:GET:/api/v1/nodes@member1=always";
    for _ in 0..2 {
        let out = lab.run_with(&["apply", "--yes"], &[("TESTBED_SIM_FAIL", always)]);
        assert_eq!(code(&out), 1, "{}", stdout(&out));
        // Each poll of the wait for Ready met the 500: the client library's own log of it stays out of sight.
        assert!(!stderr(&out).contains("kube_client"), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.matches(": FAILED").count(), 1, "only member1's kubeconfig fails: {text}");
        assert!(
            failed_line(&text, "kubeconfig.member1").contains(
                "HTTP 500: etcdserver: request timed out (simulated: TESTBED_SIM_FAIL=kube:GET:/api/v1/nodes@member1)"
            ),
            "{text}"
        );
    }
    // What the provider's observation met, in the plan.
    let plan = stdout(&lab.run_with(&["plan"], &[("TESTBED_SIM_FAIL", always)]));
    let repair = plan.lines().find(|l| l.contains("kubeconfig.member1")).unwrap_or_default();
    assert!(repair.contains("failed to list nodes: HTTP 500: etcdserver: request timed out"), "{plan}");
    lab.converges("the fault is lifted");
    let bad = lab.run_with(&["plan"], &[("TESTBED_SIM_FAIL", "kube:GET:/api/v1/nodes@")]);
    assert_eq!(code(&bad), 1);
    assert!(
        stderr(&bad).contains("TESTBED_SIM_FAIL") && stderr(&bad).contains("kube:METHOD:PATH[@WHERE]"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn every_apply_and_destroy_writes_a_complete_log() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    assert_eq!(code(&lab.run(&["destroy", "--yes"])), 0);
    let logs: Vec<PathBuf> =
        std::fs::read_dir(lab.path().join(".testbed/logs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let apply_log = logs.iter().find(|p| p.to_string_lossy().ends_with("-apply.log")).expect("apply log");
    let text = std::fs::read_to_string(apply_log).unwrap();
    assert!(text.contains("Simulated: all layers"), "{text}");
    assert!(text.contains("start   create lxd_instance.member1"), "{text}");
    assert!(text.contains("done    create lxd_instance.member1 in"), "{text}");
    assert!(text.contains("karmada.control_plane: $ 'host$' karmadactl init"), "each command is logged: {text}");
}

#[test]
fn destroy_removes_every_owned_resource() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let out = lab.run(&["destroy", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let status = lab.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    for r in v["resources"].as_array().unwrap() {
        let state = r["state"].as_str().unwrap();
        let addr = r["address"].as_str().unwrap();
        // Retained: the host's packages and settings, and the download cache.
        let retained = addr == "host.packages" || addr == "host.sysctl" || addr.starts_with("snap_download.");
        assert!(state == "missing" || retained, "{addr} is {state} after destroy");
    }
    assert_eq!(stdout(&lab.run(&["destroy", "--yes"])).trim(), "No changes.");
}

#[test]
fn destroy_target_member_removes_only_that_member() {
    let lab = Lab::new(THREE);
    let applied = lab.run(&["apply", "--yes"]);
    assert_eq!(code(&applied), 0, "{}\n{}", stdout(&applied), String::from_utf8_lossy(&applied.stderr));
    let out = lab.run(&["destroy", "--yes", "--target", "member2"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let plan = lab.run(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    let actions = v["actions"].as_array().unwrap();
    assert!(!actions.is_empty());
    for a in actions {
        assert_eq!(a["action"], "create", "{a}");
        assert!(a["address"].as_str().unwrap().split('.').any(|s| s == "member2"), "{a}");
    }
}

#[test]
fn an_unknown_target_is_an_error() {
    let lab = Lab::new(THREE);
    let out = lab.run(&["plan", "--target", "member9"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("matches no resource"), "{}", stderr(&out));
}

#[test]
fn adding_member4_plans_only_member4() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    lab.write_config(&format!("{THREE}\n[[members]]\nname = \"member4\"\napi_port = 16445\n"));
    let plan = lab.run(&["plan", "--json"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    let v: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    let addrs: Vec<&str> = v["actions"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(
        addrs,
        [
            "lxd_instance.member4",
            "microk8s.member4",
            "microk8s_addons.member4",
            "proxy.member4.api",
            "kubeconfig.member4",
            "karmada_member.member4",
        ],
        "only member4's steps, in dependency order"
    );
}

#[test]
fn bad_files_exit_1_with_the_line_and_change_nothing() {
    let cases = [
        ("[[members]]\nname = \"member1\"\napi_port = 16441\ncolour = \"red\"\n", "unknown key `colour`", ":4:1"),
        (
            "[[members]]\nname = \"member1\"\napi_port = 16441\n[[members]]\nname = \"member1\"\napi_port = 16442\n",
            "duplicate member name",
            ":5:8",
        ),
        ("[[members]]\nname = \"m1\"\napi_port = 32443\n", "host port 32443 is used twice", ":3:12"),
        ("[[members]]\nname = \"Member_1\"\napi_port = 16441\n", "not a valid LXD instance name", ":2:8"),
        ("[[members]\nname = \"m\"\n", "testbed.toml:1:", ""),
    ];
    for (text, needle, at) in cases {
        let lab = Lab::new(text);
        for cmd in [&["validate"][..], &["plan"], &["apply", "--yes"]] {
            let out = lab.run(cmd);
            assert_eq!(code(&out), 1, "{cmd:?} on {text:?}");
            let err = stderr(&out);
            assert!(err.contains(needle), "{cmd:?}: missing {needle:?} in:\n{err}");
            assert!(err.contains(at), "{cmd:?}: missing location {at:?} in:\n{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        assert!(lab.sim_state().is_none(), "nothing changed for {text:?}");
    }
}

#[test]
fn a_corrupted_sim_state_is_a_clear_error_and_is_left_alone() {
    let lab = Lab::new(THREE);
    std::fs::create_dir_all(lab.path().join(".testbed")).unwrap();
    std::fs::write(lab.path().join(".testbed/sim.json"), "{ not json").unwrap();
    for cmd in [&["plan"][..], &["apply", "--yes"], &["status"], &["destroy", "--yes"]] {
        let out = lab.run(cmd);
        assert_eq!(code(&out), 1, "{cmd:?}");
        assert!(stderr(&out).contains("sim.json"), "names the file: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    assert_eq!(lab.sim_state().unwrap(), "{ not json");
}

#[test]
fn a_real_microk8s_layer_over_simulated_containers_is_refused() {
    let lab = Lab::new(THREE);
    // A real MicroK8s layer over simulated LXD containers cannot work, and is refused before anything runs.
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("-c")
        .arg(lab.config())
        .args(["--simulate", "lxd,registry", "plan"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("a real microk8s layer runs its commands inside real LXD containers"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_simulate_list_that_names_no_layer_is_refused_not_read_as_all_real() {
    let lab = Lab::new(THREE);
    // `--simulate "$LAYERS"` with the variable unset, or a stray comma: running every layer for real on
    // this host would be the opposite of what was asked. Nothing is observed or changed.
    for layers in ["", ",", " , ", "host,,lxd"] {
        let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
            .arg("-c")
            .arg(lab.config())
            .args(["--simulate", layers, "plan"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 1, "--simulate {layers:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("--simulate") && err.contains("leave --simulate out"), "{layers:?}: {err}");
        assert!(stdout(&out).is_empty(), "{layers:?}: nothing is planned: {}", stdout(&out));
    }
    assert!(!lab.path().join(".testbed/sim.json").exists(), "no machine was even opened");
}

#[test]
fn a_problem_far_along_a_long_line_is_shown_not_a_panic() {
    // A syntax problem and a validation problem past column 65535 (a pasted blob, a generated file): the
    // renderer cannot indent that far, so the line is shown cut around the problem.
    let long = "a".repeat(70_000);
    for (text, location) in [
        (format!("[lxd]\nx = \"{long}\" bogus = 1\n"), "testbed.toml:2:70008"),
        (format!("name = \"ok\"\n[lxd]\nbridge = \"{long}\"\n"), "testbed.toml:3:10"),
    ] {
        let lab = Lab::new(&text);
        let out = lab.run(&["validate"]);
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{}", &err[..err.len().min(2000)]);
        assert!(!err.contains("panicked"), "{}", &err[..err.len().min(2000)]);
        assert!(err.contains(location), "{location}: {}", &err[..err.len().min(2000)]);
        assert!(err.len() < 4_000, "the long line is cut: {} bytes", err.len());
    }
}

#[test]
fn a_mistyped_flag_exits_1_not_the_2_that_means_changes_pending() {
    let lab = Lab::new(THREE);
    let typo = lab.run(&["plan", "--detailed-exitcod"]);
    assert_eq!(code(&typo), 1, "{}", stderr(&typo));
    assert!(stderr(&typo).contains("--detailed-exitcod"), "{}", stderr(&typo));
    let help = lab.run(&["plan", "--help"]);
    assert_eq!(code(&help), 0, "{}", stderr(&help));
    assert!(stdout(&help).contains("--detailed-exitcode"), "{}", stdout(&help));
    // Pending changes still exit 2 under --detailed-exitcode.
    assert_eq!(code(&lab.run(&["plan", "--detailed-exitcode"])), 2);
}

#[test]
fn an_apply_stopped_by_ctrl_c_exits_130() {
    let lab = Lab::new(THREE);
    // Real-magnitude step times at a hundredth: the apply takes seconds, long enough to be interrupted.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testbed"));
    cmd.arg("-c").arg(lab.config()).args(["--simulate", "all", "apply", "--yes"]);
    cmd.env("TESTBED_SIM_SPEED", "0.01").env_remove("TESTBED_SIM_FAIL").env_remove("TESTBED_SIM_SEED");
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("run testbed");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Twice: stop starting actions, then abort the running ones (if they have not finished by then, which
    // also ends the run: the second signal may find the process gone).
    let interrupt = || Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(interrupt().success(), "the apply still runs after 1.5 s");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = interrupt();
    let out = child.wait_with_output().expect("testbed ends");
    assert_eq!(code(&out), 130, "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("Interrupt: starting no new actions"), "{}", stderr(&out));
    assert!(stdout(&out).contains("Run `testbed apply` again"), "{}", stdout(&out));
}

#[test]
fn validate_and_schema() {
    let lab = Lab::new(THREE);
    let out = lab.run(&["validate"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("is valid: 3 members"), "{}", stdout(&out));
    let schema = lab.run(&["schema"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&schema)).unwrap();
    assert!(v["properties"]["members"].is_object(), "{v}");
}

/// The simulated machine a lab's runs left, opened to change it as someone else would.
fn machine_of(lab: &Lab) -> testbed_sim::SimMachine {
    testbed_sim::SimMachine::open(lab.path().join(".testbed/sim.json"), testbed_sim::SimOptions::instant())
        .expect("open the simulated machine")
}

#[test]
fn destroy_keeps_a_karmada_control_plane_that_holds_a_cluster_testbed_did_not_join() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    // Someone registers their own cluster with testbed's Karmada (as `karmadactl join edge7` would).
    let edge7 = testbed_sim::world::ClusterRecord {
        sync_mode: testbed_sim::world::SyncMode::Push,
        api_endpoint: Some("https://192.0.2.7:6443".into()),
        id: "5f1c0e7a-edge7".into(),
        labels: Default::default(),
        appears_at_ms: None,
        taints: Vec::new(),
    };
    let cluster_on = |edit: &dyn Fn(&mut testbed_sim::world::KarmadaEtcd)| {
        machine_of(&lab).edit(|w| edit(&mut w.host.microk8s.as_mut().unwrap().karmada.as_mut().unwrap().etcd)).unwrap()
    };
    cluster_on(&|etcd| {
        etcd.clusters.insert("edge7".into(), edge7.clone());
    });

    // A destroy of one member never reached the control plane: it has finished.
    let out = lab.run(&["destroy", "--yes", "--target", "member1"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(!stdout(&out).contains("Destroy is not finished"), "{}", stdout(&out));

    let plan = stdout(&lab.run(&["destroy", "--yes", "--dry-run"]));
    let note = "kept: karmada.control_plane: Cluster `edge7` was not joined by testbed; unjoin it";
    assert!(plan.contains(note) && plan.contains("then run `testbed destroy` again"), "{plan}");
    assert!(!plan.contains("karmada.control_plane  delete"), "{plan}");

    let out = lab.run(&["destroy", "--yes"]);
    assert_eq!(code(&out), 1, "a destroy that kept the control plane has not finished: {}", stdout(&out));
    assert!(stdout(&out).contains(note), "{}", stdout(&out));
    assert!(stdout(&out).contains("Destroy is not finished"), "{}", stdout(&out));
    let world = machine_of(&lab).world();
    let karmada = world.host.microk8s.as_ref().and_then(|m| m.karmada.as_ref()).expect("the control plane is kept");
    assert_eq!(karmada.etcd.clusters.keys().collect::<Vec<_>>(), ["edge7"], "testbed's own members are unjoined");

    // Once its owner unjoins it, destroy finishes.
    cluster_on(&|etcd| {
        etcd.clusters.remove("edge7");
    });
    let out = lab.run(&["destroy", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(machine_of(&lab).world().host.microk8s.is_none_or(|m| m.karmada.is_none()));
}

#[test]
fn destroy_keeps_a_registry_that_holds_a_tag_testbed_did_not_copy() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    // Someone pushes their own image into testbed's registry (the same content as one of testbed's, under a
    // repository and tag of their own).
    machine_of(&lab)
        .edit(|w| {
            let reg = w.host.microk8s.as_mut().unwrap().registry.as_mut().unwrap();
            let mut theirs = reg.repositories.values().next().cloned().unwrap();
            let digest = theirs.tags.values().next().cloned().unwrap();
            theirs.tags = [("1.0".to_owned(), digest)].into();
            reg.repositories.insert("team/app".into(), theirs);
        })
        .unwrap();

    let out = lab.run(&["destroy", "--yes"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "a destroy that kept the registry has not finished: {text}");
    assert!(
        text.contains("kept: registry.local: tag `team/app:1.0` was not copied there by testbed; delete it")
            && text.contains("then run `testbed destroy` again"),
        "{text}"
    );
    let world = machine_of(&lab).world();
    let reg = world.host.microk8s.as_ref().and_then(|m| m.registry.as_ref()).expect("the registry is kept");
    assert_eq!(reg.tags(), ["team/app:1.0"], "testbed's own images are deleted, the other one is not");
}

/// Plans under `TESTBED_SIM_FAIL=entry`, and gives what the refusal said (it must exit 1, naming the entry).
fn refused_fault(entry: &str) -> String {
    let lab = Lab::new(THREE);
    let out = lab.run_with(&["plan"], &[("TESTBED_SIM_FAIL", entry)]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{entry} names nothing here, yet: {}{err}", stdout(&out));
    assert!(err.contains(entry), "the message names the entry: {err}");
    err
}

#[test]
fn a_fault_at_an_address_the_file_does_not_have_is_refused() {
    let err = refused_fault("lxd_instance.member9");
    assert!(err.contains("lxd_instance.member3") && err.contains("karmada.control_plane"), "{err}");
}

#[test]
fn a_program_fault_in_a_member_the_file_does_not_have_or_of_an_unknown_program_is_refused() {
    let err = refused_fault("program:snap.install@member9");
    assert!(err.contains("host, member1, member2, member3"), "{err}");
    let err = refused_fault("program:kubeadm@host");
    assert!(err.contains("karmadactl"), "{err}");
}

#[test]
fn an_lxd_fault_for_an_instance_the_file_does_not_have_is_refused() {
    let err = refused_fault("lxd:PUT:/1.0/instances/member9/state");
    assert!(err.contains("member1, member2, member3"), "{err}");
}

#[test]
fn a_kubernetes_fault_at_an_unknown_api_server_is_refused() {
    let err = refused_fault("kube:GET:/api/v1/nodes@karmda");
    assert!(err.contains("host, karmada, member1, member2, member3"), "{err}");
}

#[test]
fn destroy_says_what_it_destroys_and_what_it_keeps() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let out = lab.run(&["destroy", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("testbed will destroy these resources"), "{text}");
    assert!(!text.contains("no longer in the file"), "every resource is still in the file: {text}");
    let line = text.lines().find(|l| l.contains("- lxd_instance.member1 ")).unwrap_or_default();
    assert!(line.ends_with("will be destroyed"), "{text}");
    let line = text.lines().find(|l| l.contains("- microk8s.member1 ")).unwrap_or_default();
    assert!(line.ends_with("will be destroyed, with lxd_instance.member1"), "{text}");
    let kept = text.split("Kept: destroy leaves these in place:").nth(1).unwrap_or_default();
    assert!(kept.contains("host.packages") && kept.contains("host.sysctl"), "{text}");
}

#[test]
fn a_failed_run_ends_with_its_errors_once_each_with_what_to_do_next() {
    let lab = Lab::new(THREE);
    let text = lab.apply_failing("program:snap.install@member2");
    let line = failed_line(&text, "microk8s.member2");
    assert_eq!(line.matches("microk8s.member2").count(), 1, "the address once: {line}");
    let errors = text.split("\nErrors:\n").nth(1).unwrap_or_else(|| panic!("no Errors: block: {text}"));
    let summary = text.find("Apply: ").expect("summary");
    assert!(text.find("\nErrors:\n").unwrap() > summary, "after the summary: {text}");
    let failure = errors.lines().find(|l| l.trim_start().starts_with("microk8s.member2: ")).unwrap_or_default();
    assert!(failure.contains("cannot communicate with server"), "{errors}");
    assert_eq!(failure.matches("microk8s.member2").count(), 1, "{failure}");
    assert!(errors.contains("next: run it yourself to see more: lxc exec member2"), "{errors}");
    assert!(!errors.contains("karmada_member.member2"), "a skipped action is no error: {errors}");
}

#[test]
fn a_targeted_run_warns_that_the_result_may_be_partial() {
    let lab = Lab::new(THREE);
    for cmd in [&["plan", "--target", "member1"][..], &["apply", "--yes", "--target", "member1"]] {
        let out = lab.run(cmd);
        assert_eq!(code(&out), 0, "{cmd:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("Warning: --target is in effect"), "{cmd:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("the result may be partial"), "{cmd:?}: {}", stderr(&out));
    }
    assert!(!stderr(&lab.run(&["plan"])).contains("Warning:"), "no warning without --target");
}

#[test]
fn run_logs_are_pruned_to_the_last_fifty() {
    let lab = Lab::new(THREE);
    let logs = lab.path().join(".testbed/logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Sixty runs' logs from last year; the run's own log sorts after them (its name starts with the time).
    for i in 0..60 {
        std::fs::write(logs.join(format!("2025-01-01T0000{i:02}.000Z-apply.log")), "old\n").unwrap();
    }
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let mut names: Vec<String> =
        std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 50, "{names:?}");
    assert_eq!(names[0], "2025-01-01T000011.000Z-apply.log", "the oldest go first: {names:?}");
    assert!(names.last().unwrap().starts_with("20") && !names.last().unwrap().starts_with("2025"), "{names:?}");
}

#[test]
fn colour_follows_the_color_flag() {
    let lab = Lab::new(THREE);
    let always = lab.run(&["--color", "always", "plan"]);
    assert_eq!(code(&always), 0, "{}", stderr(&always));
    assert!(stdout(&always).contains("\x1b[32m  +\x1b[0m lxd_instance.member1"), "{}", stdout(&always));
    assert!(stdout(&always).contains("\x1b[33m  ~\x1b[0m host.packages"), "{}", stdout(&always));
    // --color always wins over NO_COLOR, as an explicit choice does.
    let out = lab.run_with(&["--color", "always", "plan", "--target", "nothing"], &[("NO_COLOR", "1")]);
    assert!(stderr(&out).contains('\x1b'), "{}", stderr(&out));
    for args in [&["plan"][..], &["--color", "never", "plan"]] {
        let out = lab.run(args);
        assert!(!stdout(&out).contains('\x1b') && !stderr(&out).contains('\x1b'), "{args:?}: {}", stdout(&out));
    }
}

#[test]
fn help_documents_every_flag_its_default_and_the_environment() {
    let lab = Lab::new(THREE);
    let help = stdout(&lab.run(&["--help"]));
    assert!(help.contains("ENVIRONMENT:"), "{help}");
    for var in ["RUST_LOG", "NO_COLOR", "TESTBED_HOST_KUBECONFIG", "LXD_DIR", "TESTBED_SIM_SPEED", "TESTBED_SIM_FAIL"] {
        assert!(help.contains(var), "{var} is not in --help: {help}");
    }
    assert!(help.contains("completions"), "{help}");
    let apply = stdout(&lab.run(&["apply", "--help"]));
    assert!(apply.contains("[default: 8]"), "{apply}");
    for cmd in ["plan", "apply", "destroy", "status", "graph"] {
        let text = stdout(&lab.run(&[cmd, "-h"]));
        // In the short help every option line carries its text: `  --flag <V>  What it does`.
        for line in text.lines().filter(|l| l.trim_start().starts_with('-')) {
            let words = line.trim().split("  ").filter(|p| !p.trim().is_empty()).count();
            assert!(words >= 2, "`{cmd} --help`: an option without help text: {line:?}");
        }
    }
}

#[test]
fn shell_completions_are_printed_for_bash_zsh_and_fish() {
    let lab = Lab::new(THREE);
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef testbed"), ("fish", "complete -c testbed")] {
        let out = lab.run(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains(marker), "{shell}: {}", stdout(&out));
        assert!(stdout(&out).contains("destroy") && stdout(&out).contains("parallelism"), "{shell}");
    }
}

#[test]
fn status_json_has_a_format_version_and_runs_say_when_all_layers_are_real() {
    let lab = Lab::new(THREE);
    let out = lab.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(v["format_version"], "1.1", "{v}");
    // Nothing is built: not as the file wants, which is not an error.
    assert_eq!(out.status.code(), Some(2), "{v}");
    // Without --simulate every layer is real, and the run says so (a plan only reads the host; no LXD
    // daemon and no host cluster answer here).
    let real = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("-c")
        .arg(lab.config())
        .arg("plan")
        .env("LXD_SOCKET", lab.path().join("no-lxd.socket"))
        .env("TESTBED_HOST_KUBECONFIG", lab.path().join("no-kubeconfig"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(stderr(&real).starts_with("All layers real"), "{}", stderr(&real));
    let simulated = lab.run(&["plan"]);
    assert!(!stderr(&simulated).contains("All layers real"), "{}", stderr(&simulated));
}

/// Issue 12, item 4: the MicroK8s snap is downloaded once on the host and pushed into each member, which
/// installs it from the file; a second lab on the same host downloads nothing.
#[test]
fn three_members_install_microk8s_from_one_download() {
    let lab = Lab::new(THREE);
    let apply = lab.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", stdout(&apply));
    let world = machine_of(&lab).world();
    assert_eq!(world.host.downloads.get("snap:microk8s@1.35/stable"), Some(&1), "{:?}", world.host.downloads);
    assert_eq!(world.host.downloads.get("snap:core22@latest/stable"), Some(&1), "{:?}", world.host.downloads);
    let log = std::fs::read_dir(lab.path().join(".testbed/logs")).unwrap().next().unwrap().unwrap().path();
    let log = std::fs::read_to_string(log).unwrap();
    let pushes: Vec<&str> =
        log.lines().filter(|l| l.contains("files?path=/var/lib/testbed/snaps/microk8s.snap")).collect();
    assert_eq!(pushes.len(), 3, "one push per member: {pushes:#?}");
    assert!(!log.lines().any(|l| l.contains("snap install microk8s --classic --channel") && l.contains("member")));
    for m in ["member1", "member2", "member3"] {
        let inside = &world.inside[m];
        let mk = inside.microk8s.as_ref().expect("installed");
        assert!(mk.from_file, "{m} installed from the file");
        assert!(inside.bases.contains("core22"), "{m} got the base snap from the download too");
    }
    assert_eq!(stdout(&lab.run(&["plan"])).trim(), "No changes.", "a snap from a file tracks no channel: not drift");

    // The download cache outlives the lab: the next one installs from it without the store.
    assert_eq!(code(&lab.run(&["destroy", "--yes"])), 0);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let world = machine_of(&lab).world();
    assert_eq!(world.host.downloads.get("snap:microk8s@1.35/stable"), Some(&1), "{:?}", world.host.downloads);
}

/// Issue 12, item 3: a changed MicroK8s channel is a refresh in place from the new channel's download, one
/// member at a time: each member's refresh waits for the one before it, and the plan says so.
#[test]
fn a_changed_channel_refreshes_the_members_one_at_a_time_from_one_download() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let changed = format!("[host]\nmicrok8s_channel = \"1.36/stable\"\n{THREE}");
    lab.write_config(&changed);
    let plan = lab.run(&["plan"]);
    insta::assert_snapshot!(stdout(&plan).replace(&lab.path().display().to_string(), "<lab>"));
    let json: serde_json::Value = serde_json::from_str(&stdout(&lab.run(&["plan", "--json"]))).unwrap();
    let depends = |a: &str| -> Vec<String> {
        json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["address"] == a)
            .map(|x| x["depends_on"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    assert!(depends("microk8s.member1").contains(&"snap_download.microk8s-1_36-stable".to_owned()));
    assert!(depends("microk8s.member2").contains(&"microk8s.member1".to_owned()), "{json}");
    assert!(depends("microk8s.member3").contains(&"microk8s.member2".to_owned()), "{json}");

    // A failed refresh stops the rest.
    let text = lab.apply_failing("microk8s.member2");
    assert!(text.contains("microk8s.member1: updated"), "{text}");
    assert!(!text.contains("microk8s.member3: updated"), "member3 waits for member2: {text}");
    lab.converges("after the failed refresh");
    let world = machine_of(&lab).world();
    assert_eq!(world.host.downloads.get("snap:microk8s@1.36/stable"), Some(&1), "{:?}", world.host.downloads);
    for m in ["member1", "member2", "member3"] {
        assert_eq!(world.inside[m].microk8s.as_ref().map(|k| k.channel.as_str()), Some("1.36/stable"), "{m}");
    }
}

/// The release publishes no checksum for its CRD archive: testbed records the first download's SHA-256 and
/// warns, where the user sees the apply, when a later download differs.
#[test]
fn a_crd_archive_that_differs_from_the_first_download_is_warned_about() {
    let lab = Lab::new(THREE);
    assert_eq!(code(&lab.run(&["apply", "--yes"])), 0);
    let downloads = lab.path().join(".testbed/sim-host/var/lib/testbed/downloads");
    // The default release's archive, whichever it is.
    let archive = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("karmada-crds-") && n.ends_with(".tar.gz"))
        .expect("the CRD archive is downloaded");
    let record = downloads.join(format!("{archive}.sha256"));
    assert!(record.is_file(), "recorded on first download");
    // As if the first download had been another file: the next download is the release's as it is now.
    std::fs::write(&record, format!("{}  {archive}\n", "0".repeat(64))).unwrap();
    std::fs::remove_file(downloads.join(&archive)).unwrap();
    assert_eq!(code(&lab.run(&["destroy", "--yes"])), 0);
    let apply = lab.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", stdout(&apply));
    let warned = stdout(&apply);
    let line = warned.lines().find(|l| l.starts_with("karmada.control_plane: Warning:")).unwrap_or_default();
    assert!(line.contains(&format!("but the first download had {}", "0".repeat(64))), "{warned}");
}
