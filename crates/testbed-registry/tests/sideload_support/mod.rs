//! A fake world for the side-load tests: member containers (a [`ContainerView`]) and each member's MicroK8s
//! image store, changed by scripted `microk8s` commands; docker-archive tars built with the host's `tar`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_plan::{desired, Action, Kind, Observed, ObservedState, Owner, Plan, PlanError};
use testbed_provider::{ActionLog, ContainerFacts, ContainerView, LogEntry, Provider, ProviderError};
use testbed_registry::{Addon, RegistryProvider};
use testbed_steps::Where;

/// Member containers as a test sets them.
#[derive(Default)]
pub struct FakeContainers(Mutex<Vec<ContainerFacts>>);

impl FakeContainers {
    pub fn running(names: &[&str]) -> Arc<FakeContainers> {
        let c = FakeContainers::default();
        for n in names {
            c.put(n, true, &format!("uuid-{n}-1"));
        }
        Arc::new(c)
    }

    /// Adds or changes a container.
    pub fn put(&self, name: &str, running: bool, identity: &str) {
        let mut all = self.0.lock().unwrap();
        all.retain(|c| c.name != name);
        all.push(ContainerFacts {
            name: name.into(),
            running,
            identity: identity.into(),
            owned: true,
            ..Default::default()
        });
    }

    pub fn remove(&self, name: &str) {
        self.0.lock().unwrap().retain(|c| c.name != name);
    }
}

