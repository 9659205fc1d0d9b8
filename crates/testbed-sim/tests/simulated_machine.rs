//! Behaviour of the simulated machine that a user of `testbed --simulate` would notice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testbed_config::Config;
use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{Action, Address, Health, Kind, Layer, ObservedState, Op, Owner, Plan, PlanError, Resource};
use testbed_provider::{ActionLog, ActionRunner, ErrorKind, LogEntry, ProviderError};
use testbed_sim::world::{ClusterRecord, SyncMode};
use testbed_sim::{SimError, SimMachine, SimOptions};

/// Two members, one of each join mode, with a registry image, a side-loaded image and an application
/// proxy, so that every resource kind takes part.
const TWO_MEMBERS: &str = r#"
[[members]]
name = "member1"
api_port = 16441
cpu = "2"

[[members]]
name = "member2"
api_port = 16442
join_mode = "pull"

[[images]]
source = "docker.io/library/nginx:1.27"

[[images]]
name = "busybox"
source = "docker.io/library/busybox:1.36"
sideload = true
archive = "busybox-1.36.tar"
members = ["member1"]

[[proxies]]
name = "web"
member = "member1"
host_port = 18080
target = "tcp:127.0.0.1:30080"
"#;

/// The default testbed: three members, push mode.
const THREE_MEMBERS: &str = r#"
[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442

[[members]]
name = "member3"
api_port = 16444
"#;

/// The file `text` as if it were `dir/testbed.toml` (the members' kubeconfigs go under `dir`).
fn config_in(dir: &Path, text: &str) -> Config {
    match testbed_config::parse(&dir.join("testbed.toml"), text) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e:?}"),
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    path: PathBuf,
    machine: SimMachine,
}

fn bench_with(options: SimOptions) -> Bench {
    let dir = lab_dir();
    let path = dir.path().join("state").join("sim-state.json");
    // The catalogue's context the real providers run their steps with (the same for every file here).
    let cx = testbed_steps::Context::new(&config_in(dir.path(), TWO_MEMBERS));
    let machine = SimMachine::open(&path, options).expect("a missing file is an empty machine").with_context(cx);
    Bench { _dir: dir, path, machine }
}

impl Bench {
    /// The file `text`, beside this machine.
    fn config(&self, text: &str) -> Config {
        config_in(self._dir.path(), text)
    }
}

fn bench() -> Bench {
    bench_with(SimOptions::instant())
}

fn wanted(d: &DesiredState) -> Vec<Resource> {
    d.resources.values().cloned().collect()
}

/// Desired state and observation as the CLI makes them: build, observe what that wants, build again with
/// the addresses observation found.
async fn look(machine: &SimMachine, config: &Config) -> (DesiredState, ObservedState) {
    let first = desired::build(config, &ObservedState::default());
    let observed = machine.providers().observe(&wanted(&first)).await;
    let desired = desired::build(config, &observed);
    (desired, observed)
}

async fn plan_for(machine: &SimMachine, config: &Config) -> Plan {
    let (desired, observed) = look(machine, config).await;
    match testbed_plan::plan(&desired, &observed) {
        Ok(p) => p,
        Err(e) => panic!("planning failed: {e}"),
    }
}

async fn run(machine: &SimMachine, action: &Action) -> Result<(), ProviderError> {
    machine.providers().run(action, &ActionLog::discard()).await
}

/// Applies the plan's actions in order, one at a time, skipping `skip`; stops before the first action
/// matching `stop` and returns it.
async fn apply_until(
    machine: &SimMachine,
    plan: &Plan,
    stop: impl Fn(&Action) -> bool,
    skip: impl Fn(&Action) -> bool,
) -> Option<Action> {
    for a in plan.actions() {
        if stop(a) {
            return Some(a.clone());
        }
        if !a.runs() || skip(a) {
            continue;
        }
        if let Err(e) = run(machine, a).await {
            panic!("{} {} failed: {e} (hint: {:?})", a.op.name(), a.address, e.hint(), e = e.report());
        }
    }
    None
}

async fn apply_all(machine: &SimMachine, plan: &Plan) {
    apply_until(machine, plan, |_| false, |_| false).await;
}

fn at(address: &str) -> impl Fn(&Action) -> bool + '_ {
    move |a: &Action| a.address.as_str() == address
}

fn nothing(_: &Action) -> bool {
    false
}

fn expect_precondition(r: Result<(), ProviderError>) -> (String, String) {
    match r {
        Err(e) if e.kind() == ErrorKind::Precondition => {
            (e.report().to_string(), e.hint().unwrap_or_default().to_owned())
        }
        other => panic!("expected a precondition failure, got {other:?}"),
    }
}

fn recording_log() -> (ActionLog, Arc<Mutex<Vec<LogEntry>>>) {
    let entries = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&entries);
    let log = ActionLog::new(move |e| sink.lock().expect("log lock").push(e));
    (log, entries)
}

#[tokio::test]
async fn microk8s_cannot_be_installed_into_a_stopped_container() {
    let b = bench();
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let install = apply_until(&b.machine, &plan, at("microk8s.member1"), nothing).await.expect("in the plan");
    b.machine.edit(|w| w.stop_lxd_instance("member1")).expect("saved").then_some(()).expect("member1 exists");

    let (message, hint) = expect_precondition(run(&b.machine, &install).await);
    assert!(message.contains("microk8s.member1") && message.contains("container member1 is stopped"), "{message}");
    assert!(hint.contains("lxc start member1"), "{hint}");
    assert!(b.machine.world().inside.get("member1").and_then(|i| i.microk8s.as_ref()).is_none());
}

