//! The MicroK8s layer: the host's MicroK8s and its addons, MicroK8s inside each member's container and its
//! addons, and the members' kubeconfig files on the host.

use std::collections::BTreeSet;

use testbed_plan::{Action, Address, Health, Kind, Observed, Resource};
use testbed_provider::ProviderError;

use crate::step::{
    already_exists, ensure_owned, failed, list, member_of, observed, owner_of, precondition, run_op, setting, spec,
    Target, Transcript,
};
use crate::world::{
    is_testbed, testbed, HostMicrok8s, Instance, KubeconfigFiles, MemberMicrok8s, PortHolder, SimWorld,
    HOST_MICROK8S_API_PORT,
};

const MARKER: &str = "testbed marker file /var/snap/microk8s/common/testbed-owner";
const ADDONS_MARKER: &str = "testbed record of the addons it enabled";
const FILE_MARKER: &str = "testbed marker comment in the file";

fn stopped() -> Health {
    Health::NeedsRepair("MicroK8s is stopped; will be started".into())
}

pub(crate) fn observe_all(world: &SimWorld, _wanted: &[Resource]) -> Vec<Observed> {
    let mut out = Vec::new();
    if let Some(m) = &world.host.microk8s {
        let owner = owner_of(&m.owner, "MicroK8s on the host", MARKER);
        let mut o = observed(
            Address::new(Kind::HostMicrok8s, &["microk8s"]),
            Kind::HostMicrok8s,
            None,
            owner,
            spec([("channel", m.channel.clone())]),
        );
        if !m.running {
            o.health = stopped();
        }
        out.push(o);
        if !m.addons.is_empty() || is_testbed(&m.addons_owner) {
            let owner = owner_of(&m.addons_owner, "a set of addons on the host MicroK8s", ADDONS_MARKER);
            out.push(observed(
                Address::new(Kind::HostAddons, &["addons"]),
                Kind::HostAddons,
                None,
                owner,
                spec([("addons", joined(&m.addons))]),
            ));
        }
    }
    for (name, i) in &world.lxd.instances {
        let Some(m) = &i.microk8s else { continue };
        let owner = owner_of(&m.owner, &format!("MicroK8s in container {name}"), MARKER);
        let mut o = observed(
            Address::new(Kind::Microk8s, &[name]),
            Kind::Microk8s,
            Some(name),
            owner,
            spec([("channel", m.channel.clone())]),
        );
        if !m.running {
            o.health = stopped();
        }
        out.push(o);
        if !m.addons.is_empty() || is_testbed(&m.addons_owner) {
            let owner = owner_of(&m.addons_owner, &format!("a set of addons in {name}'s MicroK8s"), ADDONS_MARKER);
            out.push(observed(
                Address::new(Kind::Microk8sAddons, &[name]),
                Kind::Microk8sAddons,
                Some(name),
                owner,
                spec([("addons", joined(&m.addons))]),
            ));
        }
    }
    for (member, k) in &world.kubeconfigs {
        let owner = owner_of(&k.owner, &format!("a file at {}", k.path), FILE_MARKER);
        out.push(observed(
            Address::new(Kind::Kubeconfig, &[member]),
            Kind::Kubeconfig,
            Some(member),
            owner,
            spec([
                ("path", k.path.clone()),
                ("server", k.server.clone()),
                ("karmada_path", k.karmada_path.clone()),
                ("karmada_server", k.karmada_server.clone()),
                ("mode", k.mode.clone()),
            ]),
        ));
    }
    out
}

fn joined(set: &BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(",")
}

pub(crate) fn apply(world: &mut SimWorld, action: &Action, t: &mut Transcript) -> Result<(), ProviderError> {
    match action.kind {
        Kind::HostMicrok8s => run_op(world, action, t, install_host, update_host, remove_host),
        Kind::HostAddons => run_op(world, action, t, set_host_addons, set_host_addons, disable_host_addons),
        Kind::Microk8s => run_op(world, action, t, install_member, update_member, remove_member),
        Kind::Microk8sAddons => run_op(world, action, t, set_member_addons, set_member_addons, disable_member_addons),
        Kind::Kubeconfig => run_op(world, action, t, create_kubeconfig, update_kubeconfig, delete_kubeconfig),
        other => Err(ProviderError::failed(format!("the MicroK8s layer does not handle {other:?} resources"))),
    }
}

fn vanished(address: &Address, what: &str) -> ProviderError {
    failed(format!("{address}: {what} no longer exists"), "plan again: the machine changed since the plan was made")
}

// The host's MicroK8s.

