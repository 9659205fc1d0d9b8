//! Planning against many leftovers: a machine where testbed owns 2,000 members (container, API proxy,
//! kubeconfig, membership each: 8,000 resources) that the file no longer lists, against a file of three.
//! The pure planner only; the destroy half of such a plan is what `testbed destroy` plans for a big lab.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use testbed_plan::{desired, Address, Kind, Observed, ObservedState, Owner, Spec};

fn spec(pairs: &[(&str, String)]) -> Spec {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// What observation finds of `n` members testbed made, `member1`..`memberN`, none of them in the file.
fn leftovers(n: usize) -> ObservedState {
    let mut o = ObservedState::default();
    for i in 1..=n {
        let m = format!("member{i}");
        let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        let mut add = |kind: Kind, rest: &[&str], s: Spec| {
            o.insert(Observed::new(Address::new(kind, rest), kind, Some(&m), Owner::Testbed, s));
        };
        add(Kind::LxdInstance, &[&m], spec(&[("image", "ubuntu:24.04".into()), ("ipv4", ip.clone())]));
        add(Kind::Proxy, &[&m, "api"], spec(&[("listen", format!("tcp:127.0.0.1:{}", 20000 + i))]));
        add(Kind::Kubeconfig, &[&m], spec(&[("path", format!("/kube/{m}.config"))]));
        add(Kind::KarmadaMember, &[&m], spec(&[("mode", "push".into())]));
    }
    o
}

fn bench(c: &mut Criterion) {
    let mut text = String::new();
    for (i, port) in [16441, 16442, 16444].into_iter().enumerate() {
        text.push_str(&format!("[[members]]\nname = \"kept{}\"\napi_port = {port}\n\n", i + 1));
    }
    let config = testbed_config::parse(Path::new("testbed.toml"), &text).expect("valid config");
    let mut group = c.benchmark_group("plan with leftovers");
    group.sample_size(10);
    for n in [250, 2000] {
        let observed = leftovers(n);
        let desired = desired::build(&config, &observed);
        let p = testbed_plan::plan(&desired, &observed).expect("plan");
        assert_eq!(p.summary().delete, 4 * n, "every leftover is deleted");
        group.bench_with_input(BenchmarkId::new("plan", 4 * n), &n, |b, _| {
            b.iter(|| testbed_plan::plan(&desired, &observed).expect("plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