#[tokio::test]
async fn karmadactl_init_before_the_images_fails_after_its_wait_and_the_pods_come_up_once_they_are_there() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    let is_image = |a: &Action| a.kind == Kind::Image;
    let init = apply_until(&b.machine, &plan, at("karmada.control_plane"), is_image).await.expect("in the plan");

    // The pods cannot pull their images: init waits for them, then fails with what the pods say.
    match run(&b.machine, &init).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let message = e.report().to_string();
            assert!(message.contains("Back-off pulling image \"localhost:32000/"), "{message}")
        }
        other => panic!("expected init to fail, got {other:?}"),
    }
    // It got as far as the namespace, which testbed labelled: the half-made control plane is testbed's.
    let world = b.machine.world();
    let cp = world.control_plane().expect("init created the control plane's objects");
    assert_eq!(cp.namespace_labels.get("testbed/owner").map(String::as_str), Some("testbed"));

    // With the images copied, the pods come up and the next plan only waits for them.
    for image in plan.actions().into_iter().filter(|a| a.kind == Kind::Image) {
        run(&b.machine, image).await.expect("image copied");
    }
    let again = plan_for(&b.machine, &cfg).await;
    let cp_action = again.actions().into_iter().find(|a| a.address.as_str() == "karmada.control_plane");
    assert!(cp_action.is_none_or(|a| a.op == Op::Update), "{cp_action:?}");
    if let Some(a) = cp_action {
        run(&b.machine, a).await.expect("the control plane is available");
    }
}

#[tokio::test]
async fn join_before_the_control_plane_fails() {
    let b = bench();
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let join = apply_until(&b.machine, &plan, at("karmada_member.member1"), at("karmada.control_plane"))
        .await
        .expect("planned");

    let (message, hint) = expect_precondition(run(&b.machine, &join).await);
    assert!(
        message.contains("karmada_member.member1") && message.contains("control plane is not installed"),
        "{message}"
    );
    assert!(hint.contains("karmada.control_plane"), "{hint}");
}

#[tokio::test]
async fn join_refuses_a_name_someone_else_registered_with_karmadactls_own_message() {
    let b = bench();
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let join = apply_until(&b.machine, &plan, at("karmada_member.member1"), nothing).await.expect("planned");

    // Someone else registers a cluster named member1 first.
    b.machine
        .edit(|w| {
            let cp = w.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()).expect("control plane");
            cp.etcd.clusters.insert(
                "member1".into(),
                ClusterRecord {
                    sync_mode: SyncMode::Push,
                    api_endpoint: None,
                    id: "someone-elses".into(),
                    labels: Default::default(),
                    appears_at_ms: None,
                    taints: Vec::new(),
                },
            );
        })
        .expect("saved");
    match run(&b.machine, &join).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let (message, hint) = (e.report().to_string(), e.hint().map(str::to_owned));
            assert!(message.contains("or the cluster name member1 has been registered"), "{message}");
            assert!(hint.unwrap_or_default().contains("registered already"));
        }
        other => panic!("expected karmadactl join to fail, got {other:?}"),
    }
    let world = b.machine.world();
    let cp = world.control_plane().expect("control plane");
    assert_eq!(cp.etcd.clusters["member1"].id, "someone-elses", "the other cluster is left as it was");
    assert!(cp.etcd.clusters["member1"].labels.is_empty(), "and never labelled as testbed's");
}

#[tokio::test]
async fn an_injected_failure_happens_once_across_runs() {
    let options = SimOptions::instant().failing_once(["lxd_network.lxdbr0"]);
    let b = bench_with(options.clone());
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let network = apply_until(&b.machine, &plan, at("lxd_network.lxdbr0"), nothing).await.expect("planned");

    match run(&b.machine, &network).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let message = e.report().to_string();
            assert!(message.contains("simulated failure injected by TESTBED_SIM_FAIL"), "{message}")
        }
        other => panic!("expected the injected failure, got {other:?}"),
    }
    assert!(b.machine.world().lxd_daemon.networks.is_empty());

    // The next run of testbed opens the same state file with the same environment.
    let again = SimMachine::open(&b.path, options)
        .expect("state file reads back")
        .with_context(testbed_steps::Context::new(&b.config(TWO_MEMBERS)));
    run(&again, &network).await.expect("the failure happened once already");
    assert!(again.world().lxd_daemon.networks.contains_key("lxdbr0"));
    assert!(again.world().consumed_failures.contains("lxd_network.lxdbr0"));
}

