//! A lab for the real Karmada layer: two in-process fake API servers (the host MicroK8s, the Karmada API),
//! kubeconfig files pointing at them in a temporary directory, a scripted karmadactl whose effects change
//! the fakes like the real one changes the real servers, and a log that keeps everything.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_config::Config;
use testbed_karmada::{KarmadaProvider, OWNER_LABEL};
use testbed_kube::fake::{FakeCluster, FakeKube, FakeNamespace, FakeState};
use testbed_kube::KARMADA_NAMESPACE;
use testbed_plan::{Action, Layer, ObservedState, Plan, PlanError};
use testbed_provider::{ActionLog, LogEntry, Provider, ProviderError};

pub const TESTBED: &str = "lab";
pub const TOKEN: &str = "k3x9q2.0a1b2c3d4e5f6g7h";
pub const CA_HASH: &str = "sha256:8f3c1b6e4e0f4fd0b1f2f0f6d2b0a1c3e9c8d7b6a5f4e3d2c1b0a9f8e7d6c5b4";

/// One member of the file: name, address on the bridge, join mode.
pub struct Member(pub &'static str, pub &'static str, pub &'static str);

pub const MEMBER1: Member = Member("member1", "127.0.0.11", "push");
pub const MEMBER2: Member = Member("member2", "127.0.0.12", "push");

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub host: Arc<FakeKube>,
    pub karmada: Arc<FakeKube>,
    pub runner: ScriptedRunner,
    pub log: Arc<Mutex<Vec<LogEntry>>>,
}

pub fn kubeconfig_yaml(server: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file.map(|f| format!("\n    certificate-authority: {f}")).unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: karmada-apiserver
  cluster:
    server: {server}{ca}
contexts:
- name: karmada-apiserver
  context:
    cluster: karmada-apiserver
    user: karmada-admin
current-context: karmada-apiserver
users:
- name: karmada-admin
  user:
    token: not-a-real-credential
"
    )
}

/// A host cluster on which testbed ran `karmadactl init` (labelled namespace).
pub fn host_with_testbed_karmada() -> FakeState {
    let mut s = FakeState::host_with_karmada();
    s.put_namespace(FakeNamespace::new(KARMADA_NAMESPACE).label(OWNER_LABEL, TESTBED));
    s
}

/// A cluster as `karmadactl join` makes it for `m` (endpoint from the member's Karmada kubeconfig), Ready,
/// with testbed's label.
pub fn joined(m: &Member) -> FakeCluster {
    FakeCluster { api_endpoint: format!("https://{}:16443", m.1), ..FakeCluster::ready(m.0) }
        .label(OWNER_LABEL, TESTBED)
}

