//! The seam between the plan and the world.
//!
//! Each [`Layer`] (host, LXD, MicroK8s, registry, Karmada) has a [`Provider`] that observes the live
//! resources of that layer and carries out actions on them. A layer's provider is either real or
//! simulated; [`Providers`] holds one per layer, so any mix of real and simulated layers can run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use testbed_plan::{Action, Layer, Observed, ObservedState, Resource, Unobservable};

mod clock;
mod error;
pub use clock::{Clock, SystemClock};
pub use error::{ErrorKind, ProviderError, Report, ResultExt};

/// What one layer saw.
#[derive(Debug, Clone, Default)]
pub struct LayerObservation {
    /// Wanted resources that exist, and every resource of the layer testbed owns.
    pub resources: Vec<Observed>,
    /// IPv4 addresses in use on the member bridge (LXD layer only).
    pub bridge_addresses: BTreeSet<Ipv4Addr>,
    /// The store's revision of each MicroK8s channel (MicroK8s layer only).
    pub snap_revisions: std::collections::BTreeMap<String, String>,
    /// Where each wanted pod proxy's pod is now, `tcp:POD_IP:PORT` by the proxy's address (LXD layer only):
    /// [`ObservedState::pod_addresses`].
    pub pod_addresses: BTreeMap<String, String>,
    /// Why a wanted pod proxy's pod could not be looked up, by the proxy's address (LXD layer only).
    pub pod_lookup_failures: BTreeMap<String, String>,
}

/// One entry of an action's log: what it ran and what came back. Secrets never go in here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A command as its argument vector (never a shell string).
    Command(Vec<String>),
    /// An API call: method and path.
    Api { method: String, path: String },
    /// Output of the last command or call.
    Output(String),
    /// A free-form note.
    Note(String),
    /// Something the user should know although the action goes on (a download that differs from the first
    /// one): shown with the action's progress, not only kept in the run log.
    Warning(String),
    /// How far a long step has come ("3 of 5 blobs, 12.1 of 40.2 MB"): shown live on a terminal, replaced
    /// by the next one, not kept in the run log.
    Progress(String),
}

/// Where an action writes its log; the executor forwards entries to the run's log file.
#[derive(Clone)]
pub struct ActionLog {
    sink: Arc<dyn Fn(LogEntry) + Send + Sync>,
}

impl ActionLog {
    pub fn new(sink: impl Fn(LogEntry) + Send + Sync + 'static) -> Self {
        ActionLog { sink: Arc::new(sink) }
    }

    /// A log that drops everything (for observation-only tools and tests).
    pub fn discard() -> Self {
        ActionLog::new(|_| {})
    }

    pub fn command<S: AsRef<str>>(&self, argv: &[S]) {
        (self.sink)(LogEntry::Command(argv.iter().map(|s| s.as_ref().to_owned()).collect()));
    }

    pub fn api(&self, method: &str, path: &str) {
        (self.sink)(LogEntry::Api { method: method.to_owned(), path: path.to_owned() });
    }

    pub fn output(&self, text: impl Into<String>) {
        (self.sink)(LogEntry::Output(text.into()));
    }

    pub fn note(&self, text: impl Into<String>) {
        (self.sink)(LogEntry::Note(text.into()));
    }

    pub fn warn(&self, text: impl Into<String>) {
        (self.sink)(LogEntry::Warning(text.into()));
    }

    pub fn progress(&self, text: impl Into<String>) {
        (self.sink)(LogEntry::Progress(text.into()));
    }
}

/// One layer of the world, real or simulated.
#[async_trait]
pub trait Provider: Send + Sync {
    fn layer(&self) -> Layer;

    /// Whether this provider acts on a simulated machine (reported to the user, never hidden).
    fn simulated(&self) -> bool;

    /// Observes `wanted` (the file's resources of this layer) and every resource of this layer that testbed
    /// owns. Read-only.
    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError>;

    /// Carries out one action of this layer.
    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError>;

    /// How long the action is expected to take, if the provider knows (the simulation does; it is used for
    /// critical-path figures, never for timeouts).
    fn expected_duration(&self, _action: &Action) -> Option<Duration> {
        None
    }
}

/// Runs actions; the executor needs nothing else from the world.
#[async_trait]
pub trait ActionRunner: Send + Sync {
    async fn run(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError>;
}

/// One provider per layer.
#[derive(Clone, Default)]
pub struct Providers {
    by_layer: BTreeMap<Layer, Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Providers::default()
    }

    pub fn with(mut self, p: Arc<dyn Provider>) -> Self {
        self.by_layer.insert(p.layer(), p);
        self
    }

    pub fn get(&self, layer: Layer) -> Option<&Arc<dyn Provider>> {
        self.by_layer.get(&layer)
    }

    /// Layers whose provider is simulated.
    pub fn simulated_layers(&self) -> Vec<Layer> {
        self.by_layer.values().filter(|p| p.simulated()).map(|p| p.layer()).collect()
    }

