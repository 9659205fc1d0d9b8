//! The command catalogue: for every action of a plan, the exact commands (argument vectors, never shell
//! strings), API calls and file writes the real step performs, in order.
//!
//! Pure: a function of the action and the validated file. `testbed apply --dry-run` prints it; the
//! simulated machine and the real providers run the same steps. Values only known while applying (a join
//! token, the output of `microk8s config`) are [`Arg::Runtime`] placeholders, and secrets among them are
//! [`Arg::Secret`]: neither ever carries a value here, so no secret can reach a plan, a log or an error
//! through this crate.

use std::fmt;

use testbed_config::net::Subnet;
use testbed_config::{Backend, Config};
use testbed_plan::{Action, Kind, Op};

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

/// One step of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A command, as an argument vector.
    Run { at: Where, argv: Vec<Arg> },
    /// An HTTP call to an API (LXD, Kubernetes, Karmada, a registry).
    Call { api: &'static str, method: &'static str, path: String, note: String },
    /// A file written by testbed itself (not by a command), with its mode.
    Write { at: Where, path: String, mode: u32, content: String },
    /// Waiting for a condition, with its limit.
    Wait { what: String, timeout_secs: u64 },
    /// How the step behaves, for the reader.
    Note(String),
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
            Step::Run { at, argv } => {
                let prompt = match at {
                    Where::Host => "host$".to_owned(),
                    Where::Member(m) => format!("{m}$"),
                };
                let args: Vec<String> = argv.iter().map(Arg::shown).collect();
                write!(f, "{prompt} {}", args.join(" "))
            }
            Step::Call { api, method, path, note } => {
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
            Step::Note(n) => write!(f, "# {n}"),
        }
    }
}

impl Step {
    /// The argument vector with placeholders shown, for commands.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            Step::Run { argv, .. } => Some(argv.iter().map(Arg::shown).collect()),
            _ => None,
        }
    }
}

/// Paths and addresses every step shares, from the validated file.
#[derive(Debug, Clone)]
pub struct Context {
    pub backend: Backend,
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
}

/// Where MicroK8s keeps the admin kubeconfig it generates.
pub const MICROK8S_CLIENT_CONFIG: &str = "/var/snap/microk8s/current/credentials/client.config";

impl Context {
    pub fn new(config: &Config) -> Context {
        let f = &config.file;
        let gateway = Subnet::parse(&f.lxd.ipv4_address).map(|s| s.gateway.to_string()).unwrap_or_default();
        Context {
            backend: f.lxd.backend,
            host_kubeconfig: MICROK8S_CLIENT_CONFIG.to_owned(),
            karmada_kubeconfig: format!("{}/karmada-apiserver.config", f.karmada.data_dir.trim_end_matches('/')),
            gateway,
            registry_port: f.registry.port,
            karmada_version: f.karmada.version.clone(),
            karmada_api_port: f.karmada.api_port,
            downloads: "/var/lib/testbed/downloads".to_owned(),
            kubeconfig_dir: {
                let p = std::path::Path::new(&f.host.kubeconfig_dir);
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    config.base_dir().join(p)
                }
            }
            .display()
            .to_string(),
        }
    }
}

fn run<I: IntoIterator<Item = A>, A: Into<Arg>>(at: Where, argv: I) -> Step {
    Step::Run { at, argv: argv.into_iter().map(Into::into).collect() }
}

fn host<I: IntoIterator<Item = A>, A: Into<Arg>>(argv: I) -> Step {
    run(Where::Host, argv)
}

fn setting<'a>(a: &'a Action, key: &str) -> &'a str {
    a.desired
        .as_ref()
        .and_then(|r| r.spec.get(key))
        .or_else(|| a.observed.as_ref().and_then(|o| o.spec.get(key)))
        .map(String::as_str)
        .unwrap_or("")
}

