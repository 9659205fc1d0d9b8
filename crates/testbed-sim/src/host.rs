//! The host layer: packages, kernel settings and forwarding rules.

use testbed_plan::{Action, Address, Kind, Observed, Owner, Resource};
use testbed_provider::ProviderError;

use crate::step::{ensure_owned, list, observed, owner_of, precondition, run_op, spec, Target, Transcript};
use crate::world::{is_testbed, testbed, Firewall, Package, SimWorld};

/// Where testbed writes its kernel settings.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/60-testbed.conf";

pub(crate) fn observe_all(world: &SimWorld, wanted: &[Resource]) -> Vec<Observed> {
    let mut out = Vec::new();
    let host = &world.host;

    if !host.packages.is_empty() {
        // Report the file's packages in the file's order, so that a complete install compares equal.
        let order: Vec<String> = wanted
            .iter()
            .find(|r| r.kind == Kind::HostPackages)
            .and_then(|r| r.spec.get("packages"))
            .map(|s| list(s))
            .unwrap_or_else(|| host.packages.keys().cloned().collect());
        let present: Vec<&str> = order.iter().map(String::as_str).filter(|p| host.packages.contains_key(*p)).collect();
        let mut s = spec([("packages", present.join(","))]);
        if let Some(k) = host.packages.get("karmadactl") {
            s.insert("karmadactl.version".into(), k.version.clone().unwrap_or_default());
        }
        let owner = if host.packages.values().any(|p| is_testbed(&p.owner)) {
            Owner::Testbed
        } else {
            let names: Vec<&str> = host.packages.keys().map(String::as_str).collect();
            Owner::Other(format!("packages {} were installed by someone else", names.join(", ")))
        };
        out.push(observed(Address::new(Kind::HostPackages, &["packages"]), Kind::HostPackages, None, owner, s));
    }

    // Kernel settings always exist; until testbed writes its file they are the kernel's defaults.
    let owner = if is_testbed(&host.sysctl_owner) {
        Owner::Testbed
    } else {
        Owner::Other(format!("kernel settings in force were not written by testbed (no {SYSCTL_FILE})"))
    };
    out.push(observed(Address::new(Kind::HostSysctl, &["sysctl"]), Kind::HostSysctl, None, owner, host.sysctl.clone()));

    if let Some(f) = &host.firewall {
        let what = format!("forwarding rules for bridge {}", f.bridge);
        out.push(observed(
            Address::new(Kind::HostFirewall, &["firewall"]),
            Kind::HostFirewall,
            None,
            owner_of(&f.owner, &what, "testbed comment on the rules"),
            spec([("bridge", f.bridge.clone())]),
        ));
    }
    out
}

pub(crate) fn apply(world: &mut SimWorld, action: &Action, t: &mut Transcript) -> Result<(), ProviderError> {
    match action.kind {
        Kind::HostPackages => run_op(world, action, t, install_packages, install_packages, keep_retained),
        Kind::HostSysctl => run_op(world, action, t, write_sysctl, write_sysctl, keep_retained),
        Kind::HostFirewall => run_op(world, action, t, create_firewall, update_firewall, delete_firewall),
        other => Err(ProviderError::failed(format!("the host layer does not handle {other:?} resources"))),
    }
}

fn install_packages(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let wanted = list(r.spec.get("packages").map(String::as_str).unwrap_or(""));
    let version = r.spec.get("karmadactl.version").cloned();
    let needs_snap = wanted.iter().any(|p| matches!(p.as_str(), "lxd" | "kubectl"));
    if needs_snap && !world.has_package("snapd") && !wanted.iter().any(|p| p == "snapd") {
        return Err(precondition(
            format!("{}: snap install needs snapd, which is neither installed nor in the package list", r.address),
            "install snapd on the host (apt-get install snapd)",
        ));
    }
    // snapd first: the snaps need it.
    let mut order: Vec<&String> = wanted.iter().filter(|p| *p == "snapd").collect();
    order.extend(wanted.iter().filter(|p| *p != "snapd"));
    for p in order {
        let current = world.host.packages.get(p.as_str());
        let up_to_date = match p.as_str() {
            "karmadactl" => current.is_some_and(|c| c.version == version),
            _ => current.is_some(),
        };
        if up_to_date {
            continue;
        }
        match p.as_str() {
            "snapd" => t.command(&["apt-get", "install", "-y", "snapd"]),
            "lxd" => {
                t.command(&["snap", "install", "lxd"]);
                t.command(&["lxd", "waitready", "--timeout=60"]);
            }
            "kubectl" => t.command(&["snap", "install", "kubectl", "--classic"]),
            "karmadactl" => {
                let v = version.as_deref().unwrap_or("latest");
                let url =
                    format!("https://github.com/karmada-io/karmada/releases/download/{v}/karmadactl-linux-amd64.tgz");
                t.command(&["curl", "-fsSL", "-o", "/var/lib/testbed/downloads/karmadactl-linux-amd64.tgz", &url]);
                t.command(&[
                    "tar",
                    "-xzf",
                    "/var/lib/testbed/downloads/karmadactl-linux-amd64.tgz",
                    "-C",
                    "/usr/local/bin",
                    "karmadactl",
                ]);
            }
            other => t.command(&["apt-get", "install", "-y", other]),
        }
        let pkg_version = if p == "karmadactl" { version.clone() } else { None };
        world.host.packages.insert(p.clone(), Package { version: pkg_version, owner: testbed() });
        if matches!(p.as_str(), "lxd" | "incus") && world.lxd_daemon.profiles.is_empty() {
            // The daemon starts with its own default profile.
            world.lxd_daemon = crate::lxd_daemon::state::LxdDaemon::installed();
        }
    }
    Ok(())
}

