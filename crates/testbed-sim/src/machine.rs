//! The simulated machine as a whole, and the providers that act on it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use testbed_plan::Layer;
use testbed_provider::{ContainerFacts, ContainerView, ProviderError, Providers, RegistryView};

use testbed_lxd::LxdProvider;

use crate::lxd_daemon::{self, Flavor, Sockets};
use crate::world::SimWorld;
use crate::{store, SimError, SimOptions};

/// A handle on a simulated machine kept in a state file. Clones share the machine.
#[derive(Clone)]
pub struct SimMachine {
    shared: Arc<Shared>,
    /// The real LXD, when the containers are real ([`SimMachine::with_real_containers`]); else the
    /// containers are the simulated LXD daemon's, seen through the real LXD provider.
    real_containers: Option<Arc<dyn ContainerView>>,
    /// The testbed (the file's `name`) the LXD provider over the simulated daemon works for.
    testbed: String,
    /// The real local registry, when the registry layer is real ([`SimMachine::with_real_registry`]).
    real_registry: Option<Arc<dyn RegistryView>>,
}

pub(crate) struct Shared {
    path: PathBuf,
    pub(crate) options: SimOptions,
    world: Mutex<SimWorld>,
    /// The simulated LXD daemon's sockets.
    sockets: Sockets,
    flavor: Flavor,
    /// The simulated host's files ([`crate::host_root`]).
    host_root: PathBuf,
    /// The catalogue context of the file the machine is driven with: the real host provider runs its
    /// steps with it ([`SimMachine::use_file`]).
    catalogue: Mutex<Option<Arc<testbed_steps::Context>>>,
    /// Saves so far ([`Shared::generation`]).
    saves: std::sync::atomic::AtomicU64,
    /// The simulated daemon's containers as the LXD provider last reported them, with the generation they
    /// were read at: the layers still simulated on their own read them for every step.
    facts: tokio::sync::Mutex<Option<(u64, String, Vec<ContainerFacts>)>>,
    /// The real containers as last read, when the containers are real: where the simulated API servers'
    /// addresses are ([`crate::kube_api`]).
    real_facts: Mutex<Option<Vec<ContainerFacts>>>,
    /// The simulated Kubernetes API servers.
    pub(crate) apis: crate::kube_api::Apis,
    /// The real local registry, when the registry layer is real: karmadactl's images are pulled from it.
    real_registry: Mutex<Option<Arc<dyn RegistryView>>>,
    /// The simulated registries' servers, started when a registry provider is first made.
    registries: std::sync::OnceLock<crate::registry_server::Registries>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimWorld> {
        // A panic while holding the lock cannot leave the world half-written in a way that matters more
        // than losing it: keep going with what is there.
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn host_root(&self) -> &Path {
        &self.host_root
    }

    /// Saves the world while its lock is held.
    pub(crate) fn save_locked(&self, world: &SimWorld) -> Result<(), SimError> {
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        store::save(&self.path, world)
    }

    /// How many times the world was saved: any change moves it on.
    fn generation(&self) -> u64 {
        self.saves.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The simulated LXD daemon's socket follows the host: there once LXD is installed.
    pub(crate) fn sync_lxd_socket(&self) -> std::io::Result<()> {
        self.sockets.sync(self)
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&SimWorld) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the world and saves it, whatever `f` answered (an injected fault is recorded as spent).
    pub(crate) fn change(&self, f: impl FnOnce(&mut SimWorld) -> lxd_daemon::api::Answer) -> lxd_daemon::api::Answer {
        let mut world = self.lock();
        let out = f(&mut world);
        let saved = self.save_locked(&world);
        drop(world);
        match saved {
            Ok(()) => out,
            Err(e) => Err(lxd_daemon::api::ApiError::internal(e.to_string())),
        }
    }

    /// The real containers as last read ([`Shared::remember_real_facts`]); `None` when they are simulated.
    pub(crate) fn real_facts(&self) -> Option<Vec<ContainerFacts>> {
        self.real_facts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps the real containers as just read.
    pub(crate) fn remember_real_facts(&self, facts: &[ContainerFacts]) {
        *self.real_facts.lock().unwrap_or_else(|p| p.into_inner()) = Some(facts.to_vec());
    }

    /// Saves the world as it is.
    pub(crate) fn save_now(&self) -> Result<(), SimError> {
        let world = self.lock();
        self.save_locked(&world)
    }

    /// Runs a program inside container `name`, saving the world when the program changed what is inside it.
    pub(crate) fn run_inside(
        &self,
        name: &str,
        f: impl FnOnce(&mut SimWorld) -> crate::programs::Ran,
    ) -> Result<crate::programs::Ran, SimError> {
        let mut world = self.lock();
        let (inside, spent) = (world.inside.get(name).cloned(), world.consumed_failures.len());
        let ran = f(&mut world);
        if world.inside.get(name) != inside.as_ref() || world.consumed_failures.len() != spent {
            self.save_locked(&world)?;
        }
        Ok(ran)
    }

    /// The file's catalogue context, once the machine is driven with a file.
    pub(crate) fn catalogue(&self) -> Option<Arc<testbed_steps::Context>> {
        self.catalogue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The real local registry, when there is one ([`SimMachine::with_real_registry`]).
    pub(crate) fn real_registry(&self) -> Option<Arc<dyn RegistryView>> {
        self.real_registry.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Directories of testbed's own that the simulated host's programs see at their real paths: testbed
    /// runs on the host, so what it writes there (the members' kubeconfigs) is the host's.
    pub(crate) fn own_dirs(&self) -> Vec<PathBuf> {
        let cx = self.catalogue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        cx.map(|cx| vec![PathBuf::from(&cx.kubeconfig_dir)]).unwrap_or_default()
    }

    /// The request fault `fires` picks from the run's faults, if one fires; a once-fault it spends is
    /// recorded in the state file at once, so that the next run does not see it again.
    pub(crate) fn request_fault(
        &self,
        fires: impl FnOnce(&crate::faults::Faults, &mut BTreeSet<String>) -> Option<String>,
    ) -> Option<String> {
        let mut world = self.lock();
        let spent = world.consumed_failures.len();
        let SimWorld { faults, consumed_failures, .. } = &mut *world;
        let fault = fires(faults, consumed_failures)?;
        if world.consumed_failures.len() != spent {
            if let Err(e) = self.save_locked(&world) {
                tracing::warn!("the simulated machine could not record a spent fault: {e}");
            }
        }
        Some(fault)
    }

    /// Changes the world without saving (a counter the next change saves).
    pub(crate) fn change_quiet<R>(&self, f: impl FnOnce(&mut SimWorld) -> R) -> R {
        f(&mut self.lock())
    }
}

impl std::fmt::Debug for SimMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMachine")
            .field("path", &self.shared.path)
            .field("options", &self.shared.options)
            .field("real_containers", &self.real_containers.is_some())
            .finish()
    }
}

impl SimMachine {
    /// Opens the simulated machine kept at `path`; a missing file is a bare Debian host with nothing
    /// installed. Nothing is written until something changes.
    pub fn open(path: impl AsRef<Path>, options: SimOptions) -> Result<SimMachine, SimError> {
        let path = path.as_ref().to_path_buf();
        let fresh = !path.exists();
        let mut world = store::load(&path)?;
        // A missing state file is a fresh machine: its files are laid out afresh.
        let host_root = crate::host_root::root_for(&path);
        if fresh || !host_root.join(crate::host_root::MARKER).exists() {
            crate::host_root::lay_out(&host_root)
                .map_err(|source| SimError::Runtime { what: "the simulated host's files", source })?;
        }
        crate::host_root::ensure_essential(&host_root)
            .map_err(|source| SimError::Runtime { what: "the simulated host's files", source })?;
        world.fail_once = options.fail_once.clone();
        world.faults = options.faults.clone();
        world.line = crate::snap_store::Line::new(options.speed, options.line_mbits);
        let sockets = Sockets::new()
            .map_err(|source| SimError::Runtime { what: "the simulated LXD daemon's socket directory", source })?;
        Ok(SimMachine {
            shared: Arc::new(Shared {
                path,
                options,
                world: Mutex::new(world),
                sockets,
                flavor: Flavor::Lxd,
                host_root,
                catalogue: Mutex::new(None),
                saves: Default::default(),
                facts: tokio::sync::Mutex::new(None),
                real_facts: Mutex::new(None),
                apis: Default::default(),
                real_registry: Mutex::new(None),
                registries: std::sync::OnceLock::new(),
            }),
            real_containers: None,
            testbed: "testbed".into(),
            real_registry: None,
        })
    }

    /// This machine with real containers: LXD is real, the other layers stay simulated and see the real
    /// containers. Before every observation of the MicroK8s, registry and Karmada layers, and before every
    /// step that depends on the containers (those layers' steps and the host's forwarding rules), the
    /// containers are read from `view` and stand in for the simulation's own for that step: whether each
    /// runs, its address, its proxy devices and who made it are the real ones; what is inside it is the
    /// simulation's, kept in the state file with the identity of the container it belongs to
    /// ([`SimWorld::inside`]). If `view` fails, the step fails as [`ErrorKind::Unavailable`](testbed_provider::ErrorKind::Unavailable).
    ///
    /// The simulation's own LXD layer is then not used: [`SimMachine::providers`] leaves it out, and its
    /// provider refuses to act. The returned handle shares the machine (and its state file) with `self`.
    pub fn with_real_containers(mut self, view: Arc<dyn ContainerView>) -> SimMachine {
        self.real_containers = Some(view);
        self
    }

    /// Makes the registry real: the simulated Karmada steps check the images `karmadactl init` and
    /// `register` would pull against the real registry (`view`) instead of the simulation's own, which is
    /// then not in use.
    pub fn with_real_registry(mut self, view: Arc<dyn RegistryView>) -> SimMachine {
        *self.shared.real_registry.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&view));
        self.real_registry = Some(view);
        self
    }

    /// The testbed (the file's top-level `name`) whose objects the LXD provider over the simulated daemon
    /// owns; two configs with different names on one simulated machine leave each other's objects alone.
    pub fn for_testbed(mut self, name: impl Into<String>) -> SimMachine {
        self.testbed = name.into();
        self
    }

    /// Makes the simulated daemon answer as Incus (`[lxd] backend = "incus"`). Call before the first
    /// [`SimMachine::providers`].
    pub fn with_flavor(mut self, incus: bool) -> SimMachine {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.flavor = if incus { Flavor::Incus } else { Flavor::Lxd };
        }
        self
    }

