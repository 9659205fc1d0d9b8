//! Each member's MicroK8s pulls from the host's local registry at the bridge gateway, plain HTTP, under the
//! gateway's address and under `localhost:32000`, the name images have on the host (`certs.d/<host:port>/
//! hosts.toml`, one file each): written through LXD's file push right after the install, checked by
//! observation, rewritten by a repair.

mod common;

use std::sync::Arc;

use common::*;
use testbed_command::{Push, Reply, ScriptedRunner};
use testbed_plan::{Action, Health, Kind, Op};
use testbed_provider::{ActionLog, Provider};
use testbed_steps::{Context, Purpose, Step, Where};

/// The file, byte for byte: what MicroK8s documents for an HTTP registry (and ships for its own
/// `localhost:32000`), for the bridge gateway and the registry port.
const HOSTS_TOML: &str = "# Written by testbed: pull from the host's local registry over plain HTTP.\n\
server = \"http://10.123.45.1:32000\"\n\
\n\
[host.\"http://10.123.45.1:32000\"]\n\
\x20 capabilities = [\"pull\", \"resolve\"]\n";

const TRUST: &str = "/var/snap/microk8s/current/args/certs.d/10.123.45.1:32000/hosts.toml";

/// The file for `localhost:32000`, byte for byte: pulls and resolves go to the gateway's registry, and so
/// does the fallback (`server`), instead of the member's own `localhost:32000`.
const LOCAL_TOML: &str = "# Written by testbed: localhost:32000 is the host's local registry, reached at the bridge gateway over plain HTTP.\n\
server = \"http://10.123.45.1:32000\"\n\
\n\
[host.\"http://10.123.45.1:32000\"]\n\
\x20 capabilities = [\"pull\", \"resolve\"]\n";

const LOCAL: &str = "/var/snap/microk8s/current/args/certs.d/localhost:32000/hosts.toml";

/// What MicroK8s itself ships for `localhost:32000` (`microk8s-resources/default-args/certs.d/
/// localhost__32000/hosts.toml`): the member's own port, where nothing listens.
const MICROK8S_LOCAL_TOML: &str =
    "server = \"http://localhost:32000\"\n\n[host.\"http://localhost:32000\"]\n  capabilities = [\"pull\", \"resolve\"]\n";

/// The pushes of both files into member1, as testbed writes them.
fn both_pushed() -> Vec<Push> {
    vec![
        Push { member: "member1".into(), path: TRUST.into(), content: HOSTS_TOML.as_bytes().to_vec(), mode: 0o644 },
        Push { member: "member1".into(), path: LOCAL.into(), content: LOCAL_TOML.as_bytes().to_vec(), mode: 0o644 },
    ]
}

fn m1() -> Where {
    Where::Member("member1".into())
}

/// What the scripted runner's transcript shows for each of the catalogue's steps of `action`.
fn catalogue_transcript(action: &Action, cx: &Context) -> Vec<String> {
    testbed_steps::steps(action, cx)
        .into_iter()
        .map(|s| match s {
            Step::Call { purpose: Purpose::PushFile { member, path }, .. } => {
                let bytes = if path == LOCAL { LOCAL_TOML.len() } else { HOSTS_TOML.len() };
                format!("{member}$ <push {path} ({bytes} bytes)>")
            }
            Step::Until { step, .. } => step.to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// A lab whose member1 runs in a container testbed created; MicroK8s in it as `tracking` says.
struct Lab {
    _dir: tempfile::TempDir,
    config: testbed_config::Config,
    runner: ScriptedRunner,
    p: testbed_microk8s::Microk8sProvider,
}

fn lab(member_microk8s: Option<&str>) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("member1", 16441)], "\"dns\"");
    let runner = ScriptedRunner::new();
    inside(&runner, Where::Host, Some("1.35/stable"), status_running(&["dns"]), &["dns"]);
    inside(&runner, m1(), member_microk8s, status_running(&["dns"]), &["dns"]);
    let containers = Arc::new(Containers::default());
    containers.0.lock().unwrap().push(container("member1", true, true));
    mark_host(dir.path(), "lab");
    let p = provider(&runner, &containers, &config, dir.path());
    Lab { _dir: dir, config, runner, p }
}

async fn planned(lab: &Lab) -> Vec<Action> {
    let desired = testbed_plan::desired::build(&lab.config, &Default::default());
    let state = observed_with_the_rest(&lab.p, &desired).await;
    testbed_plan::plan(&desired, &state).unwrap().actions().into_iter().cloned().collect()
}

