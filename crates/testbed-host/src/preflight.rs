//! What the host lacks, found before apply changes anything: kernel modules the member profile needs,
//! host ports the file wants that a process already holds, and free disk space where LXD and MicroK8s keep
//! their data.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use testbed_config::{Backend, Config};
use testbed_plan::{Kind, ObservedState, Owner};

use crate::system::{HostSystem, KernelModules};

/// One thing the host lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether apply would fail because of it (else it is a warning).
    pub blocking: bool,
    pub message: String,
    pub hint: Option<String>,
}

const GIB: u64 = 1 << 30;

/// Disk each member needs where LXD keeps its containers: an Ubuntu container's root file system unpacked
/// (0.5–1 GiB), the MicroK8s snap (about 0.2 GiB) and the images MicroK8s itself runs (calico, coredns,
/// pause, hostpath-provisioner: about 0.7 GiB in containerd), with room for the images and logs of what the
/// member runs. An estimate, not a measurement: below it a member is likely to fail in odd ways (images
/// that do not pull, evicted pods), so testbed warns.
pub const PER_MEMBER: u64 = 3 * GIB;

/// Disk the host's own MicroK8s needs: the snap and its images (about 1 GiB), the registry addon holding
/// the Karmada release's images (about 1.2 GiB) plus containerd's copies when they are pulled, and etcd
/// for the Karmada control plane. Also an estimate.
pub const HOST_MICROK8S: u64 = 5 * GIB;

/// Everything pre-flight finds, blocking findings first.
pub async fn check(config: &Config, observed: &ObservedState, system: &HostSystem) -> Vec<Finding> {
    let mut out = kernel_modules(config, system);
    out.extend(ports(config, observed, system));
    out.extend(disk(config, system));
    out.sort_by_key(|f| !f.blocking);
    out
}

/// Modules of `wanted` this kernel has neither loaded, built in, nor available to modprobe (LXD loads
/// the profile's `linux.kernel_modules` with modprobe when a member starts, and refuses to start it when
/// that fails).
pub fn missing_modules(wanted: &[String], have: &KernelModules) -> Vec<String> {
    wanted.iter().filter(|m| !have.has(m)).cloned().collect()
}

fn kernel_modules(config: &Config, system: &HostSystem) -> Vec<Finding> {
    let profile = testbed_plan::desired::member_profile(config);
    let wanted: Vec<String> = profile
        .get("linux.kernel_modules")
        .map(|s| s.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let have = system.kernel_modules();
    let missing = missing_modules(&wanted, &have);
    if missing.is_empty() {
        return vec![];
    }
    let release = system.kernel_release().unwrap_or_else(|| "unknown".into());
    let setting = "set \"linux.kernel_modules\" in [lxd.profile_config] to the modules this kernel has";
    if !have.known {
        return vec![Finding {
            blocking: false,
            message: format!(
                "cannot tell whether this kernel ({release}) has the modules {} that the member profile's linux.kernel_modules lists: none of /proc/modules, modules.builtin and modules.dep could be read, and they are not loaded",
                missing.join(", ")
            ),
            hint: Some(format!("LXD loads them with modprobe when a member starts and refuses to start it if one is missing; if that happens, {setting}")),
        }];
    }
    vec![Finding {
        blocking: true,
        message: format!(
            "this kernel ({release}) lacks the modules {} that the member profile's linux.kernel_modules lists: LXD would refuse to start the members",
            missing.join(", ")
        ),
        hint: Some(format!(
            "install this kernel's extra modules (on Ubuntu: apt-get install linux-modules-extra-{release}), or {setting}"
        )),
    }]
}

/// A host port the file wants: who wants it, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPort {
    pub what: String,
    pub listen: String,
    pub port: u16,
}