    /// The real LXD provider, talking to this machine's simulated LXD daemon over its unix socket. The
    /// daemon is started on the current tokio runtime (or a thread of its own outside one) if no server of
    /// this machine is running there yet.
    pub fn lxd_provider(&self) -> Result<LxdProvider, SimError> {
        let client = self.lxd_client()?;
        let shared = Arc::clone(&self.shared);
        let options = &self.shared.options;
        let probe: testbed_lxd::follow::Probe = {
            let shared = Arc::clone(&shared);
            Arc::new(move |addr| {
                let got = shared.read(|w| {
                    let facts = crate::kube_api::containers(&shared, w, None);
                    crate::kube_api::answer(w, &facts, addr)
                });
                Box::pin(async move { got })
            })
        };
        let provider = LxdProvider::new(client, self.testbed.clone())
            .with_kernel_modules({
                let shared = Arc::clone(&shared);
                move |m| shared.read(|w| w.host.kernel_modules.contains(&m.replace('-', "_")))
            })
            .with_host_ports(move |p| shared.read(|w| w.ports_in_use().iter().any(|(port, _)| *port == p.addr.port())))
            .with_probe(probe)
            .with_pod_waits(
                options.scaled(Duration::from_secs(300)).max(Duration::from_secs(1)),
                options.scaled(Duration::from_secs(30)).max(Duration::from_secs(1)),
                options.scaled(Duration::from_secs(1)).max(Duration::from_millis(20)),
            );
        Ok(match self.member_pods() {
            Some(pods) => provider.with_pods(Arc::new(pods)),
            None => provider,
        })
    }

