//! Merging the lab's contexts into a person's kubeconfig, side by side with what people do without testbed:
//! `KUBECONFIG=~/.kube/config:lab.config kubectl config view --flatten > merged`. Both are whole processes,
//! on a lab of three members converged on the simulated machine; each run starts from the same kubeconfig of
//! the person's own (restored outside the timing).
//!
//! They do not do the same work: `testbed kubeconfig --merge` reads the lab (its members' kubeconfigs and the
//! Karmada kubeconfig), builds the prefixed contexts, keeps the person's lines byte for byte, backs the file
//! up and writes it 0600; kubectl's flatten is given the lab's contexts ready-made (written once beforehand by
//! `testbed kubeconfig -o`) and rewrites the whole file in its own layout. kubectl is the test environment's
//! (`cargo xtask testenv up` installs Debian's when the machine has none), or `$KUBECTL`; without one, only
//! testbed's runs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

/// A person's kubeconfig before the merge: one cluster, user and context of their own.
const MINE: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: QUJD
    server: https://staging.example.com:6443
  name: staging
contexts:
- context:
    cluster: staging
    user: me
  name: staging
current-context: staging
kind: Config
preferences: {}
users:
- name: me
  user:
    token: not-a-real-token
";

/// `$KUBECTL`, or the `kubectl` on the PATH.
fn kubectl() -> Option<String> {
    if let Ok(k) = std::env::var("KUBECTL") {
        return Some(k);
    }
    let found = Command::new("sh").args(["-c", "command -v kubectl"]).output().ok()?;
    found.status.success().then(|| String::from_utf8_lossy(&found.stdout).trim().to_owned())
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("testbed.toml"), support::THREE).expect("write the file");
    let apply = support::simulated(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", support::said(&apply));
    let mine = d.join("mine.config");
    let restore = |p: &Path| std::fs::write(p, MINE).expect("write the person's kubeconfig");

    let mut group = c.benchmark_group("merge the lab's contexts into a kubeconfig");
    group.sample_size(20);
    group.bench_function("testbed kubeconfig --merge", |b| {
        b.iter_batched(
            || restore(&mine),
            |()| {
                let out =
                    support::simulated_with(d, &["kubeconfig", "--merge"], &[("KUBECONFIG", mine.to_str().unwrap())]);
                assert!(out.status.success(), "{}", support::said(&out));
            },
            BatchSize::PerIteration,
        )
    });
    match kubectl() {
        Some(kubectl) => {
            let lab = d.join("lab.config");
            let out = support::simulated(d, &["kubeconfig", "-o", lab.to_str().unwrap()]);
            assert!(out.status.success(), "{}", support::said(&out));
            let both = format!("{}:{}", mine.display(), lab.display());
            group.bench_function("KUBECONFIG=mine:lab kubectl config view --flatten", |b| {
                b.iter_batched(
                    || restore(&mine),
                    |()| {
                        let out = Command::new(&kubectl)
                            .args(["config", "view", "--flatten"])
                            .env("KUBECONFIG", &both)
                            .output()
                            .expect("run kubectl");
                        assert!(out.status.success(), "{}", support::said(&out));
                        std::fs::write(d.join("merged.config"), &out.stdout).expect("write the merged file");
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        None => eprintln!("no kubectl on this machine: only testbed's merge is measured"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
