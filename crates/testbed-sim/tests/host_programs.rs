//! The real host provider over the simulated host: a fresh Ubuntu 24.04 server's files and programs.

use std::path::Path;

use testbed_config::Config;
use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{Action, Layer, ObservedState, Plan};
use testbed_provider::{ActionLog, ActionRunner, ProviderError};
use testbed_sim::{SimMachine, SimOptions};

const FILE: &str = r#"
[lxd]
ipv4_address = "10.123.45.1/24"

[[members]]
name = "member1"
api_port = 16441
"#;

fn config(text: &str) -> Config {
    testbed_config::parse(Path::new("testbed.toml"), text).expect("valid test file")
}

fn machine(dir: &Path, options: SimOptions, c: &Config) -> SimMachine {
    SimMachine::open(dir.join("sim.json"), options).expect("opens").with_context(testbed_steps::Context::new(c))
}

async fn host_plan(m: &SimMachine, c: &Config) -> Plan {
    let skeleton = desired::build(c, &ObservedState::default());
    let wanted: Vec<_> = skeleton.resources.values().filter(|r| r.kind.layer() == Layer::Host).cloned().collect();
    let observed = m.providers_for(&[Layer::Host].into()).observe(&wanted).await;
    let mut d: DesiredState = desired::build(c, &observed);
    d.resources.retain(|_, r| r.kind.layer() == Layer::Host);
    for r in d.resources.values_mut() {
        r.depends_on.retain(|a| a.as_str().starts_with("host."));
    }
    testbed_plan::plan(&d, &observed).expect("plans")
}

async fn run(m: &SimMachine, a: &Action) -> Result<(), ProviderError> {
    m.providers().run(a, &ActionLog::discard()).await
}

async fn apply(m: &SimMachine, p: &Plan) -> Vec<(String, Result<(), ProviderError>)> {
    let mut out = Vec::new();
    for a in p.actions() {
        out.push((a.address.to_string(), run(m, a).await));
    }
    out
}

#[tokio::test]
async fn a_fresh_ubuntu_host_gets_its_packages_limits_and_rules_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(FILE);
    let m = machine(dir.path(), SimOptions::instant(), &c);
    let p = host_plan(&m, &c).await;
    let planned: std::collections::BTreeSet<String> =
        p.actions().iter().map(|a| format!("{} {}", a.op.name(), a.address)).collect();
    // snapd comes with Ubuntu: the package set is updated, not created; the limits are the kernel's defaults.
    let expected = ["create host.firewall", "create host.nodeports", "update host.packages", "update host.sysctl"];
    assert_eq!(planned, expected.into_iter().map(String::from).collect(), "{planned:?}");
    for (address, result) in apply(&m, &p).await {
        result.unwrap_or_else(|e| panic!("{address}: {e} ({:?})", e.hint(), e = e.report()));
    }
    // Ubuntu's lxd-installer stand-in stays at /usr/sbin/lxd ahead of the snap's /snap/bin/lxd: the real LXD
    // counts, so the next plan is empty rather than installing LXD forever.
    assert!(m.host_system().find_program("lxd").is_some_and(|p| p.ends_with("usr/sbin/lxd")));
    let again = host_plan(&m, &c).await;
    assert!(again.is_empty(), "{:?}", again.actions().iter().map(|a| a.address.to_string()).collect::<Vec<_>>());
    let world = m.world();
    assert_eq!(world.host.packages.get("karmadactl").and_then(|p| p.version.as_deref()), Some("v1.19.0"));
    assert_eq!(world.host.iptables.iter().filter(|r| r.contains("--comment \"testbed:testbed\"")).count(), 3);
    assert_eq!(
        world.host.iptables_raw,
        ["-A PREROUTING ! -i lxdbr0 -p tcp -m multiport --dports 32000,32443 -m addrtype --dst-type LOCAL -m addrtype ! --src-type LOCAL -m comment --comment \"testbed:testbed\" -j DROP"],
        "one rule keeps the registry and the Karmada API to loopback and the bridge"
    );
    let marker = std::fs::read_to_string(m.host_system().path("/var/lib/testbed/host-packages")).unwrap();
    assert!(marker.contains("lxd") && marker.contains("karmadactl") && !marker.contains("snapd"), "{marker}");
    let limit = m.host_system().sysctl("fs.inotify.max_user_instances");
    assert_eq!(limit.as_deref(), Some("1048576"));
}

#[tokio::test]
async fn a_file_that_opens_the_node_ports_loses_only_testbeds_rule() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(FILE);
    let m = machine(dir.path(), SimOptions::instant(), &c);
    for (address, result) in apply(&m, &host_plan(&m, &c).await).await {
        result.unwrap_or_else(|e| panic!("{address}: {e}", e = e.report()));
    }
    // A rule someone else put in the raw table stays.
    let theirs = "-A PREROUTING -p tcp -m tcp --dport 9999 -j DROP".to_owned();
    m.edit(|w| w.host.iptables_raw.push(theirs.clone())).unwrap();

    let open = config(&format!("[host]\nexpose_node_ports = true\n{FILE}"));
    let p = host_plan(&m, &open).await;
    let planned: Vec<String> = p.actions().iter().map(|a| format!("{} {}", a.op.name(), a.address)).collect();
    assert_eq!(planned, ["delete host.nodeports"]);
    for (address, result) in apply(&m, &p).await {
        result.unwrap_or_else(|e| panic!("{address}: {e}", e = e.report()));
    }
    assert_eq!(m.world().host.iptables_raw, [theirs]);
    assert!(host_plan(&m, &open).await.is_empty());
}

#[tokio::test]
async fn a_karmada_version_that_was_never_released_fails_at_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(&format!("[karmada]\nversion = \"v1.15.99\"\n{FILE}"));
    let m = machine(dir.path(), SimOptions::instant(), &c);
    let p = host_plan(&m, &c).await;
    let packages = p.actions().into_iter().find(|a| a.address.as_str() == "host.packages").expect("planned").clone();
    let e = run(&m, &packages).await.expect_err("no such release");
    assert!(e.report().to_string().contains("curl: (22) The requested URL returned error: 404"), "{e}", e = e.report());
    assert!(m.host_system().find_program("karmadactl").is_none());
}

#[tokio::test]
async fn an_injected_failure_fails_the_first_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(FILE);
    let options = SimOptions { fail_once: ["host.sysctl".to_owned()].into(), ..SimOptions::instant() };
    let m = machine(dir.path(), options.clone(), &c);
    let p = host_plan(&m, &c).await;
    let results = apply(&m, &p).await;
    let sysctl = results.iter().find(|(a, _)| a == "host.sysctl").expect("ran");
    let e = sysctl.1.as_ref().expect_err("injected");
    assert!(e.report().to_string().contains("simulated failure injected by TESTBED_SIM_FAIL"), "{e}", e = e.report());
    // The next run of testbed (the same state file, the same environment) converges.
    let again = machine(dir.path(), options, &c);
    let p = host_plan(&again, &c).await;
    assert_eq!(p.actions().iter().map(|a| a.address.to_string()).collect::<Vec<_>>(), ["host.sysctl"]);
    for (address, result) in apply(&again, &p).await {
        result.unwrap_or_else(|e| panic!("{address}: {e}", e = e.report()));
    }
    assert!(host_plan(&again, &c).await.is_empty());
}
