//! The command catalogue: for every action of a plan, the exact commands (argument vectors, never shell
//! strings), API calls and file writes the real step performs, in order.
//!
//! Pure: a function of the action and the validated file. `testbed apply --dry-run` prints it; the
//! simulated machine and the real providers run the same steps. Values only known while applying (a join
//! token, the output of `microk8s config`) are [`Arg::Runtime`] placeholders, and secrets among them are
//! [`Arg::Secret`]: neither ever carries a value here, so no secret can reach a plan, a log or an error
//! through this crate.

use std::fmt;

use testbed_config::karmada_release::FailoverSwitch;
use testbed_config::net::Subnet;
use testbed_config::{Backend, Config};
use testbed_plan::{Action, Layer, Op};

mod host;
mod karmada;
mod lxd;
mod microk8s;
mod registry;

pub use host::{node_ports_rule, raw_prerouting};

pub use karmada::ETCD_DATA;
pub use lxd::{ANSWER_WAIT_SECS, POD_WAIT_SECS};
pub use microk8s::{
    localhost_hosts_toml, member_registry_files, registry_host_port, registry_hosts_toml, registry_local_name,
    registry_trust_path, snap_record, ADDONS_RECORD, HOST_OWNER_MARKER, MEMBER_SNAP_DIR, REGISTRY_CERTS_DIR,
    SNAP_RECORD,
};
pub use registry::containerd_name;

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A value known when planning.
    Lit(String),
    /// A value learned while applying, named (shown as `<name>`).
    Runtime(&'static str),
    /// A secret learned while applying (shown as `<secret:name>`), never printed or logged.
    Secret(&'static str),
}

impl Arg {
    fn shown(&self) -> String {
        match self {
            Arg::Lit(s) => quote(s),
            Arg::Runtime(n) => format!("<{n}>"),
            Arg::Secret(n) => format!("<secret:{n}>"),
        }
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Lit(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Lit(s)
    }
}

impl From<&String> for Arg {
    fn from(s: &String) -> Arg {
        Arg::Lit(s.clone())
    }
}

/// Where a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    Host,
    /// Inside a member's container, through LXD's exec API.
    Member(String),
}

/// What a command of the catalogue is for, typed: the provider that runs a step decides what to do (skip it,
/// how long to let it run, what to check in its output, what to do after it) from this, never from the
/// command's words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Role {
    /// Run for its effect; it must succeed.
    #[default]
    Plain,
    /// `apt-get update`: needed only when an apt install follows.
    PackageIndex,
    /// An apt install of the package.
    AptInstall(String),
    /// Waiting for snapd to have seeded, before a snap install.
    SnapSeeded,
    /// A snap install of a host package.
    SnapInstall(String),
    /// Waiting for the daemon of the package just installed (LXD, Incus).
    DaemonReady(String),
    /// A download into `file` on the host.
    Download { file: String },
    /// Unpacking the archive just downloaded.
    Unpack,
    /// Asking the installed karmadactl for its version.
    KarmadactlVersion,
    /// Setting a kernel limit (raised, never lowered).
    KernelLimit { key: String, value: String },
    /// Checking for a firewall rule: the insert after it runs only when the rule is absent.
    RuleCheck,
    /// Inserting the rule the check before it looked for.
    RuleInsert,
    /// Deleting a rule; one already gone is fine.
    RuleDelete,
    /// Installing, refreshing or removing the MicroK8s snap (minutes: the snap is downloaded).
    SnapChange,
    /// Removing the host's MicroK8s snap: testbed's ownership marker goes with it.
    RemoveHostMicrok8s,
    /// `snap download` into the download directory (minutes on an ordinary line; snapd itself skips a file
    /// already there with the store's SHA3-384).
    SnapDownload,
    /// `snap info --verbose FILE.snap`: its `base:` line names the snap's base snap, learned as `<base>`.
    SnapBase,
    /// `snap list BASE` in a member: when it succeeds the base is installed, and the two steps after it
    /// (its `snap ack` and `snap install`) are skipped.
    SnapPresent,
    /// Enabling or disabling MicroK8s addons (minutes: images are pulled).
    AddonChange,
    /// `microk8s status --wait-ready --timeout N`: it gives up after N seconds itself.
    WaitReady { timeout_secs: u64 },
    /// `microk8s images import`: minutes for a large archive, and it exits 0 when the import failed.
    ImageImport,
    /// Removing the archive pushed for an import: run even when a step before it failed.
    RemoveArchive,
    /// A karmadactl command that changes the federation.
    Karmadactl(KarmadactlVerb),
}

