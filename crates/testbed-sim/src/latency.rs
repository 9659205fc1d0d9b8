//! How long each real step takes, in the magnitudes seen on real machines (package installs and MicroK8s
//! dominate; `karmadactl init` waits for every control-plane component). The simulation sleeps for these,
//! scaled by the speed factor.

use std::time::Duration;

use testbed_plan::{Action, Health, Kind, Op};

/// How long the real step behind `action` takes, unscaled.
pub fn real_world(action: &Action) -> Duration {
    let secs = match action.op {
        Op::Create => create_secs(action),
        Op::Update => update_secs(action),
        Op::Delete => delete_secs(action.kind),
        Op::Replace => delete_secs(action.kind) + create_secs(action),
    };
    Duration::from_secs(secs)
}

fn create_secs(action: &Action) -> u64 {
    match action.kind {
        Kind::HostPackages => 60,
        Kind::HostSysctl | Kind::HostFirewall | Kind::LxdProfile | Kind::Proxy => 1,
        Kind::LxdNetwork | Kind::LxdStoragePool => 2,
        Kind::HostMicrok8s | Kind::Microk8s => 90,
        Kind::HostAddons | Kind::Microk8sAddons => 45,
        Kind::LxdInstance => 8,
        Kind::Kubeconfig => 3,
        Kind::Registry => 30,
        Kind::Image => 15,
        Kind::Sideload => 10,
        Kind::KarmadaControlPlane => 180,
        Kind::KarmadaMember => {
            let pull = action.desired.as_ref().and_then(|r| r.spec.get("mode")).is_some_and(|m| m == "pull");
            if pull {
                30
            } else {
                20
            }
        }
    }
}

fn update_secs(action: &Action) -> u64 {
    let repair = action.observed.as_ref().is_some_and(|o| matches!(o.health, Health::NeedsRepair(_)));
    let settings_change = !action.changes.is_empty();
    match action.kind {
        Kind::HostPackages => 60,
        Kind::HostMicrok8s | Kind::Microk8s => match (settings_change, repair) {
            (true, _) => 60,
            (false, true) => 20,
            (false, false) => 1,
        },
        Kind::HostAddons | Kind::Microk8sAddons => 45,
        Kind::LxdInstance if repair => 3,
        Kind::Kubeconfig => 3,
        Kind::Image => 15,
        Kind::Sideload => 10,
        Kind::KarmadaControlPlane => 10,
        Kind::KarmadaMember => 2,
        _ => 1,
    }
}

fn delete_secs(kind: Kind) -> u64 {
    match kind {
        Kind::HostMicrok8s | Kind::Microk8s | Kind::Registry | Kind::KarmadaMember => 10,
        Kind::HostAddons | Kind::Microk8sAddons => 15,
        Kind::LxdInstance => 4,
        Kind::Image | Kind::Sideload => 2,
        Kind::KarmadaControlPlane => 30,
        _ => 1,
    }
}
