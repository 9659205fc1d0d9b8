//! testbed changes and deletes only what it created: a container it does not own survives every command,
//! and a container it does not own under a wanted name stops the plan with a clear message.

mod support;

use support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn a_container_testbed_does_not_own_survives_apply_and_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), &file(&numbered(3), false));
    rt().block_on(async {
        let m = machine(dir.path(), 0.0, &[]);
        assert!(apply(&m, &c, 8).await.success());
        // Someone runs their own container on testbed's bridge.
        m.edit(|w| w.launch_foreign_instance("builder", "lxdbr0", "10.100.0.200")).unwrap();
        let before = m.world().lxd_daemon.instances.get("builder").cloned().expect("seeded");

        let (_, _, p) = plan(&m, &c).await;
        assert!(p.is_empty(), "another container is none of testbed's business: {:?}", addresses(&p));

        // Removing a member and destroying everything leave it exactly as it was.
        let fewer = config(dir.path(), &file(&numbered(2), false));
        assert!(apply(&m, &fewer, 8).await.success());
        let destroy = destroy_plan(&m, &fewer).await;
        assert!(destroy.actions().iter().all(|a| !a.address.has_segment("builder")));
        assert!(destroy.find("lxd_network.lxdbr0").is_none(), "the bridge it uses is kept");
        assert!(
            destroy.notes.iter().any(|n| n.contains("lxd_network.lxdbr0 is kept") && n.contains("container builder")),
            "{:?}",
            destroy.notes
        );
        assert!(run(&m, &destroy, 8).await.success());
        assert_eq!(m.world().lxd_daemon.instances.get("builder"), Some(&before));
        let held = owned(&m).await;
        assert_eq!(held, ["host.packages", "host.sysctl", "lxd_network.lxdbr0", "lxd_storage_pool.default"]);

        // Once its owner removes the container, the next destroy finishes the job.
        m.edit(|w| w.lxd_daemon.instances.remove("builder")).unwrap();
        assert!(run(&m, &destroy_plan(&m, &fewer).await, 8).await.success());
        let held = owned(&m).await;
        assert_eq!(held, ["host.packages", "host.sysctl"], "retained host settings only");
    });
}

#[test]
fn a_foreign_container_under_a_wanted_name_stops_the_plan_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), &file(&numbered(3), false));
    rt().block_on(async {
        let m = machine(dir.path(), 0.0, &[]);
        m.edit(|w| w.launch_foreign_instance("member2", "lxdbr0", "10.100.0.200")).unwrap();
        let before = m.world().lxd_daemon.instances.get("member2").cloned();
        let observed = observe(&m, &c).await;
        let d = testbed_plan::desired::build(&c, &observed);
        let err = testbed_plan::plan(&d, &observed).expect_err("a conflict");
        let msg = err.to_string();
        assert!(msg.contains("lxd_instance.member2"), "{msg}");
        assert!(msg.contains("will not change or delete it"), "{msg}");
        // Destroy plans nothing for it.
        let destroy = destroy_plan(&m, &c).await;
        assert!(destroy.is_empty(), "{:?}", addresses(&destroy));
        assert_eq!(m.world().lxd_daemon.instances.get("member2").cloned(), before);
    });
}
