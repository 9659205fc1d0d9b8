//! Simulated layers above a real LXD: the simulated MicroK8s, registry and Karmada see the containers as
//! the real LXD reports them (here a fake `ContainerView` the tests control, or a second simulated machine
//! standing in for the real LXD).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use testbed_config::Config;
use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{Action, Address, Kind, Layer, ObservedState, Op, Plan, Resource};
use testbed_provider::{ActionLog, ActionRunner, ContainerFacts, ContainerView, ErrorKind, ProviderError, Providers};
use testbed_sim::{SimMachine, SimOptions};

const ONE_MEMBER: &str = r#"
[[members]]
name = "member1"
api_port = 16441
"#;

const TWO_MEMBERS: &str = r#"
[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442
join_mode = "pull"

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

/// The file `text` as if it were `dir/testbed.toml` (the members' kubeconfigs go under `dir`).
fn config(dir: &Path, text: &str) -> Config {
    match testbed_config::parse(&dir.join("testbed.toml"), text) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e:?}"),
    }
}

/// A real LXD whose answers the test sets.
struct FakeLxd {
    answer: Mutex<Result<Vec<ContainerFacts>, ProviderError>>,
    calls: Mutex<usize>,
}

impl FakeLxd {
    fn new(containers: Vec<ContainerFacts>) -> Arc<FakeLxd> {
        Arc::new(FakeLxd { answer: Mutex::new(Ok(containers)), calls: Mutex::new(0) })
    }

    fn set(&self, containers: Vec<ContainerFacts>) {
        *self.answer.lock().expect("lock") = Ok(containers);
    }

    fn fail(&self, e: ProviderError) {
        *self.answer.lock().expect("lock") = Err(e);
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut ContainerFacts)) {
        let mut answer = self.answer.lock().expect("lock");
        let containers = answer.as_mut().expect("answering");
        f(containers.iter_mut().find(|c| c.name == name).expect("container"));
    }

    fn calls(&self) -> usize {
        *self.calls.lock().expect("lock")
    }
}

#[async_trait]
impl ContainerView for FakeLxd {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        *self.calls.lock().expect("lock") += 1;
        self.answer.lock().expect("lock").clone()
    }
}

