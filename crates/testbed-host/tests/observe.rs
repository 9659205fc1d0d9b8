//! A host that testbed has converged plans no changes for the host layer; one that lacks everything plans
//! the three creates and an update of the kernel's default limits.

mod common;

use common::*;
use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_plan::{DesiredState, Layer, ObservedState, Op};
use testbed_provider::Provider;

const FILE: &str =
    "[[members]]\nname = \"member1\"\napi_port = 16441\n[[members]]\nname = \"member2\"\napi_port = 16442\n";

/// The file's host-layer resources alone (the other layers are not observed here).
fn host_layer(cfg: &testbed_config::Config) -> DesiredState {
    let mut d = testbed_plan::desired::build(cfg, &ObservedState::default());
    d.resources.retain(|_, r| r.kind.layer() == Layer::Host);
    for r in d.resources.values_mut() {
        r.depends_on.clear();
    }
    d
}

async fn plan(host: &FakeHost, r: &ScriptedRunner, cfg: &testbed_config::Config) -> Vec<(String, Op, String)> {
    let desired = host_layer(cfg);
    let wanted: Vec<_> = desired.resources.values().cloned().collect();
    let obs = provider(host, r, cfg).observe(&wanted).await.unwrap();
    let mut state = ObservedState::default();
    for o in obs.resources {
        state.insert(o);
    }
    let p = testbed_plan::plan(&desired, &state).unwrap();
    p.actions().into_iter().map(|a| (a.address.to_string(), a.op, a.reason.clone())).collect()
}

#[tokio::test]
async fn a_converged_ubuntu_host_plans_no_changes() {
    let host = FakeHost::new(UBUNTU_2404);
    for p in ["/usr/bin/snap", "/snap/bin/kubectl", "/snap/bin/lxd", "/usr/local/bin/karmadactl", "/usr/sbin/iptables"]
    {
        host.program(p);
    }
    host.file("/var/lib/testbed/host-packages", "# host packages testbed installed\nkarmadactl\nlxd\n");
    host.sysctl("fs.inotify.max_user_instances", "1048576");
    host.sysctl("fs.inotify.max_user_watches", "1048576");
    host.file(
        "/etc/sysctl.d/60-testbed.conf",
        &format!("{}\nfs.inotify.max_user_instances = 1048576\n", testbed_host::SYSCTL_HEADER),
    );
    let r = ScriptedRunner::new();
    r.on(&["karmadactl", "version"], Reply::Output(Output::ok(karmadactl_version_line("v1.19.0"))));
    r.on(&["iptables", "-C"], Reply::ok(""));
    r.on(&["iptables", "-t", "raw", "-S", "PREROUTING"], Reply::ok(RAW_WITH_NODE_PORTS));
    assert_eq!(plan(&host, &r, &config(FILE)).await, vec![]);
}

#[tokio::test]
async fn a_bare_host_plans_what_it_lacks() {
    let host = FakeHost::new(DEBIAN_12);
    host.program("/usr/sbin/iptables");
    host.sysctl("fs.inotify.max_user_instances", "128");
    host.sysctl("fs.inotify.max_user_watches", "8192");
    let r = ScriptedRunner::new();
    r.on(&["iptables", "-C"], Reply::exit(1, IPTABLES_NO_RULE));
    r.on(&["iptables", "-S", "FORWARD"], Reply::ok("-P FORWARD ACCEPT\n"));
    r.on(&["iptables", "-t", "raw", "-S", "PREROUTING"], Reply::ok("-P PREROUTING ACCEPT\n"));
    let got = plan(&host, &r, &config(FILE)).await;
    let ops: Vec<(&str, Op)> = got.iter().map(|(a, o, _)| (a.as_str(), *o)).collect();
    assert_eq!(
        ops,
        vec![
            ("host.firewall", Op::Create),
            ("host.nodeports", Op::Create),
            ("host.packages", Op::Create),
            ("host.sysctl", Op::Update)
        ],
        "{got:?}"
    );
    let closed = &got.iter().find(|(a, ..)| a == "host.nodeports").unwrap().2;
    assert_eq!(
        closed,
        "not present: host ports 32000,32443 (the registry, the Karmada API) answer on every host address; after this, only from the host itself and lxdbr0"
    );
    let sysctl = &got.iter().find(|(a, ..)| a == "host.sysctl").unwrap().2;
    assert!(sysctl.contains("\"128\" → \"1048576\""), "{sysctl}");
    // Observation only reads: the iptables checks and the listings, nothing else.
    assert!(r.transcript().iter().all(|l| l.starts_with("host$ iptables -C ") || l.contains(" -S ")));
}

#[tokio::test]
async fn this_machines_own_proc_is_read() {
    // Harmless reads of the real /proc and /etc: what testbed sees here is what the kernel says.
    let sys = testbed_host::HostSystem::real();
    let want = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").unwrap();
    assert_eq!(sys.sysctl("fs.inotify.max_user_watches").as_deref(), Some(want.trim()));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(sys.kernel_release().as_deref(), Some(release.trim()));
    if let Ok(text) = std::fs::read_to_string("/etc/os-release") {
        let d = sys.distribution();
        assert!(text.contains(&format!("ID={}", d.id)) || text.contains(&format!("ID=\"{}\"", d.id)), "{d:?}");
    }
    // `sh` is on every Linux search path.
    assert!(sys.find_program("sh").is_some());
    assert!(sys.find_program("testbed-no-such-program").is_none());
}
