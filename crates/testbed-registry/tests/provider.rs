//! The registry layer's provider against the project's two real registries (`cargo xtask testenv up`):
//! observe → plan → apply of images (copied, someone else's, drifted, deleted, failed) and of the registry
//! itself, each test in a namespace of its own in the local registry and with its own record file.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_plan::{Action, Address, DesiredState, Health, Kind, Observed, ObservedState, Op, Owner, Resource, Spec};
use testbed_provider::{ActionLog, ErrorKind, LogEntry, Provider, ProviderError};
use testbed_registry::record::{Contents, Record};
use testbed_registry::{Addon, CopyJob, Location, RegistryProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------------------
// The lab: a provider with its own record file, settings mirroring docker.io and registry.k8s.io to the test
// upstream, and a scripted runner for host commands.

/// The port the local registry answers on (`TESTBED_LOCAL_REGISTRY` overrides, as in `support`).
fn local_port() -> u16 {
    let local = local();
    local.host().rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("the local registry is host:port")
}

/// `[registry]` as the file would say it: `port`, linux/amd64, both source registries mirrored to `source`
/// (the test upstream, or a proxy in front of it) over plain HTTP.
fn settings(port: u16, source: &str) -> testbed_config::Registry {
    let mirror = testbed_config::Mirror { endpoint: format!("http://{source}"), insecure: true };
    testbed_config::Registry {
        port,
        platforms: vec!["linux/amd64".into()],
        mirrors: BTreeMap::from([("docker.io".to_owned(), mirror.clone()), ("registry.k8s.io".to_owned(), mirror)]),
    }
}

/// A port nothing listens on (bound, read, released).
fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Lab {
    dir: tempfile::TempDir,
    /// This test's namespace in the local registry.
    ns: String,
    /// The port targets name and the provider reaches the local registry on.
    port: u16,
    /// Where the source registries are mirrored to: the test upstream's `host:port`.
    source: String,
    runner: ScriptedRunner,
    provider: RegistryProvider,
}

impl Lab {
    fn new(test: &str) -> Lab {
        Lab::on_port(test, local_port(), Addon::Unmanaged("the microk8s layer is simulated in this test".into()))
    }

    fn on_port(test: &str, port: u16, addon: Addon) -> Lab {
        Lab::with_source(test, port, upstream().host(), addon)
    }

    fn with_source(test: &str, port: u16, source: &str, addon: Addon) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let runner = ScriptedRunner::new();
        let provider = Lab::provider_at(&dir, &runner, port, source, addon);
        Lab { dir, ns: namespace(test), port, source: source.to_owned(), runner, provider }
    }

    /// Another provider over this lab's record, runner, port and source.
    fn another_provider(&self, addon: Addon) -> RegistryProvider {
        Lab::provider_at(&self.dir, &self.runner, self.port, &self.source, addon)
    }

    /// A provider on `port` keeping its record in `dir`. The file behind the steps' context says nothing of
    /// the port (a file may only name 32000, the addon's); the provider's settings carry it.
    fn provider_at(
        dir: &tempfile::TempDir,
        runner: &ScriptedRunner,
        port: u16,
        source: &str,
        addon: Addon,
    ) -> RegistryProvider {
        let path = dir.path().join("testbed.toml");
        let text = "name = \"provider-test\"\n\n[[members]]\nname = \"member1\"\napi_port = 26441\n";
        let config = testbed_config::parse(&path, text).expect("a valid test file");
        RegistryProvider::new(
            Arc::new(runner.clone()),
            testbed_steps::Context::new(&config),
            settings(port, source),
            dir.path().join(".testbed/registry.json"),
            addon,
        )
        .expect("provider")
    }

    fn record(&self) -> Contents {
        Record::at(self.dir.path().join(".testbed/registry.json")).read().expect("the record reads")
    }

    /// `localhost:PORT/NS/REPO:TAG`.
    fn target(&self, repo: &str, tag: &str) -> String {
        format!("localhost:{}/{}/{repo}:{tag}", self.port, self.ns)
    }

    /// The image resource `image.NAME` copying `source` to `NS/REPO:TAG` in the local registry.
    fn image(&self, name: &str, source: &str, repo: &str, tag: &str) -> Resource {
        image_resource(name, source, &self.target(repo, tag))
    }

    /// Where a target of this lab is in the local registry, for the engine.
    fn location(&self, repo: &str, tag: &str) -> Location {
        Location::new(local(), format!("{}/{repo}", self.ns), tag)
    }

    async fn observe(&self, wanted: &[Resource]) -> ObservedState {
        let obs = self
            .provider
            .observe(wanted)
            .await
            .unwrap_or_else(|e| panic!("observe: {e} ({:?})", e.hint(), e = e.report()));
        let mut state = ObservedState::default();
        for o in obs.resources {
            state.insert(o);
        }
        state
    }

    /// Observes `wanted` and plans towards it: the actions, in order.
    async fn plan(&self, wanted: &[Resource]) -> (ObservedState, Vec<Action>) {
        let observed = self.observe(wanted).await;
        let desired = DesiredState {
            resources: wanted.iter().map(|r| (r.address.clone(), r.clone())).collect(),
            ..Default::default()
        };
        let plan = testbed_plan::plan(&desired, &observed).unwrap_or_else(|e| panic!("plan: {e}"));
        (observed, plan.actions().into_iter().cloned().collect())
    }

    async fn apply(&self, action: &Action) -> (Result<(), ProviderError>, Vec<LogEntry>) {
        let (log, entries) = collecting_log();
        let r = self.provider.apply(action, &log).await;
        let entries = entries.lock().unwrap().clone();
        (r, entries)
    }

    /// Plans towards `wanted` and applies every action, each of which must succeed.
    async fn converge(&self, wanted: &[Resource]) {
        let (_, actions) = self.plan(wanted).await;
        for a in &actions {
            let (r, _) = self.apply(a).await;
            r.unwrap_or_else(|e| panic!("{} {}: {e} ({:?})", a.op.name(), a.address, e.hint(), e = e.report()));
        }
    }
}