fn list(a: &Action, key: &str) -> Vec<String> {
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

fn member(a: &Action) -> String {
    a.member.clone().unwrap_or_default()
}

fn create(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostPackages => {
            let mut s = vec![host(["apt-get", "update"]), host(["apt-get", "install", "-y", "snapd"])];
            s.push(host(["snap", "wait", "system", "seed.loaded"]));
            s.push(host(["snap", "install", "kubectl", "--classic"]));
            match cx.backend {
                Backend::Lxd => s.push(host(["snap", "install", "lxd"])),
                Backend::Incus => s.push(host(["apt-get", "install", "-y", "incus"])),
            }
            let v = &cx.karmada_version;
            let url = format!("https://github.com/karmada-io/karmada/releases/download/{v}/karmadactl-linux-amd64.tgz");
            let tgz = format!("{}/karmadactl-{v}-linux-amd64.tgz", cx.downloads);
            s.push(host(["curl".into(), "-fsSL".into(), "-o".into(), tgz.clone(), url.clone()]));
            s.push(Step::Call {
                api: "https",
                method: "GET",
                path: format!("{url}.sha256"),
                note: format!("testbed compares the archive's SHA-256 with it before unpacking {tgz}"),
            });
            s.push(host(["tar", "-xzf", &tgz, "-C", "/usr/local/bin", "karmadactl"]));
            s.push(host(["karmadactl", "version"]));
            s
        }
        Kind::HostSysctl => {
            let mut s: Vec<Step> = Vec::new();
            let mut lines = Vec::new();
            if let Some(r) = &a.desired {
                for (k, v) in &r.spec {
                    s.push(host(["sysctl".to_owned(), "-w".to_owned(), format!("{k}={v}")]));
                    lines.push(format!("{k} = {v}"));
                }
            }
            s.push(Step::Write {
                at: Where::Host,
                path: "/etc/sysctl.d/60-testbed.conf".into(),
                mode: 0o644,
                content: lines.join("; "),
            });
            s
        }
        Kind::HostFirewall => {
            let bridge = setting(a, "bridge").to_owned();
            let mut s = Vec::new();
            for (chain, dir) in [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")] {
                let rule = |op: &str| {
                    host(["iptables", op, chain, dir, &bridge, "-m", "comment", "--comment", "testbed", "-j", "ACCEPT"])
                };
                s.push(rule("-C"));
                s.push(rule("-I"));
            }
            s.push(Step::Note("each -I runs only when the -C before it fails, so rules are never duplicated; hosts on nftables get the same rules in table inet testbed".into()));
            s
        }
        Kind::HostMicrok8s => vec![
            host([
                "snap".to_owned(),
                "install".into(),
                "microk8s".into(),
                "--classic".into(),
                format!("--channel={}", setting(a, "channel")),
            ]),
            host(["microk8s", "status", "--wait-ready", "--timeout", "300"]),
        ],
        Kind::HostAddons => {
            let mut argv: Vec<String> = vec!["microk8s".into(), "enable".into()];
            argv.extend(list(a, "addons"));
            vec![host(argv), host(["microk8s", "status", "--wait-ready", "--timeout", "300"])]
        }
        Kind::Registry => vec![
            host(["microk8s", "enable", "registry"]),
            Step::Call {
                api: "registry",
                method: "GET",
                path: format!("http://localhost:{}/v2/", setting(a, "port")),
                note: "until it answers 200".into(),
            },
        ],
        Kind::Image => vec![Step::Call {
            api: "registry",
            method: "COPY",
            path: format!("{} -> {}", setting(a, "source"), setting(a, "target")),
            note: "manifest, config and layers over the distribution API; digests kept".into(),
        }],
        Kind::LxdNetwork | Kind::LxdStoragePool | Kind::LxdProfile | Kind::LxdInstance | Kind::Proxy => {
            lxd(a, Op::Create)
        }
        Kind::Microk8s => vec![
            run(
                Where::Member(m.clone()),
                [
                    "snap".to_owned(),
                    "install".into(),
                    "microk8s".into(),
                    "--classic".into(),
                    format!("--channel={}", setting(a, "channel")),
                ],
            ),
            run(Where::Member(m), ["microk8s", "status", "--wait-ready", "--timeout", "300"]),
        ],
        Kind::Microk8sAddons => {
            let mut argv: Vec<String> = vec!["microk8s".into(), "enable".into()];
            argv.extend(list(a, "addons"));
            vec![
                run(Where::Member(m.clone()), argv),
                run(Where::Member(m), ["microk8s", "status", "--wait-ready", "--timeout", "300"]),
            ]
        }
        Kind::Kubeconfig => {
            let mut s = vec![run(Where::Member(m.clone()), ["microk8s", "config"])];
            for (path, server, who) in [
                (setting(a, "path"), setting(a, "server"), "people (through the member's API proxy)"),
                (setting(a, "karmada_path"), setting(a, "karmada_server"), "Karmada (the member's bridge address)"),
            ] {
                s.push(Step::Write {
                    at: Where::Host,
                    path: path.to_owned(),
                    mode: 0o600,
                    content: format!("<secret:admin-kubeconfig> with server {server}, for {who}"),
                });
            }
            s.push(Step::Call {
                api: "kubernetes",
                method: "GET",
                path: format!("{}/api/v1/nodes", setting(a, "server")),
                note: "every node Ready".into(),
            });
            s
        }
        Kind::Sideload => {
            let tar =
                format!("/var/lib/testbed/sideload/{}.tar", a.address.as_str().rsplit('.').next().unwrap_or_default());
            vec![
                Step::Call {
                    api: "lxd",
                    method: "POST",
                    path: format!("/1.0/instances/{m}/files?path={tar}"),
                    note: format!(
                        "push {}",
                        if setting(a, "archive").is_empty() { setting(a, "source") } else { setting(a, "archive") }
                    ),
                },
                run(Where::Member(m), ["microk8s", "images", "import", &tar]),
            ]
        }
        Kind::KarmadaControlPlane => {
            let data = setting(a, "data_dir").trim_end_matches('/').to_owned();
            let advertise = setting(a, "advertise_address").to_owned();
            vec![
                host([
                    "karmadactl".to_owned(),
                    "init".into(),
                    "--kubeconfig".into(),
                    cx.host_kubeconfig.clone(),
                    "--private-image-registry".into(),
                    setting(a, "image_registry").into(),
                    "--port".into(),
                    setting(a, "api_port").into(),
                    "--karmada-data".into(),
                    data.clone(),
                    "--karmada-pki".into(),
                    format!("{data}/pki"),
                    "--karmada-apiserver-advertise-address".into(),
                    advertise.clone(),
                    "--cert-external-ip".into(),
                    advertise,
                    "--wait-component-ready-timeout".into(),
                    "300".into(),
                ]),
                Step::Call {
                    api: "kubernetes",
                    method: "GET",
                    path: "/apis/apps/v1/namespaces/karmada-system/deployments".into(),
                    note: "on the host cluster: karmada-apiserver, karmada-aggregated-apiserver, karmada-controller-manager, karmada-scheduler, karmada-webhook, kube-controller-manager available".into(),
                },
            ]
        }
        Kind::KarmadaMember => membership_create(a, cx),
    }
}

