//! Issue 14, item 2: `testbed status` as a table, on the simulated machine, for a converged, a half-built
//! and a broken lab (insta snapshots of stdout), its JSON and its exit code (0 as the file wants, 2 not).

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::{said, simulated, Lab, THREE};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(dir: &Path) {
    let out = simulated(dir, &["apply", "--yes"]);
    assert!(out.status.success(), "{}", said(&out));
}

/// A lab of examples/failover.toml (three members, one workload with failover), converged.
fn failover_lab() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::copy(examples.join("failover.toml"), dir.path().join("testbed.toml")).unwrap();
    support::copy_example_workloads(dir.path());
    apply(dir.path());
    dir
}

fn status_json(dir: &Path) -> (Value, Option<i32>) {
    let out = simulated(dir, &["status", "--json"]);
    (serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", said(&out))), out.status.code())
}

#[test]
fn a_converged_lab_is_one_row_per_member_and_exits_0() {
    let dir = failover_lab();
    let out = simulated(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    insta::assert_snapshot!("converged", stdout(&out));
    let (doc, code) = status_json(dir.path());
    assert_eq!(code, Some(0));
    assert_eq!(doc["format_version"], "1.1");
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["members"][0]["workloads"][0], serde_json::json!({"workload": "my-app", "healthy": true}));
    assert_eq!(doc["shared"]["control_plane"]["condition"], "ready");
    assert_eq!(doc["shared"]["images"], serde_json::json!({"listed": 7, "in_registry": 7}));
}

#[test]
fn a_half_built_lab_shows_what_is_missing_and_exits_2() {
    let lab = Lab::new(THREE);
    let out = support::simulated_with(lab.path(), &["apply", "--yes"], &[("TESTBED_SIM_FAIL", "microk8s.member3")]);
    assert!(!out.status.success(), "{}", said(&out));
    let out = simulated(lab.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    insta::assert_snapshot!("half_built", stdout(&out));
}

#[test]
fn a_stopped_member_is_shown_on_its_row_and_exits_2() {
    let dir = failover_lab();
    let state = dir.path().join(".testbed/sim.json");
    let machine = testbed_sim::SimMachine::open(&state, testbed_sim::SimOptions::instant()).unwrap();
    machine.edit(|w| assert!(w.stop_lxd_instance("member2"))).unwrap();
    drop(machine);
    let out = simulated(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    insta::assert_snapshot!("broken", stdout(&out));
    let (doc, code) = status_json(dir.path());
    assert_eq!(code, Some(2));
    assert_eq!(doc["healthy"], false);
    let member2 = &doc["members"][1];
    assert_eq!(
        (member2["container"]["condition"].as_str(), member2["container"]["what"].as_str()),
        (Some("not_ready"), Some("Stopped"))
    );
}