impl Lab {
    /// Starts both fakes and writes both kubeconfigs.
    pub async fn start(host: FakeState, karmada: FakeState) -> Lab {
        let host = Arc::new(FakeKube::start(host).await.unwrap());
        let karmada = Arc::new(FakeKube::start(karmada).await.unwrap());
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
            host,
            karmada,
            runner: ScriptedRunner::new(),
            log: Arc::default(),
        };
        std::fs::write(lab.host_kubeconfig(), kubeconfig_yaml(lab.host.url(), None)).unwrap();
        let url = lab.karmada.url().to_owned();
        lab.write_karmada_kubeconfig(&url, None);
        lab
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("karmada")
    }

    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.dir.path().join("kubeconfigs")
    }

    /// Where the provider keeps its downloads (the CRD archive).
    pub fn downloads_dir(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    pub fn host_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("host.config")
    }

    pub fn karmada_kubeconfig(&self) -> PathBuf {
        self.data_dir().join("karmada-apiserver.config")
    }

    pub fn write_karmada_kubeconfig(&self, server: &str, ca_file: Option<&str>) {
        std::fs::create_dir_all(self.data_dir()).unwrap();
        std::fs::write(self.karmada_kubeconfig(), kubeconfig_yaml(server, ca_file)).unwrap();
    }

    /// The file: the bridge on 127.0.0.1/8 (so the fakes' 127.0.0.1 is the advertise address), the data
    /// and kubeconfig directories in the lab's temporary directory.
    pub fn config(&self, members: &[Member]) -> Config {
        let mut text = format!(
            "name = \"{TESTBED}\"\n[host]\nkubeconfig_dir = \"{}\"\n[lxd]\nipv4_address = \"127.0.0.1/8\"\n[karmada]\ndata_dir = \"{}\"\n",
            self.kubeconfig_dir().display(),
            self.data_dir().display()
        );
        // The members' kubeconfigs, as the MicroK8s layer writes them before a membership is made.
        std::fs::create_dir_all(self.kubeconfig_dir()).unwrap();
        for m in members {
            for file in [format!("{}.config", m.0), format!("{}-karmada.config", m.0)] {
                std::fs::write(
                    self.kubeconfig_dir().join(file),
                    kubeconfig_yaml(&format!("https://{}:16443", m.1), None),
                )
                .unwrap();
            }
        }
        for (i, m) in members.iter().enumerate() {
            text.push_str(&format!(
                "[[members]]\nname = \"{}\"\napi_port = {}\nipv4 = \"{}\"\njoin_mode = \"{}\"\n",
                m.0,
                16441 + i,
                m.1,
                m.2
            ));
        }
        testbed_config::parse(&self.dir.path().join("testbed.toml"), &text).expect("a valid file")
    }

    /// The provider for `config`, with its downloads directory in the lab, the release's CRD archive
    /// already fetched there (so the scripted runs do not download it).
    pub fn provider(&self, config: &Config) -> KarmadaProvider {
        let mut cx = testbed_steps::Context::new(config);
        cx.downloads = self.downloads_dir().display().to_string();
        std::fs::create_dir_all(self.downloads_dir()).unwrap();
        std::fs::write(cx.crd_archive(), "the release's crds.tar.gz").unwrap();
        self.runner.on(&["mkdir", "-p"], Reply::ok(""));
        assert_eq!(PathBuf::from(&cx.karmada_kubeconfig), self.karmada_kubeconfig());
        KarmadaProvider::new(
            Arc::new(self.runner.clone()),
            cx,
            TESTBED.to_owned(),
            self.host_kubeconfig(),
            self.karmada_kubeconfig(),
        )
        .with_wait(Duration::from_secs(5), Duration::from_millis(20))
    }

    pub fn action_log(&self) -> ActionLog {
        let log = self.log.clone();
        ActionLog::new(move |e| log.lock().unwrap().push(e))
    }

    /// Everything logged so far, as one text.
    pub fn logged(&self) -> String {
        format!("{:?}", self.log.lock().unwrap())
    }

    /// `karmadactl join NAME ...` adds NAME's Cluster (Push, endpoint from `m`) to the Karmada fake, without
    /// a label and with the given Ready state; it prints what karmadactl prints.
    pub fn script_join(&self, m: &Member, cluster: FakeCluster) {
        let karmada = self.karmada.clone();
        let name = m.0;
        self.runner.on(
            &["karmadactl", "join", name],
            Reply::effect(move |_, _| {
                karmada.update(|s| s.put_cluster(cluster.clone()));
                Ok(Output::ok(format!("cluster({name}) is joined successfully\n")))
            }),
        );
    }

    /// `karmadactl unjoin NAME ...` removes NAME's Cluster.
    pub fn script_unjoin(&self, name: &'static str) {
        let karmada = self.karmada.clone();
        self.runner.on(
            &["karmadactl", "unjoin", name],
            Reply::effect(move |_, _| {
                karmada.update(|s| s.remove_cluster(name));
                Ok(Output::ok(""))
            }),
        );
    }

    pub async fn observe(&self, provider: &KarmadaProvider, config: &Config) -> Result<ObservedState, ProviderError> {
        let desired = karmada_desired(config, &ObservedState::default());
        let wanted: Vec<_> = desired.resources.values().cloned().collect();
        let obs = provider.observe(&wanted).await?;
        let mut state = ObservedState::default();
        for o in obs.resources {
            state.insert(o);
        }
        Ok(state)
    }

    /// The plan of the Karmada layer alone (the other layers are not observed here).
    pub async fn plan(&self, provider: &KarmadaProvider, config: &Config) -> Result<Plan, PlanError> {
        let observed = self.observe(provider, config).await.expect("observed");
        testbed_plan::plan(&karmada_desired(config, &observed), &observed)
    }

    /// Applies every action of `plan` in order.
    pub async fn apply(&self, provider: &KarmadaProvider, plan: &Plan) -> Result<(), ProviderError> {
        for n in plan.order() {
            provider.apply(&plan.graph[n], &self.action_log()).await?;
        }
        Ok(())
    }
}

/// The desired state of the Karmada layer only.
pub fn karmada_desired(config: &Config, observed: &ObservedState) -> testbed_plan::DesiredState {
    let mut d = testbed_plan::desired::build(config, observed);
    d.resources.retain(|_, r| r.kind.layer() == Layer::Karmada);
    d
}

pub fn actions(plan: &Plan) -> Vec<&Action> {
    plan.order().into_iter().map(|n| &plan.graph[n]).collect()
}

/// `op address` lines of a plan, in order.
pub fn lines(plan: &Plan) -> Vec<String> {
    actions(plan).iter().map(|a| format!("{} {}", a.op.name(), a.address)).collect()
}
