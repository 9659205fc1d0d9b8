//! The LXD layer: the bridge network, the storage pool, the member profile, containers and their proxy
//! devices. Calls are logged as the REST requests the real provider makes over LXD's unix socket.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use testbed_plan::{Action, Address, Health, Kind, Observed, Resource, Spec};
use testbed_provider::ProviderError;

use crate::step::{
    already_exists, ensure_owned, failed, list, member_of, observed, owner_of, precondition, run_op, setting, Target,
    Transcript,
};
use crate::world::{
    subnet_allows, testbed, Instance, InstanceStatus, Network, PortHolder, Profile, ProxyDevice, SimWorld, StoragePool,
};

/// The marker LXD objects carry when testbed made them.
const MARKER: &str = "user.testbed.owner key";
/// The marker of a device testbed added to a container.
const DEVICE_MARKER: &str = "entry in the container's user.testbed.devices key";

/// Containers testbed does not own that use something (LXD's `used_by`), for messages.
fn foreign_users(lxd: &crate::world::SimLxd, uses: impl Fn(&Instance) -> bool) -> Vec<String> {
    lxd.instances
        .iter()
        .filter(|(_, i)| !crate::world::is_testbed(&i.owner) && uses(i))
        .map(|(name, _)| format!("container {name}"))
        .collect()
}

