//! `testbed apply --dry-run` for side-loaded images, with LXD and the registry layer real (the project's test
//! LXD daemon, `cargo xtask testenv up`) and host, MicroK8s and Karmada simulated. The snapshot keeps only the
//! `sideload.*` actions' blocks, so that it does not change with the rest of the plan.
//!
//! Reviewed against ../shared/reference/real-tools.md: LXD's file API (`POST /1.0/instances/<n>/files?path=`)
//! does not create parent directories, hence the `mkdir -p` first; the import is `microk8s images import
//! <file.tar>`; the image is named as containerd lists it (`docker.io/library/flask-demo:2.0` for the file's
//! `flask-demo:2.0`), which is also what `microk8s ctr images rm` needs on delete.

mod testenv;

use std::path::Path;

const LAYERS: &str = "host,microk8s,karmada";

/// The lines of the dry run's `sideload.*` action blocks: the action line and its indented steps.
fn sideload_blocks(out: &str) -> String {
    let mut keep = false;
    let mut lines = Vec::new();
    let steps = out.split_once("\nDry run:").map(|(_, s)| s).unwrap_or_default();
    for l in steps.lines() {
        if !l.starts_with(' ') {
            keep = l.split_whitespace().nth(1).is_some_and(|a| a.starts_with("sideload."));
        }
        if keep {
            lines.push(l);
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn dry_run_of_side_loaded_images_with_lxd_and_the_registry_layer_real() {
    let dir = tempfile::tempdir().unwrap();
    let example = testenv::example("custom-image.toml");
    // Its own name and member names, so that containers other tests make in the shared daemon are not met.
    // The archive (images/flask-demo-2.0.tar) need not exist for a dry run.
    let file = format!("name = \"sldry\"\n{example}").replace("\"member", "\"sl-member");
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
    // The workload's manifest, which the example names relative to itself.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workloads/flask-demo/flask-demo.yaml");
    std::fs::create_dir_all(dir.path().join("workloads/flask-demo")).unwrap();
    std::fs::copy(manifest, dir.path().join("workloads/flask-demo/flask-demo.yaml")).unwrap();

    let out = testenv::testbed(dir.path(), LAYERS, &["apply", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("real: lxd, registry"), "the registry layer is real: {stderr}");
    assert!(!dir.path().join(".testbed/registry.json").exists(), "a dry run records nothing");

    let blocks = sideload_blocks(&stdout);
    // member3 is not in the image's `members`.
    assert!(blocks.contains("sideload.sl-member1.flask-demo") && !blocks.contains("sl-member3"), "{blocks}");
    let at = |s: &str| blocks.find(s).unwrap_or_else(|| panic!("{s:?} not in\n{blocks}"));
    let tar = "/var/lib/testbed/sideload/flask-demo.tar";
    assert!(at("sl-member1$ mkdir -p /var/lib/testbed/sideload") < at(&format!("files?path={tar}")));
    assert!(at(&format!("files?path={tar}")) < at(&format!("sl-member1$ microk8s images import {tar}")));
    assert!(at(&format!("sl-member1$ microk8s images import {tar}")) < at(&format!("sl-member1$ rm -f {tar}")));
    insta::assert_snapshot!(blocks);
}