/// The karmadactl commands the catalogue runs, each handled in its own way by the Karmada provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KarmadactlVerb {
    Init,
    Deinit,
    Join,
    Unjoin,
    /// `token create --print-register-command`: its output holds the join token (a secret) and the CA hash.
    TokenCreate,
    Register,
    Unregister,
}

impl KarmadactlVerb {
    /// The subcommand, for messages.
    pub fn name(self) -> &'static str {
        match self {
            KarmadactlVerb::Init => "init",
            KarmadactlVerb::Deinit => "deinit",
            KarmadactlVerb::Join => "join",
            KarmadactlVerb::Unjoin => "unjoin",
            KarmadactlVerb::TokenCreate => "token",
            KarmadactlVerb::Register => "register",
            KarmadactlVerb::Unregister => "unregister",
        }
    }
}

/// One step of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A command, as an argument vector, with what it is for.
    Run { at: Where, argv: Vec<Arg>, role: Role },
    /// An HTTP call to an API (LXD, Kubernetes, Karmada, a registry). `purpose` says what it is for, and
    /// is what the provider that runs it acts on; `api`, `method`, `path` and `note` are for the reader.
    Call { api: &'static str, method: &'static str, path: String, note: String, purpose: Purpose },
    /// A file written by testbed itself (not by a command), with its mode.
    Write { at: Where, path: String, mode: u32, content: String },
    /// Waiting for a condition, with its limit.
    Wait { what: String, timeout_secs: u64 },
    /// A command run again every `every_secs` until it succeeds, for at most `timeout_secs` (a command that
    /// fails until the thing it waits for can answer at all).
    Until { step: Box<Step>, timeout_secs: u64, every_secs: u64 },
    /// How the step behaves, for the reader.
    Note(String),
}

/// What an API call of the catalogue is for, typed: providers act on this, never on a call's path or note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Part of its layer's own API work, made by that layer's provider without a step of its own (LXD's
    /// REST calls, a registry copy, delete or readiness poll): shown so the reader knows it happens.
    Shown,
    /// Compare the archive just downloaded with the SHA-256 the release publishes at `url`, before anything
    /// is unpacked.
    ReleaseChecksum { url: String },
    /// Write a file into member `member` at `path` over LXD's file API; the step's provider knows its bytes.
    PushFile { member: String, path: String },
    /// Push the host's file `from` (a download) into member `member` at `path` over LXD's file API (`<base>`
    /// in either stands for the base snap learned earlier).
    PushDownload { member: String, from: String, path: String },
    /// Write testbed's record of the MicroK8s snap it installed in member `member` from the download
    /// `download` (its channel, and the revision the download's assertion names): a snap installed from a
    /// file tracks no channel.
    RecordSnap { member: String, download: String },
    /// Wait until every node of the cluster the step's kubeconfig names is Ready.
    NodesReady,
    /// Label the `karmada-system` namespace as this testbed's control plane.
    LabelControlPlane,
    /// Wait until the control plane's deployments are available.
    ControlPlaneAvailable,
    /// Add the arguments that switch cluster failover on to karmada-controller-manager's command on the host
    /// cluster (a Deployment patch, for a release whose init cannot take them), when they are not there.
    ControllerManagerFailover,
    /// Apply testbed's ClusterTaintPolicy to the Karmada API (server-side apply): a Cluster whose Ready is
    /// False or Unknown is tainted NoExecute, which is what makes cluster failover move workloads.
    FailoverTaintPolicy,
    /// Check that the control plane is this testbed's; none at all: skip the next step.
    ControlPlaneOwned,
    /// Label the `Cluster` as this testbed's.
    LabelCluster { cluster: String },
    /// Set the `Cluster`'s `spec.apiEndpoint` to the file's.
    SetClusterEndpoint { cluster: String },
    /// Wait until the `Cluster` is Ready.
    ClusterReady { cluster: String },
    /// Check that the `Cluster` is this testbed's; not registered: skip the next step.
    ClusterOwned { cluster: String },
    /// Remove what `karmadactl deinit` leaves at `path` on the host, only after a deinit this action ran:
    /// the etcd data (a later init would start on it: old Clusters, an old CA) and init's data directory
    /// (the Karmada kubeconfig, the CA's key).
    RemoveLeftByDeinit { path: String },
    /// The file at `path` on the host was fetched already: skip the next step (its download).
    SkipIfPresent { path: String },
    /// Record the SHA-256 of the file at `path` on the host beside it (`PATH.sha256`) the first time, and
    /// warn when a later copy differs from the recorded one: for a download whose publisher gives no
    /// checksum.
    RecordChecksum { path: String },
    /// Server-side apply (field manager `testbed`, forced) of the workload object at `address` to the Karmada
    /// API server: the object is the context's ([`Context::workload_objects`]).
    ApplyObject { address: String },
    /// Check that the object at `path` on the Karmada API server is this testbed's (its `testbed/owner`
    /// label); not there: skip the next step.
    ObjectOwned { path: String },
    /// Delete the object at `path` from the Karmada API server (Karmada then removes its copies from the
    /// members).
    DeleteObject { path: String },
    /// Wait until Karmada has scheduled every object of `workload` and the members report them healthy.
    WorkloadHealthy { workload: String },
}

