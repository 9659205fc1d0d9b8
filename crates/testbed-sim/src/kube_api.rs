//! The simulated machine's Kubernetes API servers, reached through a routed [`Network`]: a client that
//! connects to a member's API (through its proxy device on a host port, `127.0.0.1:16441`, or at the
//! container's address, `10.x.y.z:16443`) or to the host MicroK8s' (`127.0.0.1:16443`) is routed to an
//! HTTPS server of this process on a loopback port of its own, one per address. Each serves what the world
//! holds at that moment: a cluster whose MicroK8s runs in a running container answers, with its node Ready
//! (MicroK8s 1.32's API: `/version`, `/api/v1/nodes`); otherwise nothing answers at the address and the
//! connection is refused or dropped, as on a real host.
//!
//! The server's certificate is signed by the cluster's CA (the one `microk8s config` hands out) for the
//! address the client asked for, and it takes the admin client certificate that CA signed; a client
//! without credentials gets `401 Unauthorized`.
//!
//! This is a simulation: the servers answer only what testbed reads of a member's cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use testbed_kube::fake::{FakeKube, FakeNode, FakeState, FakeTls, StateSource};
use testbed_kube::Network;
use testbed_provider::ContainerFacts;

use crate::lxd_daemon::state::kind;
use crate::machine::Shared;
use crate::microk8s_snap;
use crate::world::{ClusterPki, SimWorld, HOST_MICROK8S_API_PORT};

/// Where nothing listens: a connection is refused.
const NOWHERE: ([u8; 4], u16) = ([127, 0, 0, 1], 1);

/// The common name of every simulated cluster CA ([`ClusterPki::generate`]).
const CA_NAME: &str = "10.152.183.1";

/// Which cluster an address reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cluster {
    Host,
    Member(String),
}

/// The API servers this process runs for the machine, by the address clients ask for.
#[derive(Default)]
pub(crate) struct Apis {
    servers: Mutex<BTreeMap<(String, u16), Served>>,
}

/// A server for one address, with the cluster it serves and that cluster's CA: a container re-created
/// under the same name is another cluster with another CA, and gets a server of its own.
struct Served {
    cluster: Cluster,
    ca_pem: String,
    server: FakeKube,
}

/// The containers as they are now (only `only`, when given): the simulated daemon's, or (with real
/// containers) as last read.
fn containers(shared: &Shared, world: &SimWorld, only: Option<&str>) -> Vec<ContainerFacts> {
    if let Some(facts) = shared.real_facts() {
        return facts.into_iter().filter(|c| only.is_none_or(|n| n == c.name)).collect();
    }
    let d = &world.lxd_daemon;
    d.instances
        .iter()
        .filter(|(name, _)| only.is_none_or(|n| n == name.as_str()))
        .map(|(name, i)| ContainerFacts {
            name: name.clone(),
            running: i.running(),
            ipv4: d.ipv4_of(i),
            proxies: d
                .devices_of(i)
                .into_iter()
                .filter(|(_, dev)| kind(dev) == "proxy")
                .map(|(n, dev)| {
                    let get = |k: &str| dev.get(k).cloned().unwrap_or_default();
                    (n.to_owned(), (get("listen"), get("connect")))
                })
                .collect(),
            identity: i.config.get("volatile.uuid").cloned().unwrap_or_default(),
            owned: false,
        })
        .collect()
}

/// `tcp:127.0.0.1:16441` → (`127.0.0.1`, 16441).
fn address_of(spec: &str) -> Option<(String, u16)> {
    let rest = spec.strip_prefix("tcp:")?;
    let (host, port) = rest.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

fn loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost")
}

/// The cluster `host:port` reaches now, if one answers there.
fn cluster_at(world: &SimWorld, facts: &[ContainerFacts], host: &str, port: u16) -> Option<Cluster> {
    for c in facts.iter().filter(|c| c.running) {
        let inside = world.inside.get(&c.name).filter(|i| i.identity == c.identity);
        let answers = inside.and_then(|i| i.microk8s.as_ref()).is_some_and(|m| m.running);
        let direct = c.ipv4.as_deref() == Some(host) && port == HOST_MICROK8S_API_PORT;
        let proxied = c.proxies.values().any(|(listen, connect)| {
            let (Some((lh, lp)), Some((ch, cp))) = (address_of(listen), address_of(connect)) else { return false };
            lp == port
                && (lh == host || lh == "0.0.0.0" || (loopback(&lh) && loopback(host)))
                && loopback(&ch)
                && cp == HOST_MICROK8S_API_PORT
        });
        if direct || proxied {
            return answers.then(|| Cluster::Member(c.name.clone()));
        }
    }
    let host_runs = world.host.microk8s.as_ref().is_some_and(|m| m.running);
    (loopback(host) && port == HOST_MICROK8S_API_PORT && host_runs).then_some(Cluster::Host)
}

