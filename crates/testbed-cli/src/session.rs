//! One run of the command: the validated file, the providers for each layer, and the observe → plan step.
//!
//! Data flows one way: file → desired state → observed state → plan. Nothing here touches the world except
//! through the providers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;
use testbed_config::Config;
use testbed_plan::{desired, DesiredState, Layer, ObservedState, Plan};
use testbed_provider::Providers;

use testbed_command::{CommandRunner, SystemRunner};
use testbed_host::preflight::Finding;
use testbed_host::{HostProvider, HostSystem};
use testbed_karmada::KarmadaProvider;
use testbed_lxd::{Client, Flavor, LxdProvider};
use testbed_microk8s::{MemberPods, Microk8sProvider};
use testbed_provider::{Clock, ContainerView, SystemClock};
use testbed_registry::{Addon, RegistryProvider};
use testbed_sim::{SimMachine, SimOptions};

use crate::cli::Cli;
use crate::error::CliError;
use crate::lock::{Holder, RunLocks, World};

/// Where the host cluster's admin kubeconfig is, when it is not MicroK8s' own (which Karmada's control
/// plane is observed through).
pub const HOST_KUBECONFIG_ENV: &str = "TESTBED_HOST_KUBECONFIG";

/// What the plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Make the machine match the file.
    Converge,
    /// Remove everything testbed owns.
    Destroy,
}

pub struct Session {
    pub config: Config,
    pub providers: Providers,
    /// Layers running on the simulated machine, as the providers report themselves.
    pub simulated: Vec<Layer>,
    /// `.testbed/` beside the config: lock, logs, default sim state.
    pub state_dir: PathBuf,
    pub sim_state: Option<PathBuf>,
    /// The simulated machine, when its layers above a real LXD see the real containers.
    above_real_lxd: Option<SimMachine>,
    /// The simulated machine (whichever layers it runs): what [`Session::seams`] are made from, with `lxd`.
    machine: SimMachine,
    /// The Karmada layer's provider (the same one `providers` holds), for what acts on Karmada outside a
    /// plan (`testbed drill`); `None` when the simulated machine could not make one.
    pub karmada: Option<Arc<KarmadaProvider>>,
    /// The LXD layer's provider (real, or over the simulated daemon), for what acts on or looks at the
    /// containers outside a plan (`testbed drill --stop`, `testbed doctor`).
    pub lxd: Option<Arc<LxdProvider>>,
    /// The clock of the world Karmada runs in: the simulated machine's when the Karmada layer is simulated,
    /// this host's otherwise.
    pub clock: Arc<dyn Clock>,
}

/// What `doctor` looks through beyond the observation: the same worlds the providers act on.
pub struct Seams {
    /// The LXD provider (real, or over the simulated daemon): who holds a host port, a request through one.
    pub lxd: Option<Arc<LxdProvider>>,
    /// How the members' API servers are reached (straight, or the simulated machine's network).
    pub network: testbed_kube::Network,
    /// The members' APIs through their kubeconfigs.
    pub pods: Option<MemberPods>,
    /// The host's files and processes, when the host layer is real.
    pub host: Option<HostSystem>,
}

/// Parses `--simulate`: `all` or a comma-separated list of layers.
///
/// An empty list (`--simulate ""`, `--simulate ,`, a script's unset variable) or an empty entry is refused:
/// read as "no layer simulated" it would change the real host.
pub fn parse_layers(s: &str) -> Result<BTreeSet<Layer>, CliError> {
    const LAYERS: &str = "use `all` or a comma-separated list of host, lxd, microk8s, registry, karmada; leave --simulate out to run every layer for real";
    if s.split(',').all(|p| p.trim().is_empty()) {
        return Err(CliError::usage(format!("--simulate {s:?} names no layer"), Some(LAYERS.into())));
    }
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(CliError::usage(format!("--simulate {s:?} has an empty entry"), Some(LAYERS.into())));
        }
        if part == "all" {
            out.extend(Layer::ALL);
            continue;
        }
        match Layer::parse(part) {
            Some(l) => {
                out.insert(l);
            }
            None => return Err(CliError::usage(format!("--simulate: unknown layer {part:?}"), Some(LAYERS.into()))),
        }
    }
    Ok(out)
}