#[tokio::test]
async fn installing_a_members_microk8s_writes_the_trust_of_the_local_registry() {
    let lab = lab(None);
    let create = planned(&lab).await.into_iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    assert_eq!(create.op, Op::Create);
    lab.runner.on(&["snap", "wait"], Reply::ok(""));
    lab.runner.on(&["snap", "install"], Reply::ok("microk8s (1.35/stable) v1.35.0 from Canonical✓ installed\n"));
    lab.runner.on(&["microk8s", "status", "--wait-ready"], Reply::ok("microk8s is running\n"));
    lab.runner.on(&["mkdir"], Reply::ok(""));
    let before = lab.runner.transcript().len();
    let (log, seen) = capture();
    lab.p.apply(&create, &log).await.unwrap();

    let ran = lab.runner.transcript()[before..].to_vec();
    assert_eq!(ran, catalogue_transcript(&create, &Context::new(&lab.config)), "exactly the catalogue's steps");
    assert_eq!(
        ran[2..],
        [
            "member1$ microk8s status --wait-ready --timeout 300".to_owned(),
            "member1$ mkdir -p /var/snap/microk8s/current/args/certs.d/10.123.45.1:32000 /var/snap/microk8s/current/args/certs.d/localhost:32000".to_owned(),
            format!("member1$ <push {TRUST} ({} bytes)>", HOSTS_TOML.len()),
            format!("member1$ <push {LOCAL} ({} bytes)>", LOCAL_TOML.len()),
        ],
        "installed, then both files written, and no restart"
    );
    assert_eq!(lab.runner.pushes(), both_pushed());
    let logged = seen.text();
    assert!(logged.contains(&format!("/1.0/instances/member1/files?path={TRUST}")), "{logged}");
    assert!(logged.contains(&format!("/1.0/instances/member1/files?path={LOCAL}")), "{logged}");
}

/// real-tools.md behaviour 2: a freshly started container's snapd is still seeding, and `snap wait` fails
/// until it answers; testbed runs it again until it succeeds, then installs.
#[tokio::test(start_paused = true)]
async fn microk8s_is_installed_once_the_containers_snapd_has_seeded() {
    let lab = lab(None);
    let create = planned(&lab).await.into_iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    let too_early = "error: too early for operation, device not yet seeded or device model not acknowledged";
    lab.runner.on_seq(&["snap", "wait"], vec![Reply::exit(1, too_early), Reply::exit(1, too_early), Reply::ok("")]);
    lab.runner.on(&["snap", "install"], Reply::ok("microk8s (1.35/stable) v1.35.0 from Canonical✓ installed\n"));
    lab.runner.on(&["microk8s", "status", "--wait-ready"], Reply::ok("microk8s is running\n"));
    lab.runner.on(&["mkdir"], Reply::ok(""));
    let before = lab.runner.transcript().len();
    lab.p.apply(&create, &ActionLog::discard()).await.unwrap();
    let ran = lab.runner.transcript()[before..].to_vec();
    let waits = ran.iter().take_while(|l| l.contains("snap wait system seed.loaded")).count();
    assert_eq!(waits, 3, "{ran:?}");
    assert!(ran[3].contains("snap install microk8s"), "{ran:?}");
}

#[tokio::test]
async fn a_missing_trust_needs_repair_and_the_repair_writes_it() {
    let lab = lab(Some("1.35/stable"));
    lab.runner.on_at(m1(), &["cat", TRUST], trust_missing());
    let actions = planned(&lab).await;
    let update = actions.iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    assert_eq!(update.op, Op::Update);
    let Some(Health::NeedsRepair(why)) = update.observed.as_ref().map(|o| o.health.clone()) else {
        panic!("{update:?}")
    };
    assert_eq!(
        why,
        format!(
            "its trust of the local registry ({TRUST}) is missing (cat: {TRUST}: No such file or directory); will be written"
        )
    );
    assert!(actions.iter().all(|a| a.kind != Kind::Microk8sAddons), "only MicroK8s itself is repaired");

    lab.runner.on(&["microk8s"], Reply::ok(""));
    lab.runner.on(&["mkdir"], Reply::ok(""));
    lab.p.apply(update, &ActionLog::discard()).await.unwrap();
    assert_eq!(lab.runner.pushes(), both_pushed());

    // Once written, the next look finds nothing to do.
    lab.runner.on_at(m1(), &["cat", TRUST], trust_written());
    assert!(planned(&lab).await.iter().all(|a| a.kind != Kind::Microk8s));
}