fn image_resource(name: &str, source: &str, target: &str) -> Resource {
    Resource {
        address: Address::new(Kind::Image, &[name]),
        kind: Kind::Image,
        member: None,
        name: name.to_owned(),
        spec: Spec::from([
            ("source".to_owned(), source.to_owned()),
            ("target".to_owned(), target.to_owned()),
            ("platforms".to_owned(), "linux/amd64".to_owned()),
        ]),
        depends_on: Vec::new(),
    }
}

fn registry_resource(port: u16) -> Resource {
    Resource {
        address: Address::new(Kind::Registry, &["local"]),
        kind: Kind::Registry,
        member: None,
        name: "local".into(),
        spec: Spec::from([("port".to_owned(), port.to_string())]),
        depends_on: Vec::new(),
    }
}

fn collecting_log() -> (ActionLog, Arc<Mutex<Vec<LogEntry>>>) {
    let entries: Arc<Mutex<Vec<LogEntry>>> = Default::default();
    let sink = entries.clone();
    (ActionLog::new(move |e| sink.lock().unwrap().push(e)), entries)
}

fn notes(entries: &[LogEntry]) -> Vec<&str> {
    entries.iter().filter_map(|e| if let LogEntry::Note(n) = e { Some(n.as_str()) } else { None }).collect()
}

fn image_actions(actions: &[Action]) -> Vec<&Action> {
    actions.iter().filter(|a| a.kind == Kind::Image).collect()
}

/// The upstream's `REPO:TAG`, as a copy job's source.
fn upstream_at(repo: &str, tag: &str) -> Location {
    Location::new(upstream(), repo, tag)
}

/// Copies `REPO:TAG` from the upstream to `target` with the engine alone, as someone other than testbed would
/// push it: the digest the tag gets.
async fn push_as_someone_else(repo: &str, tag: &str, target: Location) -> String {
    let job = CopyJob::new(upstream_at(repo, tag), target);
    engine().copy(&job, &|_| {}).await.unwrap_or_else(|e| panic!("{e}")).digest
}

