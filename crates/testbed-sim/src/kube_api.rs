//! The simulated machine's Kubernetes API servers, reached through a routed [`Network`]: a client that
//! connects to a member's API (through its proxy device on a host port, `127.0.0.1:16441`, or at the
//! container's address, `10.x.y.z:16443`), to the host MicroK8s' (`127.0.0.1:16443`) or to Karmada's (the
//! `karmada-apiserver` node port on any host address) is routed to an HTTPS server of this process on a
//! loopback port of its own, one per address. Each serves what the world holds at that moment:
//!
//! - a member or the host cluster answers while its MicroK8s runs (in a running container), with its node
//!   Ready (`/version`, `/api/v1/nodes`); a member also serves the pods it runs for Karmada's workloads
//!   (`/api/v1/.../pods`), each with its status as the kubelet writes it (a container whose image cannot be
//!   pulled waits with `ErrImagePull` and containerd's error); the host cluster also serves what `karmadactl init` made there (the
//!   `karmada-system` namespace and its labels, the control plane's Deployments, available once their images
//!   can be pulled and cluster DNS runs, and the `karmada-apiserver` NodePort Service);
//! - Karmada answers while its pods run, with its `Cluster`s: a pull-mode one only once its agent has
//!   created it; Ready when karmada-controller-manager (push) or the agent (pull) reaches the member.
//!
//! Otherwise nothing answers at the address and the connection is refused or dropped, as on a real host.
//! Label and endpoint writes (`PATCH`) go into the world ([`FakeWrite`]). A request that a
//! `kube:METHOD:PATH[@WHERE]` fault of `TESTBED_SIM_FAIL` names fails as kube-apiserver fails when etcd
//! times out ([`crate::faults::kube_failure`]), whichever address reached the server.
//!
//! The server's certificate is signed by the cluster's CA (the one `microk8s config` or `karmadactl init`
//! hands out) for the address the client asked for, and it takes the admin client certificate that CA
//! signed; a client without credentials gets `401 Unauthorized`.
//!
//! This is a simulation: the servers answer only what testbed reads and writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use testbed_kube::fake::{
    FakeCluster, FakeContainer, FakeDeployment, FakeFailure, FakeKube, FakeNamespace, FakeNode, FakePod, FakeService,
    FakeState, FakeTaint, FakeTls, FakeWrite, FaultHook, StateSink, StateSource,
};
use testbed_kube::{ConditionStatus, Network, CONTROL_PLANE_DEPLOYMENTS, KARMADA_NAMESPACE};
use testbed_provider::ContainerFacts;

use crate::containerd::Pull;
use crate::lxd_daemon::state::{kind, Devices, Instance, LxdDaemon};
use crate::machine::Shared;
use crate::microk8s_snap;
use crate::programs::HOST_ADDRESS;
use crate::propagation::ClusterState;
use crate::world::{
    ClusterPki, ClusterRecord, SimContainer, SimTaint, SimWorld, SyncMode, HOST_MICROK8S_API_PORT, MEMBER_API_PORT,
};

/// The Karmada API server's port inside the host cluster (the `karmada-apiserver` Service's `port`).
const APISERVER_PORT: i32 = 5443;

/// Where nothing listens: a connection is refused.
const NOWHERE: ([u8; 4], u16) = ([127, 0, 0, 1], 1);

/// The common name of every simulated cluster CA ([`ClusterPki::generate`]).
const CA_NAME: &str = "10.152.183.1";

/// The API servers this process runs for the machine, by the address clients ask for.
#[derive(Default)]
pub(crate) struct Apis {
    servers: Mutex<BTreeMap<(String, u16), Served>>,
}

/// A server for one address, with what it serves and that server's CA: a container re-created under the
/// same name is another cluster with another CA, and gets a server of its own.
struct Served {
    cluster: Reached,
    ca_pem: String,
    server: FakeKube,
}