/// What the cluster serves now.
fn state_of(world: &SimWorld, cluster: &Cluster) -> Option<FakeState> {
    let (node, channel) = match cluster {
        Cluster::Host => ("host".to_owned(), world.host.microk8s.as_ref()?.channel.clone()),
        Cluster::Member(m) => (m.clone(), world.inside.get(m)?.microk8s.as_ref()?.channel.clone()),
    };
    let version = microk8s_snap::release(&channel).map(|(v, _)| v).unwrap_or_else(|| "v1.32.3".into());
    Some(FakeState {
        git_version: version,
        nodes: vec![FakeNode::ready(&node)],
        // Anonymous requests are refused; the admin certificate the cluster's CA signed is let in.
        required_token: Some("simulated-no-token-opens-this".into()),
        ..FakeState::default()
    })
}

fn pki_of<'a>(world: &'a mut SimWorld, cluster: &Cluster) -> Option<&'a mut Option<ClusterPki>> {
    match cluster {
        Cluster::Host => world.host.microk8s.as_mut().map(|m| &mut m.pki),
        Cluster::Member(name) => world.inside.get_mut(name)?.microk8s.as_mut().map(|m| &mut m.pki),
    }
}

impl Apis {
    /// Where a connection to `host:port` goes now.
    fn route(&self, shared: &Arc<Shared>, host: &str, port: u16) -> SocketAddr {
        let nowhere = SocketAddr::from(NOWHERE);
        let found = shared.read(|w| {
            let facts = containers(shared, w, None);
            cluster_at(w, &facts, host, port)
        });
        let Some(cluster) = found else { return nowhere };
        let key = (host.to_owned(), port);
        let pki =
            shared.change_quiet(|w| pki_of(w, &cluster).map(|p| p.get_or_insert_with(ClusterPki::generate).clone()));
        let Some(pki) = pki else { return nowhere };
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = servers.get(&key) {
            if s.server.is_serving() && s.cluster == cluster && s.ca_pem == pki.ca_pem {
                return s.server.url().trim_start_matches("https://").parse().unwrap_or(nowhere);
            }
        }
        let names = vec![host.to_owned(), "127.0.0.1".to_owned(), "localhost".to_owned()];
        let Ok(tls) = FakeTls::server_signed_by(&pki.ca_pem, &pki.ca_key_pem, CA_NAME, &names) else { return nowhere };
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let (asked_host, asked_port) = key.clone();
        // At each connection and request: does the same cluster still answer there? Only its own container
        // is looked at (the host's cluster: none).
        let only = match &cluster {
            Cluster::Member(name) => Some(name.clone()),
            Cluster::Host => Some(String::new()),
        };
        let served = cluster.clone();
        let source: StateSource = Arc::new(move || {
            let shared = weak.upgrade()?;
            shared.read(|w| {
                let facts = containers(&shared, w, only.as_deref());
                let now = cluster_at(w, &facts, &asked_host, asked_port).filter(|c| *c == served)?;
                state_of(w, &now)
            })
        });
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return nowhere };
        if tokio::runtime::Handle::try_current().is_err() {
            return nowhere;
        }
        match FakeKube::serve_tls_from(listener, &tls, source) {
            Ok(server) => {
                let addr = server.url().trim_start_matches("https://").parse().unwrap_or(nowhere);
                servers.insert(key, Served { cluster, ca_pem: pki.ca_pem, server });
                addr
            }
            Err(e) => {
                tracing::warn!("the simulated API server for {host}:{port} could not start: {e}");
                nowhere
            }
        }
    }
}

/// The simulated machine's network, for API clients.
pub(crate) fn network(shared: &Arc<Shared>) -> Network {
    let weak = Arc::downgrade(shared);
    Network::routed(move |host, port| match weak.upgrade() {
        Some(shared) => shared.apis.route(&shared, host, port),
        None => SocketAddr::from(NOWHERE),
    })
}
