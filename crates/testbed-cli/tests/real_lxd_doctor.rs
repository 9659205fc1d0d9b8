//! Issue 14, item 3, against the real daemons: `testbed doctor` with LXD real, and again with Incus real (the
//! project's test daemons, `cargo xtask testenv up`), and the layers above them simulated. What is real here: the containers, their
//! state, the proxy devices, who holds each host port (a real bind, and the holder's process found in /proc),
//! and the request through an application proxy. The member APIs, their TLS servers, nodes, pods and Karmada
//! are the simulated machine's, served where the real containers and proxies say they are.
//!
//! A converged lab passes; then a stopped member container, a proxy device removed by hand and a host port
//! taken by another program are each reported against the right member, with the next step, and exit 1.

mod testenv;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use testenv::{text, Daemon};

const LAYERS: &str = "host,microk8s,registry,karmada";

/// Held by each test here: they run one at a time, as those of tests/real_lxd_cli.rs do (Incus 6.0.4 fails
/// a bridge's creation when a veth it lists, of another test's container, vanishes meanwhile).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lab of one daemon: its name (each member is `NAME-memberN`), and its first API port (the members' are
/// this one and the next two).
fn lab(daemon: Daemon) -> (&'static str, u16) {
    match daemon {
        Daemon::Lxd => ("doc", 26861),
        Daemon::Incus => ("idoc", 26871),
    }
}

/// Three members on their own bridge, their API ports from [`lab`].
fn file(daemon: Daemon) -> String {
    let (tag, port) = lab(daemon);
    let backend = daemon.backend();
    let net = match daemon {
        Daemon::Lxd => 63,
        Daemon::Incus => 64,
    };
    let mut text = format!(
        r#"name = "{tag}"

[lxd]
backend = "{backend}"
bridge = "tb{tag}0"
ipv4_address = "10.199.{net}.1/24"
storage_pool = "default"
image = "testbed-busybox"
profile = "tb{tag}-member"

[lxd.profile_config]
"linux.kernel_modules" = "overlay,nf_conntrack"
"#
    );
    for i in 0..3u16 {
        text.push_str(&format!("\n[[members]]\nname = \"{tag}-member{}\"\napi_port = {}\n", i + 1, port + i));
    }
    text
}

fn testbed(daemon: Daemon, dir: &Path, args: &[&str]) -> Output {
    testenv::testbed_on(daemon, dir, LAYERS, args)
}

/// `doctor --json`, its exit code, its findings, and how long it took.
fn doctor(daemon: Daemon, dir: &Path) -> (Option<i32>, Value, Duration) {
    let started = Instant::now();
    let out = testbed(daemon, dir, &["doctor", "--json"]);
    let took = started.elapsed();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code(), doc, took)
}

/// The finding of `check` on `member` (the only one there is).
fn finding<'a>(doc: &'a Value, check: &str, member: &str) -> &'a Value {
    let found: Vec<&Value> =
        doc["findings"].as_array().unwrap().iter().filter(|f| f["check"] == check && f["member"] == member).collect();
    assert_eq!(found.len(), 1, "one {check} finding on {member}: {doc:#}");
    found[0]
}

/// The (member, check) of every finding that did not pass or was skipped.
fn failed(doc: &Value) -> Vec<(String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| (f["member"].as_str().unwrap_or("host").to_owned(), f["check"].as_str().unwrap().to_owned()))
        .collect()
}

fn said(f: &Value, key: &str) -> String {
    f[key].as_str().unwrap_or_default().to_owned()
}

#[test]
fn doctor_on_real_lxd_finds_a_stopped_container_a_removed_proxy_and_a_port_taken_by_another_program() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    finds_a_stopped_container_a_removed_proxy_and_a_port_taken(Daemon::Lxd);
}

#[test]
fn doctor_on_real_incus_finds_a_stopped_container_a_removed_proxy_and_a_port_taken_by_another_program() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    finds_a_stopped_container_a_removed_proxy_and_a_port_taken(Daemon::Incus);
}

