//! `testbed doctor [MEMBER...]`: the troubleshooting guide, from the outside in, as findings. Read-only: it
//! observes through the same providers and seams as `plan` and `status`, and changes nothing.
//!
//! The host first (LXD answers, the pre-flight, firewall rules and kernel limits, the host's MicroK8s and the
//! Karmada control plane), then for each member: its container, the API proxy device, the host port (who holds
//! it) and a TLS handshake through it, the member's API through its kubeconfig and its nodes, its `Cluster` in
//! Karmada, its pods that are not Ready with the events that say why, and each application proxy (and, when
//! one does not answer, whether its pod is at fault or the proxy: when the pod is Ready where the proxy
//! forwards, the port-forward test asks the pod directly through the member's API).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use testbed_config::{Member, PodTarget, Proxy, MEMBER_API_PORT};
use testbed_kube::{HandshakeFailure, KubeObserveError};
use testbed_lxd::follow::reach;
use testbed_lxd::provider::{pod_connect, HostPort, PortHolder};
use testbed_microk8s::{MemberApiError, PodTrouble};
use testbed_plan::{Address, DesiredState, Health, Kind, Layer, ObservedState, Owner};
use testbed_provider::{ContainerFacts, ContainerView as _, DirectAnswer, PodLookup as _};

use crate::cli::Cli;
use crate::error::CliError;
use crate::session::{Seams, Session};
use crate::style;

/// The version of `doctor --json`'s format: a change that removes or renames a field bumps the major number.
pub const FORMAT_VERSION: &str = "1.0";

/// How long the handshake through a host port may take to connect, and again to complete.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(3);

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Lxd,
    Preflight,
    Firewall,
    KernelLimits,
    HostMicrok8s,
    KarmadaControlPlane,
    Container,
    ApiProxy,
    HostPort,
    Tls,
    Api,
    Nodes,
    Cluster,
    Pods,
    AppProxy,
}

impl Check {
    /// Its name in the text report.
    fn title(self) -> &'static str {
        match self {
            Check::Lxd => "LXD",
            Check::Preflight => "pre-flight",
            Check::Firewall => "firewall",
            Check::KernelLimits => "kernel limits",
            Check::HostMicrok8s => "host MicroK8s",
            Check::KarmadaControlPlane => "Karmada",
            Check::Container => "container",
            Check::ApiProxy => "API proxy",
            Check::HostPort => "host port",
            Check::Tls => "TLS",
            Check::Api => "member API",
            Check::Nodes => "nodes",
            Check::Cluster => "Karmada cluster",
            Check::Pods => "pods",
            Check::AppProxy => "app proxy",
        }
    }

    /// The layer whose world answered it: a simulated layer's answer is said to be one.
    fn layer(self) -> Layer {
        match self {
            Check::Lxd | Check::Container | Check::ApiProxy | Check::HostPort | Check::AppProxy => Layer::Lxd,
            Check::Preflight | Check::Firewall | Check::KernelLimits => Layer::Host,
            Check::HostMicrok8s | Check::Tls | Check::Api | Check::Nodes | Check::Pods => Layer::Microk8s,
            Check::KarmadaControlPlane | Check::Cluster => Layer::Karmada,
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not checked: what it needs is missing or failed (another finding says why), or its layer cannot be.
    Skipped,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skipped => "skip",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "1;31",
            Status::Skipped => "2",
        }
    }
}

/// One finding: what was checked, on which member (none: the host), what was seen, what to do next.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: Check,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// What in the member it is about: an application proxy's name, a pod's `namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub status: Status,
    pub seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Whether the world that answered is the simulated machine's.
    pub simulated: bool,
}

fn finding(
    check: Check,
    member: Option<&str>,
    status: Status,
    seen: impl Into<String>,
    next: Option<String>,
) -> Finding {
    Finding {
        check,
        member: member.map(str::to_owned),
        subject: None,
        status,
        seen: seen.into(),
        next,
        simulated: false,
    }
}

fn about(mut f: Finding, subject: impl Into<String>) -> Finding {
    f.subject = Some(subject.into());
    f
}

#[derive(Serialize)]
struct Report<'a> {
    format_version: &'static str,
    simulated: Vec<&'static str>,
    members: &'a [String],
    findings: &'a [Finding],
    summary: Summary,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    pass: usize,
    warn: usize,
    fail: usize,
    skipped: usize,
}

