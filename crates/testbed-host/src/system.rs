//! Where host facts are read from: `/etc/os-release`, `/proc/sys`, the kernel's module lists, the programs
//! on the search path. Everything is read relative to a root, so tests can hand in a directory that looks
//! like a host.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories searched for programs besides `$PATH`: the ones host commands get on theirs.
use testbed_command::STANDARD_PATH_DIRS as STANDARD_DIRS;

/// The distribution family, from `ID` (and `ID_LIKE` for derivatives) in os-release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ubuntu,
    Debian,
    Other,
}

/// What `/etc/os-release` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    pub family: Family,
    /// `ID` (`ubuntu`, `debian`, `linuxmint`, ...); empty when there is no os-release.
    pub id: String,
    /// `VERSION_ID` (`24.04`, `12`); empty when absent (Debian testing/unstable have none).
    pub version: String,
    /// `PRETTY_NAME`, for messages.
    pub pretty: String,
}

impl Distribution {
    /// Parses os-release text (`KEY=value`, values optionally quoted, `#` comments).
    pub fn parse(text: &str) -> Distribution {
        let mut id = String::new();
        let mut like = String::new();
        let mut version = String::new();
        let mut pretty = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v)
                .to_owned();
            match k.trim() {
                "ID" => id = v,
                "ID_LIKE" => like = v,
                "VERSION_ID" => version = v,
                "PRETTY_NAME" => pretty = v,
                _ => {}
            }
        }
        let likes: Vec<&str> = like.split_whitespace().collect();
        let family = if id == "ubuntu" || (id != "debian" && likes.contains(&"ubuntu")) {
            Family::Ubuntu
        } else if id == "debian" || likes.contains(&"debian") {
            Family::Debian
        } else {
            Family::Other
        };
        if pretty.is_empty() {
            pretty = if id.is_empty() { "an unknown distribution".into() } else { format!("{id} {version}") };
        }
        Distribution { family, id, version, pretty }
    }

    /// Whether LXD comes from the distribution's own package (`apt-get install lxd`) rather than the snap.
    /// Debian 12 (bookworm) was the first Debian release to ship LXD and Debian 13 (trixie) is announced as
    /// the last (it keeps LXD 5.0.2 frozen before Canonical's relicensing; Debian's maintainers point users
    /// to Incus). Everywhere else, including Ubuntu where the deb became a snap transition package in 18.10,
    /// LXD is the snap.
    pub fn lxd_from_apt(&self) -> bool {
        self.id == "debian" && matches!(self.version.as_str(), "12" | "13")
    }
}

/// Which kernel modules this kernel has, as far as the files tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelModules {
    /// Loaded now (`/proc/modules`, `/sys/module`).
    pub loaded: BTreeSet<String>,
    /// Compiled into the kernel (`/lib/modules/<release>/modules.builtin`).
    pub builtin: BTreeSet<String>,
    /// Loadable with modprobe (`/lib/modules/<release>/modules.dep`).
    pub loadable: BTreeSet<String>,
    /// Whether any module list could be read at all; without one, a module's absence proves nothing.
    pub known: bool,
}

impl KernelModules {
    /// Whether `module` is loaded, built in or loadable. Names compare with `-` and `_` as the same, like
    /// modprobe.
    pub fn has(&self, module: &str) -> bool {
        let m = normalise(module);
        self.loaded.contains(&m) || self.builtin.contains(&m) || self.loadable.contains(&m)
    }
}

fn normalise(module: &str) -> String {
    module.trim().replace('-', "_")
}

/// `kernel/net/netfilter/ipvs/ip_vs.ko.zst` → `ip_vs`.
fn module_name_of_path(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    (!stem.is_empty() && file.contains(".ko")).then(|| normalise(stem))
}

/// Where host facts are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSystem {
    root: PathBuf,
    /// Program search directories, absolute (they are looked up under the root).
    path_dirs: Vec<PathBuf>,
    /// The machine architecture as Rust names it (`x86_64`, `aarch64`).
    arch: String,
}

impl HostSystem {
    /// This machine: root `/`, `$PATH` plus the standard directories, the architecture testbed was built
    /// for (which is the one it runs on).
    pub fn real() -> HostSystem {
        let mut dirs: Vec<PathBuf> =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
        for d in STANDARD_DIRS {
            if !dirs.iter().any(|x| x == Path::new(d)) {
                dirs.push(PathBuf::from(d));
            }
        }
        dirs.retain(|d| d.is_absolute());
        HostSystem { root: PathBuf::from("/"), path_dirs: dirs, arch: std::env::consts::ARCH.to_owned() }
    }

