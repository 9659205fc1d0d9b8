//! Simulated layers above a real LXD.
//!
//! When LXD is real ([`crate::SimMachine::with_real_containers`]), the simulated steps that depend on the
//! containers see the real ones: before each of them the machine reads the containers from the real LXD
//! ([`ContainerView`]) and puts them in place of its own for the duration of the step. Whether a container
//! runs, its address, its proxy devices and who made it come from the real LXD, read afresh every time and
//! never saved; what is inside it (MicroK8s, its addons, side-loaded images, a karmada-agent) is the
//! simulation's, saved in [`SimWorld::inside`] with the identity of the container it belongs to. A
//! container that was deleted and re-created under the same name has a new identity and nothing inside; a
//! container that is gone takes what was inside with it. Observation saves nothing: the first step that
//! runs afterwards saves the inside of exactly the containers the real LXD then reports.
//!
//! What the real LXD does not tell ([`ContainerFacts`] has no networks, pools, profiles, images or limits)
//! is left empty in the mirror, and the steps that would check it say so where they do.

use std::collections::BTreeMap;

use testbed_plan::{Kind, Layer};
use testbed_provider::{ContainerFacts, ContainerView, ProviderError};

use crate::world::{testbed, Inside, Instance, InstanceStatus, Network, ProxyDevice, SimLxd, SimWorld};

/// Whether observing `layer` reads the containers. The LXD layer is the real one; the host layer's
/// observation (packages, kernel settings, forwarding rules) reads nothing of LXD.
pub(crate) fn observe_needs_containers(layer: Layer) -> bool {
    matches!(layer, Layer::Microk8s | Layer::Registry | Layer::Karmada)
}

/// Whether a step on a resource of `kind` reads the containers (or, for the forwarding rules, LXD at all).
/// Host packages and kernel settings do not need LXD to be reachable.
pub(crate) fn apply_needs_containers(kind: Kind) -> bool {
    match kind.layer() {
        Layer::Lxd => false,
        Layer::Host => kind == Kind::HostFirewall,
        Layer::Microk8s | Layer::Registry | Layer::Karmada => true,
    }
}

/// The containers as the real LXD reports them; an error is LXD being unreachable, whatever the view said.
pub(crate) async fn fetch(view: &dyn ContainerView) -> Result<Vec<ContainerFacts>, ProviderError> {
    match view.containers().await {
        Ok(facts) => Ok(facts),
        // No LXD daemon (not installed yet on a fresh host): no containers, as the real MicroK8s layer
        // takes it.
        Err(ProviderError::Unavailable { .. }) => Ok(Vec::new()),
        Err(ProviderError::Interrupted) => Err(ProviderError::Interrupted),
        Err(e) => {
            let hint = e.hint().map(str::to_owned).unwrap_or_else(|| {
                "check that the LXD daemon runs and that you may use its socket (lxc list)".to_owned()
            });
            Err(ProviderError::Unavailable { message: format!("LXD is not reachable: {e}"), hint: Some(hint) })
        }
    }
}

/// Runs `f` on `world` with its containers replaced by the real ones (`facts`) and the simulation's inside
/// of each, then puts the world's own LXD back and keeps what is now inside each real container.
///
/// `external` says the containers are a real LXD's, whose networks the simulation cannot see; else they are
/// the simulated daemon's, whose networks are known.
pub(crate) fn within<R>(
    world: &mut SimWorld,
    facts: &[ContainerFacts],
    external: bool,
    f: impl FnOnce(&mut SimWorld) -> R,
) -> R {
    let kept = std::mem::take(&mut world.inside);
    let instances = facts.iter().map(|c| (c.name.clone(), mirrored_instance(c, &kept))).collect();
    let networks = world
        .lxd_daemon
        .networks
        .iter()
        .map(|(name, n)| {
            let net = Network { network_type: n.kind.clone(), config: n.config.clone(), owner: None };
            (name.clone(), net)
        })
        .collect();
    let view = SimLxd { instances, networks, mirrored: external, ..SimLxd::default() };
    let own = std::mem::replace(&mut world.lxd, view);
    let out = f(world);
    let seen = std::mem::replace(&mut world.lxd, own);
    world.inside = seen
        .instances
        .into_iter()
        .filter_map(|(name, i)| {
            let mut inside = match kept.get(&name) {
                Some(k) if k.identity == i.identity => k.clone(),
                _ => Inside::fresh(&i.identity),
            };
            inside.microk8s = i.microk8s;
            let empty = inside.microk8s.is_none() && !inside.seeded && inside.files.is_empty();
            (!empty).then_some((name, inside))
        })
        .collect();
    out
}

/// A real container as the simulated steps see it.
fn mirrored_instance(c: &ContainerFacts, kept: &BTreeMap<String, Inside>) -> Instance {
    let owner = if c.owned { testbed() } else { None };
    let inside = match kept.get(&c.name) {
        Some(k) if k.identity == c.identity => k.microk8s.clone(),
        Some(k) => {
            tracing::info!(
                container = %c.name,
                was = %k.identity,
                now = %c.identity,
                "the real container was re-created: nothing simulated is inside the new one"
            );
            None
        }
        None => None,
    };
    Instance {
        status: if c.running { InstanceStatus::Running } else { InstanceStatus::Stopped },
        // Not in the facts; no simulated step above LXD reads them.
        image: String::new(),
        ipv4: c.ipv4.clone().unwrap_or_default(),
        profiles: Vec::new(),
        network: String::new(),
        storage_pool: String::new(),
        limits: BTreeMap::new(),
        owner: owner.clone(),
        identity: c.identity.clone(),
        proxies: c
            .proxies
            .iter()
            .map(|(device, (listen, connect))| {
                // The facts carry no per-device owner nor bind mode: a device is its container's, bound on
                // the host (what testbed's proxies use).
                let p = ProxyDevice {
                    listen: listen.clone(),
                    connect: connect.clone(),
                    bind: "host".into(),
                    owner: owner.clone(),
                };
                (device.clone(), p)
            })
            .collect(),
        microk8s: inside,
    }
}
