//! Faults of the real LXD layer, against the project's LXD and Incus daemons (`cargo xtask testenv up`), with
//! the layers above simulated: a missing image, a host port already taken, no daemon at all, the daemon lost
//! in the middle of an apply, a profile key changed by hand, and a kernel module the host lacks. The faults the
//! daemon answers (a missing image, a port taken, the daemon lost, a profile changed) run on both daemons
//! (`CASE::lxd`, `CASE::incus`); the others never reach a daemon and run once.
//!
//! Every test uses names of its own (`rf…` members, `tbrf…` bridges and profiles; `irf…` on Incus), subnets
//! 10.199.91-96.0/24 (191-196 on Incus) and host ports 28101-28699 (30101-30699 on Incus), and clears what an
//! interrupted earlier run left before starting. A daemon that cannot be reached fails these tests (except the
//! one about a missing daemon).

#[macro_use]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use support::*;
use testbed_exec::{Event, Outcome};
use testbed_lxd::{Client, Flavor};
use testbed_plan::{desired, Layer};
use testbed_provider::{ActionLog, ErrorKind, Provider, ProviderError};

on_both_daemons!(
    a_missing_image_fails_only_its_member_and_a_fixed_file_converges,
    a_host_port_in_use_fails_the_proxy_and_converges_once_free,
    a_daemon_lost_mid_apply_fails_the_steps_in_flight_and_a_later_apply_converges,
    a_profile_key_changed_by_hand_is_planned_and_repaired,
);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn failed_with<'r>(r: &'r testbed_exec::Report, address: &str) -> &'r ProviderError {
    match outcome(r, address) {
        Outcome::Failed { error } => error,
        other => panic!("{address}: expected a failure, got {other}; all: {:?}", failures(r)),
    }
}

fn assert_done(r: &testbed_exec::Report, address: &str) {
    assert!(outcome(r, address).is_done(), "{address}: {}; failures: {:?}", outcome(r, address), failures(r));
}

async fn exists(cl: &Client, path: &str) -> bool {
    cl.get_opt::<Value>(path).await.expect("LXD answers").is_some()
}

/// The next step the LXD layer names when it finds no daemon.
const START_HINT: &str =
    "; apply installs LXD first (host.packages) when the host layer is testbed's; if it is installed, start the LXD daemon (for the project's test daemon: cargo xtask testenv up), then apply again";

