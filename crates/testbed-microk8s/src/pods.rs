//! [`MemberPods`]: the pods of the members' clusters, asked through the people kubeconfig testbed writes for
//! each member (`<kubeconfig_dir>/<member>.config`), as the LXD layer needs them for proxies that follow a
//! pod.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use testbed_kube::{pods, ApiConfig, Clients, Network};
use testbed_provider::{PodLookup, PodMatch, ProviderError};

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

#[async_trait]
impl PodLookup for MemberPods {
    async fn pods(&self, member: &str, namespace: &str, selector: &str) -> Result<Vec<PodMatch>, ProviderError> {
        let path = self.path(member);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // No kubeconfig: the member has no cluster testbed can ask yet, so no pods.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(ProviderError::failed(format!("cannot read {}", path.display())).caused_by(e));
            }
        };
        let asking = format!("{member}'s pods in {namespace} matching {selector:?}, through {}", path.display());
        let config = ApiConfig::from_kubeconfig_yaml(&text, None)
            .map_err(|e| ProviderError::failed(format!("cannot ask for {asking}")).caused_by(e))?
            .with_timeouts(self.timeout, self.timeout)
            .with_network(self.network.clone());
        let client = self
            .clients
            .for_kubeconfig(&text, &config)
            .map_err(|e| ProviderError::failed(format!("cannot ask for {asking}")).caused_by(e))?;
        let found = pods(&client, namespace, selector)
            .await
            .map_err(|e| ProviderError::unavailable(format!("cannot list {asking}")).caused_by(e))?;
        Ok(found.into_iter().map(|p| PodMatch { name: p.name, ip: p.ip, ready: p.ready, phase: p.phase }).collect())
    }

    fn kubeconfig(&self, member: &str) -> String {
        self.path(member).display().to_string()
    }
}