fn membership_create(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    let wait = Step::Call {
        api: "karmada",
        method: "GET",
        path: format!("/apis/cluster.karmada.io/v1alpha1/clusters/{m}"),
        note: "until condition Ready is True".into(),
    };
    let member_config = format!("{}/{m}.config", cx.kubeconfig_dir);
    let member_karmada_config = format!("{}/{m}-karmada.config", cx.kubeconfig_dir);
    if setting(a, "mode") == "pull" {
        let agent = format!("{}:{}/karmada-agent:{}", cx.gateway, cx.registry_port, cx.karmada_version);
        vec![
            host(["karmadactl", "token", "create", "--print-register-command", "--kubeconfig", &cx.karmada_kubeconfig]),
            host([
                Arg::from("karmadactl"),
                "register".into(),
                format!("{}:{}", cx.gateway, cx.karmada_api_port).into(),
                "--token".into(),
                Arg::Secret("join-token"),
                "--discovery-token-ca-cert-hash".into(),
                Arg::Runtime("ca-cert-hash"),
                "--kubeconfig".into(),
                member_config.into(),
                "--cluster-name".into(),
                m.clone().into(),
                "--karmada-agent-image".into(),
                agent.into(),
            ]),
            wait,
        ]
    } else {
        vec![
            host([
                "karmadactl".to_owned(),
                "join".into(),
                m.clone(),
                "--kubeconfig".into(),
                cx.karmada_kubeconfig.clone(),
                "--cluster-kubeconfig".into(),
                member_karmada_config,
            ]),
            wait,
        ]
    }
}

