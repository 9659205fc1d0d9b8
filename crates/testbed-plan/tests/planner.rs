//! The planner's rules, on hand-made observed states (no simulation involved).

mod common;

use std::path::Path;

use common::converged;

use testbed_config::Config;
use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{plan, Address, Health, Observed, ObservedState, Op, Owner, Plan, PlanError};

fn config(members: &[(&str, u16)]) -> Config {
    let mut text = String::new();
    for (name, port) in members {
        text.push_str(&format!("[[members]]\nname = \"{name}\"\napi_port = {port}\n\n"));
    }
    testbed_config::parse(Path::new("testbed.toml"), &text).expect("valid test config")
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap_or_else(|| panic!("{s} is not an address"))
}

fn ops(p: &Plan) -> Vec<(String, Op)> {
    p.actions().iter().map(|a| (a.address.to_string(), a.op)).collect()
}

fn position(p: &Plan, a: &str) -> usize {
    p.actions().iter().position(|x| x.address.as_str() == a).unwrap_or_else(|| panic!("{a} not in plan"))
}

fn three() -> Config {
    config(&[("member1", 16441), ("member2", 16442), ("member3", 16444)])
}

#[test]
fn a_converged_machine_plans_nothing() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let p = plan(&d, &converged(&d)).unwrap();
    assert!(p.is_empty(), "{:?}", ops(&p));
}

#[test]
fn an_empty_machine_plans_every_resource_as_a_create_in_dependency_order() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let p = plan(&d, &ObservedState::default()).unwrap();
    assert_eq!(p.summary().create, d.resources.len());
    assert!(position(&p, "host.packages") < position(&p, "lxd_network.lxdbr0"));
    assert!(position(&p, "lxd_instance.member1") < position(&p, "microk8s.member1"));
    assert!(position(&p, "image.etcd") < position(&p, "karmada.control_plane"));
    assert!(position(&p, "karmada.control_plane") < position(&p, "karmada_member.member1"));
    assert!(position(&p, "kubeconfig.member1") < position(&p, "karmada_member.member1"));
}

/// `karmadactl init` advertises the host's address on the bridge: the control plane waits for the bridge,
/// and is deinitialised before the bridge goes.
#[test]
fn the_control_plane_needs_the_bridge_it_advertises() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let cp = d.resources.values().find(|r| r.address.as_str() == "karmada.control_plane").expect("wanted");
    assert!(cp.depends_on.iter().any(|a| a.as_str() == "lxd_network.lxdbr0"), "{:?}", cp.depends_on);
    let p = plan(&DesiredState::nothing(), &converged(&d)).unwrap();
    let (cp, bridge) = (p.find("karmada.control_plane").unwrap(), p.find("lxd_network.lxdbr0").unwrap());
    assert!(p.graph.contains_edge(cp, bridge), "the bridge's delete waits for deinit");
}

#[test]
fn a_stopped_container_is_an_update_that_says_why() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let mut o = converged(&d);
    o.resources.get_mut(&addr("lxd_instance.member1")).unwrap().health =
        Health::NeedsRepair("container is stopped; will be started".into());
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), [("lxd_instance.member1".to_owned(), Op::Update)]);
    assert_eq!(p.actions()[0].reason, "container is stopped; will be started");
}