/// Fault 1: A member whose image alias the daemon does not have: that member fails, saying which image; the other
/// members are created; with the file fixed, the next apply creates the rest and converges. LXD refuses the create
/// at once, Incus fails its operation: the same failure either way.
fn a_missing_image_fails_only_its_member_and_a_fixed_file_converges(d: Daemon) {
    let t = d.tag("rf1");
    let [a, b, c] = ["a", "b", "c"].map(|m| format!("{t}{m}"));
    let members = [(a.clone(), d.port(28101)), (b.clone(), d.port(28102)), (c.clone(), d.port(28103))];
    let good = file_on(d, &t, d.subnet(91), &members);
    let bad = good.replace(&format!("name = \"{a}\"\n"), &format!("name = \"{a}\"\nimage = \"rf-no-such-image\"\n"));
    assert_ne!(good, bad);
    let names = [a.as_str(), b.as_str(), c.as_str()];
    rt().block_on(async {
        let s = Stack::on(d, &t);
        let cl = d.client();
        clear(&cl, &names, &t).await;

        let r = s.run(&s.plan(&config(&bad)).await, 4).await;
        assert!(!r.success());
        let e = failed_with(&r, &format!("lxd_instance.{a}"));
        let msg = e.report().to_string();
        eprintln!("missing image: {msg}\n  hint: {:?}", e.hint());
        assert!(e.kind() == ErrorKind::Failed, "{e:?}");
        assert!(msg.starts_with(&format!("lxd_instance.{a} (member {a}): ")), "{msg}");
        assert!(msg.contains("image \"rf-no-such-image\" not found"), "{msg}");
        let list = format!("{} image list", d.flavor().command());
        assert!(e.hint().is_some_and(|h| h.contains(&list)), "{:?}", e.hint());
        let because = addr(&format!("lxd_instance.{a}"));
        assert_eq!(outcome(&r, &format!("proxy.{a}.api")), &Outcome::Skipped { because });
        assert_eq!(r.failed(), 1, "{:?}", failures(&r));
        for m in [&b, &c] {
            assert_done(&r, &format!("lxd_instance.{m}"));
            assert_done(&r, &format!("proxy.{m}.api"));
        }
        assert!(!exists(&cl, &format!("/1.0/instances/{a}")).await, "nothing is left of the failed create");
        for m in [&b, &c] {
            let i: Value = cl.get(&format!("/1.0/instances/{m}")).await.unwrap();
            assert_eq!(i["status"], "Running", "{m}");
        }

        // The file fixed: exactly what is missing, then nothing.
        let fixed = config(&good);
        let p = s.plan(&fixed).await;
        assert_eq!(
            ops(&p),
            [(format!("lxd_instance.{a}"), "create".to_owned()), (format!("proxy.{a}.api"), "create".to_owned())]
                .into_iter()
                .collect()
        );
        let r = s.run(&p, 4).await;
        assert!(r.success(), "{:?}", failures(&r));
        assert!(s.plan(&fixed).await.is_empty());

        let destroyed = s.run(&s.destroy_plan(&fixed).await, 4).await;
        assert!(destroyed.success(), "destroy: {:?}", failures(&destroyed));
        clear(&cl, &names, &t).await;
    });
}

/// Fault 2: A member's API port already taken on the host: its proxy fails naming the member and the port, and says the
/// port is in use; once the port is free, the next apply adds just that proxy.
fn a_host_port_in_use_fails_the_proxy_and_converges_once_free(d: Daemon) {
    let t = d.tag("rf2");
    let [a, b] = ["a", "b"].map(|m| format!("{t}{m}"));
    let port = d.port(28201);
    let members = [(a.clone(), port), (b.clone(), d.port(28202))];
    let c = config(&file_on(d, &t, d.subnet(92), &members));
    let proxy_a = format!("proxy.{a}.api");
    rt().block_on(async {
        let s = Stack::on(d, &t);
        let cl = d.client();
        clear(&cl, &[&a, &b], &t).await;

        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("this test's host port 127.0.0.1:{port} must be free to start with: {e}"));
        let r = s.run(&s.plan(&c).await, 4).await;
        let e = failed_with(&r, &proxy_a);
        let msg = e.report().to_string();
        eprintln!("port in use: {msg}\n  hint: {:?}", e.hint());
        assert!(msg.starts_with(&format!("{proxy_a} (member {a}): ")), "{msg}");
        assert!(msg.contains(&format!("host port 127.0.0.1:{port} is already in use")), "{msg}");
        let hint = e.hint().expect("a hint");
        assert!(hint.contains("api_port") && hint.contains(&port.to_string()), "{hint}");
        assert_eq!(r.failed(), 1, "{:?}", failures(&r));
        for done in [format!("lxd_instance.{a}"), format!("lxd_instance.{b}"), format!("proxy.{b}.api")] {
            assert_done(&r, &done);
        }
        // The daemon rolled the device back: nothing half-made on the container.
        let i: Value = cl.get(&format!("/1.0/instances/{a}")).await.unwrap();
        assert!(i["devices"].get("api").is_none(), "{}", i["devices"]);
        assert!(i["config"].get("user.testbed.proxy.api").is_none(), "{}", i["config"]);

        // Still taken: the same single action is planned, and fails again the same way.
        let p = s.plan(&c).await;
        assert_eq!(addresses(&p), [proxy_a.as_str()]);
        let again = s.run(&p, 4).await;
        assert!(failed_with(&again, &proxy_a).report().to_string().contains(&format!("{port} is already in use")));
        drop(listener);
        let r = s.run(&s.plan(&c).await, 4).await;
        assert!(r.success(), "{:?}", failures(&r));
        assert!(s.plan(&c).await.is_empty());
        let i: Value = cl.get(&format!("/1.0/instances/{a}")).await.unwrap();
        assert_eq!(i["devices"]["api"]["listen"], format!("tcp:127.0.0.1:{port}"));

        let destroyed = s.run(&s.destroy_plan(&c).await, 4).await;
        assert!(destroyed.success(), "destroy: {:?}", failures(&destroyed));
        clear(&cl, &[&a, &b], &t).await;
    });
}

