//! The rehearsal a cautious user runs, through the binary: LXD for real (the project's test daemon,
//! `cargo xtask testenv up`), the layers above it simulated.

mod testenv;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

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

/// issue 11, item 2: an apply killed while its member is created and its proxy added leaves LXD operations
/// running in the daemon; the next apply waits for them before it looks, so it neither re-adds what they
/// finish (LXD refuses: "A matching non-reusable operation has now succeeded") nor blames the host port on
/// "another program" when the proxy holding it is the member's own. Killed at ten moments spread over the
/// member's creation (about 1.3 s on the test daemon), from the create request to the proxy's.
#[test]
fn an_apply_killed_while_a_member_is_created_is_finished_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = "name = \"kill\"\n\n[lxd]\nbridge = \"tbkill0\"\nipv4_address = \"10.199.91.1/24\"\nstorage_pool = \"default\"\nimage = \"testbed-busybox\"\nprofile = \"tbkill-member\"\n\n[lxd.profile_config]\n\"linux.kernel_modules\" = \"overlay,nf_conntrack\"\n\n[[members]]\nname = \"kill-member1\"\napi_port = 26491\n";
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
    // The bridge and profile once, the member then created and killed again and again. A first apply that
    // meets LXD 5.0's race between concurrent network creations (another test's bridge: "Network not found")
    // is applied again, as a user would.
    let setup = testbed(dir.path(), &["apply", "--yes"]);
    if !setup.status.success() {
        let again = testbed(dir.path(), &["apply", "--yes"]);
        assert!(again.status.success(), "{}\n{}", text(&setup), text(&again));
    }
    let mut killed_during = Vec::new();
    for moment in 0..10u64 {
        let gone = testbed(dir.path(), &["destroy", "--yes", "--target", "kill-member1"]);
        assert!(gone.status.success(), "{}", text(&gone));
        let after = Duration::from_millis(140 * moment);
        let mut apply = testenv::command(dir.path(), LAYERS, &["apply", "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apply");
        let mut lines = BufReader::new(apply.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let started = line.starts_with("lxd_instance.kill-member1: creating");
            seen.push(line);
            if started {
                break;
            }
        }
        assert!(seen.last().is_some_and(|l| l.starts_with("lxd_instance")), "the member was never created: {seen:?}");
        std::thread::sleep(after);
        apply.kill().expect("kill -9");
        apply.wait().unwrap();
        // Where the kill fell in the LXD part, for the record.
        seen.extend(lines.map_while(Result::ok));
        let last = seen.iter().rev().find(|l| l.starts_with("lxd_instance.") || l.starts_with("proxy."));
        killed_during.push(format!("{after:?}: after {:?}", last.cloned().unwrap_or_default()));

        let again = testbed(dir.path(), &["apply", "--yes"]);
        let out = text(&again);
        assert!(again.status.success(), "the apply after one killed {after:?} into the member's creation: {out}");
        assert!(!out.contains("already in use"), "a false reason after a kill {after:?} in: {out}");
        let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "not converged after a kill {after:?} in: {}", text(&plan));
    }
    eprintln!("killed at: {killed_during:#?}");
    let destroy = testbed(dir.path(), &["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
}