impl Session {
    /// Loads the file and sets up one provider per layer, to read the machine.
    pub fn open(cli: &Cli) -> Result<Session, CliError> {
        Ok(Session::open_with(cli, |_| Ok(()))?.0)
    }

    /// Loads the file, takes the lock of every world the run changes (waiting up to `timeout`), and only
    /// then sets up the providers: the simulated machine's state is read under its lock, never before.
    pub fn open_locked(cli: &Cli, command: &str, timeout: Duration) -> Result<(Session, RunLocks), CliError> {
        let holder = Holder::this_run(command, &cli.config);
        Session::open_with(cli, |worlds| RunLocks::acquire(worlds, &holder, timeout))
    }

    /// Sets up the session, calling `before` with the worlds it changes before anything of them is read.
    fn open_with<T>(cli: &Cli, before: impl FnOnce(&[World]) -> Result<T, CliError>) -> Result<(Session, T), CliError> {
        let config = testbed_config::load(&cli.config)?;
        let state_dir = config.base_dir().join(".testbed");
        let simulate = match &cli.simulate {
            Some(s) => parse_layers(s)?,
            None => BTreeSet::new(),
        };
        if !simulate.contains(&Layer::Microk8s) && simulate.contains(&Layer::Lxd) {
            return Err(CliError::usage(
                "a real microk8s layer runs its commands inside real LXD containers, but lxd is simulated",
                Some("simulate microk8s too, or run lxd for real".into()),
            ));
        }
        if simulate.contains(&Layer::Registry) && !simulate.contains(&Layer::Microk8s) {
            return Err(CliError::usage(
                "a simulated registry layer is the simulated host MicroK8s' registry addon, but microk8s is real",
                Some("simulate microk8s too, or run the registry layer for real".into()),
            ));
        }
        let cx = testbed_steps::Context::new(&config);
        let name = config.file.name.clone();
        let sim_state = cli.sim_state.clone().unwrap_or_else(|| state_dir.join("sim.json"));
        let lxd_client = (!simulate.contains(&Layer::Lxd)).then(|| {
            Client::discover(match config.file.lxd.backend {
                testbed_config::Backend::Lxd => Flavor::Lxd,
                testbed_config::Backend::Incus => Flavor::Incus,
            })
        });
        let before = before(&worlds(&simulate, &sim_state, lxd_client.as_ref().map(Client::socket)))?;
        let options = SimOptions::from_env()?;
        options.check_names(&fault_names(&config))?;
        let mut machine = SimMachine::open(&sim_state, options)?
            .with_context(cx.clone())
            .for_testbed(name.clone())
            .with_flavor(config.file.lxd.backend == testbed_config::Backend::Incus);
        // The pods that proxies follow are in the members' clusters: the real ones, or the simulated machine's
        // when MicroK8s is simulated above real containers.
        let pods = match simulate.contains(&Layer::Microk8s) {
            true => machine.member_pods(),
            false => Some(MemberPods::new(&cx.kubeconfig_dir)),
        };
        let lxd = lxd_client.map(|client| {
            let provider = LxdProvider::new(client.clone(), name.clone());
            let provider = match pods {
                Some(pods) => provider.with_pods(Arc::new(pods)),
                None => provider,
            };
            (client, Arc::new(provider))
        });
        let runner: Arc<dyn CommandRunner> = match &lxd {
            Some((client, _)) => Arc::new(SystemRunner::with_lxd(client.clone())),
            None => Arc::new(SystemRunner::host_only()),
        };
        let containers: Option<Arc<dyn ContainerView>> = match &lxd {
            Some((_, p)) => Some(p.clone()),
            None => None,
        };
        let registry = if simulate.contains(&Layer::Registry) {
            None
        } else {
            let addon = if simulate.contains(&Layer::Microk8s) {
                Addon::Unmanaged("the microk8s layer is simulated".into())
            } else {
                Addon::Managed
            };
            let mut p = RegistryProvider::new(
                runner.clone(),
                cx.clone(),
                config.file.registry.clone(),
                cx.registry_record(),
                addon,
            )
            .map_err(|e| CliError::usage(e.report().to_string(), None))?;
            p = p.with_base_dir(config.base_dir());
            if let Some(c) = &containers {
                p = p.with_containers(c.clone());
            }
            let p = Arc::new(p);
            machine = machine.with_real_registry(p.clone());
            Some(p)
        };
        let mut providers = match &lxd {
            None => machine.providers(),
            // The simulated layers above LXD see the real containers.
            Some((_, p)) => {
                machine = machine.with_real_containers(p.clone());
                machine.providers().with(p.clone())
            }
        };
        let above_real_lxd = lxd.is_some().then(|| machine.clone());

        if let Some(r) = registry {
            providers = providers.with(r);
        }
        if !simulate.contains(&Layer::Host) {
            providers = providers.with(Arc::new(HostProvider::new(runner.clone(), cx.clone(), HostSystem::real())));
        }
        if let (false, Some(containers)) = (simulate.contains(&Layer::Microk8s), containers) {
            providers =
                providers.with(Arc::new(Microk8sProvider::new(runner.clone(), containers, cx.clone(), name.clone())));
        }
        let (karmada, clock): (Option<Arc<KarmadaProvider>>, Arc<dyn Clock>) = if simulate.contains(&Layer::Karmada) {
            (machine.karmada_provider().map(Arc::new), machine.clock())
        } else {
            let host_kubeconfig = std::env::var_os(HOST_KUBECONFIG_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(&cx.host_kubeconfig));
            let real = KarmadaProvider::new(
                runner.clone(),
                cx.clone(),
                name.clone(),
                host_kubeconfig,
                PathBuf::from(&cx.karmada_kubeconfig),
            );
            (Some(Arc::new(real)), Arc::new(SystemClock::new()))
        };
        if let Some(k) = &karmada {
            providers = providers.with(k.clone());
        }
        let lxd = match &lxd {
            Some((_, p)) => Some(p.clone()),
            None => match machine.lxd_provider() {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            },
        };
        Ok((
            Session {
                config,
                // What runs over a simulated seam: the LXD provider is the real one, over the simulated daemon.
                simulated: Layer::ALL.into_iter().filter(|l| simulate.contains(l)).collect(),
                providers,
                state_dir,
                sim_state: Some(sim_state),
                above_real_lxd,
                machine,
                karmada,
                lxd,
                clock,
            },
            before,
        ))
    }

