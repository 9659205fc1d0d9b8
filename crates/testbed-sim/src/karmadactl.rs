//! `karmadactl` on the simulated host: `init`, `deinit`, `join`, `unjoin`, `token create`, `register` and
//! `unregister`, as karmadactl v1.15.9 does them (karmada-io/karmada `pkg/karmadactl`: `cmdinit`, `deinit`,
//! `join`, `unjoin`, `token`, `register`, `unregister`). Each reads the kubeconfigs it is given from the
//! host's files, reaches the clusters they name as the simulated network routes them (and fails as the
//! real one does when nothing answers, or when a kubeconfig's CA is not the server's), and changes the
//! control plane and the `Cluster` objects in the world, which the simulated API servers then serve
//! ([`crate::kube_api`]).
//!
//! Modelled because they break naive automation (real-tools.md, "Behaviours that break naive
//! automation"):
//! - `register` returns once the agent is rolled out; the agent creates its `Cluster` some seconds later
//!   (behaviour 3); its pre-flight failures are printed and it exits 0 (behaviour 4); its endpoint is the
//!   `--kubeconfig`'s server (behaviour 9);
//! - `unregister` deletes `/etc/karmada/pki/ca.crt` on the machine it runs on (behaviour 6);
//! - `deinit` leaves `/var/lib/karmada-etcd`, and an `init` over it brings the old CA and `Cluster`s back
//!   (behaviour 7).
//!
//! Flags are parsed as cobra does: an unknown one is `Error: unknown flag: --X` (exit 1), and the image
//! flags are the ones of the karmadactl release installed (no `--etcd-init-image` from v1.17).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use testbed_kube::ApiConfig;
use testbed_provider::ContainerFacts;

use crate::host_root::under;
use crate::kube_api::{self, Reached};
use crate::microk8s_snap;
use crate::programs::{fail, ok, Ran};
use crate::world::{ClusterPki, ClusterRecord, ControlPlane, KarmadaEtcd, PortHolder, SimWorld, SyncMode};

// Where init keeps etcd's data on the host by default (`--etcd-data`), and deinit leaves it.
use testbed_steps::ETCD_DATA;

/// How long a `register` takes on a real host, most of it the agent's image pull and rollout.
const REGISTER_SECS: u64 = 60;

/// The files `unregister` removes on the machine it runs on, if they are there (paths fixed in karmadactl
/// v1.15.9): the second is the CA `init` wrote, when init's data is in its default place.
const UNREGISTER_REMOVES: [&str; 2] = ["/etc/karmada/karmada-agent.conf", "/etc/karmada/pki/ca.crt"];

/// What a karmadactl call needs to know of the machine besides the world.
pub(crate) struct Env<'a> {
    /// The simulated host's files.
    pub root: &'a Path,
    /// Directories of testbed's own on this host (the kubeconfig directory): seen at their real paths.
    pub own_dirs: Vec<PathBuf>,
    /// The containers as they are now.
    pub containers: Vec<ContainerFacts>,
    /// How long after `register` has returned the agent creates its Cluster, in this world's time.
    pub agent_delay: Duration,
    /// The world's speed: how long a program's real time takes in it.
    pub options: &'a crate::SimOptions,
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

impl Env<'_> {
    /// A host file's content: testbed's own directories at their real path, the rest in the host's tree.
    fn read(&self, path: &str) -> Option<String> {
        let real = Path::new(path);
        let at =
            if self.own_dirs.iter().any(|d| real.starts_with(d)) { real.to_path_buf() } else { under(self.root, path) };
        std::fs::read_to_string(at).ok()
    }
}

/// Whether `image` can be pulled from the local registry: the real one's images when it is real, else
/// the world's. The registry answers under any of the host's names (localhost, the bridge address): the
/// port and the repository are compared.
pub(crate) fn pullable(world: &SimWorld, image: &str) -> bool {
    let key = |reference: &str| {
        let (host, rest) = reference.split_once('/')?;
        Some((host.rsplit_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default(), rest.to_owned()))
    };
    let Some(wanted) = key(image) else { return false };
    match &world.real_registry_images {
        Some(images) => images.iter().any(|i| key(i).as_ref() == Some(&wanted)),
        None => world.registry().is_some_and(|r| {
            let (port, reference) = &wanted;
            let (repository, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
            port == &crate::registry::ADDON_PORT.to_string() && r.has(repository, tag)
        }),
    }
}

/// Whether the control plane's components run: their images can be pulled (a pull that failed is tried
/// again, so images pushed later still bring them up) and cluster DNS resolves etcd for the API server.
pub(crate) fn components_available(world: &SimWorld, cp: &ControlPlane) -> bool {
    let dns = world.host.microk8s.as_ref().is_some_and(|m| m.addons.contains("dns"));
    dns && cp.images.values().all(|i| cp.pulled.contains(i) || pullable(world, i))
}

/// The control plane's images that can be pulled now are pulled (kubelet retries a failed pull): they
/// stay on the host whatever the registry holds later.
pub(crate) fn pull_images(world: &mut SimWorld) {
    let Some(cp) = world.control_plane() else { return };
    let now: Vec<String> =
        cp.images.values().filter(|i| !cp.pulled.contains(*i) && pullable(world, i)).cloned().collect();
    if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
        cp.pulled.extend(now);
    }
}

/// The value of a step of a command, or the command's answer when the step refuses.
macro_rules! attempt {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(refused) => return refused,
        }
    };
}

/// The flags of one call, as cobra parses them (`--flag value` or `--flag=value`; `-f` alone).
struct Flags<'a> {
    /// Every value given to each flag, in order (a string-slice flag takes all of them; others the last).
    values: BTreeMap<&'a str, Vec<String>>,
    switches: BTreeSet<&'a str>,
    positional: Vec<&'a str>,
}

