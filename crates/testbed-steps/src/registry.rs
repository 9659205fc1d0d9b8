//! The registry layer's steps: the local registry addon, images copied into it, images side-loaded into members.

use testbed_plan::{Action, Kind};

use crate::*;

/// Where side-loaded archives are pushed in a member (and removed from once imported).
pub(crate) const SIDELOAD_DIR: &str = "/var/lib/testbed/sideload";

/// `SIDELOAD_DIR/NAME.tar` for `sideload.MEMBER.NAME`.
fn sideload_tar(a: &Action, m: &str) -> String {
    let address = a.address.as_str();
    let name = address.strip_prefix(&format!("sideload.{m}.")).unwrap_or(address);
    format!("{SIDELOAD_DIR}/{name}.tar")
}

/// An image reference as containerd names it, and so as `microk8s ctr images ls` lists it:
/// `flask-demo:2.0` is `docker.io/library/flask-demo:2.0`. A reference that does not parse is kept as it is.
pub fn containerd_name(source: &str) -> String {
    match testbed_config::image_ref::ImageRef::parse(source) {
        Ok(r) => {
            let tag = r.tag.map(|t| format!(":{t}")).unwrap_or_default();
            let digest = r.digest.map(|d| format!("@{d}")).unwrap_or_default();
            format!("{}/{}{tag}{digest}", r.registry, r.repository)
        }
        Err(_) => source.to_owned(),
    }
}

pub(crate) fn create(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::Registry => vec![
            host(["microk8s", "enable", "registry"]).with_role(Role::AddonChange),
            Step::Call {
                api: "registry",
                method: "GET",
                path: format!("http://localhost:{}/v2/", setting(a, "port")),
                note: "until it answers 200".into(),
                purpose: Purpose::Shown,
            },
        ],
        Kind::Image => vec![Step::Call {
            api: "registry",
            method: "COPY",
            path: format!("{} -> {}", setting(a, "source"), setting(a, "target")),
            note: "manifest, config and layers over the distribution API; digests kept".into(),
            purpose: Purpose::Shown,
        }],
        Kind::Sideload => {
            // LXD's file API does not create parents: the directory first. The tar goes once imported.
            let tar = sideload_tar(a, &m);
            let archive = a.desired.as_ref().and_then(|r| r.spec.get("archive"));
            let image = containerd_name(setting(a, "source"));
            let what = match archive {
                Some(archive) => format!("push {archive} (mode 0600), holding {image}"),
                None => format!("push an archive of {image} (mode 0600)"),
            };
            vec![
                run(Where::Member(m.clone()), ["mkdir", "-p", SIDELOAD_DIR]),
                Step::Call {
                    api: "lxd",
                    method: "POST",
                    path: format!("/1.0/instances/{m}/files?path={tar}"),
                    note: what,
                    purpose: Purpose::PushFile { member: m.clone(), path: tar.clone() },
                },
                run(Where::Member(m.clone()), ["microk8s", "images", "import", &tar]).with_role(Role::ImageImport),
                run(Where::Member(m), ["rm", "-f", &tar]).with_role(Role::RemoveArchive),
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
        Kind::Registry => vec![host(["microk8s", "disable", "registry"]).with_role(Role::AddonChange)],
        Kind::Image => vec![Step::Call {
            api: "registry",
            method: "DELETE",
            path: format!("{} (by digest)", setting(a, "target")),
            note: String::new(),
            purpose: Purpose::Shown,
        }],
        // The image that is there now: for an update, the observed one, not the one the file wants.
        Kind::Sideload => {
            let source = a.observed.as_ref().and_then(|o| o.spec.get("source")).map(String::as_str);
            let source = source.unwrap_or_else(|| setting(a, "source"));
            vec![run(Where::Member(m), ["microk8s", "ctr", "images", "rm", &containerd_name(source)])]
        }
        _ => vec![],
    }
}