/// A container testbed made, with its API proxy.
fn container(name: &str, running: bool, identity: &str) -> ContainerFacts {
    ContainerFacts {
        name: name.into(),
        running,
        ipv4: Some("10.123.45.10".into()),
        proxies: BTreeMap::from([(
            "api".to_owned(),
            ("tcp:127.0.0.1:16441".to_owned(), "tcp:127.0.0.1:16443".to_owned()),
        )]),
        identity: identity.into(),
        owned: true,
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    path: PathBuf,
    lxd: Arc<FakeLxd>,
    machine: SimMachine,
}

fn bench(containers: Vec<ContainerFacts>) -> Bench {
    let dir = lab_dir();
    let path = dir.path().join("sim.json");
    let lxd = FakeLxd::new(containers);
    let view: Arc<dyn ContainerView> = lxd.clone();
    let machine = SimMachine::open(&path, SimOptions::instant())
        .expect("opens")
        .with_context(cx(dir.path()))
        .with_real_containers(view);
    Bench { _dir: dir, path, lxd, machine }
}

/// The catalogue's context the host provider runs its steps with (the same for every file here).
fn cx(dir: &Path) -> testbed_steps::Context {
    testbed_steps::Context::new(&config(dir, TWO_MEMBERS))
}

fn wanted(d: &DesiredState) -> Vec<Resource> {
    d.resources.values().cloned().collect()
}

/// The plan a bare machine gets for `text`, in order: every create the file implies.
async fn creates(dir: &Path, text: &str) -> Vec<Action> {
    let scratch = lab_dir();
    let bare = SimMachine::open(scratch.path().join("bare.json"), SimOptions::instant()).expect("opens");
    let plan = plan_with(&bare.providers(), &config(dir, text)).await;
    plan.actions().into_iter().cloned().collect()
}

/// The file's resources of one layer.
fn layer_wanted(dir: &Path, text: &str, layer: Layer) -> Vec<Resource> {
    let d = desired::build(&config(dir, text), &ObservedState::default());
    wanted(&d).into_iter().filter(|r| r.kind.layer() == layer).collect()
}

fn find(actions: &[Action], address: &str) -> Action {
    actions.iter().find(|a| a.address.as_str() == address).unwrap_or_else(|| panic!("{address} planned")).clone()
}

async fn look(providers: &Providers, config: &Config) -> (DesiredState, ObservedState) {
    let first = desired::build(config, &ObservedState::default());
    let observed = providers.observe(&wanted(&first)).await;
    (desired::build(config, &observed), observed)
}

async fn plan_with(providers: &Providers, config: &Config) -> Plan {
    let (desired, observed) = look(providers, config).await;
    testbed_plan::plan(&desired, &observed).unwrap_or_else(|e| panic!("planning failed: {e}"))
}

async fn run(machine: &SimMachine, action: &Action) -> Result<(), ProviderError> {
    machine.providers().run(action, &ActionLog::discard()).await
}

/// Runs every action of the layers above LXD in order, until `stop`.
async fn run_above_lxd_until(machine: &SimMachine, actions: &[Action], stop: &str) {
    for a in actions {
        if a.address.as_str() == stop {
            return;
        }
        if a.kind.layer() == Layer::Lxd || !a.runs() {
            continue;
        }
        if let Err(e) = run(machine, a).await {
            panic!("{} {} failed: {e} (hint: {:?})", a.op.name(), a.address, e.hint(), e = e.report());
        }
    }
    panic!("{stop} not planned");
}

fn expect_precondition(r: Result<(), ProviderError>) -> String {
    match r {
        Err(e) if e.kind() == ErrorKind::Precondition => e.report().to_string(),
        other => panic!("expected a precondition failure, got {other:?}"),
    }
}

/// What the MicroK8s layer's provider (the real one, over the simulated programs) observes.
async fn observe_microk8s(machine: &SimMachine, wanted: &[Resource]) -> testbed_provider::LayerObservation {
    let providers = machine.providers();
    let provider = providers.get(Layer::Microk8s).expect("the MicroK8s provider");
    provider.observe(wanted).await.expect("observes")
}

fn microk8s_observed(obs: &testbed_provider::LayerObservation, member: &str) -> bool {
    let address = Address::new(Kind::Microk8s, &[member]);
    obs.resources.iter().any(|o| o.address == address)
}

#[tokio::test]
async fn microk8s_installs_only_into_a_real_container_that_runs() {
    let b = bench(vec![container("member1", false, "uuid-1")]);
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&b.machine, &actions, "microk8s.member1").await;
    let install = find(&actions, "microk8s.member1");

    let message = expect_precondition(run(&b.machine, &install).await);
    assert!(message.contains("microk8s.member1") && message.contains("container member1 is stopped"), "{message}");
    assert!(b.machine.world().inside.is_empty());

    b.lxd.edit("member1", |c| c.running = true);
    run(&b.machine, &install).await.expect("installs into the running container");
    let world = b.machine.world();
    let inside = world.inside.get("member1").expect("kept");
    assert_eq!(inside.identity, "uuid-1");
    assert!(inside.microk8s.as_ref().is_some_and(|m| m.running));
    // The simulation's own LXD was not touched: the container is the real one.
    assert!(world.lxd_daemon.instances.is_empty());

    // A container the real LXD does not have cannot take MicroK8s either.
    let b = bench(vec![]);
    run_above_lxd_until(&b.machine, &actions, "microk8s.member1").await;
    let message = expect_precondition(run(&b.machine, &install).await);
    assert!(message.contains("container member1 does not exist"), "{message}");
}