    /// A host laid out under `dir` (for tests): the standard program directories under it, `x86_64`.
    pub fn at(dir: impl Into<PathBuf>) -> HostSystem {
        HostSystem {
            root: dir.into(),
            path_dirs: STANDARD_DIRS.iter().map(PathBuf::from).collect(),
            arch: "x86_64".into(),
        }
    }

    /// The same host with another architecture (`x86_64`, `aarch64`, ...).
    pub fn with_arch(mut self, arch: &str) -> HostSystem {
        arch.clone_into(&mut self.arch);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// An absolute host path under the root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> Option<String> {
        std::fs::read_to_string(self.path(absolute)).ok()
    }

    /// The distribution, from `/etc/os-release` (else `/usr/lib/os-release`, as os-release(5) says).
    pub fn distribution(&self) -> Distribution {
        let text = self.read("/etc/os-release").or_else(|| self.read("/usr/lib/os-release")).unwrap_or_default();
        Distribution::parse(&text)
    }

    /// The running kernel's release (`/proc/sys/kernel/osrelease`).
    pub fn kernel_release(&self) -> Option<String> {
        self.read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// A kernel setting from `/proc/sys` (`fs.inotify.max_user_watches` → `/proc/sys/fs/inotify/...`).
    pub fn sysctl(&self, key: &str) -> Option<String> {
        if key.contains('/') || key.split('.').any(str::is_empty) {
            return None;
        }
        self.read(&format!("/proc/sys/{}", key.replace('.', "/"))).map(|s| s.trim().to_owned())
    }

    /// Where `program` is on the search path, if it is an executable file there.
    pub fn find_program(&self, program: &str) -> Option<PathBuf> {
        self.find_programs(program).into_iter().next()
    }

    /// Every executable file named `program` on the search path, in search order.
    pub fn find_programs(&self, program: &str) -> Vec<PathBuf> {
        if program.is_empty() || program.contains('/') {
            return Vec::new();
        }
        self.path_dirs
            .iter()
            .map(|d| self.path(&d.join(program).to_string_lossy()))
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
            .collect()
    }

    /// The kernel modules this kernel has.
    pub fn kernel_modules(&self) -> KernelModules {
        let mut k = KernelModules::default();
        if let Some(text) = self.read("/proc/modules") {
            k.known = true;
            k.loaded.extend(text.lines().filter_map(|l| l.split_whitespace().next()).map(normalise));
        }
        if let Ok(dir) = std::fs::read_dir(self.path("/sys/module")) {
            k.loaded.extend(dir.flatten().map(|e| normalise(&e.file_name().to_string_lossy())));
        }
        if let Some(release) = self.kernel_release() {
            for (file, set) in [("modules.builtin", &mut k.builtin), ("modules.dep", &mut k.loadable)] {
                if let Some(text) = self.read(&format!("/lib/modules/{release}/{file}")) {
                    k.known = true;
                    set.extend(
                        text.lines().filter_map(|l| module_name_of_path(l.split(':').next().unwrap_or_default())),
                    );
                }
            }
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_families() {
        let ubuntu = Distribution::parse(
            "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 24.04.2 LTS\"\n",
        );
        assert_eq!((ubuntu.family, ubuntu.version.as_str()), (Family::Ubuntu, "24.04"));
        assert!(!ubuntu.lxd_from_apt());
        let mint = Distribution::parse("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"22\"\n");
        assert_eq!(mint.family, Family::Ubuntu);
        let bookworm = Distribution::parse("ID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(bookworm.family, Family::Debian);
        assert!(bookworm.lxd_from_apt());
        let bullseye = Distribution::parse("ID=debian\nVERSION_ID=\"11\"\n");
        assert!(!bullseye.lxd_from_apt(), "Debian 11 has no lxd package");
        let raspbian = Distribution::parse("ID=raspbian\nID_LIKE=debian\n");
        assert_eq!(raspbian.family, Family::Debian);
        let fedora = Distribution::parse("ID=fedora\nVERSION_ID=41\n");
        assert_eq!(fedora.family, Family::Other);
        assert_eq!(Distribution::parse("").pretty, "an unknown distribution");
    }

    #[test]
    fn module_paths_become_names() {
        assert_eq!(module_name_of_path("kernel/net/netfilter/ipvs/ip_vs.ko.zst").as_deref(), Some("ip_vs"));
        assert_eq!(module_name_of_path("kernel/drivers/net/br-netfilter.ko").as_deref(), Some("br_netfilter"));
        assert_eq!(module_name_of_path("# comment"), None);
    }

    #[test]
    fn sysctl_keys_cannot_leave_proc_sys() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "root").unwrap();
        let s = HostSystem::at(d.path());
        assert_eq!(s.sysctl("...etc.passwd"), None);
        assert_eq!(s.sysctl("fs..inotify"), None);
        assert_eq!(s.sysctl("fs/../../etc/passwd"), None);
    }
}