/// The digest a copy of upstream `REPO:TAG` (linux/amd64) gives its target tag.
async fn wanted_digest(repo: &str, tag: &str, target: Location) -> String {
    engine().wanted_digest(&CopyJob::new(upstream_at(repo, tag), target)).await.unwrap_or_else(|e| panic!("{e}"))
}

fn short(digest: &str) -> &str {
    &digest[..19]
}

// ---------------------------------------------------------------------------------------------------------
// Images.

#[tokio::test]
async fn a_missing_image_is_copied_with_the_source_digest_recorded_and_then_left_alone() {
    let lab = Lab::new("copy");
    let wanted = [
        lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0"),
        // The multi-platform one: the tag gets the linux/amd64 manifest's digest, not the index's.
        lab.image("karmada-agent", "docker.io/karmada/karmada-agent:v1.15.9", "karmada-agent", "v1.15.9"),
    ];

    let (observed, actions) = lab.plan(&wanted).await;
    assert!(observed.get(&wanted[0].address).is_none() && observed.get(&wanted[1].address).is_none());
    let images = image_actions(&actions);
    assert_eq!(images.len(), 2, "{actions:#?}");
    for a in &images {
        assert_eq!(a.op, Op::Create, "{}", a.address);
        let (r, log) = lab.apply(a).await;
        r.unwrap_or_else(|e| panic!("{}: {e} ({:?})", a.address, e.hint(), e = e.report()));
        assert!(
            notes(&log)
                .iter()
                .any(|n| n.starts_with("copied ") && n.contains(&a.desired.as_ref().unwrap().spec["target"])),
            "{log:#?}"
        );
        assert!(log.iter().any(|e| matches!(e, LogEntry::Progress(_))), "progress is shown: {log:#?}");
    }

    let record = lab.record();
    for (name, repo, tag, source_repo) in
        [("etcd", "etcd", "3.5.16-0", "etcd"), ("karmada-agent", "karmada-agent", "v1.15.9", INDEXED)]
    {
        let want = wanted_digest(source_repo, tag, lab.location(repo, tag)).await;
        let have = engine().head_manifest(&lab.location(repo, tag)).await.unwrap().expect("copied");
        assert_eq!(have, want, "{name}: the tag has the source's digest");
        let copied = &record.images[name];
        assert_eq!(copied.digest, want, "{name}: the record holds the digest written");
        assert_eq!(copied.target, lab.target(repo, tag));
        assert_eq!(copied.source, wanted.iter().find(|r| r.name == name).unwrap().spec["source"]);
    }
    let index = engine().head_manifest(&upstream_at(INDEXED, "v1.15.9")).await.unwrap().unwrap();
    assert_ne!(record.images["karmada-agent"].digest, index, "one platform of an index is tagged alone");
    assert!(!record.registry_enabled, "copying images does not claim the registry");

    let (observed, actions) = lab.plan(&wanted).await;
    for r in &wanted {
        let o = observed.get(&r.address).unwrap_or_else(|| panic!("{} is observed", r.address));
        assert_eq!(o.owner, Owner::Testbed, "{}", r.address);
        assert_eq!(o.health, Health::Ok, "{}", r.address);
        assert_eq!(o.spec["digest"], record.images[&r.name].digest);
    }
    // The registry on the port is someone else's (the test environment's): used, not planned.
    let registry = observed.get(&Address::new(Kind::Registry, &["local"])).expect("the registry answers");
    assert!(matches!(registry.owner, Owner::Other(_)), "{registry:?}");
    assert!(actions.is_empty(), "nothing to do: {actions:#?}");
}