#[test]
fn a_changed_image_replaces_the_container_and_rebuilds_what_lives_in_it() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let mut o = converged(&d);
    o.resources.get_mut(&addr("lxd_instance.member2")).unwrap().spec.insert("image".into(), "ubuntu:20.04".into());
    let p = plan(&d, &o).unwrap();
    // Each replace is shown in its two halves, its delete and its create.
    let got: Vec<(String, Op)> = p
        .actions()
        .iter()
        .map(|a| (a.address.to_string(), a.shown_op()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for a in [
        "lxd_instance.member2",
        "proxy.member2.api",
        "microk8s.member2",
        "microk8s_addons.member2",
        "kubeconfig.member2",
        "karmada_member.member2",
    ] {
        assert!(got.contains(&(a.to_owned(), Op::Replace)), "{a} missing from {got:?}");
    }
    assert_eq!(got.len(), 6, "nothing of member1, member3 or the host: {got:?}");
    let inst = &p.actions()[position(&p, "lxd_instance.member2")];
    assert!(inst.reason.contains("forces replacement"), "{}", inst.reason);
    let m = &p.actions()[position(&p, "microk8s.member2")];
    assert!(m.reason.contains("rebuilt because lxd_instance.member2 is replaced"), "{}", m.reason);
}

/// Issue 11, item 6a: a replace's delete comes after the deletes of what needs the old resource, exactly as
/// destroy orders them (the membership is unjoined, its kubeconfig still there, before the container
/// goes), and its create after its delete.
#[test]
fn a_replaced_member_is_unjoined_before_its_container_is_deleted() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let mut o = converged(&d);
    o.resources.get_mut(&addr("lxd_instance.member2")).unwrap().spec.insert("image".into(), "ubuntu:20.04".into());
    let p = plan(&d, &o).unwrap();
    let at = |a: &str, op: Op| {
        p.actions()
            .iter()
            .position(|x| x.address.as_str() == a && x.op == op)
            .unwrap_or_else(|| panic!("no {op:?} of {a} in {:?}", ops(&p)))
    };
    assert!(at("karmada_member.member2", Op::Delete) < at("kubeconfig.member2", Op::Delete));
    assert!(at("kubeconfig.member2", Op::Delete) < at("lxd_instance.member2", Op::Delete));
    assert!(at("lxd_instance.member2", Op::Delete) < at("lxd_instance.member2", Op::Create));
    assert!(at("lxd_instance.member2", Op::Create) < at("karmada_member.member2", Op::Create));
    // What lives in the container goes with it, as in a destroy: nothing of its own to run.
    let proxy = &p.actions()[at("proxy.member2.api", Op::Delete)];
    assert_eq!(proxy.cascade, Some(addr("lxd_instance.member2")));
    // Shown and counted as six replaces, each in two halves.
    assert_eq!(p.summary().replace, 6);
    assert_eq!(p.summary().total(), 6);
    assert!(p.actions().iter().all(|a| a.shown_op() == Op::Replace));
}

#[test]
fn a_changed_limit_is_an_update_of_that_container_only() {
    let text = "[[members]]\nname = \"member1\"\napi_port = 16441\nmemory = \"8GiB\"\n";
    let c = testbed_config::parse(Path::new("testbed.toml"), text).unwrap();
    let d = desired::build(&c, &ObservedState::default());
    let mut o = converged(&d);
    o.resources.get_mut(&addr("lxd_instance.member1")).unwrap().spec.insert("limits.memory".into(), "4GiB".into());
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), [("lxd_instance.member1".to_owned(), Op::Update)]);
    assert_eq!(p.actions()[0].reason, "limits.memory: \"4GiB\" → \"8GiB\"");
}

#[test]
fn removing_a_member_deletes_only_its_resources_membership_first() {
    let before = desired::build(&three(), &ObservedState::default());
    let o = converged(&before);
    let two = config(&[("member1", 16441), ("member2", 16442)]);
    let d = desired::build(&two, &o);
    let p = plan(&d, &o).unwrap();
    for (a, op) in ops(&p) {
        assert_eq!(op, Op::Delete, "{a}");
        assert!(addr(&a).has_segment("member3"), "{a}");
    }
    assert_eq!(p.summary().delete, 6, "instance, api proxy, MicroK8s, addons, kubeconfig, membership");
    assert!(position(&p, "karmada_member.member3") < position(&p, "kubeconfig.member3"));
    assert!(position(&p, "kubeconfig.member3") < position(&p, "lxd_instance.member3"));
    // What lives in the container goes with it: no work of its own, after the container.
    let mk = &p.actions()[position(&p, "microk8s.member3")];
    assert_eq!(mk.cascade, Some(addr("lxd_instance.member3")));
    assert!(position(&p, "lxd_instance.member3") < position(&p, "microk8s.member3"));
}

#[test]
fn destroy_deletes_everything_owned_except_retained_host_settings() {
    let d = desired::build(&three(), &ObservedState::default());
    let o = converged(&d);
    let p = plan(&DesiredState::nothing(), &o).unwrap();
    // The download cache stays too: the next lab installs from it.
    assert_eq!(p.summary().delete, d.resources.len() - 3);
    assert!(p.find("host.packages").is_none() && p.find("host.sysctl").is_none());
    assert!(p.find("snap_download.microk8s-1_35-stable").is_none());
    // Reverse dependency order.
    assert!(position(&p, "karmada_member.member1") < position(&p, "karmada.control_plane"));
    assert!(position(&p, "karmada.control_plane") < position(&p, "image.etcd"));
    assert!(position(&p, "lxd_instance.member1") < position(&p, "lxd_profile.microk8s"));
    assert!(position(&p, "image.etcd") < position(&p, "registry.local"));
}

