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
//!
//! Each member's MicroK8s also pulls from the host's local registry, which it reaches over plain HTTP at the
//! bridge gateway (`GATEWAY:PORT`, e.g. `10.123.45.1:32000`), under two names ([`member_registry_files`]):
//!
//! - `GATEWAY:PORT` itself (a pull-mode member's karmada-agent image): [`registry_hosts_toml`] written to
//!   [`registry_trust_path`]. MicroK8s trusts only its own `localhost:32000` out of the box, and containerd
//!   refuses HTTP from any other registry ("http: server gave HTTP response to HTTPS client");
//! - `localhost:PORT`, the name images have on the host (`[[images]]` copies them there as
//!   `localhost:PORT/NAME:TAG`), so that a workload's manifests name an image as the host does:
//!   [`localhost_hosts_toml`] replaces the file MicroK8s ships for `localhost:32000` (which sends pulls to the
//!   member's own `localhost:32000`, where nothing listens) with one that sends them to the gateway.

use testbed_plan::{Action, Kind};

use crate::*;

/// Marks the host MicroK8s as installed by testbed; its content names the testbed. `snap remove microk8s
/// --purge` takes it along. The MicroK8s provider reads it.
pub const HOST_OWNER_MARKER: &str = "/var/snap/microk8s/common/testbed-owner";
/// The addons testbed enabled, on the host and in each member: one empty file per addon, named after it.
/// The MicroK8s provider reads it.
pub const ADDONS_RECORD: &str = "/var/snap/microk8s/common/testbed-addons";

/// testbed's record of the MicroK8s snap it installed in a member from a download ([`snap_record`]): a snap
/// installed from a file tracks no channel (`snap list` shows `-`), so the channel it came from is kept
/// here, with the revision, which observation compares with the installed one. `--purge` takes it along.
pub const SNAP_RECORD: &str = "/var/snap/microk8s/common/testbed-snap";
/// Where a member receives the downloaded snaps before installing them (removed after the install).
pub const MEMBER_SNAP_DIR: &str = "/var/lib/testbed/snaps";

/// The content of [`SNAP_RECORD`]: the channel downloaded and the revision the download's assertion names.
pub fn snap_record(channel: &str, revision: &str) -> String {
    format!("channel={channel}\nrevision={revision}\n")
}

/// The download a member's MicroK8s is installed from: the name of its `snap_download` dependency.
fn download_of(a: &Action) -> Option<String> {
    a.desired
        .as_ref()?
        .depends_on
        .iter()
        .find(|d| d.kind() == Some(Kind::SnapDownload))
        .and_then(|d| d.as_str().split_once('.').map(|(_, name)| name.to_owned()))
}

/// The snap of a channel and its base, with their assertions, into the download directory. `snap download`
/// names its files after `--basename` (`NAME.snap`, `NAME.assert`), and fetches nothing when the file is
/// there with the store's SHA3-384 for the channel's revision (snapd `store/tooling`: "not downloading,
/// using existing file"). The base is what the snap's own metadata names (`snap info --verbose FILE`).
fn download(a: &Action, cx: &Context) -> Vec<Step> {
    let name = a.desired.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let file = cx.snap_download(&name);
    vec![
        host(["mkdir", "-p", &cx.downloads]),
        host([
            "snap".to_owned(),
            "download".into(),
            "microk8s".into(),
            format!("--channel={}", setting(a, "channel")),
            format!("--target-directory={}", cx.downloads),
            format!("--basename={name}"),
        ])
        .with_role(Role::SnapDownload),
        host(["snap".to_owned(), "info".into(), "--verbose".into(), format!("{file}.snap")]).with_role(Role::SnapBase),
        Step::Run {
            at: Where::Host,
            argv: vec![
                "snap".into(),
                "download".into(),
                Arg::Runtime("base"),
                format!("--target-directory={}", cx.downloads).into(),
                format!("--basename={name}.base").into(),
            ],
            role: Role::SnapDownload,
        },
    ]
}