    /// A line telling the user which layers are simulated, or that all are real.
    pub fn simulation_banner(&self) -> String {
        if self.simulated.is_empty() {
            return "All layers real: this run observes and changes this host.".to_owned();
        }
        let which = if self.simulated.len() == Layer::ALL.len() {
            "all layers".to_owned()
        } else {
            self.simulated.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
        };
        let state = self.sim_state.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default();
        let real: Vec<&str> = Layer::ALL.iter().filter(|l| !self.simulated.contains(l)).map(|l| l.name()).collect();
        let effect = if real.is_empty() {
            "nothing on this host is changed".to_owned()
        } else {
            format!("real: {} (these change this host)", real.join(", "))
        };
        format!("Simulated: {which} run on the simulated machine{state}; {effect}.")
    }

    /// The seams `doctor` reads through, from the worlds this session's providers act on.
    pub fn seams(&self) -> Seams {
        let simulated = |l: Layer| self.simulated.contains(&l);
        let lxd = self.lxd.clone();
        let (network, pods) = if simulated(Layer::Microk8s) {
            (self.machine.network(), self.machine.member_pods())
        } else {
            let cx = testbed_steps::Context::new(&self.config);
            (testbed_kube::Network::Direct, Some(MemberPods::new(&cx.kubeconfig_dir)))
        };
        let host = (!simulated(Layer::Host)).then(HostSystem::real);
        Seams { lxd, network, pods, host }
    }

    /// Observes the machine: what the file wants (with addresses resolved against what is there) and what is
    /// there.
    pub async fn observe(&self) -> (DesiredState, ObservedState) {
        // Addresses come from the file alone; observation then fills in what the machine has.
        let skeleton = desired::build(&self.config, &ObservedState::default());
        let wanted: Vec<_> = skeleton.resources.values().cloned().collect();
        // The simulated API servers answer where the real containers are now.
        if let Some(machine) = &self.above_real_lxd {
            machine.look_at_real_containers().await;
        }
        let observed = self.providers.observe(&wanted).await;
        (desired::build(&self.config, &observed), observed)
    }

    /// Observes the machine and plans towards `goal`, limited to `targets`.
    pub async fn plan(&self, goal: Goal, targets: &[String]) -> Result<Plan, CliError> {
        Ok(self.plan_checked(goal, targets).await?.plan)
    }