fn update(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        // Ensuring is idempotent for these: the same steps, each a no-op where already done.
        Kind::HostPackages | Kind::HostSysctl | Kind::HostFirewall | Kind::Kubeconfig | Kind::Image => create(a, cx),
        Kind::HostMicrok8s | Kind::Microk8s => {
            let at = if a.kind == Kind::Microk8s { Where::Member(m) } else { Where::Host };
            let mut s = Vec::new();
            if a.changes.iter().any(|c| c.key == "channel") {
                s.push(run(
                    at.clone(),
                    [
                        "snap".to_owned(),
                        "refresh".into(),
                        "microk8s".into(),
                        format!("--channel={}", setting(a, "channel")),
                    ],
                ));
            } else {
                s.push(run(at.clone(), ["microk8s", "start"]));
            }
            s.push(run(at, ["microk8s", "status", "--wait-ready", "--timeout", "300"]));
            s
        }
        Kind::HostAddons | Kind::Microk8sAddons => {
            let at = if a.kind == Kind::Microk8sAddons { Where::Member(m) } else { Where::Host };
            let want = list(a, "addons");
            let have: Vec<String> = a
                .observed
                .as_ref()
                .and_then(|o| o.spec.get("addons"))
                .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            let mut s = Vec::new();
            let add: Vec<String> = want.iter().filter(|x| !have.contains(x)).cloned().collect();
            let remove: Vec<String> = have.iter().filter(|x| !want.contains(x)).cloned().collect();
            if !add.is_empty() {
                let mut argv = vec!["microk8s".to_owned(), "enable".into()];
                argv.extend(add);
                s.push(run(at.clone(), argv));
            }
            if !remove.is_empty() {
                let mut argv = vec!["microk8s".to_owned(), "disable".into()];
                argv.extend(remove);
                s.push(run(at, argv));
            }
            s
        }
        Kind::LxdNetwork | Kind::LxdStoragePool | Kind::LxdProfile | Kind::LxdInstance | Kind::Proxy => {
            lxd(a, Op::Update)
        }
        Kind::KarmadaMember => vec![Step::Call {
            api: "karmada",
            method: "PATCH",
            path: format!("/apis/cluster.karmada.io/v1alpha1/clusters/{m}"),
            note: format!("spec.apiEndpoint = {}", setting(a, "api_endpoint")),
        }],
        Kind::Registry | Kind::KarmadaControlPlane | Kind::Sideload => {
            let mut s = delete(a, cx);
            s.extend(create(a, cx));
            s
        }
    }
}

fn delete(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostPackages | Kind::HostSysctl => vec![],
        Kind::HostFirewall => {
            let bridge = setting(a, "bridge").to_owned();
            [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")]
                .into_iter()
                .map(|(chain, dir)| {
                    host([
                        "iptables",
                        "-D",
                        chain,
                        dir,
                        &bridge,
                        "-m",
                        "comment",
                        "--comment",
                        "testbed",
                        "-j",
                        "ACCEPT",
                    ])
                })
                .collect()
        }
        Kind::HostMicrok8s => vec![host(["snap", "remove", "microk8s", "--purge"])],
        Kind::HostAddons => {
            let mut argv = vec!["microk8s".to_owned(), "disable".into()];
            argv.extend(list(a, "addons"));
            vec![host(argv)]
        }
        Kind::Registry => vec![host(["microk8s", "disable", "registry"])],
        Kind::Image => vec![Step::Call {
            api: "registry",
            method: "DELETE",
            path: format!("{} (by digest)", setting(a, "target")),
            note: String::new(),
        }],
        Kind::Microk8s => vec![run(Where::Member(m), ["snap", "remove", "microk8s", "--purge"])],
        Kind::Microk8sAddons => {
            let mut argv = vec!["microk8s".to_owned(), "disable".into()];
            argv.extend(list(a, "addons"));
            vec![run(Where::Member(m), argv)]
        }
        Kind::Sideload => vec![run(Where::Member(m), ["microk8s", "ctr", "images", "rm", setting(a, "source")])],
        Kind::Kubeconfig => {
            vec![host(["rm", "-f", setting(a, "path")]), host(["rm", "-f", setting(a, "karmada_path")])]
        }
        Kind::KarmadaControlPlane => vec![host(["karmadactl", "deinit", "--kubeconfig", &cx.host_kubeconfig, "-f"])],
        Kind::KarmadaMember => {
            if setting(a, "mode") == "pull" {
                vec![host([
                    "karmadactl".to_owned(),
                    "unregister".into(),
                    m.clone(),
                    "--cluster-kubeconfig".into(),
                    format!("{}/{m}.config", cx.kubeconfig_dir),
                    "--karmada-config".into(),
                    cx.karmada_kubeconfig.clone(),
                ])]
            } else {
                vec![host([
                    "karmadactl".to_owned(),
                    "unjoin".into(),
                    m.clone(),
                    "--kubeconfig".into(),
                    cx.karmada_kubeconfig.clone(),
                    "--cluster-kubeconfig".into(),
                    format!("{}/{m}-karmada.config", cx.kubeconfig_dir),
                    "--wait".into(),
                    "60s".into(),
                ])]
            }
        }
        Kind::LxdNetwork | Kind::LxdStoragePool | Kind::LxdProfile | Kind::LxdInstance | Kind::Proxy => {
            lxd(a, Op::Delete)
        }
    }
}

