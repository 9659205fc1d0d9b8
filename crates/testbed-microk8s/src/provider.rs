//! [`Microk8sProvider`]: observation and actions of the MicroK8s layer on the real machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::installs::Installs;
use async_trait::async_trait;
use testbed_command::{run_step, CommandError, CommandRunner, Output, Values};
use testbed_config::Backend;
use testbed_kube::{nodes_ready, ApiConfig, Clients, KubeObserveError, Network, NodesReport};
use testbed_plan::{Action, Address, Health, Kind, Layer, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{
    ActionLog, ContainerFacts, ContainerView, ErrorKind, LayerObservation, Provider, ProviderError, ResultExt,
};
use testbed_steps::{Context, Purpose, Role, Step, Where};

use crate::kubeconfig::{self, OnDisk, Use};
use crate::parse::{self, Status};

/// Where testbed marks the host MicroK8s it installed, and records the addons it enabled: the catalogue's
/// paths, which its steps write.
pub use testbed_steps::{ADDONS_RECORD, HOST_OWNER_MARKER};

/// The limit of a read-only command run while observing.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(60);
/// `snap install` and `snap refresh` download a few hundred MB.
const SNAP_TIMEOUT: Duration = Duration::from_secs(1200);
/// `microk8s enable` pulls images and waits for some of them.
const ADDON_TIMEOUT: Duration = Duration::from_secs(900);
/// Anything else.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The real MicroK8s layer: the host's MicroK8s and addons, each member's MicroK8s and addons (commands run
/// in the member through LXD exec), and the members' kubeconfig files on the host.
///
/// # Ownership
///
/// - **Host MicroK8s**: testbed writes [`HOST_OWNER_MARKER`] (content: `owner=testbed`, `name=<testbed>`) right
///   after `snap install`. A MicroK8s on the host without it was there before testbed: it is reported as
///   [`Owner::Other`] and used as it is (the planner never changes or removes it, and neither does
///   [`Provider::apply`]). One with another testbed's name belongs to that testbed. The host's addons
///   belong to whoever owns the host MicroK8s.
/// - **A member's MicroK8s and addons** belong to whoever owns the member's container
///   ([`ContainerFacts::owned`]): testbed installs MicroK8s only into containers it created.
/// - **Addons**: testbed records the addons it enabled in [`ADDONS_RECORD`] (one empty file per addon, written
///   with argument vectors because LXD exec has no stdin). An addon's observed spec is the enabled addons
///   that the file wants or that testbed enabled, so addons MicroK8s enables by itself (`ha-cluster`,
///   `helm`, `hostpath-storage` pulled in by `registry`) or the user enabled by hand are not drift and are
///   never disabled, while an addon testbed enabled and the file dropped is disabled.
/// - **Kubeconfig files** carry a marker line ([`kubeconfig::MARKER_PREFIX`]) naming the testbed, the member
///   and the file's use. A file at a wanted path without it is [`Owner::Other`], never overwritten.
///
/// # What observation reports about health
///
/// A stopped MicroK8s (`microk8s stop`) or one that is not ready is `microk8s.<member>` (or
/// `host.microk8s`) with [`Health::NeedsRepair`]: the repair is `microk8s start` and a bounded wait.
/// Inside a container that is stopped nothing can be seen (testbed never execs into a container that is
/// not running): its MicroK8s is reported with the settings the file wants and `NeedsRepair`, so that
/// starting the container starts MicroK8s too, without rebuilding what depends on it.
///
/// In a member, observation also reads the files that make it pull from the local registry (`cat`, one exec
/// each: the trust of `GATEWAY:PORT` and the file for `localhost:PORT`, [`testbed_steps::member_registry_files`]):
/// when one is missing or not byte for byte what the catalogue writes, `microk8s.<member>` needs repair, and
/// the repair writes them again.
///
/// For a member whose MicroK8s runs, observation also asks the member's API, through the people
/// kubeconfig, whether every node is Ready:
///
/// - **nodes not Ready** are reported on `microk8s.<member>` as `NeedsRepair` with the nodes and their
///   condition: the node is part of the cluster, and the repair (`microk8s start`,
///   `microk8s status --wait-ready --timeout 300`) waits for it and, if it stays NotReady, fails naming the
///   member;
/// - **an API that does not answer through the kubeconfig, or that rejects it** (TLS, 401) is reported on
///   `kubeconfig.<member>` as `NeedsRepair`: the path through the file (its credentials, the API proxy on
///   the host port) is what is broken while MicroK8s inside runs, and the repair rewrites the file from
///   `microk8s config` and then waits for the API through it, failing with a hint about the proxy if it
///   still does not answer. Reporting this on `microk8s.<member>` instead would plan a restart that
///   succeeds without fixing anything.
#[derive(Clone)]
pub struct Microk8sProvider {
    runner: Arc<dyn CommandRunner>,
    containers: Arc<dyn ContainerView>,
    cx: Context,
    testbed: String,
    ready_timeout: Duration,
    poll_interval: Duration,
    observe_api_timeout: Duration,
    host_owner_marker: PathBuf,
    network: Network,
    /// One client per member kubeconfig, kept for the provider's life.
    clients: Clients,
    /// The members whose containers testbed finished installing MicroK8s in.
    installs: Arc<Installs>,
    /// Where the host's files are (`/`; a simulated host's directory): the downloads are read from here.
    host_root: PathBuf,
}

impl fmt::Debug for Microk8sProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Microk8sProvider")
            .field("testbed", &self.testbed)
            .field("kubeconfig_dir", &self.cx.kubeconfig_dir)
            .field("ready_timeout", &self.ready_timeout)
            .field("host_owner_marker", &self.host_owner_marker)
            .finish_non_exhaustive()
    }
}

/// What a look inside the host or a container found.
#[derive(Debug, Clone)]
struct Inside {
    snap: parse::SnapInfo,
    status: Result<Status, String>,
    /// The addons testbed recorded as enabled.
    recorded: BTreeSet<String>,
    /// In a member: each local registry file's path and content, or why it could not be read (absent, most
    /// likely).
    registry_files: Vec<(String, Result<String, String>)>,
    /// In a member: testbed's record of the snap it installed from a download (channel, revision).
    snap_record: Option<(String, String)>,
}

/// Whether an error from the API means "wait and ask again" or "asking again will not help".
fn retryable(e: &KubeObserveError) -> bool {
    !matches!(
        e,
        KubeObserveError::Tls { .. }
            | KubeObserveError::Unauthorized { .. }
            | KubeObserveError::Forbidden { .. }
            | KubeObserveError::Config { .. }
    )
}