/// Fault 3: No daemon: observation records the LXD layer as unobservable (no panic), the plan still builds with
/// everything to create and a note, and an instance action fails as unavailable with a hint to start it.
#[test]
fn without_a_daemon_observation_says_so_and_actions_are_unavailable() {
    let c = config(&file("rf3", 93, &[("rf3a", 28301)]));
    rt().block_on(async {
        let s = Stack::with_client("rf3", Client::at("/nonexistent/unix.socket", Flavor::Lxd));
        let o = s.observe_any(&c).await;
        assert_eq!(o.unobservable.len(), 1, "{:?}", o.unobservable);
        let u = &o.unobservable[0];
        eprintln!("unobservable: {}", u.reason);
        assert_eq!(u.layer, Layer::Lxd);
        let not_installed = "LXD is not installed or not running: no socket at /nonexistent/unix.socket";
        // The reason carries the next step, so the plan's note says what to do.
        assert_eq!(u.reason, format!("observing LXD: {not_installed}{START_HINT}"));

        let d = desired::build(&c, &o);
        let p = testbed_plan::plan(&d, &o).expect("the plan builds without LXD").targeted(&lxd_targets());
        assert!(!p.is_empty());
        let lxd: Vec<_> = p.actions().into_iter().filter(|a| a.kind.layer() == Layer::Lxd).collect();
        assert!(lxd.iter().all(|a| a.op.name() == "create"), "{:?}", ops(&p));
        assert!(p.find("lxd_instance.rf3a").is_some() && p.find("proxy.rf3a.api").is_some(), "{:?}", addresses(&p));
        assert!(
            p.notes
                .iter()
                .any(|n| n
                    .starts_with(&format!("lxd could not be observed (observing LXD: {not_installed}{START_HINT})"))),
            "{:?}",
            p.notes
        );

        // The instance's own step, run directly.
        let a = p.actions().into_iter().find(|a| a.address.as_str() == "lxd_instance.rf3a").unwrap().clone();
        let e = s.lxd.apply(&a, &ActionLog::discard()).await.expect_err("no daemon");
        eprintln!("no daemon: {e}\n  hint: {:?}", e.hint(), e = e.report());
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
        let hint = e.hint();
        assert_eq!(e.report().to_string(), format!("lxd_instance.rf3a (member rf3a): {not_installed}"));
        assert!(hint.is_some_and(|h| h.contains("start the LXD daemon")), "{hint:?}");

        // The whole plan: every LXD step that runs is unavailable, the rest skipped; nothing panics. (The
        // simulated host steps it needs first do run.)
        let r = s.run(&p, 4).await;
        assert!(
            r.actions.iter().all(|a| a.address.as_str().starts_with("host.") || !a.outcome.is_done()),
            "{:?}",
            r.actions
        );
        assert!(r.failed() >= 1);
        assert!(r.failures().all(|(_, e)| e.kind() == ErrorKind::Unavailable), "{:?}", failures(&r));
        assert_eq!(outcome(&r, "lxd_instance.rf3a").label(), "skipped");

        // A socket file nobody listens on (a daemon that died): refused, also unavailable.
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("unix.socket");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        let s = Stack::with_client("rf3", Client::at(&dead, Flavor::Lxd));
        let o = s.observe_any(&c).await;
        let reason = &o.unobservable[0].reason;
        eprintln!("dead socket: {reason}");
        let refused = "LXD is not running or not reachable: cannot connect to ";
        assert!(reason.starts_with(&format!("observing LXD: {refused}")), "{reason}");
        assert!(reason.contains("refused"), "{reason}");
        let e = s.lxd.apply(&a, &ActionLog::discard()).await.expect_err("no daemon");
        assert!(e.kind() == ErrorKind::Unavailable, "{e:?}");
        assert!(
            e.report().to_string().starts_with(&format!("lxd_instance.rf3a (member rf3a): {refused}")),
            "{e}",
            e = e.report()
        );
    });
}

