//! [`MemberPods`]: the pods of the members' clusters, asked through the people kubeconfig testbed writes for
//! each member (`<kubeconfig_dir>/<member>.config`), as the LXD layer needs them for proxies that follow a
//! pod.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use testbed_kube::{
    declared_ports, nodes_ready, pod_answers, pod_events, pods, pods_everywhere, previous_log, ApiConfig, Clients,
    EventReport, KubeClient, KubeObserveError, Network, NodesReport, PodReport, PortForwardFailure,
};
use testbed_provider::{DirectAnswer, PodLookup, PodMatch, ProviderError};

/// The members' pods, through their kubeconfigs. Cheap to clone; clones share their API clients.
#[derive(Debug, Clone)]
pub struct MemberPods {
    kubeconfig_dir: PathBuf,
    network: Network,
    clients: Clients,
    timeout: Duration,
}

impl MemberPods {
    /// Asks the members whose kubeconfigs are in `kubeconfig_dir` (the file's `[host] kubeconfig_dir`,
    /// resolved), straight over the network, each question at most 5 s.
    pub fn new(kubeconfig_dir: impl Into<PathBuf>) -> MemberPods {
        MemberPods {
            kubeconfig_dir: kubeconfig_dir.into(),
            network: Network::Direct,
            clients: Clients::default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Where connections to the members' API servers go (a simulated machine's network).
    pub fn with_network(mut self, network: Network) -> MemberPods {
        self.network = network;
        self
    }

    /// How long one question may take (connecting, and the answer).
    pub fn with_timeout(mut self, timeout: Duration) -> MemberPods {
        self.timeout = timeout;
        self
    }

    fn path(&self, member: &str) -> PathBuf {
        self.kubeconfig_dir.join(format!("{member}.config"))
    }
}

/// Why a member's API could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum MemberApiError {
    /// testbed has written no kubeconfig for the member (yet).
    #[error("there is no kubeconfig for {member} at {}", path.display())]
    NoKubeconfig { member: String, path: PathBuf },
    /// The kubeconfig is there but cannot be read.
    #[error("cannot read {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The API answered badly, or not at all (the variants tell unreachable, TLS, credentials apart).
    #[error(transparent)]
    Api(#[from] KubeObserveError),
    /// A request through a port-forward to a pod got no answer ([`MemberPods::answers_directly`]).
    #[error(transparent)]
    PortForward(#[from] PortForwardFailure),
}

/// A pod that is not Ready, with what the kubelet said about it: `kubectl describe pod`'s status and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTrouble {
    pub namespace: String,
    pub pod: PodReport,
    /// The events about it, oldest first (empty when they could not be read).
    pub events: Vec<EventReport>,
    /// For each container that crashes (waits in `CrashLoopBackOff`), the last lines its previous run wrote
    /// (`kubectl logs --previous --tail 20`); left out when they could not be read.
    pub last_lines: Vec<(String, String)>,
}

/// How many lines of a crashed container's previous run a diagnosis shows.
pub const LAST_LINES: i64 = 20;

/// The kubelet's reason for a container that keeps exiting and is started again after a back-off.
const CRASH_LOOP: &str = "CrashLoopBackOff";

impl MemberPods {
    /// The client of `member`'s API through its kubeconfig.
    fn client(&self, member: &str) -> Result<KubeClient, MemberApiError> {
        let path = self.path(member);
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                MemberApiError::NoKubeconfig { member: member.to_owned(), path: path.clone() }
            }
            _ => MemberApiError::Unreadable { path: path.clone(), source },
        })?;
        let config = ApiConfig::from_kubeconfig_yaml(&text, None)?
            .with_timeouts(self.timeout, self.timeout)
            .with_network(self.network.clone());
        Ok(self.clients.for_kubeconfig(&text, &config)?)
    }

    /// `member`'s nodes and whether each is Ready, asked through its kubeconfig (`kubectl get nodes`).
    pub async fn nodes(&self, member: &str) -> Result<NodesReport, MemberApiError> {
        Ok(nodes_ready(&self.client(member)?).await?)
    }

    /// `member`'s pods that are not Ready (and have not completed), in every namespace, each with the events
    /// about it.
    pub async fn troubled(&self, member: &str) -> Result<Vec<PodTrouble>, MemberApiError> {
        let client = self.client(member)?;
        let mut out = Vec::new();
        for (namespace, pod) in pods_everywhere(&client).await? {
            if pod.ready || pod.phase.as_deref() == Some("Succeeded") {
                continue;
            }
            let events = pod_events(&client, &namespace, &pod.name).await.unwrap_or_default();
            let mut last_lines = Vec::new();
            for w in pod.waiting.iter().filter(|w| w.reason == CRASH_LOOP) {
                if let Ok(text) = previous_log(&client, &namespace, &pod.name, &w.container, LAST_LINES).await {
                    last_lines.push((w.container.clone(), text));
                }
            }
            out.push(PodTrouble { namespace, pod, events, last_lines });
        }
        Ok(out)
    }

    /// Whether pod `pod` of `member` answers a request on `port` when asked directly, through the API's
    /// port-forward (`kubectl port-forward`): how many bytes came back. A proxy to the pod that gets no
    /// answer while this does is at fault, or its way to the pod's address is (an application that listens
    /// on the pod's loopback only answers here and not there).
    pub async fn answers_directly(
        &self,
        member: &str,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<usize, MemberApiError> {
        let client = self.client(member)?;
        Ok(pod_answers(&client, namespace, pod, port, self.timeout).await?)
    }

    /// Where the member's kubeconfig is.
    pub fn kubeconfig_path(&self, member: &str) -> PathBuf {
        self.path(member)
    }
}

