//! The real Karmada layer: the control plane on the host MicroK8s (`karmadactl init`/`deinit`) and each
//! member's membership (push: `karmadactl join`/`unjoin`; pull: `karmadactl token create` + `register`/
//! `unregister`).
//!
//! The commands are the catalogue's (`testbed_steps::steps`), run through a [`testbed_command::CommandRunner`];
//! the catalogue's API calls (waits, labels, an endpoint patch) are made here through `testbed-kube`.
//!
//! # Observation
//!
//! - The control plane: the Deployments in `karmada-system` on the host cluster (through the host
//!   kubeconfig). Its spec keys are read from the live objects where they are written down:
//!   - `version`: the tag of the Karmada images (karmada-controller-manager's, else another `karmada-*`
//!     component's); `karmadactl init` tags them with its own release;
//!   - `image_registry`: the registry part of that image (`localhost:32000`);
//!   - `api_port`: the node port of the `karmada-apiserver` Service (init's `--port`), else the port of the
//!     Karmada kubeconfig's `server`;
//!   - `advertise_address`: the host of the Karmada kubeconfig's `server`: init writes
//!     `https://<--karmada-apiserver-advertise-address>:<--port>` there, and no live object carries it;
//!   - `data_dir`: no live object carries it either. It is where the Karmada kubeconfig was found: the
//!     provider is given `<data_dir>/karmada-apiserver.config`, so a kubeconfig there means init wrote its
//!     data there. When the control plane is on the host but that kubeconfig is missing (the file's
//!     `data_dir` changed, or the directory was removed), the key reads
//!     `(no karmada-apiserver.config at <path>)`: the plan replaces the control plane rather than
//!     pretend the data is where the file says.
//! - Memberships: every `Cluster` on the Karmada API (through the Karmada kubeconfig): `mode` (push/pull)
//!   and, in push mode, `api_endpoint`; a Cluster whose `Ready` condition is not `True` needs repair, with
//!   Karmada's reason and message.
//! - No Karmada kubeconfig: no control plane, no memberships (a fresh machine), unless the host cluster
//!   shows one (see `data_dir`). A Karmada kubeconfig that `karmadactl deinit` left behind, on a host
//!   without the control plane, is ignored the same way.
//! - A Karmada API that does not answer, or fails TLS, while its kubeconfig exists (or a host cluster
//!   that cannot be read then): the layer's state is unknown ([`ErrorKind::StateUnknown`]), with what
//!   to check; the planner leaves the layer out of the plan instead of planning a second init or join.
//!
//! # Ownership
//!
//! testbed labels what it made with [`OWNER_LABEL`]` = <testbed name>` (the file's `name`): the
//! `karmada-system` namespace right after `karmadactl init` (also when init failed half-way, so that the
//! next apply repairs it instead of calling it foreign), and each `Cluster` right after `join`/`register`
//! (before waiting for Ready, for the same reason). A control plane or a Cluster without the label, or with
//! another testbed's name in it, is someone else's: reported as [`Owner::Other`], so the planner reports a
//! conflict and never changes it; deinit, unjoin, unregister and the endpoint patch check the label again
//! before they act.

pub mod drill;
mod token;
mod workloads;