impl Flags<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    /// A string-slice flag's values as cobra's pflag reads them: each occurrence split at commas, appended.
    fn slice(&self, name: &str) -> Vec<String> {
        self.values.get(name).into_iter().flatten().flat_map(|v| v.split(',')).map(str::to_owned).collect()
    }
}

fn unknown_flag(flag: &str) -> Ran {
    fail(1, format!("Error: unknown flag: {flag}\n"))
}

/// Parses `args` with the flags that take a value (`valued`) and those that do not (`switches`).
fn parse<'a>(args: &[&'a str], valued: &[&'a str], switches: &[&'a str]) -> Result<Flags<'a>, Ran> {
    let mut out = Flags { values: BTreeMap::new(), switches: BTreeSet::new(), positional: Vec::new() };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        if !arg.starts_with('-') {
            out.positional.push(arg);
            i += 1;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        if let Some(flag) = switches.iter().find(|s| **s == name) {
            out.switches.insert(flag);
            i += 1;
            continue;
        }
        let Some(flag) = valued.iter().find(|v| **v == name) else { return Err(unknown_flag(name)) };
        let value = match inline {
            Some(v) => v.to_owned(),
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) => (*v).to_owned(),
                    None => return Err(fail(1, format!("Error: flag needs an argument: {name}\n"))),
                }
            }
        };
        out.values.entry(flag).or_default().push(value);
        i += 1;
    }
    Ok(out)
}

/// The installed karmadactl's release (`v1.15.9`), from its program file.
fn installed_version(root: &Path) -> Option<String> {
    let bytes = crate::programs::SEARCH_PATH
        .iter()
        .map(|d| under(root, &format!("{d}/karmadactl")))
        .find_map(|p| std::fs::read(p).ok())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let detail = text.split("simulated program karmadactl ").nth(1)?;
    detail.split_whitespace().next().map(str::to_owned)
}

/// `(minor)` of `v1.MINOR.PATCH`.
fn minor(version: &str) -> Option<u32> {
    version.strip_prefix("v1.")?.split('.').next()?.parse().ok()
}

/// The resource a call changes, as the catalogue uses it: what `TESTBED_SIM_FAIL=ADDRESS` fails (once).
fn changes(world: &SimWorld, a: &[&str]) -> Option<String> {
    match a {
        ["init" | "deinit", ..] => world.fail_once.iter().find(|f| f.starts_with("karmada.")).cloned(),
        ["join" | "unjoin" | "register" | "unregister", rest @ ..] => {
            let name = match a.first() {
                Some(&"register") => rest.windows(2).find(|w| w[0] == "--cluster-name").map(|w| w[1]),
                _ => rest.iter().find(|r| !r.starts_with('-')).copied(),
            }?;
            Some(format!("karmada_member.{name}"))
        }
        _ => None,
    }
}

pub(crate) fn run(world: &mut SimWorld, env: &Env<'_>, a: &[&str]) -> Ran {
    if let Some(address) = changes(world, a) {
        if world.fail_once.contains(&address) && world.consumed_failures.insert(address.clone()) {
            return fail(1, format!("error: simulated failure injected by TESTBED_SIM_FAIL ({address})\n"));
        }
    }
    let version = installed_version(env.root).unwrap_or_else(|| "v1.15.9".into());
    match a {
        ["init", rest @ ..] => init(world, env, &version, rest),
        ["deinit", rest @ ..] => deinit(world, env, rest),
        ["join", rest @ ..] => join(world, env, rest),
        ["unjoin", rest @ ..] => unjoin(world, env, rest),
        ["token", "create", rest @ ..] => token_create(world, env, rest),
        ["register", rest @ ..] => register(world, env, rest),
        ["unregister", rest @ ..] => unregister(world, env, rest),
        [other, ..] => fail(
            1,
            format!("Error: unknown command \"{other}\" for \"karmadactl\"\nRun 'karmadactl --help' for usage.\n"),
        ),
        [] => ok("karmadactl controls a Kubernetes Cluster Federation.\n", 0),
    }
}

// -------------------------------------------------------------------------------------------------
// Reaching the clusters a kubeconfig names
// -------------------------------------------------------------------------------------------------

/// A kubeconfig read from the host, parsed.
fn kubeconfig(env: &Env<'_>, path: Option<&str>, flag: &str) -> Result<ApiConfig, Ran> {
    let Some(path) = path else {
        return Err(fail(1, format!("Error: {flag} is required\n")));
    };
    // karmada v1.15.9 util/apiclient: what client-go says of a kubeconfig it cannot load.
    let text = env.read(path).ok_or_else(|| {
        fail(1, "error: Missing or incomplete configuration info.  Please point to an existing, complete config file:\n  1. Via the command-line flag --kubeconfig\n  2. Via the KUBECONFIG environment variable\n  3. In your home directory as ~/.kube/config\n")
    })?;
    ApiConfig::from_kubeconfig_yaml(&text, None)
        .map_err(|e| fail(1, format!("error: failed to load kubeconfig {path}: {e}\n")))
}