    /// The members' pods as the LXD layer finds them for proxies that follow a pod: through the kubeconfigs
    /// the MicroK8s layer writes (the file's catalogue context says where), over this machine's network.
    pub fn member_pods(&self) -> Option<testbed_microk8s::MemberPods> {
        let cx = self.catalogue()?;
        Some(testbed_microk8s::MemberPods::new(&cx.kubeconfig_dir).with_network(self.network()))
    }

    /// A client of the simulated LXD daemon, started if needed (see [`SimMachine::lxd_provider`]).
    fn lxd_client(&self) -> Result<testbed_lxd::Client, SimError> {
        self.shared
            .sockets
            .ensure(&self.shared, self.shared.flavor)
            .map_err(|source| SimError::Runtime { what: "the simulated LXD daemon", source })?;
        let flavor = match self.shared.flavor {
            Flavor::Lxd => testbed_lxd::Flavor::Lxd,
            Flavor::Incus => testbed_lxd::Flavor::Incus,
        };
        // Messages name the socket as it would be on the simulated host (LXD from the snap, Incus from its
        // package), not the temporary directory it is served from.
        let shown = match self.shared.flavor {
            Flavor::Lxd => "/var/snap/lxd/common/lxd/unix.socket (on the simulated host)",
            Flavor::Incus => "/var/lib/incus/unix.socket (on the simulated host)",
        };
        Ok(testbed_lxd::Client::at(self.shared.sockets.public(), flavor).shown_as(shown))
    }