/// Installs (or, over an installed one, refreshes in place) a member's MicroK8s from the download `name`:
/// the files pushed through LXD, the assertions acknowledged (`snap install FILE` without them refuses:
/// "cannot find signatures with metadata for snap"), the base installed the same way when the member lacks
/// it, then the snap. A snap file installed over the same snap is a refresh in snapd (`InstallPath` is
/// `UpdateOne`): its data and configuration stay. The pushed files are removed afterwards.
fn install_from_download(m: &str, name: &str, cx: &Context) -> Vec<Step> {
    let at = Where::Member(m.to_owned());
    let from = cx.snap_download(name);
    let inside = |f: &str| format!("{MEMBER_SNAP_DIR}/{f}");
    let mut s = vec![
        run(at.clone(), ["mkdir", "-p", MEMBER_SNAP_DIR]),
        host(["snap".to_owned(), "info".into(), "--verbose".into(), format!("{from}.snap")]).with_role(Role::SnapBase),
    ];
    for (file, what) in [
        ("base.assert", "the base snap's assertions"),
        ("base.snap", "the base snap"),
        ("microk8s.assert", "the snap's assertions"),
        ("microk8s.snap", "the MicroK8s snap"),
    ] {
        let host_file = format!("{from}.{}", file.replace("microk8s.", ""));
        s.push(Step::Call {
            api: "lxd",
            method: "POST",
            path: format!("/1.0/instances/{m}/files?path={}", inside(file)),
            note: format!("push {what}: {host_file}"),
            purpose: Purpose::PushDownload { member: m.to_owned(), from: host_file, path: inside(file) },
        });
    }
    s.extend([
        Step::Note("the base snap only when `snap list <base>` finds it missing".into()),
        Step::Run {
            at: at.clone(),
            argv: vec!["snap".into(), "list".into(), Arg::Runtime("base")],
            role: Role::SnapPresent,
        },
        run(at.clone(), ["snap".to_owned(), "ack".into(), inside("base.assert")]),
        run(at.clone(), ["snap".to_owned(), "install".into(), inside("base.snap")]).with_role(Role::SnapChange),
        run(at.clone(), ["snap".to_owned(), "ack".into(), inside("microk8s.assert")]),
        run(at.clone(), ["snap".to_owned(), "install".into(), "--classic".into(), inside("microk8s.snap")])
            .with_role(Role::SnapChange),
        Step::Call {
            api: "lxd",
            method: "POST",
            path: format!("/1.0/instances/{m}/files?path={SNAP_RECORD}"),
            note: format!("record the channel and the revision named in {from}.assert (mode 0644)"),
            purpose: Purpose::RecordSnap { member: m.to_owned(), download: name.to_owned() },
        },
        run(
            at,
            ["rm", "-f"]
                .into_iter()
                .map(str::to_owned)
                .chain(["base.assert", "base.snap", "microk8s.assert", "microk8s.snap"].map(inside)),
        ),
    ]);
    s
}

/// Where MicroK8s' containerd looks for per-registry settings (its CRI `registry.config_path`):
/// `certs.d/<host:port>/hosts.toml`.
pub const REGISTRY_CERTS_DIR: &str = "/var/snap/microk8s/current/args/certs.d";

/// The local registry as members reach it: `GATEWAY:PORT` (the host's address on the bridge).
pub fn registry_host_port(cx: &Context) -> String {
    format!("{}:{}", cx.gateway, cx.registry_port)
}

/// The registry trust file for `host_port` in a member: `REGISTRY_CERTS_DIR/<host:port>/hosts.toml`.
pub fn registry_trust_path(host_port: &str) -> String {
    format!("{REGISTRY_CERTS_DIR}/{host_port}/hosts.toml")
}

