//! Apply makespan against the serial sum of the same steps (what the seed scripts pay, one step after
//! another), on the simulated machine with real-magnitude latencies, in virtual time (tokio's paused clock:
//! deterministic, independent of this machine's speed), with the members' MicroK8s snap downloaded once on
//! the host and without (each member from the store; store downloads share the simulated 100 Mbit/s line).
//! Prints a Markdown table for docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use testbed_exec::{critical_path, serial_sum};

fn main() {
    println!(
        "| members | MicroK8s snap | actions | serial sum (seed scripts) | critical path | apply makespan (parallelism 8) | speed-up |"
    );
    println!("|---:|:---|---:|---:|---:|---:|---:|");
    for n in [1usize, 3, 8, 30] {
        // Downloaded once on the host and pushed into each member (the default), or fetched from the store
        // by each member (`[host] microk8s_download_once = false`): the store downloads share one line.
        for once in [true, false] {
            let dir = tempfile::tempdir().expect("temp dir");
            let text = format!("[host]\nmicrok8s_download_once = {once}\n\n{}", file(&numbered(n), false));
            let c = config(dir.path(), &text);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("rt");
            rt.block_on(async {
                let m = machine(dir.path(), 1.0, &[]);
                let (_, _, p) = plan(&m, &c).await;
                let r = run(&m, &p, 8).await;
                assert!(r.success(), "{}", r.summary_line("Apply"));
                // Each step as long as it took in this run (the LXD provider's calls to the simulated daemon
                // included).
                let took = measured(&r);
                let estimate =
                    |a: &testbed_plan::Action| took.get(a.address.as_str()).copied().unwrap_or(Duration::ZERO);
                let serial = serial_sum(&p, estimate);
                let cp = critical_path(&p, estimate);
                println!(
                    "| {n} | {} | {} | {:.0} s | {:.0} s | {:.0} s | {:.1}x |",
                    if once { "downloaded once" } else { "each member from the store" },
                    p.graph.node_count(),
                    serial.as_secs_f64(),
                    cp.as_secs_f64(),
                    r.makespan.as_secs_f64(),
                    serial.as_secs_f64() / r.makespan.as_secs_f64()
                );
            });
        }
    }
}
