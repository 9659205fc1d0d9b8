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
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_testbed"))
            .current_dir(dir.path())
            .args(["-c", "testbed.toml", "--simulate", "all"])
            .args(args)
            .env("TESTBED_SIM_SPEED", "0")
            .output()
            .unwrap()
    };
    assert!(run(&["apply", "--yes"]).status.success());
    let out = String::from_utf8(run(&["destroy", "--dry-run", "--target", "member2"]).stdout).unwrap();
    let unjoin = out.find("karmadactl unjoin member2").expect("unjoin");
    let delete = out.find("DELETE /1.0/instances/member2").expect("container delete");
    assert!(unjoin < delete, "{out}");
    assert!(!out.contains("member1") && !out.contains("member3"), "{out}");
}
