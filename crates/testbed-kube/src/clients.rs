//! Clients kept for reuse: a provider that asks one cluster many things (every member's nodes, every Cluster
//! object) opens its TLS connections once per cluster and credential, not once per question.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::config::{ApiConfig, KubeClient};
use crate::error::KubeObserveError;

/// Clients by the kubeconfig text and timeouts they were built from. A changed kubeconfig (a control plane
/// made anew has a new CA and credentials) is another key, so a client never outlives its credentials.
///
/// A client's connection task runs on the Tokio runtime it was built on: keep a `Clients` within one
/// runtime, as a provider is.
#[derive(Clone, Default)]
pub struct Clients {
    built: Arc<Mutex<HashMap<String, KubeClient>>>,
}

impl fmt::Debug for Clients {
    // The keys hold credentials: only their number is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.built.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Clients").field("built", &n).finish()
    }
}

impl Clients {
    /// The client for `config`, read from the kubeconfig `text`: the one built before for the same text and
    /// timeouts, or a new one.
    pub fn for_kubeconfig(&self, text: &str, config: &ApiConfig) -> Result<KubeClient, KubeObserveError> {
        let key = format!("{:?}|{:?}|{text}", config.connect_timeout, config.request_timeout);
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = built.get(&key) {
            return Ok(client.clone());
        }
        let client = KubeClient::new(config)?;
        built.insert(key, client.clone());
        Ok(client)
    }
}
