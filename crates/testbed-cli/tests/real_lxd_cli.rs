//! The rehearsal a cautious user runs, through the binary: LXD for real (the project's test daemon,
//! `cargo xtask testenv up`), the layers above it simulated.

mod testenv;

use testenv::{example, text};

const LAYERS: &str = "host,microk8s,registry,karmada";

fn testbed(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    testenv::testbed(dir, LAYERS, args)
}

#[test]
fn rehearse_the_lxd_part_for_real_with_the_rest_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let example = example("testenv.toml");
    // Its own name, bridge, subnet, profile, members and ports, so that it never meets other tests' objects.
    let file = format!("name = \"cli\"\n{example}")
        .replace("tbtest0", "tbcli0")
        .replace("10.199.77.1/24", "10.199.78.1/24")
        .replace("testbed-member", "tbcli-member")
        .replace("\"member", "\"cli-member")
        .replace("= 2644", "= 2664");
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();

    let apply = testbed(dir.path(), &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let out = text(&apply);
    assert!(out.contains("real: lxd (these change this host)"), "the banner never hides what is real: {out}");
    assert!(out.contains("lxd_instance.cli-member1: created"), "{out}");

    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(text(&plan).contains("No changes."));

    let status = testbed(dir.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(v["simulated"], serde_json::json!(["host", "microk8s", "registry", "karmada"]));
    let inst = v["resources"].as_array().unwrap().iter().find(|r| r["address"] == "lxd_instance.cli-member2").unwrap();
    assert_eq!(inst["state"], "ok");

    let destroy = testbed(dir.path(), &["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
    let after = testbed(dir.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    for r in v["resources"].as_array().unwrap() {
        let a = r["address"].as_str().unwrap();
        if a == "lxd_storage_pool.default" {
            assert_eq!(r["state"], "not testbed's", "the test environment's pool is used, never removed");
        } else if a.starts_with("lxd_") || a.starts_with("proxy.") {
            assert_eq!(r["state"], "missing", "{a} after destroy");
        }
    }
}