#[test]
fn a_damaged_state_file_is_an_error_that_says_what_to_do() {
    let dir = lab_dir();
    let path = dir.path().join("sim-state.json");
    let cases = [
        ("{ this is not json", "not valid JSON"),
        (r#"{"format": 2, "world": {"nothing": true}}"#, "unexpected content"),
        (r#"{"hello": "world"}"#, "no \"format\" field"),
        ("", "not valid JSON"),
    ];
    for (text, why) in cases {
        std::fs::write(&path, text).expect("write");
        match SimMachine::open(&path, SimOptions::instant()) {
            Err(e @ SimError::Corrupted { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains(&path.display().to_string()), "{shown}");
                assert!(shown.contains(why), "{shown}");
                assert!(shown.contains("delete it to start from an empty simulated machine"), "{shown}");
            }
            other => panic!("{text:?}: expected a corrupted-file error, got {other:?}"),
        }
    }
    std::fs::write(&path, r#"{"format": 99, "world": {}}"#).expect("write");
    assert!(matches!(SimMachine::open(&path, SimOptions::instant()), Err(SimError::UnsupportedFormat { .. })));
    // A directory where the file should be cannot be read.
    assert!(matches!(SimMachine::open(dir.path(), SimOptions::instant()), Err(SimError::Read { .. })));
}

#[tokio::test]
async fn the_state_file_round_trips_and_says_it_is_simulated() {
    let b = bench();
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    apply_until(&b.machine, &plan, at("lxd_instance.member1"), nothing).await;
    let text = std::fs::read_to_string(&b.path).expect("saved after each step");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(value["format"] == 2 && value["note"].as_str().is_some_and(|n| n.contains("SIMULATED")), "{text}");
    let reopened = SimMachine::open(&b.path, SimOptions::instant()).expect("reads back");
    assert_eq!(reopened.world(), b.machine.world());
}

#[tokio::test]
async fn a_container_testbed_did_not_create_is_someone_elses() {
    let b = bench();
    b.machine.edit(|w| w.launch_foreign_instance("member2", "lxdbr0", "10.123.45.99")).expect("saved");
    let cfg = b.config(TWO_MEMBERS);
    let (desired, observed) = look(&b.machine, &cfg).await;

    let found = observed.get(&Address::new(Kind::LxdInstance, &["member2"])).expect("observed");
    assert_eq!(
        found.owner,
        Owner::Other("a container named member2 exists that testbed did not create (no user.testbed.owner key)".into())
    );
    assert!(observed.bridge_addresses.contains(&"10.123.45.99".parse().expect("ip")));
    assert!(matches!(testbed_plan::plan(&desired, &observed), Err(PlanError::Conflicts(_))));

    // Defence in depth: the machine refuses to delete it even when asked.
    let delete = Action {
        address: found.address.clone(),
        kind: Kind::LxdInstance,
        member: Some("member2".into()),
        op: Op::Delete,
        reason: "test".into(),
        changes: vec![],
        desired: None,
        observed: Some(found.clone()),
        cascade: None,
        replace: false,
    };
    let (message, _) = expect_precondition(run(&b.machine, &delete).await);
    assert!(message.contains("refusing to delete lxd_instance.member2"), "{message}");
    assert!(b.machine.world().lxd_daemon.instances.contains_key("member2"));
}

/// A machine at real-magnitude speed (under paused time) whose apply of TWO_MEMBERS ran up to `address` and
/// was stopped there, as a killed apply would be, once the daemon had an operation running for it: the
/// operation goes on without its client, as LXD's do.
async fn stopped_at(address: &str) -> (Bench, Config) {
    let b = bench_with(SimOptions { speed: 1.0, ..SimOptions::instant() });
    let config = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &config).await;
    let action = apply_until(&b.machine, &plan, at(address), nothing).await.expect("planned");
    let client = b.machine.lxd_provider().expect("daemon").client().clone();
    let runner = b.machine.clone();
    let apply = tokio::spawn(async move { run(&runner, &action).await });
    while !client.operations().await.expect("operations").iter().any(|op| op.in_progress()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    apply.abort();
    (b, config)
}

/// An apply stopped while LXD still adds a member's proxy: the next look waits for that operation and sees
/// the proxy, so the next plan does not add it again (which real LXD refuses, "A matching non-reusable
/// operation has now succeeded", with the port then held by that very proxy).
#[tokio::test(start_paused = true)]
async fn the_next_plan_waits_for_what_a_stopped_apply_left_running_in_lxd() {
    let (b, config) = stopped_at("proxy.member1.api").await;

    let again = plan_for(&b.machine, &config).await;
    let redone: Vec<&str> = again.actions().into_iter().filter(|a| a.runs()).map(|a| a.address.as_str()).collect();
    assert!(
        !redone.contains(&"proxy.member1.api"),
        "the proxy the stopped apply was adding is planned again: {redone:?}"
    );
    assert!(b.machine.world().lxd_daemon.instances["member1"].devices.contains_key("api"));
}

/// Operations that outlast the wait leave the LXD layer unknown, not missing: nothing of it is planned.
#[tokio::test(start_paused = true)]
async fn lxd_operations_that_outlast_the_wait_leave_the_layer_unknown() {
    let (b, config) = stopped_at("lxd_instance.member1").await;

    let lxd = b.machine.lxd_provider().expect("daemon").with_settle_limit(Duration::from_secs(1));
    let first = desired::build(&config, &ObservedState::default());
    let e = testbed_provider::Provider::observe(&lxd, &wanted(&first)).await.expect_err("still creating member1");
    assert_eq!(e.kind(), ErrorKind::StateUnknown, "{e:?}");
    let message = e.report().to_string();
    assert!(message.contains("still carrying out operations on member1 after 1s"), "{message}");
    assert!(e.hint().is_some_and(|h| h.contains("unknown until they finish")), "{e:?}");
}

#[tokio::test]
async fn a_taken_host_port_fails_like_the_real_step() {
    let b = bench();
    b.machine.edit(|w| w.host.foreign_ports.insert(16441)).expect("saved");
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;

    let proxy = apply_until(&b.machine, &plan, at("proxy.member1.api"), nothing).await.expect("planned");
    // The real LXD provider over the simulated daemon: LXD's forkproxy cannot bind, and the provider names
    // the setting to change.
    let e = run(&b.machine, &proxy).await.expect_err("port taken");
    let message = e.report().to_string();
    assert!(message.contains("host port 127.0.0.1:16441 is already in use by another program"), "{message}");
    assert!(message.contains("address already in use"), "{message}");
    assert!(e.hint().is_some_and(|h| h.contains("api_port")), "{e:?}");

    let b = bench();
    b.machine.edit(|w| w.host.foreign_ports.insert(32443)).expect("saved");
    let init = apply_until(&b.machine, &plan, at("karmada.control_plane"), nothing).await;
    let message = run(&b.machine, &init.expect("planned")).await.expect_err("port taken").report().to_string();
    assert!(message.contains("32443") && message.contains("already allocated"), "{message}");
}

#[tokio::test]
async fn steps_log_the_real_commands_without_secrets() {
    let b = bench();
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let register = apply_until(&b.machine, &plan, at("karmada_member.member2"), nothing).await.expect("planned");
    let (log, entries) = recording_log();
    b.machine.providers().run(&register, &log).await.expect("registered");
    let entries = entries.lock().expect("log").clone();
    let commands: Vec<&Vec<String>> =
        entries.iter().filter_map(|e| if let LogEntry::Command(argv) = e { Some(argv) } else { None }).collect();
    let register_cmd = commands.iter().find(|c| c.get(2).map(String::as_str) == Some("register")).expect("logged");
    assert!(register_cmd.contains(&"<secret:join-token>".to_owned()), "{register_cmd:?}");
    // The token never reaches the log, in the command or in what token create printed.
    let token =
        b.machine.world().control_plane().and_then(|cp| cp.etcd.tokens.iter().next().cloned()).expect("a token");
    assert!(!format!("{entries:?}").contains(&token), "{entries:?}");
    assert!(register_cmd.contains(&"--cluster-name".to_owned()), "{register_cmd:?}");
    assert!(b.machine.world().inside.get("member2").and_then(|i| i.microk8s.as_ref()).is_some_and(|m| m.karmada_agent));

    // Deleting a running container stops it first, as LXD requires.
    let delete = Action {
        address: Address::new(Kind::LxdInstance, &["member1"]),
        kind: Kind::LxdInstance,
        member: Some("member1".into()),
        op: Op::Delete,
        reason: "test".into(),
        changes: vec![],
        desired: None,
        observed: None,
        cascade: None,
        replace: false,
    };
    let (log, entries) = recording_log();
    b.machine.providers().run(&delete, &log).await.expect("deleted");
    let calls: Vec<(String, String)> = entries
        .lock()
        .expect("log")
        .iter()
        .filter_map(|e| match e {
            LogEntry::Api { method, path } => Some((method.clone(), path.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            ("PUT".to_owned(), "/1.0/instances/member1/state {action: stop}".to_owned()),
            ("DELETE".to_owned(), "/1.0/instances/member1".to_owned())
        ]
    );
    assert!(!b.machine.world().lxd_daemon.instances.contains_key("member1"));
}

#[tokio::test]
async fn apply_converges_and_destroy_leaves_only_retained_host_settings() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    assert!(plan.summary().create > 20, "{:?}", plan.summary());
    apply_all(&b.machine, &plan).await;

    let (desired, observed) = look(&b.machine, &cfg).await;
    let again = testbed_plan::plan(&desired, &observed).expect("plans");
    let left: Vec<String> =
        again.actions().iter().map(|a| format!("{} {} ({})", a.op.name(), a.address, a.reason)).collect();
    assert!(again.is_empty(), "a converged machine still plans: {left:#?}");
    assert!(observed.unobservable.is_empty());
    assert_eq!(observed.bridge_addresses.len(), 2);

    // Everything the file describes is owned by testbed.
    for r in desired.resources.values() {
        let o = observed.get(&r.address).unwrap_or_else(|| panic!("{} not observed", r.address));
        assert_eq!(o.owner, Owner::Testbed, "{}", r.address);
    }

    // Destroy.
    let (_, observed) = look(&b.machine, &cfg).await;
    let destroy = testbed_plan::plan(&DesiredState::nothing(), &observed).expect("plans");
    assert!(destroy.actions().iter().all(|a| a.op == Op::Delete));
    assert!(destroy.actions().iter().any(|a| !a.runs()), "things inside containers go with them");
    apply_all(&b.machine, &destroy).await;

    let world = b.machine.world();
    let observed = b.machine.providers().observe(&[]).await;
    let owned: BTreeSet<String> =
        observed.resources.values().filter(|o| o.owner == Owner::Testbed).map(|o| o.address.to_string()).collect();
    assert_eq!(owned, BTreeSet::from(["host.packages".to_owned(), "host.sysctl".to_owned()]));
    assert!(world.lxd_daemon.instances.is_empty());
    // Destroying again has nothing to do.
    let (_, observed) = look(&b.machine, &cfg).await;
    assert!(testbed_plan::plan(&DesiredState::nothing(), &observed).expect("plans").is_empty());
}

#[tokio::test]
async fn stopped_things_are_observed_as_needing_repair_and_an_update_starts_them() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    b.machine
        .edit(|w| {
            w.stop_lxd_instance("member1");
            if let Some(m) = w.inside.get_mut("member2").and_then(|i| i.microk8s.as_mut()) {
                m.running = false;
            }
        })
        .expect("saved");

    let (desired, observed) = look(&b.machine, &cfg).await;
    let health = |a: &str| observed.resources.get(&Address::parse(a).expect("address")).map(|o| o.health.clone());
    assert_eq!(
        health("lxd_instance.member1"),
        Some(Health::NeedsRepair("container is stopped; will be started".into()))
    );
    assert_eq!(health("microk8s.member2"), Some(Health::NeedsRepair("MicroK8s is stopped; will be started".into())));

    let repair = testbed_plan::plan(&desired, &observed).expect("plans");
    let ops: Vec<(String, Op)> = repair.actions().iter().map(|a| (a.address.to_string(), a.op)).collect();
    // Nothing can be seen inside a stopped container: the real MicroK8s provider reports its MicroK8s as
    // needing repair too, so that it is started (and waited for) once the container runs. Karmada reports
    // both Clusters not Ready (member1 unreachable, member2's agent silent): the repair waits for them.
    assert_eq!(
        ops,
        vec![
            ("lxd_instance.member1".into(), Op::Update),
            ("microk8s.member1".into(), Op::Update),
            ("karmada_member.member1".into(), Op::Update),
            ("microk8s.member2".into(), Op::Update),
            ("karmada_member.member2".into(), Op::Update)
        ]
    );
    apply_all(&b.machine, &repair).await;
    let (desired, observed) = look(&b.machine, &cfg).await;
    assert!(testbed_plan::plan(&desired, &observed).expect("plans").is_empty());
}

#[tokio::test]
async fn a_changed_member_image_replaces_what_lives_in_the_container() {
    let b = bench();
    apply_all(&b.machine, &plan_for(&b.machine, &b.config(TWO_MEMBERS)).await).await;
    let moved = TWO_MEMBERS.replacen("cpu = \"2\"", "cpu = \"2\"\nimage = \"ubuntu:24.04\"", 1);
    let cfg = b.config(&moved);
    let plan = plan_for(&b.machine, &cfg).await;
    let op = |a: &str| plan.actions().iter().find(|x| x.address.as_str() == a).map(|x| x.shown_op());
    assert_eq!(op("lxd_instance.member1"), Some(Op::Replace));
    assert_eq!(op("microk8s.member1"), Some(Op::Replace));
    assert_eq!(op("karmada_member.member1"), Some(Op::Replace));
    apply_all(&b.machine, &plan).await;
    let (desired, observed) = look(&b.machine, &cfg).await;
    assert!(testbed_plan::plan(&desired, &observed).expect("plans").is_empty());
    let member1 = b.machine.world().lxd_daemon.instances.get("member1").cloned().expect("re-created");
    assert_eq!(member1.config.get("user.testbed.image").map(String::as_str), Some("ubuntu:24.04"));
}

#[tokio::test(start_paused = true)]
async fn steps_take_their_real_time_scaled_by_the_speed() {
    let b = bench_with(SimOptions { speed: 1.0, ..SimOptions::instant() });
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let packages = plan.actions().into_iter().find(|a| a.address.as_str() == "host.packages").expect("planned").clone();
    let providers = b.machine.providers();
    // The real host provider, over the simulated host's programs: each program takes its real time.
    let provider = providers.get(Layer::Host).expect("the host layer's provider");
    assert!(!provider.simulated());
    let start = tokio::time::Instant::now();
    provider.apply(&packages, &ActionLog::discard()).await.expect("installed");
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(30) && took <= Duration::from_secs(120), "about a minute: {took:?}");

    // A step whose preconditions fail fails at once.
    let init =
        plan.actions().into_iter().find(|a| a.address.as_str() == "karmada.control_plane").expect("planned").clone();
    let start = tokio::time::Instant::now();
    assert!(b.machine.providers().run(&init, &ActionLog::discard()).await.is_err());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// Runs the plan as an executor would: every action as soon as the actions it depends on are done.
async fn apply_concurrently(machine: &SimMachine, plan: &Plan) {
    let providers = machine.providers();
    let mut pending: Vec<(Action, BTreeSet<Address>)> = plan
        .order()
        .into_iter()
        .map(|n| (plan.graph[n].clone(), plan.depends_on(n).into_iter().cloned().collect()))
        .collect();
    let mut done: BTreeSet<Address> = BTreeSet::new();
    let mut running = tokio::task::JoinSet::new();
    loop {
        let (ready, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, deps)| deps.is_subset(&done));
        pending = rest;
        for (action, _) in ready {
            let p = providers.clone();
            running.spawn(async move {
                let r = if action.runs() { p.run(&action, &ActionLog::discard()).await } else { Ok(()) };
                (action, r)
            });
        }
        let Some(joined) = running.join_next().await else { break };
        let (action, result) = joined.expect("task");
        if let Err(e) = result {
            panic!("{} failed: {e}", action.address, e = e.report());
        }
        done.insert(action.address);
    }
    assert!(pending.is_empty(), "actions never became ready");
}

#[tokio::test(start_paused = true)]
async fn the_default_testbed_takes_minutes_of_real_time_and_seconds_at_the_default_speed() {
    let b = bench_with(SimOptions { speed: 1.0, ..SimOptions::instant() });
    let cfg = b.config(THREE_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    let start = tokio::time::Instant::now();
    apply_concurrently(&b.machine, &plan).await;
    let critical_path = start.elapsed();
    let (desired, observed) = look(&b.machine, &cfg).await;
    assert!(testbed_plan::plan(&desired, &observed).expect("plans").is_empty());

    assert!(critical_path > Duration::from_secs(300) && critical_path < Duration::from_secs(600), "{critical_path:?}");
    let at_default = SimOptions::default().scaled(critical_path);
    assert!(at_default < Duration::from_secs(6), "{at_default:?}");
    println!("default testbed: {critical_path:?} of real time, {at_default:?} at the default speed");
}

#[tokio::test]
async fn someone_elses_bridge_and_pool_are_used_as_they_are_and_never_changed() {
    let b = bench();
    b.machine
        .edit(|w| {
            use testbed_sim::lxd_daemon::state::{Network, StoragePool};
            w.install_lxd_by_hand();
            w.lxd_daemon.networks.insert(
                "lxdbr0".into(),
                Network {
                    kind: "bridge".into(),
                    description: String::new(),
                    config: [("ipv4.address".to_owned(), "10.123.45.1/24".to_owned())].into_iter().collect(),
                },
            );
            w.lxd_daemon.storage_pools.insert(
                "default".into(),
                StoragePool { driver: "zfs".into(), description: String::new(), config: Default::default() },
            );
        })
        .expect("saved");
    let cfg = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    assert!(plan.find("lxd_network.lxdbr0").is_none() && plan.find("lxd_storage_pool.default").is_none());
    assert!(plan.notes.iter().any(|n| n.contains("lxd_storage_pool.default")), "{:?}", plan.notes);
    apply_all(&b.machine, &plan).await;
    let (desired, observed) = look(&b.machine, &cfg).await;
    assert!(testbed_plan::plan(&desired, &observed).expect("plans").is_empty());

    // Asked anyway, the machine refuses to change someone else's bridge.
    let network = observed.get(&Address::new(Kind::LxdNetwork, &["lxdbr0"])).expect("observed").clone();
    let update = Action {
        address: network.address.clone(),
        kind: Kind::LxdNetwork,
        member: None,
        op: Op::Update,
        reason: "test".into(),
        changes: vec![],
        desired: desired.resources.get(&network.address).cloned(),
        observed: Some(network),
        cascade: None,
        replace: false,
    };
    let (message, _) = expect_precondition(run(&b.machine, &update).await);
    assert!(message.contains("refusing to change lxd_network.lxdbr0"), "{message}");

    // Destroy leaves them in place.
    let destroy = testbed_plan::plan(&DesiredState::nothing(), &observed).expect("plans");
    apply_all(&b.machine, &destroy).await;
    let world = b.machine.world();
    assert!(world.lxd_daemon.networks.contains_key("lxdbr0") && world.lxd_daemon.storage_pools.contains_key("default"));
}

#[tokio::test]
async fn a_membership_whose_control_plane_is_gone_has_nothing_to_unjoin() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    let (_, observed) = look(&b.machine, &cfg).await;
    let delete = |address: &str| delete_of(&observed, address);
    // Unjoin talks to the Karmada API server: not while the host MicroK8s is stopped.
    b.machine.edit(|w| w.host.microk8s.as_mut().map(|m| m.running = false)).expect("saved");
    match run(&b.machine, &delete("karmada_member.member1")).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let (message, hint) = (e.report().to_string(), e.hint().map(str::to_owned));
            assert!(message.contains("https://10.123.45.1:32443 is unreachable"), "{message}");
            assert!(hint.unwrap_or_default().contains("once the Karmada API answers"));
        }
        other => panic!("expected the unjoin to fail, got {other:?}"),
    }
    b.machine.edit(|w| w.host.microk8s.as_mut().map(|m| m.running = true)).expect("saved");

    run(&b.machine, &delete("karmada.control_plane")).await.expect("deinit");
    let (log, entries) = recording_log();
    b.machine.providers().run(&delete("karmada_member.member1"), &log).await.expect("nothing to do");
    let entries = entries.lock().expect("log").clone();
    assert!(entries.iter().all(|e| !matches!(e, LogEntry::Command(_))), "{entries:?}");
    assert!(entries.iter().any(|e| matches!(e, LogEntry::Note(n) if n.contains("nothing to unjoin"))), "{entries:?}");
}

