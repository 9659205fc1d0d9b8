//! Kernel limits (raised, never lowered, persisted) and the bridge's firewall rules (never duplicated),
//! with iptables and on an nft-only host.

mod common;

use common::*;
use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_plan::{Health, Kind, Op, Owner};
use testbed_provider::{ErrorKind, Provider};

const FILE: &str = "[[members]]\nname = \"member1\"\napi_port = 16441\n";

#[tokio::test]
async fn limits_are_raised_never_lowered_and_persisted() {
    let host = FakeHost::new(UBUNTU_2404);
    host.sysctl("fs.inotify.max_user_instances", "128");
    host.sysctl("fs.inotify.max_user_watches", "4194304");
    let r = ScriptedRunner::new();
    let root = host.root().to_path_buf();
    r.on(
        &["sysctl", "-w"],
        Reply::effect(move |_, argv| {
            let (k, v) = argv[2].split_once('=').unwrap();
            std::fs::write(root.join("proc/sys").join(k.replace('.', "/")), format!("{v}\n")).unwrap();
            Ok(Output::ok(format!("{k} = {v}\n")))
        }),
    );
    let cfg = config(FILE);
    let p = provider(&host, &r, &cfg);
    let (log, _) = capture();
    p.apply(&action(Op::Update, wanted(&cfg, "host.sysctl")), &log).await.unwrap();

    assert_eq!(r.transcript(), vec!["host$ sysctl -w fs.inotify.max_user_instances=1048576"]);
    assert_eq!(
        host.read("/etc/sysctl.d/60-testbed.conf").unwrap(),
        format!(
            "{}\nfs.inotify.max_user_instances = 1048576\nfs.inotify.max_user_watches = 4194304\n",
            testbed_host::SYSCTL_HEADER
        ),
        "the higher value stays, in the running kernel and after a reboot"
    );

    let obs = p.observe(&[wanted(&cfg, "host.sysctl")]).await.unwrap();
    let s = obs.resources.iter().find(|o| o.kind == Kind::HostSysctl).unwrap();
    assert_eq!(s.owner, Owner::Testbed);
    assert_eq!(s.spec.get("fs.inotify.max_user_watches").map(String::as_str), Some("4194304"));
}

#[tokio::test]
async fn limits_not_written_by_testbed_are_someone_elses() {
    let host = FakeHost::new(UBUNTU_2404);
    host.sysctl("fs.inotify.max_user_instances", "128");
    host.sysctl("fs.inotify.max_user_watches", "8192");
    let cfg = config(FILE);
    let p = provider(&host, &ScriptedRunner::new(), &cfg);
    let obs = p.observe(&[wanted(&cfg, "host.sysctl")]).await.unwrap();
    let s = obs.resources.iter().find(|o| o.kind == Kind::HostSysctl).unwrap();
    assert_eq!(
        s.owner,
        Owner::Other("kernel settings in force were not written by testbed (no /etc/sysctl.d/60-testbed.conf)".into())
    );
    assert_eq!(s.spec.get("fs.inotify.max_user_instances").map(String::as_str), Some("128"));
}

fn iptables_host() -> FakeHost {
    let host = FakeHost::new(DEBIAN_12);
    host.program("/usr/sbin/iptables");
    host.program("/usr/sbin/nft");
    host
}

#[tokio::test]
async fn rules_already_there_are_not_inserted_again() {
    let host = iptables_host();
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::ok(""));
    let cfg = config(FILE);
    let p = provider(&host, &r, &cfg);
    p.apply(&action(Op::Create, wanted(&cfg, "host.firewall")), &testbed_provider::ActionLog::discard()).await.unwrap();
    let t = r.transcript();
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.iter().all(|l| l.starts_with("host$ iptables -C ")), "no -I: {t:?}");
}