    /// The simulated host's programs, for providers that run commands on the host, and through them the
    /// programs in the members: over the simulated daemon's exec API, or bound to the real containers.
    pub fn programs(&self) -> crate::SimPrograms {
        let members = match &self.real_containers {
            Some(view) => crate::programs::Members::Real(Arc::new(RealContainers {
                view: Arc::clone(view),
                shared: Arc::clone(&self.shared),
            })),
            None => match self.lxd_client() {
                Ok(client) => crate::programs::Members::Daemon(testbed_command::SystemRunner::with_lxd(client)),
                Err(e) => {
                    tracing::warn!("{e}");
                    crate::programs::Members::Daemon(testbed_command::SystemRunner::host_only())
                }
            },
        };
        crate::SimPrograms::new(Arc::clone(&self.shared), members)
    }

    /// The machine's clock: this host's, run ahead by what commands waited on it (`crate::clock`). Karmada's
    /// simulated controllers read it; a command that waits on the simulated Karmada measures with it.
    pub fn clock(&self) -> Arc<dyn testbed_provider::Clock> {
        Arc::new(crate::clock::SimClock { shared: Arc::clone(&self.shared) })
    }

    /// The simulated machine's network, as API clients reach its Kubernetes API servers.
    pub fn network(&self) -> testbed_kube::Network {
        crate::kube_api::network(&self.shared)
    }