/// Which API server an address reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reached {
    /// The host MicroK8s' (`127.0.0.1:16443`).
    Host,
    /// A member's MicroK8s (through its proxy device, or at the container's address).
    Member(String),
    /// The Karmada API server: the `karmada-apiserver` NodePort Service on the host cluster, which
    /// answers on every address of the host (MicroK8s' kube-proxy has no `--nodeport-addresses`).
    Karmada,
}

impl Reached {
    /// The server's name in a `kube:` fault's `@WHERE`: `host`, `karmada` or the member's name.
    fn fault_name(&self) -> &str {
        match self {
            Reached::Host => "host",
            Reached::Member(name) => name,
            Reached::Karmada => "karmada",
        }
    }
}

/// The containers as they are now (only `only`, when given): the simulated daemon's, or (with real
/// containers) as last read.
pub(crate) fn containers(shared: &Shared, world: &SimWorld, only: Option<&str>) -> Vec<ContainerFacts> {
    if let Some(facts) = shared.real_facts() {
        return facts.into_iter().filter(|c| only.is_none_or(|n| n == c.name)).collect();
    }
    let d = &world.lxd_daemon;
    match only {
        Some(name) => d.instances.get_key_value(name).map(|(name, i)| facts_of(d, name, i)).into_iter().collect(),
        None => d.instances.iter().map(|(name, i)| facts_of(d, name, i)).collect(),
    }
}

/// The containers that may answer at `host:port`: those with a proxy device listening on `port` or an
/// address of `host` (a cheap look at the raw devices, so that routing one connection does not compute
/// every container's facts: with hundreds of members that was most of a plan's time). [`reached`] decides.
fn candidates(shared: &Shared, world: &SimWorld, host: &str, port: u16) -> Vec<ContainerFacts> {
    if let Some(facts) = shared.real_facts() {
        return facts;
    }
    let d = &world.lxd_daemon;
    let suffix = format!(":{port}");
    let may_answer = |devices: &Devices| {
        devices.values().any(|dev| match kind(dev) {
            "proxy" => dev.get("listen").is_some_and(|l| l.ends_with(&suffix)),
            "nic" => dev.get("ipv4.address").is_some_and(|a| a == host),
            _ => false,
        })
    };
    d.instances
        .iter()
        .filter(|(_, i)| {
            i.dhcp_ipv4.as_deref() == Some(host)
                || may_answer(&i.devices)
                || i.profiles.iter().filter_map(|p| d.profiles.get(p)).any(|p| may_answer(&p.devices))
        })
        .map(|(name, i)| facts_of(d, name, i))
        .collect()
}

