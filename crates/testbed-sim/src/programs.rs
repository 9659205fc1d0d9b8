//! The simulated host's programs: a [`CommandRunner`] the real providers run their argument vectors
//! through, as they would through the real one. Each program does to the simulated host what the real one
//! does to a real host, prints what it prints and exits as it exits:
//!
//! - a program that is not on the host's search path (in its files) is not found, as `execve` would say;
//! - `apt-get install -y PKG` and `snap install NAME` put the package's programs on the path and record
//!   the package (an unknown one: `E: Unable to locate package`, exit 100; `error: snap "X" not found`);
//! - `curl -fsSL -o FILE URL` writes a karmadactl release archive for a published version (a 404 is
//!   `curl: (22)`, exit 22), `curl URL.sha256` prints the digest the release publishes beside it, `tar -xzf`
//!   unpacks it into `/usr/local/bin`, and `karmadactl version` prints karmada's `version.Info` line;
//! - `sysctl -w KEY=VALUE` changes `/proc/sys`; `iptables [-t raw] -C/-I/-D/-S` keep the rules (a missing rule:
//!   exit 1, "Bad rule (does a matching rule exist in that chain?)", as iptables 1.8.9 says);
//! - `snap install microk8s` (which writes the host cluster's admin kubeconfig, as the snap's install hook
//!   does) and the `microk8s` command ([`crate::microk8s_snap`]), karmadactl's other commands
//!   ([`crate::karmadactl`]), and coreutils' file programs over the host's directory ([`crate::coreutils`]).
//!
//! Each call takes the time the real program takes (scaled by the speed factor). Commands in a member go
//! through the simulated LXD daemon's exec API to the programs inside it ([`crate::member_programs`]), or,
//! with real containers, straight to those programs bound to the real container.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use testbed_command::{CommandError, CommandRunner, Output};
use testbed_steps::Where;

use testbed_command::SystemRunner;
use testbed_provider::ContainerView;

use crate::coreutils::{self, HostTree};
use crate::host_root::{program_bytes, under, write};
use crate::machine::Shared;
use crate::member_programs;
use crate::microk8s_snap::{self, Snapped};
use crate::snap_store::SnapFile;
use crate::world::{ClusterPki, HostMicrok8s, Package, PortHolder, SimWorld, HOST_MICROK8S_API_PORT};

/// The host's own address, as `microk8s config` on the host puts it in the server URL.
pub(crate) const HOST_ADDRESS: &str = "192.0.2.10";

/// Where programs are looked for: the standard directories, as testbed's host layer looks.
pub(crate) const SEARCH_PATH: [&str; 7] =
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/snap/bin"];

/// The simulated host's programs, and through them the programs in members: for the providers that run
/// commands.
#[derive(Clone)]
pub struct SimPrograms {
    shared: Arc<Shared>,
    members: Members,
}

/// How commands reach the members.
#[derive(Clone)]
pub(crate) enum Members {
    /// Through the simulated LXD daemon's exec and file API, as the real runner reaches a real LXD's.
    Daemon(SystemRunner),
    /// Bound to real containers (mixed mode): the simulated programs run in what the simulation keeps
    /// inside each real container, if it is running.
    Real(Arc<dyn ContainerView>),
}

impl SimPrograms {
    pub(crate) fn new(shared: Arc<Shared>, members: Members) -> SimPrograms {
        SimPrograms { shared, members }
    }

    fn root(&self) -> &Path {
        self.shared.host_root()
    }

    fn find(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            let p = under(self.root(), program);
            return p.is_file().then_some(p);
        }
        SEARCH_PATH.iter().map(|d| under(self.root(), &format!("{d}/{program}"))).find(|p| p.is_file())
    }
}

/// What a program does: its output, and how long it takes on a real host.
pub(crate) struct Ran {
    pub out: Output,
    pub took: Duration,
}

pub(crate) fn ok(stdout: impl Into<String>, secs: u64) -> Ran {
    Ran { out: Output::ok(stdout), took: Duration::from_secs(secs) }
}

pub(crate) fn fail(code: i32, stderr: impl Into<String>) -> Ran {
    Ran { out: Output::failed(code, stderr), took: Duration::from_millis(200) }
}

