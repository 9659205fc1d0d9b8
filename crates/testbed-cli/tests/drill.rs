//! Issue 14, item 4: `testbed drill failover MEMBER` on the simulated world with examples/failover.toml. The
//! simulated Karmada evicts and schedules (crates/testbed-sim/src/propagation.rs) on the simulated machine's
//! clock, which runs ahead while the drill waits: nothing here ran against a real Karmada, and the drill
//! says its times are simulated.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

fn testbed(dir: &Path, args: &[&str]) -> Output {
    support::simulated(dir, args)
}

fn text(out: &Output) -> String {
    support::said(out)
}

/// examples/failover.toml, converged, with `edit` applied to the file first.
fn converged(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = support::example_lab("failover.toml");
    let file = dir.path().join("testbed.toml");
    std::fs::write(&file, edit(&std::fs::read_to_string(&file).unwrap())).unwrap();
    let out = testbed(dir.path(), &["apply", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    dir
}

fn world(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".testbed/sim.json")).unwrap()).unwrap()
}

/// The taints on the simulated Karmada's Cluster of `member`.
fn taints(dir: &Path, member: &str) -> Value {
    world(dir)["world"]["host"]["microk8s"]["karmada"]["etcd"]["clusters"][member]["taints"].clone()
}

/// The events of a `--json` timeline as `(seconds, event, workload or member, member)`.
fn events(doc: &Value) -> Vec<(u64, String, String)> {
    doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let who = match (e["workload"].as_str(), e["member"].as_str()) {
                (Some(w), Some(m)) => format!("{w} {m}"),
                (None, Some(m)) => m.to_owned(),
                _ => String::new(),
            };
            (e["at_ms"].as_u64().unwrap() / 1000, e["event"].as_str().unwrap().to_owned(), who)
        })
        .collect()
}