/// Single-quotes an argument for display when it needs it (only for reading: testbed never hands a string
/// to a shell).
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run { at, argv, .. } => {
                let prompt = match at {
                    Where::Host => "host$".to_owned(),
                    Where::Member(m) => format!("{m}$"),
                };
                let args: Vec<String> = argv.iter().map(Arg::shown).collect();
                write!(f, "{prompt} {}", args.join(" "))
            }
            Step::Call { api, method, path, note, .. } => {
                write!(f, "{api}: {method} {path}")?;
                if !note.is_empty() {
                    write!(f, "  ({note})")?;
                }
                Ok(())
            }
            Step::Write { at, path, mode, content } => {
                let on = match at {
                    Where::Host => String::new(),
                    Where::Member(m) => format!(" in {m}"),
                };
                write!(f, "write {path}{on} (mode {mode:04o}): {content}")
            }
            Step::Wait { what, timeout_secs } => write!(f, "wait for {what} (at most {timeout_secs} s)"),
            Step::Until { step, timeout_secs, every_secs } => {
                write!(f, "{step}  (until it succeeds: every {every_secs} s, at most {timeout_secs} s)")
            }
            Step::Note(n) => write!(f, "# {n}"),
        }
    }
}

impl Step {
    /// This command with its role (other steps are returned as they are).
    pub fn with_role(self, role: Role) -> Step {
        match self {
            Step::Run { at, argv, .. } => Step::Run { at, argv, role },
            other => other,
        }
    }

    /// What the command is for ([`Role::Plain`] for steps that are not commands); a command run until it
    /// succeeds has its inner command's role.
    pub fn role(&self) -> &Role {
        const PLAIN: &Role = &Role::Plain;
        match self {
            Step::Run { role, .. } => role,
            Step::Until { step, .. } => step.role(),
            _ => PLAIN,
        }
    }

    /// The argument vector with placeholders shown, for commands.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            Step::Run { argv, .. } => Some(argv.iter().map(Arg::shown).collect()),
            Step::Until { step, .. } => step.argv(),
            _ => None,
        }
    }
}

/// Paths and addresses every step shares, from the validated file.
#[derive(Debug, Clone)]
pub struct Context {
    pub backend: Backend,
    /// The comment on testbed's firewall rules: `testbed:<the file's name>`, so that two testbeds on one
    /// host tell their rules apart.
    pub firewall_comment: String,
    /// The host MicroK8s' own admin kubeconfig.
    pub host_kubeconfig: String,
    /// The Karmada API kubeconfig that `karmadactl init` writes.
    pub karmada_kubeconfig: String,
    /// The host's address on the bridge: where members and pods reach the host.
    pub gateway: String,
    pub registry_port: u16,
    pub karmada_version: String,
    pub karmada_api_port: u16,
    pub downloads: String,
    /// `[host] kubeconfig_dir`, resolved against the file's directory.
    pub kubeconfig_dir: String,
    /// `karmadactl init`'s image flags with their values: every component's image, pointing at the copy
    /// testbed makes in the local registry (`localhost:PORT/NAME:TAG`), so init does not depend on its own
    /// default tags.
    pub init_images: Vec<(&'static str, String)>,
    /// The karmada-agent image as a pull-mode member pulls it, through the bridge:
    /// `GATEWAY:PORT/karmada-agent:TAG`.
    pub agent_image: String,
    /// Every image the file copies into the local registry: (name, `localhost:PORT/REPOSITORY:TAG`).
    pub images: Vec<(String, String)>,
    /// The file's `[registry]` section.
    pub registry: testbed_config::Registry,
    /// The file's directory: relative paths in it (side-load archives) are resolved against it.
    pub base_dir: std::path::PathBuf,
    /// Every workload object as testbed applies it, by its address (`workload_object.WORKLOAD.KEY`).
    pub workload_objects: std::collections::BTreeMap<String, testbed_plan::workload::AppliedObject>,
    /// How long a workload may take to be scheduled and healthy.
    pub workload_wait_secs: u64,
}

/// Where MicroK8s keeps the admin kubeconfig it generates.
pub const MICROK8S_CLIENT_CONFIG: &str = "/var/snap/microk8s/current/credentials/client.config";

impl Context {
    /// Where the Karmada release's CRD archive is kept on the host: in the downloads directory, outside
    /// init's `--karmada-data` (init wipes that).
    pub fn crd_archive(&self) -> String {
        format!("{}/karmada-crds-{}.tar.gz", self.downloads, self.karmada_version)
    }