/// Fault 3b: `Client::discover` with `LXD_DIR` at an empty directory and no `LXD_SOCKET`. Environment variables are
/// process-wide and the other tests read `LXD_DIR`, so this runs in a child process: this test binary again, running
/// only [`discover_child`] with the variables set.
#[test]
fn discover_without_a_socket_reports_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "discover_child", "--nocapture", "--test-threads=1"])
        .env("RF_DISCOVER_CHILD", "1")
        .env("LXD_DIR", dir.path())
        .env_remove("LXD_SOCKET")
        .output()
        .expect("run the child");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran nothing: {text}");
}

/// The child of [`discover_without_a_socket_reports_not_installed`]; does nothing in a normal run.
#[test]
fn discover_child() {
    if std::env::var_os("RF_DISCOVER_CHILD").is_none() {
        return;
    }
    let dir = std::env::var("LXD_DIR").unwrap();
    let cl = Client::discover(Flavor::Lxd);
    let defaults = ["/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket"];
    if let Some(found) = defaults.iter().find(|p| Path::new(p).exists()) {
        // A machine with a system LXD: discovery must find it instead (and we cannot prove "none").
        assert_eq!(cl.socket(), Path::new(found));
        eprintln!("a system LXD socket exists at {found}; discovery found it");
        return;
    }
    let c = config(&file("rf3", 93, &[("rf3a", 28301)]));
    rt().block_on(async {
        let s = Stack::with_client("rf3", cl);
        let o = s.observe_any(&c).await;
        let reason = &o.unobservable[0].reason;
        eprintln!("discover: {reason}");
        assert_eq!(
            reason,
            &format!(
                "observing LXD: LXD is not installed or not running: no socket at {dir}/unix.socket, {}{START_HINT}",
                defaults.join(", ")
            )
        );
    });
}