    /// Observes every layer concurrently. A layer that cannot be observed is recorded, not fatal: the plan
    /// says so.
    pub async fn observe(&self, wanted: &[Resource]) -> ObservedState {
        let observers = self
            .by_layer
            .iter()
            .map(|(layer, p)| {
                let p = Arc::clone(p);
                let mine: Vec<Resource> = wanted.iter().filter(|r| r.kind.layer() == *layer).cloned().collect();
                let observation: Observation = Box::pin(async move { p.observe(&mine).await });
                (*layer, observation)
            })
            .collect();
        observe_layers(observers).await
    }

    pub fn expected_duration(&self, action: &Action) -> Option<Duration> {
        self.get(action.kind.layer()).and_then(|p| p.expected_duration(action))
    }
}

/// One layer's observation, as [`observe_layers`] runs it.
type Observation = std::pin::Pin<Box<dyn std::future::Future<Output = Result<LayerObservation, ProviderError>> + Send>>;

/// Runs the layers' observations concurrently, each on a task of its own, and gathers what they saw; a layer
/// without an observation is recorded as having no provider.
async fn observe_layers(observers: Vec<(Layer, Observation)>) -> ObservedState {
    let mut set = tokio::task::JoinSet::new();
    // Which layer each task observes, for one that panics (its task then returns no layer).
    let mut tasks = std::collections::HashMap::new();
    for (layer, observation) in observers {
        let task = set.spawn(async move { (layer, observation.await) });
        tasks.insert(task.id(), layer);
    }
    let mut state = ObservedState::default();
    let mut missing: BTreeSet<Layer> = Layer::ALL.into_iter().collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((layer, Ok(obs))) => {
                missing.remove(&layer);
                for o in obs.resources {
                    state.insert(o);
                }
                state.bridge_addresses.extend(obs.bridge_addresses);
                state.snap_revisions.extend(obs.snap_revisions);
                state.pod_addresses.extend(obs.pod_addresses);
                state.pod_lookup_failures.extend(obs.pod_lookup_failures);
            }
            Ok((layer, Err(e))) => {
                missing.remove(&layer);
                let held = e.kind() == ErrorKind::StateUnknown;
                let reason = match e.hint() {
                    Some(h) => format!("{}; {h}", e.report()),
                    None => e.report().to_string(),
                };
                state.unobservable.push(Unobservable { layer, reason, held });
            }
            // A layer whose observer panicked is unknown, never absent: planning its resources as
            // missing would, for Karmada, run `karmadactl init` over a live control plane.
            Err(join) => {
                let Some(layer) = tasks.get(&join.id()).copied() else { continue };
                missing.remove(&layer);
                state.unobservable.push(Unobservable {
                    layer,
                    reason: format!("observing {} stopped unexpectedly: {join}", layer.name()),
                    held: true,
                });
            }
        }
    }
    for layer in missing {
        state.unobservable.push(Unobservable { layer, reason: "no provider configured".into(), held: false });
    }
    state.unobservable.sort_by_key(|u| u.layer);
    state
}

#[async_trait]
impl ActionRunner for Providers {
    async fn run(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let layer = action.kind.layer();
        match self.get(layer) {
            Some(p) => p.apply(action, log).await,
            None => Err(ProviderError::unavailable(format!("no provider for the {} layer", layer.name()))),
        }
    }
}

/// What one member container looks like from the layer that runs it (real LXD or the simulation), as the
/// layers above it need to know: whether it is there and running, and the proxies into it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerFacts {
    pub name: String,
    pub running: bool,
    /// The static IPv4 address of its NIC on the bridge, if set.
    pub ipv4: Option<String>,
    /// Proxy devices by name: (listen, connect).
    pub proxies: BTreeMap<String, (String, String)>,
    /// What identifies this container across a delete and re-create under the same name (LXD's
    /// `volatile.uuid`): whatever lived inside an older container with the same name is gone.
    pub identity: String,
    /// Whether testbed created it.
    pub owned: bool,
}

/// The containers as the layer that runs them sees them. The simulated MicroK8s, registry and Karmada
/// layers use it when LXD is real, so that a simulated step above a real container sees the real
/// container's state (no simulated MicroK8s install into a real container that is stopped).
#[async_trait]
pub trait ContainerView: Send + Sync {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError>;
}

/// The local registry as the layer that manages it sees it now: the port it answers on and the images it
/// holds, by testbed's image name (`etcd`, `karmada-scheduler`, ...), with the target reference. The
/// simulated Karmada layer uses it when the registry layer is real, so that a simulated `karmadactl init`
/// over a real registry checks the real images.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryFacts {
    pub port: u16,
    pub images: BTreeMap<String, String>,
}

#[async_trait]
pub trait RegistryView: Send + Sync {
    /// None when no registry answers.
    async fn registry(&self) -> Result<Option<RegistryFacts>, ProviderError>;
}

