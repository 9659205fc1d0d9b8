//! From a validated file to the set of resources it wants, with their settings and dependencies.
//!
//! Pure: the only inputs besides the file are what observation saw of member addresses, so that an address
//! derived from the subnet stays the one the container already has, of the snap store's revisions, and of
//! the pods that pod proxies follow (where each is now).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use testbed_config::image_ref::ImageRef;
use testbed_config::net::Subnet;
use testbed_config::{Config, JoinMode, TestbedFile, MEMBER_API_PORT};

use crate::observed::{ObservedState, Owner};
use crate::resource::{Address, Kind, Resource, Spec};

/// Every resource the file wants, by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub resources: BTreeMap<Address, Resource>,
    /// Members without an address in the file that the subnet had none free for (other containers on the
    /// bridge hold the rest): the planner refuses them rather than plan a container, a kubeconfig and a
    /// Karmada endpoint with an empty host.
    pub unaddressed: Vec<String>,
    /// The members, in the file's order (the order of rolling changes).
    pub member_order: Vec<String>,
}

impl DesiredState {
    /// The empty state: what `destroy` plans against.
    pub fn nothing() -> DesiredState {
        DesiredState::default()
    }

    fn add(&mut self, kind: Kind, member: Option<&str>, name: &str, spec: Spec, depends_on: Vec<Address>) -> Address {
        let address = match (member, kind.is_member_scoped()) {
            (Some(m), true) if matches!(kind, Kind::Proxy | Kind::Sideload) => Address::new(kind, &[m, name]),
            (Some(m), true) => Address::new(kind, &[m]),
            _ => Address::new(kind, &[name]),
        };
        let r = Resource {
            address: address.clone(),
            kind,
            member: member.map(str::to_owned),
            name: name.to_owned(),
            spec,
            depends_on,
        };
        self.resources.insert(address.clone(), r);
        address
    }
}