/// Fault 4: The daemon lost in the middle of an apply, and back.
///
/// This models a daemon restart at the socket level: testbed's client reaches LXD only through its unix
/// socket, so a proxy socket in front of the real one that stops (cutting the request in flight, refusing
/// new connections) and comes back is, for the client, the daemon going away and returning. Restarting the
/// real test daemon (`lxd shutdown`, SIGTERM) would stop every container of every other test sharing it.
/// Like a real restart, the request in flight was received: the daemon finishes that operation by itself, and
/// the next apply must pick up from whatever it left.
fn a_daemon_lost_mid_apply_fails_the_steps_in_flight_and_a_later_apply_converges(d: Daemon) {
    let t = d.tag("rf4");
    let owned = ["a", "b", "c", "d"].map(|m| format!("{t}{m}"));
    let names = owned.each_ref().map(String::as_str);
    let members: Vec<(&str, u16)> =
        names.iter().zip([28401, 28402, 28403, 28404]).map(|(m, p)| (*m, d.port(p))).collect();
    let c = config(&file_on(d, &t, d.subnet(94), &members));
    rt().block_on(async {
        let cl = d.client();
        clear(&cl, &names, &t).await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = Arc::new(SocketProxy::start(dir.path().join("daemon.sock"), d.dir().join("unix.socket")));
        let s = Stack::with_client(&t, proxy.client_as(d.flavor()));

        let p = s.plan(&c).await;
        let lxd = p.actions().into_iter().filter(|a| a.kind.layer() == Layer::Lxd).count();
        assert_eq!(lxd, 10, "bridge, profile, 4 containers, 4 proxies: {:?}", addresses(&p));
        // Once the first container is made, cut the daemon off during the next operation it runs.
        let armed = Arc::new(AtomicBool::new(false));
        let (px, armed2) = (Arc::clone(&proxy), Arc::clone(&armed));
        let r = s
            .run_with(&p, 1, move |e| {
                if let Event::Finished { address, outcome: Outcome::Done, .. } = e {
                    if address.as_str().starts_with("lxd_instance.") && !armed2.swap(true, Ordering::SeqCst) {
                        px.cut_on_next_wait();
                    }
                }
            })
            .await;
        assert_eq!(proxy.cut.load(Ordering::SeqCst), 1, "the daemon was cut off mid-operation");
        assert!(!proxy.is_running());
        assert!(
            r.actions.iter().any(|a| a.address.as_str().starts_with("lxd_instance.") && a.outcome.is_done()),
            "a first container is made before the cut: {}",
            r.summary_line("Apply")
        );
        assert!(r.failed() >= 1, "{}", r.summary_line("Apply"));
        let mut lost = 0;
        for (a, e) in r.failures() {
            let msg = e.report().to_string();
            eprintln!("lost daemon: {msg}\n  hint: {:?}", e.hint());
            let member = a.as_str().split('.').nth(1).unwrap();
            assert!(e.kind() == ErrorKind::Unavailable, "{a}: {e:?}");
            assert!(msg.starts_with(&format!("{a} (member {member}): {} ", d.flavor().name())), "{msg}");
            assert!(msg.contains("not reachable"), "{msg}");
            assert!(e.hint().is_some_and(|h| h.contains("apply again")), "{:?}", e.hint());
            if msg.contains(": the connection to ") && msg.contains(" broke during GET /1.0/operations/") {
                lost += 1;
            } else {
                // After the cut, a step either finds nobody listening or, first, writes its request on a kept
                // connection that the cut closed before the client noticed: that breaks too.
                let refused = msg.contains("not running or not reachable: cannot connect to ");
                let kept = msg.contains(": the connection to ") && msg.contains(" broke during ");
                assert!(refused || kept, "{msg}");
            }
        }
        assert_eq!(lost, 1, "exactly one step lost its answer mid-operation: {:?}", failures(&r));

        // The daemon is back. What it finished on its own is observed; the rest is planned and done.
        proxy.restart();
        settle(&cl, &names).await;
        let p = s.plan(&c).await;
        assert!(!p.is_empty());
        let r = s.run(&p, 2).await;
        assert!(r.success(), "{}: {:?}", r.summary_line("Apply"), failures(&r));
        assert!(s.plan(&c).await.is_empty());
        for m in names {
            let i: Value = cl.get(&format!("/1.0/instances/{m}")).await.unwrap();
            assert_eq!(i["status"], "Running", "{m}");
        }

        let destroyed = s.run(&s.destroy_plan(&c).await, 4).await;
        assert!(destroyed.success(), "destroy: {:?}", failures(&destroyed));
        clear(&cl, &names, &t).await;
    });
}

