//! Observation and the catalogue's steps, from replies shaped like the real programs' output.

mod common;

use std::sync::Arc;

use common::*;
use testbed_command::{Reply, ScriptedRunner};
use testbed_microk8s::Microk8sProvider;
use testbed_plan::{Action, Health, Kind, ObservedState, Op, Owner};
use testbed_provider::{ActionLog, ErrorKind, Provider, ProviderError};
use testbed_steps::Where;

fn m1() -> Where {
    Where::Member("member1".into())
}

fn host_ok(r: &ScriptedRunner) {
    inside(
        r,
        Where::Host,
        Some("1.35/stable"),
        status_running(&["dns", "ha-cluster", "helm", "helm3", "hostpath-storage"]),
        &["dns", "hostpath-storage"],
    );
}

#[tokio::test]
async fn channels_and_addons_come_from_snap_list_and_microk8s_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\", \"hostpath-storage\"");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    // member1 tracks an older channel and has only dns (plus what MicroK8s enables by itself).
    inside(&runner, m1(), Some("1.31/stable"), status_running(&["dns", "ha-cluster", "helm", "helm3"]), &["dns"]);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member1", true, true));
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());

    let state = observed_with_the_rest(&p, &desired).await;
    let host = state.get(&addr("host.microk8s")).unwrap();
    assert_eq!(
        (host.spec["channel"].as_str(), &host.owner, &host.health),
        ("1.35/stable", &Owner::Testbed, &Health::Ok)
    );
    // ha-cluster and helm are on by MicroK8s' own doing: not the file's business, not drift.
    assert_eq!(state.get(&addr("host.addons")).unwrap().spec["addons"], "dns,hostpath-storage");
    assert_eq!(state.get(&addr("microk8s.member1")).unwrap().spec["channel"], "1.31/stable");
    assert_eq!(state.get(&addr("microk8s_addons.member1")).unwrap().spec["addons"], "dns");

    let plan = testbed_plan::plan(&desired, &state).unwrap();
    // (No kubeconfig files in this test: tests/kubeconfig.rs has them.)
    let actions: Vec<_> = plan
        .actions()
        .into_iter()
        .filter(|a| matches!(a.kind, Kind::Microk8s | Kind::Microk8sAddons | Kind::HostMicrok8s | Kind::HostAddons))
        .collect();
    let what: Vec<(String, Op)> = actions.iter().map(|a| (a.address.to_string(), a.op)).collect();
    assert_eq!(
        what,
        [("microk8s.member1".to_owned(), Op::Update), ("microk8s_addons.member1".to_owned(), Op::Update)],
        "{}",
        plan.actions().iter().map(|a| format!("{} {}", a.address, a.reason)).collect::<Vec<_>>().join("\n")
    );

    // The update refreshes the channel and enables what is missing, then records it.
    let runner2 = ScriptedRunner::new();
    runner2.on(&["snap", "refresh"], Reply::ok("microk8s (1.35/stable) v1.35.0 from Canonical✓ refreshed\n"));
    runner2.on(&["microk8s"], Reply::ok(""));
    runner2.on(&["mkdir"], Reply::ok(""));
    runner2.on(&["touch"], Reply::ok(""));
    let p2 = provider(&runner2, &containers, &config, dir.path());
    for a in actions {
        p2.apply(a, &ActionLog::discard()).await.unwrap();
    }
    assert_eq!(
        runner2.transcript(),
        [
            "member1$ snap refresh microk8s --channel=1.35/stable",
            "member1$ microk8s status --wait-ready --timeout 300",
            // A repaired MicroK8s gets its local registry files again (unchanged files, rewritten).
            "member1$ mkdir -p /var/snap/microk8s/current/args/certs.d/10.123.45.1:32000 /var/snap/microk8s/current/args/certs.d/localhost:32000",
            "member1$ <push /var/snap/microk8s/current/args/certs.d/10.123.45.1:32000/hosts.toml (183 bytes)>",
            "member1$ <push /var/snap/microk8s/current/args/certs.d/localhost:32000/hosts.toml (223 bytes)>",
            "member1$ microk8s enable hostpath-storage",
            "member1$ mkdir -p /var/snap/microk8s/common/testbed-addons",
            "member1$ touch /var/snap/microk8s/common/testbed-addons/hostpath-storage",
        ]
    );
}

#[tokio::test]
async fn addons_microk8s_enabled_by_itself_are_not_drift() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    // The registry addon pulls in hostpath-storage; neither is in the record or the file.
    inside(&runner, m1(), Some("1.35/stable"), status_running(&["dns", "ha-cluster", "hostpath-storage"]), &["dns"]);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member1", true, true));
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());
    let state = observed_with_the_rest(&p, &desired).await;
    // No kubeconfig files here: only they (and the membership that needs them) are missing.
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    // (The membership is replaced: its delete half, then its create half, after the kubeconfig.)
    let what: std::collections::BTreeSet<String> = plan.actions().iter().map(|a| a.address.to_string()).collect();
    assert_eq!(what, ["karmada_member.member1".to_owned(), "kubeconfig.member1".to_owned()].into());
}