/// The state file holds the simulated clusters' keys: it is its owner's alone, like any file of credentials.
#[tokio::test]
async fn the_state_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let b = bench();
    apply_all(&b.machine, &plan_for(&b.machine, &b.config(TWO_MEMBERS)).await).await;
    let text = std::fs::read_to_string(&b.path).expect("saved");
    assert!(text.contains("\"pki\""), "the clusters' keys are in it");
    let mode = std::fs::metadata(&b.path).expect("saved").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

// -------------------------------------------------------------------------------------------------
// Karmada's behaviours (real-tools.md, "Behaviours that break naive automation"), reproduced by the
// simulated karmadactl and API servers and survived by the real Karmada provider.
// -------------------------------------------------------------------------------------------------

/// The delete of `address`, as observed.
fn delete_of(observed: &ObservedState, address: &str) -> Action {
    let o = observed.get(&Address::parse(address).expect("address")).expect("observed").clone();
    Action {
        address: o.address.clone(),
        kind: o.kind,
        member: o.member.clone(),
        op: Op::Delete,
        reason: "test".into(),
        changes: vec![],
        desired: None,
        observed: Some(o),
        cascade: None,
        replace: false,
    }
}

fn host_file(b: &Bench, path: &str) -> PathBuf {
    testbed_sim::host_root::under(&testbed_sim::host_root::root_for(&b.path), path)
}