/// Fault 5: A key of testbed's profile changed by hand: exactly that profile is updated, the key in the reason.
fn a_profile_key_changed_by_hand_is_planned_and_repaired(d: Daemon) {
    let t = d.tag("rf5");
    let a = format!("{t}a");
    let c = config(&file_on(d, &t, d.subnet(95), &[(a.as_str(), d.port(28501))]));
    let profile_path = format!("/1.0/profiles/tb{t}-member");
    rt().block_on(async {
        let s = Stack::on(d, &t);
        let cl = d.client();
        clear(&cl, &[&a], &t).await;
        let r = s.run(&s.plan(&c).await, 4).await;
        assert!(r.success(), "{:?}", failures(&r));
        assert!(s.plan(&c).await.is_empty());

        cl.patch(&profile_path, &json!({"config": {"security.nesting": "false"}})).await.unwrap();
        let p = s.plan(&c).await;
        assert_eq!(addresses(&p), [format!("lxd_profile.tb{t}-member")]);
        let action = p.actions()[0];
        assert_eq!(action.op.name(), "update");
        assert_eq!(action.reason, "security.nesting: \"false\" → \"true\"");

        let r = s.run(&p, 4).await;
        assert!(r.success(), "{:?}", failures(&r));
        let profile: Value = cl.get(&profile_path).await.unwrap();
        assert_eq!(profile["config"]["security.nesting"], "true");
        assert!(s.plan(&c).await.is_empty());
        let i: Value = cl.get(&format!("/1.0/instances/{a}")).await.unwrap();
        assert_eq!(i["status"], "Running");

        let destroyed = s.run(&s.destroy_plan(&c).await, 4).await;
        assert!(destroyed.success(), "destroy: {:?}", failures(&destroyed));
        clear(&cl, &[&a], &t).await;
    });
}

/// Fault 6: The kernel-module pre-flight: a profile asking LXD to load a module this kernel does not have fails before
/// anything of the profile is made, naming the module and where to change the list.
#[test]
fn a_kernel_module_the_host_lacks_fails_the_profile_before_it_is_made() {
    assert!(
        !Path::new("/sys/module/ip_vs").exists(),
        "precondition: this test needs a kernel without ip_vs loaded (/sys/module/ip_vs exists here)"
    );
    assert!(Path::new("/sys/module/overlay").exists(), "precondition: overlay is loaded");
    let text = file("rf6", 96, &[("rf6a", 28601)]).replace("\"overlay,nf_conntrack\"", "\"ip_vs,overlay\"");
    assert!(text.contains("\"linux.kernel_modules\" = \"ip_vs,overlay\""));
    let c = config(&text);
    rt().block_on(async {
        let s = Stack::new("rf6");
        let cl = client();
        clear(&cl, &["rf6a"], "rf6").await;

        let r = s.run(&s.plan(&c).await, 4).await;
        let e = failed_with(&r, "lxd_profile.tbrf6-member");
        let msg = e.report().to_string();
        eprintln!("kernel modules: {msg}\n  hint: {:?}", e.hint());
        assert!(e.kind() == ErrorKind::Precondition, "{e:?}");
        assert!(msg.starts_with("lxd_profile.tbrf6-member: "), "{msg}");
        assert!(msg.contains("ip_vs") && !msg.contains("overlay"), "only the missing module: {msg}");
        assert!(e.hint().is_some_and(|h| h.contains("[lxd.profile_config]")), "{:?}", e.hint());
        assert_eq!(r.failed(), 1, "{:?}", failures(&r));
        let profile = addr("lxd_profile.tbrf6-member");
        assert_eq!(outcome(&r, "lxd_instance.rf6a"), &Outcome::Skipped { because: profile.clone() });
        assert!(matches!(outcome(&r, "proxy.rf6a.api"), Outcome::Skipped { .. }));
        assert!(!exists(&cl, "/1.0/profiles/tbrf6-member").await, "nothing of the profile is made");
        assert!(!exists(&cl, "/1.0/instances/rf6a").await);

        let destroyed = s.run(&s.destroy_plan(&c).await, 4).await;
        assert!(destroyed.success(), "destroy: {:?}", failures(&destroyed));
        clear(&cl, &["rf6a"], "rf6").await;
    });
}

fn addr(s: &str) -> testbed_plan::Address {
    testbed_plan::Address::parse(s).expect("an address")
}