#[async_trait]
impl CommandRunner for SimPrograms {
    async fn run(&self, at: &Where, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        let program = argv.first().cloned().unwrap_or_default();
        if let Where::Member(member) = at {
            return match &self.members {
                Members::Daemon(runner) => runner.run(at, argv, timeout).await,
                Members::Real(view) => self.in_real(view.as_ref(), member, argv, timeout).await,
            };
        }
        if self.find(&program).is_none() {
            return Err(CommandError::NotFound { program, where_: String::new() });
        }
        let name = program.rsplit('/').next().unwrap_or(&program).to_owned();
        // What karmadactl reads besides the world: the real registry's images, when it is real.
        let registry_images = match (name.as_str(), self.shared.real_registry()) {
            ("karmadactl", Some(view)) => match view.registry().await {
                Ok(facts) => Some(facts.map(|f| f.images.into_values().collect()).unwrap_or_default()),
                Err(_) => Some(Default::default()),
            },
            _ => None,
        };
        // karmadactl reaches the members' API servers: with real containers, where they are now.
        if let (Members::Real(view), "karmadactl") = (&self.members, name.as_str()) {
            if let Ok(facts) = view.containers().await {
                self.shared.remember_real_facts(&facts);
            }
        }
        let ran = {
            let mut world = self.shared.lock();
            let before = (world.host.clone(), world.inside.clone());
            let spent = world.consumed_failures.len();
            if registry_images.is_some() {
                world.real_registry_images = registry_images;
            }
            let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
            let w = &mut *world;
            let fault = w.faults.program("host", &name, &args, &mut w.consumed_failures);
            let ran = if let Some(fault) = fault {
                let (code, text) = crate::faults::program_failure(&name, &args, &fault);
                fail(code, text)
            } else if name == "karmadactl" && argv.get(1).is_some_and(|a| a != "version") {
                let env = crate::karmadactl::Env {
                    root: self.root(),
                    own_dirs: self.shared.own_dirs(),
                    containers: crate::kube_api::containers(&self.shared, &world, None),
                    agent_delay: self.shared.options.scaled(Duration::from_secs(5)),
                    options: &self.shared.options,
                    now_ms: world.now_ms(),
                };
                let a: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
                crate::karmadactl::run(&mut world, &env, &a)
            } else {
                host_program(&mut world, self.root(), &name, &argv[1..])
            };
            // Reading (iptables -C, karmadactl version) changes nothing, and saves nothing.
            if (&world.host, &world.inside) != (&before.0, &before.1) || world.consumed_failures.len() != spent {
                self.shared.save_locked(&world).map_err(|e| CommandError::Spawn {
                    program: program.clone(),
                    where_: String::new(),
                    reason: e.to_string(),
                })?;
            }
            ran
        };
        // Installing LXD makes its socket appear.
        let _ = self.shared.sync_lxd_socket();
        let argv_words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let varied = self.shared.read(|w| w.faults.latency("host", &argv_words, ran.took));
        let took = self.shared.options.scaled(varied);
        if took > timeout {
            tokio::time::sleep(timeout).await;
            return Err(CommandError::Timeout { program, where_: String::new(), after: timeout });
        }
        if !took.is_zero() {
            tokio::time::sleep(took).await;
        }
        Ok(ran.out)
    }

    async fn push_file(&self, member: &str, path: &str, content: Vec<u8>, mode: u32) -> Result<(), CommandError> {
        match &self.members {
            Members::Daemon(runner) => runner.push_file(member, path, content, mode).await,
            Members::Real(view) => {
                let refused = |reason: String| CommandError::Member {
                    program: format!("a file push to {path}"),
                    member: member.to_owned(),
                    reason,
                };
                let c = self.real_container(view.as_ref(), member).await.map_err(refused)?;
                self.shared.change_quiet(|w| member_programs::push(w, &c, path, &content, mode)).map_err(refused)?;
                self.shared.save_now().map_err(|e| refused(e.to_string()))
            }
        }
    }
}

