//! The LXD layer against the real daemons of the project's test environment, LXD and Incus, with the layers
//! above simulated. Each case runs on both (`CASE::lxd`, `CASE::incus`), with its own bridge, subnet,
//! profile, member names and host ports on each.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

on_both_daemons!(
    members_profile_addresses_and_proxies_converge_and_drift_is_repaired,
    what_testbed_does_not_own_is_never_touched
);

fn members_profile_addresses_and_proxies_converge_and_drift_is_repaired(d: Daemon) {
    let t = d.tag("ra");
    let net = d.subnet(81);
    let m = |i: u8| format!("{t}{i}");
    let members = [(m(1), d.port(27441)), (m(2), d.port(27442)), (m(3), d.port(27444))];
    let c = config(&file_on(d, &t, net, &members));
    rt().block_on(async {
        let s = Stack::on(d, &t);
        let cl = d.client();
        clear(&cl, &[&m(1), &m(2), &m(3), &m(4)], &t).await;
        let first = s.plan(&c).await;
        let lxd_ops: Vec<_> =
            first.actions().into_iter().filter(|a| !a.address.as_str().starts_with("host.")).collect();
        assert!(lxd_ops.iter().all(|a| a.op.name() == "create"), "{:?}", addresses(&first));
        let r = s.run(&first, 8).await;
        assert!(r.success(), "{}: {:?}", r.summary_line("Apply"), r.failures().collect::<Vec<_>>());

        // The profile, three running containers with their static addresses, three API proxies.
        let profile: Value = cl.get(&format!("/1.0/profiles/tb{t}-member")).await.expect("profile exists");
        assert_eq!(profile["config"]["security.nesting"], "true");
        assert_eq!(profile["config"]["user.testbed.owner"], "testbed");
        for (i, (m, port)) in members.iter().enumerate() {
            let inst: Value = cl.get(&format!("/1.0/instances/{m}")).await.unwrap();
            assert_eq!(inst["status"], "Running", "{m}");
            assert_eq!(inst["devices"]["eth0"]["ipv4.address"], format!("10.199.{net}.{}", 10 + i), "{m}");
            assert_eq!(inst["devices"]["api"]["listen"], format!("tcp:127.0.0.1:{port}"));
            assert_eq!(inst["devices"]["api"]["connect"], "tcp:127.0.0.1:16443");
        }

        // A listener inside the first member on 127.0.0.1:16443 answers a request sent to the host port.
        let out = cl
            .exec(&m(1), &["busybox", "httpd", "-p", "127.0.0.1:16443", "-h", "/www"], Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        let port = members[0].1;
        let answer = tokio::task::spawn_blocking(move || http_get(port, Duration::from_secs(15))).await.unwrap();
        let answer = answer.expect("the API proxy forwards to the member's 127.0.0.1:16443");
        assert!(answer.contains("testbed member api stand-in"), "{answer}");

        // File push and exec, the primitives the MicroK8s and image steps use: a 0600 file arrives intact.
        let m2 = m(2);
        cl.push_file(&m2, "/root/pushed.txt", b"kubeconfig stand-in\n".to_vec(), 0o600).await.unwrap();
        let back = cl.exec(&m2, &["cat", "/root/pushed.txt"], Duration::from_secs(30)).await.unwrap();
        assert_eq!((back.code, back.stdout.as_str()), (0, "kubeconfig stand-in\n"));
        let mode = cl.exec(&m2, &["stat", "-c", "%a", "/root/pushed.txt"], Duration::from_secs(30)).await.unwrap();
        assert_eq!(mode.stdout.trim(), "600");
        let failing = cl.exec(&m2, &["sh", "-c", "echo oops >&2; exit 3"], Duration::from_secs(30)).await.unwrap();
        assert_eq!((failing.code, failing.stderr.as_str()), (3, "oops\n"));
        // What exec printed is not kept: LXD records it among the instance's logs, Incus in logs/exec-output,
        // until deleted.
        let logs: Vec<String> = cl.get(&format!("/1.0/instances/{m2}/logs")).await.unwrap();
        let mut kept: Vec<String> = logs.into_iter().filter(|l| l.contains("exec")).collect();
        if d == Daemon::Incus {
            kept.extend(cl.get::<Vec<String>>(&format!("/1.0/instances/{m2}/logs/exec-output")).await.unwrap());
        }
        assert!(kept.is_empty(), "recorded exec output left behind: {kept:?}");
        let info = cl.server_info().await.unwrap();
        assert_eq!(info.server, d.server());

        // Converged.
        assert!(s.plan(&c).await.is_empty());

        // A proxy removed by hand: exactly that proxy to create; apply restores it.
        let mut inst: Value = cl.get(&format!("/1.0/instances/{m2}")).await.unwrap();
        inst["devices"].as_object_mut().unwrap().remove("api");
        cl.put(
            &format!("/1.0/instances/{m2}"),
            &json!({"config": inst["config"], "devices": inst["devices"], "profiles": inst["profiles"]}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let p = s.plan(&c).await;
        assert_eq!(addresses(&p), [format!("proxy.{m2}.api")]);
        assert!(s.run(&p, 8).await.success());
        assert!(s.plan(&c).await.is_empty());

        // A container stopped by hand: exactly that container to start.
        let m1 = m(1);
        cl.put(
            &format!("/1.0/instances/{m1}/state"),
            &json!({"action": "stop", "force": true, "timeout": 30}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let p = s.plan(&c).await;
        assert_eq!(addresses(&p), [format!("lxd_instance.{m1}")]);
        assert_eq!(p.actions()[0].reason, "container is stopped; will be started");
        assert!(s.run(&p, 8).await.success());
        let inst: Value = cl.get(&format!("/1.0/instances/{m1}")).await.unwrap();
        assert_eq!(inst["status"], "Running");
        assert!(s.plan(&c).await.is_empty());

        // A limit changed in the file: an update of that container only.
        let port2 = format!("api_port = {}\n", members[1].1);
        let limited = config(&file_on(d, &t, net, &members).replace(&port2, &format!("{port2}memory = \"512MiB\"\n")));
        let p = s.plan(&limited).await;
        assert_eq!(addresses(&p), [format!("lxd_instance.{m2}")]);
        assert!(s.run(&p, 8).await.success());
        let inst: Value = cl.get(&format!("/1.0/instances/{m2}")).await.unwrap();
        assert_eq!(inst["config"]["limits.memory"], "512MiB");
        assert!(s.run(&s.plan(&c).await, 8).await.success(), "and back");

        // Adding a member creates only its container and proxy; removing it deletes only those.
        let m4 = m(4);
        let mut four = members.to_vec();
        four.push((m4.clone(), d.port(27445)));
        let p = s.plan(&config(&file_on(d, &t, net, &four))).await;
        assert_eq!(
            ops(&p),
            [(format!("lxd_instance.{m4}"), "create".to_owned()), (format!("proxy.{m4}.api"), "create".to_owned())]
                .into_iter()
                .collect()
        );
        assert!(s.run(&p, 8).await.success());
        let p = s.plan(&c).await;
        assert!(
            p.actions().iter().all(|a| a.op.name() == "delete" && a.address.has_segment(&m4)),
            "{:?}",
            addresses(&p)
        );
        assert!(s.run(&p, 8).await.success());
        assert!(cl.get_opt::<Value>(&format!("/1.0/instances/{m4}")).await.unwrap().is_none());

        // Destroy removes every container, device, profile and the bridge testbed made; the pool it did not
        // make stays.
        let d = s.destroy_plan(&c).await;
        let r = s.run(&d, 8).await;
        assert!(r.success(), "{}: {:?}", r.summary_line("Destroy"), r.failures().collect::<Vec<_>>());
        for (m, _) in &members {
            assert!(cl.get_opt::<Value>(&format!("/1.0/instances/{m}")).await.unwrap().is_none(), "{m}");
        }
        assert!(cl.get_opt::<Value>(&format!("/1.0/profiles/tb{t}-member")).await.unwrap().is_none());
        assert!(cl.get_opt::<Value>(&format!("/1.0/networks/tb{t}")).await.unwrap().is_none());
        assert!(cl.get_opt::<Value>("/1.0/storage-pools/default").await.unwrap().is_some());
    });
}

fn what_testbed_does_not_own_is_never_touched(daemon: Daemon) {
    let t = daemon.tag("rb");
    let (m1, m2, neighbour) = (format!("{t}1"), format!("{t}2"), format!("{t}-neighbour"));
    let members = [(m1.clone(), daemon.port(27541)), (m2.clone(), daemon.port(27542))];
    let c = config(&file_on(daemon, &t, daemon.subnet(82), &members));
    rt().block_on(async {
        let s = Stack::on(daemon, &t);
        let cl = daemon.client();
        clear(&cl, &[&m1, &m2, &neighbour], &t).await;
        // Someone's own container already named like the second member.
        let body = json!({"name": m2, "type": "container", "source": {"type": "image", "alias": IMAGE}});
        cl.post("/1.0/instances", &body, Duration::from_secs(120)).await.unwrap();
        let o = s.observe(&c).await;
        let d = testbed_plan::desired::build(&c, &o);
        let err = testbed_plan::plan(&d, &o).expect_err("a conflict").to_string();
        assert!(err.contains(&format!("lxd_instance.{m2}")) && err.contains("testbed did not create"), "{err}");
        assert!(s.destroy_plan(&c).await.is_empty(), "destroy never plans someone else's container");
        cl.delete(&format!("/1.0/instances/{m2}"), Duration::from_secs(60)).await.unwrap();

        // With the name free, apply; then an unrelated container joins the bridge.
        assert!(s.run(&s.plan(&c).await, 8).await.success());
        let body = json!({"name": neighbour, "type": "container", "source": {"type": "image", "alias": IMAGE},
            "devices": {"eth0": {"type": "nic", "network": format!("tb{t}"), "name": "eth0"}}});
        cl.post("/1.0/instances", &body, Duration::from_secs(120)).await.unwrap();
        let state = format!("/1.0/instances/{neighbour}/state");
        cl.put(&state, &json!({"action": "start"}), Duration::from_secs(60)).await.unwrap();
        assert!(s.plan(&c).await.is_empty(), "a neighbour is none of testbed's business");

        let d = s.destroy_plan(&c).await;
        assert!(d.find(&format!("lxd_network.tb{t}")).is_none(), "the bridge the neighbour uses is kept");
        assert!(d.notes.iter().any(|n| n.contains(&format!("container {neighbour}"))), "{:?}", d.notes);
        assert!(s.run(&d, 8).await.success());
        let n: Value = cl.get(&format!("/1.0/instances/{neighbour}")).await.expect("the neighbour survives destroy");
        assert_eq!(n["status"], "Running");

        // Once its owner removes it, destroy finishes the job.
        cl.put(&state, &json!({"action": "stop", "force": true}), Duration::from_secs(60)).await.unwrap();
        cl.delete(&format!("/1.0/instances/{neighbour}"), Duration::from_secs(60)).await.unwrap();
        let r = s.run(&s.destroy_plan(&c).await, 8).await;
        assert!(r.success(), "{}: {:?}", r.summary_line("Destroy"), failures(&r));
        assert!(cl.get_opt::<Value>(&format!("/1.0/networks/tb{t}")).await.unwrap().is_none());
    });
}