/// The host MicroK8s, installed and running, for a step that needs it.
pub(crate) fn require_host<'a>(
    world: &'a SimWorld,
    address: &Address,
    doing: &str,
) -> Result<&'a HostMicrok8s, ProviderError> {
    let m = world.host.microk8s.as_ref().ok_or_else(|| {
        precondition(
            format!("{address}: cannot {doing}: MicroK8s is not installed on the host"),
            "apply host.microk8s first",
        )
    })?;
    if !m.running {
        return Err(precondition(
            format!("{address}: cannot {doing}: the host MicroK8s is stopped"),
            "run testbed apply to start it, or: microk8s start",
        ));
    }
    Ok(m)
}

fn install_host(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    if !world.has_package("snapd") {
        return Err(precondition(
            format!("{}: cannot install MicroK8s on the host: snapd is not installed", r.address),
            "apply host.packages first",
        ));
    }
    if let Some(m) = &world.host.microk8s {
        return Err(already_exists(&r.address, &m.owner, "MicroK8s on the host", MARKER));
    }
    if let Some(holder) = world.port_holder(HOST_MICROK8S_API_PORT, Some(&PortHolder::HostMicrok8s)) {
        return Err(precondition(
            format!(
                "{}: the MicroK8s API server cannot listen on port {HOST_MICROK8S_API_PORT}: address already in use (held by {holder})",
                r.address
            ),
            format!("free port {HOST_MICROK8S_API_PORT} on the host"),
        ));
    }
    let channel = setting(r, "channel")?.to_owned();
    t.command(&["snap", "install", "microk8s", "--classic", &format!("--channel={channel}")]);
    t.command(&["microk8s", "status", "--wait-ready", "--timeout", "300"]);
    world.host.microk8s = Some(HostMicrok8s {
        channel,
        running: true,
        owner: testbed(),
        addons: BTreeSet::new(),
        addons_owner: None,
        registry: None,
        karmada: None,
    });
    Ok(())
}

fn update_host(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let channel = setting(r, "channel")?.to_owned();
    let what = "MicroK8s on the host";
    let m = world.host.microk8s.as_mut().ok_or_else(|| vanished(&r.address, what))?;
    ensure_owned(&r.address, "change", &m.owner, what, MARKER)?;
    if m.channel != channel {
        t.command(&["snap", "refresh", "microk8s", &format!("--channel={channel}")]);
        m.channel = channel;
    }
    if !m.running {
        t.command(&["microk8s", "start"]);
        t.command(&["microk8s", "status", "--wait-ready", "--timeout", "300"]);
        m.running = true;
    }
    Ok(())
}

fn remove_host(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let what = "MicroK8s on the host";
    let Some(m) = &world.host.microk8s else {
        t.note("MicroK8s is not installed on the host");
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &m.owner, what, MARKER)?;
    if m.registry.is_some() || m.karmada.is_some() {
        t.note("the local registry and the Karmada control plane go with it");
    }
    t.command(&["snap", "remove", "microk8s", "--purge"]);
    world.host.microk8s = None;
    Ok(())
}

/// Enables and disables addons so that exactly `wanted` are on; returns the commands' arguments.
fn addon_changes(current: &BTreeSet<String>, wanted: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let enable = wanted.difference(current).cloned().collect();
    let disable = current.difference(wanted).cloned().collect();
    (enable, disable)
}

fn addon_commands(enable: &[String], disable: &[String], run: &mut dyn FnMut(&[&str])) {
    if !enable.is_empty() {
        let mut argv = vec!["microk8s", "enable"];
        argv.extend(enable.iter().map(String::as_str));
        run(&argv);
    }
    for a in disable {
        run(&["microk8s", "disable", a]);
    }
}

fn set_host_addons(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let wanted: BTreeSet<String> = list(setting(r, "addons")?).into_iter().collect();
    let m = require_host(world, &r.address, "enable addons")?;
    if !m.addons.is_empty() {
        ensure_owned(&r.address, "change", &m.addons_owner, "a set of addons on the host MicroK8s", ADDONS_MARKER)?;
    }
    let (enable, disable) = addon_changes(&m.addons, &wanted);
    addon_commands(&enable, &disable, &mut |argv| t.command(argv));
    if let Some(m) = world.host.microk8s.as_mut() {
        m.addons = wanted;
        m.addons_owner = testbed();
    }
    Ok(())
}

fn disable_host_addons(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let Some(m) = &world.host.microk8s else {
        t.note("MicroK8s is not installed on the host: no addons to disable");
        return Ok(());
    };
    if m.addons.is_empty() && !is_testbed(&m.addons_owner) {
        t.note("no addons to disable");
        return Ok(());
    }
    ensure_owned(&target.address, "delete", &m.addons_owner, "a set of addons on the host MicroK8s", ADDONS_MARKER)?;
    let m = require_host(world, &target.address, "disable addons")?;
    let (_, disable) = addon_changes(&m.addons, &BTreeSet::new());
    addon_commands(&[], &disable, &mut |argv| t.command(argv));
    if let Some(m) = world.host.microk8s.as_mut() {
        m.addons.clear();
        m.addons_owner = None;
    }
    Ok(())
}

