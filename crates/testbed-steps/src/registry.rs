//! The registry layer's steps: the local registry addon, images copied into it, images side-loaded into members.

use testbed_plan::{Action, Kind};

use crate::*;

pub(crate) fn create(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
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
        _ => vec![],
    }
}

pub(crate) fn update(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::Image => create(a, cx),
        Kind::Registry | Kind::Sideload => {
            let mut s = delete(a, cx);
            s.extend(create(a, cx));
            s
        }
        _ => vec![],
    }
}

pub(crate) fn delete(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::Registry => vec![host(["microk8s", "disable", "registry"])],
        Kind::Image => vec![Step::Call {
            api: "registry",
            method: "DELETE",
            path: format!("{} (by digest)", setting(a, "target")),
            note: String::new(),
        }],
        Kind::Sideload => vec![run(Where::Member(m), ["microk8s", "ctr", "images", "rm", setting(a, "source")])],
        _ => vec![],
    }
}
