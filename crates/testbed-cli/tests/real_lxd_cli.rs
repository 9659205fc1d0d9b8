//! The rehearsal a cautious user runs, through the binary: LXD or Incus for real (the project's test daemons,
//! `cargo xtask testenv up`), the layers above simulated.

mod testenv;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use testenv::{example, text, Daemon};

const LAYERS: &str = "host,microk8s,registry,karmada";

fn testbed(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    testenv::testbed(dir, LAYERS, args)
}

/// Held by each test here: they run one at a time. Incus 6.0.4 fails a bridge's creation when a veth it lists,
/// of another test's container on either daemon, vanishes meanwhile (docs/incus.md).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn rehearse_the_lxd_part_for_real_with_the_rest_simulated() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    rehearse(Daemon::Lxd);
}

#[test]
fn rehearse_the_incus_part_for_real_with_the_rest_simulated() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    rehearse(Daemon::Incus);
}

/// The daemon's example applied, planned again (no changes), looked at and destroyed; a container that is
/// not testbed's, on testbed's bridge, survives destroy and keeps the bridge.
fn rehearse(daemon: Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let testbed = |args: &[&str]| testenv::testbed_on(daemon, dir.path(), LAYERS, args);
    // Each example's own name, bridge, subnet, profile, members and ports, renamed so that the rehearsal never
    // meets the objects of other tests (nor of the example itself, applied by hand).
    let (name, renames) = match daemon {
        Daemon::Lxd => {
            ("testenv.toml", [("tbtest0", "tbcli0"), ("10.199.77.1/24", "10.199.78.1/24"), ("= 2644", "= 2664")])
        }
        Daemon::Incus => (
            "testenv-incus.toml",
            [("tbincus0", "tbicli0"), ("10.199.87.1/24", "10.199.88.1/24"), ("= 2654", "= 2674")],
        ),
    };
    // The example's own top-level `name` (if any) gives way to the rehearsal's.
    let source = example(name);
    let (top, tables) = source.split_at(source.find("\n[").expect("a table"));
    let mut file: String = top.lines().filter(|l| !l.starts_with("name = ")).map(|l| format!("{l}\n")).collect();
    file.push_str(tables);
    for (from, to) in renames {
        file = file.replace(from, to);
    }
    let file =
        format!("name = \"cli\"\n{file}").replace("testbed-member", "tbcli-member").replace("\"member", "\"cli-member");
    let bridge = renames[0].1;
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cl = daemon.client();
    let bystander = "cli-bystander";
    let wait = Duration::from_secs(60);
    let remove_bystander = || {
        rt.block_on(async {
            let path = format!("/1.0/instances/{bystander}");
            if cl.get_opt::<serde_json::Value>(&path).await.unwrap().is_some() {
                let _ =
                    cl.put(&format!("{path}/state"), &serde_json::json!({"action": "stop", "force": true}), wait).await;
                cl.delete(&path, wait).await.unwrap();
            }
        })
    };
    remove_bystander();
    // What an earlier rehearsal left when it stopped half-way (a failed assertion skips its destroy) goes
    // first, as a user would clear it: testbed's destroy, which removes only what a testbed named "cli" made.
    let leftover = testbed(&["destroy", "--yes"]);
    assert!(leftover.status.success(), "{}", text(&leftover));

    let apply = testbed(&["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let out = text(&apply);
    assert!(out.contains("real: lxd (these change this host)"), "the banner never hides what is real: {out}");
    assert!(out.contains("lxd_instance.cli-member1: created"), "{out}");

    let plan = testbed(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(text(&plan).contains("No changes."));

    let status = testbed(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "a converged lab is as the file wants: {}", text(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(v["simulated"], serde_json::json!(["host", "microk8s", "registry", "karmada"]));
    let inst = v["resources"].as_array().unwrap().iter().find(|r| r["address"] == "lxd_instance.cli-member2").unwrap();
    assert_eq!(inst["state"], "ok");

    // Someone's own container joins testbed's bridge: none of testbed's business, and it survives destroy.
    rt.block_on(async {
        let body = serde_json::json!({"name": bystander, "type": "container",
            "source": {"type": "image", "alias": "testbed-busybox"},
            "devices": {"eth0": {"type": "nic", "network": bridge, "name": "eth0"}}});
        cl.post("/1.0/instances", &body, Duration::from_secs(120)).await.unwrap();
        let start = serde_json::json!({"action": "start"});
        cl.put(&format!("/1.0/instances/{bystander}/state"), &start, wait).await.unwrap();
    });
    let plan = testbed(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "a bystander changes nothing: {}", text(&plan));

    // Destroy removes all the rest and says it is not finished: the bridge is kept for the bystander.
    let destroy = testbed(&["destroy", "--yes"]);
    let out = text(&destroy);
    assert_eq!(destroy.status.code(), Some(1), "{out}");
    assert!(out.contains(" done, 0 failed") && out.contains("Destroy is not finished"), "{out}");
    assert!(out.contains(&format!("{bridge} is kept")) && out.contains("container cli-bystander"), "{out}");
    let survivor: serde_json::Value =
        rt.block_on(cl.get(&format!("/1.0/instances/{bystander}"))).expect("the bystander survives destroy");
    assert_eq!(survivor["status"], "Running");
    let network = format!("lxd_network.{bridge}");
    let after = testbed(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    for r in v["resources"].as_array().unwrap() {
        let a = r["address"].as_str().unwrap();
        if a == "lxd_storage_pool.default" {
            assert_eq!(r["state"], "not testbed's", "the test environment's pool is used, never removed");
        } else if a == network {
            assert_ne!(r["state"], "missing", "the bridge the bystander uses is kept");
        } else if a.starts_with("lxd_") || a.starts_with("proxy.") {
            assert_eq!(r["state"], "missing", "{a} after destroy");
        }
    }

    // Once its owner removes it, destroy removes the bridge too.
    remove_bystander();
    let destroy = testbed(&["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
    let after = testbed(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    let bridge_state =
        v["resources"].as_array().unwrap().iter().find(|r| r["address"] == network).map(|r| r["state"].clone());
    assert_eq!(bridge_state, Some(serde_json::json!("missing")), "{}", text(&after));
}

/// issue 11, item 2: an apply killed while its member is created and its proxy added leaves LXD operations
/// running in the daemon; the next apply waits for them before it looks, so it neither re-adds what they
/// finish (LXD refuses: "A matching non-reusable operation has now succeeded") nor blames the host port on
/// "another program" when the proxy holding it is the member's own. Killed at ten moments spread over the
/// member's creation (about 1.3 s on the test daemon), from the create request to the proxy's.
#[test]
fn an_apply_killed_while_a_member_is_created_is_finished_by_the_next_one() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let file = "name = \"kill\"\n\n[lxd]\nbridge = \"tbkill0\"\nipv4_address = \"10.199.97.1/24\"\nstorage_pool = \"default\"\nimage = \"testbed-busybox\"\nprofile = \"tbkill-member\"\n\n[lxd.profile_config]\n\"linux.kernel_modules\" = \"overlay,nf_conntrack\"\n\n[[members]]\nname = \"kill-member1\"\napi_port = 26491\n";
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
    // The bridge and profile once, the member then created and killed again and again. A first apply that
    // meets LXD 5.0's race between concurrent network creations (another test's bridge: "Network not found")
    // is applied again, as a user would.
    let setup = testbed(dir.path(), &["apply", "--yes"]);
    if !setup.status.success() {
        let again = testbed(dir.path(), &["apply", "--yes"]);
        assert!(again.status.success(), "{}\n{}", text(&setup), text(&again));
    }
    let mut killed_during = Vec::new();
    for moment in 0..10u64 {
        let gone = testbed(dir.path(), &["destroy", "--yes", "--target", "kill-member1"]);
        assert!(gone.status.success(), "{}", text(&gone));
        let after = Duration::from_millis(140 * moment);
        let mut apply = testenv::command(dir.path(), LAYERS, &["apply", "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apply");
        let mut lines = BufReader::new(apply.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let started = line.starts_with("lxd_instance.kill-member1: creating");
            seen.push(line);
            if started {
                break;
            }
        }
        assert!(seen.last().is_some_and(|l| l.starts_with("lxd_instance")), "the member was never created: {seen:?}");
        std::thread::sleep(after);
        apply.kill().expect("kill -9");
        apply.wait().unwrap();
        // Where the kill fell in the LXD part, for the record.
        seen.extend(lines.map_while(Result::ok));
        let last = seen.iter().rev().find(|l| l.starts_with("lxd_instance.") || l.starts_with("proxy."));
        killed_during.push(format!("{after:?}: after {:?}", last.cloned().unwrap_or_default()));

        let again = testbed(dir.path(), &["apply", "--yes"]);
        let out = text(&again);
        assert!(again.status.success(), "the apply after one killed {after:?} into the member's creation: {out}");
        assert!(!out.contains("already in use"), "a false reason after a kill {after:?} in: {out}");
        let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "not converged after a kill {after:?} in: {}", text(&plan));
    }
    eprintln!("killed at: {killed_during:#?}");
    let destroy = testbed(dir.path(), &["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
}

/// Issue 13, item 4, against the real daemon: a proxy that follows a pod. LXD (or Incus) is real; MicroK8s
/// and Karmada are simulated, so the pod is the simulated member's (its address is the simulated world's),
/// and what answers at that address is a real listener the test starts inside the real container (busybox
/// httpd on an address added to the container's loopback). Checked for real: the device LXD makes, that
/// LXD's proxy accepts a connection with nothing behind it (so apply fails until a request is answered), the
/// repair, the move to another address, and the answers through the host port.
#[test]
fn a_pod_proxy_follows_its_pod_through_real_lxd() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    follow_a_pod(Daemon::Lxd);
}

#[test]
fn a_pod_proxy_follows_its_pod_through_real_incus() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    follow_a_pod(Daemon::Incus);
}

fn follow_a_pod(daemon: Daemon) {
    let (tag, net, api_port, port) = match daemon {
        Daemon::Lxd => ("podp", 71, 26801, 26802),
        Daemon::Incus => ("ipodp", 72, 26811, 26812),
    };
    let member = format!("{tag}-member1");
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
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

[[members]]
name = "{member}"
api_port = {api_port}

[[workloads]]
name = "prometheus"
manifests = ["prometheus.yaml"]

[[proxies]]
name = "prometheus"
member = "{member}"
host_port = {port}
pod = {{ namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus", port = 9090 }}
"#,
        backend = daemon.backend()
    );
    std::fs::write(dir.path().join("testbed.toml"), file).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: prometheus\n  namespace: monitoring\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: prometheus\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: prometheus\n    spec:\n      containers:\n      - name: prometheus\n        image: quay.io/prometheus/prometheus:v3.5.0\n        ports:\n        - containerPort: 9090\n",
    )
    .unwrap();
    let testbed = |args: &[&str]| testenv::testbed_on(daemon, dir.path(), LAYERS, args);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A client per call: a connection kept idle between two calls, while testbed runs, may have been closed
    // by the daemon (Incus does) without this runtime's noticing.
    let cl = || daemon.client();
    let exec = |argv: &[&str]| {
        let out = rt.block_on(cl().exec(&member, argv, Duration::from_secs(30))).unwrap();
        assert_eq!(out.code, 0, "{argv:?} in {member}: {out:?}");
    };
    let sim = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(".testbed/sim.json")).unwrap()).unwrap()
    };
    let pod_ip = |world: &serde_json::Value| -> (String, String) {
        let pods = world["world"]["inside"][&member]["microk8s"]["pods"].as_object().expect("the member's pods");
        assert_eq!(pods.len(), 1, "{pods:?}");
        let (key, pod) = pods.iter().next().unwrap();
        (key.clone(), pod["ip"].as_str().unwrap().to_owned())
    };
    // What answers at ADDRESS:9090 in the container: busybox httpd, serving a page that names the address.
    let listen_at = |ip: &str| {
        exec(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        exec(&["mkdir", "-p", &format!("/www-{ip}")]);
        exec(&["sh", "-c", &format!("echo 'the pod at {ip}' > /www-{ip}/index.html")]);
        exec(&["httpd", "-p", &format!("{ip}:9090"), "-h", &format!("/www-{ip}")]);
    };
    let device = || -> serde_json::Value {
        let inst: serde_json::Value = rt.block_on(cl().get(&format!("/1.0/instances/{member}"))).unwrap();
        inst["devices"]["prometheus"].clone()
    };
    // What an earlier, interrupted run left.
    let _ = testbed(&["destroy", "--yes"]);

    // The member first. A real MicroK8s node has Calico's blackhole route for its pod block, so that a pod
    // address with no pod behind it goes nowhere; the busybox container gets one for 10.1.0.0/16 (without
    // it, a connection to a pod address leaves by the default route, and whatever the host's network has
    // there may answer).
    let container = testbed(&["apply", "--yes", "--target", &format!("lxd_instance.{member}")]);
    assert!(container.status.success(), "{}", text(&container));
    exec(&["ip", "route", "add", "blackhole", "10.1.0.0/16"]);

    // The apply creates the workload and the proxy at its pod's address; nothing listens there in the
    // container yet: LXD's proxy accepts and closes, and the apply fails saying so.
    let first = testbed(&["apply", "--yes"]);
    let out = text(&first);
    assert_eq!(first.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("nothing answered through 127.0.0.1:{port} within 30 s")), "{out}");
    // The daemon's proxy accepted the connection, then closed it (LXD 5.0) or reset it (Incus 6.0) when it
    // could not connect inside the container.
    assert!(out.contains("the last: accepted, then"), "the daemon's proxy accepted: {out}");
    // Asked directly through the (simulated) member API's port-forward, the (simulated) pod answers: what is
    // missing is between the real proxy and the pod's address, as it is here.
    assert!(out.contains("asked directly through a port-forward, the pod answered"), "{out}");
    assert!(out.contains("make it listen on 0.0.0.0"), "{out}");
    let (key, first_ip) = pod_ip(&sim());
    assert!(key.starts_with("monitoring/prometheus-"), "{key}");
    assert_eq!(device()["connect"], format!("tcp:{first_ip}:9090"));

    // The next plan says it does not answer, and what apply will do.
    let plan = testbed(&["plan", "--detailed-exitcode"]);
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!("proxy.{member}.prometheus")) && shown.contains("nothing answers through"),
        "{shown}"
    );

    // The pod's server starts: apply repairs the proxy, and a request through the host port is answered.
    listen_at(&first_ip);
    let apply = testbed(&["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let answer = http_get(port).unwrap_or_else(|| panic!("no answer through 127.0.0.1:{port}"));
    assert!(answer.contains(&format!("the pod at {first_ip}")), "{answer}");
    let plan = testbed(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // The pod is recreated at another address (the simulated world's record of it; in the container the
    // server moves there).
    let second_ip = {
        let (net, last) = first_ip.rsplit_once('.').unwrap();
        format!("{net}.{}", last.parse::<u8>().unwrap() + 100)
    };
    let mut world = sim();
    world["world"]["inside"][&member]["microk8s"]["pods"][&key]["ip"] = serde_json::json!(second_ip);
    std::fs::write(dir.path().join(".testbed/sim.json"), world.to_string()).unwrap();
    exec(&["killall", "httpd"]);
    exec(&["ip", "addr", "del", &format!("{first_ip}/32"), "dev", "lo"]);
    listen_at(&second_ip);

    // The plan shows the proxy's update from the old address to the new; apply re-points the real device.
    let plan = testbed(&["plan", "--detailed-exitcode"]);
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    let update = format!("connect: \"tcp:{first_ip}:9090\" → \"tcp:{second_ip}:9090\"");
    assert!(shown.contains(&update), "{shown}");
    assert!(shown.contains("Plan: 0 to create, 1 to update, 0 to replace, 0 to destroy."), "{shown}");
    let apply = testbed(&["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(device()["connect"], format!("tcp:{second_ip}:9090"));
    let answer = http_get(port).unwrap_or_else(|| panic!("no answer through 127.0.0.1:{port}"));
    assert!(answer.contains(&format!("the pod at {second_ip}")), "{answer}");
    let plan = testbed(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    let destroy = testbed(&["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
}

/// A request through `127.0.0.1:PORT` and its answer, if one comes.
fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}