// MicroK8s in the members.

/// The member's container, existing and running, for a step that runs a command in it.
pub(crate) fn running_container<'a>(
    world: &'a SimWorld,
    address: &Address,
    member: &str,
    doing: &str,
) -> Result<&'a Instance, ProviderError> {
    let i = world.instance(member).ok_or_else(|| {
        precondition(
            format!("{address}: cannot {doing}: container {member} does not exist"),
            format!("apply lxd_instance.{member} first"),
        )
    })?;
    if !i.is_running() {
        return Err(precondition(
            format!("{address}: cannot {doing}: container {member} is stopped"),
            format!("run testbed apply, which starts testbed's stopped containers, or: lxc start {member}"),
        ));
    }
    Ok(i)
}

/// The member's MicroK8s, installed and running in a running container.
pub(crate) fn running_member<'a>(
    world: &'a SimWorld,
    address: &Address,
    member: &str,
    doing: &str,
) -> Result<&'a MemberMicrok8s, ProviderError> {
    let i = running_container(world, address, member, doing)?;
    let m = i.microk8s.as_ref().ok_or_else(|| {
        precondition(
            format!("{address}: cannot {doing}: MicroK8s is not installed in {member}"),
            format!("apply microk8s.{member} first"),
        )
    })?;
    if !m.running {
        return Err(precondition(
            format!("{address}: cannot {doing}: MicroK8s in {member} is stopped"),
            format!("run testbed apply to start it, or: lxc exec {member} -- microk8s start"),
        ));
    }
    Ok(m)
}

fn member_microk8s_mut<'a>(world: &'a mut SimWorld, member: &str) -> Option<&'a mut MemberMicrok8s> {
    world.instance_mut(member).and_then(|i| i.microk8s.as_mut())
}

fn install_member(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let doing = format!("install MicroK8s in container {member}");
    let i = running_container(world, &r.address, &member, &doing)?;
    ensure_owned(
        &r.address,
        "install MicroK8s in",
        &i.owner,
        &format!("a container named {member}"),
        "user.testbed.owner key",
    )?;
    if let Some(m) = &i.microk8s {
        return Err(already_exists(&r.address, &m.owner, &format!("MicroK8s in container {member}"), MARKER));
    }
    // A real container's bridge is not in the real LXD's view of it (`ContainerFacts`): forwarding rules
    // for any bridge are taken to be for its bridge.
    let forwarded =
        if world.lxd.mirrored || i.network.is_empty() { world.forwards_any() } else { world.forwards(&i.network) };
    if !forwarded {
        let bridge = if world.lxd.mirrored { "its bridge".to_owned() } else { format!("bridge {}", i.network) };
        return Err(precondition(
            format!(
                "{}: cannot {doing}: snap cannot reach the snap store from the container: no forwarding rules for {bridge} on the host",
                r.address
            ),
            "apply host.firewall first",
        ));
    }
    let channel = setting(r, "channel")?.to_owned();
    t.exec(&member, &["snap", "install", "microk8s", "--classic", &format!("--channel={channel}")]);
    t.exec(&member, &["microk8s", "status", "--wait-ready", "--timeout", "300"]);
    // The real step then writes the member's trust of the local registry (certs.d/GATEWAY:PORT/hosts.toml,
    // see testbed_steps::registry_hosts_toml). A simulated pull (the karmada-agent image at register) checks
    // only that the image is in the registry, so the trust is not modelled.
    t.note("wrote the local registry's trust (certs.d/<bridge gateway>:<registry port>/hosts.toml)");
    let cluster_id = world.new_cluster_id();
    if let Some(i) = world.instance_mut(&member) {
        i.microk8s = Some(MemberMicrok8s {
            channel,
            running: true,
            owner: testbed(),
            cluster_id,
            addons: BTreeSet::new(),
            addons_owner: None,
            sideloaded: Default::default(),
            karmada_agent: false,
        });
    }
    Ok(())
}

fn update_member(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let what = format!("MicroK8s in container {member}");
    let i = running_container(world, &r.address, &member, &format!("change MicroK8s in {member}"))?;
    let m = i.microk8s.as_ref().ok_or_else(|| vanished(&r.address, &what))?;
    ensure_owned(&r.address, "change", &m.owner, &what, MARKER)?;
    let channel = setting(r, "channel")?.to_owned();
    let (refresh, start) = (m.channel != channel, !m.running);
    if refresh {
        t.exec(&member, &["snap", "refresh", "microk8s", &format!("--channel={channel}")]);
    }
    if start {
        t.exec(&member, &["microk8s", "start"]);
        t.exec(&member, &["microk8s", "status", "--wait-ready", "--timeout", "300"]);
    }
    if let Some(m) = member_microk8s_mut(world, &member) {
        m.channel = channel;
        m.running = true;
    }
    Ok(())
}