#[tokio::test]
async fn a_tag_testbed_did_not_copy_is_used_as_it_is_and_never_deleted() {
    let lab = Lab::new("foreign");
    let digest = push_as_someone_else("etcd", "3.5.16-0", lab.location("etcd", "3.5.16-0")).await;
    let wanted = [lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];

    let (observed, actions) = lab.plan(&wanted).await;
    let o = observed.get(&wanted[0].address).expect("the tag is observed");
    match &o.owner {
        Owner::Other(why) => assert!(why.contains(&lab.target("etcd", "3.5.16-0")), "{why}"),
        Owner::Testbed => panic!("a tag testbed did not copy is not testbed's: {o:?}"),
    }
    assert_eq!(o.spec["digest"], digest);
    assert!(image_actions(&actions).is_empty(), "used as it is: {actions:#?}");

    let delete = Action {
        address: wanted[0].address.clone(),
        kind: Kind::Image,
        member: None,
        op: Op::Delete,
        reason: "asked for by the test".into(),
        changes: Vec::new(),
        desired: None,
        observed: Some(o.clone()),
        cascade: None,
        replace: false,
    };
    let (r, _) = lab.apply(&delete).await;
    let e = r.expect_err("testbed deletes only what it copied");
    assert!(
        e.report().to_string().contains("did not copy") && e.report().to_string().contains("image.etcd"),
        "{e}",
        e = e.report()
    );
    assert_eq!(
        engine().head_manifest(&lab.location("etcd", "3.5.16-0")).await.unwrap().as_deref(),
        Some(digest.as_str()),
        "the tag is still there"
    );
    assert_eq!(lab.record(), Contents::default(), "nothing recorded");
}

#[tokio::test]
async fn a_tag_pushed_over_is_repaired_with_an_update() {
    let lab = Lab::new("drift");
    let wanted = [lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];
    lab.converge(&wanted).await;
    let ours = lab.record().images["etcd"].digest.clone();

    // Someone pushes another image's manifest over testbed's tag.
    let theirs = push_as_someone_else("kube-apiserver", "v1.31.3", lab.location("etcd", "3.5.16-0")).await;
    assert_ne!(theirs, ours);

    let (observed, actions) = lab.plan(&wanted).await;
    let o = observed.get(&wanted[0].address).expect("observed");
    assert_eq!(o.owner, Owner::Testbed);
    match &o.health {
        Health::NeedsRepair(why) => {
            assert!(why.contains(short(&theirs)) && why.contains(short(&ours)), "names both digests: {why}");
        }
        Health::Ok => panic!("drift is not healthy: {o:?}"),
    }
    let images = image_actions(&actions);
    assert_eq!(images.len(), 1, "{actions:#?}");
    assert_eq!(images[0].op, Op::Update, "{:?}", images[0]);
    assert!(images[0].reason.contains(short(&theirs)), "{}", images[0].reason);

    let (r, _) = lab.apply(images[0]).await;
    r.unwrap_or_else(|e| panic!("{e}", e = e.report()));
    assert_eq!(engine().head_manifest(&lab.location("etcd", "3.5.16-0")).await.unwrap(), Some(ours.clone()));
    assert_eq!(lab.record().images["etcd"].digest, ours);
    let (observed, actions) = lab.plan(&wanted).await;
    assert_eq!(observed.get(&wanted[0].address).unwrap().health, Health::Ok);
    assert!(actions.is_empty(), "{actions:#?}");
}

#[tokio::test]
async fn an_image_no_longer_wanted_is_deleted_by_digest_and_forgotten() {
    let lab = Lab::new("delete");
    let wanted = [
        lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0"),
        lab.image("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.31.3", "kube-apiserver", "v1.31.3"),
    ];
    lab.converge(&wanted).await;
    let digest = lab.record().images["etcd"].digest.clone();

    // The file keeps kube-apiserver only: etcd is testbed's and no longer wanted.
    let (_, actions) = lab.plan(&wanted[1..]).await;
    let images = image_actions(&actions);
    assert_eq!(images.len(), 1, "{actions:#?}");
    assert_eq!((images[0].op, images[0].address.as_str()), (Op::Delete, "image.etcd"));

    let (r, log) = lab.apply(images[0]).await;
    r.unwrap_or_else(|e| panic!("{e}", e = e.report()));
    assert!(
        log.iter().any(|e| matches!(e, LogEntry::Api { method, path } if method == "DELETE" && path.contains(&digest))),
        "deleted by digest: {log:#?}"
    );
    assert_eq!(engine().head_manifest(&lab.location("etcd", "3.5.16-0")).await.unwrap(), None, "the tag is gone");
    let record = lab.record();
    assert!(!record.images.contains_key("etcd"), "forgotten: {record:?}");
    assert!(record.images.contains_key("kube-apiserver"), "the other image is still testbed's");
    assert!(engine().head_manifest(&lab.location("kube-apiserver", "v1.31.3")).await.unwrap().is_some());
    let (_, actions) = lab.plan(&wanted[1..]).await;
    assert!(actions.is_empty(), "{actions:#?}");
}

