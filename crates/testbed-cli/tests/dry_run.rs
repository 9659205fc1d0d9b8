//! `testbed apply --dry-run`: every action with the exact commands and API calls it would run, in order.
//! Snapshots for the default file and the pull-mode example, reviewed against the seeds' scripts and the
//! real tools' flags (docs/steps.md says where each comes from).

use std::path::Path;
use std::process::Command;

fn dry_run(example: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(example);
    std::fs::copy(src, dir.path().join("testbed.toml")).expect("copy");
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
    assert!(!dir.path().join(".testbed/lock").exists());
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