#[async_trait]
impl PodLookup for MemberPods {
    async fn pods(&self, member: &str, namespace: &str, selector: &str) -> Result<Vec<PodMatch>, ProviderError> {
        let path = self.path(member);
        let asking = format!("{member}'s pods in {namespace} matching {selector:?}, through {}", path.display());
        let client = match self.client(member) {
            Ok(client) => client,
            // No kubeconfig: the member has no cluster testbed can ask yet, so no pods.
            Err(MemberApiError::NoKubeconfig { .. }) => return Ok(Vec::new()),
            Err(e @ MemberApiError::Unreadable { .. }) => return Err(ProviderError::failed(e.to_string()).caused_by(e)),
            Err(e) => return Err(ProviderError::failed(format!("cannot ask for {asking}")).caused_by(e)),
        };
        let found = pods(&client, namespace, selector)
            .await
            .map_err(|e| ProviderError::unavailable(format!("cannot list {asking}")).caused_by(e))?;
        Ok(found.into_iter().map(|p| PodMatch { name: p.name, ip: p.ip, ready: p.ready, phase: p.phase }).collect())
    }

    async fn ask_directly(&self, member: &str, namespace: &str, pod: &str, port: u16) -> DirectAnswer {
        let client = match self.client(member) {
            Ok(client) => client,
            Err(e) => return DirectAnswer::NotAsked(e.to_string()),
        };
        match pod_answers(&client, namespace, pod, port, self.timeout).await {
            Ok(n) => DirectAnswer::Answered(n),
            Err(PortForwardFailure::Refused(words)) => {
                // What the pod's author meant it to listen on, for the hint.
                let declared = declared_ports(&client, namespace, pod).await.ok();
                DirectAnswer::Refused { words: words.trim_end().to_owned(), declared }
            }
            Err(e @ (PortForwardFailure::Closed | PortForwardFailure::Silent(_))) => {
                DirectAnswer::Silent(e.to_string())
            }
            Err(e) => DirectAnswer::NotAsked(e.to_string()),
        }
    }

    fn kubeconfig(&self, member: &str) -> String {
        self.path(member).display().to_string()
    }
}