impl Summary {
    fn of(findings: &[Finding]) -> Summary {
        let mut s = Summary::default();
        for f in findings {
            match f.status {
                Status::Pass => s.pass += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        s
    }
}

/// `testbed doctor [--json] [MEMBER...]`: exit 0 when nothing failed, 1 when something did.
pub async fn doctor(cli: &Cli, json: bool, only: &[String]) -> Result<ExitCode, CliError> {
    let session = Session::open(cli)?;
    let members = select(&session.config.file.members, only)?;
    if !json {
        eprintln!("{}", session.simulation_banner());
    }
    let (desired, observed) = session.observe().await;
    let seams = session.seams();
    let cx = Context { session: &session, desired: &desired, observed: &observed, seams: &seams };
    let facts = match &seams.lxd {
        Some(lxd) => lxd.containers().await.map_err(|e| e.report().to_string()),
        None => Err("the LXD provider could not be set up".to_owned()),
    };
    let mut findings = cx.host(&facts).await;
    for m in &members {
        findings.extend(cx.member(m, &facts).await);
    }
    for f in &mut findings {
        f.simulated = session.simulated.contains(&f.check.layer());
    }
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let summary = Summary::of(&findings);
    let failed = summary.fail > 0;
    if json {
        let report = Report {
            format_version: FORMAT_VERSION,
            simulated: session.simulated.iter().map(|l| l.name()).collect(),
            members: &names,
            findings: &findings,
            summary,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| CliError::usage(e.to_string(), None))?;
        println!("{text}");
    } else {
        print!("{}", text(&findings, &summary, style::stdout()));
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The members named on the command line (all when none is), or a usage error naming the file's members.
fn select<'a>(members: &'a [Member], only: &[String]) -> Result<Vec<&'a Member>, CliError> {
    if only.is_empty() {
        return Ok(members.iter().collect());
    }
    let names = || members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
    only.iter()
        .map(|name| {
            members.iter().find(|m| &m.name == name).ok_or_else(|| {
                CliError::usage(
                    format!("doctor: the file has no member {name:?}"),
                    Some(format!("its members are: {}; name one or more of them, or none for all", names())),
                )
            })
        })
        .collect()
}

/// The findings as a person reads them: the host's, then each member's, then the count.
fn text(findings: &[Finding], summary: &Summary, color: bool) -> String {
    let mut out = String::new();
    let mut group: Option<Option<&str>> = None;
    let width = findings.iter().map(|f| f.check.title().len()).max().unwrap_or(0);
    for f in findings {
        let this = f.member.as_deref();
        if group != Some(this) {
            let heading = match this {
                None => "Host".to_owned(),
                Some(m) => format!("Member {m}"),
            };
            out.push_str(&format!(
                "{}{}\n",
                if group.is_some() { "\n" } else { "" },
                style::paint(&heading, "1", color)
            ));
            group = Some(this);
        }
        let word = style::paint(&format!("{:<4}", f.status.word()), f.status.colour(), color);
        let subject = f.subject.as_ref().map(|s| format!("{s}: ")).unwrap_or_default();
        let simulated = if f.simulated { " [simulated]" } else { "" };
        out.push_str(&format!("  {word}  {:<width$}  {subject}{}{simulated}\n", f.check.title(), f.seen));
        if let Some(next) = &f.next {
            out.push_str(&format!("  {:<4}  {:<width$}  next: {next}\n", "", ""));
        }
    }
    out.push_str(&format!(
        "\nDoctor: {} passed, {} failed, {} warning{}, {} skipped.\n",
        summary.pass,
        summary.fail,
        summary.warn,
        if summary.warn == 1 { "" } else { "s" },
        summary.skipped
    ));
    out
}

struct Context<'a> {
    session: &'a Session,
    desired: &'a DesiredState,
    observed: &'a ObservedState,
    seams: &'a Seams,
}

impl Context<'_> {
    /// `lxc` or `incus`, for the commands the findings suggest.
    fn lxc(&self) -> &'static str {
        match self.session.config.file.lxd.backend {
            testbed_config::Backend::Lxd => "lxc",
            testbed_config::Backend::Incus => "incus",
        }
    }

    /// Why a layer could not be observed, when it could not.
    fn unobservable(&self, layer: Layer) -> Option<&str> {
        self.observed.unobservable.iter().find(|u| u.layer == layer).map(|u| u.reason.as_str())
    }

    async fn host(&self, facts: &Result<Vec<ContainerFacts>, String>) -> Vec<Finding> {
        let mut out = Vec::new();
        out.push(match facts {
            Ok(all) => {
                let mine = all.iter().filter(|c| c.owned).count();
                finding(
                    Check::Lxd,
                    None,
                    Status::Pass,
                    format!("the daemon answers: {} container{}, {mine} of them testbed's", all.len(), plural(all.len())),
                    None,
                )
            }
            Err(why) => finding(
                Check::Lxd,
                None,
                Status::Fail,
                format!("the daemon does not answer: {why}"),
                Some(format!(
                    "start it (`{} waitready` says when it is up; `testbed plan` installs it if it is missing), then run doctor again",
                    if self.lxc() == "lxc" { "lxd" } else { "incus admin" }
                )),
            ),
        });
        match &self.seams.host {
            Some(system) => {
                let found = testbed_host::preflight::check(&self.session.config, self.observed, system).await;
                if found.is_empty() {
                    out.push(finding(
                        Check::Preflight,
                        None,
                        Status::Pass,
                        "kernel modules, host ports and disk space are as the file needs",
                        None,
                    ));
                }
                for f in found {
                    let status = if f.blocking { Status::Fail } else { Status::Warn };
                    out.push(finding(Check::Preflight, None, status, f.message, f.hint));
                }
            }
            None => out.push(finding(
                Check::Preflight,
                None,
                Status::Skipped,
                "the host layer is simulated: this host's kernel, ports and disk are not what the lab runs on",
                None,
            )),
        }
        for (check, kind) in [
            (Check::Firewall, Kind::HostFirewall),
            (Check::Firewall, Kind::HostNodeports),
            (Check::KernelLimits, Kind::HostSysctl),
            (Check::HostMicrok8s, Kind::HostMicrok8s),
            (Check::KarmadaControlPlane, Kind::KarmadaControlPlane),
        ] {
            let wanted: Vec<&Address> =
                self.desired.resources.values().filter(|r| r.kind == kind).map(|r| &r.address).collect();
            out.extend(wanted.into_iter().filter_map(|a| self.resource(check, None, a)));
        }
        out
    }

    /// A wanted resource as observation found it: there and as the file wants, or not (with why).
    fn resource(&self, check: Check, member: Option<&str>, address: &Address) -> Option<Finding> {
        let want = self.desired.resources.get(address)?;
        let f = |status, seen: String, next: Option<String>| finding(check, member, status, seen, next);
        let apply = || Some("`testbed apply` brings it about (`testbed plan` shows how)".to_owned());
        if let Some(why) = self.unobservable(want.kind.layer()) {
            return Some(f(
                Status::Skipped,
                format!("{address}: {} could not be observed: {why}", want.kind.layer().name()),
                None,
            ));
        }
        Some(match self.observed.get(address) {
            None => f(Status::Fail, format!("{address} is missing"), apply()),
            Some(o) => match (&o.owner, &o.health) {
                (Owner::Other(who), _) => f(Status::Warn, format!("{address}: {who}"), None),
                (Owner::Testbed, Health::NeedsRepair(why)) => f(Status::Fail, format!("{address}: {why}"), apply()),
                (Owner::Testbed, Health::Ok) => {
                    let changes = testbed_plan::planner::diff(want.kind, &want.spec, &o.spec);
                    if changes.is_empty() {
                        f(Status::Pass, format!("{address} is as the file wants"), None)
                    } else {
                        f(
                            Status::Fail,
                            format!("{address} differs: {}", testbed_plan::planner::describe(&changes)),
                            apply(),
                        )
                    }
                }
            },
        })
    }

    async fn member(&self, m: &Member, facts: &Result<Vec<ContainerFacts>, String>) -> Vec<Finding> {
        let name = m.name.as_str();
        let mut out = Vec::new();
        let (found, container) = self.container(name, facts);
        out.push(found);
        let running = container.is_some_and(|c| c.running);

        // The API proxy device, and the host port it should hold.
        let api = Address::new(Kind::Proxy, &[name, "api"]);
        let wanted = self.desired.resources.get(&api).map(|r| {
            let get = |k: &str| r.spec.get(k).cloned().unwrap_or_default();
            (get("listen"), get("connect"))
        });
        let listen = wanted.as_ref().map(|w| w.0.clone()).unwrap_or_else(|| format!("tcp:{}:{}", m.listen, m.api_port));
        let (device, device_ok) = self.api_device(name, container, wanted.as_ref());
        out.extend(device);
        out.extend(self.host_port(name, &listen, running, device_ok, facts).await);

        let kubeconfig = self.seams.pods.as_ref().map(|p| p.kubeconfig_path(name).display().to_string());
        let (api, api_ok) = self.api_and_nodes(name, running, kubeconfig.as_deref()).await;
        out.extend(api);
        // Its Cluster in Karmada.
        out.push(self.cluster(name, kubeconfig.as_deref()));
        out.extend(self.pods(name, api_ok, kubeconfig.as_deref()).await);

        // Its application proxies.
        for p in self.session.config.file.proxies.iter().filter(|p| p.member == name) {
            out.push(about(self.app_proxy(p, container, kubeconfig.as_deref()).await, p.name.clone()));
        }
        out
    }

    /// The member's container: there, testbed's, running. The finding, and the container when it is
    /// testbed's.
    fn container<'a>(
        &self,
        name: &str,
        facts: &'a Result<Vec<ContainerFacts>, String>,
    ) -> (Finding, Option<&'a ContainerFacts>) {
        let f = |status, seen: String, next: Option<String>| finding(Check::Container, Some(name), status, seen, next);
        let lxc = self.lxc();
        let all = match facts {
            Err(_) => return (f(Status::Skipped, "LXD does not answer (see the host's findings)".into(), None), None),
            Ok(all) => all,
        };
        match all.iter().find(|c| c.name == name) {
            None => {
                (f(Status::Fail, format!("there is no container {name}"), Some("`testbed apply` creates it".into())), None)
            }
            Some(c) if !c.owned => (
                f(
                    Status::Fail,
                    format!("container {name} is not testbed's (it has no user.testbed.owner key of this file's name)"),
                    Some("rename the member in the file, or move that container away".into()),
                ),
                None,
            ),
            Some(c) if c.running => (
                f(Status::Pass, format!("running, at {}", c.ipv4.as_deref().unwrap_or("an address from DHCP")), None),
                Some(c),
            ),
            Some(c) => (
                f(
                    Status::Fail,
                    format!("container {name} is not running: nothing in it answers, and its proxies do not listen"),
                    Some(format!("`{lxc} start {name}` (or `testbed apply`, which starts it); `{lxc} info {name} --show-log` says why it stopped")),
                ),
                Some(c),
            ),
        }
    }

    /// The `api` proxy device: there and as the file wants (`wanted`: its `listen` and `connect`). The
    /// finding (none when the file wants no such device), and whether the device is as wanted.
    fn api_device(
        &self,
        name: &str,
        container: Option<&ContainerFacts>,
        wanted: Option<&(String, String)>,
    ) -> (Option<Finding>, bool) {
        let f = |status, seen: String, next: Option<String>| finding(Check::ApiProxy, Some(name), status, seen, next);
        let lxc = self.lxc();
        let (Some(c), Some((wl, wc))) = (container, wanted) else {
            return match container {
                None => (Some(f(Status::Skipped, "no container of testbed's to look at".into(), None)), false),
                Some(_) => (None, false),
            };
        };
        match c.proxies.get("api") {
            None => (
                Some(f(
                    Status::Fail,
                    format!("container {name} has no proxy device `api` (it forwards {wl} to {wc} inside)"),
                    Some(format!("`testbed apply` adds it again (`{lxc} config device show {name}` lists the container's devices)")),
                )),
                false,
            ),
            Some((l, c)) if l != wl || c != wc => (
                Some(f(
                    Status::Fail,
                    format!("proxy device `api` forwards {l} to {c}; the file wants {wl} to {wc}"),
                    Some("`testbed apply` sets it as the file wants".into()),
                )),
                false,
            ),
            Some((l, c)) => (Some(f(Status::Pass, format!("proxy device `api` forwards {l} to {c}"), None)), true),
        }
    }

    /// Who holds the API's host port, and whether TLS is spoken through it.
    async fn host_port(
        &self,
        name: &str,
        listen: &str,
        running: bool,
        device_ok: bool,
        facts: &Result<Vec<ContainerFacts>, String>,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let f = |check, status, seen: String, next: Option<String>| finding(check, Some(name), status, seen, next);
        let lxc = self.lxc();
        let port = HostPort::parse(listen);
        let mut port_ok = false;
        let lxd = self.seams.lxd.as_ref().filter(|_| facts.is_ok());
        match (port, lxd) {
            (Some(port), Some(lxd)) => {
                let at = reach(port);
                let holder = lxd.port_holder(port).await;
                let (status, seen, next) = match &holder {
                Some(PortHolder::Device { container, device }) if container == name && device == "api" => {
                    port_ok = true;
                    (Status::Pass, format!("{at} is held by {name}'s proxy device `api`"), None)
                }
                Some(PortHolder::Device { container, device }) => (
                    Status::Fail,
                    format!("{at} is held by proxy device `{device}` of container {container}, not by {name}'s API proxy"),
                    Some(format!("change {name}'s `api_port` in the file, or remove that device; then `testbed apply`")),
                ),
                Some(PortHolder::Program) => {
                    let who = self.port_holders(port.addr.port());
                    let by = if who.is_empty() { "another program".to_owned() } else { format!("another program: {}", who.join(", ")) };
                    (
                        Status::Fail,
                        format!("{at} is held by {by}, not by {name}'s API proxy"),
                        Some(format!(
                            "stop it (`ss -ltnp 'sport = :{p}'` shows it), or change {name}'s `api_port` in the file; then `testbed apply` adds the proxy again",
                            p = port.addr.port()
                        )),
                    )
                }
                None if !running => (
                    Status::Fail,
                    format!("nothing listens on {at}: LXD's proxies listen only while their container runs"),
                    Some(format!("start the container (`{lxc} start {name}`)")),
                ),
                None => (
                    Status::Fail,
                    format!("nothing listens on {at}"),
                    Some(if device_ok {
                        format!("the device is there but does not listen: `{lxc} restart {name}` starts its proxies again")
                    } else {
                        "`testbed apply` adds the proxy device again".to_owned()
                    }),
                ),
            };
                out.push(f(Check::HostPort, status, seen, next));
                if port_ok {
                    out.push(self.handshake(name, at).await);
                } else {
                    out.push(f(Check::Tls, Status::Skipped, format!("nothing of {name}'s listens on {at}"), None));
                }
            }
            (None, _) => {
                out.push(f(
                    Check::HostPort,
                    Status::Skipped,
                    format!("the API proxy listens on {listen}, not a TCP port"),
                    None,
                ));
                out.push(f(
                    Check::Tls,
                    Status::Skipped,
                    format!("the API proxy listens on {listen}, not a TCP port"),
                    None,
                ));
            }
            (_, None) => {
                out.push(f(Check::HostPort, Status::Skipped, "LXD does not answer".into(), None));
                out.push(f(Check::Tls, Status::Skipped, "LXD does not answer".into(), None));
            }
        }
        out
    }

    /// The member's API through its kubeconfig, and its nodes. The findings, and whether the API answered.
    async fn api_and_nodes(&self, name: &str, running: bool, kubeconfig: Option<&str>) -> (Vec<Finding>, bool) {
        let mut out = Vec::new();
        let f = |check, status, seen: String, next: Option<String>| finding(check, Some(name), status, seen, next);
        let lxc = self.lxc();
        let api_ok = match (&self.seams.pods, running) {
            (Some(pods), true) => match pods.nodes(name).await {
                Ok(report) => {
                    let kc = kubeconfig.unwrap_or_default();
                    out.push(f(Check::Api, Status::Pass, format!("answers through {kc}"), None));
                    let not_ready = report.not_ready();
                    out.push(if report.nodes.is_empty() {
                    f(Check::Nodes, Status::Fail, "the cluster has no node".into(), Some(format!("`{lxc} exec {name} -- microk8s inspect`")))
                } else if not_ready.is_empty() {
                    let names: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
                    f(Check::Nodes, Status::Pass, format!("Ready: {}", names.join(", ")), None)
                } else {
                    f(
                        Check::Nodes,
                        Status::Fail,
                        format!("not Ready: {}", not_ready.join(", ")),
                        Some(format!("`kubectl --kubeconfig {kc} describe node {}` shows why; `{lxc} exec {name} -- microk8s inspect`", not_ready[0])),
                    )
                });
                    true
                }
                Err(e) => {
                    out.push(f(Check::Api, Status::Fail, e.to_string(), Some(api_next(&e, name, lxc))));
                    out.push(f(Check::Nodes, Status::Skipped, "the member's API does not answer".into(), None));
                    false
                }
            },
            (None, _) => {
                out.push(f(Check::Api, Status::Skipped, "no kubeconfig directory to read".into(), None));
                out.push(f(Check::Nodes, Status::Skipped, "the member's API cannot be asked".into(), None));
                false
            }
            (_, false) => {
                out.push(f(Check::Api, Status::Skipped, format!("container {name} is not running"), None));
                out.push(f(Check::Nodes, Status::Skipped, format!("container {name} is not running"), None));
                false
            }
        };
        (out, api_ok)
    }

    /// The member's pods that are not Ready, with the events that say why.
    async fn pods(&self, name: &str, api_ok: bool, kubeconfig: Option<&str>) -> Vec<Finding> {
        let mut out = Vec::new();
        let f = |check, status, seen: String, next: Option<String>| finding(check, Some(name), status, seen, next);
        let lxc = self.lxc();
        match (&self.seams.pods, api_ok) {
            (Some(pods), true) => match pods.troubled(name).await {
                Ok(troubled) if troubled.is_empty() => {
                    out.push(f(Check::Pods, Status::Pass, "every pod is Ready (or has completed)".into(), None))
                }
                Ok(troubled) => {
                    let kc = kubeconfig.unwrap_or_default();
                    out.extend(troubled.iter().map(|t| {
                        about(
                            f(Check::Pods, Status::Fail, pod_seen(t), Some(pod_next(t, kc))),
                            format!("{}/{}", t.namespace, t.pod.name),
                        )
                    }));
                }
                Err(e) => out.push(f(Check::Pods, Status::Fail, e.to_string(), Some(api_next(&e, name, lxc)))),
            },
            _ => out.push(f(Check::Pods, Status::Skipped, "the member's API does not answer".into(), None)),
        }
        out
    }

    /// The processes that hold a host port, when the port is this host's: LXD is real, so its proxies listen
    /// here, whether or not the host layer is simulated.
    fn port_holders(&self, port: u16) -> Vec<String> {
        if self.session.simulated.contains(&Layer::Lxd) {
            return Vec::new();
        }
        testbed_host::preflight::port_holders(&testbed_host::HostSystem::real(), port)
    }

    async fn handshake(&self, name: &str, at: std::net::SocketAddr) -> Finding {
        let f = |status, seen: String, next: Option<String>| finding(Check::Tls, Some(name), status, seen, next);
        let lxc = self.lxc();
        match testbed_kube::tls_handshake(&self.seams.network, &at.ip().to_string(), at.port(), HANDSHAKE_WAIT).await {
            Ok(h) => f(
                Status::Pass,
                format!("a TLS server answers through {at} ({}, {} certificate{})", h.version, h.certificates, plural(h.certificates)),
                None,
            ),
            Err(HandshakeFailure::Closed) => f(
                Status::Fail,
                format!("{at} accepted the connection and closed it: nothing answers behind the proxy, on 127.0.0.1:{MEMBER_API_PORT} in {name}"),
                Some(format!(
                    "MicroK8s' API server in {name} is not running: `{lxc} exec {name} -- microk8s status --wait-ready --timeout 60`, and `{lxc} exec {name} -- microk8s start` if it is stopped"
                )),
            ),
            Err(e) => f(
                Status::Fail,
                format!("no TLS handshake through {at}: {e}"),
                Some(format!("`{lxc} exec {name} -- microk8s status --wait-ready --timeout 60` says whether its API server runs")),
            ),
        }
    }

    /// The member's `Cluster` as observing Karmada found it.
    fn cluster(&self, name: &str, kubeconfig: Option<&str>) -> Finding {
        let f = |status, seen: String, next: Option<String>| finding(Check::Cluster, Some(name), status, seen, next);
        let address = Address::new(Kind::KarmadaMember, &[name]);
        if let Some(why) = self.unobservable(Layer::Karmada) {
            return f(Status::Skipped, format!("Karmada could not be observed: {why}"), None);
        }
        let Some(o) = self.observed.get(&address) else {
            return f(
                Status::Fail,
                format!("{name} is not registered with Karmada"),
                Some("`testbed apply` joins it".into()),
            );
        };
        let mode = o.spec.get("mode").cloned().unwrap_or_default();
        let from = match o.spec.get("api_endpoint") {
            Some(e) => format!("{mode} mode, endpoint {e}"),
            None => format!("{mode} mode"),
        };
        match (&o.owner, &o.health) {
            (Owner::Other(who), _) => f(Status::Warn, format!("{who} ({from})"), None),
            (Owner::Testbed, Health::Ok) => f(Status::Pass, format!("Ready ({from})"), None),
            (Owner::Testbed, Health::NeedsRepair(why)) => {
                let next = if mode == "pull" {
                    format!(
                        "karmada-agent in {name} posts its status: `kubectl --kubeconfig {} -n karmada-system logs deploy/karmada-agent`",
                        kubeconfig.unwrap_or("<member kubeconfig>")
                    )
                } else {
                    let endpoint = o.spec.get("api_endpoint").map(String::as_str).unwrap_or("<endpoint>");
                    format!(
                        "karmada-controller-manager dials {endpoint} from a pod on the host cluster: that address must reach {name}'s API (`curl -k {endpoint}/version` from the host); see the member's checks above"
                    )
                };
                f(Status::Fail, format!("{why} ({from})"), Some(next))
            }
        }
    }

    /// One application proxy: does a request through its host port get an answer; if not, is its pod or the
    /// proxy at fault.
    async fn app_proxy(&self, p: &Proxy, container: Option<&ContainerFacts>, kubeconfig: Option<&str>) -> Finding {
        let name = p.member.as_str();
        let f = |status, seen: String, next: Option<String>| finding(Check::AppProxy, Some(name), status, seen, next);
        let lxc = self.lxc();
        let Some(c) = container.filter(|c| c.running) else {
            return f(Status::Skipped, format!("container {name} is not running"), None);
        };
        let kc = kubeconfig.unwrap_or("<member kubeconfig>");
        let Some((listen, connect)) = c.proxies.get(&p.name) else {
            let said = format!("container {name} has no proxy device `{}`", p.name);
            // A proxy that follows a pod is added once its pod is Ready: a pod that is not is the cause.
            return match self.pod_of(p).await {
                Some(PodState::NotReady(states, first)) => f(
                    Status::Fail,
                    format!("{said}: testbed adds it once its pod is Ready, and its pod is not ({states}): the pod is at fault, not the proxy"),
                    Some(format!("see the pod's finding above (`kubectl --kubeconfig {kc} describe pod -n {} {first}`)", target_ns(p))),
                ),
                Some(PodState::None) => f(
                    Status::Fail,
                    format!("{said}: testbed adds it once a pod matches {}, and none does", target_selector(p)),
                    Some("start what runs the pod (`testbed status` shows the workloads)".into()),
                ),
                _ => f(Status::Fail, said, Some("`testbed apply` adds it again".into())),
            };
        };
        let (Some(port), Some(lxd)) = (HostPort::parse(listen), &self.seams.lxd) else {
            return f(Status::Skipped, format!("it listens on {listen}, not a TCP port"), None);
        };
        let at = reach(port);
        let why = match (lxd.probe())(at).await {
            Ok(n) => return f(Status::Pass, format!("a request through {at} was answered ({n} bytes)"), None),
            Err(why) => why,
        };
        let said = format!("no answer through {at} ({why})");
        let Some(target) = &p.pod else {
            return f(
                Status::Fail,
                format!("{said}; it forwards to {connect} in {name}"),
                Some(format!("check what listens on {connect} inside the container (`{lxc} exec {name} -- ss -ltn`)")),
            );
        };
        let (ns, selector, port) = (&target.namespace, &target.selector, target.port);
        match self.pod_of(p).await {
            None => f(Status::Fail, said, None),
            Some(PodState::Unknown(why)) => f(Status::Fail, format!("{said}; its pod could not be looked up: {why}"), None),
            Some(PodState::None) => f(
                Status::Fail,
                format!("{said}; no pod matches {selector} in {ns}: the proxy has nothing to forward to"),
                Some(format!("start what runs it (`kubectl --kubeconfig {kc} get deploy,sts -n {ns}`; `testbed status` shows the workloads)")),
            ),
            Some(PodState::NotReady(states, first)) => f(
                Status::Fail,
                format!("{said}; its pod is not Ready ({states}): the pod is at fault, not the proxy"),
                Some(format!("see the pod's finding above (`kubectl --kubeconfig {kc} describe pod -n {ns} {first}`)")),
            ),
            Some(PodState::Ready(pod, ip)) if *connect != pod_connect(&ip, port) => f(
                Status::Fail,
                format!("{said}; it forwards to {connect}, but its pod {pod} is at {ip} now"),
                Some("`testbed apply` points it at the pod again".into()),
            ),
            Some(PodState::Ready(pod, ip)) => {
                let (seen, next) = self.direct(p, target, &said, (&pod, &ip), kc).await;
                f(Status::Fail, seen, Some(next))
            }
        }
    }

    /// The port-forward test, for a proxy that gets no answer although its pod is Ready where it forwards:
    /// does the pod answer when asked directly, through the member API's port-forward (which connects to the
    /// pod's loopback, past the proxy and the pod's address)? What was seen and what to do next.
    async fn direct(
        &self,
        p: &Proxy,
        target: &PodTarget,
        said: &str,
        (pod, ip): (&str, &str),
        kc: &str,
    ) -> (String, String) {
        let name = p.member.as_str();
        let lxc = self.lxc();
        let (ns, port) = (target.namespace.as_str(), target.port);
        let by_hand = format!(
            "`kubectl --kubeconfig {kc} port-forward -n {ns} pod/{pod} 8888:{port}` and `curl http://localhost:8888/`"
        );
        let asked = match &self.seams.pods {
            Some(pods) => pods.ask_directly(name, ns, pod, port).await,
            None => {
                return (
                    format!("{said}; its pod {pod} is Ready at {ip}, where the proxy forwards: the proxy, or the application's port {port}, is at fault"),
                    format!("test the pod directly: {by_hand}"),
                )
            }
        };
        match asked {
            DirectAnswer::Answered(n) => (
                format!(
                    "{said}; its pod {pod} is Ready at {ip}, where the proxy forwards, and answers directly (a request through a port-forward to its port {port} got {n} bytes back): the way from the proxy to {ip}:{port} is at fault, not the pod"
                ),
                format!(
                    "an application that listens on 127.0.0.1 only answers a port-forward and not at the pod's address: make it listen on 0.0.0.0 (`kubectl --kubeconfig {kc} exec -n {ns} {pod} -- netstat -ltn` shows where it listens); if it does, re-create the proxy (`{lxc} config device remove {name} {}`, then `testbed apply`)",
                    p.name
                ),
            ),
            DirectAnswer::Refused { ref words, .. } => (
                format!(
                    "{said}; its pod {pod} is Ready at {ip}, where the proxy forwards, and does not answer directly either: a port-forward to its port {port} was refused inside the pod ({words}): the application is at fault, not the proxy"
                ),
                match asked.declared(port) {
                    Some(declared) => format!(
                        "nothing listens on port {port} in the pod, and {declared}: set the proxy's `pod.port` in the file to the port the application listens on (its log: `kubectl --kubeconfig {kc} logs -n {ns} {pod}`), or make it listen on {port}"
                    ),
                    None => format!(
                        "nothing listens on port {port} in the pod: see which port the application listens on (its log: `kubectl --kubeconfig {kc} logs -n {ns} {pod}`) and set the proxy's `pod.port` in the file to it, or make the application listen on {port}"
                    ),
                },
            ),
            DirectAnswer::Silent(why) => (
                format!(
                    "{said}; its pod {pod} is Ready at {ip}, where the proxy forwards, and does not answer directly either (through a port-forward to its port {port}: {why}): the application is at fault, not the proxy"
                ),
                format!("the application accepts connections on {port} and does not answer a request: its log, `kubectl --kubeconfig {kc} logs -n {ns} {pod}`"),
            ),
            DirectAnswer::NotAsked(why) => (
                format!(
                    "{said}; its pod {pod} is Ready at {ip}, where the proxy forwards; the port-forward test could not run ({why})"
                ),
                format!("test the pod directly: {by_hand}; if that answers, re-create the proxy (`{lxc} config device remove {name} {}`, then `testbed apply`); if not, the application does not listen on {port}", p.name),
            ),
        }
    }

    /// The pod a proxy follows, as the member's API says it is now (`None`: the proxy follows no pod, or there
    /// is no API to ask).
    async fn pod_of(&self, p: &Proxy) -> Option<PodState> {
        let target = p.pod.as_ref()?;
        let pods = self.seams.pods.as_ref()?;
        Some(match pods.pods(&p.member, &target.namespace, &target.selector).await {
            Err(e) => PodState::Unknown(e.report().to_string()),
            Ok(found) if found.is_empty() => PodState::None,
            Ok(found) => match testbed_provider::first_ready(&found) {
                Some((pod, ip)) => PodState::Ready(pod, ip),
                None => PodState::NotReady(
                    found.iter().map(|m| m.describe()).collect::<Vec<_>>().join(", "),
                    found[0].name.clone(),
                ),
            },
        })
    }
}

