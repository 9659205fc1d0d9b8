//! The real LXD layer: the bridge network, the storage pool, the member profile, member containers with
//! static addresses and limits, and proxy devices. Observed and changed over the REST API.
//!
//! Ownership lives on the objects: `user.testbed.owner = testbed` and `user.testbed.address` on networks,
//! pools, profiles and instances (plus `user.testbed.hash` of the desired settings and `user.testbed.image`
//! on instances); a proxy device is testbed's when its instance carries `user.testbed.proxy.<device>`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use testbed_plan::{Action, Address, ForeignUse, Health, Kind, Layer, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{
    ActionLog, ContainerFacts, ContainerView, DirectAnswer, LayerObservation, PodLookup, PodMatch, Provider,
    ProviderError,
};

use testbed_lxd_client::{encode, Client, LxdError, Operation, OperationClass};

use crate::error::IntoProvider;
use crate::follow::{self, NoPod, Probe, Waits};

/// The observed spec key of a member's container that holds LXD's status of it (`Running`, `Stopped`).
pub const INSTANCE_STATUS: &str = "status";
pub const OWNER_KEY: &str = "user.testbed.owner";
pub const OWNER: &str = "testbed";
pub const ADDRESS_KEY: &str = "user.testbed.address";
pub const HASH_KEY: &str = "user.testbed.hash";
/// The testbed (the file's `name`) that owns the object; objects made before names existed have none and
/// belong to the default testbed.
pub const NAME_KEY: &str = "user.testbed.name";
pub const IMAGE_KEY: &str = "user.testbed.image";
pub const PROXY_KEY_PREFIX: &str = "user.testbed.proxy.";
/// The pod a proxy device follows, `NAMESPACE/SELECTOR:PORT`, recorded as `user.testbed.proxy.<device>.pod`
/// (a device's name has no `.`).
pub const POD_KEY_SUFFIX: &str = ".pod";

const LONG: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(60);
/// How long observation waits for LXD operations still running on this testbed's instances (an apply
/// stopped mid-way leaves its operations running in the daemon) before it says the layer's state is unknown.
pub const SETTLE: Duration = Duration::from_secs(60);

type Map = BTreeMap<String, String>;

/// LXD writes `null` for some empty lists and maps (`used_by` of a host interface, for one).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
struct Network {
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    managed: bool,
    #[serde(default, deserialize_with = "nullable")]
    config: Map,
    #[serde(default, deserialize_with = "nullable")]
    used_by: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Pool {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default, deserialize_with = "nullable")]
    config: Map,
    #[serde(default, deserialize_with = "nullable")]
    used_by: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Profile {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    config: Map,
    #[serde(default, deserialize_with = "nullable")]
    devices: BTreeMap<String, Map>,
    #[serde(default, deserialize_with = "nullable")]
    used_by: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Instance {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default, deserialize_with = "nullable")]
    config: Map,
    #[serde(default, deserialize_with = "nullable")]
    devices: BTreeMap<String, Map>,
    #[serde(default, deserialize_with = "nullable")]
    profiles: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    expanded_config: Map,
    #[serde(default, deserialize_with = "nullable")]
    expanded_devices: BTreeMap<String, Map>,
    #[serde(default)]
    state: Option<Value>,
}

impl Instance {
    fn owned_by(&self, testbed: &str) -> bool {
        owned(&self.config, testbed)
    }

    fn running(&self) -> bool {
        self.status == "Running"
    }

    /// The bridged NIC: `eth0` if it is one, else the first NIC.
    fn nic(&self) -> Option<&Map> {
        let nics = || self.expanded_devices.iter().filter(|(_, d)| d.get("type").map(String::as_str) == Some("nic"));
        nics().find(|(n, _)| n.as_str() == "eth0").or_else(|| nics().next()).map(|(_, d)| d)
    }

    /// Every IPv4 address it holds or has reserved: the static one and the ones in its live state.
    fn ipv4s(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> =
            self.nic().and_then(|d| d.get("ipv4.address")).and_then(|s| s.parse().ok()).into_iter().collect();
        if let Some(nets) = self.state.as_ref().and_then(|s| s.get("network")).and_then(Value::as_object) {
            for (ifname, net) in nets {
                if ifname == "lo" {
                    continue;
                }
                for a in net.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    if a.get("family").and_then(Value::as_str) == Some("inet") {
                        if let Some(ip) = a.get("address").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                            out.push(ip);
                        }
                    }
                }
            }
        }
        out
    }
}

fn testbed_of(config: &Map) -> Option<&str> {
    (config.get(OWNER_KEY).map(String::as_str) == Some(OWNER))
        .then(|| config.get(NAME_KEY).map(String::as_str).unwrap_or("testbed"))
}

fn owned(config: &Map, testbed: &str) -> bool {
    testbed_of(config) == Some(testbed)
}

fn owner(config: &Map, testbed: &str, what: String) -> Owner {
    match testbed_of(config) {
        Some(t) if t == testbed => Owner::Testbed,
        Some(other) => Owner::Other(format!("{what} belongs to another testbed, {other:?}")),
        None => Owner::Other(format!("{what} exists that testbed did not create (no {OWNER_KEY} key)")),
    }
}