#[tokio::test]
async fn a_re_created_container_has_nothing_inside_and_a_vanished_one_takes_its_inside_along() {
    let b = bench(vec![container("member1", true, "uuid-1")]);
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&b.machine, &actions, "microk8s_addons.member1").await;
    let wanted_mk8s = layer_wanted(b._dir.path(), ONE_MEMBER, Layer::Microk8s);
    let obs = observe_microk8s(&b.machine, &wanted_mk8s).await;
    assert!(microk8s_observed(&obs, "member1"));

    // Deleted and re-created under the same name: a new container, with no MicroK8s in it.
    b.lxd.set(vec![container("member1", true, "uuid-2")]);
    let obs = observe_microk8s(&b.machine, &wanted_mk8s).await;
    assert!(!microk8s_observed(&obs, "member1"), "{:?}", obs.resources);
    // Looking inside the new container (`snap list`) finds it as its image left it.
    assert_eq!(b.machine.world().inside["member1"].identity, "uuid-2");
    assert!(b.machine.world().inside["member1"].microk8s.is_none());
    let install = find(&actions, "microk8s.member1");
    run(&b.machine, &install).await.expect("a fresh install into the new container");
    let world = b.machine.world();
    let inside = &world.inside["member1"];
    assert_eq!(inside.identity, "uuid-2");
    // A new cluster, with a new identity.
    assert_eq!(inside.microk8s.as_ref().map(|m| m.cluster_id.as_str()), Some("00000000-0000-4000-8000-000000000002"));

    // Gone from the real LXD: nothing inside is observed, and the next step drops it.
    b.lxd.set(vec![]);
    let obs = observe_microk8s(&b.machine, &wanted_mk8s).await;
    assert!(!microk8s_observed(&obs, "member1"));
    let message = expect_precondition(run(&b.machine, &find(&actions, "microk8s_addons.member1")).await);
    assert!(message.contains("container member1 does not exist"), "{message}");
}