/// Behaviours 3 and 9: `register` returns before the agent has created its Cluster; testbed waits for it
/// before labelling it, and the Cluster's endpoint is the member's bridge address.
#[tokio::test]
async fn a_pull_members_cluster_appears_after_register_returns_and_is_labelled_once_it_is_there() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    let register = apply_until(&b.machine, &plan, at("karmada_member.member2"), nothing).await.expect("planned");

    // The same machine at a speed where the agent takes a moment (5 s of real time) to create its Cluster.
    let slow = SimMachine::open(&b.path, SimOptions { speed: 0.02, ..SimOptions::instant() })
        .expect("reopens")
        .with_context(testbed_steps::Context::new(&cfg));
    let (log, entries) = recording_log();
    slow.providers().run(&register, &log).await.expect("registered and labelled");
    let entries = entries.lock().expect("log").clone();
    assert!(
        entries.iter().any(|e| matches!(e, LogEntry::Progress(p) if p.contains("to create its Cluster"))),
        "testbed waited for the agent's Cluster: {entries:?}"
    );
    let world = slow.world();
    let cluster = &world.control_plane().expect("control plane").etcd.clusters["member2"];
    assert_eq!(cluster.sync_mode, SyncMode::Pull);
    assert!(cluster.appears_at_ms.is_some(), "the agent created it, not register");
    assert_eq!(cluster.labels.get("testbed/owner").map(String::as_str), Some("testbed"));
    let endpoint = cluster.api_endpoint.as_deref().unwrap_or_default();
    assert!(endpoint.starts_with("https://10.123.45.") && endpoint.ends_with(":16443"), "{endpoint}");
}