#[tokio::test]
async fn deleting_a_tag_someone_pushed_over_leaves_it_and_forgets_it() {
    let lab = Lab::new("pushedover");
    let wanted = [lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];
    lab.converge(&wanted).await;
    let ours = lab.record().images["etcd"].digest.clone();
    let theirs = push_as_someone_else("kube-apiserver", "v1.31.3", lab.location("etcd", "3.5.16-0")).await;

    let (_, actions) = lab.plan(&[]).await;
    let images = image_actions(&actions);
    assert_eq!(images.len(), 1, "{actions:#?}");
    assert_eq!(images[0].op, Op::Delete);
    let (r, log) = lab.apply(images[0]).await;
    r.unwrap_or_else(|e| panic!("{e}", e = e.report()));

    assert!(
        notes(&log).iter().any(|n| n.contains(short(&theirs))
            && n.contains(short(&ours))
            && n.contains("someone pushed over")
            && n.contains("left alone")),
        "the log says why the tag stays: {log:#?}"
    );
    assert!(!log.iter().any(|e| matches!(e, LogEntry::Api { method, .. } if method == "DELETE")), "{log:#?}");
    assert_eq!(
        engine().head_manifest(&lab.location("etcd", "3.5.16-0")).await.unwrap(),
        Some(theirs),
        "their tag is left"
    );
    assert!(lab.record().images.is_empty(), "and no longer testbed's");
    let (observed, actions) = lab.plan(&[]).await;
    assert!(actions.is_empty(), "{actions:#?}");
    assert!(observed.get(&Address::new(Kind::Image, &["etcd"])).is_none(), "not asked about, not testbed's");
}

#[tokio::test]
async fn a_failed_copy_names_the_image_and_records_nothing() {
    let lab = Lab::new("failed");
    let wanted = [lab.image("ghost", "registry.k8s.io/etcd:9.9.9-missing", "ghost", "9.9.9-missing")];

    let (_, actions) = lab.plan(&wanted).await;
    let images = image_actions(&actions);
    assert_eq!(images.len(), 1, "{actions:#?}");
    assert_eq!(images[0].op, Op::Create);
    let (r, _) = lab.apply(images[0]).await;
    let e = r.expect_err("the source tag is not in the upstream");
    let message = e.report().to_string();
    assert!(message.contains("ghost") && message.contains("9.9.9-missing"), "names the image: {message}");
    assert!(e.kind() == ErrorKind::Failed, "{e:?}");
    assert!(e.hint().is_some_and(|h| h.contains("image reference")), "{:?}", e.hint());

    assert_eq!(lab.record(), Contents::default(), "nothing recorded");
    assert_eq!(engine().head_manifest(&lab.location("ghost", "9.9.9-missing")).await.unwrap(), None, "nothing tagged");
    let (observed, actions) = lab.plan(&wanted).await;
    assert!(observed.get(&wanted[0].address).is_none(), "still missing");
    let images = image_actions(&actions);
    assert_eq!(images.iter().map(|a| a.op).collect::<Vec<_>>(), [Op::Create], "planned again: {actions:#?}");
}

// ---------------------------------------------------------------------------------------------------------
// The registry itself.

#[tokio::test]
async fn without_a_registry_and_without_microk8s_create_says_how_to_start_one() {
    let port = unused_port();
    let lab = Lab::on_port("noregistry", port, Addon::Unmanaged("the microk8s layer is simulated".into()));
    let wanted = [registry_resource(port), lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];

    let (observed, actions) = lab.plan(&wanted).await;
    assert!(observed.resources.is_empty(), "no registry, so no images either: {observed:#?}");
    let create = actions.iter().find(|a| a.kind == Kind::Registry).expect("the registry is planned");
    assert_eq!(create.op, Op::Create);

    let (r, _) = lab.apply(create).await;
    match r.expect_err("nothing can start a registry here") {
        e if e.kind() == ErrorKind::Precondition => {
            let (message, hint) = (e.report().to_string(), e.hint().map(str::to_owned));
            assert!(message.contains(&format!("localhost:{port}")), "{message}");
            assert!(message.contains("the microk8s layer is simulated"), "says why: {message}");
            let hint = hint.expect("a hint");
            assert!(hint.contains(&format!("127.0.0.1:{port}")) && hint.contains("cargo xtask testenv up"), "{hint}");
        }
        other => panic!("a precondition, not {other:?}"),
    }
    assert!(lab.runner.transcript().is_empty(), "nothing was run: {:?}", lab.runner.transcript());
    assert!(!lab.record().registry_enabled);
}