/// One pod a label selector matched in a member's cluster, as its API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMatch {
    pub name: String,
    /// `status.podIP`, once the pod has one.
    pub ip: Option<String>,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// `status.phase` (`Pending`, `Running`, ...).
    pub phase: Option<String>,
}

impl PodMatch {
    /// `prometheus-0 (Running, not Ready, 10.1.33.11)`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.phase.clone().unwrap_or_else(|| "no phase yet".into())];
        parts.push(if self.ready { "Ready".into() } else { "not Ready".into() });
        parts.push(self.ip.clone().unwrap_or_else(|| "no pod IP yet".into()));
        format!("{} ({})", self.name, parts.join(", "))
    }
}

/// What a request sent to a pod directly got: through its cluster's port-forward (`kubectl port-forward`),
/// which reaches the pod's loopback past everything between the host and the pod's address. When a proxy to
/// the pod gets no answer, this tells the pod from the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectAnswer {
    /// An answer: how many bytes came back first.
    Answered(usize),
    /// Nothing listens on the port inside the pod: the kubelet's words, and the TCP `containerPort`s the pod
    /// declares (`None`: they could not be read).
    Refused { words: String, declared: Option<Vec<u16>> },
    /// Something inside the pod accepted the connection and sent nothing back (in time): what happened.
    Silent(String),
    /// The port-forward could not be opened: why.
    NotAsked(String),
}

impl DirectAnswer {
    /// For a refusal, what the pod declares, for a hint: `the pod declares containerPort 9090`, `... no
    /// containerPort`; `None` when it was not read or declares the port that was refused.
    pub fn declared(&self, port: u16) -> Option<String> {
        let DirectAnswer::Refused { declared: Some(ports), .. } = self else { return None };
        match ports.as_slice() {
            [] => Some("the pod declares no containerPort".into()),
            ports if ports.contains(&port) => None,
            [one] => Some(format!("the pod declares containerPort {one}")),
            many => Some(format!(
                "the pod declares containerPorts {}",
                many.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Finds pods in the members' clusters: how the LXD layer learns where the pod a proxy follows is now. The
/// MicroK8s layer knows how to reach each member's API (its kubeconfig) and implements it.
#[async_trait]
pub trait PodLookup: Send + Sync {
    /// Sends a request (`GET / HTTP/1.0`) to port `port` of pod `pod` in `namespace` of member `member`
    /// directly, through the member API's port-forward, and says what came back.
    async fn ask_directly(&self, member: &str, namespace: &str, pod: &str, port: u16) -> DirectAnswer;

    /// The pods of member `member`'s cluster in `namespace` whose labels `selector` (equality terms) matches,
    /// sorted by name. No cluster to ask yet (no kubeconfig for the member) is no pods.
    async fn pods(&self, member: &str, namespace: &str, selector: &str) -> Result<Vec<PodMatch>, ProviderError>;

    /// Where people look at the member's cluster from the host: its kubeconfig's path, for hints.
    fn kubeconfig(&self, member: &str) -> String;

    /// The first Ready pod by name that has an address: its name and IP.
    async fn ready_pod(
        &self,
        member: &str,
        namespace: &str,
        selector: &str,
    ) -> Result<Option<(String, String)>, ProviderError> {
        let pods = self.pods(member, namespace, selector).await?;
        Ok(first_ready(&pods))
    }
}

/// The first Ready pod by name that has an address, among `pods`.
pub fn first_ready(pods: &[PodMatch]) -> Option<(String, String)> {
    let mut ready: Vec<&PodMatch> = pods.iter().filter(|p| p.ready && p.ip.is_some()).collect();
    ready.sort_by(|a, b| a.name.cmp(&b.name));
    ready.first().map(|p| (p.name.clone(), p.ip.clone().unwrap_or_default()))
}

#[cfg(test)]
mod observe_tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_observer_leaves_its_own_layer_unknown_not_absent() {
        // A bug in the Karmada layer's observer (no provider type needed: the observation is the future).
        let panics: Observation = Box::pin(async { panic!("a bug in the karmada observer") });
        let state = observe_layers(vec![(Layer::Karmada, panics)]).await;
        let karmada: Vec<_> = state.unobservable.iter().filter(|u| u.layer == Layer::Karmada).collect();
        assert_eq!(karmada.len(), 1, "{:?}", state.unobservable);
        assert!(karmada[0].held, "its resources are held, not planned as missing: {:?}", karmada[0]);
        assert!(karmada[0].reason.contains("observing karmada stopped unexpectedly"), "{}", karmada[0].reason);
        assert!(karmada[0].reason.contains("a bug in the karmada observer"), "{}", karmada[0].reason);
        // The host layer has no observer here: it is absent for that reason, not blamed for the panic.
        let host: Vec<_> = state.unobservable.iter().filter(|u| u.layer == Layer::Host).collect();
        assert_eq!(host.len(), 1);
        assert_eq!(host[0].reason, "no provider configured");
        assert!(!host[0].held);
    }
}