pub(crate) fn observe_all(world: &SimWorld, _wanted: &[Resource]) -> Vec<Observed> {
    let mut out = Vec::new();
    let lxd = &world.lxd;
    for (name, n) in &lxd.networks {
        let mut s = n.config.clone();
        s.insert("type".into(), n.network_type.clone());
        let owner = owner_of(&n.owner, &format!("a network named {name}"), MARKER);
        let mut o = observed(Address::new(Kind::LxdNetwork, &[name]), Kind::LxdNetwork, None, owner, s);
        o.in_use_by = foreign_users(lxd, |i| &i.network == name);
        out.push(o);
    }
    for (name, p) in &lxd.storage_pools {
        let s: Spec = [("driver".to_owned(), p.driver.clone())].into_iter().collect();
        let owner = owner_of(&p.owner, &format!("a storage pool named {name}"), MARKER);
        let mut o = observed(Address::new(Kind::LxdStoragePool, &[name]), Kind::LxdStoragePool, None, owner, s);
        o.in_use_by = foreign_users(lxd, |i| &i.storage_pool == name);
        out.push(o);
    }
    for (name, p) in &lxd.profiles {
        let owner = owner_of(&p.owner, &format!("a profile named {name}"), MARKER);
        let mut o = observed(Address::new(Kind::LxdProfile, &[name]), Kind::LxdProfile, None, owner, profile_spec(p));
        o.in_use_by = foreign_users(lxd, |i| i.profiles.contains(name));
        out.push(o);
    }
    for (name, i) in &lxd.instances {
        let mut s: Spec = [
            ("image", i.image.clone()),
            ("ipv4", i.ipv4.clone()),
            ("profiles", i.profiles.join(",")),
            ("network", i.network.clone()),
            ("storage_pool", i.storage_pool.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        s.extend(i.limits.clone());
        let owner = owner_of(&i.owner, &format!("a container named {name}"), MARKER);
        let mut o = observed(Address::new(Kind::LxdInstance, &[name]), Kind::LxdInstance, Some(name), owner, s);
        if i.status == InstanceStatus::Stopped {
            o.health = Health::NeedsRepair("container is stopped; will be started".into());
        }
        out.push(o);
        for (dev, p) in &i.proxies {
            let s: Spec = [("listen", p.listen.clone()), ("connect", p.connect.clone()), ("bind", p.bind.clone())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let owner = owner_of(&p.owner, &format!("a proxy device {dev} on container {name}"), DEVICE_MARKER);
            out.push(observed(Address::new(Kind::Proxy, &[name, dev]), Kind::Proxy, Some(name), owner, s));
        }
    }
    out
}

pub(crate) fn apply(world: &mut SimWorld, action: &Action, t: &mut Transcript) -> Result<(), ProviderError> {
    match action.kind {
        Kind::LxdNetwork => run_op(world, action, t, create_network, update_network, delete_network),
        Kind::LxdStoragePool => run_op(world, action, t, create_pool, update_pool, delete_pool),
        Kind::LxdProfile => run_op(world, action, t, create_profile, update_profile, delete_profile),
        Kind::LxdInstance => run_op(world, action, t, create_instance, update_instance, delete_instance),
        Kind::Proxy => run_op(world, action, t, create_proxy, update_proxy, delete_proxy),
        other => Err(ProviderError::failed(format!("the LXD layer does not handle {other:?} resources"))),
    }
}

fn require_lxd(world: &SimWorld, address: &Address, what: &str) -> Result<(), ProviderError> {
    if world.lxd_installed() {
        return Ok(());
    }
    Err(precondition(
        format!("{address}: cannot create {what}: LXD is not installed on the host"),
        "apply host.packages first (it installs LXD)",
    ))
}

fn vanished(address: &Address, what: &str) -> ProviderError {
    failed(format!("{address}: {what} no longer exists"), "plan again: the machine changed since the plan was made")
}

/// Containers using an LXD object, for "in use" refusals.
fn users(world: &SimWorld, uses: impl Fn(&Instance) -> bool) -> Vec<String> {
    world.lxd.instances.iter().filter(|(_, i)| uses(i)).map(|(n, _)| n.clone()).collect()
}

fn refuse_in_use(address: &Address, what: &str, users: Vec<String>) -> Result<(), ProviderError> {
    if users.is_empty() {
        return Ok(());
    }
    Err(precondition(
        format!("{address}: cannot delete {what}: it is currently in use by container(s) {}", users.join(", ")),
        "delete those containers first",
    ))
}

// Networks.

fn network_config(r: &Resource) -> Result<(String, BTreeMap<String, String>), ProviderError> {
    let config: BTreeMap<String, String> =
        r.spec.iter().filter(|(k, _)| k.as_str() != "type").map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(a) = config.get("ipv4.address") {
        if a != "none" && a != "auto" && crate::world::parse_cidr(a).is_none() {
            return Err(failed(
                format!("{}: invalid value for ipv4.address: {a:?} is not ADDRESS/PREFIX", r.address),
                "write the bridge address with its prefix length, e.g. 10.123.45.1/24",
            ));
        }
    }
    let network_type = r.spec.get("type").cloned().unwrap_or_else(|| "bridge".into());
    Ok((network_type, config))
}

fn create_network(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    require_lxd(world, &r.address, &format!("network {}", r.name))?;
    if let Some(n) = world.lxd.networks.get(&r.name) {
        return Err(already_exists(&r.address, &n.owner, &format!("a network named {}", r.name), MARKER));
    }
    let (network_type, config) = network_config(r)?;
    t.api("POST", "/1.0/networks");
    world.lxd.networks.insert(r.name.clone(), Network { network_type, config, owner: testbed() });
    Ok(())
}

fn update_network(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let what = format!("a network named {}", r.name);
    let (_, config) = network_config(r)?;
    let n = world.lxd.networks.get_mut(&r.name).ok_or_else(|| vanished(&r.address, &what))?;
    ensure_owned(&r.address, "change", &n.owner, &what, MARKER)?;
    t.api("PATCH", &format!("/1.0/networks/{}", r.name));
    n.config.extend(config);
    Ok(())
}

fn delete_network(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let name = &target.name;
    let what = format!("a network named {name}");
    let Some(n) = world.lxd.networks.get(name) else {
        t.note(format!("network {name} is already gone"));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &n.owner, &what, MARKER)?;
    refuse_in_use(&target.address, &format!("network {name}"), users(world, |i| &i.network == name))?;
    t.api("DELETE", &format!("/1.0/networks/{name}"));
    world.lxd.networks.remove(name);
    Ok(())
}

// Storage pools.

fn create_pool(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    require_lxd(world, &r.address, &format!("storage pool {}", r.name))?;
    if let Some(p) = world.lxd.storage_pools.get(&r.name) {
        return Err(already_exists(&r.address, &p.owner, &format!("a storage pool named {}", r.name), MARKER));
    }
    let driver = setting(r, "driver")?.to_owned();
    t.api("POST", "/1.0/storage-pools");
    world.lxd.storage_pools.insert(r.name.clone(), StoragePool { driver, owner: testbed() });
    Ok(())
}

fn update_pool(world: &mut SimWorld, r: &Resource, _t: &mut Transcript) -> Result<(), ProviderError> {
    let what = format!("a storage pool named {}", r.name);
    let p = world.lxd.storage_pools.get(&r.name).ok_or_else(|| vanished(&r.address, &what))?;
    ensure_owned(&r.address, "change", &p.owner, &what, MARKER)
}

fn delete_pool(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let name = &target.name;
    let what = format!("a storage pool named {name}");
    let Some(p) = world.lxd.storage_pools.get(name) else {
        t.note(format!("storage pool {name} is already gone"));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &p.owner, &what, MARKER)?;
    refuse_in_use(&target.address, &format!("storage pool {name}"), users(world, |i| &i.storage_pool == name))?;
    t.api("DELETE", &format!("/1.0/storage-pools/{name}"));
    world.lxd.storage_pools.remove(name);
    Ok(())
}

// Profiles.

/// A profile's settings as one flat map: config keys, and `devices.NAME.KEY` for device keys.
fn profile_spec(p: &Profile) -> Spec {
    let mut s = p.config.clone();
    for (dev, keys) in &p.devices {
        for (k, v) in keys {
            s.insert(format!("devices.{dev}.{k}"), v.clone());
        }
    }
    s
}

fn profile_from_spec(spec: &Spec) -> Profile {
    let mut p = Profile { config: BTreeMap::new(), devices: BTreeMap::new(), owner: testbed() };
    for (k, v) in spec {
        match k.strip_prefix("devices.").and_then(|rest| rest.split_once('.')) {
            Some((dev, key)) => {
                p.devices.entry(dev.to_owned()).or_default().insert(key.to_owned(), v.clone());
            }
            None => {
                p.config.insert(k.clone(), v.clone());
            }
        }
    }
    p
}

fn create_profile(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    require_lxd(world, &r.address, &format!("profile {}", r.name))?;
    if let Some(p) = world.lxd.profiles.get(&r.name) {
        return Err(already_exists(&r.address, &p.owner, &format!("a profile named {}", r.name), MARKER));
    }
    t.api("POST", "/1.0/profiles");
    world.lxd.profiles.insert(r.name.clone(), profile_from_spec(&r.spec));
    Ok(())
}

fn update_profile(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let what = format!("a profile named {}", r.name);
    let p = world.lxd.profiles.get_mut(&r.name).ok_or_else(|| vanished(&r.address, &what))?;
    ensure_owned(&r.address, "change", &p.owner, &what, MARKER)?;
    t.api("PUT", &format!("/1.0/profiles/{}", r.name));
    *p = profile_from_spec(&r.spec);
    Ok(())
}

fn delete_profile(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let name = &target.name;
    let what = format!("a profile named {name}");
    let Some(p) = world.lxd.profiles.get(name) else {
        t.note(format!("profile {name} is already gone"));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &p.owner, &what, MARKER)?;
    refuse_in_use(&target.address, &format!("profile {name}"), users(world, |i| i.profiles.contains(name)))?;
    t.api("DELETE", &format!("/1.0/profiles/{name}"));
    world.lxd.profiles.remove(name);
    Ok(())
}

// Containers.

/// A container's settings as the file gives them.
struct InstanceSettings {
    image: String,
    ipv4: String,
    profiles: Vec<String>,
    network: String,
    storage_pool: String,
    limits: BTreeMap<String, String>,
}

impl InstanceSettings {
    fn of(r: &Resource) -> Result<InstanceSettings, ProviderError> {
        Ok(InstanceSettings {
            image: setting(r, "image")?.to_owned(),
            ipv4: r.spec.get("ipv4").cloned().unwrap_or_default(),
            profiles: list(setting(r, "profiles")?),
            network: setting(r, "network")?.to_owned(),
            storage_pool: setting(r, "storage_pool")?.to_owned(),
            limits: r
                .spec
                .iter()
                .filter(|(k, _)| k.starts_with("limits."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// What a container with these settings needs from LXD.
    fn check(&self, world: &SimWorld, r: &Resource) -> Result<(), ProviderError> {
        let name = &r.name;
        let network = world.lxd.networks.get(&self.network).ok_or_else(|| {
            precondition(
                format!("{}: cannot create container {name}: network {} does not exist", r.address, self.network),
                format!("apply lxd_network.{} first", self.network),
            )
        })?;
        if !world.lxd.storage_pools.contains_key(&self.storage_pool) {
            return Err(precondition(
                format!(
                    "{}: cannot create container {name}: storage pool {} does not exist",
                    r.address, self.storage_pool
                ),
                format!("apply lxd_storage_pool.{} first", self.storage_pool),
            ));
        }
        if let Some(p) = self.profiles.iter().find(|p| !world.lxd.profiles.contains_key(*p)) {
            return Err(precondition(
                format!("{}: cannot create container {name}: profile {p} does not exist", r.address),
                format!("apply lxd_profile.{p} first"),
            ));
        }
        if self.ipv4.is_empty() {
            return Ok(());
        }
        let ip: Ipv4Addr = self.ipv4.parse().map_err(|_| {
            failed(
                format!("{}: invalid ipv4.address {:?} for eth0 of container {name}", r.address, self.ipv4),
                "give the member an IPv4 address in the bridge's subnet",
            )
        })?;
        if let Some(subnet) = network.subnet() {
            if !subnet_allows(subnet, ip) {
                return Err(failed(
                    format!(
                        "{}: device validation failed for \"eth0\" of container {name}: {ip} is not a usable address in network {}'s subnet {}/{}",
                        r.address, self.network, subnet.0, subnet.1
                    ),
                    "give the member an address inside the bridge's subnet",
                ));
            }
        }
        let taken =
            world.lxd.instances.iter().find(|(n, i)| *n != name && i.network == self.network && i.ipv4 == self.ipv4);
        if let Some((other, _)) = taken {
            return Err(precondition(
                format!(
                    "{}: failed to start device \"eth0\" of container {name}: IP address {ip} already defined on another NIC (container {other})",
                    r.address
                ),
                "give the member another address, or free this one",
            ));
        }
        Ok(())
    }
}

fn create_instance(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let name = r.name.clone();
    require_lxd(world, &r.address, &format!("container {name}"))?;
    if let Some(i) = world.lxd.instances.get(&name) {
        return Err(already_exists(&r.address, &i.owner, &format!("a container named {name}"), MARKER));
    }
    let s = InstanceSettings::of(r)?;
    s.check(world, r)?;
    t.api("POST", "/1.0/instances");
    t.note(format!("container {name} created from {} and started", s.image));
    let identity = world.new_instance_id();
    world.lxd.instances.insert(
        name,
        Instance {
            status: InstanceStatus::Running,
            image: s.image,
            ipv4: s.ipv4,
            profiles: s.profiles,
            network: s.network,
            storage_pool: s.storage_pool,
            limits: s.limits,
            owner: testbed(),
            identity,
            proxies: BTreeMap::new(),
            microk8s: None,
        },
    );
    Ok(())
}

fn update_instance(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let name = r.name.clone();
    let what = format!("a container named {name}");
    let current = world.lxd.instances.get(&name).ok_or_else(|| vanished(&r.address, &what))?;
    ensure_owned(&r.address, "change", &current.owner, &what, MARKER)?;
    let s = InstanceSettings::of(r)?;
    s.check(world, r)?;
    let changed = current.ipv4 != s.ipv4
        || current.profiles != s.profiles
        || current.network != s.network
        || current.storage_pool != s.storage_pool
        || current.limits != s.limits;
    let address_changed = current.ipv4 != s.ipv4;
    let running = current.is_running();
    if changed {
        t.api("PATCH", &format!("/1.0/instances/{name}"));
    }
    if !running {
        t.api("PUT", &format!("/1.0/instances/{name}/state"));
        t.note(format!("started container {name}"));
    } else if address_changed {
        t.api("PUT", &format!("/1.0/instances/{name}/state"));
        t.note(format!("restarted container {name} for its new address"));
    }
    if let Some(i) = world.lxd.instances.get_mut(&name) {
        i.ipv4 = s.ipv4;
        i.profiles = s.profiles;
        i.network = s.network;
        i.storage_pool = s.storage_pool;
        i.limits = s.limits;
        i.status = InstanceStatus::Running;
    }
    Ok(())
}

fn delete_instance(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let name = &target.name;
    let what = format!("a container named {name}");
    let Some(i) = world.lxd.instances.get(name) else {
        t.note(format!("container {name} is already gone"));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &i.owner, &what, MARKER)?;
    if i.is_running() {
        // LXD refuses to delete a running container: stop it first.
        t.api("PUT", &format!("/1.0/instances/{name}/state"));
        t.note(format!("stopped container {name}"));
    }
    t.api("DELETE", &format!("/1.0/instances/{name}"));
    world.lxd.instances.remove(name);
    Ok(())
}

// Proxy devices.

fn proxy_port(r: &Resource, listen: &str) -> Result<u16, ProviderError> {
    crate::world::listen_port(listen).ok_or_else(|| {
        failed(
            format!("{}: invalid listen address {listen:?}: expected tcp:ADDRESS:PORT", r.address),
            "check the proxy's listen address and port in the file",
        )
    })
}

/// The container a device goes on: it must exist and be testbed's.
fn device_container<'a>(world: &'a SimWorld, r: &Resource, member: &str) -> Result<&'a Instance, ProviderError> {
    let i = world.lxd.instances.get(member).ok_or_else(|| {
        precondition(
            format!(
                "{}: cannot add proxy device {} to container {member}: the container does not exist",
                r.address, r.name
            ),
            format!("apply lxd_instance.{member} first"),
        )
    })?;
    ensure_owned(&r.address, "add a device to", &i.owner, &format!("a container named {member}"), MARKER)?;
    Ok(i)
}

fn check_port(world: &SimWorld, r: &Resource, listen: &str, port: u16, me: &PortHolder) -> Result<(), ProviderError> {
    match world.port_holder(port, Some(me)) {
        None => Ok(()),
        Some(holder) => Err(precondition(
            format!(
                "{}: failed to start device \"{}\": listen {listen}: bind: address already in use (port {port} is held by {holder})",
                r.address, r.name
            ),
            format!("free port {port} on the host, or choose another port in the file"),
        )),
    }
}

fn proxy_device(r: &Resource) -> Result<ProxyDevice, ProviderError> {
    Ok(ProxyDevice {
        listen: setting(r, "listen")?.to_owned(),
        connect: setting(r, "connect")?.to_owned(),
        bind: r.spec.get("bind").cloned().unwrap_or_else(|| "host".into()),
        owner: testbed(),
    })
}

fn create_proxy(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let instance = device_container(world, r, &member)?;
    if let Some(d) = instance.proxies.get(&r.name) {
        let what = format!("a proxy device {} on container {member}", r.name);
        return Err(already_exists(&r.address, &d.owner, &what, DEVICE_MARKER));
    }
    let device = proxy_device(r)?;
    let port = proxy_port(r, &device.listen)?;
    let me = PortHolder::Proxy { container: member.clone(), device: r.name.clone() };
    check_port(world, r, &device.listen, port, &me)?;
    t.api("PATCH", &format!("/1.0/instances/{member}"));
    t.note(format!("proxy {}: {} → {} (bind={})", r.name, device.listen, device.connect, device.bind));
    if let Some(i) = world.lxd.instances.get_mut(&member) {
        i.proxies.insert(r.name.clone(), device);
    }
    Ok(())
}

fn update_proxy(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let instance = device_container(world, r, &member)?;
    let what = format!("a proxy device {} on container {member}", r.name);
    let current = instance.proxies.get(&r.name).ok_or_else(|| vanished(&r.address, &what))?;
    ensure_owned(&r.address, "change", &current.owner, &what, DEVICE_MARKER)?;
    let device = proxy_device(r)?;
    let port = proxy_port(r, &device.listen)?;
    let me = PortHolder::Proxy { container: member.clone(), device: r.name.clone() };
    check_port(world, r, &device.listen, port, &me)?;
    t.api("PATCH", &format!("/1.0/instances/{member}"));
    if let Some(i) = world.lxd.instances.get_mut(&member) {
        i.proxies.insert(r.name.clone(), device);
    }
    Ok(())
}

fn delete_proxy(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = target.member()?;
    let what = format!("a proxy device {} on container {member}", target.name);
    let Some(d) = world.lxd.instances.get(member).and_then(|i| i.proxies.get(&target.name)) else {
        t.note(format!("proxy device {} of container {member} is already gone", target.name));
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &d.owner, &what, DEVICE_MARKER)?;
    t.api("PATCH", &format!("/1.0/instances/{member}"));
    if let Some(i) = world.lxd.instances.get_mut(member) {
        i.proxies.remove(&target.name);
    }
    Ok(())
}