/// Where a proxy's pod is.
enum PodState {
    /// The first Ready pod, and its address.
    Ready(String, String),
    /// Pods match, none Ready: how each is, and the first one's name.
    NotReady(String, String),
    /// No pod matches.
    None,
    /// The API could not say.
    Unknown(String),
}

fn target_ns(p: &Proxy) -> &str {
    p.pod.as_ref().map(|t| t.namespace.as_str()).unwrap_or_default()
}

fn target_selector(p: &Proxy) -> &str {
    p.pod.as_ref().map(|t| t.selector.as_str()).unwrap_or_default()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What to do when a member's API cannot be asked, by why.
fn api_next(e: &MemberApiError, name: &str, lxc: &str) -> String {
    match e {
        MemberApiError::NoKubeconfig { .. } => "`testbed apply` writes it from `microk8s config`".into(),
        MemberApiError::Unreadable { path, .. } => format!("check the permissions of {}", path.display()),
        MemberApiError::Api(KubeObserveError::Tls { .. } | KubeObserveError::Unauthorized { .. }) => format!(
            "the kubeconfig's certificates are not this cluster's (was {name} made anew?): `testbed apply` rewrites it from `microk8s config`"
        ),
        MemberApiError::Api(KubeObserveError::Unreachable { .. }) => {
            "see the proxy, host port and TLS checks above: the API is reached through them".into()
        }
        MemberApiError::Api(_) | MemberApiError::PortForward(_) => {
            format!("`{lxc} exec {name} -- microk8s status --wait-ready --timeout 60`")
        }
    }
}

/// What `kubectl describe pod` would show about a pod that is not Ready: its phase, why its containers
/// wait, and its warning events (each once).
fn pod_seen(t: &PodTrouble) -> String {
    let mut parts = vec![format!("not Ready, {}", t.pod.phase.as_deref().unwrap_or("no phase yet"))];
    for w in &t.pod.waiting {
        let init = if w.init { "init container " } else { "container " };
        match &w.message {
            Some(m) => parts.push(format!("{init}{} waits: {}: {m}", w.container, w.reason)),
            None => parts.push(format!("{init}{} waits: {}", w.container, w.reason)),
        }
    }
    let mut seen: BTreeMap<(&str, &str), i32> = BTreeMap::new();
    let mut events = Vec::new();
    for e in t.events.iter().filter(|e| e.type_ == "Warning") {
        let n = seen.entry((e.reason.as_str(), e.message.as_str())).or_default();
        if *n == 0 {
            events.push((e.reason.as_str(), e.message.as_str()));
        }
        *n += e.count;
    }
    if !events.is_empty() {
        let listed: Vec<String> = events.iter().map(|(r, m)| format!("{r}: {m}")).collect();
        parts.push(format!("events: {}", listed.join("; ")));
    }
    for (container, text) in &t.last_lines {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            parts.push(format!("the last lines {container} wrote before it exited: {}", lines.join(" | ")));
        }
    }
    parts.join("; ")
}