/// member1 with the file wanting only dns, its MicroK8s running `enabled` (testbed's record: `recorded`):
/// the runner, the provider, what was observed, and the planned addons update.
async fn addons_dropped(
    enabled: &[&str],
    recorded: &[&str],
) -> (tempfile::TempDir, ScriptedRunner, Microk8sProvider, ObservedState, Action) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    inside(&runner, m1(), Some("1.35/stable"), status_running(enabled), recorded);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member1", true, true));
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());
    let state = observed_with_the_rest(&p, &desired).await;
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let update = plan.actions().into_iter().find(|a| a.kind == Kind::Microk8sAddons).unwrap().clone();
    (dir, runner, p, state, update)
}

#[tokio::test]
async fn an_addon_the_file_dropped_is_disabled_but_not_one_testbed_never_enabled() {
    // testbed enabled dns and ingress; the user enabled metrics-server by hand.
    let (_dir, runner, p, state, update) =
        addons_dropped(&["dns", "ingress", "metrics-server"], &["dns", "ingress"]).await;
    assert_eq!(state.get(&addr("microk8s_addons.member1")).unwrap().spec["addons"], "dns,ingress");
    runner.on(&["microk8s", "disable"], Reply::ok("Addon ingress is disabled\n"));
    runner.on(&["rm"], Reply::ok(""));
    let before = runner.transcript().len();
    p.apply(&update, &ActionLog::discard()).await.unwrap();
    assert_eq!(
        runner.transcript()[before..],
        ["member1$ microk8s disable ingress", "member1$ rm -f /var/snap/microk8s/common/testbed-addons/ingress"]
    );
}

/// real-tools.md behaviour 1: `microk8s disable hostpath-storage` asks on stdin and exits 1 without an
/// answer; testbed names it `hostpath-storage:destroy-storage`, which does not ask.
#[tokio::test]
async fn hostpath_storage_is_disabled_without_a_question_on_stdin() {
    let (_dir, runner, p, _, update) = addons_dropped(&["dns", "hostpath-storage"], &["dns", "hostpath-storage"]).await;
    // microk8s-core-addons addons/hostpath-storage/disable: `read -p "Remove PVC storage ... (Y/N): "`, and
    // with nothing on stdin the answer is not Y.
    runner.on(
        &["microk8s", "disable", "hostpath-storage"],
        Reply::exit(1, "Remove PVC storage at /var/snap/microk8s/common/default-storage ? (Y/N): "),
    );
    runner.on(
        &["microk8s", "disable", "hostpath-storage:destroy-storage"],
        Reply::ok("Addon hostpath-storage is disabled\n"),
    );
    runner.on(&["rm"], Reply::ok(""));
    p.apply(&update, &ActionLog::discard()).await.unwrap();
    assert!(runner.transcript().contains(&"member1$ microk8s disable hostpath-storage:destroy-storage".to_owned()));
}

#[tokio::test]
async fn a_stopped_microk8s_needs_repair_and_is_started() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    inside(&runner, m1(), Some("1.35/stable"), status_stopped(), &["dns"]);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member1", true, true));
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());
    let state = observed_with_the_rest(&p, &desired).await;
    let m = state.get(&addr("microk8s.member1")).unwrap();
    assert_eq!(m.health, Health::NeedsRepair("MicroK8s is stopped; will be started".into()));
    // What testbed enabled is taken to be still on while MicroK8s cannot list its addons.
    assert_eq!(state.get(&addr("microk8s_addons.member1")).unwrap().spec["addons"], "dns");

    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let update = plan.actions().into_iter().find(|a| a.kind == Kind::Microk8s).unwrap().clone();
    assert_eq!((update.op, update.reason.as_str()), (Op::Update, "MicroK8s is stopped; will be started"));
    runner.on(&["microk8s", "start"], Reply::ok(""));
    runner.on(&["microk8s", "status", "--wait-ready"], Reply::ok("microk8s is running\n"));
    runner.on(&["mkdir"], Reply::ok(""));
    let before = runner.transcript().len();
    p.apply(&update, &ActionLog::discard()).await.unwrap();
    assert_eq!(
        runner.transcript()[before..],
        [
            "member1$ microk8s start",
            "member1$ microk8s status --wait-ready --timeout 300",
            "member1$ mkdir -p /var/snap/microk8s/current/args/certs.d/10.123.45.1:32000 /var/snap/microk8s/current/args/certs.d/localhost:32000",
            "member1$ <push /var/snap/microk8s/current/args/certs.d/10.123.45.1:32000/hosts.toml (183 bytes)>",
            "member1$ <push /var/snap/microk8s/current/args/certs.d/localhost:32000/hosts.toml (223 bytes)>",
        ]
    );
}