/// Behaviour 4: `register` exits 0 when its pre-flight fails; testbed reports the failure with its lines.
#[tokio::test]
async fn a_register_whose_preflight_failed_is_reported_as_a_failure() {
    let b = bench();
    let plan = plan_for(&b.machine, &b.config(TWO_MEMBERS)).await;
    let register = apply_until(&b.machine, &plan, at("karmada_member.member2"), nothing).await.expect("planned");
    // An agent of an earlier registration is still in member2.
    b.machine
        .edit(|w| w.inside.get_mut("member2").and_then(|i| i.microk8s.as_mut()).map(|m| m.karmada_agent = true))
        .expect("saved");
    match run(&b.machine, &register).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let (message, hint) = (e.report().to_string(), e.hint().map(str::to_owned));
            assert!(message.contains("exited 0 but its pre-flight failed"), "{message}");
            assert!(message.contains("karmada-system/karmada-agent Deployment already exists"), "{message}");
            assert!(hint.unwrap_or_default().contains("karmadactl unregister member2"));
        }
        other => panic!("expected the pre-flight failure, got {other:?}"),
    }
    assert!(!b.machine.world().control_plane().expect("control plane").etcd.clusters.contains_key("member2"));
}

/// Behaviour 6: `unregister` deletes `/etc/karmada/pki/ca.crt` where it runs, the CA init wrote there;
/// testbed puts it back.
#[tokio::test]
async fn unregister_leaves_the_control_planes_ca_in_place() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    let ca = host_file(&b, "/etc/karmada/pki/ca.crt");
    let before = std::fs::read_to_string(&ca).expect("init wrote the CA");

    let (log, entries) = recording_log();
    b.machine
        .providers()
        .run(&delete_of(&look(&b.machine, &cfg).await.1, "karmada_member.member2"), &log)
        .await
        .expect("unregistered");
    assert_eq!(std::fs::read_to_string(&ca).ok().as_deref(), Some(before.as_str()), "the CA is the same");
    let entries = entries.lock().expect("log").clone();
    assert!(entries.iter().any(|e| matches!(e, LogEntry::Note(n) if n.starts_with("restored"))), "{entries:?}");
    let world = b.machine.world();
    assert!(!world.control_plane().expect("control plane").etcd.clusters.contains_key("member2"));
    assert!(world.inside["member2"].microk8s.as_ref().is_some_and(|m| !m.karmada_agent), "the agent is gone");
}