    /// The plan, what the host pre-flight found (only when the host layer is real and the goal is to
    /// converge: destroying needs nothing of the host), and what a destroy leaves.
    pub async fn plan_checked(&self, goal: Goal, targets: &[String]) -> Result<Planned, CliError> {
        let (wanted, observed) = self.observe().await;
        check_targets(targets, &wanted, &observed, &self.config)?;
        let findings = if goal == Goal::Converge && !self.simulated.contains(&Layer::Host) {
            testbed_host::preflight::check(&self.config, &observed, &HostSystem::real()).await
        } else {
            Vec::new()
        };
        let desired = match goal {
            Goal::Converge => wanted,
            Goal::Destroy => DesiredState::nothing(),
        };
        let kept = match goal {
            Goal::Converge => Vec::new(),
            Goal::Destroy if targets.is_empty() => kept_on_destroy(&observed),
            Goal::Destroy => Vec::new(),
        };
        Ok(Planned { plan: testbed_plan::plan(&desired, &observed)?.targeted(targets), findings, kept })
    }
}

/// A plan and what came with it.
pub struct Planned {
    pub plan: Plan,
    pub findings: Vec<Finding>,
    /// What a destroy leaves in place, in words (empty when converging).
    pub kept: Vec<String>,
}

/// What destroy leaves by design: what testbed ensures but never removes (the host's packages and kernel
/// limits). What it keeps because something it does not own uses it, the plan's own `kept:` notes say.
fn kept_on_destroy(observed: &ObservedState) -> Vec<String> {
    observed
        .resources
        .values()
        .filter(|o| o.kind.lifecycle() == testbed_plan::Lifecycle::Retained)
        .map(|o| format!("{} (testbed ensures it but never removes it)", o.address))
        .collect()
}

/// How many run logs `.testbed/logs/` keeps: each apply or destroy removes the oldest beyond these.
pub const LOGS_KEPT: usize = 50;

/// Removes the oldest run logs in `logs` (by name, which starts with the run's UTC time) beyond the newest
/// `keep`. A log that cannot be removed is left; pruning never fails a run.
pub fn prune_logs(logs: &std::path::Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(logs) else { return };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in &names[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

/// What a run with these layers simulated changes, and so must lock, in the order every run locks them:
/// the simulated machine, the real LXD daemon, the real host's own layers.
fn worlds(simulate: &BTreeSet<Layer>, sim_state: &Path, lxd_socket: Option<&Path>) -> Vec<World> {
    let mut worlds = Vec::new();
    if !simulate.is_empty() {
        worlds.push(World::Simulated { sim_state: sim_state.to_path_buf() });
    }
    if let Some(socket) = lxd_socket {
        worlds.push(World::Lxd { socket: socket.to_path_buf() });
    }
    if Layer::ALL.iter().any(|l| *l != Layer::Lxd && !simulate.contains(l)) {
        worlds.push(World::Host);
    }
    worlds
}

/// What `TESTBED_SIM_FAIL` may name: the file's resources and members.
fn fault_names(config: &Config) -> testbed_sim::faults::Names {
    let skeleton = desired::build(config, &ObservedState::default());
    testbed_sim::faults::Names {
        addresses: skeleton.resources.keys().map(|a| a.as_str().to_owned()).collect(),
        members: config.file.members.iter().map(|m| m.name.clone()).collect(),
    }
}

/// A target must name something: an address or prefix of a wanted or observed resource, or a member.
fn check_targets(
    targets: &[String],
    desired: &DesiredState,
    observed: &ObservedState,
    config: &Config,
) -> Result<(), CliError> {
    for t in targets {
        let is_member = config.file.members.iter().any(|m| &m.name == t)
            || observed.resources.values().any(|o| o.member.as_deref() == Some(t.as_str()));
        let matches = |a: &str| a == t || a.strip_prefix(t.as_str()).is_some_and(|r| r.starts_with('.'));
        let known = is_member
            || desired.resources.keys().any(|a| matches(a.as_str()))
            || observed.resources.keys().any(|a| matches(a.as_str()));
        if !known {
            return Err(CliError::usage(
                format!("--target {t:?} matches no resource and no member"),
                Some("targets are addresses (lxd_instance.member1), prefixes (proxy.member1) or member names; `testbed status` lists them".into()),
            ));
        }
    }
    Ok(())
}