/// One simulated container's facts.
fn facts_of(d: &LxdDaemon, name: &str, i: &Instance) -> ContainerFacts {
    ContainerFacts {
        name: name.to_owned(),
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
    }
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

/// Whether `host` is one of the host's own addresses: loopback, its address, a bridge's gateway.
fn on_host(world: &SimWorld, host: &str) -> bool {
    loopback(host)
        || host == HOST_ADDRESS
        || world.lxd_daemon.networks.values().any(|n| {
            n.config.get("ipv4.address").and_then(|a| a.split('/').next()).is_some_and(|gateway| gateway == host)
        })
}

/// The API server `host:port` reaches now, if one answers there.
pub(crate) fn reached(world: &SimWorld, facts: &[ContainerFacts], host: &str, port: u16) -> Option<Reached> {
    for c in facts.iter().filter(|c| c.running) {
        let inside = world.inside.get(&c.name).filter(|i| i.identity == c.identity);
        let answers = inside.and_then(|i| i.microk8s.as_ref()).is_some_and(|m| m.running);
        let direct = c.ipv4.as_deref() == Some(host) && port == MEMBER_API_PORT;
        let proxied = c.proxies.values().any(|(listen, connect)| {
            let (Some((lh, lp)), Some((ch, cp))) = (address_of(listen), address_of(connect)) else { return false };
            lp == port
                && (lh == host || lh == "0.0.0.0" || (loopback(&lh) && loopback(host)))
                && loopback(&ch)
                && cp == MEMBER_API_PORT
        });
        if direct || proxied {
            return answers.then(|| Reached::Member(c.name.clone()));
        }
    }
    let host_mk8s = world.host.microk8s.as_ref().filter(|m| m.running)?;
    if loopback(host) && port == HOST_MICROK8S_API_PORT {
        return Some(Reached::Host);
    }
    // Its pods not running, the node port has no endpoint: the connection is refused.
    let karmada = host_mk8s
        .karmada
        .as_ref()
        .filter(|cp| cp.api_port == port && crate::karmadactl::components_available(world, cp))?;
    (on_host(world, host) || host == karmada.advertise_address).then_some(Reached::Karmada)
}

/// What a request through the simulated host's port `addr` gets: an application proxy device listening
/// there forwards to its `connect` inside its container, where a Ready pod of the member's MicroK8s at that
/// address answers when one of its containers listens on that port, on every address or on the pod's (an
/// application on `127.0.0.1` only answers a port-forward, not a proxy). As LXD's proxy does, a device with
/// nothing answering behind it accepts the connection and closes it without a byte; a port no device listens
/// on refuses it.
pub(crate) fn answer(world: &SimWorld, facts: &[ContainerFacts], addr: SocketAddr) -> Result<usize, String> {
    let host = addr.ip().to_string();
    let device = facts.iter().filter(|c| c.running).find_map(|c| {
        c.proxies.values().find_map(|(listen, connect)| {
            let (lh, lp) = address_of(listen)?;
            let listens = lp == addr.port() && (lh == host || lh == "0.0.0.0" || (loopback(&lh) && loopback(&host)));
            listens.then(|| (c, connect.clone()))
        })
    });
    let Some((c, connect)) = device else {
        return Err("connecting failed: Connection refused (os error 111)".into());
    };
    let Some((behind, port)) = address_of(&connect).map(|(ip, port)| (ip.trim_matches(['[', ']']).to_owned(), port))
    else {
        return Err("accepted, then closed without a byte back".into());
    };
    let inside = world.inside.get(&c.name).filter(|i| i.identity == c.identity);
    let k = inside.and_then(|i| i.microk8s.as_ref()).filter(|k| k.running);
    // A Ready pod at that address whose application listens on that port there (on every address, or on
    // the pod's own).
    let answered = k.is_some_and(|k| {
        k.pods.values().filter(|p| p.ready && p.ip.as_deref() == Some(behind.as_str())).any(|p| {
            p.containers
                .iter()
                .flat_map(|c| &c.listens)
                .any(|at| at.port() == port && (at.ip().is_unspecified() || at.ip().to_string() == behind))
        })
    });
    if answered {
        // `HTTP/1.0 200 OK\r\n`, the first bytes of an answer.
        Ok(17)
    } else {
        Err("accepted, then closed without a byte back".into())
    }
}

/// The CA the server at `reached` presents a certificate of, when it has one yet.
pub(crate) fn ca_of(world: &SimWorld, reached: &Reached) -> Option<String> {
    match reached {
        Reached::Host => world.host.microk8s.as_ref()?.pki.as_ref().map(|p| p.ca_pem.clone()),
        Reached::Member(m) => world.inside.get(m)?.microk8s.as_ref()?.pki.as_ref().map(|p| p.ca_pem.clone()),
        Reached::Karmada => world.control_plane().map(|cp| cp.etcd.pki.ca_pem.clone()),
    }
}

/// What the server at `reached` serves now.
fn state_of(world: &SimWorld, facts: &[ContainerFacts], reached: &Reached) -> Option<FakeState> {
    // Anonymous requests are refused; the admin certificate the cluster's CA signed is let in.
    let required_token = Some("simulated-no-token-opens-this".to_owned());
    let (node, channel) = match reached {
        Reached::Karmada => {
            let cp = world.control_plane()?;
            let now = world.now_ms();
            let clusters: Vec<FakeCluster> = cp
                .etcd
                .clusters
                .iter()
                .filter(|(_, c)| c.appears_at_ms.is_none_or(|at| at <= now))
                .map(|(name, c)| served_cluster(world, facts, name, c))
                .collect();
            let states = cluster_states(world, &clusters);
            let resource_bindings = crate::propagation::bindings(&cp.etcd, &states, &pod_counts(world));
            return Some(FakeState {
                git_version: "v1.31.3".into(),
                serves_karmada: true,
                clusters,
                required_token,
                taint_policies: cp.etcd.taint_policies.clone(),
                objects: cp.etcd.objects.clone(),
                resource_bindings,
                ..FakeState::default()
            });
        }
        Reached::Host => ("host".to_owned(), world.host.microk8s.as_ref()?.channel.clone()),
        Reached::Member(m) => (m.clone(), world.inside.get(m)?.microk8s.as_ref()?.channel.clone()),
    };
    let version = microk8s_snap::release(&channel).map(|(v, _)| v).unwrap_or_else(|| "v1.32.3".into());
    let mut state =
        FakeState { git_version: version, nodes: vec![FakeNode::ready(&node)], required_token, ..FakeState::default() };
    // A member serves the pods it runs for the workloads Karmada propagated to it.
    if let Reached::Member(m) = reached {
        let pods = world.inside.get(m).and_then(|i| i.microk8s.as_ref()).map(|k| k.pods.values());
        let pods: Vec<&crate::world::SimPod> = pods.into_iter().flatten().collect();
        state.pods = pods.iter().copied().map(served_pod).collect();
        state.events = pods.iter().copied().flat_map(kubelet_events).collect();
    }
    if *reached == Reached::Host {
        let host = world.host.microk8s.as_ref()?;
        if let Some(cp) = &host.karmada {
            let mut ns = FakeNamespace::new(KARMADA_NAMESPACE);
            ns.labels = cp.namespace_labels.clone();
            state.put_namespace(ns);
            let available = crate::karmadactl::components_available(world, cp);
            for (name, image) in cp.images.iter().filter(|(n, _)| CONTROL_PLANE_DEPLOYMENTS.contains(&n.as_str())) {
                let d = if available {
                    FakeDeployment::available(KARMADA_NAMESPACE, name)
                } else {
                    FakeDeployment::unavailable(KARMADA_NAMESPACE, name)
                };
                let d = d.image(image);
                let d = if name == "karmada-controller-manager" {
                    d.command(crate::karmadactl::controller_manager_command(cp))
                } else {
                    d
                };
                state.put_deployment(d);
            }
            state.put_service(FakeService::node_port(
                KARMADA_NAMESPACE,
                "karmada-apiserver",
                APISERVER_PORT,
                i32::from(cp.api_port),
            ));
        } else if let Some(labels) = &host.karmada_namespace {
            let mut ns = FakeNamespace::new(KARMADA_NAMESPACE);
            ns.labels = labels.clone();
            state.put_namespace(ns);
        }
    }
    Some(state)
}

/// A `Cluster` as Karmada reports it: Ready when karmada-controller-manager (push: from a pod on the host
/// cluster, at the Cluster's endpoint) or the member's karmada-agent (pull) reaches the member.
fn served_cluster(world: &SimWorld, facts: &[ContainerFacts], name: &str, c: &ClusterRecord) -> FakeCluster {
    let member_runs = |m: &str| world.inside.get(m).and_then(|i| i.microk8s.as_ref()).filter(|k| k.running);
    let mut out = match c.sync_mode {
        SyncMode::Push => {
            // A pod dials the endpoint: 127.0.0.1 there is the pod itself.
            let reachable = c.api_endpoint.as_deref().and_then(host_port).is_some_and(|(host, port)| {
                !loopback(&host)
                    && matches!(reached(world, facts, &host, port), Some(Reached::Member(m)) if member_runs(&m).is_some_and(|k| k.cluster_id == c.id))
            });
            if reachable {
                FakeCluster::ready(name)
            } else {
                FakeCluster::not_reachable(name)
            }
        }
        SyncMode::Pull => {
            let agent = world
                .inside
                .values()
                .filter_map(|i| i.microk8s.as_ref())
                .any(|k| k.running && k.karmada_agent && k.cluster_id == c.id);
            let mut pulled = FakeCluster::ready(name).pull();
            if !agent {
                pulled.ready = Some((
                    ConditionStatus::Unknown,
                    "ClusterStatusUnknown".into(),
                    "karmada-agent has stopped posting cluster status".into(),
                ));
            }
            pulled
        }
    };
    // Pull mode: the agent's --cluster-api-endpoint, from register's --kubeconfig.
    out.api_endpoint = c.api_endpoint.clone().unwrap_or_default();
    // The cluster controller's NoSchedule taint for its readiness (above), then those written by hand or by
    // a ClusterTaintPolicy.
    out.taints.extend(c.taints.iter().map(|t| FakeTaint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: t.effect.clone(),
        time_added: Some(rfc3339(t.added_at_ms)),
    }));
    out.id = c.id.clone();
    out.labels = c.labels.clone();
    out
}