    /// The real MicroK8s provider over the simulated programs (on the host, and in the members through
    /// LXD exec) and the simulated API servers; it needs the file's catalogue context.
    pub fn microk8s_provider(&self) -> Option<testbed_microk8s::Microk8sProvider> {
        let cx = self.catalogue()?.as_ref().clone();
        let containers = match self.container_view() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("{}", e.report());
                return None;
            }
        };
        let marker = crate::host_root::under(&self.shared.host_root, testbed_microk8s::HOST_OWNER_MARKER);
        // Its waits for the API are as long as the simulated machine's time runs (at least a moment, so
        // that an instant machine still gets an answer).
        let options = &self.shared.options;
        let ready = options.scaled(Duration::from_secs(300)).max(Duration::from_secs(1));
        let poll = options.scaled(Duration::from_secs(2)).max(Duration::from_millis(20));
        Some(
            testbed_microk8s::Microk8sProvider::new(Arc::new(self.programs()), containers, cx, self.testbed.clone())
                .with_host_owner_marker(marker)
                .with_host_root(self.shared.host_root.clone())
                .with_network(self.network())
                .with_ready_timeout(ready)
                .with_poll_interval(poll),
        )
    }

    /// The real Karmada provider over the simulated host's karmadactl and the simulated API servers (the
    /// host cluster's and Karmada's); it reads the kubeconfigs from the simulated host's files.
    pub fn karmada_provider(&self) -> Option<testbed_karmada::KarmadaProvider> {
        let cx = self.catalogue()?.as_ref().clone();
        let host_kubeconfig = PathBuf::from(&cx.host_kubeconfig);
        let karmada_kubeconfig = PathBuf::from(&cx.karmada_kubeconfig);
        let options = &self.shared.options;
        let wait = options.scaled(Duration::from_secs(180)).max(Duration::from_secs(1));
        let poll = options.scaled(Duration::from_secs(2)).max(Duration::from_millis(20));
        Some(
            testbed_karmada::KarmadaProvider::new(
                Arc::new(self.programs()),
                cx,
                self.testbed.clone(),
                host_kubeconfig,
                karmada_kubeconfig,
            )
            .with_network(self.network())
            .with_host_root(self.shared.host_root.clone())
            .with_wait(wait, poll),
        )
    }

    /// The simulated host's files, as the host layer reads them.
    pub fn host_system(&self) -> testbed_host::HostSystem {
        testbed_host::HostSystem::at(self.shared.host_root.clone())
    }

    /// The real host provider over the simulated host's programs and files; it needs the file's catalogue
    /// context ([`SimMachine::with_context`]).
    pub fn host_provider(&self) -> Option<testbed_host::HostProvider> {
        let cx = self.catalogue()?.as_ref().clone();
        Some(testbed_host::HostProvider::new(Arc::new(self.programs()), cx, self.host_system()))
    }

    /// The socket a client of the simulated LXD daemon connects to (there once LXD is installed).
    pub fn lxd_socket(&self) -> PathBuf {
        self.shared.sockets.public()
    }

    /// The containers the layers above LXD see: the real LXD's, or the simulated daemon's through the LXD
    /// provider.
    fn container_view(&self) -> Result<Arc<dyn ContainerView>, ProviderError> {
        match &self.real_containers {
            Some(v) => Ok(Arc::new(RealContainers { view: Arc::clone(v), shared: Arc::clone(&self.shared) })),
            None => {
                let provider = self.lxd_provider().map_err(|e| {
                    ProviderError::failed(e.to_string()).with_hint("check that the temporary directory is writable")
                })?;
                Ok(Arc::new(OwnContainers {
                    provider,
                    shared: Arc::clone(&self.shared),
                    testbed: self.testbed.clone(),
                }))
            }
        }
    }

    /// Reads the real containers (when they are real) for the simulated network: the API servers it
    /// serves are where the containers are now. An LXD that cannot be read leaves what was last read.
    pub async fn look_at_real_containers(&self) {
        if let Some(view) = &self.real_containers {
            if let Ok(facts) = view.containers().await {
                self.shared.remember_real_facts(&facts);
            }
        }
    }

    /// Whether the containers are real ([`SimMachine::with_real_containers`]).
    pub fn has_real_containers(&self) -> bool {
        self.real_containers.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn options(&self) -> &SimOptions {
        &self.shared.options
    }

    /// A snapshot of the machine as it is saved: with real containers, the simulation's own LXD objects (not
    /// in use) and, in [`SimWorld::inside`], what it keeps inside the real containers.
    pub fn world(&self) -> SimWorld {
        self.lock().clone()
    }

    /// Replaces the faults of the calls from now on (what `TESTBED_SIM_FAIL` and `TESTBED_SIM_SEED` set
    /// when the machine was opened), as a later run with other settings would have them.
    pub fn set_faults(&self, faults: crate::faults::Faults) {
        self.lock().faults = faults;
    }

    /// Changes the machine by hand (a foreign container, a stopped MicroK8s, a port taken by another
    /// process) and saves it.
    pub fn edit<R>(&self, f: impl FnOnce(&mut SimWorld) -> R) -> Result<R, SimError> {
        let mut world = self.lock();
        let out = f(&mut world);
        self.shared.save_locked(&world)?;
        drop(world);
        self.sync_daemon()?;
        Ok(out)
    }

    /// The simulated LXD daemon's socket follows the host: there once LXD is installed.
    fn sync_daemon(&self) -> Result<(), SimError> {
        self.shared
            .sockets
            .sync(&self.shared)
            .map_err(|source| SimError::Runtime { what: "the simulated LXD daemon's socket", source })
    }

    /// The layers this machine simulates: all five, or all but LXD when the containers are real.
    pub fn simulated_layers(&self) -> BTreeSet<Layer> {
        Layer::ALL
            .into_iter()
            .filter(|l| !(self.has_real_containers() && *l == Layer::Lxd))
            .filter(|l| !(self.real_registry.is_some() && *l == Layer::Registry))
            .collect()
    }

    /// One provider per layer this machine simulates ([`SimMachine::simulated_layers`]), all acting on
    /// this machine. The LXD layer's is the real LXD provider over the simulated LXD daemon; the layers
    /// above LXD see its containers through it. If the daemon cannot be started, the LXD layer has no
    /// provider and says why when it is observed.
    pub fn providers(&self) -> Providers {
        self.providers_for(&self.simulated_layers())
    }

    /// Providers for `layers` only, to combine with real providers of the others (`Providers::with`).
    pub fn providers_for(&self, layers: &BTreeSet<Layer>) -> Providers {
        let mut out = Providers::new();
        if self.real_containers.is_none() && layers.contains(&Layer::Lxd) {
            match self.lxd_provider() {
                Ok(p) => out = out.with(Arc::new(p)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if layers.contains(&Layer::Host) {
            match self.host_provider() {
                Some(p) => out = out.with(Arc::new(p)),
                None => tracing::warn!("the simulated host has no provider: no catalogue context was given"),
            }
        }
        if layers.contains(&Layer::Microk8s) {
            match self.microk8s_provider() {
                Some(p) => out = out.with(Arc::new(p)),
                None => tracing::warn!("the simulated MicroK8s layer has no provider: no catalogue context was given"),
            }
        }
        if layers.contains(&Layer::Karmada) {
            match self.karmada_provider() {
                Some(p) => out = out.with(Arc::new(p)),
                None => tracing::warn!("the simulated Karmada layer has no provider: no catalogue context was given"),
            }
        }
        if layers.contains(&Layer::Registry) {
            match self.registry_provider() {
                Ok(Some(p)) => out = out.with(Arc::new(p)),
                Ok(None) => {
                    tracing::warn!("the simulated registry layer has no provider: no catalogue context was given")
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        out
    }

    /// The real registry provider over the simulated registries (the host MicroK8s addon's and the public
    /// ones) and the simulated LXD daemon's containers; it needs the file's catalogue context.
    pub fn registry_provider(&self) -> Result<Option<testbed_registry::RegistryProvider>, SimError> {
        let Some(cx) = self.catalogue() else { return Ok(None) };
        let route = self.registry_route()?;
        let options = &self.shared.options;
        let wait = options.scaled(Duration::from_secs(300)).max(Duration::from_secs(1));
        let poll = options.scaled(Duration::from_secs(2)).max(Duration::from_millis(20));
        let cx = cx.as_ref().clone();
        let p = testbed_registry::RegistryProvider::new(
            Arc::new(self.programs()),
            cx.clone(),
            cx.registry.clone(),
            cx.registry_record(),
            testbed_registry::Addon::Managed,
        )
        .map_err(|e| SimError::Runtime {
            what: "the registry provider",
            source: std::io::Error::other(e.report().to_string()),
        })?
        .with_network(testbed_registry::Network::Routed(route))
        .map_err(|e| SimError::Runtime {
            what: "the registry provider",
            source: std::io::Error::other(e.report().to_string()),
        })?
        .with_base_dir(cx.base_dir.clone())
        .with_ready_timeout(wait, poll);
        let view: Arc<dyn ContainerView> = match &self.real_containers {
            Some(_) => Arc::new(self.clone()),
            None => self.container_view().map_err(|e| SimError::Runtime {
                what: "the simulated LXD daemon",
                source: std::io::Error::other(e.report().to_string()),
            })?,
        };
        Ok(Some(p.with_containers(view)))
    }

    /// How the registry engine reaches the simulated registries; their servers start on first use.
    pub fn registry_route(&self) -> Result<Arc<dyn testbed_registry::Route>, SimError> {
        let weak = Arc::downgrade(&self.shared);
        if self.shared.registries.get().is_none() {
            let tls_mirrors: Vec<String> = self
                .catalogue()
                .map(|cx| crate::registry::mirrors(&cx.registry))
                .unwrap_or_default()
                .into_iter()
                .filter(|(https, _)| *https)
                .filter_map(|(_, authority)| {
                    authority.rsplit_once(':').map(|(host, _)| host.trim_matches(['[', ']']).to_owned())
                })
                .collect();
            let started = crate::registry_server::Registries::new(weak.clone(), &tls_mirrors)
                .map_err(|source| SimError::Runtime { what: "the simulated registries", source })?;
            let _ = self.shared.registries.set(started);
        }
        match self.shared.registries.get() {
            Some(r) => {
                r.ensure().map_err(|source| SimError::Runtime { what: "the simulated registries", source })?;
                Ok(r.route(weak))
            }
            None => Err(SimError::Runtime {
                what: "the simulated registries",
                source: std::io::Error::other("they did not start"),
            }),
        }
    }

    /// The file's catalogue context, which the real providers run their steps with.
    pub fn with_context(self, cx: testbed_steps::Context) -> SimMachine {
        self.use_file(cx);
        self
    }

    /// Drives the machine with another file from now on (its catalogue context), for every handle.
    pub fn use_file(&self, cx: testbed_steps::Context) {
        *self.shared.catalogue.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cx));
    }

    fn catalogue(&self) -> Option<Arc<testbed_steps::Context>> {
        self.shared.catalogue()
    }

    fn lock(&self) -> MutexGuard<'_, SimWorld> {
        self.shared.lock()
    }
}

/// The real containers, kept as last read for the simulated API servers' addresses.
struct RealContainers {
    view: Arc<dyn ContainerView>,
    shared: Arc<Shared>,
}

#[async_trait]
impl ContainerView for RealContainers {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        let facts = self.view.containers().await?;
        self.shared.remember_real_facts(&facts);
        Ok(facts)
    }
}

/// The simulated daemon's containers through the LXD provider, read again only when the world changed.
struct OwnContainers {
    provider: LxdProvider,
    shared: Arc<Shared>,
    /// The testbed the provider reads for: whether a container is "owned" is that testbed's view.
    testbed: String,
}

#[async_trait]
impl ContainerView for OwnContainers {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        // One read at a time: the layers observed together wait for the first and share its answer.
        let mut cached = self.shared.facts.lock().await;
        let generation = self.shared.generation();
        if let Some((seen, testbed, facts)) = cached.as_ref() {
            if *seen == generation && *testbed == self.testbed {
                return Ok(facts.clone());
            }
        }
        let facts = self.provider.containers().await?;
        *cached = Some((generation, self.testbed.clone(), facts.clone()));
        Ok(facts)
    }
}

/// The containers of this machine as the layers above LXD see them: its own, or, when its containers are
/// real, the real ones. A second simulated machine can use it as its real LXD
/// ([`SimMachine::with_real_containers`]), which exercises that path without a real daemon.
#[async_trait]
impl ContainerView for SimMachine {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        self.container_view()?.containers().await
    }
}