impl SimPrograms {
    /// Runs `argv` in what the simulation keeps inside the real container `member`.
    async fn in_real(
        &self,
        view: &dyn ContainerView,
        member: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<Output, CommandError> {
        let program = argv.first().cloned().unwrap_or_default();
        let refused =
            |reason: String| CommandError::Member { program: program.clone(), member: member.to_owned(), reason };
        let c = self.real_container(view, member).await.map_err(refused)?;
        // How long it takes, from a trial on a copy; the real run happens when that time has passed, in
        // the container as it is then: a container that stopped or was re-created meanwhile took the
        // process with it.
        let trial = self.shared.read(|w| member_programs::run(&mut w.clone(), &c, argv));
        let took = self.shared.options.scaled(trial.took);
        if took > timeout {
            tokio::time::sleep(timeout).await;
            return Err(CommandError::Timeout { program, where_: format!(" in {member}"), after: timeout });
        }
        if !took.is_zero() {
            tokio::time::sleep(took).await;
            let now = self.real_container(view, member).await.map_err(refused)?;
            if now.identity != c.identity {
                return Err(refused("Instance is not running".into()));
            }
        }
        let ran = self
            .shared
            .run_inside(member, |w| member_programs::run(w, &c, argv))
            .map_err(|e| refused(e.to_string()))?;
        if ran.out.code == 127 {
            return Err(CommandError::NotFound { program, where_: format!(" in {member}") });
        }
        Ok(ran.out)
    }

    /// The real container `member`, running, as the programs in it see it; else LXD's refusal.
    async fn real_container(
        &self,
        view: &dyn ContainerView,
        member: &str,
    ) -> Result<member_programs::Container, String> {
        let facts = view.containers().await.map_err(|e| e.report().to_string())?;
        self.shared.remember_real_facts(&facts);
        let c = facts.into_iter().find(|c| c.name == member).ok_or_else(|| "Instance not found".to_owned())?;
        if !c.running {
            return Err("Instance is not running".into());
        }
        Ok(member_programs::Container { name: c.name, identity: c.identity, address: c.ipv4, bridge: None })
    }
}

/// The host resource a program call changes, as the catalogue uses the program: what
/// `TESTBED_SIM_FAIL=ADDRESS` fails (its first change, once).
fn changes(name: &str, a: &[&str]) -> Option<String> {
    // The members' MicroK8s download: `snap download ... --basename=NAME` (its base's `NAME.base`).
    if let ("snap", ["download", ..]) = (name, a) {
        let basename = a.iter().find_map(|x| x.strip_prefix("--basename="))?;
        let download = basename.strip_suffix(".base").unwrap_or(basename);
        return Some(testbed_plan::Address::new(testbed_plan::Kind::SnapDownload, &[download]).to_string());
    }
    let address = match (name, a) {
        ("snap", ["install" | "refresh" | "remove", "microk8s", ..]) => Some("host.microk8s"),
        ("microk8s", ["enable" | "disable", "registry"]) => Some("registry.local"),
        ("microk8s", ["enable" | "disable", ..]) => Some("host.addons"),
        ("sysctl", ["-w", ..]) => Some("host.sysctl"),
        ("iptables", ["-t", "raw", "-I" | "-D", ..]) => Some("host.nodeports"),
        ("iptables", ["-I" | "-D", ..]) => Some("host.firewall"),
        ("apt-get", ["install", ..]) | ("snap", ["install", ..]) => Some("host.packages"),
        ("curl", _) if a.contains(&"-o") => Some("host.packages"),
        _ => None,
    };
    address.map(str::to_owned)
}

fn host_program(world: &mut SimWorld, root: &Path, name: &str, args: &[String]) -> Ran {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(address) = changes(name, &a) {
        if world.fail_once.contains(&address) && world.consumed_failures.insert(address.clone()) {
            return fail(1, format!("{name}: simulated failure injected by TESTBED_SIM_FAIL ({address})\n"));
        }
    }
    match name {
        "apt-get" => apt_get(world, root, &a),
        "snap" => snap(world, root, &a),
        "lxd" | "incus" => match a.as_slice() {
            ["waitready", ..] | ["admin", "waitready", ..] if world.lxd_installed() => ok("", 1),
            ["waitready", ..] | ["admin", "waitready", ..] => fail(1, "Error: LXD still not running after 60s timeout"),
            _ => fail(
                1,
                format!(
                    "Error: unknown command {:?} for {name} (the simulated host runs only waitready)",
                    a.first().unwrap_or(&"")
                ),
            ),
        },
        "curl" => curl(world, root, &a),
        "tar" => tar(world, root, &a),
        "karmadactl" => karmadactl(root, &a),
        "sysctl" => sysctl(root, &a),
        "iptables" => iptables(world, &a),
        "microk8s" => match world.host.microk8s.as_mut() {
            Some(m) => microk8s_snap::microk8s(m, &a, HOST_ADDRESS),
            None => fail(127, "microk8s: command not found\n"),
        },
        other if coreutils::PROGRAMS.contains(&other) => {
            let out = coreutils::run(&mut HostTree { root }, other, &a).unwrap_or_default();
            Ran { out, took: Duration::from_millis(20) }
        }
        other => fail(126, format!("{other}: the simulated host has this program but does not model what it does")),
    }
}

/// Packages apt can install on the simulated host, with the programs they bring.
fn apt_package(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "snapd" => &["/usr/bin/snap"],
        "lxd" => &["/usr/bin/lxd", "/usr/bin/lxc"],
        "incus" => &["/usr/bin/incus"],
        "curl" => &["/usr/bin/curl"],
        "iptables" => &["/usr/sbin/iptables"],
        "nftables" => &["/usr/sbin/nft"],
        "procps" => &["/usr/sbin/sysctl"],
        _ => return None,
    })
}