/// Every host port the file wants: each member's API proxy and each `[[proxies]]` entry.
pub fn wanted_ports(config: &Config) -> Vec<WantedPort> {
    let f = &config.file;
    let mut out: Vec<WantedPort> = f
        .members
        .iter()
        .map(|m| WantedPort {
            what: format!("member {}'s API proxy", m.name),
            listen: m.listen.clone(),
            port: m.api_port,
        })
        .collect();
    out.extend(f.proxies.iter().map(|p| WantedPort {
        what: format!("proxy {} of member {}", p.name, p.member),
        listen: p.listen.clone(),
        port: p.host_port,
    }));
    out
}

fn is_wildcard(ip: &str) -> bool {
    matches!(ip, "0.0.0.0" | "::" | "[::]")
}

/// Whether a proxy testbed owns (seen in `observed`) listens on `listen:port`: it holds the port for
/// testbed, and the plan keeps or replaces it.
pub fn held_by_testbed(observed: &ObservedState, listen: &str, port: u16) -> bool {
    observed.resources.values().any(|o| {
        o.kind == Kind::Proxy
            && o.owner == Owner::Testbed
            && o.spec.get("listen").and_then(|l| l.strip_prefix("tcp:")).and_then(|l| l.rsplit_once(':')).is_some_and(
                |(addr, p)| {
                    p.parse::<u16>() == Ok(port) && (addr == listen || is_wildcard(addr) || is_wildcard(listen))
                },
            )
    })
}

fn ports(config: &Config, observed: &ObservedState, system: &HostSystem) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in wanted_ports(config) {
        let Ok(ip) = w.listen.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() else { continue };
        let addr = SocketAddr::new(ip, w.port);
        let Err(e) = std::net::TcpListener::bind(addr) else { continue };
        match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                if held_by_testbed(observed, &w.listen, w.port) {
                    continue;
                }
                let holders = port_holders(system, w.port);
                let by = if holders.is_empty() { String::new() } else { format!(" by {}", holders.join(", ")) };
                out.push(Finding {
                    blocking: true,
                    message: format!("host port {}:{} that {} wants is already taken{by}", w.listen, w.port, w.what),
                    hint: Some("stop what holds it, or choose another port in the file".into()),
                });
            }
            std::io::ErrorKind::AddrNotAvailable => out.push(Finding {
                blocking: true,
                message: format!("{} listens on {}, which is not an address of this host", w.what, w.listen),
                hint: Some("use 127.0.0.1, 0.0.0.0 or one of this host's addresses".into()),
            }),
            _ => {}
        }
    }
    out
}

/// The processes listening on TCP `port` (`name (pid N)`), from `/proc/net/tcp{,6}` and the processes'
/// open sockets. Best effort: another user's processes are only visible to root.
pub fn port_holders(system: &HostSystem, port: u16) -> Vec<String> {
    let mut inodes: Vec<String> = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(system.path(table)) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9)) else { continue };
            let p = local.rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok());
            // 0A: TCP_LISTEN.
            if p == Some(port) && *state == "0A" && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir(system.path("/proc")) else { return out };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str())));
        if holds {
            let name = std::fs::read_to_string(p.path().join("comm")).map(|s| s.trim().to_owned()).unwrap_or_default();
            out.push(format!("{name} (pid {pid})"));
        }
    }
    out.sort();
    out
}

/// Where data will go and how much it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskNeed {
    pub what: String,
    /// The host path (absolute, not under the HostSystem root).
    pub path: String,
    pub bytes: u64,
}

/// The file system a path is on: its device and the space an unprivileged writer can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsFacts {
    pub device: u64,
    pub available: u64,
}

/// Where LXD (or Incus) and the host's MicroK8s keep their data on this host, and what the file needs
/// there.
pub fn disk_needs(config: &Config, system: &HostSystem) -> Vec<DiskNeed> {
    let members = config.file.members.len() as u64;
    let (flavor, lxd_dir) = match config.file.lxd.backend {
        Backend::Incus => ("Incus", "/var/lib/incus"),
        Backend::Lxd if system.path("/var/lib/lxd").exists() || system.distribution().lxd_from_apt() => {
            ("LXD", "/var/lib/lxd")
        }
        Backend::Lxd => ("LXD", "/var/snap/lxd/common/lxd"),
    };
    let mut out =
        vec![DiskNeed { what: "the host's MicroK8s".into(), path: "/var/snap/microk8s".into(), bytes: HOST_MICROK8S }];
    if members > 0 {
        out.push(DiskNeed {
            what: format!("{flavor} with {members} member container{}", if members == 1 { "" } else { "s" }),
            path: lxd_dir.into(),
            bytes: members * PER_MEMBER,
        });
    }
    out
}