#[tokio::test]
async fn the_kubeconfig_needs_the_real_api_proxy_and_join_the_running_container_at_its_address() {
    let b = bench(vec![container("member1", true, "uuid-1")]);
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&b.machine, &actions, "karmada_member.member1").await;
    let join = find(&actions, "karmada_member.member1");

    b.lxd.edit("member1", |c| c.proxies.clear());
    // The real MicroK8s provider writes the kubeconfig, then waits for the API through the proxy, which
    // nothing answers now: the hint points at the proxy.
    let rewrite = Action { op: Op::Update, ..find(&actions, "kubeconfig.member1") };
    match run(&b.machine, &rewrite).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let (message, hint) = (e.report().to_string(), e.hint().map(str::to_owned));
            assert!(message.contains("did not answer through https://127.0.0.1:16441"), "{message}");
            assert!(hint.is_some_and(|h| h.contains("check the API proxy")));
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // A stopped container answers nowhere: karmadactl join cannot reach the member.
    b.lxd.set(vec![container("member1", false, "uuid-1")]);
    match run(&b.machine, &join).await {
        Err(e) if e.kind() == ErrorKind::Failed => {
            let message = e.report().to_string();
            assert!(message.contains("karmadactl join") || message.contains("connection refused"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // Karmada reaches a member at its bridge address (the Karmada kubeconfig's), not through the proxy.
    b.lxd.set(vec![container("member1", true, "uuid-1")]);
    run(&b.machine, &join).await.expect("joins at the real container's address");
    let world = b.machine.world();
    let cluster = world.control_plane().and_then(|cp| cp.etcd.clusters.get("member1")).expect("joined");
    let inside = world.inside["member1"].microk8s.as_ref().expect("MicroK8s");
    assert_eq!(cluster.id, inside.cluster_id);
    assert_eq!(cluster.labels.get("testbed/owner").map(String::as_str), Some("testbed"), "labelled as testbed's");
}

#[tokio::test]
async fn a_real_container_someone_else_made_is_not_testbeds_to_fill() {
    let mut foreign = container("member1", true, "uuid-1");
    foreign.owned = false;
    let b = bench(vec![foreign]);
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&b.machine, &actions, "microk8s.member1").await;
    let message = expect_precondition(run(&b.machine, &find(&actions, "microk8s.member1")).await);
    assert!(
        message.contains("refusing to create MicroK8s in container member1: testbed did not create it"),
        "{message}"
    );
    assert!(b.machine.world().inside.get("member1").is_none_or(|i| i.microk8s.is_none()));
}

#[tokio::test]
async fn an_unreachable_lxd_fails_the_steps_that_need_it_as_unavailable() {
    let b = bench(vec![container("member1", true, "uuid-1")]);
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&b.machine, &actions, "microk8s.member1").await;
    b.lxd.fail(ProviderError::failed("connect /var/snap/lxd/common/lxd/unix.socket: connection refused"));

    match run(&b.machine, &find(&actions, "microk8s.member1")).await {
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            let (message, hint) = (e.report().to_string(), e.hint().map(str::to_owned));
            assert!(message.contains("microk8s.member1: cannot see container member1"), "{message}");
            assert!(message.contains("connection refused"), "{message}");
            assert!(hint.is_some_and(|h| h.contains("lxc list")));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // The host layer does not need LXD: its forwarding rules name the bridge, and iptables takes them.
    run(&b.machine, &find(&actions, "host.firewall")).await.expect("no LXD needed");
    run(&b.machine, &find(&actions, "host.packages")).await.expect("no LXD needed");

    let cfg = config(b._dir.path(), ONE_MEMBER);
    let (_, observed) = look(&b.machine.providers(), &cfg).await;
    let unobservable: BTreeMap<Layer, String> =
        observed.unobservable.iter().map(|u| (u.layer, u.reason.clone())).collect();
    assert!(unobservable.get(&Layer::Microk8s).is_some_and(|r| r.contains("connection refused")), "{unobservable:?}");
    // The host, registry and Karmada layers do not need LXD (the registry and its images answer on the
    // host; this file side-loads nothing; Karmada reads its kubeconfigs and API servers).
    for layer in [Layer::Host, Layer::Registry, Layer::Karmada] {
        assert!(!unobservable.contains_key(&layer), "{unobservable:?}");
    }
    // The LXD provider over the simulated daemon is not among the providers: the real LXD's goes there.
    assert_eq!(unobservable.get(&Layer::Lxd).map(String::as_str), Some("no provider configured"));
}

#[tokio::test]
async fn the_state_file_keeps_the_inside_with_its_container_identity_and_never_the_mirror() {
    let b = bench(vec![container("member1", true, "uuid-1")]);
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&b.machine, &actions, "kubeconfig.member1").await;

    let text = std::fs::read_to_string(&b.path).expect("saved");
    assert!(text.contains("\"inside\"") && text.contains("\"uuid-1\""), "{text}");
    // Whether it runs, its address and its proxies are the real LXD's: not saved as the simulation's.
    assert!(!text.contains("10.123.45.10") && !text.contains("tcp:127.0.0.1:16441"), "{text}");

    let view: Arc<dyn ContainerView> = b.lxd.clone();
    let reopened = SimMachine::open(&b.path, SimOptions::instant()).expect("reads back");
    assert_eq!(reopened.world(), b.machine.world());
    assert!(reopened.world().lxd_daemon.instances.is_empty());
    let reopened = reopened.with_context(cx(b._dir.path())).with_real_containers(view);
    let obs = observe_microk8s(&reopened, &layer_wanted(b._dir.path(), ONE_MEMBER, Layer::Microk8s)).await;
    assert!(microk8s_observed(&obs, "member1"));
    // The kubeconfig step, run on the reopened machine, finds MicroK8s where the first run left it.
    run(&reopened, &find(&actions, "kubeconfig.member1")).await.expect("writes the kubeconfig");
    assert!(b._dir.path().join(".testbed/kubeconfigs/member1.config").is_file());
    assert_eq!(reopened.world().inside["member1"].identity, "uuid-1");
}

#[tokio::test]
async fn with_real_containers_the_machine_has_no_lxd_provider_of_its_own() {
    let b = bench(vec![]);
    assert!(b.machine.has_real_containers());
    assert_eq!(b.machine.simulated_layers(), Layer::ALL.into_iter().filter(|l| *l != Layer::Lxd).collect());
    let providers = b.machine.providers();
    assert!(providers.get(Layer::Lxd).is_none(), "the real LXD's provider is the caller's to add");
    let actions = creates(b._dir.path(), ONE_MEMBER).await;
    let network = find(&actions, "lxd_network.lxdbr0");
    match run(&b.machine, &network).await {
        Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Failed) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(b.lxd.calls(), 0);
    // The Karmada layer's provider is the real one, over the simulated karmadactl and API servers.
    let karmada = b.machine.providers_for(&BTreeSet::from([Layer::Karmada]));
    assert!(karmada.get(Layer::Karmada).is_some_and(|p| !p.simulated()));
}

/// A simulated machine stands in for the real LXD; a second one simulates everything above it.
struct Pair {
    _dir: tempfile::TempDir,
    lxd: SimMachine,
    above: SimMachine,
    providers: Providers,
}

fn pair() -> Pair {
    let dir = lab_dir();
    let lxd = SimMachine::open(dir.path().join("lxd.json"), SimOptions::instant()).expect("opens");
    let view: Arc<dyn ContainerView> = Arc::new(lxd.clone());
    let above = SimMachine::open(dir.path().join("above.json"), SimOptions::instant())
        .expect("opens")
        .with_context(cx(dir.path()))
        .with_real_containers(view);
    let lxd_provider = lxd.providers().get(Layer::Lxd).cloned().expect("the LXD provider over the daemon");
    let providers = above.providers().with(lxd_provider);
    Pair { _dir: dir, lxd, above, providers }
}

async fn apply_all(providers: &Providers, plan: &Plan) {
    for a in plan.actions() {
        if !a.runs() {
            continue;
        }
        if let Err(e) = providers.run(a, &ActionLog::discard()).await {
            panic!("{} {} failed: {e} (hint: {:?})", a.op.name(), a.address, e.hint(), e = e.report());
        }
    }
}

#[tokio::test]
async fn lxd_from_one_machine_and_the_rest_from_another_converge_and_follow_a_re_created_container() {
    let p = pair();
    let cfg = config(p._dir.path(), TWO_MEMBERS);
    let bare = creates(p._dir.path(), TWO_MEMBERS).await;
    // The real LXD is installed before testbed runs (its host layer is the other machine's).
    p.lxd.edit(|w| w.install_lxd_by_hand()).expect("LXD installed");
    apply_all(&p.providers, &plan_with(&p.providers, &cfg).await).await;
    let again = plan_with(&p.providers, &cfg).await;
    assert!(again.is_empty(), "{:?}", again.actions().iter().map(|a| a.address.to_string()).collect::<Vec<_>>());

    // The containers are the LXD machine's; what is inside them is the other machine's.
    let lxd_world = p.lxd.world();
    assert!(lxd_world.inside.is_empty());
    let above_world = p.above.world();
    assert!(above_world.lxd_daemon.instances.is_empty());
    assert_eq!(above_world.inside.keys().collect::<Vec<_>>(), ["member1", "member2"]);
    for (name, inside) in &above_world.inside {
        let uuid = lxd_world.lxd_daemon.instances.get(name).and_then(|i| i.config.get("volatile.uuid"));
        assert_eq!(Some(&inside.identity), uuid);
    }
    let facts = p.lxd.containers().await.expect("own containers");
    assert!(facts.iter().all(|c| c.running && c.owned && c.proxies.contains_key("api")), "{facts:?}");
    assert_eq!(p.above.containers().await.expect("the real ones"), facts);

    // A stopped real container: its MicroK8s cannot be changed until LXD starts it.
    p.lxd.edit(|w| w.stop_lxd_instance("member1")).expect("saved");
    let addons = Action { op: Op::Update, ..find(&bare, "microk8s_addons.member1") };
    let message = expect_precondition(p.providers.run(&addons, &ActionLog::discard()).await);
    assert!(message.contains("container member1 is stopped"), "{message}");
    let repair = plan_with(&p.providers, &cfg).await;
    let ops: Vec<(String, Op)> = repair.actions().iter().map(|a| (a.address.to_string(), a.op)).collect();
    // Its MicroK8s cannot be seen while it is stopped: repaired (started) after the container; Karmada
    // reports its Cluster not reachable, and the repair waits for it to be Ready again.
    assert_eq!(
        ops,
        vec![
            ("lxd_instance.member1".to_owned(), Op::Update),
            ("microk8s.member1".to_owned(), Op::Update),
            ("karmada_member.member1".to_owned(), Op::Update)
        ]
    );
    apply_all(&p.providers, &repair).await;

    // The real container is deleted and re-created by hand under the same name.
    let uuid = |m: &SimMachine| {
        m.world().lxd_daemon.instances.get("member1").and_then(|i| i.config.get("volatile.uuid").cloned())
    };
    let before = uuid(&p.lxd).expect("member1");
    let create = find(&bare, "lxd_instance.member1");
    p.lxd.edit(|w| w.lxd_daemon.instances.remove("member1")).expect("saved");
    p.providers.run(&create, &ActionLog::discard()).await.expect("re-created");
    let after = uuid(&p.lxd).expect("member1");
    assert_ne!(before, after);

    let rebuild = plan_with(&p.providers, &cfg).await;
    let op = |a: &str| rebuild.actions().iter().find(|x| x.address.as_str() == a).map(|x| x.shown_op());
    assert_eq!(op("microk8s.member1"), Some(Op::Create));
    assert_eq!(op("sideload.member1.busybox"), Some(Op::Create));
    assert_eq!(op("kubeconfig.member1"), Some(Op::Replace));
    assert_eq!(op("karmada_member.member1"), Some(Op::Replace));
    assert_eq!(op("microk8s.member2"), None);
    apply_all(&p.providers, &rebuild).await;
    assert!(plan_with(&p.providers, &cfg).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_container_that_stops_while_the_step_runs_fails_the_step() {
    let dir = lab_dir();
    let lxd = FakeLxd::new(vec![container("member1", true, "uuid-1")]);
    let view: Arc<dyn ContainerView> = lxd.clone();
    let options = SimOptions { speed: 1.0, ..SimOptions::instant() };
    let machine = SimMachine::open(dir.path().join("sim.json"), options)
        .expect("opens")
        .with_context(cx(dir.path()))
        .with_real_containers(view);
    let actions = creates(dir.path(), ONE_MEMBER).await;
    run_above_lxd_until(&machine, &actions, "microk8s.member1").await;

    let install = find(&actions, "microk8s.member1");
    let step = tokio::spawn({
        let machine = machine.clone();
        async move { run(&machine, &install).await }
    });
    // The step waits for snapd to seed, then installs (90 s); the container stops in the middle of it.
    tokio::time::sleep(std::time::Duration::from_secs(40)).await;
    lxd.edit("member1", |c| c.running = false);
    let e = step.await.expect("task").expect_err("the install died with its container");
    assert!(e.report().to_string().contains("Instance is not running"), "{e}", e = e.report());
    assert!(machine.world().inside.get("member1").is_none_or(|i| i.microk8s.is_none()), "nothing was installed");
}

/// A directory for a lab's file, holding the side-load archive the files here name.
fn lab_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = testbed_sim::containerd::docker_archive(&["busybox:1.36"]);
    std::fs::write(dir.path().join("busybox-1.36.tar"), archive).expect("write the archive");
    dir
}