/// The Must-show: seed 003's workload runs on member1 (weight 1); the drill taints member1, the workload is
/// evicted once its 60 s toleration has passed and runs on member2, the next member by weight (member3 and
/// member2 both have 0, and Karmada takes them by name), member1 is untainted and Ready again, and the
/// workload stays where it settled. A drill of member2 then sends it back to member1, the heavier.
#[test]
fn the_drill_shows_the_move_to_the_next_member_by_weight_and_the_return() {
    let dir = converged(str::to_owned);
    let d = dir.path();
    let out = testbed(d, &["drill", "failover", "member1"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Times are on the simulated machine's clock: they are not real ones."), "{stdout}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let at = |what: &str| lines.iter().position(|l| l.ends_with(what)).unwrap_or_else(|| panic!("{what}:\n{stdout}"));
    // In the order they happened, each once.
    let order = [
        at("member1 tainted cluster.karmada.io/not-ready=testbed-drill:NoExecute"),
        at("my-app evicted from member1"),
        at("my-app scheduled on member2"),
        at("my-app Ready on member2"),
        at("member1 untainted cluster.karmada.io/not-ready=testbed-drill:NoExecute"),
        at("member1 Ready again"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{stdout}");
    assert!(lines[order[0]].starts_with("0 s "), "{stdout}");
    let evicted: u64 = lines[order[1]].split_whitespace().next().unwrap().parse().unwrap();
    assert!((60..=62).contains(&evicted), "evicted once the 60 s toleration passed: {stdout}");
    assert!(stdout.contains("Before:\n    my-app  member1 (healthy)"), "{stdout}");
    assert!(stdout.contains("Settled:\n    my-app  member2 (healthy)"), "{stdout}");
    assert!(stdout.contains("Failover drill passed"), "{stdout}");
    // Restored: no taint left, and the file is still met (failing over is Karmada's doing).
    assert_eq!(taints(d, "member1"), Value::Null, "{said}");
    let plan = testbed(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // The return: member2 fails, and the workload goes back to member1, the member of weight 1.
    let out = testbed(d, &["drill", "failover", "member2", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["simulated_time"], true);
    assert_eq!(doc["result"], "passed");
    assert_eq!(doc["toleration_ms"], 60_000);
    let got = events(&doc);
    let kinds: Vec<(&str, &str)> = got.iter().map(|(_, e, w)| (e.as_str(), w.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("tainted", "member2"),
            ("evicted", "my-app member2"),
            ("scheduled", "my-app member1"),
            ("ready", "my-app member1"),
            ("pods_gone", "my-app member2"),
            ("untainted", "member2"),
            ("member_ready", "member2"),
        ],
        "{doc}"
    );
    assert!((60..=62).contains(&got[1].0), "{doc}");
    assert_eq!(doc["after"][0]["members"], serde_json::json!([{"member": "member1", "healthy": true}]), "{doc}");
}

/// With the Failover gate off Karmada moves nothing: the drill refuses before it changes anything, and says
/// what to set.
#[test]
fn with_failover_off_the_drill_refuses_naming_the_fix() {
    let dir = converged(|f| f.replace("failover = true", "failover = false"));
    let d = dir.path();
    let out = testbed(d, &["drill", "failover", "member1"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("cluster failover is off in Karmada"), "{said}");
    assert!(said.contains("set `failover = true` under [karmada] in testbed.toml"), "{said}");
    assert!(out.stdout.is_empty(), "no timeline: {said}");
    assert_eq!(taints(d, "member1"), Value::Null, "nothing was tainted: {said}");
}

/// Without a workload whose policy fails over, there is nothing to drill: refused, with what to add. A
/// member no such workload runs on is refused too, naming the one it runs on; and a name that is not a member.
#[test]
fn the_drill_refuses_without_a_failover_workload_on_the_member() {
    let dir = converged(|f| f.replace("failover = { toleration_seconds = 60, purge_mode = \"Gracefully\" }\n", ""));
    let out = testbed(dir.path(), &["drill", "failover", "member1"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no workload has a failover policy"), "{said}");
    assert!(said.contains("failover = { toleration_seconds = 60"), "{said}");

    let dir = converged(str::to_owned);
    let out = testbed(dir.path(), &["drill", "failover", "member3"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no workload with a failover policy runs on member3: my-app runs on member1"), "{said}");
    assert!(said.contains("testbed drill failover member1"), "{said}");
    assert_eq!(taints(dir.path(), "member3"), Value::Null, "{said}");

    let out = testbed(dir.path(), &["drill", "failover", "member9"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("\"member9\" is not a member of testbed.toml"), "{said}");
    assert!(said.contains("member1, member2, member3"), "{said}");
}

/// A drill that was killed before it restored its member leaves its taint; the next drill takes it off
/// first, says so, and runs.
#[test]
fn a_taint_an_earlier_drill_left_is_taken_off_first() {
    let dir = converged(str::to_owned);
    let d = dir.path();
    let mut w = world(d);
    w["world"]["host"]["microk8s"]["karmada"]["etcd"]["clusters"]["member1"]["taints"] = serde_json::json!([{
        "key": "cluster.karmada.io/not-ready", "value": "testbed-drill", "effect": "NoExecute",
        "added_at_ms": u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap(),
    }]);
    std::fs::write(d.join(".testbed/sim.json"), serde_json::to_string(&w).unwrap()).unwrap();
    let out = testbed(d, &["drill", "failover", "member1"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("member1 still has the taint cluster.karmada.io/not-ready=testbed-drill:NoExecute of an earlier drill; taking it off first"), "{said}");
    assert!(said.contains("my-app Ready on member2"), "{said}");
    assert_eq!(taints(d, "member1"), Value::Null, "{said}");
}

/// Ctrl-C while the drill waits out the toleration: it restores the member before it stops, prints the
/// timeline so far, and exits as a run the signal ended (130).
#[test]
fn ctrl_c_restores_the_member_before_the_drill_stops() {
    use std::io::BufRead as _;
    let dir = converged(str::to_owned);
    let d = dir.path();
    // At the speed of real time, the drill would wait a real minute for the eviction.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(d)
        .args(["-c", "testbed.toml", "--simulate", "all", "drill", "failover", "member1"])
        .env("TESTBED_SIM_SPEED", "1")
        .env_remove("TESTBED_SIM_FAIL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("Tainted member1") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the drill ended before it tainted: {said}");
        said.push_str(&line);
    }
    assert_eq!(taints(d, "member1")[0]["value"], "testbed-drill", "{said}");
    // The drill holds the run lock, as apply does: an apply meanwhile is refused, naming it.
    let apply = testbed(d, &["apply", "--yes"]);
    let refused = text(&apply);
    assert_eq!(apply.status.code(), Some(1), "{refused}");
    assert!(
        refused.contains("is locked by another testbed run") && refused.contains("testbed drill failover"),
        "{refused}"
    );
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with the pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{said}{rest}{stdout}");
    assert!(rest.contains("Interrupt: restoring member1 before stopping"), "{rest}");
    assert!(stdout.contains("member1 untainted cluster.karmada.io/not-ready=testbed-drill:NoExecute"), "{stdout}");
    assert!(stdout.contains("Failover drill interrupted; member1 is restored."), "{stdout}");
    assert!(!stdout.contains("evicted"), "stopped before the toleration passed: {stdout}");
    assert_eq!(taints(d, "member1"), Value::Null, "{stdout}");
}

/// `--stop` fails the member as an outage does: its container stops, Karmada sees its Cluster not Ready and
/// testbed's ClusterTaintPolicy taints it NoExecute, the workload moves once the toleration has passed, and
/// the container is started again; the member's MicroK8s is back and the file is still met.
#[test]
fn stop_fails_the_member_by_its_container_and_starts_it_again() {
    let dir = converged(str::to_owned);
    let d = dir.path();
    let out = testbed(d, &["drill", "failover", "member1", "--stop", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(doc["how"], "stop");
    let got = events(&doc);
    let kinds: Vec<(&str, &str)> = got.iter().map(|(_, e, w)| (e.as_str(), w.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("stopped", "member1"),
            ("not_ready", "member1"),
            ("tainted_by_karmada", "member1"),
            ("evicted", "my-app member1"),
            ("scheduled", "my-app member2"),
            ("ready", "my-app member2"),
            ("started", "member1"),
            ("member_ready", "member1"),
        ],
        "{doc}"
    );
    // The toleration runs from Karmada's taint.
    assert!(got[3].0 >= got[2].0 + 60, "{doc}");
    assert_eq!(doc["events"][2]["taint"], "cluster.karmada.io/not-ready:NoExecute", "{doc}");
    let container = &world(d)["world"]["lxd_daemon"]["instances"]["member1"];
    assert_eq!(container["status"], "Running", "{container}");
    let plan = testbed(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

/// When there is nowhere to move to (the workload's only other member is down), the drill fails after the
/// toleration and the margin, says which workload did not move, and restores the member all the same.
#[test]
fn a_workload_with_nowhere_to_go_fails_the_drill_and_the_member_is_restored() {
    let dir = converged(|f| {
        f.replace(r#"members = ["member1", "member2", "member3"]"#, r#"members = ["member1", "member2"]"#)
            .replace("weights = { member1 = 1, member2 = 0, member3 = 0 }", "weights = { member1 = 1, member2 = 0 }")
    });
    let d = dir.path();
    let mut w = world(d);
    w["world"]["lxd_daemon"]["instances"]["member2"]["status"] = Value::from("Stopped");
    std::fs::write(d.join(".testbed/sim.json"), serde_json::to_string(&w).unwrap()).unwrap();
    let out = testbed(d, &["drill", "failover", "member1", "--margin", "30s"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("my-app evicted from member1"), "{said}");
    assert!(!said.contains("my-app scheduled on"), "{said}");
    assert!(
        said.contains("Failover drill failed: my-app did not run healthy elsewhere within 90 s (tolerated for 60 s); member1 is restored."),
        "{said}"
    );
    assert!(said.contains("member1 Ready again"), "{said}");
    assert_eq!(taints(d, "member1"), Value::Null, "{said}");
}