/// The LXD layer's REST calls (crates/testbed-lxd does them).
fn lxd(a: &Action, op: Op) -> Vec<Step> {
    let name = a.address.as_str().rsplit('.').next().unwrap_or_default().to_owned();
    let m = member(a);
    let call = |method: &'static str, path: String, note: String| Step::Call { api: "lxd", method, path, note };
    match (a.kind, op) {
        (Kind::LxdNetwork, Op::Create) => vec![call(
            "POST",
            "/1.0/networks".into(),
            format!("bridge {name}, ipv4.address {}", setting(a, "ipv4.address")),
        )],
        (Kind::LxdNetwork, Op::Update) => vec![call("PATCH", format!("/1.0/networks/{name}"), String::new())],
        (Kind::LxdStoragePool, Op::Create) => {
            vec![call("POST", "/1.0/storage-pools".into(), format!("{name}, driver {}", setting(a, "driver")))]
        }
        (Kind::LxdStoragePool, Op::Update) => vec![call("PATCH", format!("/1.0/storage-pools/{name}"), String::new())],
        (Kind::LxdProfile, Op::Create) => vec![call("POST", "/1.0/profiles".into(), name)],
        (Kind::LxdProfile, Op::Update) => vec![call("PUT", format!("/1.0/profiles/{name}"), String::new())],
        (Kind::LxdInstance, Op::Create) => vec![
            call(
                "POST",
                "/1.0/instances".into(),
                format!("{m} from {}, eth0 {} on {}", setting(a, "image"), setting(a, "ipv4"), setting(a, "network")),
            ),
            call("PUT", format!("/1.0/instances/{m}/state"), "start".into()),
        ],
        (Kind::LxdInstance, Op::Update) => vec![
            call("PUT", format!("/1.0/instances/{m}"), "config, devices, profiles".into()),
            call("PUT", format!("/1.0/instances/{m}/state"), "start, if stopped".into()),
        ],
        (Kind::LxdInstance, Op::Delete) => vec![
            call("PUT", format!("/1.0/instances/{m}/state"), "stop, if running".into()),
            call("DELETE", format!("/1.0/instances/{m}"), String::new()),
        ],
        (Kind::Proxy, Op::Delete) => vec![call("PUT", format!("/1.0/instances/{m}"), format!("without device {name}"))],
        (Kind::Proxy, _) => vec![call(
            "PUT",
            format!("/1.0/instances/{m}"),
            format!(
                "device {name}: listen {}, connect {}, bind {}",
                setting(a, "listen"),
                setting(a, "connect"),
                setting(a, "bind")
            ),
        )],
        (k, Op::Delete) => vec![call("DELETE", format!("/1.0/{}/{name}", lxd_collection(k)), String::new())],
        _ => vec![],
    }
}

fn lxd_collection(k: Kind) -> &'static str {
    match k {
        Kind::LxdNetwork => "networks",
        Kind::LxdStoragePool => "storage-pools",
        _ => "profiles",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed_plan::{Address, Resource, Spec};

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