#[tokio::test]
async fn enabling_the_addon_runs_the_command_records_it_and_waits_for_the_port() {
    let port = unused_port();
    let lab = Lab::on_port("enable", port, Addon::Managed);
    lab.runner.on(&["microk8s", "enable", "registry"], Reply::ok("The registry is enabled\n"));
    let provider =
        lab.another_provider(Addon::Managed).with_ready_timeout(Duration::from_millis(400), Duration::from_millis(50));
    let wanted = [registry_resource(port)];
    let (_, actions) = lab.plan(&wanted).await;
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0].op, Op::Create);

    let started = Instant::now();
    let (log, _) = collecting_log();
    let e = provider.apply(&actions[0], &log).await.expect_err("nothing answers on the port");
    assert!(started.elapsed() >= Duration::from_millis(400), "waited the timeout: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "and not much longer: {:?}", started.elapsed());
    assert!(e.kind() == ErrorKind::Failed, "{e:?}");
    assert!(
        e.report().to_string().contains(&format!("did not answer on localhost:{port}")),
        "names the port: {e}",
        e = e.report()
    );
    assert!(e.hint().is_some_and(|h| h.contains("container-registry")), "{:?}", e.hint());
    assert_eq!(lab.runner.transcript(), ["host$ microk8s enable registry"], "exactly the enable command");
    // testbed enabled the addon, so it is testbed's to disable, whether or not it has come up yet: recorded once
    // the command succeeded, before the wait.
    assert!(lab.record().registry_enabled, "{:?}", lab.record());
}

#[tokio::test]
async fn a_failed_enable_records_nothing_and_does_not_wait() {
    let port = unused_port();
    let lab = Lab::on_port("enablefails", port, Addon::Managed);
    lab.runner.on(&["microk8s", "enable", "registry"], Reply::exit(1, "Addon hostpath-storage is not enabled"));
    let provider =
        lab.another_provider(Addon::Managed).with_ready_timeout(Duration::from_secs(30), Duration::from_millis(50));
    let (_, actions) = lab.plan(&[registry_resource(port)]).await;

    let started = Instant::now();
    let e = provider.apply(&actions[0], &ActionLog::discard()).await.expect_err("the command failed");
    assert!(started.elapsed() < Duration::from_secs(5), "no wait after a failed command: {:?}", started.elapsed());
    assert!(
        e.report().to_string().contains("microk8s enable registry") && e.report().to_string().contains("exit code 1"),
        "{e}",
        e = e.report()
    );
    assert_eq!(lab.runner.transcript(), ["host$ microk8s enable registry"]);
    assert!(!lab.record().registry_enabled, "testbed did not enable it");
}

/// A registry that answers `GET /v2/` with 200 on `port`, started in a thread (from a scripted command,
/// which cannot await).
fn answer_v2_on(port: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
}