/// Settings as the file writes them: no `user.testbed.*` bookkeeping, no LXD-internal `volatile.*`.
fn visible(config: &Map) -> Spec {
    config
        .iter()
        .filter(|(k, _)| !k.starts_with("user.testbed.") && !k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A stable fingerprint of desired settings (FNV-1a over `key=value` lines).
pub fn settings_hash(spec: &Spec) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in spec {
        for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn ownership(testbed: &str, address: &Address, spec: &Spec) -> Map {
    [
        (OWNER_KEY.to_owned(), OWNER.to_owned()),
        (NAME_KEY.to_owned(), testbed.to_owned()),
        (ADDRESS_KEY.to_owned(), address.to_string()),
        (HASH_KEY.to_owned(), settings_hash(spec)),
    ]
    .into_iter()
    .collect()
}

/// The image source of `POST /1.0/instances` for `remote:alias` or a local alias.
pub fn image_source(image: &str) -> Value {
    let remote = |server: &str, alias: &str| json!({"type": "image", "mode": "pull", "server": server, "protocol": "simplestreams", "alias": alias});
    match image.split_once(':') {
        Some(("ubuntu", alias)) => remote("https://cloud-images.ubuntu.com/releases", alias),
        Some(("ubuntu-daily", alias)) => remote("https://cloud-images.ubuntu.com/daily", alias),
        Some(("images", alias)) => remote("https://images.linuxcontainers.org", alias),
        _ => json!({"type": "image", "alias": image}),
    }
}

/// The profile's devices from its spec (`devices.NAME.source`): `/dev/...` are unix-char devices, the rest
/// disk passthroughs at the same path.
fn profile_devices(spec: &Spec) -> BTreeMap<String, Map> {
    let mut out = BTreeMap::new();
    for (k, v) in spec {
        let Some(rest) = k.strip_prefix("devices.") else { continue };
        let Some(name) = rest.strip_suffix(".source") else { continue };
        let kind = if v.starts_with("/dev/") { "unix-char" } else { "disk" };
        let dev: Map = [("type", kind), ("source", v.as_str()), ("path", v.as_str())]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        out.insert(name.to_owned(), dev);
    }
    out
}

fn profile_config(spec: &Spec) -> Map {
    spec.iter().filter(|(k, _)| !k.starts_with("devices.")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Kernel modules the profile asks LXD to load that the host's kernel does not have (LXD refuses to
/// start the container then).
pub fn missing_kernel_modules(spec: &Spec, has: &dyn Fn(&str) -> bool) -> Vec<String> {
    spec.get("linux.kernel_modules")
        .map(|list| list.split(',').map(str::trim).filter(|m| !m.is_empty() && !has(m)).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The host side of a proxy device, when it is one address and port (`tcp:ADDRESS:PORT`,
/// `udp:ADDRESS:PORT`); a unix socket or a port range is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub udp: bool,
    pub addr: std::net::SocketAddr,
}

impl HostPort {
    pub fn parse(listen: &str) -> Option<HostPort> {
        let (proto, addr) = listen.split_once(':')?;
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return None,
        };
        Some(HostPort { udp, addr: addr.parse().ok()? })
    }

    /// Whether the two cannot both listen: the same protocol and port, on the same address or a wildcard.
    fn clashes(&self, other: &HostPort) -> bool {
        let (a, b) = (self.addr.ip(), other.addr.ip());
        self.udp == other.udp
            && self.addr.port() == other.addr.port()
            && (a == b || a.is_unspecified() || b.is_unspecified())
    }
}

/// Whether a host port is held on this host: a bind that fails with "address in use".
fn host_port_bound(port: HostPort) -> bool {
    let bound = if port.udp {
        std::net::UdpSocket::bind(port.addr).map(drop)
    } else {
        std::net::TcpListener::bind(port.addr).map(drop)
    };
    matches!(bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

fn last_segment(url: &str) -> &str {
    url.split('?').next().unwrap_or(url).rsplit('/').next().unwrap_or(url)
}

/// Whether the host's kernel has a module (loaded, or loadable by LXD's modprobe).
pub type KernelModules = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Whether something holds a host port on LXD's host (LXD's own proxies included).
pub type HostPorts = Arc<dyn Fn(HostPort) -> bool + Send + Sync>;

/// How often a foreign container's state is read again when the daemon could not render it.
const STATE_TRIES: u32 = 5;

/// The live state of a container testbed does not own, at `path` (`/1.0/instances/NAME/state`); None if it
/// is gone. Its owner may be changing it while testbed looks: deleted since the listing (404), or stopping
/// with no init process left, which Incus 6.0 cannot render (it answers 500, `processStartedAt` refusing the
/// missing PID; LXD 5.0 has no start time in the state). A state the daemon refuses is read again a few
/// times, 200 ms apart, before observation gives up.
async fn foreign_state(client: &Client, path: &str) -> Result<Option<Value>, LxdError> {
    let mut tries = 1;
    loop {
        match client.get_opt::<Value>(path).await {
            Err(LxdError::Api { .. }) if tries < STATE_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answer => return answer,
        }
    }
}

/// The real LXD (or Incus) layer.
pub struct LxdProvider {
    client: Client,
    /// The testbed whose objects this provider owns (the file's `name`).
    testbed: String,
    /// The host kernel the daemon runs on: `/sys/module` here, the simulated host's kernel under
    /// simulation.
    kernel: KernelModules,
    /// The host ports held on LXD's host: this machine's, or the simulated host's under simulation.
    host_ports: HostPorts,
    /// How long observation waits for operations still running on this testbed's instances.
    settle: Duration,
    /// One change at a time per instance: proxies and the instance share its device map.
    locks: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where the pods that proxies follow are found (the members' clusters); none: such proxies cannot be
    /// observed or applied.
    pods: Option<Arc<dyn PodLookup>>,
    /// A request through a proxy's host port, one attempt: over TCP on this machine, or the simulated
    /// host's answer.
    probe: Probe,
    /// How long applying a pod proxy waits for its pod and for an answer through it.
    waits: Waits,
}

impl LxdProvider {
    pub fn new(client: Client, testbed: impl Into<String>) -> LxdProvider {
        let kernel: KernelModules = Arc::new(|m: &str| std::path::Path::new("/sys/module").join(m).exists());
        LxdProvider {
            client,
            testbed: testbed.into(),
            kernel,
            host_ports: Arc::new(host_port_bound),
            settle: SETTLE,
            locks: Default::default(),
            pods: None,
            probe: follow::tcp_probe(),
            waits: Waits::default(),
        }
    }

    /// Where the pods that proxies follow are found: the members' clusters, through the MicroK8s layer's
    /// kubeconfigs.
    pub fn with_pods(mut self, pods: Arc<dyn PodLookup>) -> LxdProvider {
        self.pods = Some(pods);
        self
    }

    /// How requests through a proxy's host port are made, when the host is not this machine (a simulated
    /// host): one attempt, its bytes back or what happened instead.
    pub fn with_probe(mut self, probe: Probe) -> LxdProvider {
        self.probe = probe;
        self
    }

    /// How long applying a pod proxy waits for a Ready pod (default 300 s) and then for an answer through
    /// the proxy (default 30 s), looking every `every` (default 1 s).
    pub fn with_pod_waits(mut self, pod: Duration, answer: Duration, every: Duration) -> LxdProvider {
        self.waits = Waits { pod, answer, every };
        self
    }

    /// The kernel LXD's host has, when it is not this machine's (a simulated host).
    pub fn with_kernel_modules(mut self, has: impl Fn(&str) -> bool + Send + Sync + 'static) -> LxdProvider {
        self.kernel = Arc::new(has);
        self
    }

    /// The ports held on LXD's host, when it is not this machine (a simulated host).
    pub fn with_host_ports(mut self, held: impl Fn(HostPort) -> bool + Send + Sync + 'static) -> LxdProvider {
        self.host_ports = Arc::new(held);
        self
    }

    /// How long observation waits for operations running on this testbed's instances ([`SETTLE`]).
    pub fn with_settle_limit(mut self, limit: Duration) -> LxdProvider {
        self.settle = limit;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One request through a host port ([`LxdProvider::with_probe`]): over TCP on this machine, or the
    /// simulated host's answer.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    fn lock_for(&self, instance: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(instance.to_owned()).or_default())
    }

    async fn instances(&self) -> Result<Vec<Instance>, LxdError> {
        self.client.get("/1.0/instances?recursion=1").await
    }

    /// The live state (addresses) of the containers testbed does not own, fetched concurrently: their
    /// DHCP addresses must not be handed out as static ones. testbed's own containers have their address
    /// in their config, and asking LXD for every container's state is what makes observation slow.
    async fn fill_foreign_states(&self, instances: &mut [Instance]) -> Result<(), LxdError> {
        let mut set = tokio::task::JoinSet::new();
        for (idx, i) in instances.iter().enumerate() {
            if i.owned_by(&self.testbed) || !i.running() {
                continue;
            }
            let client = self.client.clone();
            let path = format!("/1.0/instances/{}/state", encode(&i.name));
            set.spawn(async move { (idx, foreign_state(&client, &path).await) });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok((idx, state)) = joined {
                instances[idx].state = state?;
            }
        }
        Ok(())
    }

    async fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.client.get_opt(&format!("/1.0/instances/{}", encode(name))).await
    }

    /// Writes an instance's local config, devices and profiles back (`PUT`), keeping everything else.
    async fn put_instance(&self, i: &Instance, log: &ActionLog) -> Result<(), LxdError> {
        let path = format!("/1.0/instances/{}", encode(&i.name));
        log.api("PUT", &path);
        let body = json!({"config": i.config, "devices": i.devices, "profiles": i.profiles});
        self.client.put(&path, &body, SHORT).await.map(|_| ())
    }

    async fn set_state(&self, name: &str, action: &str, log: &ActionLog) -> Result<(), LxdError> {
        let path = format!("/1.0/instances/{}/state", encode(name));
        log.api("PUT", &format!("{path} {{action: {action}}}"));
        let body = json!({"action": action, "timeout": 30, "force": action == "stop"});
        self.client.put(&path, &body, SHORT).await.map(|_| ())
    }

    /// Waits, up to the settle limit, for the operations running on this testbed's instances (wanted or
    /// owned): an apply stopped mid-way leaves its operations running in the daemon, and what they change is
    /// not there to read until they finish. Websocket sessions and tokens change nothing and are not waited
    /// for. Operations still running at the limit make the state unknown ([`LxdError::Busy`]).
    async fn settle(&self, wanted: &[Resource]) -> Result<(), LxdError> {
        let running = |ops: Vec<Operation>| -> Vec<Operation> {
            ops.into_iter()
                .filter(|op| op.in_progress() && op.class == OperationClass::Task && !op.instances().is_empty())
                .collect()
        };
        let ops = running(self.client.operations().await?);
        if ops.is_empty() {
            return Ok(());
        }
        let mut mine: BTreeSet<String> =
            wanted.iter().filter(|r| r.kind == Kind::LxdInstance).filter_map(|r| r.member.clone()).collect();
        if ops.iter().flat_map(Operation::instances).any(|n| !mine.contains(&n)) {
            mine.extend(self.instances().await?.into_iter().filter(|i| i.owned_by(&self.testbed)).map(|i| i.name));
        }
        let ours = |op: &Operation| op.instances().iter().any(|n| mine.contains(n));
        let deadline = tokio::time::Instant::now() + self.settle;
        let mut waits = tokio::task::JoinSet::new();
        for op in ops.iter().filter(|op| ours(op)) {
            let (client, url) = (self.client.clone(), format!("/1.0/operations/{}", encode(&op.id)));
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tracing::debug!(operation = %op.id, description = %op.description, "waiting for a running LXD operation");
            waits.spawn(async move { client.wait(&url, left).await });
        }
        if waits.is_empty() {
            return Ok(());
        }
        // Each wait ends with the operation finished (whether it succeeded or failed), gone, or still running
        // at the limit: the listing below tells which. Only a daemon that went away stops the look.
        while let Some(waited) = waits.join_next().await {
            if let Ok(Err(e @ (LxdError::NotInstalled { .. } | LxdError::Unreachable { .. } | LxdError::Lost { .. }))) =
                waited
            {
                return Err(e);
            }
        }
        let busy: Vec<Operation> = running(self.client.operations().await?).into_iter().filter(|op| ours(op)).collect();
        if busy.is_empty() {
            return Ok(());
        }
        let instances: BTreeSet<String> =
            busy.iter().flat_map(Operation::instances).filter(|n| mine.contains(n)).collect();
        Err(LxdError::Busy {
            flavor: self.client.flavor().name(),
            command: self.client.flavor().command(),
            instances: instances.into_iter().collect(),
            operations: busy.iter().map(|op| format!("{} ({})", op.description, op.id)).collect(),
            after: self.settle,
        })
    }

    /// Looks for the pod of each wanted proxy that follows one, in the background: where each is now.
    fn look_up_pods(&self, wanted: &[Resource]) -> tokio::task::JoinSet<(String, Result<Option<String>, String>)> {
        let mut lookups = tokio::task::JoinSet::new();
        for r in wanted.iter().filter(|r| r.kind == Kind::Proxy) {
            let Some(pod) = testbed_plan::desired::pod_of(&r.spec) else { continue };
            let address = r.address.to_string();
            let member = r.member.clone().unwrap_or_default();
            let pods = self.pods.clone();
            lookups.spawn(async move {
                let Some(pods) = pods else {
                    return (address, Err("this LXD layer has no way to ask the members' clusters".to_owned()));
                };
                let found = match pods.pods(&member, &pod.namespace, &pod.selector).await {
                    Ok(found) => Ok(testbed_provider::first_ready(&found).map(|(_, ip)| pod_connect(&ip, pod.port))),
                    Err(e) => Err(e.report().to_string()),
                };
                (address, found)
            });
        }
        lookups
    }

    async fn observe_layer(&self, wanted: &[Resource]) -> Result<LayerObservation, LxdError> {
        self.settle(wanted).await?;
        let mut pod_lookups = self.look_up_pods(wanted);
        let wanted: BTreeSet<&Address> = wanted.iter().map(|r| &r.address).collect();
        // Four independent reads, at once: listing networks alone takes LXD ~20 ms (it inspects every
        // host interface).
        let (server, networks, pools, profiles, instances) = tokio::try_join!(
            self.client.server_info(),
            self.client.get::<Vec<Network>>("/1.0/networks?recursion=1"),
            self.client.get::<Vec<Pool>>("/1.0/storage-pools?recursion=1"),
            self.client.get::<Vec<Profile>>("/1.0/profiles?recursion=1"),
            self.instances(),
        )?;
        let expected = match self.client.flavor() {
            testbed_lxd_client::Flavor::Lxd => "lxd",
            testbed_lxd_client::Flavor::Incus => "incus",
        };
        if !server.server.is_empty() && server.server != expected {
            return Err(LxdError::WrongDaemon {
                socket: self.client.socket().to_path_buf(),
                found: server.server,
                expected: expected.to_owned(),
            });
        }
        let mut instances = instances;
        self.fill_foreign_states(&mut instances).await?;
        let me = self.testbed.as_str();
        let owned_instances: BTreeSet<&str> =
            instances.iter().filter(|i| i.owned_by(me)).map(|i| i.name.as_str()).collect();
        let owned_profiles: BTreeSet<&str> =
            profiles.iter().filter(|p| owned(&p.config, me)).map(|p| p.name.as_str()).collect();
        // Things testbed does not own among an object's `used_by`.
        let foreign_users = |used_by: &[String]| -> Vec<ForeignUse> {
            used_by
                .iter()
                .filter_map(|u| {
                    let name = last_segment(u);
                    if u.contains("/instances/") && !owned_instances.contains(name) {
                        Some(ForeignUse::Container(name.to_owned()))
                    } else if u.contains("/profiles/") && !owned_profiles.contains(name) && name != "default" {
                        Some(ForeignUse::Profile(name.to_owned()))
                    } else {
                        None
                    }
                })
                .collect()
        };

        let mut out = LayerObservation::default();
        let mut push = |o: Observed| out.resources.push(o);
        // Networks, pools and profiles: reported when wanted or owned, with who else uses them.
        let mut shared = |kind: Kind, name: &str, config: &Map, owner: Owner, spec: Spec, used_by: &[String]| {
            let address = Address::new(kind, &[name]);
            if wanted.contains(&address) || owned(config, me) {
                let in_use_by = foreign_users(used_by);
                push(Observed { address, kind, member: None, owner, spec, health: Health::Ok, in_use_by });
            }
        };
        for n in &networks {
            let owner = if n.managed {
                owner(&n.config, me, format!("a network named {}", n.name))
            } else {
                Owner::Other(format!("a host interface named {} (not an LXD-managed network)", n.name))
            };
            let mut spec = visible(&n.config);
            spec.insert("type".into(), n.kind.clone());
            shared(Kind::LxdNetwork, &n.name, &n.config, owner, spec, &n.used_by);
        }
        for p in &pools {
            let spec: Spec = [("driver".to_owned(), p.driver.clone())].into_iter().collect();
            let owner = owner(&p.config, me, format!("a storage pool named {}", p.name));
            shared(Kind::LxdStoragePool, &p.name, &p.config, owner, spec, &p.used_by);
        }
        for p in &profiles {
            let mut spec = visible(&p.config);
            for (name, d) in &p.devices {
                if let Some(src) = d.get("source") {
                    spec.insert(format!("devices.{name}.source"), src.clone());
                }
            }
            let owner = owner(&p.config, me, format!("a profile named {}", p.name));
            shared(Kind::LxdProfile, &p.name, &p.config, owner, spec, &p.used_by);
        }
        let mut push = |o: Observed| out.resources.push(o);
        for i in &instances {
            let address = Address::new(Kind::LxdInstance, &[&i.name]);
            let is_wanted = wanted.contains(&address);
            if !is_wanted && !i.owned_by(me) {
                continue;
            }
            let mut spec: Spec = Spec::new();
            spec.insert("image".into(), i.config.get(IMAGE_KEY).cloned().unwrap_or_default());
            let nic = i.nic();
            spec.insert("ipv4".into(), nic.and_then(|d| d.get("ipv4.address")).cloned().unwrap_or_default());
            spec.insert("network".into(), nic.and_then(|d| d.get("network")).cloned().unwrap_or_default());
            spec.insert("profiles".into(), i.profiles.join(","));
            let pool = i.expanded_devices.get("root").and_then(|d| d.get("pool")).cloned().unwrap_or_default();
            spec.insert("storage_pool".into(), pool);
            for k in ["limits.cpu", "limits.memory"] {
                if let Some(v) = i.config.get(k) {
                    spec.insert(k.into(), v.clone());
                }
            }
            // Not compared with the file (it wants no status): what `status` shows of the container.
            spec.insert(INSTANCE_STATUS.into(), i.status.clone());
            let health = if i.running() {
                Health::Ok
            } else {
                Health::NeedsRepair(format!("container is {}; will be started", i.status.to_lowercase()))
            };
            push(Observed {
                address,
                kind: Kind::LxdInstance,
                member: Some(i.name.clone()),
                owner: owner(&i.config, me, format!("a container named {}", i.name)),
                spec,
                health,
                in_use_by: Vec::new(),
            });
            // Proxy devices on this instance.
            for (dev, d) in &i.devices {
                if d.get("type").map(String::as_str) != Some("proxy") {
                    continue;
                }
                let paddr = Address::new(Kind::Proxy, &[&i.name, dev]);
                let mine = i.owned_by(me) && i.config.contains_key(&format!("{PROXY_KEY_PREFIX}{dev}"));
                if !mine && !wanted.contains(&paddr) {
                    continue;
                }
                let mut spec: Spec = ["listen", "connect", "bind"]
                    .into_iter()
                    .map(|k| {
                        (
                            k.to_owned(),
                            d.get(k)
                                .cloned()
                                .unwrap_or_else(|| if k == "bind" { "host".into() } else { String::new() }),
                        )
                    })
                    .collect();
                if let Some(pod) = i.config.get(&format!("{PROXY_KEY_PREFIX}{dev}{POD_KEY_SUFFIX}")) {
                    spec.insert(testbed_plan::desired::POD_KEY.into(), pod.clone());
                }
                push(Observed {
                    address: paddr,
                    kind: Kind::Proxy,
                    member: Some(i.name.clone()),
                    owner: if mine {
                        Owner::Testbed
                    } else {
                        Owner::Other(format!("a proxy device {dev} on {} that testbed did not add", i.name))
                    },
                    spec,
                    health: Health::Ok,
                    in_use_by: Vec::new(),
                });
            }
        }
        out.bridge_addresses = instances.iter().flat_map(Instance::ipv4s).collect();
        while let Some(joined) = pod_lookups.join_next().await {
            match joined {
                Ok((address, Ok(Some(connect)))) => {
                    out.pod_addresses.insert(address, connect);
                }
                Ok((_, Ok(None))) => {}
                Ok((address, Err(why))) => {
                    out.pod_lookup_failures.insert(address, why);
                }
                Err(e) => tracing::warn!("a pod lookup stopped: {e}"),
            }
        }
        self.check_pod_proxies(&mut out, &instances).await;
        Ok(out)
    }

    /// A pod proxy is done only while a request through it gets an answer: each one that points at its pod's
    /// address now, in a running container, gets one request (all at once); one that gets no answer needs
    /// repair (apply points it at the pod again and waits for an answer).
    async fn check_pod_proxies(&self, out: &mut LayerObservation, instances: &[Instance]) {
        let running: BTreeSet<&str> = instances.iter().filter(|i| i.running()).map(|i| i.name.as_str()).collect();
        let mut probes = tokio::task::JoinSet::new();
        for (idx, o) in out.resources.iter().enumerate() {
            let follows = o.kind == Kind::Proxy
                && o.owner == Owner::Testbed
                && o.spec.contains_key(testbed_plan::desired::POD_KEY)
                && o.member.as_deref().is_some_and(|m| running.contains(m));
            let at_pod = out.pod_addresses.get(o.address.as_str()).is_some_and(|c| o.spec.get("connect") == Some(c));
            let port = o.spec.get("listen").and_then(|l| HostPort::parse(l)).filter(|p| !p.udp);
            let (true, true, Some(port)) = (follows, at_pod, port) else { continue };
            let probe = Arc::clone(&self.probe);
            let at = follow::reach(port);
            probes.spawn(async move { (idx, at, probe(at).await) });
        }
        while let Some(joined) = probes.join_next().await {
            let Ok((idx, at, Err(why))) = joined else { continue };
            if let Some(o) = out.resources.get_mut(idx) {
                o.health = Health::NeedsRepair(format!(
                    "nothing answers through {at} ({why}); will be pointed at its pod again and checked"
                ));
            }
        }
    }
}

/// An argument as a shell would need it quoted, for hints a person copies.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A proxy's `connect` to a pod at `ip`, `tcp:IP:PORT` (`tcp:[IP]:PORT` for IPv6).
pub fn pod_connect(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("tcp:[{ip}]:{port}")
    } else {
        format!("tcp:{ip}:{port}")
    }
}

fn spec_of(action: &Action) -> Result<&Resource, ProviderError> {
    action
        .desired
        .as_ref()
        .ok_or_else(|| ProviderError::failed(format!("{}: the plan carries no settings", action.address)))
}

/// An instance action's error. A create from an image the daemon does not have fails differently on each
/// daemon: LXD 5.0 answers a 404 before the operation ("Image alias not found"), Incus 6.0 starts the
/// operation and it fails ("Image not provided for instance creation", error code 500). Whether the image is
/// the cause is read off the daemon, not off those words: [`LxdProvider::image_missing`].
fn instance_error(action: &Action, ctx: &str, e: LxdError, image_missing: bool, command: &str) -> ProviderError {
    match action.desired.as_ref().and_then(|r| r.spec.get("image")) {
        Some(image) if image_missing => ProviderError::failed(format!("{ctx}: image {image:?} not found"))
            .with_hint(format!(
                "set the member's `image` (or `[lxd] image`) to an image the daemon has (`{command} image list` shows the local aliases), or import {image:?}; then apply again"
            ))
            .caused_by(e),
        _ => e.into_provider(ctx),
    }
}

fn name_of(action: &Action) -> String {
    match action.kind {
        Kind::Proxy => action.address.as_str().rsplit('.').next().unwrap_or_default().to_owned(),
        Kind::LxdInstance => action.member.clone().unwrap_or_default(),
        _ => action.address.as_str().split_once('.').map(|(_, n)| n.to_owned()).unwrap_or_default(),
    }
}

impl LxdProvider {
    async fn network(&self, a: &Action, log: &ActionLog) -> Result<(), LxdError> {
        let name = name_of(a);
        let path = format!("/1.0/networks/{}", encode(&name));
        if matches!(a.op, Op::Delete | Op::Replace) {
            log.api("DELETE", &path);
            self.client.delete(&path, SHORT).await?;
        }
        if let Some(r) = a.desired.as_ref().filter(|_| a.op != Op::Delete) {
            let mut config = r.spec.clone();
            config.extend(ownership(&self.testbed, &a.address, &r.spec));
            if a.op == Op::Update {
                log.api("PATCH", &path);
                self.client.patch(&path, &json!({ "config": config })).await?;
            } else {
                log.api("POST", "/1.0/networks");
                let body =
                    json!({"name": name, "type": "bridge", "description": "managed by testbed", "config": config});
                self.client.post("/1.0/networks", &body, SHORT).await?;
            }
        }
        Ok(())
    }

    async fn pool(&self, a: &Action, log: &ActionLog) -> Result<(), LxdError> {
        let name = name_of(a);
        let path = format!("/1.0/storage-pools/{}", encode(&name));
        if matches!(a.op, Op::Delete | Op::Replace) {
            log.api("DELETE", &path);
            self.client.delete(&path, SHORT).await?;
        }
        if let Some(r) = a.desired.as_ref().filter(|_| matches!(a.op, Op::Create | Op::Replace)) {
            let driver = r.spec.get("driver").cloned().unwrap_or_else(|| "dir".into());
            log.api("POST", "/1.0/storage-pools");
            let body = json!({"name": name, "driver": driver, "description": "managed by testbed", "config": ownership(&self.testbed, &a.address, &r.spec)});
            self.client.post("/1.0/storage-pools", &body, LONG).await?;
        }
        Ok(())
    }

    async fn profile(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let name = name_of(a);
        let path = format!("/1.0/profiles/{}", encode(&name));
        let ctx = a.address.to_string();
        if let Some(r) = a.desired.as_ref() {
            let missing = missing_kernel_modules(&r.spec, self.kernel.as_ref());
            if !missing.is_empty() {
                return Err(ProviderError::precondition(format!(
                        "{ctx}: this host's kernel lacks the modules {} that linux.kernel_modules lists; LXD would refuse to start the members",
                        missing.join(", ")
                    )).with_hint("load them on the host (modprobe), or set \"linux.kernel_modules\" in [lxd.profile_config] to the ones this kernel has"));
            }
        }
        if matches!(a.op, Op::Delete | Op::Replace) {
            log.api("DELETE", &path);
            self.client.delete(&path, SHORT).await.map_err(|e| e.into_provider(&ctx))?;
        }
        if let Some(r) = a.desired.as_ref().filter(|_| a.op != Op::Delete) {
            let mut config = profile_config(&r.spec);
            config.extend(ownership(&self.testbed, &a.address, &r.spec));
            let devices = profile_devices(&r.spec);
            let body =
                json!({"description": "managed by testbed: member profile", "config": config, "devices": devices});
            let result = if a.op == Op::Update {
                log.api("PUT", &path);
                self.client.put(&path, &body, SHORT).await
            } else {
                log.api("POST", "/1.0/profiles");
                let mut body = body;
                body["name"] = json!(name);
                self.client.post("/1.0/profiles", &body, SHORT).await
            };
            result.map_err(|e| e.into_provider(&ctx))?;
        }
        Ok(())
    }

    async fn create_instance(&self, a: &Action, r: &Resource, log: &ActionLog) -> Result<(), LxdError> {
        let name = name_of(a);
        let s = &r.spec;
        let mut config = ownership(&self.testbed, &a.address, s);
        config.insert(IMAGE_KEY.into(), s.get("image").cloned().unwrap_or_default());
        for k in ["limits.cpu", "limits.memory"] {
            if let Some(v) = s.get(k) {
                config.insert(k.into(), v.clone());
            }
        }
        let mut eth0: Map =
            [("type", "nic"), ("name", "eth0")].into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        eth0.insert("network".into(), s.get("network").cloned().unwrap_or_default());
        if let Some(ip) = s.get("ipv4").filter(|ip| !ip.is_empty()) {
            eth0.insert("ipv4.address".into(), ip.clone());
        }
        let root: Map = [("type", "disk"), ("path", "/")].into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        let mut root = root;
        root.insert("pool".into(), s.get("storage_pool").cloned().unwrap_or_default());
        let profiles: Vec<&str> =
            s.get("profiles").map(|p| p.split(',').filter(|x| !x.is_empty()).collect()).unwrap_or_default();
        let body = json!({
            "name": name,
            "type": "container",
            "source": image_source(s.get("image").map(String::as_str).unwrap_or_default()),
            "profiles": profiles,
            "config": config,
            "devices": {"eth0": eth0, "root": root},
            "start": true,
        });
        log.api("POST", "/1.0/instances");
        self.client.post("/1.0/instances", &body, LONG).await?;
        // LXD 5.0 ignores "start" in the create request (Incus honours it): start explicitly if needed.
        if !self.instance(&name).await?.is_some_and(|i| i.running()) {
            self.set_state(&name, "start", log).await?;
        }
        Ok(())
    }

    async fn delete_instance(&self, name: &str, log: &ActionLog) -> Result<(), LxdError> {
        let Some(i) = self.instance(name).await? else { return Ok(()) };
        if i.running() {
            self.set_state(name, "stop", log).await?;
        }
        let path = format!("/1.0/instances/{}", encode(name));
        log.api("DELETE", &path);
        self.client.delete(&path, LONG).await?;
        Ok(())
    }

    async fn update_instance(&self, name: &str, r: &Resource, log: &ActionLog) -> Result<(), LxdError> {
        let Some(mut i) = self.instance(name).await? else {
            return Err(LxdError::Api {
                method: "GET".into(),
                path: format!("/1.0/instances/{name}"),
                code: 404,
                message: "not found".into(),
            });
        };
        let s = &r.spec;
        let mut changed = false;
        let mut needs_restart = false;
        for k in ["limits.cpu", "limits.memory"] {
            let want = s.get(k);
            if i.config.get(k) != want {
                match want {
                    Some(v) => i.config.insert(k.into(), v.clone()),
                    None => i.config.remove(k),
                };
                changed = true;
            }
        }
        let want_profiles: Vec<String> = s
            .get("profiles")
            .map(|p| p.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if i.profiles != want_profiles {
            i.profiles = want_profiles;
            changed = true;
        }
        let want_ip = s.get("ipv4").cloned().unwrap_or_default();
        let have_ip = i.nic().and_then(|d| d.get("ipv4.address")).cloned().unwrap_or_default();
        if want_ip != have_ip {
            let mut eth0 = i.expanded_devices.get("eth0").cloned().unwrap_or_default();
            eth0.insert("ipv4.address".into(), want_ip);
            i.devices.insert("eth0".into(), eth0);
            changed = true;
            needs_restart = i.running();
        }
        i.config.insert(HASH_KEY.into(), settings_hash(s));
        if needs_restart {
            self.set_state(name, "stop", log).await?;
            i.status = "Stopped".into();
        }
        if changed || needs_restart {
            self.put_instance(&i, log).await?;
        }
        if !i.running() {
            self.set_state(name, "start", log).await?;
        }
        Ok(())
    }

    async fn instance_action(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let name = name_of(a);
        let lock = self.lock_for(&name);
        let _held = lock.lock().await;
        let ctx = format!("{} (member {name})", a.address);
        // Defence in depth: the planner never plans a change to someone else's container, and the provider
        // refuses one all the same (the container may have been replaced since the plan was made).
        if a.op != Op::Create {
            if let Some(i) = self.instance(&name).await.map_err(|e| e.into_provider(&ctx))? {
                if let Owner::Other(why) = owner(&i.config, &self.testbed, format!("a container named {name}")) {
                    let verb = if a.op == Op::Update { "change" } else { "delete" };
                    return Err(ProviderError::precondition(format!("refusing to {verb} {}: {why}", a.address))
                        .with_hint("testbed changes and deletes only what it created; rename the member or remove the container yourself"));
                }
            }
        }
        match self.instance_change(a, &name, log).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let image_missing = matches!(e, LxdError::Api { .. }) && self.image_missing(a).await;
                Err(instance_error(a, &ctx, e, image_missing, self.client.flavor().command()))
            }
        }
    }

    /// Whether a create (or replace) failed for want of its image: the image is a local alias (no remote)
    /// and the daemon has no such alias now.
    async fn image_missing(&self, a: &Action) -> bool {
        if a.op == Op::Delete {
            return false;
        }
        let Some(image) = a.desired.as_ref().and_then(|r| r.spec.get("image")) else { return false };
        let source = image_source(image);
        if !source["server"].is_null() {
            return false;
        }
        let alias = source["alias"].as_str().unwrap_or_default();
        let path = format!("/1.0/images/aliases/{}", encode(alias));
        matches!(self.client.get_opt::<Value>(&path).await, Ok(None))
    }

    async fn instance_change(&self, a: &Action, name: &str, log: &ActionLog) -> Result<(), LxdError> {
        let name = name.to_owned();
        match a.op {
            Op::Delete => self.delete_instance(&name, log).await,
            Op::Create => match a.desired.as_ref() {
                Some(r) => self.create_instance(a, r, log).await,
                None => Ok(()),
            },
            Op::Replace => {
                self.delete_instance(&name, log).await?;
                match a.desired.as_ref() {
                    Some(r) => self.create_instance(a, r, log).await,
                    None => Ok(()),
                }
            }
            Op::Update => match a.desired.as_ref() {
                Some(r) => self.update_instance(&name, r, log).await,
                None => Ok(()),
            },
        }
    }

    async fn proxy(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let member = a.member.clone().unwrap_or_default();
        let ctx = format!("{} (member {member})", a.address);
        let wanted = a.desired.as_ref().filter(|_| a.op != Op::Delete);
        let Some((r, pod)) = wanted.and_then(|r| Some((r, testbed_plan::desired::pod_of(&r.spec)?))) else {
            return self.put_proxy(a, None, log).await;
        };
        // Where the pod is now, found before the container's devices are touched: the wait may be long.
        let (pod_name, connect) = self.find_pod(&ctx, &member, &pod, r, log).await?;
        self.put_proxy(a, Some(&connect), log).await?;
        self.check_answer(&ctx, &member, &pod, &pod_name, &connect, r, log).await
    }

    /// The pod a proxy follows, waited for until one is Ready: its name, and the proxy's `connect` to it.
    async fn find_pod(
        &self,
        ctx: &str,
        member: &str,
        pod: &testbed_plan::PodTarget,
        r: &Resource,
        log: &ActionLog,
    ) -> Result<(String, String), ProviderError> {
        let Some(pods) = self.pods.as_deref() else {
            return Err(ProviderError::failed(format!(
                "{ctx}: cannot find pod {}: this LXD layer has no way to ask the members' clusters",
                pod.describe()
            )));
        };
        let kubeconfig = pods.kubeconfig(member);
        log.api("GET", &format!("{member}: /api/v1/namespaces/{}/pods?labelSelector={}", pod.namespace, pod.selector));
        let waited = follow::wait_for_pod(
            pods,
            member,
            &pod.namespace,
            &pod.selector,
            self.waits.pod,
            self.waits.every,
            |now| log.note(format!("{member}: pod {}: {now}", pod.describe())),
        )
        .await;
        let list = format!(
            "kubectl --kubeconfig {kubeconfig} -n {} get pods -l {} -o wide",
            pod.namespace,
            shell_quote(&pod.selector)
        );
        let (name, ip) = match waited {
            Ok(found) => found,
            Err(NoPod::Seen(seen)) => {
                let what = if seen.is_empty() {
                    "no pod matches".to_owned()
                } else {
                    format!("none of {} is Ready", seen.iter().map(PodMatch::describe).collect::<Vec<_>>().join(", "))
                };
                return Err(ProviderError::failed(format!(
                    "{ctx}: no Ready pod in namespace {} of {member} matches {} after {} s: {what}",
                    pod.namespace,
                    pod.selector,
                    self.waits.pod.as_secs()
                ))
                .with_hint(format!(
                    "see the pods and why they are not Ready: {list}, then kubectl --kubeconfig {kubeconfig} -n {} describe pods -l {}; check the workload that runs them (testbed status) and the proxy's `pod` in the file; then apply again",
                    pod.namespace,
                    shell_quote(&pod.selector)
                )));
            }
            Err(NoPod::Failed(e)) => {
                return Err(ProviderError::failed(format!(
                    "{ctx}: cannot find pod {} in {member} within {} s",
                    pod.describe(),
                    self.waits.pod.as_secs()
                ))
                .with_hint(format!("check that {member}'s API answers through {kubeconfig} ({list}); then apply again"))
                .caused_by(e));
            }
        };
        let connect = pod_connect(&ip, pod.port);
        log.note(format!("{member}: pod {}/{name} is Ready at {ip}: the proxy connects to {connect}", pod.namespace));
        let planned = r.spec.get("connect").map(String::as_str).unwrap_or_default();
        if !testbed_plan::desired::is_pod_placeholder(planned) && planned != connect {
            log.warn(format!(
                "{ctx}: the pod moved since the plan ({planned} then, {connect} now): the proxy follows it"
            ));
        }
        Ok((name, connect))
    }

    /// Waits for a request through the proxy's host port to get an answer: that, not a device in place or an
    /// accepted connection, is a proxy that works.
    #[allow(clippy::too_many_arguments)]
    async fn check_answer(
        &self,
        ctx: &str,
        member: &str,
        pod: &testbed_plan::PodTarget,
        pod_name: &str,
        connect: &str,
        r: &Resource,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let listen = r.spec.get("listen").map(String::as_str).unwrap_or_default();
        let Some(port) = HostPort::parse(listen).filter(|p| !p.udp) else {
            log.note(format!("{ctx}: {listen} is not a TCP address and port: no request is sent through it"));
            return Ok(());
        };
        let at = follow::reach(port);
        log.api("GET", &format!("http://{at}/ (through the proxy, to {connect})"));
        match follow::wait_for_answer(&self.probe, at, self.waits.answer, self.waits.every).await {
            Ok(n) => {
                log.note(format!(
                    "{ctx}: a request through {at} got an answer ({n} bytes first) from pod {}/{pod_name}",
                    pod.namespace
                ));
                Ok(())
            }
            Err(unanswered) => {
                let kubeconfig = self.pods.as_deref().map(|p| p.kubeconfig(member)).unwrap_or_default();
                let ns = &pod.namespace;
                let port = pod.port;
                let cli = self.client.flavor().command();
                let said = format!(
                    "{ctx}: nothing answered through {at} within {} s ({} requests, the last: {}); the proxy forwards to {connect}, pod {ns}/{pod_name}, port {port}",
                    self.waits.answer.as_secs(),
                    unanswered.tries,
                    unanswered.last,
                );
                // The port-forward test tells the pod from the way to it.
                let direct = match self.pods.as_deref() {
                    Some(pods) => {
                        log.api(
                            "GET",
                            &format!("{ns}/{pod_name}:{port} directly, through the member API's port-forward"),
                        );
                        pods.ask_directly(member, ns, pod_name, port).await
                    }
                    None => DirectAnswer::NotAsked("no member API to ask".into()),
                };
                let (found, hint) = match direct {
                    DirectAnswer::Answered(n) => (
                        format!("; asked directly through a port-forward, the pod answered ({n} bytes): the way from the proxy to {connect} is at fault, not the pod"),
                        format!("an application that listens on 127.0.0.1 only answers a port-forward and not at the pod's address: make it listen on 0.0.0.0; if it does, look at the proxy ({cli} config device show {member}); then apply again"),
                    ),
                    DirectAnswer::Refused { ref words, .. } => (
                        format!("; asked directly through a port-forward, nothing listens on port {port} inside the pod ({words})"),
                        format!(
                            "the application does not listen on port {port}{}: set the proxy's `pod.port` in the file to the port it listens on (its log: kubectl --kubeconfig {kubeconfig} -n {ns} logs {pod_name}), or make it listen on {port}; then apply again",
                            direct.declared(port).map(|d| format!(", and {d}")).unwrap_or_default()
                        ),
                    ),
                    DirectAnswer::Silent(why) => (
                        format!("; asked directly through a port-forward, the pod did not answer either ({why})"),
                        format!("the application accepts connections on port {port} and does not answer a request: its log, kubectl --kubeconfig {kubeconfig} -n {ns} logs {pod_name}; then apply again"),
                    ),
                    DirectAnswer::NotAsked(why) => (
                        format!("; the pod could not be asked directly ({why})"),
                        format!("check that the pod is Ready and listens on port {port} (kubectl --kubeconfig {kubeconfig} -n {ns} get pod {pod_name} -o wide); to tell the proxy from the pod, run kubectl --kubeconfig {kubeconfig} -n {ns} port-forward pod/{pod_name} 19090:{port} and send a request to 127.0.0.1:19090: if that answers, look at the proxy ({cli} config device show {member}); then apply again"),
                    ),
                };
                Err(ProviderError::failed(format!("{said}{found}")).with_hint(hint))
            }
        }
    }

    /// Adds, changes or removes a proxy device, its `connect` the pod's address when it follows one.
    async fn put_proxy(&self, a: &Action, connect: Option<&str>, log: &ActionLog) -> Result<(), ProviderError> {
        let member = a.member.clone().unwrap_or_default();
        let dev = name_of(a);
        let ctx = format!("{} (member {member})", a.address);
        let lock = self.lock_for(&member);
        let _held = lock.lock().await;
        let Some(mut i) = self.instance(&member).await.map_err(|e| e.into_provider(&ctx))? else {
            if a.op == Op::Delete {
                return Ok(());
            }
            return Err(ProviderError::precondition(format!("{ctx}: container {member} does not exist"))
                .with_hint(format!("apply lxd_instance.{member} first")));
        };
        if !i.owned_by(&self.testbed) {
            return Err(ProviderError::failed(format!(
                "{ctx}: container {member} is not this testbed's; its devices are left alone"
            )));
        }
        let key = format!("{PROXY_KEY_PREFIX}{dev}");
        let pod_key = format!("{key}{POD_KEY_SUFFIX}");
        match a.desired.as_ref().filter(|_| a.op != Op::Delete) {
            Some(r) => {
                let mut d: Map = [("type".to_owned(), "proxy".to_owned())].into_iter().collect();
                for k in ["listen", "connect", "bind"] {
                    if let Some(v) = r.spec.get(k) {
                        d.insert(k.into(), v.clone());
                    }
                }
                if let Some(c) = connect {
                    d.insert("connect".into(), c.to_owned());
                }
                i.devices.insert(dev.clone(), d);
                i.config.insert(key, a.address.to_string());
                match r.spec.get(testbed_plan::desired::POD_KEY) {
                    Some(pod) => i.config.insert(pod_key, pod.clone()),
                    None => i.config.remove(&pod_key),
                };
            }
            None => {
                i.devices.remove(&dev);
                i.config.remove(&key);
                i.config.remove(&pod_key);
            }
        }
        let Err(e) = self.put_instance(&i, log).await else { return Ok(()) };
        let listen = a.desired.as_ref().filter(|_| a.op != Op::Delete).and_then(|r| r.spec.get("listen"));
        let Some(port) = listen.and_then(|l| HostPort::parse(l)).filter(|_| matches!(e, LxdError::Api { .. })) else {
            return Err(e.into_provider(&ctx));
        };
        // LXD reports a taken host port in words that vary with timing ("address already in use", "Failed
        // to receive fd from listener process"), and refuses for other reasons too (an operation of an
        // apply that was stopped still changing the container). The port is blamed only on evidence: what
        // holds it now, LXD having rolled the device back.
        Err(match self.port_holder(port).await {
            Some(PortHolder::Device { container, device }) if container == member && device == dev => {
                // The device is there after all (another client's change to the same container): not a
                // clash, LXD's own answer says what happened.
                e.into_provider(&ctx)
            }
            Some(PortHolder::Device { container, device }) => {
                self.port_taken(a, &ctx, port, &format!("proxy device {device:?} of container {container}"), e)
            }
            Some(PortHolder::Program) => self.port_taken(a, &ctx, port, "another program", e),
            None => e.into_provider(&ctx),
        })
    }

    /// What holds a host port: a proxy device of a running container (forkproxy listens for it), another
    /// program, or nothing. Read-only.
    pub async fn port_holder(&self, port: HostPort) -> Option<PortHolder> {
        let instances = self.instances().await.ok()?;
        let device = instances.iter().filter(|i| i.running()).find_map(|i| {
            i.expanded_devices.iter().find_map(|(name, d)| {
                let theirs = d.get("listen").and_then(|l| HostPort::parse(l))?;
                (d.get("type").map(String::as_str) == Some("proxy") && theirs.clashes(&port))
                    .then(|| PortHolder::Device { container: i.name.clone(), device: name.clone() })
            })
        });
        device.or_else(|| (self.host_ports)(port).then_some(PortHolder::Program))
    }

    /// The error of a proxy whose host port something else holds.
    fn port_taken(&self, a: &Action, ctx: &str, port: HostPort, holder: &str, e: LxdError) -> ProviderError {
        let member = a.member.clone().unwrap_or_default();
        let dev = name_of(a);
        let host = port.addr;
        let setting = if dev == "api" {
            format!("member {member}'s `api_port`")
        } else {
            format!("the `host_port` of proxy {dev:?} of member {member}")
        };
        // The message quotes LXD's answer in parentheses, as before; the report does not repeat the source it
        // already quotes.
        let daemon = self.client.flavor().name();
        ProviderError::failed(format!(
            "{ctx}: host port {host} is already in use by {holder}, so {daemon} cannot listen on it ({e})"
        ))
        .with_hint(format!(
            "stop what listens on {host} (`ss -lntp` shows it), or change {setting} in the file; then apply again"
        ))
        .caused_by(e)
    }
}

/// What holds a host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    /// A proxy device of a running container.
    Device { container: String, device: String },
    /// Something that is not an LXD proxy device.
    Program,
}

#[derive(Deserialize)]
struct Configured {
    #[serde(default, deserialize_with = "nullable")]
    config: Map,
}

impl LxdProvider {
    /// Defence in depth: refuses to change or delete a network, pool or profile testbed does not own (the
    /// planner never plans it; the object may have been replaced since the plan was made).
    async fn refuse_foreign(&self, a: &Action, collection: &str, what: &str) -> Result<(), ProviderError> {
        let name = name_of(a);
        let path = format!("/1.0/{collection}/{}", encode(&name));
        let found: Option<Configured> =
            self.client.get_opt(&path).await.map_err(|e| e.into_provider(a.address.as_str()))?;
        if let Some(Owner::Other(why)) = found.map(|c| owner(&c.config, &self.testbed, format!("{what} named {name}")))
        {
            let verb = if a.op == Op::Update { "change" } else { "delete" };
            return Err(ProviderError::precondition(format!("refusing to {verb} {}: {why}", a.address))
                .with_hint("testbed changes and deletes only what it created; it uses someone else's as it is"));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for LxdProvider {
    fn layer(&self) -> Layer {
        Layer::Lxd
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        let context = format!("observing {}", self.client.flavor().name());
        self.observe_layer(wanted).await.map_err(|e| e.into_provider(&context))
    }

    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let ctx = match &action.member {
            Some(m) => format!("{} (member {m})", action.address),
            None => action.address.to_string(),
        };
        let shared = match action.kind {
            Kind::LxdNetwork => Some(("networks", "a network")),
            Kind::LxdStoragePool => Some(("storage-pools", "a storage pool")),
            Kind::LxdProfile => Some(("profiles", "a profile")),
            _ => None,
        };
        if let Some((collection, what)) = shared.filter(|_| action.op != Op::Create) {
            self.refuse_foreign(action, collection, what).await?;
        }
        match action.kind {
            Kind::LxdNetwork => self.network(action, log).await.map_err(|e| e.into_provider(&ctx)),
            Kind::LxdStoragePool => self.pool(action, log).await.map_err(|e| e.into_provider(&ctx)),
            Kind::LxdProfile => self.profile(action, log).await,
            Kind::LxdInstance => {
                if action.op != Op::Delete {
                    spec_of(action)?;
                }
                self.instance_action(action, log).await
            }
            Kind::Proxy => self.proxy(action, log).await,
            other => Err(ProviderError::failed(format!("{ctx}: the LXD layer does not manage {other:?}"))),
        }
    }
}

#[async_trait]
impl ContainerView for LxdProvider {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        let instances = self.instances().await.map_err(|e| e.into_provider("reading LXD containers"))?;
        Ok(instances
            .iter()
            .map(|i| ContainerFacts {
                name: i.name.clone(),
                running: i.running(),
                ipv4: i.nic().and_then(|d| d.get("ipv4.address")).cloned(),
                proxies: i
                    .expanded_devices
                    .iter()
                    .filter(|(_, d)| d.get("type").map(String::as_str) == Some("proxy"))
                    .map(|(n, d)| {
                        (
                            n.clone(),
                            (
                                d.get("listen").cloned().unwrap_or_default(),
                                d.get("connect").cloned().unwrap_or_default(),
                            ),
                        )
                    })
                    .collect(),
                identity: i.expanded_config.get("volatile.uuid").cloned().unwrap_or_else(|| i.name.clone()),
                owned: i.owned_by(&self.testbed),
            })
            .collect())
    }
}

impl LxdProvider {
    /// Stops (`running == false`) or starts testbed's container `name`, as `testbed drill failover --stop`
    /// fails and restores a member (`PUT /1.0/instances/NAME/state`, a stop forced as apply's). Nothing is
    /// done when it is so already; a container testbed does not own is refused, and a missing one.
    pub async fn set_running(&self, name: &str, running: bool) -> Result<(), ProviderError> {
        let ctx = format!("lxd_instance.{name}");
        let found: Option<Instance> = self
            .client
            .get_opt(&format!("/1.0/instances/{}", encode(name)))
            .await
            .map_err(|e| e.into_provider(&ctx))?;
        let Some(instance) = found else {
            return Err(ProviderError::precondition(format!("{ctx}: there is no container {name}"))
                .with_hint("run `testbed apply` to create it"));
        };
        if !instance.owned_by(&self.testbed) {
            return Err(ProviderError::precondition(format!(
                "refusing to {} {ctx}: it is not testbed's",
                if running { "start" } else { "stop" }
            ))
            .with_hint("testbed starts and stops only the containers it created"));
        }
        if instance.running() == running {
            return Ok(());
        }
        let lock = self.lock_for(name);
        let _held = lock.lock().await;
        let action = if running { "start" } else { "stop" };
        self.set_state(name, action, &ActionLog::discard()).await.map_err(|e| e.into_provider(&ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sources_follow_the_remotes() {
        assert_eq!(image_source("ubuntu:22.04")["server"], "https://cloud-images.ubuntu.com/releases");
        assert_eq!(image_source("ubuntu:22.04")["alias"], "22.04");
        assert_eq!(image_source("testbed-busybox"), json!({"type": "image", "alias": "testbed-busybox"}));
    }

    #[test]
    fn profile_devices_are_disks_or_char_devices() {
        let spec: Spec = [
            ("devices.aadisable.source".to_owned(), "/sys/fs/bpf".to_owned()),
            ("devices.kmsg.source".to_owned(), "/dev/kmsg".to_owned()),
            ("security.nesting".to_owned(), "true".to_owned()),
        ]
        .into_iter()
        .collect();
        let d = profile_devices(&spec);
        assert_eq!(d["aadisable"]["type"], "disk");
        assert_eq!(d["kmsg"]["type"], "unix-char");
        assert_eq!(profile_config(&spec).len(), 1);
    }

    #[test]
    fn a_taken_host_port_is_recognised() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(host_port_bound(HostPort::parse(&format!("tcp:127.0.0.1:{port}")).unwrap()));
        drop(held);
        assert!(!host_port_bound(HostPort::parse(&format!("tcp:127.0.0.1:{port}")).unwrap()));
        assert_eq!(HostPort::parse("unix:/run/x.sock"), None);
        assert_eq!(HostPort::parse("tcp:127.0.0.1:80-81"), None);
    }

    #[test]
    fn host_ports_clash_on_the_same_address_or_a_wildcard() {
        let p = |s: &str| HostPort::parse(s).unwrap();
        assert!(p("tcp:127.0.0.1:16441").clashes(&p("tcp:0.0.0.0:16441")));
        assert!(p("tcp:127.0.0.1:16441").clashes(&p("tcp:127.0.0.1:16441")));
        assert!(!p("tcp:127.0.0.1:16441").clashes(&p("tcp:127.0.0.2:16441")));
        assert!(!p("tcp:127.0.0.1:16441").clashes(&p("udp:127.0.0.1:16441")));
        assert!(!p("tcp:127.0.0.1:16441").clashes(&p("tcp:127.0.0.1:16442")));
    }

    #[test]
    fn the_settings_hash_is_stable_and_sensitive() {
        let a: Spec = [("image".to_owned(), "x".to_owned())].into_iter().collect();
        let b: Spec = [("image".to_owned(), "y".to_owned())].into_iter().collect();
        assert_eq!(settings_hash(&a), settings_hash(&a.clone()));
        assert_ne!(settings_hash(&a), settings_hash(&b));
    }
}
