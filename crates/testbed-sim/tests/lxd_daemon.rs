//! The simulated LXD daemon, driven by the real LXD client and provider: it answers as LXD 5.0 does in the
//! cases that break naive automation (lxd-5.0.3 sources cited in `lxd_daemon/api.rs`).

use std::time::Duration;

use serde_json::json;
use testbed_lxd::{Client, LxdError};
use testbed_sim::{SimMachine, SimOptions};

struct Bench {
    _dir: tempfile::TempDir,
    machine: SimMachine,
}

fn bench(speed: f64) -> Bench {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = SimOptions { speed, ..SimOptions::instant() };
    let machine = SimMachine::open(dir.path().join("sim.json"), options).expect("opens");
    Bench { _dir: dir, machine }
}

/// A client of the machine's daemon, with LXD installed on the simulated host and a bridge and pool made.
async fn installed(b: &Bench) -> Client {
    b.machine.edit(|w| w.install_lxd_by_hand()).expect("saved");
    let client = b.machine.lxd_provider().expect("daemon").client().clone();
    let bridge = json!({"name": "lxdbr0", "type": "bridge", "config": {"ipv4.address": "10.9.0.1/24"}});
    client.post("/1.0/networks", &bridge, Duration::from_secs(60)).await.expect("bridge");
    let pool = json!({"name": "default", "driver": "dir", "config": {}});
    client.post("/1.0/storage-pools", &pool, Duration::from_secs(60)).await.expect("pool");
    client
}

fn container(name: &str, ipv4: &str) -> serde_json::Value {
    json!({
        "name": name,
        "type": "container",
        "source": {"type": "image", "mode": "pull", "server": "https://cloud-images.ubuntu.com/releases", "protocol": "simplestreams", "alias": "22.04"},
        "profiles": ["default"],
        "devices": {
            "eth0": {"type": "nic", "name": "eth0", "network": "lxdbr0", "ipv4.address": ipv4},
            "root": {"type": "disk", "path": "/", "pool": "default"},
        },
    })
}