/// The Clusters as Karmada's scheduler sees them: Ready or not, and whether their member runs.
fn cluster_states(world: &SimWorld, clusters: &[FakeCluster]) -> Vec<ClusterState> {
    clusters
        .iter()
        .map(|c| ClusterState {
            name: c.name.clone(),
            ready: c.ready.as_ref().is_some_and(|r| r.0 == ConditionStatus::True),
            runs: world
                .inside
                .get(&c.name)
                .and_then(|i| i.microk8s.as_ref())
                .is_some_and(|k| k.running && k.cluster_id == c.id),
        })
        .collect()
}

/// How many of each binding's pods are Ready on each member, of how many.
fn pod_counts(world: &SimWorld) -> crate::propagation::PodCounts {
    let mut counts = crate::propagation::PodCounts::new();
    for (member, inside) in &world.inside {
        for pod in inside.microk8s.iter().flat_map(|k| k.pods.values()) {
            let c = counts.entry((member.clone(), pod.owner.clone())).or_default();
            c.1 += 1;
            c.0 += i64::from(pod.ready);
        }
    }
    counts
}

/// A member's pod as its API server serves it: the template's labels, its containers, and its status as
/// the kubelet writes it (`Running` and Ready, or `Pending` with each waiting container's reason and
/// message).
fn served_pod(pod: &crate::world::SimPod) -> FakePod {
    FakePod {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        labels: pod.labels.clone(),
        ip: pod.ip.clone(),
        ready: pod.ready,
        containers: pod
            .containers
            .iter()
            .map(|c| FakeContainer {
                name: c.name.clone(),
                image: c.image.clone(),
                init: c.init,
                waiting: c.waiting.as_ref().map(|w| (w.reason.clone(), w.message.clone())),
                // The simulated containers never crash.
                previous_log: None,
                listens: c.listens.clone(),
                ports: c.ports.clone(),
            })
            .collect(),
    }
}