fn apt_get(world: &mut SimWorld, root: &Path, a: &[&str]) -> Ran {
    match a {
        ["update"] => ok("Reading package lists... Done\n", 8),
        ["install", rest @ ..] => {
            let pkgs: Vec<&str> = rest.iter().copied().filter(|p| !p.starts_with('-')).collect();
            if let Some(unknown) = pkgs.iter().find(|p| apt_package(p).is_none()) {
                return fail(100, format!("E: Unable to locate package {unknown}\n"));
            }
            for p in &pkgs {
                install(world, root, p, "apt", apt_package(p).unwrap_or_default());
            }
            ok(format!("Setting up {} ...\n", pkgs.join(" ")), 20 * pkgs.len().max(1) as u64)
        }
        _ => fail(100, "E: Invalid operation (the simulated apt-get runs update and install)\n"),
    }
}

fn install(world: &mut SimWorld, root: &Path, package: &str, source: &str, programs: &[&str]) {
    for p in programs {
        let name = p.rsplit('/').next().unwrap_or(p);
        let _ = write(root, p, &program_bytes(name, &format!("(from the {source} package {package})")), 0o755);
    }
    world.host.packages.insert(package.to_owned(), Package { version: None, source: source.into() });
    if matches!(package, "lxd" | "incus") {
        // The daemon starts with its default profile.
        world.install_lxd_by_hand();
    }
}

/// `snap download NAME [--channel=C] --target-directory=DIR [--basename=B]`: the snap and its assertions
/// (`B.snap`, `B.assert`; without `--basename`, `NAME_REV`), fetched over the line unless the file is there
/// already with the store's content (snapd store/tooling: "not downloading, using existing file").
fn snap_download(world: &mut SimWorld, root: &Path, name: &str, rest: &[&str]) -> Ran {
    let flag = |k: &str| rest.iter().find_map(|a| a.strip_prefix(k));
    let channel = testbed_config::text::full_snap_channel(flag("--channel=").unwrap_or("latest/stable"));
    let file = match name {
        "microk8s" => SnapFile::microk8s(&channel),
        base => SnapFile::base(base),
    };
    let Some(file) = file else {
        return fail(1, format!("error: cannot download snap \"{name}\": no snap revision on channel \"{channel}\"\n"));
    };
    let dir = flag("--target-directory=").unwrap_or("/root");
    let basename = flag("--basename=").map_or_else(|| format!("{name}_{}", file.revision), str::to_owned);
    let snap_path = format!("{}/{basename}.snap", dir.trim_end_matches('/'));
    let assert_path = format!("{}/{basename}.assert", dir.trim_end_matches('/'));
    if !under(root, dir).is_dir() {
        return fail(1, format!("error: cannot create \"{snap_path}\": no such file or directory\n"));
    }
    let bytes = file.bytes();
    let fresh = std::fs::read(under(root, &snap_path)).ok().as_deref() != Some(bytes.as_slice());
    let mut took = Duration::from_secs(2);
    if fresh {
        if write(root, &snap_path, &bytes, 0o644).is_err() {
            return fail(1, format!("error: cannot create \"{snap_path}\"\n"));
        }
        *world.host.downloads.entry(format!("snap:{name}@{channel}")).or_default() += 1;
        took += world.line.transfer(file.size);
    }
    if write(root, &assert_path, file.assertions().as_bytes(), 0o644).is_err() {
        return fail(1, format!("error: cannot create assertions file: open {assert_path}\n"));
    }
    Ran {
        out: Output::ok(format!(
            "Fetching snap \"{name}\"\nFetching assertions for \"{name}\"\nInstall the snap with:\n   snap ack {assert_path}\n   snap install {snap_path}\n"
        )),
        took,
    }
}

