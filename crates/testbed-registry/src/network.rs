//! How the engine reaches registries: over the machine's own network (DNS and TCP), or over a routed
//! network that answers every `host:port` from a unix socket of its choosing (a simulated world's
//! registries). The engine's requests, auth challenges and TLS are the same either way; only the dial
//! differs.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the engine's connections go.
#[derive(Clone, Default)]
pub enum Network {
    /// DNS and TCP, with the system's TLS roots.
    #[default]
    Direct,
    /// Every connection to the unix socket the route names for its `host:port`, TLS verified against the
    /// route's roots only.
    Routed(Arc<dyn Route>),
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Direct => f.write_str("Direct"),
            Network::Routed(_) => f.write_str("Routed"),
        }
    }
}

/// A routed network: which socket answers for an address, and which CA its TLS servers use.
pub trait Route: Send + Sync {
    /// The socket that answers for `authority` (`host:port`, the port always written), spoken to over TLS
    /// when `tls`. A path nothing listens on makes the address unreachable, as a refused connection does.
    fn socket(&self, authority: &str, tls: bool) -> PathBuf;
    /// The CA certificates (DER) that the routed TLS servers' certificates chain to.
    fn roots(&self) -> Vec<Vec<u8>>;
}