/// The events the kubelet records about a pod whose containers wait, as `kubectl describe pod` lists them
/// (pkg/kubelet/images/image_manager.go and kuberuntime_container.go: the pull, its failure with the runtime's
/// error, then `Error: REASON`). A pod whose containers all run has none the simulation keeps.
fn kubelet_events(pod: &crate::world::SimPod) -> Vec<testbed_kube::fake::FakeEvent> {
    let event = |type_: &str, reason: &str, message: String| testbed_kube::fake::FakeEvent {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        type_: type_.into(),
        reason: reason.into(),
        message,
        count: 1,
    };
    let mut out = Vec::new();
    for c in &pod.containers {
        let Some(w) = &c.waiting else { continue };
        match w.reason.as_str() {
            "ErrImagePull" => {
                out.push(event("Normal", "Pulling", format!("Pulling image {:?}", c.image)));
                out.push(event("Warning", "Failed", format!("Failed to pull image {:?}: {}", c.image, w.message)));
            }
            "ErrImageNeverPull" => out.push(event("Warning", "ErrImageNeverPull", w.message.clone())),
            "InvalidImageName" => out.push(event("Warning", "InspectFailed", w.message.clone())),
            _ => {}
        }
        out.push(event("Warning", "Failed", format!("Error: {}", w.reason)));
    }
    out
}