fn api_error(e: LxdError) -> (u16, String) {
    match e {
        LxdError::Api { code, message, .. } => (code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

const LONG: Duration = Duration::from_secs(300);

#[tokio::test]
async fn before_lxd_is_installed_there_is_no_socket() {
    let b = bench(0.0);
    let client = b.machine.lxd_provider().expect("daemon").client().clone();
    match client.server_info().await {
        Err(LxdError::NotInstalled { tried, .. }) => {
            assert_eq!(tried[0].display().to_string(), "/var/snap/lxd/common/lxd/unix.socket (on the simulated host)")
        }
        other => panic!("expected no daemon, got {other:?}"),
    }
    b.machine.edit(|w| w.install_lxd_by_hand()).expect("saved");
    let info = client.server_info().await.expect("answers once installed");
    assert_eq!(info.server, "lxd");
}

#[tokio::test]
async fn a_missing_local_image_fails_the_create_operation_not_the_request() {
    let b = bench(0.0);
    let client = installed(&b).await;
    let mut body = container("c1", "10.9.0.10");
    body["source"] = json!({"type": "image", "alias": "no-such-image"});
    // lxd-5.0.3 drops the alias lookup's 404: the operation starts, then fails.
    let (_, message) = api_error(client.post("/1.0/instances", &body, LONG).await.expect_err("no image"));
    assert_eq!(message, "Image not provided for instance creation");
}

#[tokio::test]
async fn a_running_instance_cannot_be_deleted_and_a_stopped_one_can() {
    let b = bench(0.0);
    let client = installed(&b).await;
    client.post("/1.0/instances", &container("c1", "10.9.0.10"), LONG).await.expect("created");
    let start = json!({"action": "start", "timeout": 30});
    client.put("/1.0/instances/c1/state", &start, LONG).await.expect("started");
    let (code, message) = api_error(client.delete("/1.0/instances/c1", LONG).await.expect_err("running"));
    assert_eq!((code, message.as_str()), (400, "Instance is running"));
    let (_, message) = api_error(client.put("/1.0/instances/c1/state", &start, LONG).await.expect_err("twice"));
    assert_eq!(message, "The instance is already running");
    client.put("/1.0/instances/c1/state", &json!({"action": "stop", "force": true}), LONG).await.expect("stopped");
    client.delete("/1.0/instances/c1", LONG).await.expect("deleted");
    assert!(b.machine.world().lxd_daemon.instances.is_empty());
}

#[tokio::test]
async fn a_static_address_is_checked_against_the_subnet_at_create_and_other_nics_at_start() {
    let b = bench(0.0);
    let client = installed(&b).await;
    let (_, message) =
        api_error(client.post("/1.0/instances", &container("c0", "10.8.0.10"), LONG).await.expect_err("outside"));
    assert!(message.contains("Device IP address \"10.8.0.10\" not within network \"lxdbr0\" subnet"), "{message}");

    client.post("/1.0/instances", &container("c1", "10.9.0.10"), LONG).await.expect("created");
    // A duplicate is accepted at create (lxd-5.0.3 only logs the conflict) and refused at start.
    client.post("/1.0/instances", &container("c2", "10.9.0.10"), LONG).await.expect("created too");
    let start = json!({"action": "start"});
    let (_, message) = api_error(client.put("/1.0/instances/c2/state", &start, LONG).await.expect_err("duplicate"));
    assert!(message.contains("IP address \"10.9.0.10\" already defined on another NIC"), "{message}");
}

#[tokio::test]
async fn what_is_in_use_cannot_be_deleted() {
    let b = bench(0.0);
    let client = installed(&b).await;
    client.post("/1.0/instances", &container("c1", "10.9.0.10"), LONG).await.expect("created");
    let (code, message) = api_error(client.delete("/1.0/networks/lxdbr0", LONG).await.expect_err("in use"));
    assert_eq!((code, message.as_str()), (400, "The network is currently in use"));
    let (_, message) = api_error(client.delete("/1.0/storage-pools/default", LONG).await.expect_err("in use"));
    assert_eq!(message, "The storage pool is currently in use");
    let (code, _) = api_error(client.delete("/1.0/profiles/default", LONG).await.expect_err("default"));
    assert_eq!(code, 403);
}

#[tokio::test]
async fn a_kernel_module_the_host_lacks_stops_the_start() {
    let b = bench(0.0);
    let client = installed(&b).await;
    b.machine.edit(|w| w.host.kernel_modules.remove("ip_vs")).expect("saved");
    let profile = json!({"name": "microk8s", "config": {"linux.kernel_modules": "ip_vs,overlay"}, "devices": {}});
    client.post("/1.0/profiles", &profile, LONG).await.expect("profile");
    let mut body = container("c1", "10.9.0.10");
    body["profiles"] = json!(["default", "microk8s"]);
    client.post("/1.0/instances", &body, LONG).await.expect("created");
    let (_, message) = api_error(
        client.put("/1.0/instances/c1/state", &json!({"action": "start"}), LONG).await.expect_err("no ip_vs"),
    );
    assert!(message.starts_with("Failed to load kernel module 'ip_vs'"), "{message}");
}

/// real-tools.md, behaviour 13: an operation whose client went away keeps running; a client that looks
/// too early sees the old state.
#[tokio::test(start_paused = true)]
async fn an_operation_outlives_the_client_that_started_it() {
    let b = bench(1.0);
    let client = installed(&b).await;
    let started = tokio::time::Instant::now();
    // The client gives up waiting after 1 s (LXD answers the wait with "context deadline exceeded").
    match client.post("/1.0/instances", &container("c1", "10.9.0.10"), Duration::from_secs(1)).await {
        Err(LxdError::Timeout { .. }) => {}
        other => panic!("expected the wait to time out, got {other:?}"),
    }
    assert!(client.get_opt::<serde_json::Value>("/1.0/instances/c1").await.expect("reads").is_none());
    let ops: serde_json::Value = client.get("/1.0/operations").await.expect("operations");
    assert_eq!(ops["running"].as_array().map(Vec::len), Some(1), "{ops}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(client.get_opt::<serde_json::Value>("/1.0/instances/c1").await.expect("reads").is_some());
    assert!(started.elapsed() >= Duration::from_secs(6));
}

#[tokio::test]
async fn a_proxy_whose_host_port_is_taken_is_refused_and_rolled_back() {
    let b = bench(0.0);
    let client = installed(&b).await;
    client.post("/1.0/instances", &container("c1", "10.9.0.10"), LONG).await.expect("created");
    client.put("/1.0/instances/c1/state", &json!({"action": "start"}), LONG).await.expect("started");
    b.machine.edit(|w| w.host.foreign_ports.insert(16441)).expect("saved");
    let mut c1: serde_json::Value = client.get("/1.0/instances/c1").await.expect("c1");
    c1["devices"]["api"] =
        json!({"type": "proxy", "listen": "tcp:127.0.0.1:16441", "connect": "tcp:127.0.0.1:16443", "bind": "host"});
    let (_, message) = api_error(client.put("/1.0/instances/c1", &c1, LONG).await.expect_err("taken"));
    assert!(
        message.starts_with("Failed to start device \"api\": Error occurred when starting proxy device"),
        "{message}"
    );
    assert!(message.ends_with("bind: address already in use"), "{message}");
    let after: serde_json::Value = client.get("/1.0/instances/c1").await.expect("c1");
    assert!(after["devices"].get("api").is_none(), "the device is not kept");
}

/// A running container `c1` on the bridge, with the host forwarding for it (the snap store is reachable).
async fn running(b: &Bench, client: &Client) {
    client.post("/1.0/instances", &container("c1", "10.9.0.10"), LONG).await.expect("created");
    client.put("/1.0/instances/c1/state", &json!({"action": "start"}), LONG).await.expect("started");
    b.machine
        .edit(|w| {
            for dir in ["-i", "-o"] {
                w.host
                    .iptables
                    .push(format!("-A FORWARD {dir} lxdbr0 -m comment --comment \"testbed:testbed\" -j ACCEPT"));
            }
        })
        .expect("saved");
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Exec runs the programs inside the container through the real runner's LXD path: recorded output comes
/// back and is deleted from the instance's logs (real-tools.md, behaviour 12); a program that is not there
/// is not found; a stopped container runs nothing.
#[tokio::test]
async fn exec_runs_the_programs_inside_and_leaves_no_recorded_output_behind() {
    use testbed_command::{CommandError, CommandRunner, SystemRunner};
    use testbed_steps::Where;
    let b = bench(0.0);
    let client = installed(&b).await;
    running(&b, &client).await;
    let runner = SystemRunner::with_lxd(client.clone());
    let at = Where::Member("c1".into());
    let out = runner.run(&at, &argv(&["mkdir", "-p", "/var/lib/testbed"]), LONG).await.expect("runs");
    assert!(out.success(), "{out:?}");
    let out = runner.run(&at, &argv(&["ls", "-1", "/var/lib"]), LONG).await.expect("runs");
    assert_eq!(out.stdout, "testbed\n");
    let logs: serde_json::Value = client.get("/1.0/instances/c1/logs").await.expect("logs");
    assert_eq!(logs, json!([]), "recorded exec output is deleted after reading");

    let e = runner.run(&at, &argv(&["microk8s", "status"]), LONG).await.expect_err("not installed");
    assert!(matches!(e, CommandError::NotFound { .. }), "{e:?}");

    // Files pushed through LXD's file API need their directory, as LXD does not create it.
    let e = runner.push_file("c1", "/etc/testbed/hosts.toml", b"x".to_vec(), 0o644).await.expect_err("no dir");
    assert!(e.to_string().contains("no such file or directory"), "{e}");
    runner.push_file("c1", "/var/lib/testbed/hosts.toml", b"server = 1\n".to_vec(), 0o644).await.expect("pushed");
    let out = runner.run(&at, &argv(&["cat", "/var/lib/testbed/hosts.toml"]), LONG).await.expect("runs");
    assert_eq!(out.stdout, "server = 1\n");

    client.put("/1.0/instances/c1/state", &json!({"action": "stop"}), LONG).await.expect("stopped");
    let e = runner.run(&at, &argv(&["ls"]), LONG).await.expect_err("stopped");
    assert!(e.to_string().contains("Instance is not running"), "{e}");
}

/// The microk8s snap in a member behaves as snapd and MicroK8s do where naive automation breaks:
/// `snap install` is refused until snapd has seeded (behaviour 2), and `microk8s disable hostpath-storage`
/// asks on stdin and fails without an answer (behaviour 1).
#[tokio::test]
async fn snap_waits_for_seeding_and_hostpath_storage_asks_before_it_goes() {
    use testbed_command::{CommandRunner, SystemRunner};
    use testbed_steps::Where;
    let b = bench(0.0);
    let client = installed(&b).await;
    running(&b, &client).await;
    let runner = SystemRunner::with_lxd(client);
    let at = Where::Member("c1".into());
    let run = |a: &'static [&'static str]| {
        let (runner, at) = (runner.clone(), at.clone());
        async move { runner.run(&at, &argv(a), LONG).await.expect("runs") }
    };
    let install = &["snap", "install", "microk8s", "--classic", "--channel=1.32/stable"];
    let early = run(install).await;
    assert_eq!(early.code, 1);
    assert!(early.stderr.contains("too early for operation, device not yet seeded"), "{early:?}");
    assert!(run(&["snap", "wait", "system", "seed.loaded"]).await.success());
    let done = run(install).await;
    assert!(done.stdout.contains("microk8s (1.32/stable) v1.32.3 from Canonical✓ installed"), "{done:?}");
    assert!(run(&["snap", "list", "microk8s"]).await.stdout.contains(" 1.32/stable "));

    assert!(run(&["microk8s", "enable", "dns", "hostpath-storage"]).await.success());
    let asked = run(&["microk8s", "disable", "hostpath-storage"]).await;
    assert_eq!(asked.code, 1);
    assert!(asked.stdout.contains("Remove PVC storage at /var/snap/microk8s/common/default-storage ? (Y/N)"));
    let status = run(&["microk8s", "status", "--format", "yaml"]).await;
    assert!(status.stdout.contains("  - name: hostpath-storage\n    repository: core\n    status: enabled"));
    assert!(run(&["microk8s", "disable", "hostpath-storage:destroy-storage"]).await.success());
    let status = run(&["microk8s", "status", "--format", "yaml"]).await;
    assert!(status.stdout.contains("  - name: hostpath-storage\n    repository: core\n    status: disabled"));

    assert!(run(&["snap", "remove", "microk8s", "--purge"]).await.success());
    assert_eq!(run(&["snap", "list", "microk8s"]).await.stderr, "error: no matching snaps installed\n");
}