#[tokio::test]
async fn only_missing_rules_are_inserted() {
    let host = iptables_host();
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::ok(""));
    r.on(&["iptables", "-C", "FORWARD", "-o"], Reply::exit(1, IPTABLES_NO_RULE));
    r.on(&["iptables", "-I"], Reply::ok(""));
    let cfg = config(FILE);
    let p = provider(&host, &r, &cfg);
    p.apply(&action(Op::Create, wanted(&cfg, "host.firewall")), &testbed_provider::ActionLog::discard()).await.unwrap();
    insta::assert_snapshot!(r.transcript().join("\n"), @r"
    host$ iptables -C INPUT -i lxdbr0 -m comment --comment testbed:testbed -j ACCEPT
    host$ iptables -C FORWARD -i lxdbr0 -m comment --comment testbed:testbed -j ACCEPT
    host$ iptables -C FORWARD -o lxdbr0 -m comment --comment testbed:testbed -j ACCEPT
    host$ iptables -I FORWARD -o lxdbr0 -m comment --comment testbed:testbed -j ACCEPT
    ");
}

#[tokio::test]
async fn a_check_that_is_refused_stops_before_any_insert() {
    let host = iptables_host();
    let r = ScriptedRunner::new();
    r.on(
        &["iptables", "-C"],
        Reply::exit(4, "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n"),
    );
    r.on(&["iptables", "-I"], Reply::ok(""));
    let cfg = config(FILE);
    let p = provider(&host, &r, &cfg);
    let e = p
        .apply(&action(Op::Create, wanted(&cfg, "host.firewall")), &testbed_provider::ActionLog::discard())
        .await
        .unwrap_err();
    assert!(
        e.report().to_string().contains("exited 4: iptables v1.8.9 (nf_tables): Could not fetch rule set"),
        "{e}",
        e = e.report()
    );
    assert!(e.hint().unwrap().contains("root"), "{e:?}");
    assert_eq!(r.transcript().len(), 1);

    // Observation cannot read the rules either: the state is unknown, not absent.
    let e = p.observe(&[wanted(&cfg, "host.firewall")]).await.unwrap_err();
    assert!(e.kind() == ErrorKind::StateUnknown, "{e:?}");
    assert!(e.hint().unwrap().contains("sudo"), "{e:?}");
}

#[tokio::test]
async fn observed_rules_tell_testbeds_partial_and_foreign_apart() {
    let host = iptables_host();
    let cfg = config(FILE);
    let w = wanted(&cfg, "host.firewall");

    // All three with testbed's comment.
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::ok(""));
    r.on(&["iptables", "-t", "raw", "-S"], Reply::ok("-P PREROUTING ACCEPT\n"));
    let obs = provider(&host, &r, &cfg).observe(std::slice::from_ref(&w)).await.unwrap();
    let f = obs.resources.iter().find(|o| o.kind == Kind::HostFirewall).unwrap();
    assert_eq!((f.owner.clone(), f.health.clone()), (Owner::Testbed, Health::Ok));
    assert_eq!(f.spec.get("bridge").map(String::as_str), Some("lxdbr0"));

    // One of them gone: repaired by the next apply.
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::ok(""));
    r.on(&["iptables", "-t", "raw", "-S"], Reply::ok("-P PREROUTING ACCEPT\n"));
    r.on(&["iptables", "-C", "INPUT"], Reply::exit(1, IPTABLES_NO_RULE));
    let obs = provider(&host, &r, &cfg).observe(std::slice::from_ref(&w)).await.unwrap();
    let f = obs.resources.iter().find(|o| o.kind == Kind::HostFirewall).unwrap();
    assert_eq!(f.health, Health::NeedsRepair("1 of 3 rules for bridge lxdbr0 are missing; they will be added".into()));

    // Rules without testbed's comment (as the shell scripts added them): someone else's, used as they are.
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::ok(""));
    r.on(&["iptables", "-t", "raw", "-S"], Reply::ok("-P PREROUTING ACCEPT\n"));
    for (chain, dir) in testbed_host::firewall::RULES {
        r.on(&["iptables", "-C", chain, dir, "lxdbr0", "-m"], Reply::exit(1, IPTABLES_NO_RULE));
    }
    let obs = provider(&host, &r, &cfg).observe(std::slice::from_ref(&w)).await.unwrap();
    let f = obs.resources.iter().find(|o| o.kind == Kind::HostFirewall).unwrap();
    assert_eq!(
        f.owner,
        Owner::Other(
            "forwarding rules for bridge lxdbr0 that testbed did not add (no testbed:testbed comment on the rules)"
                .into()
        )
    );

    // Nothing for lxdbr0, but testbed's rules for the bridge the file used to name.
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::exit(1, IPTABLES_NO_RULE));
    r.on(&["iptables", "-t", "raw", "-S"], Reply::ok("-P PREROUTING ACCEPT\n"));
    r.on(
        &["iptables", "-S", "FORWARD"],
        Reply::ok("-P FORWARD DROP\n-A FORWARD -i oldbr0 -m comment --comment \"testbed:testbed\" -j ACCEPT\n-A FORWARD -o oldbr0 -m comment --comment \"testbed:testbed\" -j ACCEPT\n-A FORWARD -j DOCKER-USER\n"),
    );
    let p = provider(&host, &r, &cfg);
    let obs = p.observe(std::slice::from_ref(&w)).await.unwrap();
    let f = obs.resources.iter().find(|o| o.kind == Kind::HostFirewall).unwrap().clone();
    assert_eq!(f.spec.get("bridge").map(String::as_str), Some("oldbr0"));

    // The update takes the old bridge's rules out first, then adds lxdbr0's.
    r.on(&["iptables", "-D"], Reply::ok(""));
    r.on(&["iptables", "-I"], Reply::ok(""));
    let before = r.calls().len();
    let mut a = action(Op::Update, w);
    a.observed = Some(f);
    p.apply(&a, &testbed_provider::ActionLog::discard()).await.unwrap();
    let t = &r.transcript()[before..];
    assert_eq!(t[0], "host$ iptables -D INPUT -i oldbr0 -m comment --comment testbed:testbed -j ACCEPT");
    assert_eq!(t.iter().filter(|l| l.contains("-D ")).count(), 3);
    assert_eq!(t.iter().filter(|l| l.contains("-I ") && l.contains("lxdbr0")).count(), 3);
}