/// Runs the simulated Karmada's controllers at `now` (taints, eviction, scheduling: [`crate::propagation`])
/// and the members' pods for what is scheduled on them, each pod keeping its address while it lives and a
/// new one getting the member's next address. A pod that does not run yet pulls its containers' images
/// ([`crate::containerd::pull`], as the kubelet tries again each time): it is Ready once each is had, and
/// what was pulled stays in the member's containerd; a pod that runs keeps running while MicroK8s does.
/// Returns whether anything changed.
fn run_controllers(world: &mut SimWorld, facts: &[ContainerFacts], now: u64) -> bool {
    let Some(cp) = world.control_plane() else { return false };
    let served: Vec<FakeCluster> = cp
        .etcd
        .clusters
        .iter()
        .filter(|(_, c)| c.appears_at_ms.is_none_or(|at| at <= now))
        .map(|(name, c)| served_cluster(world, facts, name, c))
        .collect();
    let states = cluster_states(world, &served);
    let failover_on = testbed_karmada::failover_switched_on(&crate::karmadactl::controller_manager_command(cp));
    let before = world.clone();
    let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) else { return false };
    crate::propagation::reconcile(&mut cp.etcd, &states, failover_on, now);
    let pods = crate::propagation::pods(&cp.etcd);
    // What each pod that does not run yet gets for its containers, from the world as it is before anything
    // here changes it: (member, pod) → the containers, and the images pulled.
    let mut pulls: BTreeMap<(String, String), (Vec<SimContainer>, Vec<String>)> = BTreeMap::new();
    for (member, inside) in &world.inside {
        let Some(k) = inside.microk8s.as_ref().filter(|k| k.running) else { continue };
        for p in pods.get(member).into_iter().flatten() {
            let key = format!("{}/{}", p.namespace, p.name);
            if k.pods.get(&key).is_some_and(|have| have.ready) {
                continue;
            }
            let mut containers = Vec::new();
            let mut pulled = Vec::new();
            for c in &p.containers {
                let waiting =
                    match crate::containerd::pull(world, &inside.files, &k.images, &c.image, c.policy.as_deref()) {
                        Pull::Present => None,
                        Pull::Pulled(name) => {
                            pulled.push(name);
                            None
                        }
                        Pull::Failed(w) => Some(w),
                    };
                // A container that runs listens on the ports its template declares, on every address.
                let listens = match waiting {
                    Some(_) => Vec::new(),
                    None => c.ports.iter().map(|p| std::net::SocketAddr::from(([0, 0, 0, 0], *p))).collect(),
                };
                containers.push(SimContainer {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    init: c.init,
                    waiting,
                    listens,
                    ports: c.ports.clone(),
                });
            }
            pulls.insert((member.clone(), key), (containers, pulled));
        }
    }
    for (member, inside) in world.inside.iter_mut() {
        let Some(k) = inside.microk8s.as_mut() else { continue };
        let wanted = pods.get(member).cloned().unwrap_or_default();
        k.pods.retain(|key, _| wanted.iter().any(|p| *key == format!("{}/{}", p.namespace, p.name)));
        // Calico gives each MicroK8s node a block of 10.1.0.0/16; a member's is fixed by its name here.
        let block = member.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 200 + 20;
        let mut next =
            k.pods.values().filter_map(|p| p.ip.as_deref()?.rsplit('.').next()?.parse::<u32>().ok()).max().unwrap_or(1);
        for p in wanted {
            let key = format!("{}/{}", p.namespace, p.name);
            let pod = k.pods.entry(key.clone()).or_insert_with(|| {
                next = if next >= 254 { 2 } else { next + 1 };
                crate::world::SimPod {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    labels: p.labels.clone(),
                    ip: Some(format!("10.1.{block}.{next}")),
                    ready: false,
                    owner: p.owner.clone(),
                    containers: Vec::new(),
                }
            });
            pod.owner = p.owner.clone();
            if !k.running {
                pod.ready = false;
                continue;
            }
            if let Some((containers, pulled)) = pulls.remove(&(member.clone(), key)) {
                pod.ready = containers.iter().all(|c| c.waiting.is_none());
                pod.containers = containers;
                k.images.extend(pulled);
            }
        }
    }
    *world != before
}