fn snap(world: &mut SimWorld, root: &Path, a: &[&str]) -> Ran {
    match a {
        ["wait", "system", "seed.loaded"] => ok("", 1),
        ["download", name, rest @ ..] => snap_download(world, root, name, rest),
        ["info", "microk8s"] => ok(crate::snap_store::info_microk8s(), 1),
        ["info", "--verbose", path] if path.starts_with('/') => {
            match std::fs::read(under(root, path)).ok().and_then(|b| SnapFile::parse(&b)) {
                Some(f) => ok(f.info(path), 1),
                None => fail(1, format!("error: cannot read \"{path}\": not a snap file\n")),
            }
        }
        ["list", "microk8s"] => microk8s_snap::snap_list(world.host.microk8s.as_ref().map(|m| m as &dyn Snapped)),
        ["install", "microk8s", rest @ ..] => {
            if world.host.microk8s.is_some() {
                return ok("snap \"microk8s\" is already installed, see 'snap help refresh'\n", 1);
            }
            let channel = match microk8s_snap::install_request(rest) {
                Ok(c) => c,
                Err(refused) => return refused,
            };
            // kube-apiserver cannot bind its port: the snap installs, its services fail to start.
            if let Some(holder) = world.port_holder(HOST_MICROK8S_API_PORT, Some(&PortHolder::HostMicrok8s)) {
                return fail(
                    1,
                    format!("error: cannot perform the following tasks:\n- Run install hook of \"microk8s\" snap if present (run hook \"install\": kube-apiserver: listen tcp 0.0.0.0:{HOST_MICROK8S_API_PORT}: bind: address already in use ({holder}))\n"),
                );
            }
            let _ = write(root, "/snap/bin/microk8s", &program_bytes("microk8s", &format!("({channel})")), 0o755);
            let _ = std::fs::create_dir_all(under(root, "/var/snap/microk8s/common"));
            // The snap's install hook makes the cluster's certificates and the admin kubeconfig, which
            // talks to the API server on loopback.
            let pki = ClusterPki::generate();
            let client = microk8s_snap::kubeconfig_text(
                &pki,
                &format!("https://127.0.0.1:{HOST_MICROK8S_API_PORT}"),
                "microk8s-cluster",
                "admin",
                "microk8s",
            );
            let _ = write(root, testbed_steps::MICROK8S_CLIENT_CONFIG, client.as_bytes(), 0o600);
            let mut done = microk8s_snap::installed(&channel);
            done.took += world.line.transfer(crate::snap_store::MICROK8S_SNAP_BYTES);
            world.host.microk8s = Some(HostMicrok8s {
                channel,
                running: true,
                owner: None,
                addons: Default::default(),
                addons_owner: None,
                registry: None,
                karmada: None,
                karmada_namespace: None,
                pki: Some(pki),
            });
            done
        }
        ["refresh", "microk8s", rest @ ..] => match world.host.microk8s.as_mut() {
            Some(m) => microk8s_snap::refresh(m, rest),
            None => fail(1, "error: snap \"microk8s\" is not installed\n"),
        },
        ["remove", "microk8s", ..] => {
            if world.host.microk8s.take().is_none() {
                return ok("snap \"microk8s\" is not installed\n", 1);
            }
            let _ = std::fs::remove_dir_all(under(root, "/var/snap/microk8s"));
            let _ = std::fs::remove_file(under(root, "/snap/bin/microk8s"));
            ok("microk8s removed\n", 30)
        }
        ["install", name, ..] => {
            let programs: &[&str] = match *name {
                "kubectl" => &["/snap/bin/kubectl"],
                "lxd" => &["/snap/bin/lxd", "/snap/bin/lxc"],
                _ => return fail(1, format!("error: snap \"{name}\" not found\n")),
            };
            if world.host.packages.get(*name).is_some_and(|p| p.source == "snap") {
                return ok(format!("snap \"{name}\" is already installed, see 'snap help refresh'\n"), 1);
            }
            install(world, root, name, "snap", programs);
            ok(format!("{name} installed\n"), 25)
        }
        _ => fail(1, "error: unknown command (the simulated snap runs wait and install)\n"),
    }
}