fn finds_a_stopped_container_a_removed_proxy_and_a_port_taken(daemon: Daemon) {
    let (tag, first_port) = lab(daemon);
    let [m1, m2, m3] = [1, 2, 3].map(|i| format!("{tag}-member{i}"));
    let [p1, p2, p3] = [0, 1, 2].map(|i| first_port + i);
    let (lxc, named) = (daemon.flavor().command(), daemon.flavor().name());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("testbed.toml"), file(daemon)).unwrap();
    let testbed = |d: &Path, args: &[&str]| testbed(daemon, d, args);
    let doctor = |d: &Path| doctor(daemon, d);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A client per call: an idle connection kept between calls may have been closed by the daemon.
    let cl = || daemon.client();
    let wait = Duration::from_secs(60);
    let state = |name: &str, action: &str| {
        let body = serde_json::json!({"action": action, "timeout": 30, "force": true});
        rt.block_on(cl().put(&format!("/1.0/instances/{name}/state"), &body, wait)).unwrap();
    };
    // `lxc config device remove NAME api`, as the client does it: the instance read, and written back
    // without the device.
    let remove_api_device = |name: &str| {
        let path = format!("/1.0/instances/{name}");
        let mut inst: Value = rt.block_on(cl().get(&path)).unwrap();
        inst["devices"].as_object_mut().unwrap().remove("api").expect("the api device was there");
        let body = serde_json::json!({
            "architecture": inst["architecture"], "config": inst["config"], "devices": inst["devices"],
            "ephemeral": inst["ephemeral"], "profiles": inst["profiles"], "description": inst["description"],
        });
        rt.block_on(cl().put(&path, &body, wait)).unwrap();
    };
    // What an earlier, interrupted run left.
    let _ = testbed(d, &["destroy", "--yes"]);

    // A first apply that meets LXD 5.0's race between concurrent network creations (another test's bridge)
    // is applied again, as a user would.
    let apply = testbed(d, &["apply", "--yes"]);
    if !apply.status.success() {
        let again = testbed(d, &["apply", "--yes"]);
        assert!(again.status.success(), "{}\n{}", text(&apply), text(&again));
    }

    // Converged: everything passes, exit 0; the answers of the simulated layers are marked so.
    let (code, doc, took) = doctor(d);
    eprintln!("doctor on a converged lab of 3 members (real {named}): {took:?}");
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(failed(&doc), Vec::<(String, String)>::new());
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["simulated"], serde_json::json!(["host", "microk8s", "registry", "karmada"]));
    for m in [&m1, &m2, &m3] {
        for check in ["container", "api_proxy", "host_port", "tls", "api", "nodes", "cluster", "pods"] {
            assert_eq!(finding(&doc, check, m)["status"], "pass", "{check} on {m}: {doc:#}");
        }
    }
    let port = finding(&doc, "host_port", &m2);
    assert_eq!(port["simulated"], false, "{named}'s answers are real");
    assert_eq!(said(port, "seen"), format!("127.0.0.1:{p2} is held by {m2}'s proxy device `api`"));
    assert_eq!(finding(&doc, "tls", &m2)["simulated"], true, "MicroK8s' API server is simulated");
    // The text report says the same, with the banner first.
    let out = testbed(d, &["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("real: lxd"), "{}", text(&out));

    // 1. A stopped member container: reported on that member, with the command that starts it.
    state(&m1, "stop");
    let (code, doc, took) = doctor(d);
    eprintln!("doctor with a stopped container (real {named}): {took:?}");
    assert_eq!(code, Some(1), "{doc:#}");
    let container = finding(&doc, "container", &m1);
    assert_eq!(container["status"], "fail");
    assert!(said(container, "seen").contains(&format!("container {m1} is not running")), "{container:#}");
    assert!(said(container, "next").starts_with(&format!("`{lxc} start {m1}`")), "{container:#}");
    // LXD's proxies do not listen while their container is stopped: the port is free, and said why.
    let port = finding(&doc, "host_port", &m1);
    assert_eq!(port["status"], "fail");
    assert!(said(port, "seen").contains(&format!("nothing listens on 127.0.0.1:{p1}")), "{port:#}");
    assert_eq!(finding(&doc, "api", &m1)["status"], "skipped");
    assert!(failed(&doc).iter().all(|(m, _)| m == &m1), "only {m1} fails: {doc:#}");
    state(&m1, "start");
    let (code, doc, _) = doctor(d);
    assert_eq!(code, Some(0), "started again, the member passes: {doc:#}");

    // 2. A proxy device removed by hand: reported on that member; `testbed apply` puts it back.
    remove_api_device(&m2);
    let (code, doc, _) = doctor(d);
    assert_eq!(code, Some(1), "{doc:#}");
    let proxy = finding(&doc, "api_proxy", &m2);
    assert_eq!(proxy["status"], "fail");
    assert!(said(proxy, "seen").contains(&format!("container {m2} has no proxy device `api`")), "{proxy:#}");
    assert!(said(proxy, "next").contains("`testbed apply` adds it again"), "{proxy:#}");
    let port = finding(&doc, "host_port", &m2);
    assert_eq!(said(port, "seen"), format!("nothing listens on 127.0.0.1:{p2}"), "{port:#}");
    let api = finding(&doc, "api", &m2);
    assert_eq!(api["status"], "fail");
    assert!(said(api, "seen").contains("unreachable"), "the API behind the missing proxy: {api:#}");
    assert!(failed(&doc).iter().all(|(m, _)| m == &m2), "only {m2} fails: {doc:#}");
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let (code, doc, _) = doctor(d);
    assert_eq!(code, Some(0), "{doc:#}");

    // 3. A host port taken by another program: the member's proxy is gone and this test's own listener holds
    // its port. Reported on that member, naming the program (this test, found in /proc).
    remove_api_device(&m3);
    let listener = std::net::TcpListener::bind(("127.0.0.1", p3)).expect("the port is free once the proxy is gone");
    let (code, doc, took) = doctor(d);
    eprintln!("doctor with a port taken by another program (real {named}): {took:?}");
    assert_eq!(code, Some(1), "{doc:#}");
    let port = finding(&doc, "host_port", &m3);
    assert_eq!(port["status"], "fail");
    let seen = said(port, "seen");
    assert!(seen.starts_with(&format!("127.0.0.1:{p3} is held by another program: ")), "{port:#}");
    assert!(seen.contains(&format!("(pid {})", std::process::id())), "the program is named: {port:#}");
    assert!(said(port, "next").contains(&format!("ss -ltnp 'sport = :{p3}'")), "{port:#}");
    assert!(said(port, "next").contains(&format!("change {m3}'s `api_port`")), "{port:#}");
    assert_eq!(finding(&doc, "tls", &m3)["status"], "skipped", "nothing of the member's listens there");
    assert!(failed(&doc).iter().all(|(m, _)| m == &m3), "only {m3} fails: {doc:#}");
    // Apply cannot put the proxy back while the port is taken, and says so; once it is free, it can.
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(!apply.status.success(), "{}", text(&apply));
    assert!(text(&apply).contains("already in use by another program"), "{}", text(&apply));
    drop(listener);
    let apply = testbed(d, &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let (code, doc, _) = doctor(d);
    assert_eq!(code, Some(0), "{doc:#}");

    // doctor changed nothing: the plan has nothing to do.
    let plan = testbed(d, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let destroy = testbed(d, &["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
}
