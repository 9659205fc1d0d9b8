//! The MicroK8s layer's steps: the host's MicroK8s and addons, each member's MicroK8s and addons (through LXD exec),
//! and the members' kubeconfigs on the host.
//!
//! What testbed records, and where (so that observation can tell testbed's work from someone else's):
//!
//! - the host MicroK8s testbed installed carries [`HOST_OWNER_MARKER`], a file naming the testbed (a MicroK8s
//!   on the host without it was there before and is used as it is);
//! - the addons testbed enabled are listed in [`ADDONS_RECORD`], one empty file per addon, on the host and in
//!   each member alike (argument vectors only: LXD exec has no stdin to write a file's content with). An
//!   addon MicroK8s enables by itself (`ha-cluster`, `helm`, or `hostpath-storage` for `registry`) is not in
//!   the record, so testbed never disables it;
//! - both live in the snap's own data directory and go with `snap remove microk8s --purge`.

use testbed_plan::{Action, Kind};

use crate::*;

/// Marks the host MicroK8s as installed by testbed; its content is the testbed's name.
pub(crate) const HOST_OWNER_MARKER: &str = "/var/snap/microk8s/common/testbed-owner";
/// The addons testbed enabled: one empty file per addon, named after it.
pub(crate) const ADDONS_RECORD: &str = "/var/snap/microk8s/common/testbed-addons";

fn wait_ready(at: Where) -> Step {
    run(at, ["microk8s", "status", "--wait-ready", "--timeout", "300"])
}

/// Records `addons` as enabled by testbed.
fn record_addons(at: &Where, addons: &[String], s: &mut Vec<Step>) {
    if addons.is_empty() {
        return;
    }
    s.push(run(at.clone(), ["mkdir", "-p", ADDONS_RECORD]));
    let mut argv = vec!["touch".to_owned()];
    argv.extend(addons.iter().map(|a| format!("{ADDONS_RECORD}/{a}")));
    s.push(run(at.clone(), argv));
}

/// Forgets `addons` from the record.
fn forget_addons(at: &Where, addons: &[String], s: &mut Vec<Step>) {
    if addons.is_empty() {
        return;
    }
    let mut argv = vec!["rm".to_owned(), "-f".into()];
    argv.extend(addons.iter().map(|a| format!("{ADDONS_RECORD}/{a}")));
    s.push(run(at.clone(), argv));
}

fn addons_at(a: &Action) -> Where {
    if a.kind == Kind::Microk8sAddons {
        Where::Member(member(a))
    } else {
        Where::Host
    }
}

pub(crate) fn create(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostMicrok8s => vec![
            host([
                "snap".to_owned(),
                "install".into(),
                "microk8s".into(),
                "--classic".into(),
                format!("--channel={}", setting(a, "channel")),
            ]),
            Step::Write {
                at: Where::Host,
                path: HOST_OWNER_MARKER.to_owned(),
                mode: 0o644,
                content: "the testbed's name (this MicroK8s is testbed's)".into(),
            },
            wait_ready(Where::Host),
        ],
        Kind::HostAddons | Kind::Microk8sAddons => {
            let at = addons_at(a);
            let addons = list(a, "addons");
            if addons.is_empty() {
                return vec![];
            }
            let mut argv: Vec<String> = vec!["microk8s".into(), "enable".into()];
            argv.extend(addons.iter().cloned());
            let mut s = vec![run(at.clone(), argv), wait_ready(at.clone())];
            record_addons(&at, &addons, &mut s);
            s
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
            wait_ready(Where::Member(m)),
        ],
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
        _ => vec![],
    }
}

pub(crate) fn update(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::Kubeconfig => create(a, cx),
        Kind::HostMicrok8s | Kind::Microk8s => {
            let at = if a.kind == Kind::Microk8s { Where::Member(m) } else { Where::Host };
            let mut s = Vec::new();
            let refresh = a.changes.iter().any(|c| c.key == "channel");
            if refresh {
                s.push(run(
                    at.clone(),
                    [
                        "snap".to_owned(),
                        "refresh".into(),
                        "microk8s".into(),
                        format!("--channel={}", setting(a, "channel")),
                    ],
                ));
            }
            // A stopped MicroK8s stays stopped through a refresh: start it whenever it is not healthy.
            let unhealthy = a.observed.as_ref().is_some_and(|o| o.health != testbed_plan::Health::Ok);
            if !refresh || unhealthy {
                s.push(run(at.clone(), ["microk8s", "start"]));
            }
            s.push(wait_ready(at));
            s
        }
        Kind::HostAddons | Kind::Microk8sAddons => {
            let at = addons_at(a);
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
                argv.extend(add.iter().cloned());
                s.push(run(at.clone(), argv));
                record_addons(&at, &add, &mut s);
            }
            if !remove.is_empty() {
                let mut argv = vec!["microk8s".to_owned(), "disable".into()];
                argv.extend(remove.iter().cloned());
                s.push(run(at.clone(), argv));
                forget_addons(&at, &remove, &mut s);
            }
            s
        }
        _ => vec![],
    }
}

pub(crate) fn delete(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostMicrok8s => vec![host(["snap", "remove", "microk8s", "--purge"])],
        Kind::HostAddons | Kind::Microk8sAddons => {
            let at = addons_at(a);
            let addons = list(a, "addons");
            if addons.is_empty() {
                return vec![];
            }
            let mut argv = vec!["microk8s".to_owned(), "disable".into()];
            argv.extend(addons.iter().cloned());
            let mut s = vec![run(at.clone(), argv)];
            forget_addons(&at, &addons, &mut s);
            s
        }
        Kind::Microk8s => vec![run(Where::Member(m), ["snap", "remove", "microk8s", "--purge"])],
        Kind::Kubeconfig => [setting(a, "path"), setting(a, "karmada_path")]
            .into_iter()
            .map(|p| {
                Step::Note(format!(
                    "remove {p} if its first line is testbed's marker (a file testbed did not write is kept)"
                ))
            })
            .collect(),
        _ => vec![],
    }
}