#[tokio::test]
async fn a_stopped_container_is_never_entered() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().extend([
        container("member1", false, true),
        // Someone else's running container that the file does not name: none of testbed's business.
        container("webserver", true, false),
    ]);
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());

    // Never started by testbed's install (an apply killed between creating the container and starting
    // it): nothing is assumed to be inside, so MicroK8s is planned as a create.
    let state = observed_with_the_rest(&p, &desired).await;
    assert!(runner.calls().iter().all(|(at, _)| *at == Where::Host), "{:#?}", runner.transcript());
    assert!(state.get(&addr("microk8s.member1")).is_none(), "{:?}", state.get(&addr("microk8s.member1")));
    assert!(state.get(&addr("microk8s_addons.member1")).is_none());

    // Once testbed has recorded its install in this very container, a stopped container's MicroK8s is
    // taken to be as the file wants, and repaired by a start.
    std::fs::create_dir_all(dir.path().join(".testbed")).unwrap();
    std::fs::write(dir.path().join(".testbed/microk8s.json"), r#"{"member1": "uuid-member1"}"#).unwrap();
    let state = observed_with_the_rest(&p, &desired).await;
    assert!(runner.calls().iter().all(|(at, _)| *at == Where::Host), "{:#?}", runner.transcript());
    let m = state.get(&addr("microk8s.member1")).unwrap();
    assert_eq!(m.spec["channel"], "1.35/stable");
    assert!(matches!(&m.health, Health::NeedsRepair(r) if r.contains("container member1 is stopped")), "{m:?}");

    // Applying anything in it refuses before running a command.
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let update = plan.actions().into_iter().find(|a| a.kind == Kind::Microk8s).unwrap().clone();
    let e = p.apply(&update, &ActionLog::discard()).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Precondition, "{e:?}");
    assert!(e.report().to_string().contains("container member1 is stopped"), "{e}", e = e.report());
    assert!(e.hint().unwrap().contains("lxc start member1"), "{e:?}");
    assert!(runner.calls().iter().all(|(at, _)| *at == Where::Host));
}

#[tokio::test]
async fn a_host_microk8s_testbed_did_not_install_is_used_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[], "");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    inside(&runner, Where::Host, Some("1.30/stable"), status_running(&["dns"]), &[]);
    let containers = Arc::new(Containers::default());
    // No marker file.
    let p = provider(&runner, &containers, &config, dir.path());
    let state = observed_with_the_rest(&p, &desired).await;
    let host = state.get(&addr("host.microk8s")).unwrap();
    assert!(matches!(&host.owner, Owner::Other(w) if w.contains("did not install")), "{host:?}");
    assert_eq!(state.get(&addr("host.addons")).unwrap().spec["addons"], "dns");
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    assert!(plan.actions().iter().all(|a| a.kind != Kind::HostMicrok8s), "never changed");
    assert!(plan.notes.iter().any(|n| n.contains("host.microk8s exists and is not testbed's")), "{:?}", plan.notes);

    // Even if asked, apply refuses.
    let mut foreign = testbed_plan::Action {
        address: addr("host.microk8s"),
        kind: Kind::HostMicrok8s,
        member: None,
        op: Op::Delete,
        reason: String::new(),
        changes: vec![],
        desired: None,
        observed: Some(host.clone()),
        cascade: None,
        replace: false,
    };
    let e = p.apply(&foreign, &ActionLog::discard()).await.unwrap_err();
    assert!(e.report().to_string().starts_with("refusing to delete host.microk8s"), "{e}", e = e.report());
    foreign.op = Op::Update;
    assert!(p.apply(&foreign, &ActionLog::discard()).await.is_err());
    assert!(!runner.transcript().iter().any(|l| l.contains("remove") || l.contains("refresh")));
}