/// A Cluster's taints after a write: those written, less the cluster controller's NoSchedule taints for its
/// readiness (`cluster.karmada.io/not-ready`, `.../unreachable`, which the simulation derives from the
/// Cluster's Ready condition each time it serves it); each that was there already keeps its time and who
/// added it, and a new one is stamped now, as Karmada's API server stamps `timeAdded` (a time the client
/// gave is not kept: the simulation's clock is the server's).
fn written_taints(had: &[SimTaint], written: &[FakeTaint], now: u64) -> Vec<SimTaint> {
    let readiness = |t: &FakeTaint| {
        t.effect == "NoSchedule"
            && t.value.is_none()
            && matches!(t.key.as_str(), "cluster.karmada.io/not-ready" | "cluster.karmada.io/unreachable")
    };
    written
        .iter()
        .filter(|t| !readiness(t))
        .map(|t| {
            let same = had.iter().find(|h| h.key == t.key && h.value == t.value && h.effect == t.effect);
            SimTaint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                added_at_ms: same.map_or(now, |h| h.added_at_ms),
                by_policy: same.is_some_and(|h| h.by_policy),
            }
        })
        .collect()
}

/// Milliseconds since the Unix epoch as RFC 3339 (`timeAdded`), to the second as the API writes it.
fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// `host:port` of a server URL.
fn host_port(server: &str) -> Option<(String, u16)> {
    let rest = server.split_once("://").map(|(_, r)| r).unwrap_or(server);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

/// The certificates of the server at `reached`, made when first needed.
fn pki_of(world: &mut SimWorld, reached: &Reached) -> Option<ClusterPki> {
    let slot = match reached {
        Reached::Karmada => return world.control_plane().map(|cp| cp.etcd.pki.clone()),
        Reached::Host => &mut world.host.microk8s.as_mut()?.pki,
        Reached::Member(name) => &mut world.inside.get_mut(name)?.microk8s.as_mut()?.pki,
    };
    Some(slot.get_or_insert_with(ClusterPki::generate).clone())
}

/// Keeps what a write to the server at `reached` changed, of what the world models: the
/// `karmada-system` namespace's labels on the host cluster; a `Cluster`'s labels and endpoint.
fn keep_write(world: &mut SimWorld, reached: &Reached, write: &FakeWrite) {
    match (reached, write) {
        (Reached::Host, FakeWrite::Namespace { name, labels }) if name == KARMADA_NAMESPACE => {
            let Some(host) = world.host.microk8s.as_mut() else { return };
            match (&mut host.karmada, &mut host.karmada_namespace) {
                (Some(cp), _) => cp.namespace_labels = labels.clone(),
                (None, Some(left)) => *left = labels.clone(),
                (None, None) => {}
            }
        }
        (Reached::Karmada, FakeWrite::Cluster { name, labels, api_endpoint, taints }) => {
            let now = world.now_ms();
            let cp = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut());
            if let Some(c) = cp.and_then(|cp| cp.etcd.clusters.get_mut(name)) {
                c.labels = labels.clone();
                c.api_endpoint = Some(api_endpoint.clone()).filter(|e| !e.is_empty());
                c.taints = written_taints(&c.taints, taints, now);
            }
        }
        (Reached::Host, FakeWrite::DeploymentCommand { namespace, name, command })
            if namespace == KARMADA_NAMESPACE && name == "karmada-controller-manager" =>
        {
            if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
                cp.controller_manager_command = command.clone();
            }
        }
        (Reached::Karmada, FakeWrite::Object { path, object }) => {
            if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
                match object {
                    Some(o) => cp.etcd.objects.insert(path.clone(), o.clone()),
                    None => cp.etcd.objects.remove(path),
                };
            }
        }
        (Reached::Karmada, FakeWrite::TaintPolicy { name, object }) => {
            if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
                cp.etcd.taint_policies.insert(name.clone(), object.clone());
            }
        }
        _ => {}
    }
}

