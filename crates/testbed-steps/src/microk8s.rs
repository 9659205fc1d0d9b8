//! The MicroK8s layer's steps: the host's MicroK8s and addons, each member's MicroK8s and addons (through LXD exec),
//! and the members' kubeconfigs on the host.

use testbed_plan::{Action, Kind};

use crate::*;

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
            host(["microk8s", "status", "--wait-ready", "--timeout", "300"]),
        ],
        Kind::HostAddons => {
            let mut argv: Vec<String> = vec!["microk8s".into(), "enable".into()];
            argv.extend(list(a, "addons"));
            vec![host(argv), host(["microk8s", "status", "--wait-ready", "--timeout", "300"])]
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
        _ => vec![],
    }
}

pub(crate) fn delete(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostMicrok8s => vec![host(["snap", "remove", "microk8s", "--purge"])],
        Kind::HostAddons => {
            let mut argv = vec!["microk8s".to_owned(), "disable".into()];
            argv.extend(list(a, "addons"));
            vec![host(argv)]
        }
        Kind::Microk8s => vec![run(Where::Member(m), ["snap", "remove", "microk8s", "--purge"])],
        Kind::Microk8sAddons => {
            let mut argv = vec!["microk8s".to_owned(), "disable".into()];
            argv.extend(list(a, "addons"));
            vec![run(Where::Member(m), argv)]
        }
        Kind::Kubeconfig => {
            vec![host(["rm", "-f", setting(a, "path")]), host(["rm", "-f", setting(a, "karmada_path")])]
        }
        _ => vec![],
    }
}