fn remove_member(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = target.member()?;
    let what = format!("MicroK8s in container {member}");
    let Some(m) = world.instance(member).and_then(|i| i.microk8s.as_ref()) else {
        t.note(format!("MicroK8s is not installed in {member}"));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &m.owner, &what, MARKER)?;
    running_container(world, &target.address, member, &format!("remove MicroK8s from {member}"))?;
    t.exec(member, &["snap", "remove", "microk8s", "--purge"]);
    if let Some(i) = world.instance_mut(member) {
        i.microk8s = None;
    }
    Ok(())
}

fn set_member_addons(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let wanted: BTreeSet<String> = list(setting(r, "addons")?).into_iter().collect();
    let m = running_member(world, &r.address, &member, &format!("enable addons in {member}"))?;
    if !m.addons.is_empty() {
        let what = format!("a set of addons in {member}'s MicroK8s");
        ensure_owned(&r.address, "change", &m.addons_owner, &what, ADDONS_MARKER)?;
    }
    let (enable, disable) = addon_changes(&m.addons, &wanted);
    addon_commands(&enable, &disable, &mut |argv| t.exec(&member, argv));
    if let Some(m) = member_microk8s_mut(world, &member) {
        m.addons = wanted;
        m.addons_owner = testbed();
    }
    Ok(())
}

fn disable_member_addons(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = target.member()?;
    let Some(m) = world.instance(member).and_then(|i| i.microk8s.as_ref()) else {
        t.note(format!("MicroK8s is not installed in {member}: no addons to disable"));
        return Ok(());
    };
    if m.addons.is_empty() && !is_testbed(&m.addons_owner) {
        t.note("no addons to disable");
        return Ok(());
    }
    let what = format!("a set of addons in {member}'s MicroK8s");
    ensure_owned(&target.address, "delete", &m.addons_owner, &what, ADDONS_MARKER)?;
    let m = running_member(world, &target.address, member, &format!("disable addons in {member}"))?;
    let (_, disable) = addon_changes(&m.addons, &BTreeSet::new());
    addon_commands(&[], &disable, &mut |argv| t.exec(member, argv));
    if let Some(m) = member_microk8s_mut(world, member) {
        m.addons.clear();
        m.addons_owner = None;
    }
    Ok(())
}

// Kubeconfig files.

fn kubeconfig_files(r: &Resource) -> Result<KubeconfigFiles, ProviderError> {
    Ok(KubeconfigFiles {
        path: setting(r, "path")?.to_owned(),
        server: setting(r, "server")?.to_owned(),
        karmada_path: setting(r, "karmada_path")?.to_owned(),
        karmada_server: setting(r, "karmada_server")?.to_owned(),
        mode: r.spec.get("mode").cloned().unwrap_or_else(|| "0600".into()),
        owner: testbed(),
    })
}

fn write_kubeconfig(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let doing = format!("write the kubeconfig of {member}");
    running_member(world, &r.address, &member, &doing)?;
    let has_api_proxy = world.instance(&member).is_some_and(|i| i.proxies.contains_key("api"));
    if !has_api_proxy {
        return Err(precondition(
            format!("{}: cannot {doing}: its API proxy (proxy.{member}.api) does not exist", r.address),
            format!("apply proxy.{member}.api first"),
        ));
    }
    let files = kubeconfig_files(r)?;
    t.exec(&member, &["microk8s", "config"]);
    t.note(format!("wrote {} (mode {}), server {}", files.path, files.mode, files.server));
    t.note(format!("wrote {} (mode {}), server {}", files.karmada_path, files.mode, files.karmada_server));
    world.kubeconfigs.insert(member, files);
    Ok(())
}

fn create_kubeconfig(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?;
    if let Some(k) = world.kubeconfigs.get(member) {
        return Err(already_exists(&r.address, &k.owner, &format!("a file at {}", k.path), FILE_MARKER));
    }
    write_kubeconfig(world, r, t)
}

fn update_kubeconfig(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?;
    if let Some(k) = world.kubeconfigs.get(member) {
        ensure_owned(&r.address, "overwrite", &k.owner, &format!("a file at {}", k.path), FILE_MARKER)?;
    }
    write_kubeconfig(world, r, t)
}

fn delete_kubeconfig(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = target.member()?;
    let Some(k) = world.kubeconfigs.get(member) else {
        t.note(format!("the kubeconfig of {member} is already gone"));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &k.owner, &format!("a file at {}", k.path), FILE_MARKER)?;
    t.note(format!("removed {} and {}", k.path, k.karmada_path));
    world.kubeconfigs.remove(member);
    Ok(())
}