/// `host:port` of a server URL.
fn host_port(server: &str) -> Option<(String, u16)> {
    let rest = server.split_once("://").map(|(_, r)| r).unwrap_or(server);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

/// The cluster a kubeconfig's server reaches, checked as a client checks it: something answers, and its
/// certificate is signed by the kubeconfig's CA.
fn reach(world: &SimWorld, env: &Env<'_>, config: &ApiConfig) -> Result<Reached, Ran> {
    let Some((host, port)) = host_port(&config.server) else {
        return Err(fail(1, format!("error: invalid server URL {:?} in the kubeconfig\n", config.server)));
    };
    let Some(reached) = kube_api::reached(world, &env.containers, &host, port) else {
        return Err(fail(
            1,
            format!(
                "error: Get \"{}/api?timeout=32s\": dial tcp {host}:{port}: connect: connection refused\n",
                config.server
            ),
        ));
    };
    let ca = kube_api::ca_of(world, &reached);
    if ca.is_some() && config.ca_pem.as_deref() != ca.as_deref() {
        return Err(fail(
            1,
            format!(
                "error: Get \"{}/api?timeout=32s\": tls: failed to verify certificate: x509: certificate signed by unknown authority\n",
                config.server
            ),
        ));
    }
    Ok(reached)
}

/// The Karmada API a kubeconfig names, answering.
fn reach_karmada(world: &SimWorld, env: &Env<'_>, config: &ApiConfig) -> Result<(), Ran> {
    match reach(world, env, config)? {
        Reached::Karmada => Ok(()),
        _ => Err(fail(
            1,
            format!("error: the server {} has no resource type \"clusters\" in group cluster.karmada.io: it is not a Karmada API server\n", config.server),
        )),
    }
}

/// The member cluster a kubeconfig names, answering.
fn reach_member(world: &SimWorld, env: &Env<'_>, config: &ApiConfig) -> Result<String, Ran> {
    match reach(world, env, config)? {
        Reached::Member(m) => Ok(m),
        Reached::Host => Ok(String::new()),
        Reached::Karmada => Err(fail(1, "error: the cluster kubeconfig names the Karmada API server itself\n")),
    }
}

fn control_plane_mut(world: &mut SimWorld) -> Option<&mut ControlPlane> {
    world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut())
}

// -------------------------------------------------------------------------------------------------
// init and deinit
// -------------------------------------------------------------------------------------------------

/// init's image flags, with the Deployment (or StatefulSet) each one sets, for a karmadactl `version`.
fn image_flags(version: &str) -> Vec<(&'static str, &'static str)> {
    let mut flags = vec![
        ("--karmada-apiserver-image", "karmada-apiserver"),
        ("--karmada-aggregated-apiserver-image", "karmada-aggregated-apiserver"),
        ("--karmada-controller-manager-image", "karmada-controller-manager"),
        ("--karmada-scheduler-image", "karmada-scheduler"),
        ("--karmada-webhook-image", "karmada-webhook"),
        ("--karmada-kube-controller-manager-image", "kube-controller-manager"),
        ("--etcd-image", "etcd"),
    ];
    // v1.16 dropped etcd's init container (its flag is accepted, with cobra's deprecation warning, and
    // ignored); v1.17 removed the flag.
    if minor(version).is_some_and(|m| m < 17) {
        flags.push(("--etcd-init-image", "etcd-init"));
    }
    flags
}

/// Whether init at `version` runs etcd with an init container (the alpine image): before v1.16.
fn has_etcd_init_container(version: &str) -> bool {
    minor(version).is_some_and(|m| m < 16)
}

/// cobra's warning for `--etcd-init-image` at v1.16 (karmada v1.16.0 cmdinit.go `MarkDeprecated`).
const ETCD_INIT_DEPRECATED: &str = "Flag --etcd-init-image has been deprecated, The etcd init container is no longer used; this flag is therefore ineffective and will be removed in a future release.\n";

/// init's `--<component>-extra-args` flags, from v1.16 (karmada v1.16.0 cmdinit.go).
fn extra_args_flags(version: &str) -> &'static [&'static str] {
    if minor(version).is_some_and(|m| m >= 16) {
        &[
            "--etcd-extra-args",
            "--karmada-apiserver-extra-args",
            "--karmada-aggregated-apiserver-extra-args",
            "--karmada-controller-manager-extra-args",
            "--karmada-kube-controller-manager-extra-args",
            "--karmada-scheduler-extra-args",
            "--karmada-webhook-extra-args",
        ]
    } else {
        &[]
    }
}

/// karmada-controller-manager's container command as the control plane runs it.
pub(crate) fn controller_manager_command(cp: &ControlPlane) -> Vec<String> {
    if cp.controller_manager_command.is_empty() {
        // The release init ran, by its own image's tag.
        let image = cp.images.get("karmada-controller-manager").map(String::as_str).unwrap_or("");
        let version = image.rsplit_once(':').map_or("v1.15.9", |(_, tag)| tag);
        return default_controller_manager_command(version);
    }
    cp.controller_manager_command.clone()
}