pub use workloads::{placed_on, HEALTHY, NOT_HEALTHY, PLACED_ON_MEMBER};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use testbed_command::{run_step, CommandRunner, Values};
use testbed_config::MEMBER_API_PORT;
use testbed_kube::{failover_policy_spec, FAILOVER_POLICY};
use testbed_kube::{
    ApiConfig, Clients, ClusterStatus, ControlPlaneReport, KubeClient, KubeObserveError, Network, SyncMode,
    KARMADA_NAMESPACE,
};
use testbed_plan::{Action, Address, ForeignUse, Health, Kind, Layer, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{ActionLog, ErrorKind, LayerObservation, LogEntry, Provider, ProviderError};
use testbed_steps::{Arg, Context, KarmadactlVerb, Purpose, Role, Step};

/// The label testbed puts on the `karmada-system` namespace and on each `Cluster` it registered, as on every
/// object it applies; its value is the testbed's name.
pub use testbed_plan::workload::OWNER_LABEL;

/// How long a wait (control-plane Deployments available, a Cluster Ready) lasts by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(180);
/// How often a wait looks again by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// The Service `karmadactl init` exposes the Karmada API server with.
const APISERVER_SERVICE: &str = "karmada-apiserver";

const CONTROL_PLANE: &str = "a Karmada control plane on the host cluster";

/// The real Karmada layer.
pub struct KarmadaProvider {
    runner: Arc<dyn CommandRunner>,
    cx: Context,
    testbed: String,
    host_kubeconfig: PathBuf,
    karmada_kubeconfig: PathBuf,
    wait: Duration,
    poll: Duration,
    network: Network,
    /// One client per kubeconfig (host cluster, Karmada), kept for the provider's life.
    clients: Clients,
    /// Where the host's files are (`/` on a real host; a simulated host's directory).
    root: PathBuf,
}

impl fmt::Debug for KarmadaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KarmadaProvider")
            .field("testbed", &self.testbed)
            .field("host_kubeconfig", &self.host_kubeconfig)
            .field("karmada_kubeconfig", &self.karmada_kubeconfig)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// What a catalogue call tells the steps after it.
enum Flow {
    Continue,
    /// Nothing to remove: skip the command that follows (unjoin, unregister, deinit).
    SkipNext,
}

/// How long `karmadactl register` may take: longer than its own two waits of 5 minutes each.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(660);

/// `karmadactl register` prints "[preflight] Some fatal errors occurred" and exits 0 when its pre-flight
/// fails (karmada v1.15.9 pkg/karmadactl/register/register.go returns nil after printing the errors): that
/// is a failure, quoting the pre-flight's lines.
fn register_preflight(out: &testbed_command::Output) -> Result<(), ProviderError> {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    if !text.contains("Some fatal errors occurred") {
        return Ok(());
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("[preflight]") || l.starts_with("[ERROR") || l.contains("error"))
        .filter(|l| !l.contains("Running pre-flight checks"))
        .collect();
    Err(ProviderError::failed(format!(
        "`karmadactl register` exited 0 but its pre-flight failed: {}",
        lines.join("; ")
    )))
}

/// A duration as a person reads it.
fn shown(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Karmada is there (its kubeconfig exists, or the host shows its control plane) but cannot be read now:
/// the plan leaves the layer alone rather than guess it missing (which would init or join again).
fn state_unknown(message: String, hint: String) -> ProviderError {
    ProviderError::state_unknown(message).with_hint(hint)
}

fn failed(message: String, hint: impl Into<String>) -> ProviderError {
    ProviderError::failed(message).with_hint(hint)
}

/// `(host, port)` of a kubeconfig `server` URL.
fn server_host_port(server: &str) -> (Option<String>, Option<u16>) {
    let rest = server.split_once("://").map(|(_, r)| r).unwrap_or(server);
    let authority = rest.split('/').next().unwrap_or("");
    match authority.rsplit_once(':') {
        Some((host, port)) => (Some(host.trim_matches(['[', ']']).to_owned()), port.parse().ok()),
        None if !authority.is_empty() => (Some(authority.to_owned()), None),
        None => (None, None),
    }
}

/// `(registry, tag)` of an image reference such as `localhost:32000/karmada-scheduler:v1.15.9`.
fn image_parts(image: &str) -> Option<(String, String)> {
    let (registry, last) = image.rsplit_once('/')?;
    let (_, tag) = last.split_once(':')?;
    Some((registry.to_owned(), tag.to_owned()))
}

/// The Karmada images' registry and tag: karmada-controller-manager's first, else another Karmada
/// component's (kube-apiserver and kube-controller-manager have Kubernetes' tags).
fn karmada_image(report: &ControlPlaneReport) -> Option<(String, String)> {
    ["karmada-controller-manager", "karmada-scheduler", "karmada-webhook", "karmada-aggregated-apiserver"]
        .iter()
        .filter_map(|name| report.get(name))
        .flat_map(|c| c.images.iter())
        .find_map(|image| image_parts(image))
}

fn sync_mode_name(mode: Option<&SyncMode>) -> String {
    match mode {
        Some(SyncMode::Push) => "push".into(),
        Some(SyncMode::Pull) => "pull".into(),
        Some(SyncMode::Other(other)) => other.to_lowercase(),
        None => "unknown".into(),
    }
}

impl KarmadaProvider {
    /// A provider that runs karmadactl through `runner` with the catalogue's paths from `cx`, reads the host
    /// cluster through `host_kubeconfig` and Karmada through `karmada_kubeconfig`, and labels what it makes
    /// with `testbed_name`.
    pub fn new(
        runner: Arc<dyn CommandRunner>,
        cx: Context,
        testbed_name: String,
        host_kubeconfig: PathBuf,
        karmada_kubeconfig: PathBuf,
    ) -> KarmadaProvider {
        KarmadaProvider {
            runner,
            cx,
            testbed: testbed_name,
            host_kubeconfig,
            karmada_kubeconfig,
            wait: DEFAULT_WAIT,
            poll: DEFAULT_POLL,
            network: Network::Direct,
            clients: Clients::default(),
            root: PathBuf::from("/"),
        }
    }

    /// The host's files are under `root` (a simulated host's directory): the kubeconfigs and init's CA
    /// are read there, and still named by their paths on the host.
    pub fn with_host_root(mut self, root: PathBuf) -> KarmadaProvider {
        self.root = root;
        self
    }

    /// Where the host file `path` is read and written.
    fn on_host(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Records the SHA-256 of the host file `path` in `PATH.sha256` (0644) the first time; a copy that
    /// differs later is used, with a warning (trust on first use: the publisher gives no checksum).
    fn record_checksum(&self, a: &Address, path: &str, log: &ActionLog) -> Result<(), ProviderError> {
        use sha2::Digest as _;
        let file = self.on_host(Path::new(path));
        let bytes = std::fs::read(&file).map_err(|e| {
            failed(format!("{a}: cannot read {path}"), "apply again: the download is fetched again").caused_by(e)
        })?;
        let sum = format!("{:x}", sha2::Sha256::digest(&bytes));
        let record = self.on_host(Path::new(&format!("{path}.sha256")));
        match std::fs::read_to_string(&record) {
            Ok(recorded) if recorded.split_whitespace().next() == Some(sum.as_str()) => {
                log.note(format!("{path}: SHA-256 {sum}, as recorded on first download"));
            }
            Ok(recorded) => {
                let first = recorded.split_whitespace().next().unwrap_or_default().to_owned();
                tracing::warn!("{a}: {path} has SHA-256 {sum}, but the first download had {first}");
                log.warn(format!(
                    "{path} has SHA-256 {sum}, but the first download had {first}: the release's archive changed, or the download is not the release's; remove {path}.sha256 to accept it"
                ));
            }
            Err(_) => {
                std::fs::write(
                    &record,
                    format!("{sum}  {}\n", Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or_default()),
                )
                .map_err(|e| {
                    failed(
                        format!("{a}: cannot record the checksum in {path}.sha256"),
                        "check that the host's downloads directory is writable",
                    )
                    .caused_by(e)
                })?;
                log.note(format!("{path}: SHA-256 {sum} recorded on first download"));
            }
        }
        Ok(())
    }

    /// API clients connect through `network` (a simulated world's; [`Network::Direct`] on a real host).
    pub fn with_network(mut self, network: Network) -> KarmadaProvider {
        self.network = network;
        self
    }

    /// Waits (Deployments available, a Cluster Ready) last at most `timeout`, looking every `poll`.
    pub fn with_wait(mut self, timeout: Duration, poll: Duration) -> KarmadaProvider {
        self.wait = timeout;
        self.poll = poll;
        self
    }

    // ---------------------------------------------------------------------------------------------
    // Clients
    // ---------------------------------------------------------------------------------------------

    /// A client from the kubeconfig at `path`; `None` when the file does not exist.
    fn client(&self, path: &Path, what: &str) -> Result<Option<(KubeClient, ApiConfig)>, ProviderError> {
        let text =
            match std::fs::read_to_string(self.on_host(path)) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(state_unknown(
                    format!("cannot read the {what} kubeconfig {}: permission denied", path.display()),
                    "run testbed as root: MicroK8s and karmadactl init write their kubeconfigs readable by root only"
                        .into(),
                )),
                Err(e) => {
                    return Err(state_unknown(
                        format!("cannot read the {what} kubeconfig {}", path.display()),
                        "check the file and its directory".into(),
                    )
                    .caused_by(e))
                }
            };
        let config = ApiConfig::from_kubeconfig_yaml(&text, None)
            .map(|c| c.with_network(self.network.clone()))
            .map_err(|e| {
                state_unknown(
                    format!("the {what} kubeconfig {} cannot be used", path.display()),
                    format!(
                        "{} is written by testbed's steps; remove it and apply again to have it written anew",
                        path.display()
                    ),
                )
                .caused_by(e)
            })?;
        let client = self.clients.for_kubeconfig(&text, &config).map_err(|e| {
            state_unknown(format!("the {what} kubeconfig {} cannot be used", path.display()), "check the file".into())
                .caused_by(e)
        })?;
        Ok(Some((client, config)))
    }

    fn host_client(&self) -> Result<Option<KubeClient>, ProviderError> {
        Ok(self.client(&self.host_kubeconfig, "host cluster")?.map(|(c, _)| c))
    }

    /// The Karmada API's client; an error when its kubeconfig is missing (for steps that need it).
    fn karmada_client(&self, address: &Address) -> Result<KubeClient, ProviderError> {
        match self.client(&self.karmada_kubeconfig, "Karmada")? {
            Some((c, _)) => Ok(c),
            None => Err(ProviderError::precondition(format!(
                "{address}: the Karmada kubeconfig {} does not exist: the control plane is not installed",
                self.karmada_kubeconfig.display()
            ))
            .with_hint("apply karmada.control_plane first")),
        }
    }

    fn require_host(&self, address: &Address) -> Result<KubeClient, ProviderError> {
        self.host_client()?.ok_or_else(|| {
            ProviderError::precondition(format!(
                "{address}: the host cluster's kubeconfig {} does not exist",
                self.host_kubeconfig.display()
            ))
            .with_hint("apply host.microk8s first")
        })
    }

    fn owner_of_labels(&self, labels: Option<&BTreeMap<String, String>>, what: &str, marker: &str) -> Owner {
        match labels.and_then(|l| l.get(OWNER_LABEL)) {
            Some(v) if *v == self.testbed => Owner::Testbed,
            Some(other) => {
                Owner::Other(format!("{what} that belongs to another testbed ({marker} {OWNER_LABEL}={other})"))
            }
            None => Owner::Other(format!("{what} without testbed's label")),
        }
    }

    fn cluster_owner(&self, c: &ClusterStatus) -> Owner {
        self.owner_of_labels(Some(&c.labels), &format!("a cluster named {} registered in Karmada", c.name), "label")
    }

    // ---------------------------------------------------------------------------------------------
    // Observation
    // ---------------------------------------------------------------------------------------------

    fn karmada_unavailable(&self, e: KubeObserveError, report: &ControlPlaneReport) -> ProviderError {
        let host = self.host_kubeconfig.display();
        let karmada = self.karmada_kubeconfig.display();
        let components = if report.is_healthy() {
            String::new()
        } else {
            format!(
                " On the host cluster, the control plane is not healthy: {}.",
                report.to_string().replace('\n', "; ")
            )
        };
        let hint = if e.is_tls() {
            format!(
                "{karmada} does not belong to this Karmada API server: karmadactl init makes a new CA each time, so a kubeconfig from an earlier init no longer fits. If the control plane was initialised again by hand, its kubeconfig is in that init's --karmada-data directory; if it is testbed's, `testbed destroy --target karmada.control_plane` and apply again.{components}"
            )
        } else {
            format!(
                "karmada-apiserver runs on the host cluster behind the NodePort Service karmada-system/karmada-apiserver (port {port}). Check its pods: `kubectl --kubeconfig {host} -n karmada-system get pods,svc`; for a pod that is not Running, `kubectl --kubeconfig {host} -n karmada-system describe pod <pod>` and its logs (`logs deploy/karmada-apiserver`); and that the server in {karmada} answers from this host.{components}",
                port = self.cx.karmada_api_port
            )
        };
        state_unknown("the Karmada API could not be read".into(), hint).caused_by(e)
    }

    async fn observe_layer(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        let mut out = LayerObservation::default();
        let karmada = self.client(&self.karmada_kubeconfig, "Karmada")?;
        let host = match (self.host_client(), &karmada) {
            (Ok(h), _) => h,
            // No Karmada kubeconfig: a host that cannot be read yet is a machine without Karmada.
            (Err(_), None) => return Ok(out),
            (Err(e), Some(_)) => return Err(e),
        };
        let Some(host) = host else {
            if karmada.is_some() {
                return Err(state_unknown(
                    format!(
                        "the Karmada kubeconfig {} exists but the host cluster's kubeconfig {} does not",
                        self.karmada_kubeconfig.display(),
                        self.host_kubeconfig.display()
                    ),
                    "the Karmada control plane runs in the host MicroK8s: check that MicroK8s is installed (`microk8s status`)".into(),
                ));
            }
            return Ok(out);
        };
        let report = match testbed_kube::control_plane(&host).await {
            Ok(r) => r,
            Err(_) if karmada.is_none() => return Ok(out),
            Err(e) => {
                return Err(state_unknown(
                    "the host cluster could not be read".into(),
                    format!("the Karmada control plane runs in the host MicroK8s: check `microk8s status` and `kubectl --kubeconfig {} get nodes`", self.host_kubeconfig.display()),
                )
                .caused_by(e))
            }
        };
        if report.is_absent() {
            // A fresh host, or a Karmada kubeconfig that `karmadactl deinit` left behind.
            return Ok(out);
        }

        // The control plane.
        let wanted_cp = wanted.iter().find(|r| r.kind == Kind::KarmadaControlPlane);
        let address = wanted_cp
            .map(|r| r.address.clone())
            .unwrap_or_else(|| Address::new(Kind::KarmadaControlPlane, &["control_plane"]));
        let labels = testbed_kube::namespace_labels(&host, KARMADA_NAMESPACE).await.map_err(|e| {
            state_unknown("the host cluster could not be read".into(), "check the host MicroK8s".into()).caused_by(e)
        })?;
        let owner = self.owner_of_labels(labels.as_ref(), CONTROL_PLANE, "label on the karmada-system namespace:");
        let owner = match owner {
            Owner::Other(s) if labels.as_ref().is_none_or(|l| !l.contains_key(OWNER_LABEL)) => {
                Owner::Other(format!("{s} on the karmada-system namespace"))
            }
            o => o,
        };
        let mut spec = Spec::new();
        if let Some((registry, tag)) = karmada_image(&report) {
            spec.insert("version".into(), tag);
            spec.insert("image_registry".into(), registry);
        }
        let server = karmada.as_ref().map(|(_, c)| c.server.clone());
        let (server_host, server_port) = server.as_deref().map(server_host_port).unwrap_or((None, None));
        let node_port = testbed_kube::service_node_ports(&host, KARMADA_NAMESPACE, APISERVER_SERVICE)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.first().copied());
        if let Some(port) = node_port.map(|p| p.to_string()).or(server_port.map(|p| p.to_string())) {
            spec.insert("api_port".into(), port);
        }
        if let Some(h) = server_host {
            spec.insert("advertise_address".into(), h);
        }
        let dir = self.karmada_kubeconfig.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let data_dir = if karmada.is_some() {
            match wanted_cp.and_then(|r| r.spec.get("data_dir")) {
                Some(w) if w.trim_end_matches('/') == dir.trim_end_matches('/') => w.clone(),
                _ => dir,
            }
        } else {
            format!("(no karmada-apiserver.config at {})", self.karmada_kubeconfig.display())
        };
        spec.insert("data_dir".into(), data_dir);
        let command = report.get(CONTROLLER_MANAGER).map(|c| c.command.as_slice()).unwrap_or_default();
        spec.insert("failover".into(), failover_switched_on(command).to_string());
        let health = if report.is_healthy() {
            Health::Ok
        } else {
            Health::NeedsRepair(format!("the control plane is not healthy: {}", report.to_string().replace('\n', "; ")))
        };
        let mut control_plane =
            Observed { address, kind: Kind::KarmadaControlPlane, member: None, owner, spec, health, in_use_by: vec![] };

        // Memberships. A Cluster that is not this testbed's (registered by hand, by a script, by another
        // testbed) uses the control plane: it is reported on it, so that a destroy keeps the control plane.
        let Some((karmada, _)) = karmada else {
            out.resources.push(control_plane);
            return Ok(out);
        };
        let clusters = testbed_kube::clusters(&karmada).await.map_err(|e| self.karmada_unavailable(e, &report))?;
        for c in clusters {
            let address = Address::new(Kind::KarmadaMember, &[&c.name]);
            let owner = self.cluster_owner(&c);
            if owner != Owner::Testbed {
                control_plane.in_use_by.push(ForeignUse::Cluster(c.name.clone()));
            }
            let is_wanted = wanted.iter().any(|r| r.address == address);
            if !is_wanted && owner != Owner::Testbed {
                continue;
            }
            out.resources.push(observed_membership(address, c, owner));
        }
        // Failover switched on in the controller manager works only with the policy that taints a failed
        // cluster NoExecute: one that is gone or changed is repaired in place.
        if control_plane.spec.get("failover").map(String::as_str) == Some("true") && control_plane.health == Health::Ok
        {
            let policy = testbed_kube::taint_policy(&karmada, FAILOVER_POLICY)
                .await
                .map_err(|e| self.karmada_unavailable(e, &report))?;
            let why = match policy {
                None => Some(format!("the ClusterTaintPolicy {FAILOVER_POLICY} is missing")),
                Some(p) if p.spec != failover_policy_spec() => {
                    Some(format!("the ClusterTaintPolicy {FAILOVER_POLICY} was changed"))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                control_plane.health = Health::NeedsRepair(format!(
                    "{why}: without it a cluster that fails is never tainted NoExecute; it will be applied again"
                ));
            }
        }
        // Workloads, from the Karmada API. While the control plane is not healthy it may not answer: then
        // their objects are planned as missing (applying an object testbed already applied changes nothing).
        match self.observe_workloads(&karmada, wanted).await {
            Ok(found) => out.resources.extend(found),
            Err(e) if report.is_healthy() => return Err(e),
            Err(_) => {}
        }
        out.resources.push(control_plane);
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------------
    // Apply
    // ---------------------------------------------------------------------------------------------

    /// Whether the host cluster answers and shows no Karmada control plane (a deinit left the Karmada
    /// kubeconfig behind).
    async fn control_plane_gone(&self) -> bool {
        let Ok(Some(host)) = self.host_client() else { return false };
        matches!(testbed_kube::control_plane(&host).await, Ok(report) if report.is_absent())
    }

    /// What an action's commands need before they can start: run out of order, it fails at once with
    /// what to apply first, rather than with karmadactl's own error half-way.
    async fn check_ready_for(&self, action: &Action) -> Result<(), ProviderError> {
        let a = &action.address;
        let precondition = |message: String, hint: String| ProviderError::precondition(message).with_hint(hint);
        match (action.kind, action.op) {
            (Kind::KarmadaControlPlane, Op::Create | Op::Replace) => {
                self.require_host(a)?;
            }
            (Kind::KarmadaMember, Op::Create | Op::Replace) => {
                let member = action.member.clone().unwrap_or_default();
                if !self.on_host(&self.karmada_kubeconfig).exists() || self.control_plane_gone().await {
                    return Err(precondition(
                        format!("{a}: cannot register {member} with Karmada: the control plane is not installed"),
                        "apply karmada.control_plane first".into(),
                    ));
                }
                let pull = action.desired.as_ref().and_then(|r| r.spec.get("mode")).is_some_and(|m| m == "pull");
                let dir = Path::new(&self.cx.kubeconfig_dir);
                let mut needed = vec![dir.join(format!("{member}-karmada.config"))];
                if pull {
                    needed.push(dir.join(format!("{member}.config")));
                }
                if let Some(missing) = needed.iter().find(|p| !p.exists()) {
                    return Err(precondition(
                        format!(
                            "{a}: cannot register {member} with Karmada: its kubeconfig {} has not been written",
                            missing.display()
                        ),
                        format!("apply kubeconfig.{member} first"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn apply_action(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        self.check_ready_for(action).await?;
        let steps = testbed_steps::steps(action, &self.cx);
        let mut values = Values::new();
        let mut skip_next = false;
        let mut deinit_ran = false;
        for step in &steps {
            if std::mem::take(&mut skip_next) {
                continue;
            }
            match step {
                Step::Run { role, .. } => {
                    let verb = match role {
                        Role::Karmadactl(verb) => Some(*verb),
                        _ => None,
                    };
                    if verb == Some(KarmadactlVerb::TokenCreate) {
                        self.token_create(action, step, &mut values, log).await?;
                    } else {
                        let timeout = match verb {
                            Some(KarmadactlVerb::Init) => Duration::from_secs(600),
                            Some(KarmadactlVerb::Deinit) => Duration::from_secs(300),
                            // register waits up to 5 minutes for discovery and again for the agent's rollout
                            // (karmada v1.15.9 pkg/karmadactl/register: DefaultDiscoveryTimeout): cut it
                            // later than it would give up itself.
                            Some(KarmadactlVerb::Register) => REGISTER_TIMEOUT,
                            _ => Duration::from_secs(180),
                        };
                        // unregister deletes /etc/karmada/pki/ca.crt on the machine it runs on (a hard-coded path,
                        // karmada v1.15.9 pkg/karmadactl/unregister): on the host that is the CA init wrote.
                        let kept_ca = if verb == Some(KarmadactlVerb::Unregister) { self.keep_init_ca() } else { None };
                        let ran = run_step(self.runner.as_ref(), step, &values, log, timeout, true).await;
                        if let Some(kept) = kept_ca {
                            self.restore_init_ca(kept, log)?;
                        }
                        let out = ran.map_err(|e| self.command_failed(action, verb, e))?;
                        if verb == Some(KarmadactlVerb::Register) {
                            register_preflight(&out).map_err(|e| self.command_failed(action, verb, e))?;
                        }
                        deinit_ran |= verb == Some(KarmadactlVerb::Deinit);
                    }
                }
                Step::Call { purpose: Purpose::RemoveLeftByDeinit { path }, .. } => {
                    if deinit_ran {
                        let rm = Step::Run {
                            at: testbed_steps::Where::Host,
                            argv: ["rm", "-rf", "--", path.as_str()].into_iter().map(Arg::from).collect(),
                            role: Role::Plain,
                        };
                        run_step(self.runner.as_ref(), &rm, &values, log, Duration::from_secs(120), true)
                            .await
                            .map_err(|e| self.command_failed(action, Some(KarmadactlVerb::Deinit), e))?;
                    } else {
                        log.note(format!("no deinit ran: {path} is left as it is"));
                    }
                }
                Step::Call { method, path, purpose, .. } => {
                    log.api(method, path);
                    match self.call(action, purpose, log).await? {
                        Flow::Continue => {}
                        Flow::SkipNext => skip_next = true,
                    }
                }
                Step::Note(n) => log.note(n.clone()),
                Step::Wait { .. } | Step::Write { .. } | Step::Until { .. } => {
                    return Err(ProviderError::failed(format!(
                        "{}: the Karmada layer does not know how to run the step `{step}`",
                        action.address
                    )))
                }
            }
        }
        Ok(())
    }

    /// `karmadactl token create --print-register-command`: the token becomes a secret value before anything
    /// the command printed reaches the log.
    async fn token_create(
        &self,
        action: &Action,
        step: &Step,
        values: &mut Values,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let held: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
        let sink = held.clone();
        let private = ActionLog::new(move |e| sink.lock().unwrap_or_else(|p| p.into_inner()).push(e));
        let result = run_step(self.runner.as_ref(), step, values, &private, Duration::from_secs(60), true).await;
        let parsed = match &result {
            Ok(out) => Some(token::parse_register_command(&out.stdout)),
            Err(_) => None,
        };
        if let Some(Ok(cmd)) = &parsed {
            values.set_secret("join-token", cmd.token.clone());
            values.set("ca-cert-hash", cmd.ca_cert_hash.clone());
        }
        // Replay what the command logged, its token replaced (and anything else shaped like one).
        let entries = std::mem::take(&mut *held.lock().unwrap_or_else(|p| p.into_inner()));
        for e in entries {
            match e {
                LogEntry::Command(argv) => log.command(&argv),
                LogEntry::Output(text) => log.output(token::mask_tokens(&values.redact(&text))),
                LogEntry::Note(text) => log.note(token::mask_tokens(&values.redact(&text))),
                LogEntry::Warning(text) => log.warn(token::mask_tokens(&values.redact(&text))),
                LogEntry::Api { method, path } => log.api(&method, &path),
                LogEntry::Progress(text) => log.progress(token::mask_tokens(&values.redact(&text))),
            }
        }
        let member = action.member.clone().unwrap_or_default();
        match (result, parsed) {
            (Err(e), _) => Err(mask_error(self.command_failed(action, Some(KarmadactlVerb::TokenCreate), e))),
            (Ok(_), Some(Err(why))) => Err(failed(
                format!("{}: karmadactl token create printed no usable register command for {member}: {why}", action.address),
                format!(
                    "run `karmadactl token create --print-register-command --kubeconfig {}` by hand to see what it prints; a karmadactl of another release may print it differently",
                    self.karmada_kubeconfig.display()
                ),
            )),
            (Ok(_), parsed) => {
                if let Some(Ok(cmd)) = parsed {
                    let expected = format!("{}:{}", self.cx.gateway, self.cx.karmada_api_port);
                    if !cmd.endpoint.is_empty() && cmd.endpoint != expected {
                        log.note(format!(
                            "the Karmada kubeconfig names the API server {}, while register is given {expected}",
                            cmd.endpoint
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// A failed karmadactl command, with the address and what the troubleshooting guide would check next.
    fn command_failed(&self, action: &Action, verb: Option<KarmadactlVerb>, e: ProviderError) -> ProviderError {
        use KarmadactlVerb as V;
        let member = action.member.clone().unwrap_or_default();
        let host = self.host_kubeconfig.display();
        let karmada = self.karmada_kubeconfig.display();
        if e.kind() != ErrorKind::Failed {
            return e;
        }
        let said = e.report().to_string();
        let registered = said.contains("has been registered") || said.contains("already exists");
        let hint = match verb {
            Some(V::Init) => format!(
                "look at the control plane's pods: `kubectl --kubeconfig {host} -n karmada-system get pods`; for one that is not Running, `describe pod` and its logs. \"context deadline exceeded\" while waiting for a Deployment usually means an image could not be pulled from the local registry or the advertise address is wrong; karmada-apiserver failing to resolve etcd-client.karmada-system.svc means the host's dns addon is not working. When init got as far as creating karmada-system, testbed labelled it, so the next apply waits for it; to start over, run `karmadactl deinit --kubeconfig {host} -f`"
            ),
            Some(V::Join) if registered => format!(
                "a cluster named {member} (or with the same kube-system UID) is registered already: see `kubectl --kubeconfig {karmada} get clusters`; unjoin it yourself if it is stale"
            ),
            Some(V::Join) => format!(
                "check that {member}'s kubeconfig for Karmada works from the host: `kubectl --kubeconfig {}/{member}-karmada.config get nodes`",
                self.cx.kubeconfig_dir
            ),
            Some(V::Register) if registered => format!(
                "{member} still has an agent from an earlier registration: `karmadactl unregister {member} --cluster-kubeconfig {}/{member}.config --karmada-config {karmada}`, then apply again",
                self.cx.kubeconfig_dir
            ),
            Some(V::Register) => format!(
                "the karmada-agent on {member} must reach the Karmada API at {}:{} and pull its image from the local registry: check `kubectl --kubeconfig {}/{member}.config -n karmada-system get pods` and `logs deploy/karmada-agent` there; a token expires after 24 h, and the next apply creates a new one",
                self.cx.gateway, self.cx.karmada_api_port, self.cx.kubeconfig_dir
            ),
            Some(v @ (V::Unjoin | V::Unregister)) => format!(
                "see `kubectl --kubeconfig {karmada} get clusters`; if {member} no longer answers, `karmadactl {} {member} ... --force` removes it from Karmada without cleaning up the member",
                v.name()
            ),
            Some(V::Deinit) => format!("see `kubectl --kubeconfig {host} -n karmada-system get all`"),
            Some(V::TokenCreate) => format!("check that the Karmada API answers: `kubectl --kubeconfig {karmada} get clusters`"),
            _ => e.hint().unwrap_or_default().to_owned(),
        };
        e.context(action.address.to_string()).with_hint(hint)
    }

    /// Carries out one of the catalogue's calls, by what it is for.
    async fn call(&self, action: &Action, purpose: &Purpose, log: &ActionLog) -> Result<Flow, ProviderError> {
        let a = &action.address;
        match purpose {
            Purpose::LabelControlPlane => {
                let host = self.require_host(a)?;
                testbed_kube::set_namespace_label(&host, KARMADA_NAMESPACE, OWNER_LABEL, Some(&self.testbed))
                    .await
                    .map_err(|e| {
                        failed(a.to_string(), "apply again: the label records that testbed made this control plane")
                            .caused_by(e)
                    })?;
                log.note(format!("labelled namespace karmada-system {OWNER_LABEL}={}", self.testbed));
                Ok(Flow::Continue)
            }
            Purpose::ControlPlaneAvailable => {
                self.wait_control_plane(a, log).await?;
                Ok(Flow::Continue)
            }
            Purpose::ControllerManagerFailover => {
                let host = self.require_host(a)?;
                let report = testbed_kube::control_plane(&host).await.map_err(|e| {
                    state_unknown("the host cluster could not be read".into(), "check the host MicroK8s".into())
                        .caused_by(e)
                })?;
                let current = report.get(CONTROLLER_MANAGER).map(|c| c.command.clone()).unwrap_or_default();
                if current.is_empty() {
                    return Err(failed(
                        format!("{a}: karmada-controller-manager has no container command to add the failover arguments to"),
                        "check the Deployment: `kubectl -n karmada-system get deployment karmada-controller-manager -o yaml` on the host cluster",
                    ));
                }
                let wanted = with_args(&current, testbed_config::karmada_release::FAILOVER_CONTROLLER_MANAGER_ARGS);
                if wanted == current {
                    log.note("karmada-controller-manager already runs with the failover arguments".to_owned());
                    return Ok(Flow::Continue);
                }
                testbed_kube::set_container_command(&host, KARMADA_NAMESPACE, CONTROLLER_MANAGER, CONTROLLER_MANAGER, &wanted)
                    .await
                    .map_err(|e| {
                        failed(
                            format!("{a}: cannot patch karmada-controller-manager's command"),
                            "check the host cluster: `microk8s status` and `microk8s kubectl -n karmada-system get deployments`",
                        )
                        .caused_by(e)
                    })?;
                log.note(format!(
                    "karmada-controller-manager's command patched: {}",
                    testbed_config::karmada_release::FAILOVER_CONTROLLER_MANAGER_ARGS.join(" ")
                ));
                Ok(Flow::Continue)
            }
            Purpose::FailoverTaintPolicy => {
                let karmada = self.karmada_client(a)?;
                let labels = [(OWNER_LABEL.to_owned(), self.testbed.clone())].into();
                testbed_kube::apply_taint_policy(&karmada, FAILOVER_POLICY, labels, failover_policy_spec())
                    .await
                    .map_err(|e| {
                        failed(
                            format!("cannot apply the ClusterTaintPolicy {FAILOVER_POLICY}"),
                            "check that the Karmada API server answers (kubectl --kubeconfig <karmada-apiserver.config> get clustertaintpolicies)",
                        )
                        .caused_by(e)
                    })?;
                log.note(format!(
                    "ClusterTaintPolicy {FAILOVER_POLICY} applied: Clusters not Ready are tainted NoExecute"
                ));
                Ok(Flow::Continue)
            }
            Purpose::ControlPlaneOwned => self.check_control_plane_owned(a, log).await,
            Purpose::SkipIfPresent { path } => {
                if self.on_host(Path::new(path)).is_file() {
                    log.note(format!("{path} is there already: not downloaded again"));
                    return Ok(Flow::SkipNext);
                }
                Ok(Flow::Continue)
            }
            Purpose::RecordChecksum { path } => {
                self.record_checksum(a, path, log)?;
                Ok(Flow::Continue)
            }
            Purpose::LabelCluster { cluster: member } => {
                let karmada = self.karmada_client(a)?;
                if action.desired.as_ref().and_then(|r| r.spec.get("mode")).is_some_and(|m| m == "pull") {
                    // The agent creates its Cluster itself once it runs, after register has returned
                    // (karmada cmd/agent/app/agent.go): wait for it before labelling it.
                    self.wait_cluster_exists(a, &karmada, member, log).await?;
                }
                testbed_kube::set_cluster_label(&karmada, member, OWNER_LABEL, Some(&self.testbed)).await.map_err(
                    |e| {
                        failed(
                            format!("{a}: {member} is registered, but testbed could not label it"),
                            format!("label it yourself so that testbed knows it made it: `kubectl --kubeconfig {} label cluster {member} {OWNER_LABEL}={}`", self.karmada_kubeconfig.display(), self.testbed),
                        )
                        .caused_by(e)
                    },
                )?;
                log.note(format!("labelled cluster {member} {OWNER_LABEL}={}", self.testbed));
                Ok(Flow::Continue)
            }
            Purpose::SetClusterEndpoint { cluster: member } => {
                let karmada = self.karmada_client(a)?;
                let endpoint =
                    action.desired.as_ref().and_then(|r| r.spec.get("api_endpoint")).cloned().ok_or_else(|| {
                        ProviderError::failed(format!("{a}: the file gives no api_endpoint for {member}"))
                    })?;
                self.owned_cluster(a, &karmada, member, "change").await?;
                let patched = testbed_kube::set_cluster_api_endpoint(&karmada, member, &endpoint)
                    .await
                    .map_err(|e| failed(a.to_string(), "apply again").caused_by(e))?;
                log.note(format!("spec.apiEndpoint of {member} is {}", patched.api_endpoint.unwrap_or_default()));
                Ok(Flow::Continue)
            }
            Purpose::ClusterReady { cluster: member } => {
                self.wait_cluster_ready(action, member, log).await?;
                Ok(Flow::Continue)
            }
            Purpose::ClusterOwned { cluster: member } => {
                if !self.on_host(&self.karmada_kubeconfig).exists() || self.control_plane_gone().await {
                    log.note(format!(
                        "nothing to unjoin: the Karmada control plane is gone, and {member}'s membership with it"
                    ));
                    return Ok(Flow::SkipNext);
                }
                let karmada = self.karmada_client(a)?;
                match self.owned_cluster(a, &karmada, member, "remove").await? {
                    Some(_) => Ok(Flow::Continue),
                    None => {
                        log.note(format!("{member} is not registered in Karmada: nothing to remove"));
                        Ok(Flow::SkipNext)
                    }
                }
            }
            Purpose::ApplyObject { address } => {
                self.apply_object(action, address, log).await?;
                Ok(Flow::Continue)
            }
            Purpose::ObjectOwned { path } => {
                if self.object_owned(action, path).await? {
                    Ok(Flow::Continue)
                } else {
                    log.note(format!("{path} is gone already: nothing to delete"));
                    Ok(Flow::SkipNext)
                }
            }
            Purpose::DeleteObject { .. } => {
                self.delete_object(action, log).await?;
                Ok(Flow::Continue)
            }
            Purpose::WorkloadHealthy { workload } => {
                self.wait_workload(action, workload, log).await?;
                Ok(Flow::Continue)
            }
            other => Err(ProviderError::failed(format!(
                "{a}: the Karmada layer does not make calls for {other:?} (an internal error)"
            ))),
        }
    }

    /// The Cluster `member` if it is testbed's; `None` if it does not exist; an error if it is someone else's.
    async fn owned_cluster(
        &self,
        a: &Address,
        karmada: &KubeClient,
        member: &str,
        verb: &str,
    ) -> Result<Option<ClusterStatus>, ProviderError> {
        let c = testbed_kube::cluster(karmada, member)
            .await
            .map_err(|e| failed(a.to_string(), "apply again once the Karmada API answers").caused_by(e))?;
        match c {
            None => Ok(None),
            Some(c) => match self.cluster_owner(&c) {
                Owner::Testbed => Ok(Some(c)),
                Owner::Other(found) => Err(failed(
                    format!("{a}: testbed will not {verb} {found}"),
                    format!(
                        "it is not testbed's to {verb}; remove it yourself (`karmadactl unjoin {member} --kubeconfig {}`) or rename the member in the file",
                        self.karmada_kubeconfig.display()
                    ),
                )),
            },
        }
    }

    async fn check_control_plane_owned(&self, a: &Address, log: &ActionLog) -> Result<Flow, ProviderError> {
        let Some(host) = self.host_client()? else {
            log.note("the host cluster has no kubeconfig: no control plane to remove");
            return Ok(Flow::SkipNext);
        };
        let report = testbed_kube::control_plane(&host)
            .await
            .map_err(|e| failed(a.to_string(), "check the host MicroK8s (`microk8s status`)").caused_by(e))?;
        let labels = testbed_kube::namespace_labels(&host, KARMADA_NAMESPACE)
            .await
            .map_err(|e| failed(a.to_string(), "check the host MicroK8s (`microk8s status`)").caused_by(e))?;
        if labels.is_none() && report.is_absent() {
            log.note("no Karmada control plane on the host cluster: nothing to remove");
            return Ok(Flow::SkipNext);
        }
        match self.owner_of_labels(labels.as_ref(), CONTROL_PLANE, "label on the karmada-system namespace:") {
            Owner::Testbed => Ok(Flow::Continue),
            Owner::Other(found) => Err(failed(
                format!("{a}: testbed will not deinit {found}"),
                "it is not testbed's to remove; `karmadactl deinit` it yourself if you mean to",
            )),
        }
    }

    async fn wait_control_plane(&self, a: &Address, log: &ActionLog) -> Result<(), ProviderError> {
        let host = self.require_host(a)?;
        let start = Instant::now();
        let last = loop {
            let last = match testbed_kube::control_plane(&host).await {
                Ok(r) if r.is_healthy() => {
                    log.note(format!("control plane available after {}", shown(start.elapsed())));
                    return Ok(());
                }
                Ok(r) => r.to_string().replace('\n', "; "),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= self.wait {
                break last;
            }
            tokio::time::sleep(self.poll).await;
        };
        let host_path = self.host_kubeconfig.display();
        Err(failed(
            format!(
                "{a}: the Karmada control plane's Deployments in karmada-system were not all available within {}: {last}",
                shown(self.wait)
            ),
            format!(
                "check the pods: `kubectl --kubeconfig {host_path} -n karmada-system get pods`; for one that is not Running, `kubectl --kubeconfig {host_path} -n karmada-system describe pod <pod>` (an image that cannot be pulled from the local registry shows there) and its logs; apply again to keep waiting"
            ),
        ))
    }

    /// The CA `karmadactl init` wrote (`<karmada data>/pki/ca.crt`), its bytes and mode, if it is there.
    fn keep_init_ca(&self) -> Option<(std::path::PathBuf, Vec<u8>, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.on_host(&self.karmada_kubeconfig.parent()?.join("pki").join("ca.crt"));
        let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
        let bytes = std::fs::read(&path).ok()?;
        Some((path, bytes, mode))
    }

    /// Puts the init CA back if the command just run removed it.
    fn restore_init_ca(&self, kept: (std::path::PathBuf, Vec<u8>, u32), log: &ActionLog) -> Result<(), ProviderError> {
        use std::os::unix::fs::PermissionsExt;
        let (path, bytes, mode) = kept;
        if path.exists() {
            return Ok(());
        }
        let restored = std::fs::write(&path, &bytes)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)));
        match restored {
            Ok(()) => {
                log.note(format!("restored {} (karmadactl unregister deletes it; it is the control plane's CA)", path.display()));
                Ok(())
            }
            Err(e) => Err(failed(
                format!("karmadactl unregister deleted {}, the control plane's CA, and testbed could not put it back", path.display()),
                "restore it from a backup of the Karmada data directory; without it, karmadactl cannot reach the Karmada API",
            )
            .caused_by(e)),
        }
    }

    /// Waits (bounded) until the Cluster `member` exists.
    async fn wait_cluster_exists(
        &self,
        a: &Address,
        karmada: &KubeClient,
        member: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let start = Instant::now();
        loop {
            match testbed_kube::cluster(karmada, member).await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) | Err(_) if start.elapsed() < self.wait => {}
                Ok(None) => {
                    return Err(failed(
                        format!("{a}: register finished, but the karmada-agent on {member} did not create its Cluster within {}", shown(self.wait)),
                        format!("look at the agent: `kubectl --kubeconfig {}/{member}.config -n karmada-system logs deploy/karmada-agent`; it must reach the Karmada API at {}:{}", self.cx.kubeconfig_dir, self.cx.gateway, self.cx.karmada_api_port),
                    ))
                }
                Err(e) => return Err(failed(a.to_string(), "apply again once the Karmada API answers").caused_by(e)),
            }
            log.progress(format!("waiting for the karmada-agent on {member} to create its Cluster"));
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn wait_cluster_ready(&self, action: &Action, member: &str, log: &ActionLog) -> Result<(), ProviderError> {
        let a = &action.address;
        let karmada = self.karmada_client(a)?;
        let start = Instant::now();
        let (last, cluster) = loop {
            let (last, cluster) = match testbed_kube::cluster(&karmada, member).await {
                Ok(Some(c)) if c.is_ready() => {
                    log.note(format!("{} (after {})", c, shown(start.elapsed())));
                    return Ok(());
                }
                Ok(Some(c)) => (c.to_string(), Some(c)),
                Ok(None) => (testbed_kube::describe_cluster(member, None), None),
                Err(e) => (e.to_string(), None),
            };
            if start.elapsed() >= self.wait {
                break (last, cluster);
            }
            tokio::time::sleep(self.poll).await;
        };
        let karmada_path = self.karmada_kubeconfig.display();
        let host = self.host_kubeconfig.display();
        let pull = cluster.as_ref().map(|c| c.sync_mode == Some(SyncMode::Pull)).unwrap_or_else(|| {
            action.desired.as_ref().and_then(|r| r.spec.get("mode")).map(String::as_str) == Some("pull")
        });
        let hint = if pull {
            format!(
                "in pull mode the karmada-agent on {member} dials the Karmada API at {gw}:{port}. Check `kubectl --kubeconfig {karmada_path} describe cluster {member}`, the agent on the member (`kubectl --kubeconfig {dir}/{member}.config -n karmada-system get pods` and `logs deploy/karmada-agent`), and that {gw}:{port} answers from inside {member}; apply again once it is Ready",
                gw = self.cx.gateway,
                port = self.cx.karmada_api_port,
                dir = self.cx.kubeconfig_dir,
            )
        } else {
            let endpoint = cluster
                .as_ref()
                .and_then(|c| c.api_endpoint.clone())
                .or_else(|| action.desired.as_ref().and_then(|r| r.spec.get("api_endpoint")).cloned())
                .unwrap_or_else(|| format!("https://<{member}'s bridge address>:{MEMBER_API_PORT}"));
            format!(
                "karmada-controller-manager dials {endpoint} from a pod on the host cluster, so that address must be reachable from pods there (not a 127.0.0.1 address). Check `kubectl --kubeconfig {karmada_path} get clusters` (and `describe cluster {member}`), the controller's logs (`kubectl --kubeconfig {host} -n karmada-system logs deploy/karmada-controller-manager`), and that {endpoint} answers from the host (`curl -k {endpoint}/livez`); apply again once it is Ready"
            )
        };
        Err(failed(format!("{a}: {member} did not turn Ready within {}: {last}", shown(self.wait)), hint))
    }
}

/// An error with anything shaped like a bootstrap token masked: its message, its hint and its causes. The
/// causes are masked as the report renders them, so the masked error keeps their text but not the errors
/// themselves (a cause's own text could still hold the token).
/// The controller manager's Deployment, whose command says whether cluster failover is on.
const CONTROLLER_MANAGER: &str = "karmada-controller-manager";

/// `command` with `args` merged in as karmadactl init merges extra args (`MergeCommandArgs`): an argument
/// replaces the one with the same `--key`, and one with a new key is appended.
fn with_args(command: &[String], args: &[&str]) -> Vec<String> {
    let key = |a: &str| a.split_once('=').map_or(a, |(k, _)| k).to_owned();
    let mut out = command.to_vec();
    for arg in args {
        match out.iter_mut().find(|c| key(c) == key(arg)) {
            Some(c) => *c = (*arg).to_owned(),
            None => out.push((*arg).to_owned()),
        }
    }
    out
}

/// Whether a karmada-controller-manager command switches cluster failover on: the `Failover` feature gate
/// and no-execute taint eviction both true, read as the program's flag parser reads them (the last
/// occurrence of a flag wins; a bool flag alone is true; `--feature-gates` is a comma-separated list of
/// `NAME=BOOL`).
pub fn failover_switched_on(command: &[String]) -> bool {
    let last = |flag: &str| {
        command.iter().rev().find_map(|a| {
            let rest = a.strip_prefix(flag)?;
            if rest.is_empty() {
                Some("true")
            } else {
                rest.strip_prefix('=')
            }
        })
    };
    let gate = last("--feature-gates").is_some_and(|gates| {
        gates
            .rsplit(',')
            .filter_map(|g| g.trim().split_once('='))
            .find(|(name, _)| *name == "Failover")
            .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"))
    });
    let eviction = last("--enable-no-execute-taint-eviction").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    gate && eviction
}

fn mask_error(e: ProviderError) -> ProviderError {
    if !matches!(e.kind(), ErrorKind::Failed | ErrorKind::Precondition) {
        return e;
    }
    let masked = ProviderError::new(e.kind(), token::mask_tokens(&e.report().to_string()));
    match e.hint() {
        Some(h) => masked.with_hint(token::mask_tokens(h)),
        None => masked,
    }
}

fn observed_membership(address: Address, c: ClusterStatus, owner: Owner) -> Observed {
    let mode = sync_mode_name(c.sync_mode.as_ref());
    let mut spec = Spec::new();
    spec.insert("mode".into(), mode);
    if let Some(e) = &c.api_endpoint {
        spec.insert("api_endpoint".into(), e.clone());
    }
    let health = match &c.ready {
        Some(r) if r.is_true() => Health::Ok,
        Some(r) => {
            let why =
                match (r.reason.as_deref().filter(|s| !s.is_empty()), r.message.as_deref().filter(|s| !s.is_empty())) {
                    (Some(reason), Some(message)) => format!("{reason}: {message}"),
                    (Some(one), None) | (None, Some(one)) => one.to_owned(),
                    (None, None) => "no reason given".to_owned(),
                };
            let word =
                if r.status == testbed_kube::ConditionStatus::False { "not Ready" } else { "in an unknown state" };
            Health::NeedsRepair(format!("cluster {} is {word} ({why})", c.name))
        }
        None => Health::NeedsRepair(format!("Karmada has not reported cluster {} Ready yet", c.name)),
    };
    Observed {
        address,
        kind: Kind::KarmadaMember,
        member: Some(c.name.clone()),
        owner,
        spec,
        health,
        in_use_by: vec![],
    }
}

#[async_trait]
impl Provider for KarmadaProvider {
    fn layer(&self) -> Layer {
        Layer::Karmada
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        self.observe_layer(wanted).await
    }

    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        match action.kind {
            Kind::KarmadaControlPlane | Kind::KarmadaMember => {}
            Kind::WorkloadObject | Kind::Workload => return self.apply_action(action, log).await,
            other => {
                return Err(ProviderError::failed(format!(
                    "{}: the Karmada layer does not handle {other:?} resources",
                    action.address
                )))
            }
        }
        let makes = matches!(action.op, Op::Create | Op::Replace);
        let installs = action.kind == Kind::KarmadaControlPlane && makes;
        // A karmada-system namespace someone else left is never labelled on their behalf.
        let foreign_namespace_before = installs && self.foreign_namespace().await;
        // Nor is a Cluster: only a name that is free, or testbed's own (a replace), is labelled afterwards.
        let joining = match action.member.as_deref() {
            Some(member) if action.kind == Kind::KarmadaMember && makes && self.cluster_free_or_ours(member).await => {
                Some(member)
            }
            _ => None,
        };
        let result = self.apply_action(action, log).await;
        if result.is_err() {
            if installs && !foreign_namespace_before {
                self.label_after_failed_init(log).await;
            }
            if let Some(member) = joining {
                self.label_after_failed_join(member, log).await;
            }
        }
        result
    }
}

impl KarmadaProvider {
    /// Whether a karmada-system namespace exists on the host without this testbed's label.
    async fn foreign_namespace(&self) -> bool {
        let Ok(Some(host)) = self.host_client() else { return false };
        match testbed_kube::namespace_labels(&host, KARMADA_NAMESPACE).await {
            Ok(Some(labels)) => labels.get(OWNER_LABEL) != Some(&self.testbed),
            Ok(None) => false,
            // Unknown: do not label anything afterwards.
            Err(_) => true,
        }
    }

    /// Whether no Cluster named `member` is registered, or the one that is is this testbed's. Unknown (no
    /// Karmada kubeconfig, an API that does not answer) is neither.
    async fn cluster_free_or_ours(&self, member: &str) -> bool {
        let Ok(Some((karmada, _))) = self.client(&self.karmada_kubeconfig, "Karmada") else { return false };
        match testbed_kube::cluster(&karmada, member).await {
            Ok(None) => true,
            Ok(Some(c)) => self.cluster_owner(&c) == Owner::Testbed,
            Err(_) => false,
        }
    }

    /// After a failed join or register (its label call failed, say): if the Cluster was made anyway and
    /// has no owner label, label it, so that the next apply repairs it instead of reporting a conflict with
    /// a Cluster that looks like someone else's. Best effort: when this fails too, the failure's hint says
    /// how to label it by hand.
    async fn label_after_failed_join(&self, member: &str, log: &ActionLog) {
        let Ok(Some((karmada, _))) = self.client(&self.karmada_kubeconfig, "Karmada") else { return };
        let Ok(Some(c)) = testbed_kube::cluster(&karmada, member).await else { return };
        if !c.labels.contains_key(OWNER_LABEL)
            && testbed_kube::set_cluster_label(&karmada, member, OWNER_LABEL, Some(&self.testbed)).await.is_ok()
        {
            log.note(format!(
                "labelled cluster {member} {OWNER_LABEL}={} although the membership step failed: the next apply repairs it",
                self.testbed
            ));
        }
    }

    /// After a failed init: if it got as far as the namespace, label it, so the next apply treats the
    /// half-made control plane as testbed's (and repairs it) rather than as someone else's.
    async fn label_after_failed_init(&self, log: &ActionLog) {
        let Ok(Some(host)) = self.host_client() else { return };
        if let Ok(Some(labels)) = testbed_kube::namespace_labels(&host, KARMADA_NAMESPACE).await {
            if !labels.contains_key(OWNER_LABEL)
                && testbed_kube::set_namespace_label(&host, KARMADA_NAMESPACE, OWNER_LABEL, Some(&self.testbed))
                    .await
                    .is_ok()
            {
                log.note(format!(
                    "labelled namespace karmada-system {OWNER_LABEL}={} although init failed: the next apply repairs it",
                    self.testbed
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_is_on_only_with_the_gate_and_no_execute_eviction_as_the_flag_parser_reads_them() {
        let cmd = |args: &[&str]| {
            let mut c = vec!["/bin/karmada-controller-manager".to_owned(), "--v=2".to_owned()];
            c.extend(args.iter().map(|a| a.to_string()));
            failover_switched_on(&c)
        };
        assert!(cmd(testbed_config::karmada_release::FAILOVER_CONTROLLER_MANAGER_ARGS));
        assert!(cmd(&["--feature-gates=GracefulEviction=true,Failover=true", "--enable-no-execute-taint-eviction"]));
        assert!(!cmd(&[]), "Failover is off by default");
        assert!(!cmd(&["--feature-gates=Failover=true"]), "without eviction a NoExecute taint evicts nothing");
        assert!(!cmd(&["--enable-no-execute-taint-eviction=true"]));
        assert!(
            !cmd(&[
                "--feature-gates=Failover=true",
                "--enable-no-execute-taint-eviction=true",
                "--feature-gates=Failover=false"
            ]),
            "the last occurrence wins"
        );
        assert!(!cmd(&["--feature-gates=FailoverX=true", "--enable-no-execute-taint-eviction-purge-mode=Directly"]));
    }

    #[test]
    fn servers_and_images_are_taken_apart() {
        assert_eq!(server_host_port("https://10.123.45.1:32443"), (Some("10.123.45.1".into()), Some(32443)));
        assert_eq!(server_host_port("http://127.0.0.1:4000/"), (Some("127.0.0.1".into()), Some(4000)));
        assert_eq!(server_host_port("https://[fd00::1]:6443"), (Some("fd00::1".into()), Some(6443)));
        assert_eq!(
            image_parts("localhost:32000/karmada-controller-manager:v1.15.9"),
            Some(("localhost:32000".into(), "v1.15.9".into()))
        );
        assert_eq!(
            image_parts("docker.io/karmada/karmada-scheduler:v1.14.0"),
            Some(("docker.io/karmada".into(), "v1.14.0".into()))
        );
        assert_eq!(image_parts("karmada-scheduler"), None);
    }
}