#[async_trait]
impl ContainerView for FakeContainers {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// containerd's name for a `RepoTags` entry, written here independently of the code under test:
/// `flask-demo:2.0` → `docker.io/library/flask-demo:2.0`.
pub fn ctr_name(tag: &str) -> String {
    let (name, t) = match tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (tag, "latest"),
    };
    let full = match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => name.to_owned(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    format!("{full}:{t}")
}

/// A small docker-archive (`docker save` layout: manifest.json, the config, one layer tar) whose
/// manifest names `repo_tags`, written to `path` with the host's `tar`. Returns its bytes.
pub fn docker_archive(path: &Path, repo_tags: &[&str]) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("layer")).unwrap();
    std::fs::write(w.join("layer/app.py"), format!("print('hello from {repo_tags:?}')\n")).unwrap();
    let ok = std::process::Command::new("tar")
        .args(["-cf", "layer.tar", "-C", "layer", "app.py"])
        .current_dir(w)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar the layer");
    std::fs::write(
        w.join("config.json"),
        r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["python","/app.py"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .unwrap();
    let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": repo_tags, "Layers": ["layer.tar"] }]);
    std::fs::write(w.join("manifest.json"), manifest.to_string()).unwrap();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(path)
        .args(["manifest.json", "config.json", "layer.tar"])
        .current_dir(w)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar the archive");
    std::fs::read(path).unwrap()
}

/// The `RepoTags` of a docker-archive's manifest, read with the host's `tar` (what `ctr import` names).
pub fn repo_tags(archive: &[u8]) -> Result<Vec<String>, String> {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("a.tar");
    std::fs::write(&f, archive).unwrap();
    let out = std::process::Command::new("tar").arg("-xOf").arg(&f).arg("manifest.json").output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(m.as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["RepoTags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect())
}

/// Each member's MicroK8s image store (containerd's names), shared with the scripted commands.
pub type Images = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

fn member(at: &Where) -> String {
    match at {
        Where::Member(m) => m.clone(),
        Where::Host => "host".into(),
    }
}

/// Scripts `mkdir -p`, `rm -f` and the `microk8s` commands side-loading uses, over `images`. The import
/// reads the archive most recently pushed to its path in that member (from `runner`'s pushes) and adds the
/// names in its manifest, as `ctr import` does.
pub fn script(runner: &ScriptedRunner, images: &Images) {
    runner.on(&["mkdir", "-p"], Reply::ok(""));
    runner.on(&["rm", "-f"], Reply::ok(""));
    let i = images.clone();
    runner.on(
        &["microk8s", "ctr", "images", "ls", "-q"],
        Reply::effect(move |at, _| {
            let all = i.lock().unwrap().get(&member(at)).cloned().unwrap_or_default();
            Ok(Output::ok(all.into_iter().map(|n| n + "\n").collect::<String>()))
        }),
    );
    let i = images.clone();
    let pushes = runner.clone();
    runner.on(
        &["microk8s", "images", "import"],
        Reply::effect(move |at, argv| {
            let m = member(at);
            let path = argv.get(3).cloned().unwrap_or_default();
            let Some(p) = pushes.pushes().into_iter().rev().find(|p| p.member == m && p.path == path) else {
                return Ok(Output::failed(1, format!("Error: failed to read {path}: No such file or directory")));
            };
            match repo_tags(&p.content) {
                Ok(tags) => {
                    let mut all = i.lock().unwrap();
                    let names = all.entry(m).or_default();
                    for t in &tags {
                        names.insert(ctr_name(t));
                    }
                    Ok(Output::ok(format!("Importing image(s) from {path}\n")))
                }
                Err(e) => Ok(Output::failed(1, format!("ctr: unrecognized image format: {e}"))),
            }
        }),
    );
    let i = images.clone();
    runner.on(
        &["microk8s", "ctr", "images", "rm"],
        Reply::effect(move |at, argv| {
            let mut all = i.lock().unwrap();
            let names = all.entry(member(at)).or_default();
            for n in &argv[4..] {
                if !names.remove(n) {
                    return Ok(Output::failed(1, format!("ctr: image \"{n}\": not found")));
                }
            }
            Ok(Output::ok(argv[4..].join("\n") + "\n"))
        }),
    );
}

/// A test world: a config directory with the file and its archive, the fake containers and images, the
/// scripted runner and the provider under test.
pub struct World {
    pub dir: tempfile::TempDir,
    pub runner: ScriptedRunner,
    pub images: Images,
    pub containers: Arc<FakeContainers>,
    pub provider: RegistryProvider,
    pub config: testbed_config::Config,
}

/// The file: members `members`, the image `flask-demo` (source `flask-demo:2.0`) side-loaded from
/// `images/flask-demo-2.0.tar` (relative), or without an archive when `archive` is None.
pub fn file(members: &[&str], archive: Option<&str>) -> String {
    let mut s = "name = \"sl\"\n\n".to_owned();
    for (i, m) in members.iter().enumerate() {
        s.push_str(&format!("[[members]]\nname = \"{m}\"\napi_port = {}\n\n", 26441 + i));
    }
    s.push_str("[[images]]\nname = \"flask-demo\"\nsource = \"flask-demo:2.0\"\nsideload = true\n");
    if let Some(a) = archive {
        s.push_str(&format!("archive = \"{a}\"\n"));
    }
    s
}

impl World {
    pub fn new(members: &[&str], text: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("testbed.toml");
        std::fs::write(&path, text).unwrap();
        let config = testbed_config::parse(&path, text).expect("valid test file");
        let runner = ScriptedRunner::new();
        let images: Images = Default::default();
        script(&runner, &images);
        let containers = FakeContainers::running(members);
        let provider = World::provider_for(&config, &runner, &containers, dir.path());
        World { dir, runner, images, containers, provider, config }
    }

    pub fn provider_for(
        config: &testbed_config::Config,
        runner: &ScriptedRunner,
        containers: &Arc<FakeContainers>,
        dir: &Path,
    ) -> RegistryProvider {
        RegistryProvider::new(
            Arc::new(runner.clone()),
            testbed_steps::Context::new(config),
            config.file.registry.clone(),
            dir.join(".testbed/registry.json"),
            Addon::Unmanaged("the microk8s layer is simulated in this test".into()),
        )
        .expect("provider")
        .with_containers(containers.clone())
        .with_base_dir(config.base_dir())
    }

    pub fn archive_path(&self) -> PathBuf {
        self.dir.path().join("images/flask-demo-2.0.tar")
    }

    /// Writes the archive the file names, holding `repo_tags`; its bytes.
    pub fn write_archive(&self, repo_tags: &[&str]) -> Vec<u8> {
        docker_archive(&self.archive_path(), repo_tags)
    }

    /// Observes the file's side-loads (and testbed's recorded ones). The provider also looks for the local
    /// registry on port 32000 (the test environment may run one): only side-loads are kept.
    pub async fn observe(&self) -> Result<ObservedState, ProviderError> {
        let skeleton = desired::build(&self.config, &ObservedState::default());
        let wanted: Vec<_> = skeleton.resources.values().filter(|r| r.kind == Kind::Sideload).cloned().collect();
        let obs = self.provider.observe(&wanted).await?;
        let mut state = ObservedState::default();
        for o in obs.resources.into_iter().filter(|o| o.kind == Kind::Sideload) {
            state.insert(o);
        }
        Ok(state)
    }

    /// [`World::observe`], with the rest of the lab (containers, MicroK8s, ...) present as `config` wants it,
    /// so that a plan holds only what side-loading changes.
    async fn observe_in_converged_lab(&self, config: &testbed_config::Config) -> ObservedState {
        let mut state = self.observe().await.expect("observe");
        for r in desired::build(config, &ObservedState::default()).resources.values() {
            if r.kind != Kind::Sideload {
                state.insert(Observed::new(
                    r.address.clone(),
                    r.kind,
                    r.member.as_deref(),
                    Owner::Testbed,
                    r.spec.clone(),
                ));
            }
        }
        state
    }

    /// The plan's side-load actions towards `config`, everything else being converged.
    pub async fn plan_for(&self, config: &testbed_config::Config) -> Result<Vec<Action>, PlanError> {
        let observed = self.observe_in_converged_lab(config).await;
        let d = desired::build(config, &observed);
        let plan: Plan = testbed_plan::plan(&d, &observed)?;
        Ok(plan.actions().into_iter().filter(|a| a.kind == Kind::Sideload).cloned().collect())
    }

    pub async fn plan(&self) -> Result<Vec<Action>, PlanError> {
        self.plan_for(&self.config).await
    }

    pub fn record(&self) -> testbed_registry::record::Contents {
        testbed_registry::record::Record::at(self.dir.path().join(".testbed/registry.json")).read().unwrap()
    }

    pub fn member_images(&self, m: &str) -> BTreeSet<String> {
        self.images.lock().unwrap().get(m).cloned().unwrap_or_default()
    }

    /// The scripted transcript of one member (`m1$ ...` lines).
    pub fn transcript_of(&self, m: &str) -> Vec<String> {
        let prefix = format!("{m}$ ");
        self.runner.transcript().into_iter().filter(|l| l.starts_with(&prefix)).collect()
    }
}

/// An action log that keeps what it is told.
pub fn capture() -> (ActionLog, Arc<Mutex<Vec<LogEntry>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (ActionLog::new(move |e| s.lock().unwrap().push(e)), seen)
}

/// Applies `action` with a discarded log.
pub async fn apply(p: &RegistryProvider, action: &Action) -> Result<(), ProviderError> {
    p.apply(action, &ActionLog::discard()).await
}