/// What to do about a pod that is not Ready, from the kubelet's reasons.
fn pod_next(t: &PodTrouble, kubeconfig: &str) -> String {
    let (ns, pod) = (&t.namespace, &t.pod.name);
    let describe = format!("`kubectl --kubeconfig {kubeconfig} describe pod -n {ns} {pod}`");
    let reasons: Vec<&str> = t.pod.waiting.iter().map(|w| w.reason.as_str()).collect();
    let any = |list: &[&str]| reasons.iter().any(|r| list.contains(r));
    if any(&["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"]) {
        format!(
            "the member cannot get the image: check its name and tag, and list it in [[images]] so that testbed copies it into the local registry, where members pull from; then `testbed apply` ({describe} shows the pulls)"
        )
    } else if any(&["CrashLoopBackOff", "RunContainerError"]) {
        format!(
            "the container exits (its last lines, above, usually say why): fix its command, configuration or what it connects to; `kubectl --kubeconfig {kubeconfig} logs -n {ns} {pod} --previous` shows all it wrote"
        )
    } else if t.events.iter().any(|e| e.reason == "FailedScheduling") {
        format!("no node takes it (a PersistentVolumeClaim with no StorageClass: enable the hostpath-storage addon; or too little CPU or memory): {describe}")
    } else {
        format!("{describe} shows its events")
    }
}
