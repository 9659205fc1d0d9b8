//! What the tests share: a file, a view of containers, replies shaped like the real programs' output, a
//! captured action log.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use testbed_command::{Reply, ScriptedRunner};
use testbed_config::Config;
use testbed_microk8s::{Microk8sProvider, ADDONS_RECORD};
use testbed_plan::{desired::DesiredState, Address, Observed, ObservedState, Owner};
use testbed_provider::{ActionLog, ContainerFacts, ContainerView, LogEntry, Provider, ProviderError};
use testbed_steps::{Context, Where};

/// The containers as a test wants LXD to report them.
#[derive(Default)]
pub struct Containers(pub Mutex<Vec<ContainerFacts>>);

#[async_trait]
impl ContainerView for Containers {
    async fn containers(&self) -> Result<Vec<ContainerFacts>, ProviderError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

pub fn container(name: &str, running: bool, owned: bool) -> ContainerFacts {
    ContainerFacts {
        name: name.into(),
        running,
        ipv4: Some("10.123.45.10".into()),
        identity: format!("uuid-{name}"),
        owned,
        ..Default::default()
    }
}

/// A file named `lab` with `members` (name, api_port), kubeconfigs under `dir`. Each member installs MicroK8s
/// from the store itself (`microk8s_download_once = false`): the scripted runner has no downloads to push;
/// the download once is proven on the simulated machine (`testbed-cli/tests/cli.rs`).
pub fn config(dir: &Path, members: &[(&str, u16)], member_addons: &str) -> Config {
    let mut text = format!(
        "name = \"lab\"\n[host]\nkubeconfig_dir = \"{}\"\nmicrok8s_download_once = false\n[lxd]\nipv4_address = \"10.123.45.1/24\"\n",
        dir.join("kubeconfigs").display()
    );
    for (i, (name, port)) in members.iter().enumerate() {
        text.push_str(&format!(
            "[[members]]\nname = \"{name}\"\napi_port = {port}\nipv4 = \"10.123.45.{}\"\naddons = [{member_addons}]\n",
            10 + i
        ));
    }
    testbed_config::parse(&dir.join("testbed.toml"), &text).expect("a valid file")
}

/// `snap list microk8s` as snapd prints it.
pub fn snap_list(tracking: &str) -> Reply {
    Reply::ok(&format!(
        "Name      Version  Rev   Tracking     Publisher   Notes\nmicrok8s  v1.35.0  7964  {tracking:<11}  canonical✓  classic\n"
    ))
}

/// `snap list microk8s` when it is not installed.
pub fn snap_missing() -> Reply {
    Reply::exit(1, "error: no matching snaps installed\n")
}

/// `microk8s status --format yaml` of a running MicroK8s with these addons enabled (and a few disabled).
pub fn status_running(enabled: &[&str]) -> Reply {
    let mut s = "microk8s:\n  running: True\nhigh-availability:\n  enabled: False\naddons:\n".to_owned();
    let all = ["dns", "ha-cluster", "helm", "helm3", "hostpath-storage", "ingress", "metrics-server", "registry"];
    for (status, names) in
        [("enabled", enabled.to_vec()), ("disabled", all.iter().copied().filter(|a| !enabled.contains(a)).collect())]
    {
        for name in names {
            s.push_str(&format!(
                "  - name: {name}\n    repository: core\n    description: the {name} addon\n    version: 1.35.0\n    status: {status}\n"
            ));
        }
    }
    Reply::ok(&s)
}

/// `microk8s status --format yaml` after `microk8s stop`.
pub fn status_stopped() -> Reply {
    Reply::ok("microk8s is not running, try microk8s start\n")
}

/// `ls -1` of testbed's addon record.
pub fn record(addons: &[&str]) -> Reply {
    if addons.is_empty() {
        Reply::exit(2, &format!("ls: cannot access '{ADDONS_RECORD}': No such file or directory\n"))
    } else {
        Reply::ok(&format!("{}\n", addons.join("\n")))
    }
}

/// The local registry as members reach it in [`config`]'s files (the bridge gateway, the default port).
pub const REGISTRY: &str = "10.123.45.1:32000";

/// Where a member's registry trust file is, for [`config`]'s files.
pub fn trust_path() -> String {
    testbed_steps::registry_trust_path(REGISTRY)
}

/// `cat` of a member's registry trust file as testbed writes it.
pub fn trust_written() -> Reply {
    Reply::ok(&testbed_steps::registry_hosts_toml(REGISTRY))
}

/// `cat` of a registry trust file that is not there.
pub fn trust_missing() -> Reply {
    Reply::exit(1, &format!("cat: {}: No such file or directory\n", trust_path()))
}

/// Where a member's file for `localhost:32000` is.
pub fn local_path() -> String {
    testbed_steps::registry_trust_path("localhost:32000")
}

/// `cat` of a member's file for `localhost:32000` as testbed writes it (to the gateway's registry).
pub fn local_written() -> Reply {
    Reply::ok(&testbed_steps::localhost_hosts_toml("localhost:32000", REGISTRY))
}

/// Scripts what observation runs at `at` (in a member, with the local registry files as testbed writes
/// them).
pub fn inside(r: &ScriptedRunner, at: Where, tracking: Option<&str>, status: Reply, recorded: &[&str]) {
    match tracking {
        Some(t) => r.on_at(at.clone(), &["snap", "list", "microk8s"], snap_list(t)),
        None => r.on_at(at.clone(), &["snap", "list", "microk8s"], snap_missing()),
    };
    r.on_at(at.clone(), &["microk8s", "status", "--format", "yaml"], status);
    if let Where::Member(_) = at {
        r.on_at(at.clone(), &["cat", &trust_path()], trust_written());
        r.on_at(at.clone(), &["cat", &local_path()], local_written());
    }
    r.on_at(at, &["ls", "-1", ADDONS_RECORD], record(recorded));
}

/// The output of `microk8s config` (an x509 admin user, as MicroK8s' install hook writes it, or a token).
pub fn admin_kubeconfig(ca_pem: &str, server: &str, user: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: microk8s-cluster\n\
         contexts:\n- context:\n    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\ncurrent-context: microk8s\n\
         kind: Config\npreferences: {{}}\nusers:\n- name: admin\n  user:\n{user}\n"
    )
}

