//! testbed's copy engine against `skopeo sync`, in one run, on the project's two loopback registries
//! (`cargo xtask testenv up`: upstream 127.0.0.1:5000, local 127.0.0.1:32000) and the same nine test images
//! (Karmada v1.15.9 set, one shared base layer, one amd64+arm64 index of which both copy amd64 only).
//!
//! - Cold copy of the set into a fresh target namespace each round: testbed (`Engine::copy_all`, a fresh
//!   engine per round, default concurrency) against ONE `skopeo sync --src yaml` run over a YAML file listing
//!   the nine images (the fair equivalent: one process copying the set, digests kept, amd64 of the index).
//!   skopeo's blob-info cache (/var/lib/containers/cache/blob-info-cache-v1.boltdb for root) remembers where
//!   blobs went in earlier rounds and would mount them from there; it is removed before each skopeo round so
//!   both start knowing nothing.
//! - No-op check when everything is present: testbed's concurrent manifest HEADs on the target (what
//!   observation sends), testbed's whole no-op copy (source GET + target HEAD per image), each with a warm
//!   engine and with a fresh one (TLS roots loaded, new connections), against re-running the same
//!   `skopeo sync`. `skopeo --version` is timed too: the part of skopeo's figure that is process start.
//!
//! Run: `cargo bench -p testbed-registry --bench copy`. Prints a Markdown table.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;
use testbed_registry::{Engine, Location, Options};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

const SKOPEO_CACHE: &str = "/var/lib/containers/cache/blob-info-cache-v1.boltdb";

fn skopeo_sync(yaml: &Path, dest: &str) -> Duration {
    let t = Instant::now();
    let out = Command::new("skopeo")
        .args(["sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"])
        .arg(yaml)
        .arg(dest)
        .output()
        .expect("skopeo runs (cargo xtask testenv up installs it)");
    let took = t.elapsed();
    assert!(out.status.success(), "skopeo sync failed: {}", String::from_utf8_lossy(&out.stderr));
    took
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (up, local) = (upstream(), local());
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = dir.path().join("sync.yaml");
    let mut text = format!("{}:\n  tls-verify: false\n  images:\n", up.host());
    for (repo, tag) in IMAGES {
        text.push_str(&format!("    {repo}: [{tag}]\n"));
    }
    std::fs::write(&yaml, text).expect("write the sync file");
    // skopeo sync puts each image at <dest>/<last path component>: the same names testbed is given here.
    let base = |repo: &str| repo.rsplit('/').next().unwrap_or(repo).to_owned();
    let jobs_into = |ns: &str| -> Vec<testbed_registry::CopyJob> {
        IMAGES
            .iter()
            .map(|(repo, tag)| {
                testbed_registry::CopyJob::new(
                    Location::new(up.clone(), *repo, *tag),
                    Location::new(local.clone(), format!("{ns}/{}", base(repo)), *tag),
                )
            })
            .collect()
    };
    let run = format!("bench{}", std::process::id());
    let rounds = 5;
    let (mut tb_cold, mut sk_cold) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    let (mut tb_ns, mut sk_ns) = (String::new(), String::new());
    for i in 0..rounds {
        tb_ns = format!("{run}-tb{i}");
        let jobs = jobs_into(&tb_ns);
        let t = Instant::now();
        let e = Engine::new(Options::default()).expect("engine");
        let results = rt.block_on(e.copy_all(&jobs, &|_| {}));
        tb_cold.push(t.elapsed());
        bytes = 0;
        for r in results {
            let r = r.unwrap_or_else(|err| panic!("{err}"));
            assert!(!r.up_to_date);
            bytes += r.bytes_uploaded;
        }

        sk_ns = format!("{run}-sk{i}");
        let _ = std::fs::remove_file(SKOPEO_CACHE);
        sk_cold.push(skopeo_sync(&yaml, &format!("{}/{sk_ns}", local.host())));
    }
    // Both tools leave the same digests.
    let e = Engine::new(Options::default()).expect("engine");
    let tb_targets: Vec<Location> = jobs_into(&tb_ns).into_iter().map(|j| j.target).collect();
    let sk_targets: Vec<Location> = jobs_into(&sk_ns).into_iter().map(|j| j.target).collect();
    let a: Vec<_> = rt.block_on(e.head_manifests(&tb_targets)).into_iter().map(|r| r.unwrap().unwrap()).collect();
    let b: Vec<_> = rt.block_on(e.head_manifests(&sk_targets)).into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert_eq!(a, b, "testbed and skopeo left the same digests");

    let iterations = 21;
    let jobs = jobs_into(&tb_ns);
    let time = |f: &dyn Fn()| {
        let mut v = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            f();
            v.push(t.elapsed());
        }
        median(v)
    };
    let heads_warm = time(&|| {
        for r in rt.block_on(e.head_manifests(&tb_targets)) {
            assert!(r.unwrap().is_some());
        }
    });
    let heads_fresh = time(&|| {
        let e = Engine::new(Options::default()).expect("engine");
        for r in rt.block_on(e.head_manifests(&tb_targets)) {
            assert!(r.unwrap().is_some());
        }
    });
    let noop_warm = time(&|| {
        for r in rt.block_on(e.copy_all(&jobs, &|_| {})) {
            assert!(r.unwrap().up_to_date);
        }
    });
    let noop_fresh = time(&|| {
        let e = Engine::new(Options::default()).expect("engine");
        for r in rt.block_on(e.copy_all(&jobs, &|_| {})) {
            assert!(r.unwrap().up_to_date);
        }
    });
    let sk_noop = time(&|| {
        skopeo_sync(&yaml, &format!("{}/{sk_ns}", local.host()));
    });
    let sk_start = time(&|| {
        assert!(Command::new("skopeo").arg("--version").output().expect("skopeo").status.success());
    });

    let ratio = |a: Duration, b: Duration| format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64());
    println!(
        "{} images ({:.1} MB of blobs sent per cold copy, one base layer shared by all of them), loopback registries, median of {rounds} cold rounds / {iterations} no-op runs\n",
        IMAGES.len(),
        bytes as f64 / 1e6
    );
    println!("| | testbed | skopeo sync | skopeo / testbed |");
    println!("|---|---:|---:|---:|");
    let sk_cold = median(sk_cold);
    let tb_cold = median(tb_cold);
    println!("| cold copy of the set | {} | {} | {} |", ms(tb_cold), ms(sk_cold), ratio(sk_cold, tb_cold));
    println!(
        "| no-op: target manifest HEADs, warm engine | {} | {} | {} |",
        ms(heads_warm),
        ms(sk_noop),
        ratio(sk_noop, heads_warm)
    );
    println!(
        "| no-op: target manifest HEADs, fresh engine | {} | {} | {} |",
        ms(heads_fresh),
        ms(sk_noop),
        ratio(sk_noop, heads_fresh)
    );
    println!(
        "| no-op copy (source GET + target HEAD), warm engine | {} | {} | {} |",
        ms(noop_warm),
        ms(sk_noop),
        ratio(sk_noop, noop_warm)
    );
    println!(
        "| no-op copy (source GET + target HEAD), fresh engine | {} | {} | {} |",
        ms(noop_fresh),
        ms(sk_noop),
        ratio(sk_noop, noop_fresh)
    );
    println!("\n(`skopeo --version` alone: {}, the process-start part of each skopeo figure)", ms(sk_start));
}
