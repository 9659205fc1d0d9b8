//! `host.nodeports` against the real kernel: the rule the host provider adds, with the real iptables and
//! the real nft, inside network namespaces that stand for the host, a member on the bridge, and a machine
//! on the network. Before the rule, the "NodePorts" (plain listeners on 32000 and 32443 here: the rule
//! acts before kube-proxy would turn them into a pod, so what listens does not matter) answer everyone;
//! after it, only the host itself and the bridge; after the delete, everyone again.
//!
//! Needs root and `ip netns` (iproute2). Outside CI a machine without them skips with a message; under
//! CI (`CI` set) the test fails instead, so it cannot pass without running.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use testbed_command::{CommandError, CommandRunner, Output, SystemRunner};
use testbed_plan::{Kind, Op, Owner};
use testbed_provider::{ActionLog, Provider};
use testbed_steps::Where;

const BRIDGE: &str = "tbnpbr0";
const ON_BRIDGE: &str = "10.77.0.1";
const ON_NETWORK: &str = "10.78.0.1";

/// Three network namespaces, deleted (with their links) when dropped.
struct Namespaces {
    host: String,
    member: String,
    outside: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Namespaces {
    fn new(tag: &str) -> Result<Namespaces, String> {
        let pid = std::process::id();
        let ns = Namespaces {
            host: format!("tbnp-{tag}-h-{pid}"),
            member: format!("tbnp-{tag}-m-{pid}"),
            outside: format!("tbnp-{tag}-o-{pid}"),
        };
        for n in [&ns.host, &ns.member, &ns.outside] {
            ip(&["netns", "add", n])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        let (h, m, o) = (ns.host.as_str(), ns.member.as_str(), ns.outside.as_str());
        // The bridge (a veth end named like one: the rule matches the interface's name) and the network.
        ip(&["-n", h, "link", "add", BRIDGE, "type", "veth", "peer", "name", "m0", "netns", m])?;
        ip(&["-n", h, "link", "add", "tbnpeth0", "type", "veth", "peer", "name", "o0", "netns", o])?;
        for (n, dev, addr) in [
            (h, BRIDGE, "10.77.0.1/24"),
            (h, "tbnpeth0", "10.78.0.1/24"),
            (m, "m0", "10.77.0.2/24"),
            (o, "o0", "10.78.0.2/24"),
        ] {
            ip(&["-n", n, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        ip(&["-n", m, "route", "add", "default", "via", ON_BRIDGE])?;
        ip(&["-n", o, "route", "add", "10.77.0.0/24", "via", ON_NETWORK])?;
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.host, &self.member, &self.outside] {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a valid namespace descriptor changes only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Listeners on the two NodePorts and on another port, in the host namespace, accepting for ever.
fn listen(ns: &str) {
    for port in [32000u16, 32443, 8080] {
        let listener = inside(ns, move || TcpListener::bind(("0.0.0.0", port)).unwrap());
        std::thread::spawn(move || for _ in listener.incoming() {});
    }
}

/// Whether a TCP connection from `ns` to `addr` is accepted (a dropped SYN times out).
fn answers(ns: &str, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    inside(ns, move || TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok())
}

/// The real runner, with every host command run inside the host namespace (`ip netns exec`).
struct InNamespace {
    ns: String,
    runner: SystemRunner,
}

#[async_trait]
impl CommandRunner for InNamespace {
    async fn run(&self, at: &Where, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        let mut wrapped: Vec<String> = ["ip", "netns", "exec", &self.ns].iter().map(|s| s.to_string()).collect();
        wrapped.extend(argv.iter().cloned());
        self.runner.run(at, &wrapped, timeout).await
    }
}

fn usable(tag: &str) -> Option<Namespaces> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let made = if root { Namespaces::new(tag) } else { Err("not root".into()) };
    match made {
        Ok(ns) => Some(ns),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI must run this test: {e}"),
        Err(e) => {
            eprintln!("skipped: network namespaces are not usable here ({e}); run as root to test the rule");
            None
        }
    }
}

/// Which connections answer, in a fixed order: from the network to both host addresses and to another
/// port, from a member to both addresses, from the host itself to loopback and to its network address.
fn reachability(ns: &Namespaces) -> Vec<(&'static str, bool)> {
    let (h, m, o) = (ns.host.as_str(), ns.member.as_str(), ns.outside.as_str());
    vec![
        ("network → host:32000", answers(o, "10.78.0.1:32000")),
        ("network → host:32443", answers(o, "10.78.0.1:32443")),
        ("network → bridge address:32000", answers(o, "10.77.0.1:32000")),
        ("network → host:8080", answers(o, "10.78.0.1:8080")),
        ("member → bridge address:32000", answers(m, "10.77.0.1:32000")),
        ("member → bridge address:32443", answers(m, "10.77.0.1:32443")),
        ("member → host:32000", answers(m, "10.78.0.1:32000")),
        ("host → 127.0.0.1:32000", answers(h, "127.0.0.1:32000")),
        ("host → its network address:32443", answers(h, "10.78.0.1:32443")),
    ]
}

async fn closes_and_reopens(tag: &str, tool: &str) {
    let Some(ns) = usable(tag) else { return };
    listen(&ns.host);
    let open: Vec<_> = reachability(&ns).into_iter().map(|(what, _)| (what, true)).collect();
    assert_eq!(reachability(&ns), open, "before the rule everything answers (so the test can fail)");

    let host = FakeHost::new(DEBIAN_12);
    host.program(&format!("/usr/sbin/{tool}"));
    let cfg = config(&format!("[lxd]\nbridge = \"{BRIDGE}\"\n"));
    let runner = InNamespace { ns: ns.host.clone(), runner: SystemRunner::host_only() };
    let p = testbed_host::HostProvider::new(Arc::new(runner), testbed_steps::Context::new(&cfg), host.system());
    let want = wanted(&cfg, "host.nodeports");
    p.apply(&action(Op::Create, want.clone()), &ActionLog::discard()).await.unwrap();

    let closed: Vec<_> = open
        .iter()
        .map(|(what, _)| (*what, !what.starts_with("network → host:3") && !what.starts_with("network → bridge")))
        .collect();
    assert_eq!(reachability(&ns), closed, "{tool}: only the host itself and the bridge reach the two ports");

    // Observed as testbed's and as the file wants; a second apply adds nothing.
    let obs = p.observe(std::slice::from_ref(&want)).await.unwrap();
    let seen = obs.resources.iter().find(|o| o.kind == Kind::HostNodeports).expect("the rule is observed");
    assert_eq!(seen.owner, Owner::Testbed);
    assert_eq!(seen.spec, want.spec);
    p.apply(&action(Op::Update, want.clone()), &ActionLog::discard()).await.unwrap();
    let obs = p.observe(std::slice::from_ref(&want)).await.unwrap();
    let seen = obs.resources.iter().find(|o| o.kind == Kind::HostNodeports).unwrap();
    assert_eq!(seen.health, testbed_plan::Health::Ok, "{tool}: one rule, not two");

    let mut delete = action(Op::Delete, want.clone());
    delete.observed = Some(seen.clone());
    delete.desired = None;
    p.apply(&delete, &ActionLog::discard()).await.unwrap();
    assert_eq!(reachability(&ns), open, "{tool}: the delete opens them again");
    let obs = p.observe(&[]).await.unwrap();
    assert!(obs.resources.iter().all(|o| o.kind != Kind::HostNodeports), "{tool}: nothing of testbed's is left");
}

#[tokio::test]
async fn with_iptables_only_the_host_and_the_bridge_reach_the_node_ports() {
    closes_and_reopens("ipt", "iptables").await;
}

#[tokio::test]
async fn with_nft_only_the_host_and_the_bridge_reach_the_node_ports() {
    closes_and_reopens("nft", "nft").await;
}
