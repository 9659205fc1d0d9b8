//! The rehearsal a cautious user runs, through the binary: LXD for real (the project's test daemon,
//! `cargo xtask testenv up`), the layers above it simulated.

use std::path::Path;
use std::process::{Command, Output};

const LXD_DIR: &str = "/var/lib/testbed-testenv/lxd";
const LAYERS: &str = "host,microk8s,registry,karmada";

fn testbed(dir: &Path, args: &[&str]) -> Output {
    let lxd_dir = std::env::var("LXD_DIR").unwrap_or_else(|_| LXD_DIR.to_owned());
    assert!(
        Path::new(&lxd_dir).join("unix.socket").exists(),
        "no LXD test daemon at {lxd_dir}: run `cargo xtask testenv up`"
    );
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("-c")
        .arg(dir.join("testbed.toml"))
        .args(["--simulate", LAYERS])
        .args(args)
        .env("LXD_DIR", lxd_dir)
        .env_remove("LXD_SOCKET")
        .env("TESTBED_SIM_SPEED", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run testbed")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn rehearse_the_lxd_part_for_real_with_the_rest_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/testenv.toml")).unwrap();
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