#[test]
fn a_foreign_container_with_a_wanted_name_is_a_conflict() {
    let d = desired::build(&three(), &ObservedState::default());
    let mut o = ObservedState::default();
    let found = "a container named member2 that testbed did not create".to_owned();
    o.insert(Observed {
        address: addr("lxd_instance.member2"),
        kind: testbed_plan::Kind::LxdInstance,
        member: Some("member2".into()),
        owner: Owner::Other(found.clone()),
        spec: Default::default(),
        health: Health::Ok,
        in_use_by: Vec::new(),
    });
    match plan(&d, &o) {
        Err(PlanError::Conflicts(c)) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].address, addr("lxd_instance.member2"));
            assert!(c[0].to_string().contains(&found));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Destroy never touches it.
    let p = plan(&DesiredState::nothing(), &o).unwrap();
    assert!(p.is_empty());
}

#[test]
fn a_foreign_bridge_is_used_as_it_is() {
    let d = desired::build(&three(), &ObservedState::default());
    let mut o = converged(&d);
    let bridge = o.resources.get_mut(&addr("lxd_network.lxdbr0")).unwrap();
    bridge.owner = Owner::Other("bridge lxdbr0 made by hand".into());
    bridge.spec.insert("ipv4.address".into(), "10.0.3.1/24".into());
    let p = plan(&d, &o).unwrap();
    assert!(p.is_empty(), "{:?}", ops(&p));
    assert!(p.notes[0].contains("lxd_network.lxdbr0 exists and is not testbed's"), "{:?}", p.notes);
}

#[test]
fn renaming_a_member_that_keeps_its_port_creates_after_the_old_proxy_goes() {
    let before = desired::build(&three(), &ObservedState::default());
    let o = converged(&before);
    let renamed = config(&[("member1", 16441), ("member2", 16442), ("member9", 16444)]);
    let d = desired::build(&renamed, &o);
    let p = plan(&d, &o).unwrap();
    assert!(position(&p, "proxy.member3.api") < position(&p, "proxy.member9.api"));
    // And member9 does not take member3's address while member3 still holds it.
    let ip9 = &d.resources[&addr("lxd_instance.member9")].spec["ipv4"];
    let ip3 = &before.resources[&addr("lxd_instance.member3")].spec["ipv4"];
    assert_ne!(ip9, ip3);
}

#[test]
fn derived_addresses_stay_with_their_containers() {
    let before = desired::build(&three(), &ObservedState::default());
    let o = converged(&before);
    // Drop member1 from the file: member2 and member3 keep their addresses.
    let two = config(&[("member2", 16442), ("member3", 16444)]);
    let d = desired::build(&two, &o);
    for m in ["member2", "member3"] {
        let a = addr(&format!("lxd_instance.{m}"));
        assert_eq!(d.resources[&a].spec["ipv4"], before.resources[&a].spec["ipv4"], "{m}");
    }
}

#[test]
fn target_keeps_what_the_target_needs() {
    let d = desired::build(&three(), &ObservedState::default());
    let p = plan(&d, &ObservedState::default()).unwrap().targeted(&["kubeconfig.member1".into()]);
    let got: Vec<String> = ops(&p).into_iter().map(|(a, _)| a).collect();
    assert!(got.contains(&"kubeconfig.member1".to_owned()));
    assert!(got.contains(&"lxd_instance.member1".to_owned()));
    assert!(got.contains(&"host.packages".to_owned()));
    assert!(!got.iter().any(|a| a.contains("member2")), "{got:?}");
    assert!(!got.contains(&"karmada.control_plane".to_owned()), "{got:?}");
}

#[test]
fn an_owned_resource_someone_else_uses_is_kept_and_the_plan_says_why() {
    let d = desired::build(&three(), &ObservedState::default());
    let mut o = converged(&d);
    o.resources.get_mut(&addr("lxd_network.lxdbr0")).unwrap().in_use_by =
        vec![testbed_plan::ForeignUse::Container("builder".into())];
    let p = plan(&DesiredState::nothing(), &o).unwrap();
    assert!(p.find("lxd_network.lxdbr0").is_none(), "{:?}", ops(&p));
    assert!(p.find("host.firewall").is_some());
    assert!(
        p.notes.iter().any(|n| n.contains("lxd_network.lxdbr0 is kept") && n.contains("container builder")),
        "{:?}",
        p.notes
    );
}

#[test]
fn kernel_limits_already_higher_are_left_alone() {
    let d = desired::build(&three(), &ObservedState::default());
    let mut o = converged(&d);
    let sysctl = o.resources.get_mut(&addr("host.sysctl")).unwrap();
    sysctl.spec.insert("fs.inotify.max_user_watches".into(), "4194304".into());
    assert!(plan(&d, &o).unwrap().is_empty());
    o.resources.get_mut(&addr("host.sysctl")).unwrap().spec.insert("fs.inotify.max_user_watches".into(), "8192".into());
    assert_eq!(ops(&plan(&d, &o).unwrap()), [("host.sysctl".to_owned(), Op::Update)]);
}

