//! Snapshots of `testbed plan`, `plan --json` and `graph` for every file in examples/, planned against an
//! empty simulated machine. A change in what testbed would do to a fresh host shows up here for review.

mod support;

use std::path::Path;
use std::process::Command;

fn testbed(example: &Path, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("testbed.toml");
    std::fs::copy(example, &config).expect("copy example");
    // The workloads' manifests, which the examples name relative to themselves.
    support::copy_example_workloads(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("-c")
        .arg(&config)
        .args(["--simulate", "all"])
        .args(args)
        .env("TESTBED_SIM_SPEED", "0")
        .env_remove("TESTBED_SIM_FAIL")
        .output()
        .expect("run testbed");
    assert!(out.status.success(), "{}: {}", example.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn plans_of_every_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut examples: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "{examples:?}");
    for example in examples {
        let name = example.file_stem().and_then(|s| s.to_str()).expect("name").to_owned();
        insta::assert_snapshot!(format!("{name}.plan"), testbed(&example, &["plan"]));
        insta::assert_snapshot!(format!("{name}.json"), testbed(&example, &["plan", "--json"]));
        insta::assert_snapshot!(format!("{name}.dot"), testbed(&example, &["graph"]));
    }
}