impl Apis {
    /// Where a connection to `host:port` goes now.
    fn route(&self, shared: &Arc<Shared>, host: &str, port: u16) -> SocketAddr {
        let nowhere = SocketAddr::from(NOWHERE);
        let found = shared.read(|w| {
            let facts = candidates(shared, w, host, port);
            reached(w, &facts, host, port)
        });
        let Some(cluster) = found else { return nowhere };
        let key = (host.to_owned(), port);
        let Some(pki) = shared.change_quiet(|w| pki_of(w, &cluster)) else { return nowhere };
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
        // At each connection and request: does the same server still answer there? Only its own container
        // is looked at (the host's cluster and Karmada: none; Karmada's Clusters: all).
        let only = match &cluster {
            Reached::Member(name) => Some(name.clone()),
            Reached::Host | Reached::Karmada => Some(String::new()),
        };
        let served = cluster.clone();
        let source: StateSource = Arc::new(move || {
            let shared = weak.upgrade()?;
            let mut w = shared.lock();
            // The control plane's pods pull what they can each time they are looked at.
            if !matches!(served, Reached::Member(_)) {
                crate::karmadactl::pull_images(&mut w);
            }
            // Karmada's controllers run each time Karmada or a member is looked at; what they change is kept.
            let controllers =
                w.control_plane().is_some_and(|cp| !cp.etcd.objects.is_empty() || !cp.etcd.scheduled.is_empty());
            if controllers {
                let all = containers(&shared, &w, None);
                let now = w.now_ms();
                if run_controllers(&mut w, &all, now) {
                    if let Err(e) = shared.save_locked(&w) {
                        tracing::warn!("the simulated machine could not keep what Karmada's controllers did: {e}");
                    }
                }
            }
            let facts = containers(&shared, &w, only.as_deref());
            let now = reached(&w, &facts, &asked_host, asked_port).filter(|c| *c == served)?;
            let all = if now == Reached::Karmada { containers(&shared, &w, None) } else { facts };
            state_of(&w, &all, &now)
        });
        let writes = Arc::downgrade(shared);
        let written = cluster.clone();
        let sink: StateSink = Arc::new(move |write: &FakeWrite| {
            if let Some(shared) = writes.upgrade() {
                let mut world = shared.lock();
                keep_write(&mut world, &written, write);
                if let Err(e) = shared.save_locked(&world) {
                    tracing::warn!("the simulated machine could not keep an API write: {e}");
                }
            }
        });
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return nowhere };
        if tokio::runtime::Handle::try_current().is_err() {
            return nowhere;
        }
        let faults = Arc::downgrade(shared);
        let at = cluster.fault_name().to_owned();
        let fails: FaultHook = Arc::new(move |method: &str, path: &str| {
            let shared = faults.upgrade()?;
            let fault = shared.request_fault(|faults, spent| faults.kube(&at, method, path, spent))?;
            Some(FakeFailure::unconverted(crate::faults::kube_failure(&fault)))
        });
        match FakeKube::serve_tls_with(listener, &tls, source, Some(sink)) {
            Ok(server) => {
                server.fail_requests(fails);
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