/// The content of the registry trust file for `host_port` (mode 0644): containerd pulls and resolves images
/// of `host_port` over plain HTTP. The real provider writes exactly these bytes and observation compares
/// the file with them; the dry run names the file.
pub fn registry_hosts_toml(host_port: &str) -> String {
    format!(
        "# Written by testbed: pull from the host's local registry over plain HTTP.\n\
         server = \"http://{host_port}\"\n\
         \n\
         [host.\"http://{host_port}\"]\n\
         \x20 capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// The local registry as the host names it, and as pods in the members name it too: `localhost:PORT`
/// (`[registry] port`).
pub fn registry_local_name(cx: &Context) -> String {
    format!("localhost:{}", cx.registry_port)
}

/// The content of a member's file for `local` (`localhost:PORT`, mode 0644): containerd sends pulls and
/// resolves of `local/...` images to the host's registry at `host_port` (the bridge gateway) over plain
/// HTTP, so a manifest names an image as the host does. In containerd's `hosts.toml` (`docs/hosts.md`,
/// `core/remotes/docker/config/hosts.go`) the `[host]` entries are tried first, in order, and `server` last,
/// as a fallback; without `server` the fallback is the name itself, here the member's own `localhost:PORT`,
/// where nothing listens. Both are the gateway: a failure is the gateway's, not a confusing "connection
/// refused" from the member itself. Requests to a host other than the image's name carry `?ns=local`,
/// which the registry ignores.
pub fn localhost_hosts_toml(local: &str, host_port: &str) -> String {
    format!(
        "# Written by testbed: {local} is the host's local registry, reached at the bridge gateway over plain HTTP.\n\
         server = \"http://{host_port}\"\n\
         \n\
         [host.\"http://{host_port}\"]\n\
         \x20 capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// The files testbed owns in every member's MicroK8s so that it pulls from the host's local registry,
/// as (path, content), each written with mode 0644 and observed byte for byte: the trust of `GATEWAY:PORT`
/// ([`registry_hosts_toml`]) and the file for `localhost:PORT` ([`localhost_hosts_toml`]).
pub fn member_registry_files(cx: &Context) -> Vec<(String, String)> {
    let at = registry_host_port(cx);
    let local = registry_local_name(cx);
    vec![
        (registry_trust_path(&at), registry_hosts_toml(&at)),
        (registry_trust_path(&local), localhost_hosts_toml(&local, &at)),
    ]
}

/// Makes a member's MicroK8s pull from the local registry ([`member_registry_files`]): the directories
/// (LXD's file API does not create parents), then each file, pushed through LXD. No restart follows, and
/// none is needed:
///
/// - containerd reads its registry host configuration (`hosts.toml` under the CRI `registry.config_path`,
///   containerd 1.5 and later) when it resolves a pull, not at start: containerd's `docs/hosts.md` says
///   "Updates under this directory do not require restarting the containerd daemon."
/// - MicroK8s 1.23 and later point `config_path` at `${SNAP_DATA}/args/certs.d` (its
///   `args/containerd-template.toml`); its own preconfigured `localhost:32000` trust is such a file
///   (`microk8s-resources/default-args/certs.d/localhost__32000/hosts.toml` in canonical/microk8s, of the
///   same form as [`registry_hosts_toml`]).
/// - MicroK8s' how-to (microk8s.io/docs/registry-private, and real-tools.md after it) still ends with
///   "Restart MicroK8s to have the new configuration loaded": that step comes from its instructions for
///   1.22 and older, where the registry was an inline `registry.mirrors` entry in
///   `containerd-template.toml`, read only when containerd starts. Channels before 1.23 are not supported
///   here.
///
/// Besides, the file is written right after the install and before the addons: nothing in the member has
/// pulled from the registry yet.
fn trust_registry(m: &str, cx: &Context) -> Vec<Step> {
    let host_port = registry_host_port(cx);
    let local = registry_local_name(cx);
    let mut mkdir = vec!["mkdir".to_owned(), "-p".to_owned()];
    mkdir.extend([&host_port, &local].map(|name| format!("{REGISTRY_CERTS_DIR}/{name}")));
    let mut s = vec![run(Where::Member(m.to_owned()), mkdir)];
    for (name, note) in [
        (&host_port, format!("write hosts.toml: pull from http://{host_port} over plain HTTP, read at each pull")),
        (
            &local,
            format!(
                "write hosts.toml: pull {local}/... images from http://{host_port} (the host's registry) instead of the member's own {local}"
            ),
        ),
    ] {
        s.push(Step::Call {
            api: "lxd",
            method: "POST",
            path: format!("/1.0/instances/{m}/files?path={}", registry_trust_path(name)),
            note,
            purpose: Purpose::PushFile { member: m.to_owned(), path: registry_trust_path(name) },
        });
    }
    s
}

fn wait_ready(at: Where) -> Step {
    run(at, ["microk8s", "status", "--wait-ready", "--timeout", "300"]).with_role(Role::WaitReady { timeout_secs: 300 })
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

pub(crate) fn create(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostMicrok8s => vec![
            host([
                "snap".to_owned(),
                "install".into(),
                "microk8s".into(),
                "--classic".into(),
                format!("--channel={}", setting(a, "channel")),
            ])
            .with_role(Role::SnapChange),
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
            let mut s = vec![run(at.clone(), argv).with_role(Role::AddonChange), wait_ready(at.clone())];
            record_addons(&at, &addons, &mut s);
            s
        }
        Kind::SnapDownload => download(a, cx),
        Kind::Microk8s => {
            // A freshly started container's snapd is still seeding: `snap install` answers "too early
            // for operation, device not yet seeded", and `snap wait` itself fails until snapd answers
            // (real-tools.md, behaviour 2).
            let seeded = Step::Until {
                step: Box::new(run(Where::Member(m.clone()), ["snap", "wait", "system", "seed.loaded"])),
                timeout_secs: 300,
                every_secs: 5,
            };
            if let Some(name) = download_of(a) {
                let mut s = vec![seeded];
                s.extend(install_from_download(&m, &name, cx));
                s.push(wait_ready(Where::Member(m.clone())));
                s.extend(trust_registry(&m, cx));
                return s;
            }
            let mut s = vec![
                seeded,
                run(
                    Where::Member(m.clone()),
                    [
                        "snap".to_owned(),
                        "install".into(),
                        "microk8s".into(),
                        "--classic".into(),
                        format!("--channel={}", setting(a, "channel")),
                    ],
                )
                .with_role(Role::SnapChange),
                wait_ready(Where::Member(m.clone())),
            ];
            s.extend(trust_registry(&m, cx));
            s
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
                purpose: Purpose::NodesReady,
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
        Kind::SnapDownload => download(a, cx),
        Kind::HostMicrok8s | Kind::Microk8s => {
            let at = if a.kind == Kind::Microk8s { Where::Member(m.clone()) } else { Where::Host };
            let mut s = Vec::new();
            let refresh = a.changes.iter().any(|c| c.key == "channel" || c.key == "revision");
            let from_download = if a.kind == Kind::Microk8s { download_of(a) } else { None };
            if let (true, Some(name)) = (refresh, &from_download) {
                // In place from the new download: the same files, acknowledged and installed over the snap.
                s.extend(install_from_download(&m, name, cx));
            } else if refresh {
                s.push(
                    run(
                        at.clone(),
                        [
                            "snap".to_owned(),
                            "refresh".into(),
                            "microk8s".into(),
                            format!("--channel={}", setting(a, "channel")),
                        ],
                    )
                    .with_role(Role::SnapChange),
                );
            }
            // A stopped MicroK8s stays stopped through a refresh: start it whenever it is not healthy.
            let unhealthy = a.observed.as_ref().is_some_and(|o| o.health != testbed_plan::Health::Ok);
            if !refresh || unhealthy {
                s.push(run(at.clone(), ["microk8s", "start"]));
            }
            s.push(wait_ready(at));
            // A member's trust of the local registry is part of its MicroK8s: rewritten whenever it is
            // repaired (observation reports a missing or different file as needing repair).
            if a.kind == Kind::Microk8s {
                s.extend(trust_registry(&m, cx));
            }
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
                s.push(run(at.clone(), argv).with_role(Role::AddonChange));
                record_addons(&at, &add, &mut s);
            }
            if !remove.is_empty() {
                let mut argv = vec!["microk8s".to_owned(), "disable".into()];
                argv.extend(remove.iter().map(|a| disable_arg(a)));
                s.push(run(at.clone(), argv).with_role(Role::AddonChange));
                forget_addons(&at, &remove, &mut s);
            }
            s
        }
        _ => vec![],
    }
}

/// How an addon is named to `microk8s disable`. hostpath-storage's disable asks "Remove PVC storage ...
/// (Y/N)" on stdin and exits 1 without an answer (microk8s-core-addons addons/hostpath-storage/disable);
/// testbed's commands have no stdin, so it passes the addon's argument that answers yes: the storage of the
/// addon testbed enabled goes with it.
fn disable_arg(addon: &str) -> String {
    match addon {
        "hostpath-storage" => "hostpath-storage:destroy-storage".to_owned(),
        other => other.to_owned(),
    }
}

pub(crate) fn delete(a: &Action, _cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::HostMicrok8s => vec![host(["snap", "remove", "microk8s", "--purge"]).with_role(Role::RemoveHostMicrok8s)],
        Kind::HostAddons | Kind::Microk8sAddons => {
            let at = addons_at(a);
            let addons = list(a, "addons");
            if addons.is_empty() {
                return vec![];
            }
            let mut argv = vec!["microk8s".to_owned(), "disable".into()];
            argv.extend(addons.iter().map(|a| disable_arg(a)));
            let mut s = vec![run(at.clone(), argv).with_role(Role::AddonChange)];
            forget_addons(&at, &addons, &mut s);
            s
        }
        Kind::Microk8s => {
            vec![run(Where::Member(m), ["snap", "remove", "microk8s", "--purge"]).with_role(Role::SnapChange)]
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use testbed_plan::Op;

    fn member_microk8s(op: Op) -> Vec<String> {
        let text = "[[members]]\nname = \"member1\"\napi_port = 16441\n";
        let c = testbed_config::parse(std::path::Path::new("testbed.toml"), text).unwrap();
        let cx = Context::new(&c);
        let d = testbed_plan::desired::build(&c, &Default::default());
        let plan = testbed_plan::plan(&d, &Default::default()).unwrap();
        let mut a = plan.actions().into_iter().find(|a| a.kind == Kind::Microk8s).unwrap().clone();
        a.op = op;
        crate::steps(&a, &cx).iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_member_trusts_the_local_registry_through_the_bridge_right_after_the_install() {
        let s = member_microk8s(Op::Create);
        let m = "member1";
        let dir = "/var/snap/microk8s/current/args/certs.d/10.123.45.1:32000";
        let local = "/var/snap/microk8s/current/args/certs.d/localhost:32000";
        assert!(s[0].starts_with(&format!("{m}$ snap wait system seed.loaded  (until it succeeds")), "{s:?}");
        assert_eq!(
            s[s.len() - 4..],
            [
                format!("{m}$ microk8s status --wait-ready --timeout 300"),
                format!("{m}$ mkdir -p {dir} {local}"),
                format!(
                    "lxd: POST /1.0/instances/{m}/files?path={dir}/hosts.toml  (write hosts.toml: pull from http://10.123.45.1:32000 over plain HTTP, read at each pull)"
                ),
                format!(
                    "lxd: POST /1.0/instances/{m}/files?path={local}/hosts.toml  (write hosts.toml: pull localhost:32000/... images from http://10.123.45.1:32000 (the host's registry) instead of the member's own localhost:32000)"
                ),
            ],
            "no restart after them"
        );
        // A repair rewrites both.
        let repair = member_microk8s(Op::Update);
        for d in [dir, local] {
            assert!(repair.iter().any(|l| l.contains("POST") && l.contains(&format!("{d}/hosts.toml"))), "{repair:?}");
        }
    }

    #[test]
    fn a_member_installs_the_download_acknowledged_then_records_it() {
        let s = member_microk8s(Op::Create);
        let m = "member1";
        let from = "/var/lib/testbed/downloads/microk8s-1_35-stable";
        let at = |needle: &str| s.iter().position(|l| l == needle).unwrap_or_else(|| panic!("{needle} in {s:#?}"));
        let push = at(&format!(
            "lxd: POST /1.0/instances/{m}/files?path=/var/lib/testbed/snaps/microk8s.snap  (push the MicroK8s snap: {from}.snap)"
        ));
        let ack = at(&format!("{m}$ snap ack /var/lib/testbed/snaps/microk8s.assert"));
        let install = at(&format!("{m}$ snap install --classic /var/lib/testbed/snaps/microk8s.snap"));
        let base = at(&format!("{m}$ snap list <base>"));
        let record = at(&format!(
            "lxd: POST /1.0/instances/{m}/files?path={SNAP_RECORD}  (record the channel and the revision named in {from}.assert (mode 0644))"
        ));
        assert!(push < base && base < ack && ack < install && install < record, "{s:#?}");
        assert!(!s.iter().any(|l| l.contains("--channel")), "nothing from the store in the member: {s:#?}");
    }

    #[test]
    fn the_trust_file_is_the_one_microk8s_documents() {
        assert_eq!(
            registry_hosts_toml("10.123.45.1:32000"),
            "# Written by testbed: pull from the host's local registry over plain HTTP.\n\
             server = \"http://10.123.45.1:32000\"\n\n\
             [host.\"http://10.123.45.1:32000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        assert_eq!(
            registry_trust_path("10.123.45.1:32000"),
            "/var/snap/microk8s/current/args/certs.d/10.123.45.1:32000/hosts.toml"
        );
    }

    /// containerd tries the `[host]` entries first and `server` last (`docs/hosts.md`: "If all `host`(s) are
    /// tried then `server` will be used as a fallback"): both are the gateway, never the member's own
    /// `localhost:32000`.
    #[test]
    fn the_file_for_localhost_sends_pulls_and_the_fallback_to_the_gateway() {
        let text = "[[members]]\nname = \"member1\"\napi_port = 16441\n";
        let c = testbed_config::parse(std::path::Path::new("testbed.toml"), text).unwrap();
        let files = member_registry_files(&Context::new(&c));
        assert_eq!(files.len(), 2);
        let (path, content) = &files[1];
        assert_eq!(path, "/var/snap/microk8s/current/args/certs.d/localhost:32000/hosts.toml");
        assert_eq!(
            content,
            "# Written by testbed: localhost:32000 is the host's local registry, reached at the bridge gateway over plain HTTP.\n\
             server = \"http://10.123.45.1:32000\"\n\n\
             [host.\"http://10.123.45.1:32000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        assert!(!content.contains("http://localhost"), "{content}");
    }
}