fn spec<const N: usize>(pairs: [(&str, String); N]) -> Spec {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The `ports` of `host.nodeports`: the registry's and the Karmada API's, ascending, comma-joined (as
/// iptables' `--dports` takes them).
pub fn node_ports(registry: u16, karmada: u16) -> String {
    let set: BTreeSet<u16> = [registry, karmada].into_iter().collect();
    set.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

fn sorted_list(items: &[String]) -> String {
    let set: BTreeSet<&str> = items.iter().map(String::as_str).collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

/// The member profile's settings: MicroK8s' published LXD profile, with the file's overrides on top.
pub fn member_profile(config: &Config) -> Spec {
    let mut s = spec([
        ("security.nesting", "true".into()),
        ("security.privileged", "true".into()),
        ("boot.autostart", "true".into()),
        (
            "linux.kernel_modules",
            "ip_vs,ip_vs_rr,ip_vs_wrr,ip_vs_sh,ip_tables,ip6_tables,netlink_diag,nf_nat,overlay,br_netfilter".into(),
        ),
        (
            "raw.lxc",
            "lxc.apparmor.profile=unconfined\nlxc.mount.auto=proc:rw sys:rw cgroup:rw\nlxc.cgroup.devices.allow=a\nlxc.cap.drop="
                .into(),
        ),
        ("devices.aadisable.source", "/sys/module/nf_conntrack/parameters/hashsize".into()),
        ("devices.aadisable1.source", "/sys/fs/bpf".into()),
        ("devices.aadisable2.source", "/proc/sys/net/netfilter/nf_conntrack_max".into()),
        ("devices.aadisable3.source", "/dev/kmsg".into()),
    ]);
    for (k, v) in &config.file.lxd.profile_config {
        s.insert(k.clone(), v.clone());
    }
    s
}

/// Where an `[[images]]` entry lands in the local registry: `localhost:PORT/REPOSITORY:TAG`, with Docker Hub's
/// `library/` dropped. (The control plane's images keep only their name: see
/// [`testbed_config::ControlPlaneImage::target`].)
fn registry_target(port: u16, r: &ImageRef) -> String {
    let repo = r.repository.strip_prefix("library/").unwrap_or(&r.repository);
    let reference = match (&r.tag, &r.digest) {
        (_, Some(d)) => format!("@{d}"),
        (Some(t), None) => format!(":{t}"),
        (None, None) => ":latest".to_owned(),
    };
    format!("localhost:{port}/{repo}{reference}")
}

/// Member addresses: the file's where given; otherwise the address the member's own container already
/// has (if testbed owns it and it is still usable); otherwise the lowest free address in the subnet.
fn member_addresses(config: &Config, observed: &ObservedState) -> BTreeMap<String, Ipv4Addr> {
    let Ok(subnet) = Subnet::parse(&config.file.lxd.ipv4_address) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    let mut used: BTreeSet<Ipv4Addr> = observed.bridge_addresses.clone();
    for m in &config.file.members {
        if let Some(ip) = m.ipv4.as_deref().and_then(|s| s.parse().ok()) {
            out.insert(m.name.clone(), ip);
            used.insert(ip);
        }
    }
    let explicit: BTreeSet<Ipv4Addr> = out.values().copied().collect();
    let mut kept: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for m in config.file.members.iter().filter(|m| m.ipv4.is_none()) {
        let current = observed
            .get(&Address::new(Kind::LxdInstance, &[&m.name]))
            .filter(|o| o.owner == Owner::Testbed)
            .and_then(|o| o.spec.get("ipv4"))
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .filter(|ip| subnet.check_host(*ip).is_ok() && !explicit.contains(ip) && !kept.contains(ip));
        if let Some(ip) = current {
            out.insert(m.name.clone(), ip);
            kept.insert(ip);
        }
    }
    used.extend(kept.iter().copied());
    for m in &config.file.members {
        if out.contains_key(&m.name) {
            continue;
        }
        if let Some(ip) = subnet.member_candidates().find(|a| !used.contains(a)) {
            used.insert(ip);
            out.insert(m.name.clone(), ip);
        }
    }
    out
}

/// The name of the download of MicroK8s channel `channel` (fully qualified): `microk8s-1_32-stable` for
/// `1.32/stable`. It is the resource's name (`snap_download.NAME`: an address segment has no `.`) and the
/// files' basename in the download directory (`NAME.snap`, `NAME.assert`; its base snap's `NAME.base.snap`).
pub fn snap_download_name(channel: &str) -> String {
    format!("microk8s-{}", channel.replace('.', "_").replace('/', "-"))
}

/// Whether the control plane runs with cluster failover: as `[karmada] failover` says; without it, when a
/// workload fails over (its cluster tolerations evict nothing without the Failover gate), and once on it
/// stays on (switching it off is a new `karmadactl init`, which deletes everything on the Karmada API).
fn control_plane_failover(config: &Config, observed: &ObservedState) -> bool {
    let f = &config.file;
    f.karmada.failover.unwrap_or_else(|| {
        let live = observed
            .get(&Address::new(Kind::KarmadaControlPlane, &["control_plane"]))
            .filter(|o| o.owner == Owner::Testbed)
            .is_some_and(|o| o.spec.get("failover").is_some_and(|v| v == "true"));
        // A release testbed does not know the switch of is left as it is.
        let known = testbed_config::karmada_release::release(&f.karmada.version).is_some();
        live || (known && f.workloads.iter().any(|w| w.failover.is_some()))
    })
}

/// The spec key of a proxy that follows a pod: `NAMESPACE/SELECTOR:PORT` ([`testbed_config::PodTarget::describe`]).
pub const POD_KEY: &str = "pod";

/// The words a pod proxy's `connect` starts with until its pod is found: the pod is looked up when the proxy
/// is applied.
pub const POD_PLACEHOLDER: &str = "pod ";

/// A pod proxy's `connect`: where observation found its pod (`tcp:POD_IP:PORT`), or, when it found no Ready
/// pod (or could not look), a placeholder that says so; apply then finds the pod itself.
fn pod_connect(address: &Address, pod: &testbed_config::PodTarget, observed: &ObservedState) -> String {
    if let Some(found) = observed.pod_addresses.get(address.as_str()) {
        return found.clone();
    }
    match observed.pod_lookup_failures.get(address.as_str()) {
        Some(why) => format!("{POD_PLACEHOLDER}{} (not looked up: {why})", pod.describe()),
        None => format!("{POD_PLACEHOLDER}{} (no Ready pod yet)", pod.describe()),
    }
}

/// The pod a proxy follows, from its spec (`None` for a proxy to a fixed address).
pub fn pod_of(spec: &Spec) -> Option<testbed_config::PodTarget> {
    spec.get(POD_KEY).and_then(|p| testbed_config::PodTarget::parse(p))
}

/// Whether a proxy's `connect` is a pod placeholder ([`POD_PLACEHOLDER`]) rather than an address.
pub fn is_pod_placeholder(connect: &str) -> bool {
    connect.starts_with(POD_PLACEHOLDER)
}

/// Builds the desired state of a validated file.
pub fn build(config: &Config, observed: &ObservedState) -> DesiredState {
    let f = &config.file;
    let mut d = DesiredState { member_order: f.members.iter().map(|m| m.name.clone()).collect(), ..Default::default() };
    let host = add_host(&mut d, f);
    let lxd = add_lxd(&mut d, config, &host);
    let shared = add_shared(&mut d, config, observed, &host, &lxd);
    let downloads = add_snap_downloads(&mut d, f, observed, &host);
    add_members(&mut d, config, observed, (&host, &lxd, &shared), &downloads);
    add_app_proxies(&mut d, config, observed);
    add_sideloads(&mut d, f);
    add_workloads(&mut d, config, &shared.control_plane);
    d
}

/// What the host part gives the rest to depend on.
struct Host {
    packages: Address,
    sysctl: Address,
}

/// What the LXD part gives the members.
struct Lxd {
    network: Address,
    firewall: Address,
    pool: Address,
    profile: Address,
}

/// What the shared part gives the members: the control plane they join, and the image a pull-mode agent runs.
struct Shared {
    control_plane: Address,
    agent_image: Option<Address>,
}

/// The host's packages and kernel limits.
fn add_host(d: &mut DesiredState, f: &TestbedFile) -> Host {
    let lxd_pkg = match f.lxd.backend {
        testbed_config::Backend::Lxd => "lxd",
        testbed_config::Backend::Incus => "incus",
    };
    let packages = d.add(
        Kind::HostPackages,
        None,
        "packages",
        spec([
            ("packages", sorted_list(&["karmadactl".into(), "kubectl".into(), lxd_pkg.into(), "snapd".into()])),
            ("karmadactl.version", f.karmada.version.clone()),
        ]),
        vec![],
    );
    let sysctl = d.add(
        Kind::HostSysctl,
        None,
        "sysctl",
        spec([
            ("fs.inotify.max_user_instances", f.host.inotify_max_user_instances.to_string()),
            ("fs.inotify.max_user_watches", f.host.inotify_max_user_watches.to_string()),
        ]),
        vec![],
    );

    Host { packages, sysctl }
}

/// The bridge and its firewall rules, the storage pool and the member profile.
fn add_lxd(d: &mut DesiredState, config: &Config, host: &Host) -> Lxd {
    let f = &config.file;
    let packages = &host.packages;
    let network = d.add(
        Kind::LxdNetwork,
        None,
        &f.lxd.bridge,
        spec([
            ("ipv4.address", f.lxd.ipv4_address.clone()),
            ("ipv4.nat", "true".into()),
            ("ipv6.address", "none".into()),
        ]),
        vec![packages.clone()],
    );
    let firewall =
        d.add(Kind::HostFirewall, None, "firewall", spec([("bridge", f.lxd.bridge.clone())]), vec![network.clone()]);
    let pool = d.add(
        Kind::LxdStoragePool,
        None,
        &f.lxd.storage_pool,
        spec([("driver", f.lxd.storage_driver.clone())]),
        vec![packages.clone()],
    );
    let profile = d.add(Kind::LxdProfile, None, &f.lxd.profile, member_profile(config), vec![packages.clone()]);

    Lxd { network, firewall, pool, profile }
}

/// The host's MicroK8s and addons, the NodePort rule, the local registry, the images it holds and the Karmada
/// control plane.
fn add_shared(d: &mut DesiredState, config: &Config, observed: &ObservedState, host: &Host, lxd: &Lxd) -> Shared {
    let f = &config.file;
    let (packages, network) = (&host.packages, &lxd.network);
    let host_mk8s = d.add(
        Kind::HostMicrok8s,
        None,
        "microk8s",
        spec([("channel", f.host.microk8s_channel.clone())]),
        vec![packages.clone()],
    );
    let host_addons = d.add(
        Kind::HostAddons,
        None,
        "addons",
        spec([("addons", sorted_list(&f.host.addons))]),
        vec![host_mk8s.clone()],
    );
    // The registry's and the Karmada API's NodePorts answer on every host address (MicroK8s' kube-proxy
    // has no --nodeport-addresses): unless the file opens them, a rule testbed owns keeps them to loopback
    // and the bridge, in force before either listens (real-tools.md; issue 10's case 15).
    let nodeports = (!f.host.expose_node_ports).then(|| {
        d.add(
            Kind::HostNodeports,
            None,
            "nodeports",
            spec([("bridge", f.lxd.bridge.clone()), ("ports", node_ports(f.registry.port, f.karmada.api_port))]),
            vec![],
        )
    });
    let mut registry_deps = vec![host_mk8s.clone()];
    registry_deps.extend(nodeports.clone());
    let registry = d.add(Kind::Registry, None, "local", spec([("port", f.registry.port.to_string())]), registry_deps);

    let (control_plane_images, agent_image) = add_images(d, f, &registry);
    let gateway = Subnet::parse(&f.lxd.ipv4_address).map(|s| s.gateway.to_string()).unwrap_or_default();
    // init advertises the host's address on the bridge, which exists once the bridge does (real-tools.md,
    // issue 10's case 13).
    let mut cp_deps = vec![packages.clone(), host_addons.clone(), registry.clone(), network.clone()];
    cp_deps.extend(nodeports);
    cp_deps.extend(control_plane_images);
    let control_plane = d.add(
        Kind::KarmadaControlPlane,
        None,
        "control_plane",
        spec([
            ("version", f.karmada.version.clone()),
            ("api_port", f.karmada.api_port.to_string()),
            ("data_dir", f.karmada.data_dir.clone()),
            ("advertise_address", gateway),
            ("image_registry", format!("localhost:{}", f.registry.port)),
            ("failover", control_plane_failover(config, observed).to_string()),
        ]),
        cp_deps,
    );

    Shared { control_plane, agent_image }
}

/// The control plane's images (and the pull-mode agent's), then the file's `[[images]]` that are not
/// side-loaded: each copied into the local registry. The control plane's, and the agent's.
fn add_images(d: &mut DesiredState, f: &TestbedFile, registry: &Address) -> (Vec<Address>, Option<Address>) {
    // The release table's, or the file's own list for a version without one. The steps point `karmadactl
    // init` at exactly these copies.
    let release = testbed_config::control_plane_images(f);
    let local = format!("localhost:{}", f.registry.port);
    let mut control_plane_images = Vec::new();
    let mut agent_image = None;
    for img in &release {
        let a = d.add(
            Kind::Image,
            None,
            &img.name,
            spec([
                ("source", img.source.clone()),
                ("target", img.target(&local)),
                ("platforms", sorted_list(&f.registry.platforms)),
            ]),
            vec![registry.clone()],
        );
        if img.pull_mode_only {
            agent_image = Some(a);
        } else {
            control_plane_images.push(a);
        }
    }
    let is_release = |name: &str| release.iter().any(|i| i.name == name);
    for img in f.images.iter().filter(|i| !i.sideload && !is_release(&testbed_config::image_name(i))) {
        let Ok(r) = ImageRef::parse(&img.source) else {
            continue;
        };
        d.add(
            Kind::Image,
            None,
            &testbed_config::image_name(img),
            spec([
                ("source", img.source.clone()),
                ("target", registry_target(f.registry.port, &r)),
                ("platforms", sorted_list(&f.registry.platforms)),
            ]),
            vec![registry.clone()],
        );
    }

    (control_plane_images, agent_image)
}

/// The members' MicroK8s snap: downloaded once per channel on the host, then pushed into each member. The
/// revision is the store's now (observation asked it), so that a channel that moved on is fetched again and
/// its members refreshed; unknown when the store could not be asked. The downloads by full channel.
fn add_snap_downloads(
    d: &mut DesiredState,
    f: &TestbedFile,
    observed: &ObservedState,
    host: &Host,
) -> BTreeMap<String, Address> {
    let packages = &host.packages;
    let mut downloads: BTreeMap<String, Address> = BTreeMap::new();
    if f.host.microk8s_download_once {
        for m in &f.members {
            let channel = testbed_config::text::full_snap_channel(
                m.microk8s_channel.as_deref().unwrap_or(&f.host.microk8s_channel),
            );
            if downloads.contains_key(&channel) {
                continue;
            }
            let mut s = spec([("channel", channel.clone())]);
            if let Some(rev) = observed.snap_revisions.get(&channel) {
                s.insert("revision".into(), rev.clone());
            }
            let a = d.add(Kind::SnapDownload, None, &snap_download_name(&channel), s, vec![packages.clone()]);
            downloads.insert(channel, a);
        }
    }

    downloads
}

/// Each member: its container at its address, the API proxy, MicroK8s (from the download when there is
/// one), addons, the kubeconfigs and the membership in Karmada. A member without an address is recorded in
/// `unaddressed`, which the planner refuses.
fn add_members(
    d: &mut DesiredState,
    config: &Config,
    observed: &ObservedState,
    (host, lxd, shared): (&Host, &Lxd, &Shared),
    downloads: &BTreeMap<String, Address>,
) {
    let f = &config.file;
    let (sysctl, network, firewall, pool, profile) =
        (&host.sysctl, &lxd.network, &lxd.firewall, &lxd.pool, &lxd.profile);
    let (control_plane, agent_image) = (&shared.control_plane, &shared.agent_image);
    let addresses = member_addresses(config, observed);
    let kubeconfig_dir = config.kubeconfig_dir();
    for m in &f.members {
        let name = m.name.as_str();
        let ip = match addresses.get(name) {
            Some(a) => a.to_string(),
            None => {
                d.unaddressed.push(name.to_owned());
                String::new()
            }
        };
        let mut inst_spec = spec([
            ("image", m.image.clone().unwrap_or_else(|| f.lxd.image.clone())),
            ("ipv4", ip.clone()),
            ("profiles", format!("default,{}", f.lxd.profile)),
            ("network", f.lxd.bridge.clone()),
            ("storage_pool", f.lxd.storage_pool.clone()),
        ]);
        if let Some(c) = &m.cpu {
            inst_spec.insert("limits.cpu".into(), c.clone());
        }
        if let Some(mem) = &m.memory {
            inst_spec.insert("limits.memory".into(), mem.clone());
        }
        let instance = d.add(
            Kind::LxdInstance,
            Some(name),
            name,
            inst_spec,
            vec![network.clone(), pool.clone(), profile.clone(), sysctl.clone()],
        );
        let api_proxy = d.add(
            Kind::Proxy,
            Some(name),
            "api",
            spec([
                ("listen", format!("tcp:{}:{}", m.listen, m.api_port)),
                ("connect", format!("tcp:127.0.0.1:{MEMBER_API_PORT}")),
                ("bind", "host".into()),
            ]),
            vec![instance.clone()],
        );
        let channel = m.microk8s_channel.clone().unwrap_or_else(|| f.host.microk8s_channel.clone());
        let mut mk8s_spec = spec([("channel", channel.clone())]);
        let mut mk8s_deps = vec![instance.clone(), firewall.clone()];
        let full = testbed_config::text::full_snap_channel(&channel);
        if let Some(download) = downloads.get(&full) {
            // Installed from the download: the member tracks no channel; it has the revision downloaded.
            mk8s_spec.insert("channel".into(), full.clone());
            if let Some(rev) = observed.snap_revisions.get(&full) {
                mk8s_spec.insert("revision".into(), rev.clone());
            }
            mk8s_deps.push(download.clone());
        }
        let mk8s = d.add(Kind::Microk8s, Some(name), name, mk8s_spec, mk8s_deps);
        let addons = d.add(
            Kind::Microk8sAddons,
            Some(name),
            name,
            spec([("addons", sorted_list(&m.addons))]),
            vec![mk8s.clone()],
        );
        let kubeconfig = d.add(
            Kind::Kubeconfig,
            Some(name),
            name,
            spec([
                ("path", kubeconfig_dir.join(format!("{name}.config")).display().to_string()),
                ("server", format!("https://127.0.0.1:{}", m.api_port)),
                ("karmada_path", kubeconfig_dir.join(format!("{name}-karmada.config")).display().to_string()),
                ("karmada_server", format!("https://{ip}:{MEMBER_API_PORT}")),
                ("mode", "0600".into()),
            ]),
            vec![mk8s.clone(), api_proxy.clone()],
        );
        let mode = config.join_mode(m);
        let mut member_deps = vec![control_plane.clone(), kubeconfig.clone()];
        let mut member_spec = spec([(
            "mode",
            match mode {
                JoinMode::Push => "push".into(),
                JoinMode::Pull => "pull".into(),
            },
        )]);
        match mode {
            JoinMode::Push => {
                member_spec.insert("api_endpoint".into(), format!("https://{ip}:{MEMBER_API_PORT}"));
            }
            JoinMode::Pull => {
                member_deps.push(addons.clone());
                if let Some(a) = &agent_image {
                    member_deps.push(a.clone());
                }
            }
        }
        d.add(Kind::KarmadaMember, Some(name), name, member_spec, member_deps);
    }
}

/// The application proxies: to a fixed address in the container, or following a pod (after the workloads
/// placed on its member).
fn add_app_proxies(d: &mut DesiredState, config: &Config, observed: &ObservedState) {
    let f = &config.file;
    for p in &f.proxies {
        let address = Address::new(Kind::Proxy, &[&p.member, &p.name]);
        let mut deps = vec![Address::new(Kind::LxdInstance, &[&p.member])];
        let mut s = spec([("listen", format!("tcp:{}:{}", p.listen, p.host_port)), ("bind", "host".into())]);
        match (&p.pod, &p.target) {
            (Some(pod), _) => {
                let connect = pod_connect(&address, pod, observed);
                s.insert("connect".into(), connect);
                s.insert(POD_KEY.into(), pod.describe());
                // The pods it follows are the workloads': the proxy comes once those placed on its member run.
                for w in &f.workloads {
                    if crate::workload::placement(config, w).contains(&p.member) {
                        deps.push(Address::new(Kind::Workload, &[&w.name]));
                    }
                }
            }
            (None, target) => {
                s.insert("connect".into(), target.clone().unwrap_or_default());
            }
        }
        d.add(Kind::Proxy, Some(&p.member), &p.name, s, deps);
    }
}

/// Each side-loaded image, on each member it goes to.
fn add_sideloads(d: &mut DesiredState, f: &TestbedFile) {
    for img in f.images.iter().filter(|i| i.sideload) {
        let img_name = testbed_config::image_name(img);
        for m in &f.members {
            if img.members.as_ref().is_some_and(|ms| !ms.contains(&m.name)) {
                continue;
            }
            let mut s = spec([("source", img.source.clone())]);
            if let Some(a) = &img.archive {
                s.insert("archive".into(), a.clone());
            }
            d.add(Kind::Sideload, Some(&m.name), &img_name, s, vec![Address::new(Kind::Microk8s, &[&m.name])]);
        }
    }
}

/// Each workload's objects (`workload_object.WORKLOAD.KEY`, applied to the Karmada API server once the
/// control plane is there, a namespaced object after its Namespace when the workload has it) and the
/// workload itself (`workload.NAME`, done once Karmada placed every object and the members report them
/// healthy: after its objects, the memberships of the members it is placed on, and the images its pods use).
fn add_workloads(d: &mut DesiredState, config: &Config, control_plane: &Address) {
    let objects = crate::workload::applied_objects(config);
    for w in &config.file.workloads {
        let mine: Vec<&crate::workload::AppliedObject> = objects.iter().filter(|o| o.workload == w.name).collect();
        let mut workload_deps = Vec::new();
        for o in &mine {
            let key = o.key();
            let address = Address::new(Kind::WorkloadObject, &[&w.name, &key]);
            let mut deps = vec![control_plane.clone()];
            // A policy is applied once the members it places on are joined: Karmada schedules a template
            // when its policy claims it, over the Clusters Ready then, and does not move it when another
            // becomes Ready later.
            if o.kind.kind == crate::workload::PROPAGATION_POLICY.kind {
                deps.extend(
                    crate::workload::placement(config, w).iter().map(|m| Address::new(Kind::KarmadaMember, &[m])),
                );
            }
            if let Some(ns) = &o.namespace {
                let ns_key = crate::workload::object_key("Namespace", None, ns);
                if mine.iter().any(|other| other.key() == ns_key) {
                    deps.push(Address::new(Kind::WorkloadObject, &[&w.name, &ns_key]));
                }
            }
            let r = Resource {
                address: address.clone(),
                kind: Kind::WorkloadObject,
                member: None,
                name: key,
                spec: crate::workload::flatten(o.kind.kind, &o.object),
                depends_on: deps,
            };
            d.resources.insert(address.clone(), r);
            workload_deps.push(address);
        }
        for m in crate::workload::placement(config, w) {
            workload_deps.push(Address::new(Kind::KarmadaMember, &[&m]));
        }
        // The images its pods run that testbed puts in place: copied into the registry, or side-loaded.
        let images = pod_images(&mine);
        for r in d.resources.values() {
            let used = match r.kind {
                Kind::Image => r.spec.get("target").is_some_and(|t| images.contains(t.as_str())),
                Kind::Sideload => r.spec.get("source").is_some_and(|s| images.contains(s.as_str())),
                _ => false,
            };
            if used {
                workload_deps.push(r.address.clone());
            }
        }
        d.add(Kind::Workload, None, &w.name, Spec::new(), workload_deps);
    }
}

/// Every container image the objects' pod templates name.
fn pod_images<'a>(objects: &[&'a crate::workload::AppliedObject]) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    for o in objects {
        let pod = &o.object["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_array().into_iter().flatten() {
                if let Some(image) = c["image"].as_str() {
                    out.insert(image);
                }
            }
        }
    }
    out
}