    /// The release's CRD archive (karmadactl init's default `--crds`, downloaded at init time without it).
    pub fn crd_archive_url(&self) -> String {
        format!("https://github.com/karmada-io/karmada/releases/download/{}/crds.tar.gz", self.karmada_version)
    }

    /// How the file's Karmada release switches cluster failover on; `None` for a release testbed does not
    /// know (validation refuses `failover` there).
    pub fn failover_switch(&self) -> Option<FailoverSwitch> {
        testbed_config::karmada_release::release(&self.karmada_version).map(|r| r.failover)
    }

    /// Where the download `name` of the MicroK8s snap is kept on the host, without the extension: `.snap`
    /// and `.assert` are the snap and its assertions, `.base.snap` and `.base.assert` its base's.
    pub fn snap_download(&self, name: &str) -> String {
        format!("{}/{name}", self.downloads)
    }

    /// testbed's state beside the file: `.testbed` in its directory.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.base_dir.join(".testbed")
    }

    /// The registry layer's ownership record (what testbed copied and side-loaded).
    pub fn registry_record(&self) -> std::path::PathBuf {
        self.state_dir().join("registry.json")
    }

    /// The MicroK8s layer's record of the members' containers it finished installing MicroK8s in.
    pub fn microk8s_record(&self) -> std::path::PathBuf {
        self.state_dir().join("microk8s.json")
    }

    pub fn new(config: &Config) -> Context {
        let f = &config.file;
        let gateway = Subnet::parse(&f.lxd.ipv4_address).map(|s| s.gateway.to_string()).unwrap_or_default();
        let images = testbed_config::control_plane_images(f);
        Context {
            backend: f.lxd.backend,
            firewall_comment: format!("testbed:{}", f.name),
            host_kubeconfig: MICROK8S_CLIENT_CONFIG.to_owned(),
            karmada_kubeconfig: format!("{}/karmada-apiserver.config", f.karmada.data_dir.trim_end_matches('/')),
            registry_port: f.registry.port,
            karmada_version: f.karmada.version.clone(),
            karmada_api_port: f.karmada.api_port,
            downloads: "/var/lib/testbed/downloads".to_owned(),
            kubeconfig_dir: config.kubeconfig_dir().display().to_string(),
            init_images: karmada::init_images(&images, &format!("localhost:{}", f.registry.port)),
            agent_image: images
                .iter()
                .find(|i| i.pull_mode_only)
                .map(|i| i.target(&format!("{gateway}:{}", f.registry.port)))
                .unwrap_or_else(|| format!("{gateway}:{}/karmada-agent:{}", f.registry.port, f.karmada.version)),
            gateway,
            images: testbed_plan::desired::build(config, &testbed_plan::ObservedState::default())
                .resources
                .into_values()
                .filter(|r| r.kind == testbed_plan::Kind::Image)
                .filter_map(|r| Some((r.name, r.spec.get("target")?.clone())))
                .collect(),
            registry: f.registry.clone(),
            base_dir: config.base_dir(),
            workload_objects: testbed_plan::workload::applied_objects(config)
                .into_iter()
                .map(|o| {
                    let address =
                        testbed_plan::Address::new(testbed_plan::Kind::WorkloadObject, &[&o.workload, &o.key()]);
                    (address.to_string(), o)
                })
                .collect(),
            workload_wait_secs: 180,
        }
    }
}

pub(crate) fn run<I: IntoIterator<Item = A>, A: Into<Arg>>(at: Where, argv: I) -> Step {
    Step::Run { at, argv: argv.into_iter().map(Into::into).collect(), role: Role::Plain }
}

pub(crate) fn host<I: IntoIterator<Item = A>, A: Into<Arg>>(argv: I) -> Step {
    run(Where::Host, argv)
}