#[test]
fn a_layer_whose_state_is_unknown_is_left_alone_while_an_absent_one_is_planned() {
    use testbed_plan::{Layer, Unobservable};
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    // Karmada's API does not answer although it exists; member3 was removed from the file meanwhile.
    let mut o = converged(&d);
    o.resources.retain(|a, r| r.kind.layer() != Layer::Karmada || a.as_str() == "karmada_member.member2");
    let d2 = desired::build(
        &config(&[("member1", 16441), ("member3", 16444), ("member4", 16445)]),
        &ObservedState::default(),
    );
    o.unobservable.push(Unobservable { layer: Layer::Karmada, reason: "connection refused".into(), held: true });
    let p = plan(&d2, &o).unwrap();
    assert!(
        p.actions().iter().all(|a| a.kind.layer() != Layer::Karmada),
        "nothing is joined, re-initialised or unjoined on a guess: {:?}",
        ops(&p)
    );
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("karmada could not be observed (connection refused); its resources are left out")));
    // Nor is member2's container deleted under a membership nobody can see: that waits, and says so.
    assert!(p.actions().iter().all(|a| !a.address.has_segment("member2")), "{:?}", ops(&p));
    assert!(
        p.notes.iter().any(|n| n.starts_with("deleting ")
            && n.contains("lxd_instance.member2")
            && n.contains("waits until karmada can be observed")),
        "{:?}",
        p.notes
    );
    // What the file changed elsewhere is still planned: the new member3 resources below Karmada.
    assert!(
        ops(&p).contains(&("lxd_instance.member3".into(), Op::Create))
            || o.get(&addr("lxd_instance.member3")).is_some()
    );

    // The same layer taken to be absent (not installed yet): its resources are planned as missing.
    o.unobservable[0].held = false;
    let p = plan(&d2, &o).unwrap();
    assert!(ops(&p).contains(&("karmada.control_plane".into(), Op::Create)), "{:?}", ops(&p));
}

#[test]
fn an_image_whose_digest_drifted_is_updated_when_testbeds_and_only_noted_when_not() {
    let c = three();
    let d = desired::build(&c, &ObservedState::default());
    let mut o = converged(&d);
    let drift = "the tag has sha256:1111111111, the source has sha256:2222222222".to_owned();
    o.resources.get_mut(&addr("image.etcd")).unwrap().health = Health::NeedsRepair(drift.clone());
    let p = plan(&d, &o).unwrap();
    assert_eq!(ops(&p), [("image.etcd".to_owned(), Op::Update)]);
    assert_eq!(p.actions()[0].reason, drift);

    // Someone else's tag under the same name: used as it is, and the plan says what differs.
    let img = o.resources.get_mut(&addr("image.etcd")).unwrap();
    img.owner = Owner::Other("localhost:32000/etcd:3.5.16-0 was pushed by someone else".into());
    let p = plan(&d, &o).unwrap();
    assert!(p.is_empty(), "{:?}", ops(&p));
    assert!(p.notes.iter().any(|n| n.contains("image.etcd exists and is not testbed's") && n.contains(&drift)));
}

/// Issue 11, item 8: a member the subnet has no free address for (other containers on the bridge hold the
/// rest) is refused, naming it, instead of planned with a Karmada endpoint `https://:16443`.
#[test]
fn a_member_left_without_an_address_is_refused_not_joined_with_an_empty_host() {
    let text = "[lxd]\nipv4_address = \"10.0.0.1/28\"\n\n[[members]]\nname = \"member1\"\napi_port = 16441\n\n[[members]]\nname = \"member2\"\napi_port = 16442\n";
    let c = testbed_config::parse(Path::new("testbed.toml"), text).expect("room for two members");
    let mut o = ObservedState::default();
    // Someone else's containers on the bridge hold four of the subnet's five member addresses.
    for ip in ["10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.13"] {
        o.bridge_addresses.insert(ip.parse().unwrap());
    }
    let d = desired::build(&c, &o);
    let err = plan(&d, &o).map(|p| ops(&p)).expect_err("member2 has no address");
    assert_eq!(err, PlanError::Unaddressed(vec!["member2".into()]));
    let message = err.to_string();
    assert!(message.starts_with("member2 has no address"), "{message}");
    assert!(message.contains("[lxd] ipv4_address"), "{message}");
}