/// Behaviour 7: `deinit` leaves etcd's data, and an init over it brings the old Clusters and CA back;
/// testbed removes it (and init's data directory, with the Karmada kubeconfig) after its own deinit.
#[tokio::test]
async fn deinit_leaves_the_etcd_data_and_testbed_removes_it_after_its_own_deinit() {
    use testbed_command::CommandRunner as _;
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    apply_all(&b.machine, &plan).await;
    let old_ca = b.machine.world().control_plane().expect("control plane").etcd.pki.ca_pem.clone();

    // By hand: deinit (which leaves the namespace, with testbed's label), then init again: the old
    // Clusters and the old CA come back from etcd's data.
    let programs = b.machine.programs();
    let host = testbed_steps::Where::Host;
    let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let deinit = argv("karmadactl deinit --kubeconfig /var/snap/microk8s/current/credentials/client.config -f");
    let out = programs.run(&host, &deinit, Duration::from_secs(60)).await.expect("runs");
    assert!(out.success() && out.stdout.contains("deinit will not delete etcd data"), "{out:?}");
    assert!(host_file(&b, "/var/lib/karmada-etcd").is_dir());
    let init = plan.actions().into_iter().find(|a| a.address.as_str() == "karmada.control_plane").expect("planned");
    let init_argv = testbed_steps::steps(init, &testbed_steps::Context::new(&cfg))
        .into_iter()
        .filter_map(|s| s.argv())
        .find(|a| a.first().is_some_and(|p| p == "karmadactl"))
        .expect("init's command");
    let out = programs.run(&host, &init_argv, Duration::from_secs(600)).await.expect("runs");
    assert!(out.success(), "{out:?}");
    let world = b.machine.world();
    let cp = world.control_plane().expect("control plane");
    assert_eq!(cp.etcd.pki.ca_pem, old_ca, "the old CA came back");
    assert_eq!(cp.etcd.clusters.keys().collect::<Vec<_>>(), ["member1", "member2"], "and the old Clusters");

    // testbed's own deinit removes what it leaves: the next init starts afresh.
    run(&b.machine, &delete_of(&look(&b.machine, &cfg).await.1, "karmada.control_plane")).await.expect("deinit");
    assert!(!host_file(&b, "/var/lib/karmada-etcd").exists());
    assert!(!host_file(&b, "/etc/karmada").exists(), "the Karmada kubeconfig and the CA's key are gone");
    run(&b.machine, init).await.expect("init again");
    let world = b.machine.world();
    let cp = world.control_plane().expect("control plane");
    assert_ne!(cp.etcd.pki.ca_pem, old_ca, "a new CA");
    assert!(cp.etcd.clusters.is_empty(), "no Clusters from before");
}

/// The real registry provider over the world's registries: the release images are copied from the
/// public registries (Docker Hub through its token service) into the addon's registry with their digests,
/// a tag deleted by hand is copied again and nothing else, and the addon's content goes with the addon.
#[tokio::test]
async fn images_reach_the_addons_registry_and_a_tag_lost_by_hand_is_copied_again() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    let world = b.machine.world();
    let registry = world.registry().expect("the addon is enabled");
    for tag in ["karmada-agent:v1.19.0", "etcd:3.6.8-0", "nginx:1.27", "kube-apiserver:v1.36.2"] {
        assert!(registry.tags().iter().any(|t| t == tag), "{tag} in {:?}", registry.tags());
    }
    // The record holds what the registry holds.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b._dir.path().join(".testbed/registry.json")).expect("record"))
            .expect("json");
    let digest = record["images"]["etcd"]["digest"].as_str().expect("recorded digest");
    assert_eq!(registry.repositories["etcd"].tags["3.6.8-0"], digest);
    assert!(plan_for(&b.machine, &cfg).await.is_empty());

    // Someone deletes a tag: that image is copied again, and nothing else.
    b.machine
        .edit(|w| {
            let reg = w.host.microk8s.as_mut().and_then(|m| m.registry.as_mut()).expect("registry");
            reg.repositories.get_mut("etcd").expect("etcd").tags.clear();
        })
        .expect("edit");
    let plan = plan_for(&b.machine, &cfg).await;
    let ops: Vec<(String, Op)> = plan.actions().into_iter().map(|a| (a.address.to_string(), a.op)).collect();
    assert_eq!(ops, vec![("image.etcd".to_owned(), Op::Create)]);
    apply_all(&b.machine, &plan).await;
    assert!(plan_for(&b.machine, &cfg).await.is_empty());

    // Disabling the addon by hand takes its content: the registry and every image are planned again.
    b.machine
        .edit(|w| {
            let m = w.host.microk8s.as_mut().expect("host MicroK8s");
            m.addons.remove("registry");
            m.registry = None;
        })
        .expect("edit");
    let plan = plan_for(&b.machine, &cfg).await;
    assert_eq!(plan.find("registry.local").map(|n| plan.graph[n].op), Some(Op::Create));
    assert_eq!(plan.find("image.etcd").map(|n| plan.graph[n].op), Some(Op::Create));
}