/// karmada-controller-manager's container command as init writes it, before extra args (karmada
/// `cmdinit/kubernetes` deployments.go at v1.15.9, command.go from v1.16; `--v=4` became `--v=2` in v1.18).
pub fn default_controller_manager_command(version: &str) -> Vec<String> {
    let verbosity = if minor(version).is_some_and(|m| m >= 18) { "--v=2" } else { "--v=4" };
    [
        "/bin/karmada-controller-manager",
        "--kubeconfig=/etc/karmada/config/karmada.config",
        "--metrics-bind-address=$(POD_IP):8080",
        "--health-probe-bind-address=$(POD_IP):10357",
        "--cluster-status-update-frequency=10s",
        "--leader-elect-resource-namespace=karmada-system",
        verbosity,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// init's check of a `--*-extra-args` list (karmada `cmdinit/utils` `ValidateExtraArgs`): pflag split the
/// values at commas, so a piece that does not start with `--` belongs to the one before it and is joined
/// back with a comma; then each must be `--NAME[=VALUE]`.
fn extra_args(flag: &str, pieces: Vec<String>) -> Result<Vec<String>, Ran> {
    let mut out: Vec<String> = Vec::new();
    for piece in pieces {
        match out.last_mut() {
            Some(last) if !piece.starts_with("--") => {
                last.push(',');
                last.push_str(&piece);
            }
            _ => out.push(piece),
        }
    }
    for arg in &out {
        let name = arg.strip_prefix("--").map(|a| a.split_once('=').map_or(a, |(n, _)| n)).unwrap_or("");
        let well_formed = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && arg.trim() == arg;
        if !well_formed {
            return Err(fail(
                1,
                format!("error: invalid {flag} value {arg:?}: extra args must be in the form --key=value\n"),
            ));
        }
    }
    Ok(out)
}

/// init's merge of a component's default command with its extra args (karmada `cmdinit/utils`
/// `MergeCommandArgs`): an extra arg replaces the default one with the same `--key`; new keys are appended.
fn merge_command(defaults: Vec<String>, extra: &[String]) -> Vec<String> {
    let key = |a: &str| a.split_once('=').map_or(a, |(k, _)| k).to_owned();
    let mut out = defaults;
    for arg in extra {
        match out.iter_mut().find(|d| key(d) == key(arg)) {
            Some(d) => *d = arg.clone(),
            None => out.push(arg.clone()),
        }
    }
    out
}

/// The image init uses for `component` when no flag names one: its own release's defaults, from
/// `registry` (`cmdinit/kubernetes/deploy.go` `defaultEtcdImage`, `DefaultInitImage` and cmdinit.go's
/// `--kube-image-tag` default at each minor's latest release; docs/karmada-versions.md).
fn default_image(registry: &str, component: &str, version: &str) -> String {
    let registry = registry.trim_end_matches('/');
    let (kube, etcd) = match minor(version) {
        Some(16) => ("v1.34.1", "3.6.0-0"),
        Some(17 | 18) => ("v1.35.2", "3.6.6-0"),
        Some(m) if m >= 19 => ("v1.36.2", "3.6.8-0"),
        _ => ("v1.31.3", "3.5.16-0"),
    };
    match component {
        "karmada-apiserver" => format!("{registry}/kube-apiserver:{kube}"),
        "kube-controller-manager" => format!("{registry}/kube-controller-manager:{kube}"),
        "etcd" => format!("{registry}/etcd:{etcd}"),
        "etcd-init" => format!("{registry}/alpine:3.21.3"),
        other => format!("{registry}/{other}:{version}"),
    }
}

fn init(world: &mut SimWorld, env: &Env<'_>, version: &str, args: &[&str]) -> Ran {
    let images = image_flags(version);
    let mut valued = vec![
        "--kubeconfig",
        "--context",
        "--private-image-registry",
        "--port",
        "--karmada-data",
        "--karmada-pki",
        "--karmada-apiserver-advertise-address",
        "--cert-external-ip",
        "--cert-external-dns",
        "--wait-component-ready-timeout",
        "--crds",
        "--etcd-data",
        "--etcd-storage-mode",
    ];
    valued.extend(images.iter().map(|(flag, _)| *flag));
    valued.extend(extra_args_flags(version));
    let flags = attempt!(parse(args, &valued, &[]));
    let controller_manager_extra = if extra_args_flags(version).is_empty() {
        Vec::new()
    } else {
        let flag = "--karmada-controller-manager-extra-args";
        attempt!(extra_args(flag, flags.slice(flag)))
    };
    let host = attempt!(kubeconfig(env, flags.get("--kubeconfig"), "--kubeconfig"));
    match reach(world, env, &host) {
        Ok(Reached::Host) => {}
        Ok(_) => {
            return fail(1, "error: init installs Karmada into the host cluster, and --kubeconfig names another\n")
        }
        Err(refused) => return refused,
    }
    let port: u16 = match flags.get("--port").unwrap_or("32443").parse() {
        Ok(p) => p,
        Err(_) => {
            return fail(1, "Error: invalid argument for \"--port\" flag: strconv.ParseInt: parsing: invalid syntax\n")
        }
    };
    // No check of the namespace: the node port is what stops a second init (cmdinit.go), before the data
    // directory is wiped.
    if world.control_plane().is_some_and(|cp| cp.api_port == port) {
        return fail(1, format!("error: nodePort of karmada apiserver {port} already exist\n"));
    }
    if let Some(holder) = world.port_holder(port, Some(&PortHolder::KarmadaApi)) {
        return fail(
            1,
            format!("error: Service \"karmada-apiserver\" is invalid: spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated ({holder})\n"),
        );
    }
    // The CRDs (karmada v1.15.9 cmdinit: `--crds` defaults to the release's crds.tar.gz URL, which init
    // downloads into its data directory at every init; a local path is read instead).
    let default_crds = format!("https://github.com/karmada-io/karmada/releases/download/{version}/crds.tar.gz");
    let crds = flags.get("--crds").map(str::to_owned).unwrap_or(default_crds);
    if crds.starts_with("https://") || crds.starts_with("http://") {
        if crate::programs::crd_archive(&crds).is_none() {
            return fail(1, format!("error: failed to download {crds}: 404 Not Found\n"));
        }
        *world.host.downloads.entry(crds).or_default() += 1;
    } else if !under(env.root, &crds).is_file() {
        return fail(1, format!("error: open {crds}: no such file or directory\n"));
    }
    let registry = flags.get("--private-image-registry").unwrap_or("docker.io/karmada");
    let data_dir = flags.get("--karmada-data").unwrap_or("/etc/karmada").trim_end_matches('/').to_owned();
    let pki_dir = flags.get("--karmada-pki").map(str::to_owned).unwrap_or_else(|| format!("{data_dir}/pki"));
    let advertise = flags.get("--karmada-apiserver-advertise-address").unwrap_or("127.0.0.1").to_owned();
    let wait: u64 = flags.get("--wait-component-ready-timeout").and_then(|t| t.parse().ok()).unwrap_or(120);
    let component_images: BTreeMap<String, String> = images
        .iter()
        .filter(|(_, component)| *component != "etcd-init" || has_etcd_init_container(version))
        .map(|(flag, component)| {
            let image =
                flags.get(flag).map(str::to_owned).unwrap_or_else(|| default_image(registry, component, version));
            ((*component).to_owned(), image)
        })
        .collect();

    // etcd's data on the host: what a deinit left there comes back.
    let etcd_dir = under(env.root, flags.get("--etcd-data").unwrap_or(ETCD_DATA));
    let etcd = match world.host.karmada_etcd.take().filter(|_| etcd_dir.is_dir()) {
        Some(old) => old,
        None => KarmadaEtcd {
            pki: ClusterPki::generate(),
            tokens: BTreeSet::new(),
            clusters: BTreeMap::new(),
            taint_policies: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            objects: BTreeMap::new(),
        },
    };
    let _ = std::fs::create_dir_all(&etcd_dir);
    let missing: Vec<String> = component_images.values().filter(|i| !pullable(world, i)).cloned().collect();
    let dns = world.host.microk8s.as_ref().is_some_and(|m| m.addons.contains("dns"));
    let server = format!("https://{advertise}:{port}");
    let written = write_files(env.root, &data_dir, &pki_dir, &etcd.pki, &server);
    if let Some(m) = world.host.microk8s.as_mut() {
        // A namespace an earlier deinit left is updated, with its labels.
        let namespace_labels = m.karmada_namespace.take().unwrap_or_default();
        m.karmada = Some(ControlPlane {
            images: component_images.clone(),
            api_port: port,
            data_dir: data_dir.clone(),
            advertise_address: advertise.clone(),
            namespace_labels,
            pulled: BTreeSet::new(),
            etcd,
            controller_manager_command: merge_command(
                default_controller_manager_command(version),
                &controller_manager_extra,
            ),
        });
    }
    pull_images(world);
    if let Err(e) = written {
        return fail(
            1,
            format!("error: failed to write the Karmada certificates and kubeconfig under {data_dir}: {e}\n"),
        );
    }
    if !dns {
        return Ran {
            out: testbed_command::Output::failed(
                1,
                format!("I1201 wait.go] Waiting for karmada-apiserver to be ready\nerror: init karmada-apiserver: wait for the pods of karmada-apiserver to be ready timed out after {wait}s: the pods are crash-looping: lookup etcd-client.karmada-system.svc.cluster.local: no such host\n"),
            ),
            took: Duration::from_secs(wait + 30),
        };
    }
    if let Some(image) = missing.first() {
        return Ran {
            out: testbed_command::Output::failed(
                1,
                format!("error: wait for the pods of the Karmada components to be ready timed out after {wait}s: Back-off pulling image \"{image}\": not found\n"),
            ),
            took: Duration::from_secs(wait + 30),
        };
    }
    let mut ran = ok(
        format!(
            "I1201 deploy.go] kubeconfig file: {}, kubernetes: {}\nI1201 deploy.go] karmada apiserver ip: [{advertise}]\nI1201 deploy.go] Generate ca certificate success.\nI1201 deploy.go] Generate karmada certificate success.\n------------------------------------------------------------------------------------------------------\n █████   ████   █████████   ███████████   ██████   ██████   █████████   ██████████     █████████\n------------------------------------------------------------------------------------------------------\nKarmada is installed successfully.\n\nRegister Kubernetes cluster to Karmada control plane.\n\nRegister cluster with 'Push' mode\n\n  kubectl karmada join <CLUSTER_NAME> --kubeconfig={data_dir}/karmada-apiserver.config --cluster-kubeconfig=<CLUSTER_KUBECONFIG>\n",
            flags.get("--kubeconfig").unwrap_or_default(),
            host.server
        ),
        120,
    );
    if flags.get("--etcd-init-image").is_some() && !has_etcd_init_container(version) {
        ran.out.stderr.insert_str(0, ETCD_INIT_DEPRECATED);
    }
    ran
}

/// The files init writes: the CA and the Karmada kubeconfig (credentials: 0600).
fn write_files(root: &Path, data_dir: &str, pki_dir: &str, pki: &ClusterPki, server: &str) -> std::io::Result<()> {
    use crate::host_root::write;
    use std::os::unix::fs::PermissionsExt;
    // cmdinit.go initializeDirectory: the data directory is removed and made again (0700).
    let dir = under(root, data_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    write(root, &format!("{pki_dir}/ca.crt"), pki.ca_pem.as_bytes(), 0o644)?;
    write(root, &format!("{pki_dir}/ca.key"), pki.ca_key_pem.as_bytes(), 0o600)?;
    let config = microk8s_snap::kubeconfig_text(
        pki,
        server,
        "karmada-apiserver",
        "karmada-admin",
        "karmada-admin@karmada-apiserver",
    );
    write(root, &format!("{data_dir}/karmada-apiserver.config"), config.as_bytes(), 0o600)
}

fn deinit(world: &mut SimWorld, env: &Env<'_>, args: &[&str]) -> Ran {
    let flags =
        attempt!(parse(args, &["--kubeconfig", "--context", "--namespace"], &["-f", "--force", "--purge-namespace"]));
    if !flags.switches.contains("-f") && !flags.switches.contains("--force") {
        // No one answers the prompt on stdin.
        return fail(
            1,
            "removes Karmada from Kubernetes\nPlease type (y)es or (n)o and then press enter:\nerror: EOF\n",
        );
    }
    let host = attempt!(kubeconfig(env, flags.get("--kubeconfig"), "--kubeconfig"));
    attempt!(reach(world, env, &host));
    let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.take()) else {
        return fail(1, "Error from server (NotFound): namespaces \"karmada-system\" not found\n");
    };
    // karmada v1.15.9 deinit.go: only the bootstrapping-labelled objects go (without --purge-namespace the
    // namespace stays, and with it its labels); etcd's data stays where init put it, and so do the files
    // init wrote.
    let namespace = (!flags.switches.contains("--purge-namespace")).then(|| cp.namespace_labels.clone());
    world.host.karmada_etcd = Some(cp.etcd);
    if let (Some(labels), Some(m)) = (namespace, world.host.microk8s.as_mut()) {
        m.karmada_namespace = Some(labels);
    }
    ok(
        "removes Karmada from Kubernetes\ndelete deployment \"karmada-apiserver\"\ndelete StatefulSet: \"etcd\"\ndelete Service \"karmada-apiserver\"\nremove Karmada from Kubernetes successfully.\n\ndeinit will not delete etcd data, if the etcd data is persistent, please delete it yourself.\nthe default persistence path for etcd data is '/var/lib/karmada-etcd'\n",
        30,
    )
}

// -------------------------------------------------------------------------------------------------
// Push mode: join and unjoin
// -------------------------------------------------------------------------------------------------

fn join(world: &mut SimWorld, env: &Env<'_>, args: &[&str]) -> Ran {
    let flags = attempt!(parse(
        args,
        &[
            "--kubeconfig",
            "--karmada-context",
            "--cluster-kubeconfig",
            "--cluster-context",
            "--cluster-namespace",
            "--cluster-provider",
            "--cluster-region",
            "--cluster-zone",
        ],
        &["--dry-run"],
    ));
    let [name] = flags.positional.as_slice() else {
        return fail(1, "error: the cluster name is required: karmadactl join CLUSTER_NAME --cluster-kubeconfig=...\n");
    };
    let karmada = attempt!(kubeconfig(env, flags.get("--kubeconfig"), "--kubeconfig"));
    attempt!(reach_karmada(world, env, &karmada));
    let cluster = attempt!(kubeconfig(env, flags.get("--cluster-kubeconfig"), "--cluster-kubeconfig"));
    let member = attempt!(reach_member(world, env, &cluster));
    let id = cluster_id(world, &member);
    let Some(cp) = control_plane_mut(world) else { return fail(1, "error: the Karmada API server went away\n") };
    // karmada v1.15.9 pkg/util/cluster.go: name and kube-system UID are checked together.
    if cp.etcd.clusters.iter().any(|(n, c)| n == name || c.id == id) {
        return fail(1, format!("error: the cluster ID {id} or the cluster name {name} has been registered\n"));
    }
    cp.etcd.clusters.insert(
        (*name).to_owned(),
        ClusterRecord {
            sync_mode: SyncMode::Push,
            api_endpoint: Some(cluster.server.clone()),
            id,
            labels: BTreeMap::new(),
            appears_at_ms: None,
            taints: Vec::new(),
        },
    );
    ok(format!("cluster({name}) is joined successfully\n"), 10)
}

/// The kube-system UID of a member's cluster (what Karmada's `spec.id` holds).
fn cluster_id(world: &SimWorld, member: &str) -> String {
    world
        .inside
        .get(member)
        .and_then(|i| i.microk8s.as_ref())
        .map(|m| m.cluster_id.clone())
        .unwrap_or_else(|| format!("host-{member}"))
}

fn unjoin(world: &mut SimWorld, env: &Env<'_>, args: &[&str]) -> Ran {
    let valued = [
        "--kubeconfig",
        "--karmada-context",
        "--cluster-kubeconfig",
        "--cluster-context",
        "--cluster-namespace",
        "--wait",
    ];
    let (flags, name) = attempt!(removal(world, env, args, &valued, "--kubeconfig", "unjoin"));
    let name = name.as_str();
    // Without --force, the member's side is cleaned up too, so the member must answer.
    if !flags.switches.contains("--force") {
        let cluster = attempt!(kubeconfig(env, flags.get("--cluster-kubeconfig"), "--cluster-kubeconfig"));
        attempt!(reach_member(world, env, &cluster));
    }
    let Some(cp) = control_plane_mut(world) else { return fail(1, "error: the Karmada API server went away\n") };
    match cp.etcd.clusters.get(name).map(|c| c.sync_mode) {
        None => return fail(1, format!("error: no cluster object {name} found in karmada control Plane\n")),
        Some(SyncMode::Pull) => {
            return fail(1, format!("error: cluster {name} is a Pull mode member cluster, please use command `unregister` if you want to continue unregistering the cluster\n"))
        }
        Some(SyncMode::Push) => {}
    }
    cp.etcd.clusters.remove(name);
    // A successful unjoin prints nothing but its wait.
    ok(format!("Waiting for the cluster object {name} to be deleted\n"), 5)
}

/// How unjoin and unregister start: their flags, the cluster's name, and the Karmada API (the kubeconfig
/// `karmada_flag` names) answering.
fn removal<'a>(
    world: &SimWorld,
    env: &Env<'_>,
    args: &[&'a str],
    valued: &[&'a str],
    karmada_flag: &str,
    verb: &str,
) -> Result<(Flags<'a>, String), Ran> {
    let flags = parse(args, valued, &["--force", "--dry-run"])?;
    let [name] = flags.positional.as_slice() else {
        return Err(fail(1, format!("error: the cluster name is required: karmadactl {verb} CLUSTER_NAME\n")));
    };
    let name = (*name).to_owned();
    let karmada = kubeconfig(env, flags.get(karmada_flag), karmada_flag)?;
    reach_karmada(world, env, &karmada)?;
    Ok((flags, name))
}

// -------------------------------------------------------------------------------------------------
// Pull mode: token create, register and unregister
// -------------------------------------------------------------------------------------------------

/// The CA pin `token create` prints and `register` checks: the SHA-256 of the CA certificate (kubeadm
/// pins its public key; the simulation pins the whole certificate, which serves the same purpose here).
fn ca_hash(pki: &ClusterPki) -> String {
    let digest = Sha256::digest(pki.ca_pem.as_bytes());
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A new bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
fn new_token(seed: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let digest = Sha256::digest(seed.as_bytes());
    let chars: String = digest.iter().take(22).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    format!("{}.{}", &chars[..6], &chars[6..22])
}

fn token_create(world: &mut SimWorld, env: &Env<'_>, args: &[&str]) -> Ran {
    let flags = attempt!(parse(
        args,
        &["--kubeconfig", "--karmada-context", "--ttl", "--description"],
        &["--print-register-command"],
    ));
    let karmada = attempt!(kubeconfig(env, flags.get("--kubeconfig"), "--kubeconfig"));
    attempt!(reach_karmada(world, env, &karmada));
    let Some(cp) = control_plane_mut(world) else { return fail(1, "error: the Karmada API server went away\n") };
    let token = new_token(&format!("{}{}{}", env.now_ms, cp.etcd.tokens.len(), cp.etcd.pki.ca_pem));
    cp.etcd.tokens.insert(token.clone());
    if !flags.switches.contains("--print-register-command") {
        return ok(format!("{token}\n"), 1);
    }
    let endpoint = karmada.server.trim_start_matches("https://").trim_end_matches('/').to_owned();
    ok(
        format!(
            "karmadactl register {endpoint} --token {token} --discovery-token-ca-cert-hash {}\n",
            ca_hash(&cp.etcd.pki)
        ),
        1,
    )
}

fn register(world: &mut SimWorld, env: &Env<'_>, args: &[&str]) -> Ran {
    let flags = attempt!(parse(
        args,
        &[
            "--token",
            "--discovery-token-ca-cert-hash",
            "--kubeconfig",
            "--context",
            "--cluster-name",
            "--karmada-agent-image",
            "--namespace",
            "--discovery-timeout",
            "--cluster-provider",
            "--cluster-region",
            "--cluster-zone",
        ],
        &["--discovery-token-unsafe-skip-ca-verification", "--dry-run"],
    ));
    let [endpoint] = flags.positional.as_slice() else {
        return fail(1, "error: the Karmada API server's endpoint is required: karmadactl register ENDPOINT\n");
    };
    let discovery =
        flags.get("--discovery-timeout").and_then(|t| t.trim_end_matches('s').parse().ok()).unwrap_or(300u64);
    let timed_out =
        |what: String| Ran { out: testbed_command::Output::failed(1, what), took: Duration::from_secs(discovery) };
    // Discovery: the endpoint must be this Karmada's API server, and the token one it made.
    let Some((host, port)) = host_port(endpoint) else {
        return fail(1, format!("error: invalid endpoint {endpoint:?}\n"));
    };
    if kube_api::reached(world, &env.containers, &host, port) != Some(Reached::Karmada) {
        return timed_out(format!("error: couldn't validate the identity of the API Server: Get \"https://{endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": dial tcp {endpoint}: connect: connection refused\n"));
    }
    let Some(cp) = world.control_plane() else { return fail(1, "error: the Karmada API server went away\n") };
    let token = flags.get("--token").unwrap_or_default();
    if !cp.etcd.tokens.contains(token) {
        let id = token.split('.').next().unwrap_or_default();
        return timed_out(format!("error: couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: the JWS signature for token ID \"{id}\" was not found in the cluster-info ConfigMap\n"));
    }
    let pin = flags.get("--discovery-token-ca-cert-hash").unwrap_or_default();
    if pin != ca_hash(&cp.etcd.pki) {
        return fail(1, format!("error: couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{}\" are pinned\n", ca_hash(&cp.etcd.pki)));
    }
    let cluster = attempt!(kubeconfig(env, flags.get("--kubeconfig"), "--kubeconfig"));
    let member = attempt!(reach_member(world, env, &cluster));
    let name = flags.get("--cluster-name").map(str::to_owned).unwrap_or_else(|| member.clone());
    // Pre-flight (karmada v1.15.9 register.go preflight): an agent of an earlier registration. The errors
    // are printed, and register returns nil: exit 0 (behaviour 4).
    let has_agent = world.inside.get(&member).and_then(|i| i.microk8s.as_ref()).is_some_and(|m| m.karmada_agent);
    if has_agent {
        return ok(
            "[preflight] Running pre-flight checks\nerror execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR]: karmada-system/karmada-kubeconfig Secret already exists\n\t[ERROR]: karmada-system/karmada-agent-sa ServiceAccount already exists\n\t[ERROR]: karmada-system/karmada-agent Deployment already exists\n\n[preflight] Please check the above errors\n",
            2,
        );
    }
    let image = flags
        .get("--karmada-agent-image")
        .map(str::to_owned)
        .unwrap_or_else(|| "docker.io/karmada/karmada-agent:v1.15.9".into());
    if !pullable(world, &image) {
        return timed_out(format!("[karmada-agent-start] Waiting the necessary secret and RBAC\n[karmada-agent-start] Waiting karmada-agent Deployment\nerror: karmada-agent is not ready: timed out waiting for the condition (Back-off pulling image \"{image}\")\n"));
    }
    let id = cluster_id(world, &member);
    // register returns once the agent's Deployment is rolled out (its own time, below); the agent then
    // starts and creates the Cluster.
    let took = Duration::from_secs(REGISTER_SECS);
    let later = env.options.scaled(took) + env.agent_delay;
    let appears = env.now_ms.saturating_add(u64::try_from(later.as_millis()).unwrap_or(u64::MAX));
    if world.control_plane().is_some_and(|cp| cp.etcd.clusters.contains_key(&name)) {
        return fail(1, format!("[preflight] Running pre-flight checks\n[preflight] All pre-flight checks were passed\n[karmada-agent-start] Waiting to perform the TLS Bootstrap\n[karmada-agent-start] Waiting to check cluster exists\nkarmadactl register failed and started deleting the created resources\nerror: failed to register as cluster with name {name} already exists\n"));
    }
    if let Some(m) = world.inside.get_mut(&member).and_then(|i| i.microk8s.as_mut()) {
        m.karmada_agent = true;
    }
    if let Some(cp) = control_plane_mut(world) {
        // The agent creates its Cluster itself, later (behaviour 3).
        cp.etcd.clusters.entry(name.clone()).or_insert(ClusterRecord {
            sync_mode: SyncMode::Pull,
            api_endpoint: Some(cluster.server.clone()),
            id,
            labels: BTreeMap::new(),
            appears_at_ms: Some(appears),
            taints: Vec::new(),
        });
    }
    ok(
        format!("[preflight] Running pre-flight checks\n[preflight] All pre-flight checks were passed\n[karmada-agent-start] Waiting to perform the TLS Bootstrap\n[karmada-agent-start] Waiting to check cluster exists\n[karmada-agent-start] Assign the necessary RBAC permissions to the agent\n[karmada-agent-start] Waiting to construct karmada-agent kubeconfig\n[karmada-agent-start] Waiting the necessary secret and RBAC\n[karmada-agent-start] Waiting karmada-agent Deployment\n\ncluster({name}) is joined successfully\n"),
        REGISTER_SECS,
    )
}

fn unregister(world: &mut SimWorld, env: &Env<'_>, args: &[&str]) -> Ran {
    let valued =
        ["--cluster-kubeconfig", "--cluster-context", "--karmada-config", "--karmada-context", "--namespace", "--wait"];
    let (flags, name) = attempt!(removal(world, env, args, &valued, "--karmada-config", "unregister"));
    let name = name.as_str();
    if flags.get("--cluster-kubeconfig").is_none() {
        return fail(1, "error: --cluster-kubeconfig is required to specify KUBECONFIG file path to access unregistering member cluster\n");
    }
    let cluster = attempt!(kubeconfig(env, flags.get("--cluster-kubeconfig"), "--cluster-kubeconfig"));
    let member = attempt!(reach_member(world, env, &cluster));
    let Some(cp) = control_plane_mut(world) else { return fail(1, "error: the Karmada API server went away\n") };
    match cp.etcd.clusters.get(name).map(|c| c.sync_mode) {
        None => return fail(1, format!("error: no cluster object {name} found in karmada control Plane\n")),
        Some(SyncMode::Push) => {
            return fail(1, format!("error: cluster {name} is a Push mode member cluster, please use command `unjoin` if you want to continue unregistering the cluster\n"))
        }
        Some(SyncMode::Pull) => {}
    }
    cp.etcd.clusters.remove(name);
    if let Some(m) = world.inside.get_mut(&member).and_then(|i| i.microk8s.as_mut()) {
        m.karmada_agent = false;
    }
    // karmada v1.15.9 pkg/karmadactl/unregister: the agent's CA file is removed from the machine that
    // runs the command, at a fixed path (behaviour 6).
    let mut removed = String::new();
    for file in UNREGISTER_REMOVES {
        if std::fs::remove_file(under(env.root, file)).is_ok() {
            removed.push_str(&format!("Successfully delete local file ({file}) in current node.\n"));
        }
    }
    ok(format!("Successfully delete resource (Deployment karmada-agent karmada-system) from member cluster ({name}).\nSuccessfully delete cluster object ({name}) from control plane.\n{removed}"), 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_cobra_does() {
        let f =
            parse(&["m1", "--kubeconfig=/a", "--wait", "60s", "--force"], &["--kubeconfig", "--wait"], &["--force"])
                .unwrap_or_else(|_| panic!("parses"));
        assert_eq!(f.positional, ["m1"]);
        assert_eq!(f.get("--kubeconfig"), Some("/a"));
        assert_eq!(f.get("--wait"), Some("60s"));
        assert!(f.switches.contains("--force"));
        let refused = parse(&["--etcd-init-image", "x"], &["--kubeconfig"], &[]).err().map(|r| r.out.stderr);
        assert_eq!(refused.as_deref(), Some("Error: unknown flag: --etcd-init-image\n"));
    }

    #[test]
    fn init_defaults_and_flags_follow_the_release() {
        assert!(has_etcd_init_container("v1.15.9") && !has_etcd_init_container("v1.16.8"));
        assert_eq!(default_image("r", "etcd", "v1.16.8"), "r/etcd:3.6.0-0");
        assert_eq!(default_image("r", "karmada-apiserver", "v1.18.2"), "r/kube-apiserver:v1.35.2");
        assert_eq!(default_image("r", "kube-controller-manager", "v1.19.0"), "r/kube-controller-manager:v1.36.2");
        assert!(extra_args_flags("v1.15.9").is_empty());
        assert!(extra_args_flags("v1.16.0").contains(&"--karmada-controller-manager-extra-args"));
    }

    #[test]
    fn the_etcd_init_image_flag_is_gone_from_v1_17() {
        assert!(image_flags("v1.16.3").iter().any(|(f, _)| *f == "--etcd-init-image"));
        assert!(!image_flags("v1.17.0").iter().any(|(f, _)| *f == "--etcd-init-image"));
    }

    #[test]
    fn tokens_have_the_bootstrap_shape() {
        let t = new_token("seed");
        let (id, secret) = t.split_once('.').unwrap_or_default();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(t.bytes().all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}
