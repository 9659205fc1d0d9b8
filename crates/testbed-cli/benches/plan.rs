//! Plan time against a converged simulated machine: 3, 30 and 300 members.
//! `plan` is the pure planner on an observed state; `observe+plan` adds observing the simulated machine
//! and building the desired state, i.e. what `testbed plan` does after reading the file.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::*;

fn bench(c: &mut Criterion) {
    // The runtime `testbed plan` runs on (crates/testbed-cli/src/main.rs): a worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("no-op plan");
    group.sample_size(20);
    // `cargo bench` passes `--bench`; run as a test (`cargo test --all-targets`, a debug build), each case
    // runs once and the 300-member lab, whose apply alone takes minutes in a debug build, is left out.
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if measuring { &[3, 30, 300] } else { &[3, 30] };
    for &n in sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(dir.path(), &file(&numbered(n), false));
        let m = machine(dir.path(), 0.0, &[]);
        rt.block_on(async {
            let r = apply(&m, &config, 16).await;
            assert!(r.success(), "{}", r.summary_line("Apply"));
        });
        let (desired, observed, p) = rt.block_on(plan(&m, &config));
        assert!(p.is_empty(), "converged before measuring");

        group.bench_with_input(BenchmarkId::new("plan", n), &n, |b, _| {
            b.iter(|| testbed_plan::plan(&desired, &observed).expect("plan"))
        });
        group.bench_with_input(BenchmarkId::new("observe+plan", n), &n, |b, _| {
            b.iter(|| rt.block_on(plan(&m, &config)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