fn keep_retained(_world: &mut SimWorld, target: &Target, _t: &mut Transcript) -> Result<(), ProviderError> {
    Err(precondition(
        format!("{}: testbed leaves host packages and kernel settings in place; it never removes them", target.address),
        "remove them yourself if nothing else on the host needs them",
    ))
}

fn write_sysctl(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    for (k, v) in &r.spec {
        // Raised, never lowered.
        if Kind::HostSysctl.satisfied(v, world.host.sysctl.get(k).map(String::as_str)) {
            continue;
        }
        t.command(&["sysctl", "-w", &format!("{k}={v}")]);
        world.host.sysctl.insert(k.clone(), v.clone());
    }
    t.note(format!("wrote {SYSCTL_FILE}"));
    world.host.sysctl_owner = testbed();
    Ok(())
}

fn firewall_rules(t: &mut Transcript, op: &str, bridge: &str) {
    for dir in ["-i", "-o"] {
        t.command(&["iptables", op, "FORWARD", dir, bridge, "-m", "comment", "--comment", "testbed", "-j", "ACCEPT"]);
    }
}

fn require_bridge(world: &SimWorld, r: &Resource, bridge: &str) -> Result<(), ProviderError> {
    // With a real LXD the simulation cannot tell: the real LXD's view of the containers
    // (`ContainerFacts`) names no networks. All that is checked then is that LXD answered, which it did
    // before this step ran (or the step failed as unavailable). With the simulated daemon, its networks
    // are known.
    if world.lxd.mirrored || world.lxd_daemon.networks.contains_key(bridge) {
        return Ok(());
    }
    Err(precondition(
        format!("{}: cannot add forwarding rules for bridge {bridge}: no LXD network named {bridge} exists", r.address),
        format!("apply lxd_network.{bridge} first"),
    ))
}

fn create_firewall(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let bridge = crate::step::setting(r, "bridge")?.to_owned();
    if let Some(f) = &world.host.firewall {
        return Err(crate::step::already_exists(
            &r.address,
            &f.owner,
            &format!("forwarding rules for bridge {}", f.bridge),
            "testbed comment on the rules",
        ));
    }
    require_bridge(world, r, &bridge)?;
    firewall_rules(t, "-I", &bridge);
    world.host.firewall = Some(Firewall { bridge, owner: testbed() });
    Ok(())
}

fn update_firewall(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let bridge = crate::step::setting(r, "bridge")?.to_owned();
    let Some(f) = world.host.firewall.clone() else {
        return create_firewall(world, r, t);
    };
    let what = format!("forwarding rules for bridge {}", f.bridge);
    ensure_owned(&r.address, "change", &f.owner, &what, "testbed comment on the rules")?;
    require_bridge(world, r, &bridge)?;
    if f.bridge != bridge {
        firewall_rules(t, "-D", &f.bridge);
        firewall_rules(t, "-I", &bridge);
    }
    world.host.firewall = Some(Firewall { bridge, owner: testbed() });
    Ok(())
}

fn delete_firewall(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let Some(f) = world.host.firewall.clone() else {
        t.note("no forwarding rules to remove");
        return Ok(());
    };
    let what = format!("forwarding rules for bridge {}", f.bridge);
    ensure_owned(&target.address, "delete", &f.owner, &what, "testbed comment on the rules")?;
    firewall_rules(t, "-D", &f.bridge);
    world.host.firewall = None;
    Ok(())
}
