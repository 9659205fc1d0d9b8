//! What the simulated LXD daemon holds: networks, storage pools, profiles, instances and local images, kept
//! the way LXD keeps them (string config maps, device maps, profile lists), so that what a client wrote is
//! exactly what it reads back. Who made an object is whatever its config says (`user.*` keys): the daemon
//! attaches no meaning to them, as LXD does not.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::world::{parse_cidr, subnet_allows};

/// A config map or one device's keys.
pub type Map = BTreeMap<String, String>;
/// Devices by name.
pub type Devices = BTreeMap<String, Map>;

/// The daemon's objects, saved with the rest of the simulated machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxdDaemon {
    pub networks: BTreeMap<String, Network>,
    pub storage_pools: BTreeMap<String, StoragePool>,
    pub profiles: BTreeMap<String, Profile>,
    pub instances: BTreeMap<String, Instance>,
    /// Aliases of locally imported images (`lxc image import ... --alias NAME`).
    pub images: BTreeSet<String>,
    /// Source of `volatile.uuid` values and operation ids.
    pub next_id: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `bridge` for the networks LXD manages.
    pub kind: String,
    pub description: String,
    pub config: Map,
}

impl Network {
    /// The bridge's subnet, from `ipv4.address` (`10.123.45.1/24`): (gateway, prefix length).
    pub fn subnet(&self) -> Option<(Ipv4Addr, u8)> {
        parse_cidr(self.config.get("ipv4.address")?)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoragePool {
    pub driver: String,
    pub description: String,
    pub config: Map,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    pub config: Map,
    pub devices: Devices,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Running,
    #[default]
    Stopped,
}

impl Status {
    /// As LXD spells it (`status`), with its `status_code`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "Running",
            Status::Stopped => "Stopped",
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Status::Running => 103,
            Status::Stopped => 102,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub status: Status,
    pub description: String,
    /// The instance's own config, `volatile.*` keys included.
    pub config: Map,
    /// The instance's own devices (not its profiles').
    pub devices: Devices,
    pub profiles: Vec<String>,
    /// The address DHCP gave its NIC while it runs without a static one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_ipv4: Option<String>,
}

impl Instance {
    pub fn running(&self) -> bool {
        self.status == Status::Running
    }
}

/// The profile-expanded view of an instance, as LXD computes it: each profile in order, then the
/// instance's own keys and devices on top.
pub struct Expanded {
    pub config: Map,
    pub devices: Devices,
}

impl LxdDaemon {
    /// The daemon right after installation: a `default` profile with no devices (`lxd init` has not run).
    pub fn installed() -> LxdDaemon {
        let mut d = LxdDaemon { next_id: 1, ..LxdDaemon::default() };
        d.profiles.insert(
            "default".into(),
            Profile { description: "Default LXD profile".into(), config: Map::new(), devices: Devices::new() },
        );
        d
    }

    /// A fresh id (a UUID-shaped string for `volatile.uuid`, a number for operations).
    pub fn new_id(&mut self) -> u64 {
        let n = self.next_id.max(1);
        self.next_id = n.saturating_add(1);
        n
    }

    /// The instance's devices after its profiles', by reference (what [`LxdDaemon::expanded`] copies).
    pub fn devices_of<'a>(&'a self, i: &'a Instance) -> BTreeMap<&'a str, &'a Map> {
        let mut out = BTreeMap::new();
        for p in i.profiles.iter().filter_map(|p| self.profiles.get(p)) {
            out.extend(p.devices.iter().map(|(n, d)| (n.as_str(), d)));
        }
        out.extend(i.devices.iter().map(|(n, d)| (n.as_str(), d)));
        out
    }

    pub fn expanded(&self, i: &Instance) -> Expanded {
        let mut config = Map::new();
        let mut devices = Devices::new();
        for p in i.profiles.iter().filter_map(|p| self.profiles.get(p)) {
            config.extend(p.config.clone());
            devices.extend(p.devices.clone());
        }
        config.extend(i.config.clone());
        devices.extend(i.devices.clone());
        Expanded { config, devices }
    }

    /// `used_by` of a network: instances and profiles with a NIC on it.
    pub fn network_used_by(&self, name: &str) -> Vec<String> {
        self.devices_on("nic", "network", name)
    }

    /// `used_by` of a storage pool: instances and profiles with a disk on it (an instance's volume is listed
    /// as the instance: lxd-5.0.3 lxd/storage_pools_utils.go).
    pub fn pool_used_by(&self, name: &str) -> Vec<String> {
        self.devices_on("disk", "pool", name)
    }

    /// Profiles, then instances, with a device of type `device` whose `key` is `name`.
    fn devices_on(&self, device: &str, key: &str, name: &str) -> Vec<String> {
        let on = |d: &Devices| d.values().any(|d| kind(d) == device && d.get(key).map(String::as_str) == Some(name));
        let profiles = self.profiles.iter().filter(|(_, p)| on(&p.devices)).map(|(n, _)| format!("/1.0/profiles/{n}"));
        let instances = self
            .instances
            .iter()
            .filter(|(_, i)| on(&self.expanded(i).devices))
            .map(|(n, _)| format!("/1.0/instances/{n}"));
        profiles.chain(instances).collect()
    }

    /// `used_by` of a profile: the instances that list it.
    pub fn profile_used_by(&self, name: &str) -> Vec<String> {
        self.instances
            .iter()
            .filter(|(_, i)| i.profiles.iter().any(|p| p == name))
            .map(|(n, _)| format!("/1.0/instances/{n}"))
            .collect()
    }

    /// The addresses an instance holds on its NICs: the static `ipv4.address`, else its DHCP lease.
    pub fn ipv4_of(&self, i: &Instance) -> Option<String> {
        let static_ip =
            self.devices_of(i).values().filter(|d| kind(d) == "nic").find_map(|d| d.get("ipv4.address")).cloned();
        static_ip.or_else(|| i.dhcp_ipv4.clone())
    }

    /// A free address for DHCP on `network`, from the top of its subnet down (dnsmasq's range is the whole
    /// subnet; testbed hands out static ones from the bottom).
    pub fn lease(&self, network: &str) -> Option<String> {
        let (gateway, len) = self.networks.get(network)?.subnet()?;
        let taken: BTreeSet<String> = self.instances.values().filter_map(|i| self.ipv4_of(i)).collect();
        let mask: u32 = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        let broadcast = (u32::from(gateway) & mask) | !mask;
        (1..=250u32)
            .filter_map(|k| broadcast.checked_sub(k))
            .map(Ipv4Addr::from)
            .filter(|ip| subnet_allows((gateway, len), *ip))
            .map(|ip| ip.to_string())
            .find(|ip| !taken.contains(ip))
    }
}

/// A device's `type`.
pub fn kind(device: &Map) -> &str {
    device.get("type").map(String::as_str).unwrap_or_default()
}
