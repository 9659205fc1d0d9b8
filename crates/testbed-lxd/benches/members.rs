//! Against the real LXD test daemon (`cargo xtask testenv up`): creating 8 members in parallel against one
//! after another, in one run, and the no-op plan time for 3 and 8 real members. The layers above LXD are
//! simulated (instant); what is timed is real LXD work: containers with their static addresses and API
//! proxies, from the busybox test image. Prints a Markdown table for docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let members: Vec<(String, u16)> = (1..=8).map(|i| (format!("bm{i}"), 29000 + i as u16)).collect();
    let refs: Vec<(&str, u16)> = members.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let eight = config(&file("bm", 100, &refs));
    let three = config(&file("bm", 100, &refs[..3]));
    let names: Vec<&str> = refs.iter().map(|(n, _)| *n).collect();
    let rounds = 3;

    rt.block_on(async {
        let s = Stack::new("bm");
        clear(&client(), &names, "bm").await;
        // The bridge and profile first, so that both timings cover only the members.
        let base = s.plan(&eight).await.targeted(&["lxd_network".into(), "lxd_profile".into()]);
        assert!(s.run(&base, 8).await.success());

        let timed = |parallelism: usize| {
            let s = &s;
            let eight = &eight;
            async move {
                let mut create = Vec::new();
                let mut delete = Vec::new();
                for _ in 0..rounds {
                    let p = s.plan(eight).await;
                    let t = Instant::now();
                    let r = s.run(&p, parallelism).await;
                    create.push(t.elapsed());
                    assert!(r.success(), "{}", r.summary_line("Apply"));
                    let d = s.plan(&config(&file("bm", 100, &[]))).await;
                    let t = Instant::now();
                    let r = s.run(&d, parallelism).await;
                    delete.push(t.elapsed());
                    assert!(r.success(), "{}", r.summary_line("Apply"));
                }
                (median(create), median(delete))
            }
        };
        let (par_c, par_d) = timed(8).await;
        let (ser_c, ser_d) = timed(1).await;

        println!("| 8 members (busybox test image) | one after another | in parallel (parallelism 8) | ratio |");
        println!("|---|---:|---:|---:|");
        println!(
            "| create: container + static address + API proxy | {:.2} s | {:.2} s | {:.1}x |",
            ser_c.as_secs_f64(),
            par_c.as_secs_f64(),
            ser_c.as_secs_f64() / par_c.as_secs_f64()
        );
        println!(
            "| delete | {:.2} s | {:.2} s | {:.1}x |",
            ser_d.as_secs_f64(),
            par_d.as_secs_f64(),
            ser_d.as_secs_f64() / par_d.as_secs_f64()
        );
        println!("(median of {rounds} rounds each)\n");

        println!("| real members | no-op plan (observe LXD + the simulated layers, build, plan) |");
        println!("|---:|---:|");
        for c in [&three, &eight] {
            let n = c.file.members.len();
            assert!(s.run(&s.plan(c).await, 8).await.success());
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let p = s.plan(c).await;
                times.push(t.elapsed());
                assert!(p.is_empty(), "converged before measuring");
            }
            println!("| {n} | {:.1} ms |", median(times).as_secs_f64() * 1000.0);
        }
        let d = s.destroy_plan(&eight).await;
        assert!(s.run(&d, 8).await.success());
    });
}