/// Warnings for file systems with less free space than the needs placed on them (needs on the same device
/// add up).
pub fn judge_disk(needs: &[(DiskNeed, FsFacts)]) -> Vec<Finding> {
    let mut by_device: BTreeMap<u64, (u64, u64, Vec<&DiskNeed>)> = BTreeMap::new();
    for (need, fs) in needs {
        let e = by_device.entry(fs.device).or_insert((0, fs.available, Vec::new()));
        e.0 += need.bytes;
        e.2.push(need);
    }
    by_device
        .into_values()
        .filter(|(need, available, _)| available < need)
        .map(|(need, available, who)| {
            let whats: Vec<String> = who.iter().map(|n| format!("{} ({})", n.what, n.path)).collect();
            Finding {
                blocking: false,
                message: format!(
                    "{} free where {} keep{} data; about {} is needed",
                    gib(available),
                    whats.join(" and "),
                    if whats.len() == 1 { "s" } else { "" },
                    gib(need)
                ),
                hint: Some("free space on that file system (or give LXD a storage pool on a larger disk): containers that run out of disk fail in odd ways, such as images that do not pull and pods that are evicted".into()),
            }
        })
        .collect()
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// The nearest existing directory at or above `path`.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

/// Device and available bytes of the file system holding `path` (statvfs(3): `f_bavail * f_frsize`).
pub fn fs_facts(path: &Path) -> Option<FsFacts> {
    use std::os::unix::ffi::OsStrExt;
    let device = std::fs::metadata(path).ok()?.dev();
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized, writable statvfs buffer.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (r == 0).then(|| FsFacts { device, available: (s.f_bavail as u64).saturating_mul(s.f_frsize as u64) })
}

fn disk(config: &Config, system: &HostSystem) -> Vec<Finding> {
    let measured: Vec<(DiskNeed, FsFacts)> = disk_needs(config, system)
        .into_iter()
        .filter_map(|n| {
            let at = existing_ancestor(&system.path(&n.path))?;
            fs_facts(&at).map(|f| (n, f))
        })
        .collect();
    judge_disk(&measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_count_when_loaded_builtin_or_loadable() {
        let mut k = KernelModules { known: true, ..Default::default() };
        k.loaded.insert("overlay".into());
        k.builtin.insert("br_netfilter".into());
        k.loadable.insert("ip_vs".into());
        let wanted: Vec<String> =
            ["overlay", "br-netfilter", "ip_vs", "ip_vs_sh"].iter().map(|s| s.to_string()).collect();
        assert_eq!(missing_modules(&wanted, &k), vec!["ip_vs_sh".to_owned()]);
    }

    #[test]
    fn disk_needs_on_one_device_add_up() {
        let host = DiskNeed { what: "the host's MicroK8s".into(), path: "/var/snap/microk8s".into(), bytes: 5 * GIB };
        let lxd = DiskNeed { what: "LXD with 3 member containers".into(), path: "/var/lib/lxd".into(), bytes: 9 * GIB };
        let same = FsFacts { device: 1, available: 10 * GIB };
        let f = judge_disk(&[(host.clone(), same), (lxd.clone(), same)]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(!f[0].blocking);
        assert_eq!(
            f[0].message,
            "10.0 GiB free where the host's MicroK8s (/var/snap/microk8s) and LXD with 3 member containers (/var/lib/lxd) keep data; about 14.0 GiB is needed"
        );
        // On two file systems each has room.
        let f = judge_disk(&[
            (host, FsFacts { device: 1, available: 6 * GIB }),
            (lxd, FsFacts { device: 2, available: 10 * GIB }),
        ]);
        assert!(f.is_empty(), "{f:?}");
    }
}
