//! Pre-flight: a port another process holds is reported (with who holds it), one testbed's own proxy
//! holds is not; kernel modules are looked up in the module lists; free space is measured for real.

mod common;

use common::*;
use testbed_host::preflight::{self, Finding};
use testbed_plan::{Address, Health, Kind, Observed, ObservedState, Owner};

fn member_on(port: u16) -> testbed_config::Config {
    config(&format!("[[members]]\nname = \"member1\"\napi_port = {port}\n"))
}

fn port_findings(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|x| x.message.contains("host port")).collect()
}

#[tokio::test]
async fn a_port_held_by_a_process_is_reported_unless_testbeds_proxy_holds_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = member_on(port);
    let sys = testbed_host::HostSystem::real();

    let found = preflight::check(&cfg, &ObservedState::default(), &sys).await;
    let ports = port_findings(&found);
    assert_eq!(ports.len(), 1, "{found:?}");
    assert!(ports[0].blocking);
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(
        ports[0].message,
        format!(
            "host port 127.0.0.1:{port} that member member1's API proxy wants is already taken by {} (pid {})",
            me.trim(),
            std::process::id()
        )
    );
    assert_eq!(ports[0].hint.as_deref(), Some("stop what holds it, or choose another port in the file"));

    // The same port held by testbed's own proxy for it (the listener stands in for LXD's forkproxy).
    let mut observed = ObservedState::default();
    observed.insert(Observed {
        address: Address::new(Kind::Proxy, &["member1", "api"]),
        kind: Kind::Proxy,
        member: Some("member1".into()),
        owner: Owner::Testbed,
        spec: [("listen".to_owned(), format!("tcp:127.0.0.1:{port}"))].into_iter().collect(),
        health: Health::Ok,
        in_use_by: vec![],
    });
    let found = preflight::check(&cfg, &observed, &sys).await;
    assert!(port_findings(&found).is_empty(), "{found:?}");

    // A proxy on that port that someone else made does not count.
    let p = observed.resources.values_mut().next().unwrap();
    p.owner = Owner::Other("a proxy device testbed did not add".into());
    let found = preflight::check(&cfg, &observed, &sys).await;
    assert_eq!(port_findings(&found).len(), 1, "{found:?}");

    // Once the process lets go, the port is free.
    drop(listener);
    let found = preflight::check(&cfg, &ObservedState::default(), &sys).await;
    assert!(port_findings(&found).is_empty(), "{found:?}");
}

#[tokio::test]
async fn an_address_the_host_does_not_have_is_reported() {
    let cfg = config("[[members]]\nname = \"member1\"\napi_port = 16441\nlisten = \"192.0.2.77\"\n");
    let found = preflight::check(&cfg, &ObservedState::default(), &testbed_host::HostSystem::real()).await;
    assert!(
        found.iter().any(|f| f.blocking
            && f.message == "member member1's API proxy listens on 192.0.2.77, which is not an address of this host"),
        "{found:?}"
    );
}

const RELEASE: &str = "6.8.0-60-generic";

fn kernel(host: &FakeHost, loaded: &[&str], builtin: &[&str], loadable: &[&str]) {
    host.file("/proc/sys/kernel/osrelease", &format!("{RELEASE}\n"));
    host.file(
        "/proc/modules",
        &loaded.iter().map(|m| format!("{m} 217088 2 - Live 0x0000000000000000\n")).collect::<String>(),
    );
    host.file(
        &format!("/lib/modules/{RELEASE}/modules.builtin"),
        &builtin.iter().map(|m| format!("kernel/net/{m}.ko\n")).collect::<String>(),
    );
    host.file(
        &format!("/lib/modules/{RELEASE}/modules.dep"),
        &loadable
            .iter()
            .map(|m| format!("kernel/net/netfilter/{m}.ko.zst: kernel/net/netfilter/nf_conntrack.ko.zst\n"))
            .collect::<String>(),
    );
}

fn module_findings(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|x| x.message.contains("modules")).collect()
}

#[tokio::test]
async fn kernel_modules_count_when_loaded_builtin_or_loadable() {
    let host = FakeHost::new(UBUNTU_2404);
    let cfg = config("");
    kernel(
        &host,
        &["overlay", "br_netfilter", "nf_nat", "ip_tables"],
        &["ip6_tables", "netlink_diag"],
        &["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh"],
    );
    let found = preflight::check(&cfg, &ObservedState::default(), &host.system()).await;
    assert!(module_findings(&found).is_empty(), "{found:?}");

    kernel(&host, &["overlay", "br_netfilter", "nf_nat", "ip_tables"], &["ip6_tables"], &["ip_vs", "ip_vs_rr"]);
    let found = preflight::check(&cfg, &ObservedState::default(), &host.system()).await;
    let m = module_findings(&found);
    assert_eq!(m.len(), 1, "{found:?}");
    assert!(m[0].blocking);
    assert_eq!(
        m[0].message,
        format!("this kernel ({RELEASE}) lacks the modules ip_vs_wrr, ip_vs_sh, netlink_diag that the member profile's linux.kernel_modules lists: LXD would refuse to start the members")
    );
    assert!(m[0].hint.as_deref().unwrap().contains(&format!("linux-modules-extra-{RELEASE}")), "{m:?}");

    // The file can name the modules this kernel has.
    let cfg = config("[lxd.profile_config]\n\"linux.kernel_modules\" = \"overlay,ip_vs\"\n");
    let found = preflight::check(&cfg, &ObservedState::default(), &host.system()).await;
    assert!(module_findings(&found).is_empty(), "{found:?}");
}

#[tokio::test]
async fn without_module_lists_absence_proves_nothing() {
    let host = FakeHost::new(UBUNTU_2404);
    let found = preflight::check(&config(""), &ObservedState::default(), &host.system()).await;
    let m = module_findings(&found);
    assert_eq!(m.len(), 1, "{found:?}");
    assert!(!m[0].blocking, "a warning, not a refusal: {m:?}");
    assert!(m[0].message.starts_with("cannot tell whether this kernel"), "{m:?}");
}

#[test]
fn free_space_is_measured_with_statvfs() {
    let d = tempfile::tempdir().unwrap();
    let facts = preflight::fs_facts(d.path()).unwrap();
    assert!(facts.available > 0);
    assert_eq!(facts.device, std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(d.path()).unwrap()));
    assert!(preflight::fs_facts(&d.path().join("missing")).is_none());
}

#[test]
fn disk_needs_follow_the_backend_and_the_members() {
    let host = FakeHost::new(DEBIAN_12);
    let cfg = config("[[members]]\nname = \"a\"\napi_port = 16441\n[[members]]\nname = \"b\"\napi_port = 16442\n");
    let needs = preflight::disk_needs(&cfg, &host.system());
    assert_eq!(needs[1].path, "/var/lib/lxd", "Debian 12's LXD package keeps its data there");
    assert_eq!(needs[1].bytes, 2 * preflight::PER_MEMBER);
    let ubuntu = FakeHost::new(UBUNTU_2404);
    assert_eq!(preflight::disk_needs(&cfg, &ubuntu.system())[1].path, "/var/snap/lxd/common/lxd");
    let incus = config("[lxd]\nbackend = \"incus\"\n");
    let needs = preflight::disk_needs(&incus, &ubuntu.system());
    assert_eq!(needs.len(), 1, "no members, no container storage: {needs:?}");
}