/// Behaviour 10: `microk8s images import` says "Failed to import images on ..." and exits 0 when the
/// archive holds no image; the side-load fails with that line, and nothing is recorded as imported.
#[tokio::test]
async fn an_import_that_failed_with_exit_0_fails_the_side_load() {
    let b = bench();
    std::fs::write(b._dir.path().join("busybox-1.36.tar"), b"not an image archive").expect("write");
    let cfg = b.config(TWO_MEMBERS);
    let plan = plan_for(&b.machine, &cfg).await;
    let side = apply_until(&b.machine, &plan, at("sideload.member1.busybox"), nothing).await.expect("in the plan");
    let err = run(&b.machine, &side).await.expect_err("the import failed");
    let message = err.report().to_string();
    assert!(message.contains("Failed to import images on"), "{message}");
    assert!(message.contains("unrecognized image format"), "{message}");
    let world = b.machine.world();
    let images = &world.inside["member1"].microk8s.as_ref().expect("MicroK8s").images;
    assert!(!images.iter().any(|i| i.contains("busybox")), "{images:?}");
    let plan = plan_for(&b.machine, &cfg).await;
    assert_eq!(plan.find("sideload.member1.busybox").map(|n| plan.graph[n].op), Some(Op::Create));
}

/// A side-loaded image is in the member's containerd under containerd's name, and testbed's; removing it
/// from the file removes it from the member.
#[tokio::test]
async fn a_side_loaded_image_is_imported_under_containerds_name_and_removed_with_the_file_entry() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    let images = |b: &Bench| b.machine.world().inside["member1"].microk8s.as_ref().expect("MicroK8s").images.clone();
    assert!(images(&b).contains("docker.io/library/busybox:1.36"), "{:?}", images(&b));
    // The pushed archive is removed once imported.
    assert!(!b.machine.world().inside["member1"].files.contains_key("/var/lib/testbed/sideload/busybox.tar"));

    let busybox = "[[images]]\nname = \"busybox\"\nsource = \"docker.io/library/busybox:1.36\"\nsideload = true\narchive = \"busybox-1.36.tar\"\nmembers = [\"member1\"]\n";
    assert!(TWO_MEMBERS.contains(busybox));
    let cfg = b.config(&TWO_MEMBERS.replace(busybox, ""));
    let plan = plan_for(&b.machine, &cfg).await;
    assert_eq!(plan.find("sideload.member1.busybox").map(|n| plan.graph[n].op), Some(Op::Delete));
    apply_all(&b.machine, &plan).await;
    assert!(!images(&b).contains("docker.io/library/busybox:1.36"), "{:?}", images(&b));
    assert!(images(&b).contains("registry.k8s.io/pause:3.7"), "what testbed did not import stays");
}

/// Behaviour 8: without `--crds`, every init downloads the release's CRD archive from the internet into
/// the data directory it wipes. testbed fetches it once into its downloads directory, records its SHA-256,
/// and passes it: a second control plane (after a destroy) downloads nothing.
#[tokio::test]
async fn the_crd_archive_is_downloaded_once_and_kept_outside_inits_data_directory() {
    let b = bench();
    let cfg = b.config(TWO_MEMBERS);
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    let url = "https://github.com/karmada-io/karmada/releases/download/v1.19.0/crds.tar.gz";
    assert_eq!(b.machine.world().host.downloads.get(url), Some(&1));
    let archive = host_file(&b, "/var/lib/testbed/downloads/karmada-crds-v1.19.0.tar.gz");
    assert!(archive.is_file());
    let recorded =
        std::fs::read_to_string(host_file(&b, "/var/lib/testbed/downloads/karmada-crds-v1.19.0.tar.gz.sha256"))
            .expect("the checksum is recorded");
    assert_eq!(recorded.split_whitespace().count(), 2, "{recorded}");

    // Destroy and build again: init runs again, from the same archive.
    let destroy = {
        let observed = look(&b.machine, &cfg).await.1;
        testbed_plan::plan(&DesiredState::nothing(), &observed).expect("destroy plan")
    };
    apply_all(&b.machine, &destroy).await;
    assert!(b.machine.world().control_plane().is_none());
    apply_all(&b.machine, &plan_for(&b.machine, &cfg).await).await;
    assert!(b.machine.world().control_plane().is_some());
    assert_eq!(b.machine.world().host.downloads.get(url), Some(&1), "fetched once");
    assert!(archive.is_file(), "kept outside the data directory init wipes");
}

/// A directory for a lab's file, holding the side-load archive the files here name.
fn lab_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = testbed_sim::containerd::docker_archive(&["busybox:1.36"]);
    std::fs::write(dir.path().join("busybox-1.36.tar"), archive).expect("write the archive");
    dir
}