#[tokio::test]
async fn a_registry_testbed_enabled_is_testbeds_once_it_answers() {
    let port = unused_port();
    let lab = Lab::on_port("enabled", port, Addon::Managed);
    lab.runner.on(
        &["microk8s", "enable", "registry"],
        Reply::effect(move |_, _| {
            answer_v2_on(port);
            Ok(Output::ok("The registry is enabled\n"))
        }),
    );
    let provider =
        lab.another_provider(Addon::Managed).with_ready_timeout(Duration::from_secs(20), Duration::from_millis(50));
    let wanted = [registry_resource(port)];
    let (_, actions) = lab.plan(&wanted).await;
    assert_eq!(actions.len(), 1);

    let (log, entries) = collecting_log();
    provider.apply(&actions[0], &log).await.unwrap_or_else(|e| panic!("{e}", e = e.report()));
    assert!(
        entries.lock().unwrap().iter().any(|e| matches!(e, LogEntry::Api { method, path } if method == "GET" && path.contains(&format!("localhost:{port}/v2/")))),
        "{entries:?}"
    );
    assert!(lab.record().registry_enabled);
    let (observed, actions) = lab.plan(&wanted).await;
    let o = observed.get(&wanted[0].address).expect("the registry answers");
    assert_eq!(o.owner, Owner::Testbed, "{o:?}");
    assert!(actions.is_empty(), "{actions:#?}");
    assert_eq!(lab.runner.transcript(), ["host$ microk8s enable registry"], "run once");
}

// ---------------------------------------------------------------------------------------------------------
// Observation cost: one HEAD per image against the local registry.

/// A TCP proxy in front of a registry that records the request line of every request sent through it.
struct CountingProxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: String) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<String>>> = Default::default();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else { continue };
                let (upstream, seen) = (upstream.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = forward(down, &upstream, &seen).await;
                });
            }
        });
        CountingProxy { port, requests, task }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection both ways, parsing the client's side into requests (request line, headers, a
/// `Content-Length` body skipped) to record each request line.
async fn forward(mut down: TcpStream, upstream: &str, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let (mut dr, mut dw) = down.split();
    let (mut ur, mut uw) = up.split();
    let to_up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut body_left = 0usize;
        loop {
            let n = dr.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            uw.write_all(&buf[..n]).await?;
            let mut chunk = &buf[..n];
            let skip = body_left.min(chunk.len());
            body_left -= skip;
            chunk = &chunk[skip..];
            pending.extend_from_slice(chunk);
            while body_left == 0 {
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { break };
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                seen.lock().unwrap().push(head.lines().next().unwrap_or("").to_owned());
                let length: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                pending.drain(..end + 4);
                let skip = length.min(pending.len());
                pending.drain(..skip);
                body_left = length - skip;
            }
        }
    };
    let to_down = async {
        tokio::io::copy(&mut ur, &mut dw).await?;
        Ok::<_, std::io::Error>(())
    };
    tokio::select! {
        r = to_up => r,
        r = to_down => r,
    }
}

#[tokio::test]
async fn observing_sends_one_head_per_image_to_the_local_registry_and_one_get_to_its_source() {
    let proxy = CountingProxy::start(local().host().to_owned()).await;
    let mirror = CountingProxy::start(upstream().host().to_owned()).await;
    let lab = Lab::with_source(
        "heads",
        proxy.port,
        &format!("127.0.0.1:{}", mirror.port),
        Addon::Unmanaged("simulated".into()),
    );
    let wanted = [
        lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0"),
        lab.image("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.31.3", "kube-apiserver", "v1.31.3"),
        lab.image("karmada-agent", "docker.io/karmada/karmada-agent:v1.15.9", "karmada-agent", "v1.15.9"),
        // Never copied: asked about all the same.
        lab.image("scheduler", "docker.io/karmada/karmada-scheduler:v1.15.9", "karmada-scheduler", "v1.15.9"),
    ];
    lab.converge(&wanted[..3]).await;
    assert!(proxy.take().iter().any(|r| r.starts_with("PUT ")), "the copies went through the proxy");
    assert!(!mirror.take().is_empty(), "and read the sources through the mirror");

    let (observed, actions) = lab.plan(&wanted).await;
    let requests = proxy.take();
    let heads: Vec<&String> = requests.iter().filter(|r| r.starts_with("HEAD ")).collect();
    assert_eq!(heads.len(), wanted.len(), "one HEAD per image: {requests:#?}");
    for r in &wanted {
        let target = &r.spec["target"];
        let (repo, tag) = target.split_once('/').unwrap().1.rsplit_once(':').unwrap();
        let line = format!("HEAD /v2/{repo}/manifests/{tag} HTTP/1.1");
        assert_eq!(heads.iter().filter(|h| ***h == line).count(), 1, "{line}: {requests:#?}");
    }
    let others: Vec<&String> = requests.iter().filter(|r| !r.starts_with("HEAD ")).collect();
    assert_eq!(others, [&"GET /v2/ HTTP/1.1".to_owned()], "besides the HEADs, only the registry check");

    // The source side: one manifest GET per image (the index of the multi-platform one names the digest of
    // its linux/amd64 manifest; that manifest is not fetched).
    let mut sources = mirror.take();
    sources.sort();
    let mut expected: Vec<String> = [
        "etcd/manifests/3.5.16-0",
        "karmada/karmada-agent/manifests/v1.15.9",
        "karmada/karmada-scheduler/manifests/v1.15.9",
        "kube-apiserver/manifests/v1.31.3",
    ]
    .iter()
    .map(|p| format!("GET /v2/{p} HTTP/1.1"))
    .collect();
    expected.sort();
    assert_eq!(sources, expected, "one GET per image against its source");

    for r in &wanted[..3] {
        let o = observed.get(&r.address).unwrap_or_else(|| panic!("{} is observed", r.address));
        assert_eq!((&o.owner, &o.health), (&Owner::Testbed, &Health::Ok), "{}", r.address);
    }
    assert!(observed.get(&wanted[3].address).is_none());
    assert_eq!(
        image_actions(&actions).iter().map(|a| (a.op, a.address.as_str())).collect::<Vec<_>>(),
        [(Op::Create, "image.scheduler")]
    );
}