#[tokio::test]
async fn installing_the_host_microk8s_marks_it_as_testbeds() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[], "");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    inside(&runner, Where::Host, None, status_stopped(), &[]);
    let p = provider(&runner, &Arc::new(Containers::default()), &config, dir.path());
    let state = observed_with_the_rest(&p, &desired).await;
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let create = plan.actions().into_iter().find(|a| a.kind == Kind::HostMicrok8s).unwrap().clone();
    assert_eq!(create.op, Op::Create);
    runner.on(&["snap", "wait"], Reply::ok(""));
    runner.on(&["snap", "install"], Reply::ok("microk8s (1.35/stable) v1.35.0 from Canonical✓ installed\n"));
    runner.on(&["microk8s", "status", "--wait-ready"], Reply::ok("microk8s is running\n"));
    let (log, seen) = capture();
    p.apply(&create, &log).await.unwrap();
    assert!(seen.text().contains("microk8s (1.35/stable) v1.35.0 from Canonical✓ installed"), "{}", seen.text());
    let marker = std::fs::read_to_string(dir.path().join("testbed-owner")).unwrap();
    assert_eq!(marker, "owner=testbed\nname=lab\n");

    // The next look finds it testbed's.
    inside(&runner, Where::Host, Some("1.35/stable"), status_running(&["ha-cluster"]), &[]);
    let state = observed_with_the_rest(&p, &desired).await;
    assert_eq!(state.get(&addr("host.microk8s")).unwrap().owner, Owner::Testbed);
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let what: Vec<(String, Op)> = plan.actions().iter().map(|a| (a.address.to_string(), a.op)).collect();
    assert_eq!(what, [("host.addons".to_owned(), Op::Create)]);
}

#[tokio::test]
async fn a_wait_that_times_out_names_the_member_and_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member2", 16442)], "\"dns\"");
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    inside(&runner, Where::Member("member2".into()), None, status_stopped(), &[]);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member2", true, true));
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());
    let state = observed_with_the_rest(&p, &desired).await;
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let create = plan.actions().into_iter().find(|a| a.kind == Kind::Microk8s).unwrap().clone();
    runner.on(&["snap", "wait"], Reply::ok(""));
    runner.on(&["snap", "install"], Reply::ok("microk8s (1.35/stable) v1.35.0 from Canonical✓ installed\n"));
    // What status prints when --wait-ready gives up.
    runner.on(
        &["microk8s", "status", "--wait-ready"],
        Reply::Output(testbed_command::Output {
            code: 1,
            stdout: "microk8s is not running. Use microk8s inspect for a deeper inspection.\n".into(),
            stderr: String::new(),
        }),
    );
    let e = p.apply(&create, &ActionLog::discard()).await.unwrap_err();
    let text = e.report().to_string();
    assert!(text.starts_with("microk8s.member2: MicroK8s in member2 was not ready within 300 s"), "{text}");
    assert!(text.contains("microk8s is not running. Use microk8s inspect"), "{text}");
    assert_eq!(
        e.hint(),
        Some("see what holds it up: lxc exec member2 -- microk8s inspect; then run testbed apply again")
    );
}

#[tokio::test]
async fn an_exec_that_fails_holds_the_layer_instead_of_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    runner.on_at(
        m1(),
        &["snap"],
        Reply::Error(testbed_command::CommandError::Member {
            program: "snap".into(),
            member: "member1".into(),
            reason: "LXD lost the connection".into(),
        }),
    );
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member1", true, true));
    let p = provider(&runner, &containers, &config, dir.path());
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let wanted: Vec<_> = desired.resources.values().cloned().collect();
    let e = p.observe(&wanted).await.unwrap_err();
    assert!(e.kind() == ErrorKind::StateUnknown, "{e:?}");
    assert!(e.report().to_string().contains("member1"), "{e}", e = e.report());
}

/// LXD not installed yet (a fresh host): there are no containers, so no MicroK8s in them; the host's own
/// MicroK8s is still observed, and the members' MicroK8s is planned like the containers it lives in.
#[tokio::test]
async fn no_lxd_daemon_means_no_member_microk8s_not_an_unknown_state() {
    struct NoDaemon;
    #[async_trait::async_trait]
    impl testbed_provider::ContainerView for NoDaemon {
        async fn containers(&self) -> Result<Vec<testbed_provider::ContainerFacts>, ProviderError> {
            Err(ProviderError::unavailable("LXD is not installed or not running"))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let runner = ScriptedRunner::new();
    host_ok(&runner);
    let p = testbed_microk8s::Microk8sProvider::new(
        Arc::new(runner.clone()),
        Arc::new(NoDaemon),
        testbed_steps::Context::new(&config),
        config.file.name.clone(),
    )
    .with_host_owner_marker(dir.path().join("testbed-owner"));
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let wanted: Vec<_> = desired.resources.values().cloned().collect();
    let seen = p.observe(&wanted).await.expect("an absent LXD is an observation");
    let addresses: Vec<String> = seen.resources.iter().map(|o| o.address.to_string()).collect();
    assert!(addresses.contains(&"host.microk8s".to_owned()), "{addresses:?}");
    assert!(addresses.iter().all(|a| !a.contains("member1")), "{addresses:?}");
    assert!(runner.calls().iter().all(|(at, _)| *at == Where::Host), "no exec into a container: {:?}", runner.calls());
}