/// "member2 (KubeletNotReady: ...)" for each node that is not Ready.
fn not_ready_nodes(r: &NodesReport) -> String {
    if r.nodes.is_empty() {
        return "no node has registered yet".into();
    }
    r.nodes
        .iter()
        .filter(|n| !n.is_ready())
        .map(|n| match &n.ready {
            None => format!("{} (no Ready condition yet)", n.name),
            Some(c) => {
                let reason = c.reason.as_deref().filter(|s| !s.is_empty());
                let message = c.message.as_deref().filter(|s| !s.is_empty());
                match (reason, message) {
                    (Some(r), Some(m)) => format!("{} ({r}: {m})", n.name),
                    (Some(x), None) | (None, Some(x)) => format!("{} ({x})", n.name),
                    (None, None) => format!("{} (Ready is {})", n.name, c.status),
                }
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration as a person reads it.
fn shown(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn joined(set: &BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(",")
}

fn addons_of(spec: &Spec) -> BTreeSet<String> {
    spec.get("addons").map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect()).unwrap_or_default()
}

fn observed(address: Address, kind: Kind, member: Option<&str>, owner: Owner, spec: Spec) -> Observed {
    Observed::new(address, kind, member, owner, spec)
}

/// How long a catalogue command may take, by what it is for.
fn timeout_for(role: &Role) -> Duration {
    match role {
        // It gives up by itself after its --timeout: let it, and say what it said.
        Role::WaitReady { timeout_secs } => Duration::from_secs(timeout_secs + 60),
        Role::SnapChange | Role::RemoveHostMicrok8s | Role::SnapDownload => SNAP_TIMEOUT,
        Role::AddonChange => ADDON_TIMEOUT,
        _ => COMMAND_TIMEOUT,
    }
}

impl Microk8sProvider {
    pub fn new(
        runner: Arc<dyn CommandRunner>,
        containers: Arc<dyn ContainerView>,
        cx: Context,
        testbed_name: String,
    ) -> Microk8sProvider {
        let installs = Arc::new(Installs::new(cx.microk8s_record()));
        Microk8sProvider {
            runner,
            containers,
            cx,
            testbed: testbed_name,
            ready_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            observe_api_timeout: Duration::from_secs(3),
            host_owner_marker: PathBuf::from(HOST_OWNER_MARKER),
            network: Network::Direct,
            clients: Clients::default(),
            installs,
            host_root: PathBuf::from("/"),
        }
    }

    /// Where the host's files are (default `/`): the downloads pushed into members are read under it.
    pub fn with_host_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.host_root = root.into();
        self
    }

    fn on_host(&self, path: &str) -> PathBuf {
        self.host_root.join(path.trim_start_matches('/'))
    }

    /// The revision a download's assertions name (`NAME.assert`), `None` when it is not there.
    fn downloaded_revision(&self, name: &str) -> Option<String> {
        let assert = std::fs::read_to_string(self.on_host(&format!("{}.assert", self.cx.snap_download(name)))).ok()?;
        parse::asserted_revision(&assert)
    }

    /// The downloads the file wants that are complete in the download directory (the snap, its base and
    /// both assertions), with the revision downloaded; and the store's revision of each channel now.
    async fn observe_downloads(&self, wanted: &[Resource]) -> (Vec<Observed>, BTreeMap<String, String>) {
        let downloads: Vec<&Resource> = wanted.iter().filter(|r| r.kind == Kind::SnapDownload).collect();
        if downloads.is_empty() {
            return (Vec::new(), BTreeMap::new());
        }
        // One store query for every channel: what a download would fetch now.
        let revisions = match self.runner.run(&Where::Host, &argv(&["snap", "info", "microk8s"]), OBSERVE_TIMEOUT).await
        {
            Ok(o) if o.success() => parse::channel_revisions(&o.stdout),
            // Offline, or no snapd yet: the revision is unknown and the download is not re-checked.
            _ => BTreeMap::new(),
        };
        let mut out = Vec::new();
        for r in downloads {
            let base = self.cx.snap_download(&r.name);
            let complete = ["snap", "assert", "base.snap", "base.assert"]
                .iter()
                .all(|ext| self.on_host(&format!("{base}.{ext}")).is_file());
            let Some(revision) = self.downloaded_revision(&r.name).filter(|_| complete) else { continue };
            let mut spec = Spec::new();
            spec.insert("channel".into(), r.spec.get("channel").cloned().unwrap_or_default());
            spec.insert("revision".into(), revision);
            out.push(observed(r.address.clone(), Kind::SnapDownload, None, Owner::Testbed, spec));
        }
        (out, revisions)
    }

    /// How long applying a kubeconfig waits for every node to be Ready through it (default 300 s).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How often that wait asks the API (default 2 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long observation waits for a member's API before reporting it unreachable (default 3 s).
    pub fn with_observe_api_timeout(mut self, timeout: Duration) -> Self {
        self.observe_api_timeout = timeout;
        self
    }

    /// Where the host MicroK8s' ownership marker is (default [`HOST_OWNER_MARKER`]; tests point it elsewhere).
    pub fn with_host_owner_marker(mut self, path: impl Into<PathBuf>) -> Self {
        self.host_owner_marker = path.into();
        self
    }

    /// Where connections to the members' API servers go (default: straight there).
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    fn lxc(&self) -> &'static str {
        match self.cx.backend {
            Backend::Lxd => "lxc",
            Backend::Incus => "incus",
        }
    }

    /// How a person runs `cmd` where `at` is: "microk8s inspect" or "lxc exec member1 -- microk8s inspect".
    fn by_hand(&self, at: &Where, cmd: &str) -> String {
        match at {
            Where::Host => cmd.to_owned(),
            Where::Member(m) => format!("{} exec {m} -- {cmd}", self.lxc()),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Observation
    // ---------------------------------------------------------------------------------------------

    /// The owner of the host MicroK8s, from its marker file.
    fn host_owner(&self) -> Owner {
        let path = self.host_owner_marker.display();
        match std::fs::read_to_string(&self.host_owner_marker) {
            Ok(text) => {
                let name = text.lines().find_map(|l| l.trim().strip_prefix("name=")).unwrap_or("").trim();
                if name == self.testbed {
                    Owner::Testbed
                } else {
                    Owner::Other(format!(
                        "MicroK8s on the host belongs to another testbed, {name:?} (its marker file {path} says so)"
                    ))
                }
            }
            Err(_) => Owner::Other(format!(
                "MicroK8s on the host exists that testbed did not install (no marker file {path})"
            )),
        }
    }

    /// The addons to report: those enabled that the file wants or testbed recorded; `None` (not present)
    /// when there are none and testbed recorded none.
    fn addons_spec(inside: &Inside, wanted: Option<&BTreeSet<String>>) -> Option<BTreeSet<String>> {
        match &inside.status {
            Ok(Status::Running { enabled }) => {
                let ours: BTreeSet<String> = enabled
                    .iter()
                    .filter(|a| wanted.is_some_and(|w| w.contains(*a)) || inside.recorded.contains(*a))
                    .cloned()
                    .collect();
                (!ours.is_empty() || !inside.recorded.is_empty()).then_some(ours)
            }
            // Not running: MicroK8s does not list its addons. What testbed enabled is taken to be still on.
            _ => (!inside.recorded.is_empty()).then(|| inside.recorded.clone()),
        }
    }

    fn microk8s_observed(
        address: Address,
        kind: Kind,
        member: Option<&str>,
        owner: Owner,
        inside: &Inside,
        wanted_channel: Option<&str>,
    ) -> Observed {
        // A snap installed from a download tracks no channel (`-`): the channel is the one testbed recorded
        // with the revision it installed, as long as that revision is still the one installed.
        let from_record = inside.snap_record.as_ref().filter(|(_, rev)| *rev == inside.snap.revision);
        let tracking = match from_record {
            Some((channel, _)) => channel.clone(),
            None => inside.snap.tracking.clone(),
        };
        let channel = match wanted_channel {
            Some(w) if parse::same_channel(w, &tracking) => w.to_owned(),
            _ => tracking,
        };
        let mut spec: Spec = [("channel".to_owned(), channel)].into();
        if !inside.snap.revision.is_empty() {
            spec.insert("revision".into(), inside.snap.revision.clone());
        }
        let mut o = observed(address, kind, member, owner, spec);
        o.health = match &inside.status {
            Ok(Status::Running { .. }) => Health::Ok,
            Ok(Status::Stopped) => Health::NeedsRepair("MicroK8s is stopped; will be started".into()),
            Ok(Status::NotReady) => Health::NeedsRepair(
                "MicroK8s is not ready (microk8s status: running: False); will be started and waited for".into(),
            ),
            Err(why) => Health::NeedsRepair(format!("microk8s status did not answer as expected ({why})")),
        };
        o
    }

    async fn observe_kubeconfig(
        &self,
        member: &str,
        people: &Path,
        karmada: &Path,
    ) -> Option<(Observed, Option<String>)> {
        let files =
            [(people, kubeconfig::read(people), Use::People), (karmada, kubeconfig::read(karmada), Use::Karmada)];
        if files.iter().all(|(_, f, _)| matches!(f, OnDisk::Absent)) {
            return None;
        }
        let mut owner = Owner::Testbed;
        let mut modes = Vec::new();
        let mut servers = [String::new(), String::new()];
        let mut people_text = None;
        for (i, (path, file, use_)) in files.iter().enumerate() {
            let p = path.display();
            match file {
                OnDisk::Absent => {}
                OnDisk::Unreadable(why) => owner = Owner::Other(why.clone()),
                OnDisk::File { marker, server, mode, text } => {
                    match marker {
                        Some(m) if m.testbed == self.testbed && m.member == member && m.use_ == *use_ => {}
                        Some(m) if m.testbed != self.testbed => {
                            owner = Owner::Other(format!(
                                "a file at {p} belongs to another testbed, {:?} (its marker line says so)",
                                m.testbed
                            ))
                        }
                        Some(_) => {
                            owner = Owner::Other(format!(
                                "a file at {p} is testbed's but written for another member or use (its marker line says so)"
                            ))
                        }
                        None => {
                            owner = Owner::Other(format!(
                                "a file at {p} exists that testbed did not write (no marker line)"
                            ))
                        }
                    }
                    modes.push(*mode);
                    servers[i] = server.clone();
                    if *use_ == Use::People {
                        people_text = Some(text.clone());
                    }
                }
            }
        }
        // Both files should be 0600; report the one that is not.
        let mode = modes.iter().copied().find(|m| *m != 0o600).or(modes.first().copied()).unwrap_or(0);
        let [server, karmada_server] = servers;
        let spec: Spec = [
            ("path", people.display().to_string()),
            ("server", server),
            ("karmada_path", karmada.display().to_string()),
            ("karmada_server", karmada_server),
            ("mode", format!("{mode:04o}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let o = observed(Address::new(Kind::Kubeconfig, &[member]), Kind::Kubeconfig, Some(member), owner, spec);
        Some((o, people_text))
    }

    async fn observe_all(&self, wanted: &[Resource]) -> Result<Vec<Observed>, ProviderError> {
        let mut out = Vec::new();
        let want = |kind: Kind, member: Option<&str>| {
            wanted.iter().find(|r| r.kind == kind && r.member.as_deref() == member).map(|r| &r.spec)
        };

        // The host.
        if let Some(inside) = look(self.runner.as_ref(), &Where::Host, None).await? {
            let owner = self.host_owner();
            let wanted_channel = want(Kind::HostMicrok8s, None).and_then(|s| s.get("channel"));
            out.push(Self::microk8s_observed(
                Address::new(Kind::HostMicrok8s, &["microk8s"]),
                Kind::HostMicrok8s,
                None,
                owner.clone(),
                &inside,
                wanted_channel.map(String::as_str),
            ));
            let wanted_addons = want(Kind::HostAddons, None).map(addons_of);
            if let Some(addons) = Self::addons_spec(&inside, wanted_addons.as_ref()) {
                let owner = match owner {
                    Owner::Testbed => Owner::Testbed,
                    Owner::Other(_) => {
                        Owner::Other("the addons of a MicroK8s on the host that testbed did not install".into())
                    }
                };
                out.push(observed(
                    Address::new(Kind::HostAddons, &["addons"]),
                    Kind::HostAddons,
                    None,
                    owner,
                    [("addons".to_owned(), joined(&addons))].into(),
                ));
            }
        }

        // The members.
        let wanted_members: BTreeSet<String> = wanted.iter().filter_map(|r| r.member.clone()).collect();
        let facts = match self.containers.containers().await {
            Ok(facts) => facts,
            // No LXD daemon (not installed yet on a fresh host): no containers, so no MicroK8s in them. The LXD
            // layer reports the same absence, and the plan creates both in order.
            Err(e) if e.kind() == ErrorKind::Unavailable => Vec::new(),
            Err(e) => {
                let hint = e
                    .hint()
                    .map_or_else(|| format!("check that the LXD daemon runs ({} list)", self.lxc()), str::to_owned);
                return Err(ProviderError::state_unknown("cannot see the member containers")
                    .with_hint(hint)
                    .caused_by(e));
            }
        };
        let mut looks = tokio::task::JoinSet::new();
        let mut running: BTreeMap<String, bool> = BTreeMap::new();
        for c in facts.iter().filter(|c| wanted_members.contains(&c.name) || c.owned) {
            if c.running {
                let runner = Arc::clone(&self.runner);
                let name = c.name.clone();
                let files = self.registry_paths();
                looks.spawn(async move {
                    let at = Where::Member(name.clone());
                    (name, look(runner.as_ref(), &at, Some(&files)).await)
                });
                continue;
            }
            // Stopped: nothing can be seen inside. What testbed finished installing in this very container is
            // assumed to be as the file wants; in a container never started, or made anew, there is nothing.
            if c.owned && self.installs.has(&c.name, &c.identity) {
                if let Some(spec) = want(Kind::Microk8s, Some(&c.name)) {
                    let mut o = observed(
                        Address::new(Kind::Microk8s, &[&c.name]),
                        Kind::Microk8s,
                        Some(&c.name),
                        Owner::Testbed,
                        spec.clone(),
                    );
                    o.health = Health::NeedsRepair(format!(
                        "container {} is stopped; MicroK8s in it will be started and waited for",
                        c.name
                    ));
                    out.push(o);
                    if let Some(spec) = want(Kind::Microk8sAddons, Some(&c.name)) {
                        out.push(observed(
                            Address::new(Kind::Microk8sAddons, &[&c.name]),
                            Kind::Microk8sAddons,
                            Some(&c.name),
                            Owner::Testbed,
                            spec.clone(),
                        ));
                    }
                }
            }
        }
        let owned: BTreeMap<&str, &ContainerFacts> = facts.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut found: Vec<(String, Inside)> = Vec::new();
        while let Some(joined) = looks.join_next().await {
            let (name, result) = joined.context(ErrorKind::Failed, "an observer stopped")?;
            let result = result.map_err(|e| e.context(format!("observing MicroK8s in {name}")))?;
            if let Some(inside) = result {
                found.push((name, inside));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, inside) in &found {
            let owner = if owned.get(name.as_str()).is_some_and(|c| c.owned) {
                Owner::Testbed
            } else {
                Owner::Other(format!("MicroK8s in container {name}, which testbed did not create"))
            };
            let wanted_channel = want(Kind::Microk8s, Some(name)).and_then(|s| s.get("channel"));
            let mut o = Self::microk8s_observed(
                Address::new(Kind::Microk8s, &[name]),
                Kind::Microk8s,
                Some(name),
                owner.clone(),
                inside,
                wanted_channel.map(String::as_str),
            );
            // The member's trust of the local registry is part of its MicroK8s: missing or different, the
            // repair (the update's steps) rewrites it.
            if owner == Owner::Testbed {
                if let Some(why) = self.trust_problem(inside) {
                    o.health = match o.health {
                        Health::NeedsRepair(r) => Health::NeedsRepair(format!("{r}; {why}")),
                        _ => Health::NeedsRepair(why),
                    };
                }
            }
            running.insert(name.clone(), matches!(inside.status, Ok(Status::Running { .. })));
            out.push(o);
            let wanted_addons = want(Kind::Microk8sAddons, Some(name)).map(addons_of);
            if let Some(addons) = Self::addons_spec(inside, wanted_addons.as_ref()) {
                out.push(observed(
                    Address::new(Kind::Microk8sAddons, &[name]),
                    Kind::Microk8sAddons,
                    Some(name),
                    owner,
                    [("addons".to_owned(), joined(&addons))].into(),
                ));
            }
        }

        // Kubeconfig files: the wanted ones, and testbed's files of members the file no longer has.
        let mut checks = tokio::task::JoinSet::new();
        let mut seen_members = BTreeSet::new();
        for r in wanted.iter().filter(|r| r.kind == Kind::Kubeconfig) {
            let Some(member) = r.member.as_deref() else { continue };
            seen_members.insert(member.to_owned());
            let (Some(people), Some(karmada)) = (r.spec.get("path"), r.spec.get("karmada_path")) else { continue };
            let Some((o, people_text)) = self.observe_kubeconfig(member, Path::new(people), Path::new(karmada)).await
            else {
                continue;
            };
            if o.owner == Owner::Testbed && running.get(member) == Some(&true) {
                if let Some(text) = people_text {
                    let timeout = self.observe_api_timeout;
                    let network = self.network.clone();
                    let clients = self.clients.clone();
                    let member = member.to_owned();
                    let path = people.clone();
                    checks.spawn(async move {
                        let result = nodes(&clients, &text, &network, timeout, timeout).await;
                        (member, path, result)
                    });
                }
            }
            out.push(o);
        }
        let mut orphans: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
        for (path, m) in kubeconfig::scan(Path::new(&self.cx.kubeconfig_dir), &self.testbed) {
            if seen_members.contains(&m.member) {
                continue;
            }
            let slot = orphans.entry(m.member.clone()).or_default();
            match m.use_ {
                Use::People => slot.0 = Some(path),
                Use::Karmada => slot.1 = Some(path),
            }
        }
        for (member, (people, karmada)) in orphans {
            let dir = Path::new(&self.cx.kubeconfig_dir);
            let people = people.unwrap_or_else(|| dir.join(format!("{member}.config")));
            let karmada = karmada.unwrap_or_else(|| dir.join(format!("{member}-karmada.config")));
            if let Some((o, _)) = self.observe_kubeconfig(&member, &people, &karmada).await {
                out.push(o);
            }
        }

        // What the members' APIs say through the people kubeconfigs.
        while let Some(joined) = checks.join_next().await {
            let Ok((member, path, result)) = joined else { continue };
            let (target, reason) = match result {
                Ok(report) if report.all_ready() => continue,
                Ok(report) => (
                    Address::new(Kind::Microk8s, &[&member]),
                    format!("nodes not Ready (seen through {path}): {}", not_ready_nodes(&report)),
                ),
                Err(e) => (
                    Address::new(Kind::Kubeconfig, &[&member]),
                    format!("checked through {path}: {e}; will be rewritten from microk8s config and checked again"),
                ),
            };
            if let Some(o) = out.iter_mut().find(|o| o.address == target && o.health == Health::Ok) {
                o.health = Health::NeedsRepair(reason);
            }
        }
        Ok(out)
    }

    /// The files every member's MicroK8s gets to pull from the local registry (the catalogue's paths).
    fn registry_paths(&self) -> Vec<String> {
        testbed_steps::member_registry_files(&self.cx).into_iter().map(|(path, _)| path).collect()
    }

    /// What a member's local registry file at `path` is for: as the plan says it (after "its"), and as a
    /// failure to write it says it.
    fn registry_file_role(&self, path: &str) -> (String, String) {
        let local = testbed_steps::registry_local_name(&self.cx);
        if path == testbed_steps::registry_trust_path(&local) {
            let role = format!("route from {local} to the local registry");
            (role.clone(), format!("the {role}"))
        } else {
            ("trust of the local registry".to_owned(), "the local registry's trust".to_owned())
        }
    }

    /// Why a member's local registry files need writing, if they do: one is missing, unreadable, or not
    /// exactly what the catalogue writes.
    fn trust_problem(&self, inside: &Inside) -> Option<String> {
        let problems: Vec<String> = testbed_steps::member_registry_files(&self.cx)
            .into_iter()
            .filter_map(|(path, want)| {
                let (what, _) = self.registry_file_role(&path);
                match inside.registry_files.iter().find(|(p, _)| *p == path).map(|(_, r)| r)? {
                    Ok(text) if *text == want => None,
                    Ok(_) => Some(format!("its {what} ({path}) is not what testbed writes; will be rewritten")),
                    Err(why) => Some(format!("its {what} ({path}) is missing ({why}); will be written")),
                }
            })
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    // ---------------------------------------------------------------------------------------------
    // Actions
    // ---------------------------------------------------------------------------------------------

    /// The member's container, for a step that runs something in it: `Ok(None)` when it is gone.
    async fn container(&self, member: &str) -> Result<Option<ContainerFacts>, ProviderError> {
        // The containers' layer's hint stays reachable through the cause.
        let facts = self
            .containers
            .containers()
            .await
            .map_err(|e| ProviderError::unavailable(format!("cannot see container {member}")).caused_by(e))?;
        Ok(facts.into_iter().find(|c| c.name == member))
    }

    async fn require_running(&self, address: &Address, member: &str, doing: &str) -> Result<(), ProviderError> {
        let found = self.container(member).await.map_err(|e| {
            let hint =
                e.hint().map_or_else(|| format!("check that the LXD daemon runs ({} list)", self.lxc()), str::to_owned);
            ProviderError::unavailable(address.to_string()).with_hint(hint).caused_by(e)
        })?;
        match found {
            None => Err(ProviderError::precondition(format!(
                "{address}: cannot {doing}: container {member} does not exist"
            ))
            .with_hint(format!("apply lxd_instance.{member} first"))),
            Some(c) if !c.running => {
                Err(ProviderError::precondition(format!("{address}: cannot {doing}: container {member} is stopped"))
                    .with_hint(format!(
                        "run testbed apply, which starts testbed's stopped containers, or: {} start {member}",
                        self.lxc()
                    )))
            }
            Some(_) => Ok(()),
        }
    }

    fn write_host_marker(&self, log: &ActionLog) -> Result<(), ProviderError> {
        let path = &self.host_owner_marker;
        let text = format!("owner=testbed\nname={}\n", self.testbed);
        std::fs::write(path, text).map_err(|e| {
            ProviderError::failed(format!("host.microk8s: cannot write the ownership marker {}", path.display()))
                .with_hint("without it the next plan takes this MicroK8s for someone else's; apply again as root")
                .caused_by(e)
        })?;
        log.note(format!("wrote {} (this MicroK8s is testbed {:?}'s)", path.display(), self.testbed));
        Ok(())
    }

    /// Runs the catalogue's steps of a host MicroK8s, addons or member MicroK8s action.
    async fn run_catalogue(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        if let Some(Owner::Other(found)) = action.observed.as_ref().map(|o| &o.owner) {
            return Err(ProviderError::precondition(format!(
                "refusing to {} {}: {found}; testbed changes only what it created",
                action.op.name(),
                action.address
            ))
            .with_hint("it is used as it is; change the file so that testbed does not want it changed"));
        }
        if let (Some(m), true) = (action.member.as_deref(), action.runs()) {
            if action.op == Op::Delete && self.container(m).await?.is_none() {
                log.note(format!("container {m} is gone, and what was in it with it"));
                return Ok(());
            }
            self.require_running(&action.address, m, &format!("{} {}", action.op.name(), action.address)).await?;
            // What is inside a container is its maker's: testbed changes nothing in one it did not create.
            if self.container(m).await?.is_some_and(|c| !c.owned) {
                return Err(ProviderError::precondition(format!(
                    "{}: refusing to {} MicroK8s in container {m}: testbed did not create it",
                    action.address,
                    action.op.name()
                ))
                .with_hint(format!("remove or rename container {m}, or name the member differently in the file")));
            }
        }
        let mut values = Values::new();
        let mut skip = 0usize;
        for step in testbed_steps::steps(action, &self.cx) {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            match &step {
                Step::Run { at, argv: args, role: Role::SnapPresent } => {
                    let filled = values.fill(args).unwrap_or_default();
                    let out = run_step(self.runner.as_ref(), &step, &values, log, COMMAND_TIMEOUT, false)
                        .await
                        .map_err(|e| self.explain(e, action, at, &Role::SnapPresent, &filled))?;
                    if out.success() {
                        log.note(format!("{} is installed already: its ack and install are skipped", filled.join(" ")));
                        skip = 2;
                    }
                }
                Step::Run { at, argv: args, role: Role::SnapBase } => {
                    let filled = values.fill(args).unwrap_or_default();
                    let out = run_step(self.runner.as_ref(), &step, &values, log, COMMAND_TIMEOUT, true)
                        .await
                        .map_err(|e| self.explain(e, action, at, &Role::SnapBase, &filled))?;
                    let base = parse::snap_base(&out.stdout).ok_or_else(|| {
                        ProviderError::failed(format!("{}: `{}` names no base snap", action.address, filled.join(" ")))
                            .with_hint(
                                "the download may be damaged: remove it from the download directory and apply again",
                            )
                    })?;
                    values.set("base", base);
                }
                Step::Run { at, argv: args, role } => {
                    let filled = values.fill(args).unwrap_or_default();
                    run_step(self.runner.as_ref(), &step, &values, log, timeout_for(role), true)
                        .await
                        .map_err(|e| self.explain(e, action, at, role, &filled))?;
                    if role == &Role::RemoveHostMicrok8s {
                        // `--purge` takes the snap's data and the marker in it; a marker elsewhere goes too.
                        let _ = std::fs::remove_file(&self.host_owner_marker);
                    }
                }
                Step::Write { at: Where::Host, path, .. } if path == HOST_OWNER_MARKER => {
                    self.write_host_marker(log)?
                }
                Step::Until { step: inner, timeout_secs, every_secs } => {
                    self.until(action, inner, *timeout_secs, *every_secs, &values, log).await?
                }
                Step::Call { purpose: Purpose::PushFile { member, path }, path: call, .. } => {
                    self.push_file(action, member, path, call, log).await?
                }
                Step::Call { purpose: Purpose::PushDownload { member, from, path }, path: call, .. } => {
                    self.push_download(action, member, from, path, call, log).await?
                }
                Step::Call { purpose: Purpose::RecordSnap { member, download }, path: call, .. } => {
                    self.record_snap(action, member, download, call, log).await?
                }
                Step::Note(n) => log.note(n.clone()),
                other => {
                    return Err(ProviderError::failed(format!(
                        "{}: the MicroK8s layer cannot carry out the step `{other}` (an internal error)",
                        action.address
                    )))
                }
            }
        }
        if let (Kind::Microk8s, Some(m)) = (action.kind, action.member.as_deref()) {
            self.record_install(action, m, log).await?;
        }
        Ok(())
    }

    /// Keeps in the record whether MicroK8s is now installed in `member`'s container, for when the
    /// container is stopped and nothing inside can be seen.
    async fn record_install(&self, action: &Action, member: &str, log: &ActionLog) -> Result<(), ProviderError> {
        let written = match action.op {
            Op::Delete => self.installs.remove(member),
            _ => match self.container(member).await? {
                Some(c) => self.installs.set(member, &c.identity),
                None => return Ok(()),
            },
        };
        written.map_err(|e| {
            ProviderError::failed(format!(
                "{}: cannot write the record {}",
                action.address,
                self.installs.path().display()
            ))
            .with_hint("check that the directory beside the config is writable by you, then apply again")
            .caused_by(e)
        })?;
        log.note(format!(
            "recorded in {} that MicroK8s is {} in {member}",
            self.installs.path().display(),
            if action.op == Op::Delete { "gone" } else { "installed" }
        ));
        Ok(())
    }

    /// Runs `step` until it succeeds, every `every_secs` (or the provider's poll interval, when shorter),
    /// for at most `timeout_secs`.
    async fn until(
        &self,
        action: &Action,
        step: &Step,
        timeout_secs: u64,
        every_secs: u64,
        values: &Values,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let Step::Run { at, argv: args, role } = step else {
            return Err(ProviderError::failed(format!(
                "{}: `{step}` is not a command (an internal error)",
                action.address
            )));
        };
        let filled = values.fill(args).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
        let every = Duration::from_secs(every_secs).min(self.poll_interval.max(Duration::from_millis(1)));
        loop {
            let out = run_step(self.runner.as_ref(), step, values, log, timeout_for(role), false)
                .await
                .map_err(|e| self.explain(e, action, at, role, &filled))?;
            if out.success() {
                return Ok(());
            }
            if tokio::time::Instant::now() + every > deadline {
                return Err(ProviderError::failed(format!(
                        "{}: `{}` did not succeed within {timeout_secs} s: {}",
                        action.address,
                        filled.join(" "),
                        out.last_line()
                    )).with_hint("the container's snapd has not finished seeding: look at `snap changes` inside it, then apply again"));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Carries out a catalogue file push through the runner. The only files the MicroK8s layer pushes this
    /// way are a member's local registry files; their bytes come from the catalogue
    /// ([`testbed_steps::member_registry_files`]), so that what is written is what `--dry-run` names.
    async fn push_file(
        &self,
        action: &Action,
        member: &str,
        path: &str,
        call: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let address = &action.address;
        let Some((_, content)) = testbed_steps::member_registry_files(&self.cx).into_iter().find(|(p, _)| p == path)
        else {
            return Err(ProviderError::failed(format!(
                "{address}: the MicroK8s layer cannot write {path} in {member} (an internal error)"
            )));
        };
        let (_, what) = self.registry_file_role(path);
        log.api("POST", call);
        self.runner.push_file(member, path, content.into_bytes(), 0o644).await.map_err(|e| ProviderError::failed(format!("{address}: cannot write {what} in {member}")).with_hint(format!(
                "check that container {member} runs and that MicroK8s is installed in it ({} exec {member} -- ls {}); then run testbed apply again",
                self.lxc(),
                testbed_steps::REGISTRY_CERTS_DIR
            )).caused_by(e))?;
        log.note(format!("wrote {path} in {member} (mode 0644): pulls from the local registry over plain HTTP"));
        Ok(())
    }

    /// Pushes a download from the host into a member (0644: snaps and assertions are public).
    async fn push_download(
        &self,
        action: &Action,
        member: &str,
        from: &str,
        path: &str,
        call: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let address = &action.address;
        let bytes = std::fs::read(self.on_host(from)).map_err(|e| {
            ProviderError::failed(format!("{address}: cannot read the download {from}"))
                .with_hint("apply again: the download is fetched again when it is not complete")
                .caused_by(e)
        })?;
        let size = bytes.len();
        log.api("POST", call);
        self.runner.push_file(member, path, bytes, 0o644).await.map_err(|e| {
            ProviderError::failed(format!("{address}: pushing {from} into {member} failed"))
                .with_hint(format!("check that container {member} runs and has room for it, then apply again"))
                .caused_by(e)
        })?;
        log.note(format!("pushed {from} ({size} bytes) to {path} in {member}"));
        Ok(())
    }

    /// Writes testbed's record of the snap installed in `member` from the download `download`: the channel
    /// the file wants and the revision the download's assertions name.
    async fn record_snap(
        &self,
        action: &Action,
        member: &str,
        download: &str,
        call: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let address = &action.address;
        let channel = action.desired.as_ref().and_then(|r| r.spec.get("channel")).cloned().unwrap_or_default();
        let revision = self.downloaded_revision(download).ok_or_else(|| {
            ProviderError::failed(format!(
                "{address}: {}.assert names no snap revision",
                self.cx.snap_download(download)
            ))
            .with_hint("remove the download from the download directory and apply again")
        })?;
        let content = testbed_steps::snap_record(&channel, &revision);
        log.api("POST", call);
        self.runner.push_file(member, testbed_steps::SNAP_RECORD, content.into_bytes(), 0o644).await.map_err(|e| {
            ProviderError::failed(format!("{address}: cannot write {} in {member}", testbed_steps::SNAP_RECORD))
                .with_hint("without it the next plan sees no channel; apply again")
                .caused_by(e)
        })?;
        log.note(format!("recorded in {member}: MicroK8s {channel}, revision {revision}, installed from the download"));
        Ok(())
    }

    /// Says which member (or the host) a failed command was about, and what to try next.
    fn explain(&self, e: ProviderError, action: &Action, at: &Where, role: &Role, argv: &[String]) -> ProviderError {
        let where_ = match at {
            Where::Host => "on the host".to_owned(),
            Where::Member(m) => format!("in {m}"),
        };
        let hint = e.hint().map(str::to_owned);
        if let Role::WaitReady { timeout_secs } = role {
            let secs = Duration::from_secs(*timeout_secs);
            return ProviderError::failed(format!(
                "{}: MicroK8s {where_} was not ready within {}",
                action.address,
                shown(secs)
            ))
            .with_hint(format!(
                "see what holds it up: {}; then run testbed apply again",
                self.by_hand(at, "microk8s inspect")
            ))
            .caused_by(e);
        }
        if e.kind() == ErrorKind::Precondition && argv.first().map(String::as_str) == Some("microk8s") {
            let first = match at {
                Where::Host => "host.microk8s".to_owned(),
                Where::Member(m) => format!("microk8s.{m}"),
            };
            return ProviderError::precondition(format!("{}: MicroK8s is not installed {where_}", action.address))
                .with_hint(format!("apply {first} first (run testbed apply again: it observes afresh)"));
        }
        let e = e.context(action.address.to_string());
        match hint {
            Some(_) => e,
            None => e.with_hint(format!(
                "run it yourself to see more: {}",
                self.by_hand(at, &argv.iter().map(|a| testbed_steps::quote(a)).collect::<Vec<_>>().join(" "))
            )),
        }
    }

    /// Checks that testbed may write or remove the kubeconfig files at `paths`.
    fn check_ours(&self, address: &Address, member: &str, paths: &[&str], verb: &str) -> Result<(), ProviderError> {
        for p in paths {
            let refuse = |what: String| {
                ProviderError::precondition(format!(
                    "refusing to {verb} {p} for {address}: {what}; testbed changes only what it wrote"
                ))
                .with_hint("move the file away (or put it elsewhere with [host] kubeconfig_dir), then apply again")
            };
            match kubeconfig::read(Path::new(p)) {
                OnDisk::Absent => {}
                OnDisk::Unreadable(why) => return Err(refuse(why)),
                OnDisk::File { marker: Some(m), .. } if m.testbed == self.testbed && m.member == member => {}
                OnDisk::File { marker: Some(m), .. } if m.testbed != self.testbed => {
                    return Err(refuse(format!("it belongs to another testbed, {:?}", m.testbed)))
                }
                OnDisk::File { marker: Some(_), .. } => {
                    return Err(refuse("it is testbed's kubeconfig of another member".into()))
                }
                OnDisk::File { marker: None, .. } => {
                    return Err(refuse("it exists and testbed did not write it (no marker line)".into()))
                }
            }
        }
        Ok(())
    }

    async fn write_kubeconfig(&self, action: &Action, r: &Resource, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &action.address;
        let member = r.member.as_deref().ok_or_else(|| {
            ProviderError::failed(format!("{address}: the resource names no member (an internal error in the plan)"))
        })?;
        let setting = |key: &str| -> Result<&str, ProviderError> {
            r.spec.get(key).map(String::as_str).ok_or_else(|| {
                ProviderError::failed(format!(
                    "{address}: the setting {key} is missing (an internal error in the plan)"
                ))
            })
        };
        let (path, server) = (setting("path")?, setting("server")?);
        let (karmada_path, karmada_server) = (setting("karmada_path")?, setting("karmada_server")?);
        self.check_ours(address, member, &[path, karmada_path], "overwrite")?;
        self.require_running(address, member, &format!("write the kubeconfig of {member}")).await?;

        // `microk8s config` prints the admin credentials: never logged, never quoted in an error.
        let at = Where::Member(member.to_owned());
        log.command(&[format!("{member}$"), "microk8s".into(), "config".into()]);
        let out: Output = self.runner.run(&at, &argv(&["microk8s", "config"]), COMMAND_TIMEOUT).await.map_err(|e| {
            let hint = format!("try it yourself: {}", self.by_hand(&at, "microk8s config"));
            match e {
                CommandError::NotFound { .. } => {
                    ProviderError::precondition(format!("{address}: MicroK8s is not installed in {member}"))
                        .with_hint(format!("apply microk8s.{member} first"))
                }
                CommandError::Member { .. } => {
                    ProviderError::unavailable(address.to_string()).with_hint(hint).caused_by(e)
                }
                _ => ProviderError::failed(address.to_string()).with_hint(hint).caused_by(e),
            }
        })?;
        log.note(format!(
            "`microk8s config` printed {} bytes (the admin kubeconfig: not logged), exit code {}",
            out.stdout.len(),
            out.code
        ));
        if !out.success() {
            // Only stderr is quoted: stdout may hold part of the credentials.
            let why = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
            return Err(ProviderError::failed(format!(
                "{address}: `microk8s config` in {member} failed (exit code {}): {why}",
                out.code
            ))
            .with_hint(format!("try it yourself: {}", self.by_hand(&at, "microk8s status"))));
        }
        let files = kubeconfig::rewrite(&out.stdout, &self.testbed, member, server, karmada_server).map_err(|e| {
            ProviderError::failed(format!("{address}: the output of `microk8s config` in {member} cannot be used"))
                .with_hint(format!("look at it yourself: {}", self.by_hand(&at, "microk8s config")))
                .caused_by(e)
        })?;
        drop(out);
        for (p, text, s) in [(path, &files.people, server), (karmada_path, &files.karmada, karmada_server)] {
            testbed_command::files::write_private(Path::new(p), text.as_bytes()).map_err(|e| {
                ProviderError::failed(format!("{address}: cannot write {p}"))
                    .with_hint("check that the directory ([host] kubeconfig_dir) is writable by you")
                    .caused_by(e)
            })?;
            log.note(format!("wrote {p} (mode 0600), server {s}"));
        }
        self.wait_nodes_ready(member, path, server, &files.people, log).await
    }

    /// Waits until every node is Ready through the people kubeconfig, at most the ready timeout. Errors start
    /// with the member's name ("member2: nodes not Ready after 300 s: member2 (KubeletNotReady: ...)").
    async fn wait_nodes_ready(
        &self,
        member: &str,
        path: &str,
        server: &str,
        text: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        log.api("GET", &format!("{server}/api/v1/nodes"));
        let started = tokio::time::Instant::now();
        let deadline = started + self.ready_timeout;
        let connect = self.ready_timeout.min(ApiConfig::DEFAULT_CONNECT_TIMEOUT);
        let request = self.ready_timeout.min(ApiConfig::DEFAULT_REQUEST_TIMEOUT);
        let mut logged = String::new();
        let last = loop {
            let last = match nodes(&self.clients, text, &self.network, connect, request).await {
                Ok(report) if report.all_ready() => {
                    let names: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
                    log.note(format!("{member}: every node Ready ({})", names.join(", ")));
                    return Ok(());
                }
                Ok(report) => Err(not_ready_nodes(&report)),
                Err(e) if retryable(&e) => Ok(e),
                Err(e) => {
                    return Err(ProviderError::failed(member).with_hint(format!(
                            "{path} holds what `microk8s config` printed just now; if MicroK8s in {member} was reinstalled meanwhile, run testbed apply again"
                        )).caused_by(e))
                }
            };
            // Say what is waited for once per change, not once per poll.
            let now = match &last {
                Err(nodes) => format!("waiting for nodes to be Ready: {nodes}"),
                Ok(e) => format!("waiting for the API: {e}"),
            };
            if now != logged {
                log.note(format!("{member}: {now}"));
                logged = now;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break last;
            }
            tokio::time::sleep(self.poll_interval.min(left)).await;
        };
        let waited = shown(self.ready_timeout);
        Err(match last {
            Err(nodes) => ProviderError::failed(format!("{member}: nodes not Ready after {waited}: {nodes}")).with_hint(format!(
                    "see why: kubectl --kubeconfig {path} describe nodes, or {}; then run testbed apply again",
                    self.by_hand(&Where::Member(member.to_owned()), "microk8s inspect")
                )),
            Ok(e) => ProviderError::failed(format!("{member}: the API did not answer through {server} within {waited}")).caused_by(e).with_hint(format!(
                    "check the API proxy ({} config device show {member}: device api, or apply proxy.{member}.api) and MicroK8s inside ({}); then run testbed apply again",
                    self.lxc(),
                    self.by_hand(&Where::Member(member.to_owned()), "microk8s status")
                )),
        })
    }

    async fn delete_kubeconfig(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &action.address;
        let member = action.member.as_deref().unwrap_or_default();
        let spec = action.observed.as_ref().map(|o| &o.spec).or(action.desired.as_ref().map(|r| &r.spec));
        let paths: Vec<&str> = ["path", "karmada_path"]
            .iter()
            .filter_map(|k| spec.and_then(|s| s.get(*k)).map(String::as_str))
            .filter(|p| !p.is_empty())
            .collect();
        self.check_ours(address, member, &paths, "remove")?;
        for p in paths {
            match std::fs::remove_file(p) {
                Ok(()) => log.note(format!("removed {p}")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => log.note(format!("{p} is already gone")),
                Err(e) => {
                    return Err(ProviderError::failed(format!("{address}: cannot remove {p}")).caused_by(e));
                }
            }
        }
        Ok(())
    }

    async fn apply_kubeconfig(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let desired = || {
            action.desired.as_ref().ok_or_else(|| {
                ProviderError::failed(format!(
                    "{}: a {} action without the file's settings (an internal error in the plan)",
                    action.address,
                    action.op.name()
                ))
            })
        };
        match action.op {
            Op::Create | Op::Update => self.write_kubeconfig(action, desired()?, log).await,
            Op::Replace => {
                let r = desired()?;
                // Files at paths the file no longer names go; the wanted ones are simply rewritten.
                if let Some(o) = &action.observed {
                    let moved = ["path", "karmada_path"].iter().any(|k| o.spec.get(*k) != r.spec.get(*k));
                    if moved {
                        self.delete_kubeconfig(action, log).await?;
                    }
                }
                self.write_kubeconfig(action, r, log).await
            }
            Op::Delete => self.delete_kubeconfig(action, log).await,
        }
    }
}

/// Looks inside the host or a container: the microk8s snap, what `microk8s status` says, testbed's addon
/// record, and (`registry_files`, in a member) the local registry files. `None` when MicroK8s is not
/// installed there.
async fn look(
    runner: &dyn CommandRunner,
    at: &Where,
    registry_files: Option<&[String]>,
) -> Result<Option<Inside>, ProviderError> {
    let where_ = match at {
        Where::Host => "on the host".to_owned(),
        Where::Member(m) => format!("in {m}"),
    };
    let list = match runner.run(at, &argv(&["snap", "list", "microk8s"]), OBSERVE_TIMEOUT).await {
        // No snapd at all: no MicroK8s either (host.packages installs snapd).
        Err(CommandError::NotFound { .. }) => return Ok(None),
        // MicroK8s may well be there: what is in it is unknown, not missing.
        Err(e) => {
            return Err(ProviderError::state_unknown(format!("cannot tell whether MicroK8s is installed {where_}"))
                .caused_by(e))
        }
        Ok(o) => o,
    };
    if !list.success() {
        if list.stderr.contains("no matching snaps installed") {
            return Ok(None);
        }
        return Err(ProviderError::state_unknown(format!(
            "cannot tell whether MicroK8s is installed {where_}: `snap list microk8s` failed (exit code {}): {}",
            list.code,
            list.last_line()
        )));
    }
    let Some(snap) = parse::snap_list(&list.stdout) else { return Ok(None) };
    let status = match runner.run(at, &argv(&["microk8s", "status", "--format", "yaml"]), OBSERVE_TIMEOUT).await {
        Ok(o) => parse::status(&o.stdout).ok_or_else(|| o.last_line().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let recorded = match runner.run(at, &argv(&["ls", "-1", ADDONS_RECORD]), OBSERVE_TIMEOUT).await {
        Ok(o) if o.success() => parse::record(&o.stdout),
        // No record yet (`ls: cannot access ...: No such file or directory`).
        _ => BTreeSet::new(),
    };
    let mut files = Vec::new();
    for path in registry_files.unwrap_or_default() {
        let read = match runner.run(at, &argv(&["cat", path]), OBSERVE_TIMEOUT).await {
            Ok(o) if o.success() => Ok(o.stdout),
            // `cat: ...: No such file or directory`.
            Ok(o) => Err(o.last_line().to_owned()),
            Err(e) => Err(e.to_string()),
        };
        files.push((path.clone(), read));
    }
    let snap_record = match registry_files {
        None => None,
        Some(_) => match runner.run(at, &argv(&["cat", testbed_steps::SNAP_RECORD]), OBSERVE_TIMEOUT).await {
            Ok(o) if o.success() => parse::snap_record(&o.stdout),
            _ => None,
        },
    };
    Ok(Some(Inside { snap, status, recorded, registry_files: files, snap_record }))
}

/// The nodes, asked through a kubeconfig's text.
async fn nodes(
    clients: &Clients,
    text: &str,
    network: &Network,
    connect: Duration,
    request: Duration,
) -> Result<NodesReport, KubeObserveError> {
    let config =
        ApiConfig::from_kubeconfig_yaml(text, None)?.with_timeouts(connect, request).with_network(network.clone());
    let client = clients.for_kubeconfig(text, &config)?;
    nodes_ready(&client).await
}

#[async_trait]
impl Provider for Microk8sProvider {
    fn layer(&self) -> Layer {
        Layer::Microk8s
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        let (downloads, snap_revisions) = self.observe_downloads(wanted).await;
        let mut resources = self.observe_all(wanted).await?;
        resources.extend(downloads);
        Ok(LayerObservation { resources, snap_revisions, ..Default::default() })
    }

    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        match action.kind {
            Kind::Kubeconfig if action.runs() => self.apply_kubeconfig(action, log).await,
            Kind::HostMicrok8s
            | Kind::HostAddons
            | Kind::SnapDownload
            | Kind::Microk8s
            | Kind::Microk8sAddons
            | Kind::Kubeconfig => self.run_catalogue(action, log).await,
            other => Err(ProviderError::failed(format!("the MicroK8s layer does not handle {other:?} resources"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_get_their_limit_plus_a_margin() {
        assert_eq!(timeout_for(&Role::WaitReady { timeout_secs: 300 }), Duration::from_secs(360));
        assert_eq!(timeout_for(&Role::SnapChange), SNAP_TIMEOUT);
        assert_eq!(timeout_for(&Role::AddonChange), ADDON_TIMEOUT);
        assert_eq!(timeout_for(&Role::Plain), COMMAND_TIMEOUT);
    }

    #[test]
    fn the_catalogue_writes_the_markers_observation_reads() {
        let c = testbed_config::parse(Path::new("testbed.toml"), "").unwrap();
        let cx = Context::new(&c);
        let d = testbed_plan::desired::build(&c, &Default::default());
        let plan = testbed_plan::plan(&d, &Default::default()).unwrap();
        let shown: Vec<String> = plan
            .actions()
            .into_iter()
            .filter(|a| matches!(a.kind, Kind::HostMicrok8s | Kind::HostAddons))
            .flat_map(|a| testbed_steps::steps(a, &cx))
            .map(|s| s.to_string())
            .collect();
        assert!(shown.iter().any(|s| s.contains(HOST_OWNER_MARKER)), "{shown:#?}");
        assert!(shown.iter().any(|s| s.contains(&format!("touch {ADDONS_RECORD}/dns"))), "{shown:#?}");
    }
}