pub fn token_user(token: &str) -> String {
    format!("    token: {token}")
}

pub fn cert_user(cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD;
    format!("    client-certificate-data: {}\n    client-key-data: {}", b.encode(cert_pem), b.encode(key_pem))
}

pub struct Captured(pub Arc<Mutex<Vec<LogEntry>>>);

impl Captured {
    pub fn text(&self) -> String {
        format!("{:?}", self.0.lock().unwrap())
    }
}

pub fn capture() -> (ActionLog, Captured) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (ActionLog::new(move |e| s.lock().unwrap().push(e)), Captured(seen))
}

pub fn provider(
    runner: &ScriptedRunner,
    containers: &Arc<Containers>,
    config: &Config,
    dir: &Path,
) -> Microk8sProvider {
    Microk8sProvider::new(Arc::new(runner.clone()), containers.clone(), Context::new(config), config.file.name.clone())
        .with_host_owner_marker(dir.join("testbed-owner"))
}

/// Writes the host ownership marker as testbed does after `snap install`.
pub fn mark_host(dir: &Path, name: &str) {
    std::fs::write(dir.join("testbed-owner"), format!("owner=testbed\nname={name}\n")).unwrap();
}

/// What `provider` observes, plus every other layer's desired resources as present and healthy: the plan
/// then shows only what the MicroK8s layer has to do.
pub async fn observed_with_the_rest(provider: &Microk8sProvider, desired: &DesiredState) -> ObservedState {
    let wanted: Vec<_> =
        desired.resources.values().filter(|r| r.kind.layer() == testbed_plan::Layer::Microk8s).cloned().collect();
    let mine = provider.observe(&wanted).await.expect("observation");
    let mut state = ObservedState::default();
    for r in desired.resources.values().filter(|r| r.kind.layer() != testbed_plan::Layer::Microk8s) {
        state.insert(Observed::new(r.address.clone(), r.kind, r.member.as_deref(), Owner::Testbed, r.spec.clone()));
    }
    for o in mine.resources {
        state.insert(o);
    }
    state
}

pub fn addr(s: &str) -> Address {
    Address::parse(s).expect("an address")
}