#[tokio::test]
async fn delete_tolerates_rules_already_gone() {
    let host = iptables_host();
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-D"], Reply::ok(""));
    r.on(&["iptables", "-D", "INPUT"], Reply::exit(1, IPTABLES_NO_RULE));
    let cfg = config(FILE);
    let p = provider(&host, &r, &cfg);
    let mut a = action(Op::Delete, wanted(&cfg, "host.firewall"));
    a.observed = Some(testbed_plan::Observed {
        address: a.address.clone(),
        kind: a.kind,
        member: None,
        owner: Owner::Testbed,
        spec: a.desired.as_ref().unwrap().spec.clone(),
        health: Health::Ok,
        in_use_by: vec![],
    });
    a.desired = None;
    p.apply(&a, &testbed_provider::ActionLog::discard()).await.unwrap();
    assert_eq!(r.transcript().len(), 3);

    r.on(&["iptables", "-D", "INPUT"], Reply::exit(4, "iptables: Permission denied (you must be root)\n"));
    let e = p.apply(&a, &testbed_provider::ActionLog::discard()).await.unwrap_err();
    assert!(e.report().to_string().contains("exited 4"), "{e}", e = e.report());
}

/// `nft -j list table inet testbed` output of nftables 1.0.6 with the INPUT rule only.
const NFT_INPUT_ONLY: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "testbed", "handle": 1}}, {"chain": {"family": "inet", "table": "testbed", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "testbed", "chain": "input", "handle": 2, "comment": "testbed:testbed", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lxdbr0"}}, {"accept": null}]}}]}"#;

/// What nft 1.0.6 prints listing a table that does not exist (exit code 1).
const NFT_NO_TABLE: &str = "Error: No such file or directory\nlist table inet testbed\n                ^^^^^^^\n";

#[tokio::test]
async fn an_nft_only_host_gets_testbeds_own_table() {
    let host = FakeHost::new(DEBIAN_12);
    host.program("/usr/sbin/nft");
    let cfg = config(FILE);
    let r = ScriptedRunner::new();
    r.on(&["nft", "-j", "list"], Reply::exit(1, NFT_NO_TABLE));
    r.on(&["nft", "add"], Reply::ok(""));
    let p = provider(&host, &r, &cfg);
    assert!(p
        .observe(&[wanted(&cfg, "host.firewall")])
        .await
        .unwrap()
        .resources
        .iter()
        .all(|o| o.kind != Kind::HostFirewall));
    p.apply(&action(Op::Create, wanted(&cfg, "host.firewall")), &testbed_provider::ActionLog::discard()).await.unwrap();
    insta::assert_snapshot!(r.transcript().join("\n"), @r#"
    host$ nft -j list table inet testbed
    host$ nft -j list table inet testbed
    host$ nft -j list table inet testbed
    host$ nft add table inet testbed
    host$ nft add chain inet testbed input '{ type filter hook input priority 0 ; policy accept ; }'
    host$ nft add chain inet testbed forward '{ type filter hook forward priority 0 ; policy accept ; }'
    host$ nft add rule inet testbed input iifname '"lxdbr0"' accept comment '"testbed:testbed"'
    host$ nft add rule inet testbed forward iifname '"lxdbr0"' accept comment '"testbed:testbed"'
    host$ nft add rule inet testbed forward oifname '"lxdbr0"' accept comment '"testbed:testbed"'
    "#);

    // With the input rule there, only the two forward rules are added, and it is observed as partial.
    let r = ScriptedRunner::new();
    r.on(&["nft", "-j", "list"], Reply::ok(NFT_INPUT_ONLY));
    r.on(&["nft", "add"], Reply::ok(""));
    let p = provider(&host, &r, &cfg);
    let obs = p.observe(&[wanted(&cfg, "host.firewall")]).await.unwrap();
    let f = obs.resources.iter().find(|o| o.kind == Kind::HostFirewall).unwrap();
    assert!(matches!(f.health, Health::NeedsRepair(_)), "{f:?}");
    p.apply(&action(Op::Update, wanted(&cfg, "host.firewall")), &testbed_provider::ActionLog::discard()).await.unwrap();
    let rules: Vec<String> = r.transcript().into_iter().filter(|l| l.contains("add rule")).collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules.iter().all(|l| l.contains(" forward ")), "{rules:?}");
}

#[tokio::test]
async fn no_firewall_tool_is_a_precondition() {
    let host = FakeHost::new(DEBIAN_12);
    let cfg = config(FILE);
    let r = ScriptedRunner::new();
    let p = provider(&host, &r, &cfg);
    let e = p
        .apply(&action(Op::Create, wanted(&cfg, "host.firewall")), &testbed_provider::ActionLog::discard())
        .await
        .unwrap_err();
    assert!(e.kind() == ErrorKind::Precondition, "{e:?}");
    assert!(e.report().to_string().contains("neither iptables nor nft is installed"), "{e}", e = e.report());
    assert!(e.hint().unwrap().contains("apt-get install iptables"), "{e:?}");
    assert!(r.calls().is_empty());
}

/// `table inet testbed` holding this testbed's INPUT rule on lxdbr0 (handle 2) and another testbed's on
/// tbother0 (handle 3).
const NFT_TWO_TESTBEDS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "testbed", "handle": 1}}, {"chain": {"family": "inet", "table": "testbed", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "testbed", "chain": "input", "handle": 2, "comment": "testbed:testbed", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lxdbr0"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "testbed", "chain": "input", "handle": 3, "comment": "testbed:other", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "tbother0"}}, {"accept": null}]}}]}"#;

/// Two testbeds on one host share nft's table: removing one's rules deletes those rules only, and the
/// table stays for the other's; the other's rules are never observed as this one's.
#[tokio::test]
async fn an_nft_table_shared_with_another_testbed_loses_only_this_testbeds_rules() {
    let host = FakeHost::new(DEBIAN_12);
    host.program("/usr/sbin/nft");
    let cfg = config(FILE);
    let r = ScriptedRunner::new();
    r.on(&["nft", "-j", "list"], Reply::ok(NFT_TWO_TESTBEDS));
    r.on(&["nft", "delete"], Reply::ok(""));
    let p = provider(&host, &r, &cfg);
    // Nothing wanted (a destroy): this testbed's rules on lxdbr0 are found, the other's are not.
    let obs = p.observe(&[]).await.unwrap();
    let found: Vec<_> = obs.resources.iter().filter(|o| o.kind == Kind::HostFirewall).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].spec.get("bridge").map(String::as_str), Some("lxdbr0"));

    let mut a = action(Op::Delete, wanted(&cfg, "host.firewall"));
    a.observed = Some(found[0].clone());
    a.desired = None;
    p.apply(&a, &testbed_provider::ActionLog::discard()).await.unwrap();
    let deletes: Vec<String> = r.transcript().into_iter().filter(|l| l.contains("nft delete")).collect();
    assert_eq!(deletes, ["host$ nft delete rule inet testbed input handle 2"]);
}