#[tokio::test]
async fn a_trust_that_differs_is_rewritten() {
    let lab = lab(Some("1.35/stable"));
    // Someone pointed it at HTTPS by hand.
    lab.runner.on_at(m1(), &["cat", TRUST], Reply::ok(&HOSTS_TOML.replace("http://", "https://")));
    let update = planned(&lab).await.into_iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    assert_eq!(
        update.reason,
        format!("its trust of the local registry ({TRUST}) is not what testbed writes; will be rewritten")
    );
}

/// A fresh MicroK8s has its own file for `localhost:32000` (pointing at the member itself): testbed's
/// replaces it, and a file someone removed or put back is written again.
#[tokio::test]
async fn the_file_for_localhost_is_testbeds_and_is_written_again_when_missing_or_microk8s_own() {
    let lab = lab(Some("1.35/stable"));
    lab.runner.on_at(m1(), &["cat", LOCAL], Reply::ok(MICROK8S_LOCAL_TOML));
    let update = planned(&lab).await.into_iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    assert_eq!(update.op, Op::Update);
    assert_eq!(
        update.reason,
        format!(
            "its route from localhost:32000 to the local registry ({LOCAL}) is not what testbed writes; will be rewritten"
        )
    );

    lab.runner.on_at(m1(), &["cat", LOCAL], Reply::exit(1, &format!("cat: {LOCAL}: No such file or directory\n")));
    let update = planned(&lab).await.into_iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    assert_eq!(
        update.reason,
        format!(
            "its route from localhost:32000 to the local registry ({LOCAL}) is missing (cat: {LOCAL}: No such file or directory); will be written"
        )
    );
    lab.runner.on(&["microk8s"], Reply::ok(""));
    lab.runner.on(&["mkdir"], Reply::ok(""));
    lab.p.apply(&update, &ActionLog::discard()).await.unwrap();
    assert_eq!(lab.runner.pushes(), both_pushed());
    assert!(!lab.runner.transcript().iter().any(|l| l.contains("microk8s stop") || l.contains("restart")));

    lab.runner.on_at(m1(), &["cat", LOCAL], Reply::ok(LOCAL_TOML));
    assert!(planned(&lab).await.iter().all(|a| a.kind != Kind::Microk8s));
}

/// Both files wrong: one repair, both reasons.
#[tokio::test]
async fn both_files_wrong_are_one_repair_with_both_reasons() {
    let lab = lab(Some("1.35/stable"));
    lab.runner.on_at(m1(), &["cat", TRUST], trust_missing());
    lab.runner.on_at(m1(), &["cat", LOCAL], Reply::ok(MICROK8S_LOCAL_TOML));
    let updates: Vec<Action> = planned(&lab).await.into_iter().filter(|a| a.kind == Kind::Microk8s).collect();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0].reason,
        format!(
            "its trust of the local registry ({TRUST}) is missing (cat: {TRUST}: No such file or directory); will be written; its route from localhost:32000 to the local registry ({LOCAL}) is not what testbed writes; will be rewritten"
        )
    );
}

#[tokio::test]
async fn a_refused_push_names_the_member_and_what_to_check() {
    let lab = lab(None);
    let create = planned(&lab).await.into_iter().find(|a| a.kind == Kind::Microk8s).unwrap();
    lab.runner.on(&["snap", "wait"], Reply::ok(""));
    lab.runner.on(&["snap", "install"], Reply::ok(""));
    lab.runner.on(&["microk8s", "status", "--wait-ready"], Reply::ok("microk8s is running\n"));
    lab.runner.on(&["mkdir"], Reply::ok(""));
    lab.runner.refuse_pushes("member1", "Instance not found");
    let e = lab.p.apply(&create, &ActionLog::discard()).await.unwrap_err();
    assert_eq!(
        e.report().to_string(),
        format!(
            "microk8s.member1: cannot write the local registry's trust in member1: cannot run a file push to {TRUST} in member1: Instance not found"
        )
    );
    assert!(e.hint().unwrap().contains("lxc exec member1 -- ls /var/snap/microk8s/current/args/certs.d"), "{e:?}");
    assert!(lab.runner.pushes().is_empty());
}