/// Observed resources of the registry layer are what the file wants plus what testbed owns: another lab's
/// record is not this one's, even in the same registry.
#[tokio::test]
async fn another_record_sees_testbeds_copies_as_someone_elses() {
    let lab = Lab::new("tworecords");
    let wanted = [lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];
    lab.converge(&wanted).await;
    // A lost record (a second checkout of the file, say): the copy is used as it is, never deleted.
    let other = tempfile::tempdir().unwrap();
    let runner = ScriptedRunner::new();
    let provider = Lab::provider_at(&other, &runner, lab.port, &lab.source, Addon::Unmanaged("simulated".into()));
    let obs = provider.observe(&wanted).await.unwrap();
    let found: Vec<&Observed> = obs.resources.iter().filter(|o| o.kind == Kind::Image).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(matches!(found[0].owner, Owner::Other(_)), "{:?}", found[0]);
    let obs = provider.observe(&[]).await.unwrap();
    assert!(obs.resources.iter().all(|o| o.kind != Kind::Image), "not asked about, not owned: {:?}", obs.resources);
}

#[tokio::test]
async fn an_image_renamed_in_the_file_keeps_its_tag_and_stays_testbeds() {
    let lab = Lab::new("rename");
    let before = [lab.image("etcd", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];
    lab.converge(&before).await;
    let digest = lab.record().images["etcd"].digest.clone();

    // Same source and tag, another name: the old name goes, the tag stays and is recorded under the new one.
    let after = [lab.image("store", "registry.k8s.io/etcd:3.5.16-0", "etcd", "3.5.16-0")];
    let (_, actions) = lab.plan(&after).await;
    let images = image_actions(&actions);
    assert_eq!(images.len(), 1, "{actions:#?}");
    assert_eq!((images[0].op, images[0].address.as_str()), (Op::Delete, "image.etcd"));
    let (r, log) = lab.apply(images[0]).await;
    r.unwrap_or_else(|e| panic!("{e}", e = e.report()));
    assert!(!log.iter().any(|e| matches!(e, LogEntry::Api { method, .. } if method == "DELETE")), "{log:#?}");
    let have = engine().head_manifest(&lab.location("etcd", "3.5.16-0")).await.unwrap();
    assert_eq!(have.as_deref(), Some(digest.as_str()), "the tag is still there");
    let record = lab.record();
    assert_eq!(record.images.get("store").map(|i| i.digest.as_str()), Some(digest.as_str()), "{record:?}");
    assert!(!record.images.contains_key("etcd"));
    let (_, actions) = lab.plan(&after).await;
    assert!(image_actions(&actions).is_empty(), "{actions:#?}");
}
