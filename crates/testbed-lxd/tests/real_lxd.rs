//! The LXD layer against a real LXD daemon (the project's test environment), with the layers above LXD
//! simulated. Each test uses its own bridge, subnet, profile, member names and host ports.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn members_profile_addresses_and_proxies_converge_and_drift_is_repaired() {
    let members = [("ra1", 27441u16), ("ra2", 27442), ("ra3", 27444)];
    let c = config(&file("ra", 81, &members));
    rt().block_on(async {
        let s = Stack::new("ra");
        let cl = client();
        clear(&cl, &["ra1", "ra2", "ra3", "ra4"], "ra").await;
        let first = s.plan(&c).await;
        let lxd_ops: Vec<_> =
            first.actions().into_iter().filter(|a| !a.address.as_str().starts_with("host.")).collect();
        assert!(lxd_ops.iter().all(|a| a.op.name() == "create"), "{:?}", addresses(&first));
        let r = s.run(&first, 8).await;
        assert!(r.success(), "{}: {:?}", r.summary_line("Apply"), r.failures().collect::<Vec<_>>());

        // The profile, three running containers with their static addresses, three API proxies.
        let profile: Value = cl.get("/1.0/profiles/tbra-member").await.expect("profile exists");
        assert_eq!(profile["config"]["security.nesting"], "true");
        assert_eq!(profile["config"]["user.testbed.owner"], "testbed");
        for (i, (m, port)) in members.iter().enumerate() {
            let inst: Value = cl.get(&format!("/1.0/instances/{m}")).await.unwrap();
            assert_eq!(inst["status"], "Running", "{m}");
            assert_eq!(inst["devices"]["eth0"]["ipv4.address"], format!("10.199.81.{}", 10 + i), "{m}");
            assert_eq!(inst["devices"]["api"]["listen"], format!("tcp:127.0.0.1:{port}"));
            assert_eq!(inst["devices"]["api"]["connect"], "tcp:127.0.0.1:16443");
        }

        // A listener inside member ra1 on 127.0.0.1:16443 answers a request sent to the host port.
        let out = cl
            .exec("ra1", &["busybox", "httpd", "-p", "127.0.0.1:16443", "-h", "/www"], Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        let answer = tokio::task::spawn_blocking(|| http_get(27441, Duration::from_secs(15))).await.unwrap();
        let answer = answer.expect("the API proxy forwards to the member's 127.0.0.1:16443");
        assert!(answer.contains("testbed member api stand-in"), "{answer}");

        // File push and exec, the primitives the MicroK8s and image steps use: a 0600 file arrives intact.
        cl.push_file("ra2", "/root/pushed.txt", b"kubeconfig stand-in\n".to_vec(), 0o600).await.unwrap();
        let back = cl.exec("ra2", &["cat", "/root/pushed.txt"], Duration::from_secs(30)).await.unwrap();
        assert_eq!((back.code, back.stdout.as_str()), (0, "kubeconfig stand-in\n"));
        let mode = cl.exec("ra2", &["stat", "-c", "%a", "/root/pushed.txt"], Duration::from_secs(30)).await.unwrap();
        assert_eq!(mode.stdout.trim(), "600");
        let failing = cl.exec("ra2", &["sh", "-c", "echo oops >&2; exit 3"], Duration::from_secs(30)).await.unwrap();
        assert_eq!((failing.code, failing.stderr.as_str()), (3, "oops\n"));
        // What exec printed is not kept in the instance's logs (LXD records it there until deleted).
        let logs: Vec<String> = cl.get("/1.0/instances/ra2/logs").await.unwrap();
        let kept: Vec<&String> = logs.iter().filter(|l| l.contains("exec")).collect();
        assert!(kept.is_empty(), "recorded exec output left behind: {kept:?}");
        let info = cl.server_info().await.unwrap();
        assert_eq!(info.server, "lxd");

        // Converged.
        assert!(s.plan(&c).await.is_empty());

        // A proxy removed by hand: exactly that proxy to create; apply restores it.
        let mut inst: Value = cl.get("/1.0/instances/ra2").await.unwrap();
        inst["devices"].as_object_mut().unwrap().remove("api");
        cl.put(
            "/1.0/instances/ra2",
            &json!({"config": inst["config"], "devices": inst["devices"], "profiles": inst["profiles"]}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let p = s.plan(&c).await;
        assert_eq!(addresses(&p), ["proxy.ra2.api"]);
        assert!(s.run(&p, 8).await.success());
        assert!(s.plan(&c).await.is_empty());

        // A container stopped by hand: exactly that container to start.
        cl.put(
            "/1.0/instances/ra1/state",
            &json!({"action": "stop", "force": true, "timeout": 30}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let p = s.plan(&c).await;
        assert_eq!(addresses(&p), ["lxd_instance.ra1"]);
        assert_eq!(p.actions()[0].reason, "container is stopped; will be started");
        assert!(s.run(&p, 8).await.success());
        let inst: Value = cl.get("/1.0/instances/ra1").await.unwrap();
        assert_eq!(inst["status"], "Running");
        assert!(s.plan(&c).await.is_empty());

        // A limit changed in the file: an update of that container only.
        let limited =
            config(&file("ra", 81, &members).replace("api_port = 27442\n", "api_port = 27442\nmemory = \"512MiB\"\n"));
        let p = s.plan(&limited).await;
        assert_eq!(addresses(&p), ["lxd_instance.ra2"]);
        assert!(s.run(&p, 8).await.success());
        let inst: Value = cl.get("/1.0/instances/ra2").await.unwrap();
        assert_eq!(inst["config"]["limits.memory"], "512MiB");
        assert!(s.run(&s.plan(&c).await, 8).await.success(), "and back");

        // Adding a member creates only its container and proxy; removing it deletes only those.
        let four = config(&file("ra", 81, &[members[0], members[1], members[2], ("ra4", 27445)]));
        let p = s.plan(&four).await;
        assert_eq!(
            ops(&p),
            [("lxd_instance.ra4".to_owned(), "create".to_owned()), ("proxy.ra4.api".to_owned(), "create".to_owned())]
                .into_iter()
                .collect()
        );
        assert!(s.run(&p, 8).await.success());
        let p = s.plan(&c).await;
        assert!(
            p.actions().iter().all(|a| a.op.name() == "delete" && a.address.has_segment("ra4")),
            "{:?}",
            addresses(&p)
        );
        assert!(s.run(&p, 8).await.success());
        assert!(cl.get_opt::<Value>("/1.0/instances/ra4").await.unwrap().is_none());

        // Destroy removes every container, device, profile and the bridge testbed made; the pool it did not
        // make stays.
        let d = s.destroy_plan(&c).await;
        let r = s.run(&d, 8).await;
        assert!(r.success(), "{}: {:?}", r.summary_line("Destroy"), r.failures().collect::<Vec<_>>());
        for m in ["ra1", "ra2", "ra3"] {
            assert!(cl.get_opt::<Value>(&format!("/1.0/instances/{m}")).await.unwrap().is_none(), "{m}");
        }
        assert!(cl.get_opt::<Value>("/1.0/profiles/tbra-member").await.unwrap().is_none());
        assert!(cl.get_opt::<Value>("/1.0/networks/tbra").await.unwrap().is_none());
        assert!(cl.get_opt::<Value>("/1.0/storage-pools/default").await.unwrap().is_some());
    });
}

#[test]
fn what_testbed_does_not_own_is_never_touched() {
    let members = [("rb1", 27541u16), ("rb2", 27542)];
    let c = config(&file("rb", 82, &members));
    rt().block_on(async {
        let s = Stack::new("rb");
        let cl = client();
        clear(&cl, &["rb1", "rb2", "rb-neighbour"], "rb").await;
        // Someone's own container already named rb2.
        let body = json!({"name": "rb2", "type": "container", "source": {"type": "image", "alias": IMAGE}});
        cl.post("/1.0/instances", &body, Duration::from_secs(120)).await.unwrap();
        let o = s.observe(&c).await;
        let d = testbed_plan::desired::build(&c, &o);
        let err = testbed_plan::plan(&d, &o).expect_err("a conflict").to_string();
        assert!(err.contains("lxd_instance.rb2") && err.contains("testbed did not create"), "{err}");
        assert!(s.destroy_plan(&c).await.is_empty(), "destroy never plans someone else's container");
        cl.delete("/1.0/instances/rb2", Duration::from_secs(60)).await.unwrap();

        // With the name free, apply; then an unrelated container joins the bridge.
        assert!(s.run(&s.plan(&c).await, 8).await.success());
        let body = json!({"name": "rb-neighbour", "type": "container", "source": {"type": "image", "alias": IMAGE},
            "devices": {"eth0": {"type": "nic", "network": "tbrb", "name": "eth0"}}});
        cl.post("/1.0/instances", &body, Duration::from_secs(120)).await.unwrap();
        cl.put("/1.0/instances/rb-neighbour/state", &json!({"action": "start"}), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(s.plan(&c).await.is_empty(), "a neighbour is none of testbed's business");

        let d = s.destroy_plan(&c).await;
        assert!(d.find("lxd_network.tbrb").is_none(), "the bridge the neighbour uses is kept");
        assert!(d.notes.iter().any(|n| n.contains("container rb-neighbour")), "{:?}", d.notes);
        assert!(s.run(&d, 8).await.success());
        let n: Value = cl.get("/1.0/instances/rb-neighbour").await.expect("the neighbour survives destroy");
        assert_eq!(n["status"], "Running");

        // Once its owner removes it, destroy finishes the job.
        cl.put("/1.0/instances/rb-neighbour/state", &json!({"action": "stop", "force": true}), Duration::from_secs(60))
            .await
            .unwrap();
        cl.delete("/1.0/instances/rb-neighbour", Duration::from_secs(60)).await.unwrap();
        assert!(s.run(&s.destroy_plan(&c).await, 8).await.success());
        assert!(cl.get_opt::<Value>("/1.0/networks/tbrb").await.unwrap().is_none());
    });
}