/// `https://github.com/karmada-io/karmada/releases/download/VERSION/karmadactl-linux-ARCH.tgz` → (VERSION,
/// ARCH), for a version as karmada-io tags its releases (`v1.15.9`).
/// The version of a published release's `crds.tar.gz` URL.
pub(crate) fn crd_archive(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://github.com/karmada-io/karmada/releases/download/")?;
    let (version, asset) = rest.split_once('/')?;
    (asset == "crds.tar.gz" && published(version)).then(|| version.to_owned())
}

/// What the simulated release's CRD archive holds (not a real archive: the simulated init only checks
/// that it is there).
pub(crate) fn crd_archive_bytes(version: &str) -> String {
    format!("testbed simulated CRD archive: karmada {version}\n")
}

fn release_asset(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://github.com/karmada-io/karmada/releases/download/")?;
    let (version, asset) = rest.split_once('/')?;
    let arch = asset.strip_prefix("karmadactl-linux-")?.strip_suffix(".tgz")?;
    (published(version) && matches!(arch, "amd64" | "arm64")).then(|| (version.to_owned(), arch.to_owned()))
}

/// Whether karmada-io published a release with this tag, as far as the simulation knows: v1.15.0 to
/// v1.15.9 (the last 1.15 patch), v1.19.0 (the newest), and for the other minors from v1.11 to v1.18 the
/// first ten patches (an approximation: their exact last patches are not recorded here).
fn published(version: &str) -> bool {
    let Some(rest) = version.strip_prefix("v1.") else { return false };
    let Some((minor, patch)) = rest.split_once('.') else { return false };
    let (Ok(minor), Ok(patch)) = (minor.parse::<u32>(), patch.parse::<u32>()) else { return false };
    match minor {
        19 => patch == 0,
        11..=18 => patch <= 9,
        _ => false,
    }
}