pub(crate) fn setting<'a>(a: &'a Action, key: &str) -> &'a str {
    a.desired
        .as_ref()
        .and_then(|r| r.spec.get(key))
        .or_else(|| a.observed.as_ref().and_then(|o| o.spec.get(key)))
        .map(String::as_str)
        .unwrap_or("")
}

pub(crate) fn list(a: &Action, key: &str) -> Vec<String> {
    setting(a, key).split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The steps of `action`, in order. A cascaded delete has none of its own.
pub fn steps(action: &Action, cx: &Context) -> Vec<Step> {
    if !action.runs() {
        return vec![];
    }
    match action.op {
        Op::Create => create(action, cx),
        Op::Update => update(action, cx),
        Op::Delete => delete(action, cx),
        Op::Replace => {
            let mut s = delete(action, cx);
            s.extend(create(action, cx));
            s
        }
    }
}

pub(crate) fn member(a: &Action) -> String {
    a.member.clone().unwrap_or_default()
}

fn create(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind.layer() {
        Layer::Host => host::create(a, cx),
        Layer::Lxd => lxd::steps(a, Op::Create, cx),
        Layer::Microk8s => microk8s::create(a, cx),
        Layer::Registry => registry::create(a, cx),
        Layer::Karmada => karmada::create(a, cx),
    }
}

fn update(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind.layer() {
        Layer::Host => host::update(a, cx),
        Layer::Lxd => lxd::steps(a, Op::Update, cx),
        Layer::Microk8s => microk8s::update(a, cx),
        Layer::Registry => registry::update(a, cx),
        Layer::Karmada => karmada::update(a, cx),
    }
}

fn delete(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind.layer() {
        Layer::Host => host::delete(a, cx),
        Layer::Lxd => lxd::steps(a, Op::Delete, cx),
        Layer::Microk8s => microk8s::delete(a, cx),
        Layer::Registry => registry::delete(a, cx),
        Layer::Karmada => karmada::delete(a, cx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed_plan::{Address, Kind, Resource, Spec};

    fn action(kind: Kind, member: &str, spec: &[(&str, &str)]) -> Action {
        let spec: Spec = spec.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let address = Address::new(kind, &[member]);
        Action {
            address: address.clone(),
            kind,
            member: Some(member.to_owned()),
            op: Op::Create,
            reason: String::new(),
            changes: vec![],
            desired: Some(Resource {
                address,
                kind,
                member: Some(member.to_owned()),
                name: member.to_owned(),
                spec,
                depends_on: vec![],
            }),
            observed: None,
            cascade: None,
            replace: false,
        }
    }

    fn cx() -> Context {
        let c = testbed_config::parse(std::path::Path::new("testbed.toml"), "").unwrap();
        Context::new(&c)
    }

    #[test]
    fn shell_metacharacters_stay_one_argument() {
        // Validation refuses such names; the steps must be safe even without it.
        let evil = "m1; rm -rf / #";
        let a = action(Kind::KarmadaMember, evil, &[("mode", "push")]);
        let s = steps(&a, &cx());
        let Step::Run { argv, .. } = &s[0] else { panic!("{s:?}") };
        assert_eq!(argv[2], Arg::Lit(evil.to_owned()), "the name is one argument, untouched");
        assert!(s[0].to_string().contains("'m1; rm -rf / #'"), "and shown quoted: {}", s[0]);

        let image = "docker.io/x/y:1$(reboot)";
        let mut side = action(Kind::Sideload, "m1", &[("source", image)]);
        side.op = Op::Delete;
        let s = steps(&side, &cx());
        let Step::Run { argv, .. } = &s[0] else { panic!("{s:?}") };
        assert_eq!(argv.last(), Some(&Arg::Lit(image.to_owned())));
    }

    #[test]
    fn secrets_are_placeholders_only() {
        let a = action(Kind::KarmadaMember, "m1", &[("mode", "pull")]);
        let s = steps(&a, &cx());
        let register = s.iter().find_map(|s| match s {
            Step::Run { argv, .. } if argv.get(1) == Some(&Arg::Lit("register".into())) => Some(argv.clone()),
            _ => None,
        });
        let register = register.expect("a register step");
        assert!(register.contains(&Arg::Secret("join-token")));
        assert!(s.iter().all(|x| !x.to_string().contains("abcdef.")), "no token value anywhere");
    }

    #[test]
    fn a_cascaded_delete_runs_nothing() {
        let mut a = action(Kind::Microk8s, "m1", &[("channel", "1.32/stable")]);
        a.op = Op::Delete;
        a.cascade = Some(Address::new(Kind::LxdInstance, &["m1"]));
        assert!(steps(&a, &cx()).is_empty());
    }
}
