//! The simulated machine as a whole, and the five providers that act on it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use testbed_plan::{Action, Layer, Resource};
use testbed_provider::{ActionLog, LayerObservation, Provider, ProviderError, Providers};

use crate::step::Transcript;
use crate::world::SimWorld;
use crate::{host, karmada, latency, lxd, microk8s, registry, store, SimError, SimOptions};

/// A handle on a simulated machine kept in a state file. Clones share the machine.
#[derive(Clone)]
pub struct SimMachine {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SimOptions,
    world: Mutex<SimWorld>,
}

impl std::fmt::Debug for SimMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMachine").field("path", &self.inner.path).field("options", &self.inner.options).finish()
    }
}

impl SimMachine {
    /// Opens the simulated machine kept at `path`; a missing file is a bare Debian host with nothing
    /// installed. Nothing is written until something changes.
    pub fn open(path: impl AsRef<Path>, options: SimOptions) -> Result<SimMachine, SimError> {
        let path = path.as_ref().to_path_buf();
        let world = store::load(&path)?;
        Ok(SimMachine { inner: Arc::new(Inner { path, options, world: Mutex::new(world) }) })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn options(&self) -> &SimOptions {
        &self.inner.options
    }

    /// A snapshot of the machine.
    pub fn world(&self) -> SimWorld {
        self.lock().clone()
    }

    /// Changes the machine by hand (a foreign container, a stopped MicroK8s, a port taken by another
    /// process) and saves it.
    pub fn edit<R>(&self, f: impl FnOnce(&mut SimWorld) -> R) -> Result<R, SimError> {
        let mut world = self.lock();
        let out = f(&mut world);
        store::save(&self.inner.path, &world)?;
        Ok(out)
    }

    /// One provider per layer, all acting on this machine.
    pub fn providers(&self) -> Providers {
        Layer::ALL.into_iter().fold(Providers::new(), |p, layer| p.with(self.provider(layer)))
    }

    /// The provider of one layer.
    pub fn provider(&self, layer: Layer) -> Arc<dyn Provider> {
        Arc::new(SimLayer { layer, machine: self.clone() })
    }

    /// What the provider of `layer` observes.
    pub fn observe(&self, layer: Layer, wanted: &[Resource]) -> LayerObservation {
        self.lock().observe(layer, wanted)
    }

    /// How long `action` takes on this machine: its real-world duration times the speed factor.
    pub fn expected_duration(&self, action: &Action) -> Duration {
        self.inner.options.scaled(latency::real_world(action))
    }

    /// Carries out one action of any layer: checks what the real step needs, waits as long as the step
    /// takes, then changes the machine and saves it.
    pub async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        if let Some(container) = &action.cascade {
            log.note(format!("nothing to run: {} goes with {container}", action.address));
            return Ok(());
        }
        tracing::debug!(address = %action.address, op = action.op.name(), "simulated step");

        // What the real step needs is checked first, on a copy, so that a step that cannot start fails at
        // once and the log shows what it would have run.
        let mut scratch = self.world();
        let mut transcript = Transcript::default();
        dispatch(&mut scratch, action, &mut transcript)?;
        transcript.emit(log);

        let duration = self.expected_duration(action);
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }

        let address = action.address.as_str();
        let mut world = self.lock();
        if self.inner.options.fail_once.contains(address) && world.consumed_failures.insert(address.to_owned()) {
            let saved = store::save(&self.inner.path, &world);
            drop(world);
            saved.map_err(save_failed)?;
            return Err(ProviderError::Failed {
                message: format!("{address}: simulated failure injected by TESTBED_SIM_FAIL"),
                hint: Some("run apply again: an injected failure happens only once".into()),
            });
        }
        // The machine may have changed while the step ran (other steps run concurrently): check again.
        let result = dispatch(&mut world, action, &mut Transcript::default());
        let saved = store::save(&self.inner.path, &world);
        drop(world);
        result?;
        saved.map_err(save_failed)
    }

    fn lock(&self) -> MutexGuard<'_, SimWorld> {
        // A panic while holding the lock cannot leave the world half-written in a way that matters more
        // than losing it: keep going with what is there.
        self.inner.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn save_failed(e: SimError) -> ProviderError {
    ProviderError::Failed {
        message: e.to_string(),
        hint: Some("check that the state file's directory is writable".into()),
    }
}

fn dispatch(world: &mut SimWorld, action: &Action, t: &mut Transcript) -> Result<(), ProviderError> {
    match action.kind.layer() {
        Layer::Host => host::apply(world, action, t),
        Layer::Lxd => lxd::apply(world, action, t),
        Layer::Microk8s => microk8s::apply(world, action, t),
        Layer::Registry => registry::apply(world, action, t),
        Layer::Karmada => karmada::apply(world, action, t),
    }
}

/// The provider of one layer of a simulated machine.
struct SimLayer {
    layer: Layer,
    machine: SimMachine,
}

#[async_trait]
impl Provider for SimLayer {
    fn layer(&self) -> Layer {
        self.layer
    }

    fn simulated(&self) -> bool {
        true
    }

    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        Ok(self.machine.observe(self.layer, wanted))
    }

    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        if action.kind.layer() != self.layer {
            return Err(ProviderError::failed(format!(
                "{}: a {} action was sent to the simulated {} provider",
                action.address,
                action.kind.layer().name(),
                self.layer.name()
            )));
        }
        self.machine.apply(action, log).await
    }

    fn expected_duration(&self, action: &Action) -> Option<Duration> {
        Some(self.machine.expected_duration(action))
    }
}