/// The simulated release archive of karmadactl `version` for `arch`.
fn archive_bytes(version: &str, arch: &str) -> Vec<u8> {
    format!("testbed simulated release archive: karmadactl {version} linux/{arch}\n").into_bytes()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

const NOT_FOUND_22: &str = "curl: (22) The requested URL returned error: 404\n";

fn curl(world: &mut SimWorld, root: &Path, a: &[&str]) -> Ran {
    let url = a.last().copied().unwrap_or_default();
    let output = a.windows(2).find(|w| w[0] == "-o").map(|w| w[1]);
    // The release's CRD archive (what karmadactl init's `--crds` defaults to).
    if let Some(v) = crd_archive(url) {
        let Some(file) = output else { return ok(crd_archive_bytes(&v), 3) };
        let full = under(root, file);
        if !full.parent().is_some_and(Path::is_dir) {
            return fail(23, "curl: (23) Failure writing output to destination\n");
        }
        return match std::fs::write(&full, crd_archive_bytes(&v)) {
            Ok(()) => {
                *world.host.downloads.entry(url.to_owned()).or_default() += 1;
                ok("", 3)
            }
            Err(_) => fail(23, "curl: (23) Failure writing output to destination\n"),
        };
    }
    if let Some(base) = url.strip_suffix(".sha256") {
        return match release_asset(base) {
            Some((v, arch)) => {
                ok(format!("{}  karmadactl-linux-{arch}.tgz\n", hex_sha256(&archive_bytes(&v, &arch))), 1)
            }
            None => fail(22, NOT_FOUND_22),
        };
    }
    let Some((v, arch)) = release_asset(url) else { return fail(22, NOT_FOUND_22) };
    match output {
        Some(file) => {
            let full = under(root, file);
            if !full.parent().is_some_and(Path::is_dir) {
                return fail(23, "curl: (23) Failure writing output to destination\n");
            }
            match std::fs::write(&full, archive_bytes(&v, &arch)) {
                Ok(()) => ok("", 5),
                Err(_) => fail(23, "curl: (23) Failure writing output to destination\n"),
            }
        }
        None => ok(String::from_utf8_lossy(&archive_bytes(&v, &arch)).into_owned(), 5),
    }
}

fn tar(world: &mut SimWorld, root: &Path, a: &[&str]) -> Ran {
    let file = a.windows(2).find(|w| w[0] == "-xzf").map(|w| w[1]);
    let dir = a.windows(2).find(|w| w[0] == "-C").map(|w| w[1]).unwrap_or("/");
    let Some(file) = file else { return fail(2, "tar: the simulated tar unpacks with -xzf FILE -C DIR\n") };
    let Ok(bytes) = std::fs::read(under(root, file)) else {
        return fail(2, format!("tar: {file}: Cannot open: No such file or directory\n"));
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(rest) = text.strip_prefix("testbed simulated release archive: karmadactl ") else {
        return fail(2, "gzip: stdin: not in gzip format\ntar: Child returned status 1\n");
    };
    let version = rest.split_whitespace().next().unwrap_or_default().to_owned();
    let platform = rest.split_whitespace().nth(1).unwrap_or_default().trim().to_owned();
    let detail = format!("{version} {platform}");
    if write(root, &format!("{dir}/karmadactl"), &program_bytes("karmadactl", &detail), 0o755).is_err() {
        return fail(2, format!("tar: {dir}: Cannot open: No such file or directory\n"));
    }
    world.host.packages.insert("karmadactl".into(), Package { version: Some(version), source: "release".into() });
    ok("", 1)
}

/// `karmadactl version`, as karmada prints `version.Info` (`%#v`).
fn karmadactl(root: &Path, a: &[&str]) -> Ran {
    let found = SEARCH_PATH.iter().map(|d| under(root, &format!("{d}/karmadactl"))).find(|p| p.is_file());
    let Some(bytes) = found.and_then(|p| std::fs::read(p).ok()) else {
        return fail(127, "karmadactl: not found\n");
    };
    let text = String::from_utf8_lossy(&bytes);
    let detail = text.split("simulated program karmadactl ").nth(1).unwrap_or_default();
    let version = detail.split_whitespace().next().unwrap_or_default();
    let platform = detail.split_whitespace().nth(1).unwrap_or("linux/amd64");
    match a {
        ["version"] => ok(
            format!(
                "karmadactl version: version.Info{{GitVersion:\"{version}\", GitCommit:\"0000000000000000000000000000000000000000\", GitShortCommit:\"00000000\", GitTreeState:\"clean\", BuildDate:\"2026-01-01T00:00:00Z\", GoVersion:\"go1.24.6\", Compiler:\"gc\", Platform:\"{platform}\"}}\n"
            ),
            0,
        ),
        _ => fail(1, "Error: unknown command for \"karmadactl\"\n"),
    }
}

fn sysctl(root: &Path, a: &[&str]) -> Ran {
    match a {
        ["-w", kv] => {
            let Some((key, value)) = kv.split_once('=') else {
                return fail(255, format!("sysctl: \"{kv}\" must be of the form name=value\n"));
            };
            let path = format!("/proc/sys/{}", key.trim().replace('.', "/"));
            if !under(root, &path).is_file() {
                return fail(
                    255,
                    format!("sysctl: cannot stat /proc/sys/{}: No such file or directory\n", key.replace('.', "/")),
                );
            }
            match write(root, &path, format!("{}\n", value.trim()).as_bytes(), 0o644) {
                Ok(()) => ok(format!("{} = {}\n", key.trim(), value.trim()), 0),
                Err(e) => fail(255, format!("sysctl: permission denied on key \"{key}\": {e}\n")),
            }
        }
        _ => fail(255, "sysctl: the simulated sysctl runs -w KEY=VALUE\n"),
    }
}

const BAD_RULE: &str = "iptables: Bad rule (does a matching rule exist in that chain?).\n";

/// iptables 1.8.9 (nf_tables) over the filter and raw tables: `[-t TABLE] -S [CHAIN]`, `-C`, `-I` (at the
/// top), `-D`. A rule is kept as `-S` prints it, which is also how it is compared: a comment holding
/// anything but letters, digits, `-` and `_` is printed quoted (`xtables_save_string`, iptables 1.8.9
/// libxtables/xtables.c), so the words given and the words printed differ there.
fn iptables(world: &mut SimWorld, a: &[&str]) -> Ran {
    let (table, a) = match a {
        ["-t", table, rest @ ..] => (*table, rest),
        rest => ("filter", rest),
    };
    let (rules, chains): (&mut Vec<String>, &[&str]) = match table {
        "filter" => (&mut world.host.iptables, &["INPUT", "FORWARD", "OUTPUT"]),
        "raw" => (&mut world.host.iptables_raw, &["PREROUTING", "OUTPUT"]),
        other => {
            return fail(
                3,
                format!("iptables v1.8.9 (nf_tables): table '{other}' does not exist\nPerhaps iptables or your kernel needs to be upgraded.\n"),
            )
        }
    };
    match a {
        ["-S"] | ["-S", _] => {
            let chain = a.get(1).copied();
            let mut out = String::new();
            for c in chains.iter().filter(|c| chain.is_none_or(|x| x == **c)) {
                out.push_str(&format!("-P {c} ACCEPT\n"));
                for r in rules.iter().filter(|r| r.starts_with(&format!("-A {c} "))) {
                    out.push_str(r);
                    out.push('\n');
                }
            }
            ok(out, 0)
        }
        [op @ ("-C" | "-I" | "-D"), chain, rule @ ..] => {
            if !chains.contains(chain) {
                return fail(1, "iptables: No chain/target/match by that name.\n");
            }
            let line = format!("-A {chain} {}", saved(rule));
            let at = rules.iter().position(|r| *r == line);
            match (*op, at) {
                ("-C", Some(_)) => ok("", 0),
                ("-C", None) | ("-D", None) => fail(1, BAD_RULE),
                ("-D", Some(i)) => {
                    rules.remove(i);
                    ok("", 0)
                }
                _ => {
                    rules.insert(0, line);
                    ok("", 0)
                }
            }
        }
        _ => fail(
            2,
            "iptables v1.8.9 (nf_tables): unknown arguments (the simulated iptables runs [-t filter|raw] -C, -I, -D and -S)\n",
        ),
    }
}

/// A rule's words as `iptables -S` prints them back.
fn saved(rule: &[&str]) -> String {
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let mut words = Vec::with_capacity(rule.len());
    for (i, w) in rule.iter().enumerate() {
        let comment = i > 0 && rule[i - 1] == "--comment";
        words.push(if comment && !plain(w) { format!("\"{w}\"") } else { (*w).to_owned() });
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_assets_are_recognised() {
        let url = "https://github.com/karmada-io/karmada/releases/download/v1.15.9/karmadactl-linux-amd64.tgz";
        assert_eq!(release_asset(url), Some(("v1.15.9".into(), "amd64".into())));
        assert_eq!(release_asset(&url.replace("v1.15.9", "latest")), None);
        assert_eq!(release_asset(&url.replace("amd64", "s390x")), None);
        assert_eq!(release_asset(&url.replace("v1.15.9", "v1.15.10")), None);
        assert!(release_asset(&url.replace("v1.15.9", "v1.19.0")).is_some());
    }
}
