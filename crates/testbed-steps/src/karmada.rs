//! The Karmada layer's steps: the control plane (`karmadactl init`/`deinit`) and each member's membership (push:
//! `join`/`unjoin`; pull: `token create` + `register`/`unregister`).
//!
//! Ownership: testbed labels what it made with [`OWNER_LABEL`]` = <the file's name>`: the `karmada-system`
//! namespace after init, each `Cluster` after join/register. It deinits and unjoins only what carries the
//! label.

use testbed_config::karmada_release::{FailoverSwitch, FAILOVER_CONTROLLER_MANAGER_ARGS};
use testbed_config::ControlPlaneImage;
use testbed_plan::{Action, Kind};

use crate::*;

/// The label testbed puts on the `karmada-system` namespace and on each `Cluster` it registered; its value is
/// the testbed's name (the file's `name`).
use testbed_plan::workload::OWNER_LABEL;

/// Where `karmadactl init` keeps etcd's data on the host (its `--etcd-data` default, hostPath storage).
pub const ETCD_DATA: &str = "/var/lib/karmada-etcd";

fn label_namespace() -> Step {
    Step::Call {
        api: "kubernetes",
        method: "PATCH",
        path: "/api/v1/namespaces/karmada-system".into(),
        note: format!("label {OWNER_LABEL}=<testbed name>: testbed made this control plane"),
        purpose: Purpose::LabelControlPlane,
    }
}

fn wait_control_plane() -> Step {
    Step::Call {
        api: "kubernetes",
        method: "GET",
        path: "/apis/apps/v1/namespaces/karmada-system/deployments".into(),
        note: "on the host cluster: karmada-apiserver, karmada-aggregated-apiserver, karmada-controller-manager, karmada-scheduler, karmada-webhook, kube-controller-manager available".into(),
        purpose: Purpose::ControlPlaneAvailable,
    }
}

/// testbed's ClusterTaintPolicy, applied once the control plane is up when the file wants cluster
/// failover: Karmada's cluster controller adds only NoSchedule taints, so without it a cluster that fails is
/// never tainted NoExecute and nothing moves.
fn failover_taint_policy() -> Step {
    Step::Call {
        api: "karmada",
        method: "PATCH",
        path: "/apis/policy.karmada.io/v1alpha1/clustertaintpolicies/testbed-failover".into(),
        note: "server-side apply, field manager testbed: taint a cluster cluster.karmada.io/not-ready:NoExecute while its Ready is False or Unknown, and untaint it when True".into(),
        purpose: Purpose::FailoverTaintPolicy,
    }
}

/// For a release whose init cannot pass extra arguments (v1.15): the controller manager's command gets the
/// failover arguments by a patch of its Deployment after init, and the control plane is waited for again
/// while it rolls out.
fn patch_controller_manager() -> Vec<Step> {
    vec![
        Step::Call {
            api: "kubernetes",
            method: "PATCH",
            path: "/apis/apps/v1/namespaces/karmada-system/deployments/karmada-controller-manager".into(),
            note: format!(
                "on the host cluster, a strategic merge patch of its container's command: {} added (an argument of the same name replaced), as init from v1.16 does with extra args",
                FAILOVER_CONTROLLER_MANAGER_ARGS.join(" ")
            ),
            purpose: Purpose::ControllerManagerFailover,
        },
        wait_control_plane(),
    ]
}

fn cluster_path(m: &str) -> String {
    format!("/apis/cluster.karmada.io/v1alpha1/clusters/{m}")
}

fn label_cluster(m: &str) -> Step {
    Step::Call {
        api: "karmada",
        method: "PATCH",
        path: cluster_path(m),
        note: format!("label {OWNER_LABEL}=<testbed name>: testbed registered this cluster"),
        purpose: Purpose::LabelCluster { cluster: m.to_owned() },
    }
}

fn wait_cluster_ready(m: &str) -> Step {
    Step::Call {
        api: "karmada",
        method: "GET",
        path: cluster_path(m),
        note: "until condition Ready is True".into(),
        purpose: Purpose::ClusterReady { cluster: m.to_owned() },
    }
}

/// `karmadactl init`'s flag for each control-plane image, by image name. (kube-apiserver is
/// `--karmada-apiserver-image`; kube-controller-manager is `--karmada-kube-controller-manager-image`; alpine is
/// etcd's init container, whose flag karmadactl v1.17 removed along with the image.)
const INIT_IMAGE_FLAGS: &[(&str, &str)] = &[
    ("karmada-controller-manager", "--karmada-controller-manager-image"),
    ("karmada-scheduler", "--karmada-scheduler-image"),
    ("karmada-webhook", "--karmada-webhook-image"),
    ("karmada-aggregated-apiserver", "--karmada-aggregated-apiserver-image"),
    ("kube-apiserver", "--karmada-apiserver-image"),
    ("kube-controller-manager", "--karmada-kube-controller-manager-image"),
    ("etcd", "--etcd-image"),
    ("alpine", "--etcd-init-image"),
];

/// The image flags of `karmadactl init`, in the order of [`INIT_IMAGE_FLAGS`]: one for each control-plane image
/// of the set, pointing at its copy in `registry` (the agent is `register`'s, not init's).
pub(crate) fn init_images(images: &[ControlPlaneImage], registry: &str) -> Vec<(&'static str, String)> {
    INIT_IMAGE_FLAGS
        .iter()
        .filter_map(|(name, flag)| {
            images.iter().find(|i| i.name == *name && !i.pull_mode_only).map(|i| (*flag, i.target(registry)))
        })
        .collect()
}

/// The release's CRD archive, fetched once into the downloads directory (real-tools.md behaviour 8: without
/// `--crds`, init downloads it from the internet at every init, into its data directory that init wipes). The
/// release publishes no checksum for it: its SHA-256 is recorded on first download.
fn crd_archive(cx: &Context) -> Vec<Step> {
    let archive = cx.crd_archive();
    vec![
        host(["mkdir", "-p", &cx.downloads]),
        Step::Call {
            api: "host",
            method: "CHECK",
            path: archive.clone(),
            note: "fetched once: the download is skipped when the archive is there".into(),
            purpose: Purpose::SkipIfPresent { path: archive.clone() },
        },
        host(["curl".into(), "-fsSL".into(), "-o".into(), archive.clone(), cx.crd_archive_url()])
            .with_role(Role::Download { file: archive.clone() }),
        Step::Call {
            api: "host",
            method: "SHA256",
            path: archive.clone(),
            note: format!("recorded in {archive}.sha256 on first download; a later copy that differs is warned about"),
            purpose: Purpose::RecordChecksum { path: archive },
        },
    ]
}

pub(crate) fn create(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::KarmadaControlPlane => {
            let data = setting(a, "data_dir").trim_end_matches('/').to_owned();
            let advertise = setting(a, "advertise_address").to_owned();
            let mut argv: Vec<String> = vec![
                "karmadactl".into(),
                "init".into(),
                "--kubeconfig".into(),
                cx.host_kubeconfig.clone(),
                "--private-image-registry".into(),
                setting(a, "image_registry").into(),
            ];
            // Every image explicitly, at the copy testbed made: init does not fall back to its own default tags.
            for (flag, image) in &cx.init_images {
                argv.extend([(*flag).to_owned(), image.clone()]);
            }
            // Cluster failover, where init can switch it on (v1.16 on): the controller manager's feature
            // gate and no-execute eviction, one `--karmada-controller-manager-extra-args` per argument.
            if setting(a, "failover") == "true" && cx.failover_switch() == Some(FailoverSwitch::InitExtraArgs) {
                for arg in FAILOVER_CONTROLLER_MANAGER_ARGS {
                    argv.push(format!("--karmada-controller-manager-extra-args={arg}"));
                }
            }
            // The CRDs from the archive fetched once, not from the internet at each init.
            argv.extend(["--crds".into(), cx.crd_archive()]);
            argv.extend([
                "--port".into(),
                setting(a, "api_port").into(),
                "--karmada-data".into(),
                data.clone(),
                "--karmada-pki".into(),
                format!("{data}/pki"),
                "--karmada-apiserver-advertise-address".into(),
                advertise.clone(),
                "--cert-external-ip".into(),
                advertise,
                "--wait-component-ready-timeout".into(),
                "300".into(),
            ]);
            let mut steps = crd_archive(cx);
            steps.extend([
                host(argv).with_role(karmadactl(KarmadactlVerb::Init)),
                label_namespace(),
                wait_control_plane(),
            ]);
            if setting(a, "failover") == "true" {
                if cx.failover_switch() == Some(FailoverSwitch::PatchControllerManager) {
                    steps.extend(patch_controller_manager());
                }
                steps.push(failover_taint_policy());
            }
            steps
        }
        Kind::KarmadaMember => membership_create(a, cx),
        Kind::WorkloadObject => apply_object(a, cx),
        Kind::Workload => vec![workload_healthy(a, cx)],
        _ => vec![],
    }
}

pub(crate) fn update(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::KarmadaMember if setting(a, "mode") == "pull" => vec![wait_cluster_ready(&m)],
        Kind::KarmadaMember => vec![
            Step::Call {
                api: "karmada",
                method: "PATCH",
                path: cluster_path(&m),
                note: format!("spec.apiEndpoint = {}", setting(a, "api_endpoint")),
                purpose: Purpose::SetClusterEndpoint { cluster: m.clone() },
            },
            wait_cluster_ready(&m),
        ],
        // Only unhealthy (a component not available, the failover policy gone): wait for it rather than
        // reinstall, and apply the policy again.
        Kind::KarmadaControlPlane if a.changes.is_empty() => {
            let mut s = vec![wait_control_plane()];
            if setting(a, "failover") == "true" {
                s.push(failover_taint_policy());
            }
            s
        }
        Kind::KarmadaControlPlane => {
            let mut s = delete(a, cx);
            s.extend(create(a, cx));
            s
        }
        Kind::WorkloadObject => apply_object(a, cx),
        Kind::Workload => vec![workload_healthy(a, cx)],
        _ => vec![],
    }
}

pub(crate) fn delete(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::KarmadaControlPlane => vec![
            Step::Call {
                api: "kubernetes",
                method: "GET",
                path: "/api/v1/namespaces/karmada-system".into(),
                note: format!("owned: must carry {OWNER_LABEL}=<testbed name>; no control plane: nothing to do"),
                purpose: Purpose::ControlPlaneOwned,
            },
            // The namespace is testbed's too (init made it, testbed labelled it): without --purge-namespace,
            // deinit leaves it, labelled (karmada v1.15.9 deinit.go).
            host(["karmadactl", "deinit", "--kubeconfig", &cx.host_kubeconfig, "--purge-namespace", "-f"])
                .with_role(karmadactl(KarmadactlVerb::Deinit)),
            // karmada v1.15.9 cmdinit: "deinit will not delete etcd data"; init's --etcd-data default.
            Step::Call {
                api: "host",
                method: "DELETE",
                path: ETCD_DATA.into(),
                note: "the etcd data deinit keeps, removed only after a deinit testbed ran".into(),
                purpose: Purpose::RemoveLeftByDeinit { path: ETCD_DATA.into() },
            },
            // deinit leaves init's --karmada-data too: the Karmada kubeconfig (an admin credential) and the
            // CA's key. init wipes that directory before it writes it, so it is init's (testbed's) alone.
            Step::Call {
                api: "host",
                method: "DELETE",
                path: setting(a, "data_dir").trim_end_matches('/').into(),
                note: "the Karmada kubeconfig and certificates init wrote, removed only after a deinit testbed ran"
                    .into(),
                purpose: Purpose::RemoveLeftByDeinit { path: setting(a, "data_dir").trim_end_matches('/').into() },
            },
        ],
        Kind::WorkloadObject => {
            let Some(path) = object_path(a) else {
                return vec![Step::Note(format!("{}: not an object testbed knows how to delete", a.address))];
            };
            vec![
                Step::Call {
                    api: "karmada",
                    method: "GET",
                    path: path.clone(),
                    note: format!("owned: must carry {OWNER_LABEL}=<testbed name>; gone already: nothing to do"),
                    purpose: Purpose::ObjectOwned { path: path.clone() },
                },
                Step::Call {
                    api: "karmada",
                    method: "DELETE",
                    path: path.clone(),
                    note: "Karmada removes its copies from the members".into(),
                    purpose: Purpose::DeleteObject { path },
                },
            ]
        }
        Kind::Workload => vec![Step::Note(
            "nothing of its own: its objects are deleted one by one, and Karmada removes their copies from the members"
                .into(),
        )],
        Kind::KarmadaMember => {
            let check = Step::Call {
                api: "karmada",
                method: "GET",
                path: cluster_path(&m),
                note: format!("owned: must carry {OWNER_LABEL}=<testbed name>; not registered: nothing to do"),
                purpose: Purpose::ClusterOwned { cluster: m.clone() },
            };
            // What is registered decides how it is removed (a replace from push to pull unjoins first).
            let live_mode = a.observed.as_ref().and_then(|o| o.spec.get("mode")).map(String::as_str);
            if live_mode.unwrap_or(setting(a, "mode")) == "pull" {
                vec![
                    check,
                    host([
                        "karmadactl".to_owned(),
                        "unregister".into(),
                        m.clone(),
                        "--cluster-kubeconfig".into(),
                        format!("{}/{m}.config", cx.kubeconfig_dir),
                        "--karmada-config".into(),
                        cx.karmada_kubeconfig.clone(),
                    ])
                    .with_role(karmadactl(KarmadactlVerb::Unregister)),
                ]
            } else {
                vec![
                    check,
                    host([
                        "karmadactl".to_owned(),
                        "unjoin".into(),
                        m.clone(),
                        "--kubeconfig".into(),
                        cx.karmada_kubeconfig.clone(),
                        "--cluster-kubeconfig".into(),
                        format!("{}/{m}-karmada.config", cx.kubeconfig_dir),
                        "--wait".into(),
                        "60s".into(),
                    ])
                    .with_role(karmadactl(KarmadactlVerb::Unjoin)),
                ]
            }
        }
        _ => vec![],
    }
}

/// Server-side apply of a workload object, with the object as it is sent (a Secret's values hidden).
fn apply_object(a: &Action, cx: &Context) -> Vec<Step> {
    let address = a.address.to_string();
    let Some(o) = cx.workload_objects.get(&address) else {
        return vec![Step::Note(format!("{address}: the file no longer has this object"))];
    };
    let shown = testbed_plan::workload::shown(o.kind.kind, &o.object);
    let body = serde_json::to_string_pretty(&shown).unwrap_or_default();
    vec![Step::Call {
        api: "karmada",
        method: "PATCH",
        path: format!("{}?fieldManager=testbed&force=true", o.api_path()),
        note: format!("server-side apply of {}:\n{body}", o.source),
        purpose: Purpose::ApplyObject { address },
    }]
}

/// The REST path of the object a workload-object action is about: the address's last part names its kind,
/// namespace and name.
fn object_path(a: &Action) -> Option<String> {
    let key = a.address.as_str().splitn(3, '.').nth(2)?;
    let (kind, namespace, name) = testbed_plan::workload::parse_key(key)?;
    Some(testbed_plan::workload::api_path(&kind, namespace.as_deref(), &name))
}

fn workload_healthy(a: &Action, cx: &Context) -> Step {
    let workload = a.address.as_str().split_once('.').map(|(_, w)| w).unwrap_or_default().to_owned();
    Step::Call {
        api: "karmada",
        method: "GET",
        path: "/apis/work.karmada.io/v1alpha2/resourcebindings".into(),
        note: format!(
            "until every ResourceBinding of {workload}'s objects is scheduled and each member it is placed on reports it applied and healthy (at most {} s)",
            cx.workload_wait_secs
        ),
        purpose: Purpose::WorkloadHealthy { workload },
    }
}

fn karmadactl(verb: KarmadactlVerb) -> Role {
    Role::Karmadactl(verb)
}

fn membership_create(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    let wait = wait_cluster_ready(&m);
    let member_karmada_config = format!("{}/{m}-karmada.config", cx.kubeconfig_dir);
    if setting(a, "mode") == "pull" {
        let agent = cx.agent_image.clone();
        vec![
            host(["karmadactl", "token", "create", "--print-register-command", "--kubeconfig", &cx.karmada_kubeconfig])
                .with_role(karmadactl(KarmadactlVerb::TokenCreate)),
            host([
                Arg::from("karmadactl"),
                "register".into(),
                format!("{}:{}", cx.gateway, cx.karmada_api_port).into(),
                "--token".into(),
                Arg::Secret("join-token"),
                "--discovery-token-ca-cert-hash".into(),
                Arg::Runtime("ca-cert-hash"),
                // The agent's --cluster-api-endpoint, and so the Cluster's spec.apiEndpoint, is this
                // kubeconfig's server (karmada v1.15.9 register.go): the member's bridge address, which the
                // host cluster's pods reach, not the 127.0.0.1 one for people.
                "--kubeconfig".into(),
                member_karmada_config.clone().into(),
                "--cluster-name".into(),
                m.clone().into(),
                "--karmada-agent-image".into(),
                agent.into(),
            ])
            .with_role(karmadactl(KarmadactlVerb::Register)),
            label_cluster(&m),
            wait,
        ]
    } else {
        vec![
            host([
                "karmadactl".to_owned(),
                "join".into(),
                m.clone(),
                "--kubeconfig".into(),
                cx.karmada_kubeconfig.clone(),
                "--cluster-kubeconfig".into(),
                member_karmada_config,
            ])
            .with_role(karmadactl(KarmadactlVerb::Join)),
            label_cluster(&m),
            wait,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cx(text: &str) -> Context {
        let c = testbed_config::parse(Path::new("testbed.toml"), text)
            .unwrap_or_else(|e| panic!("invalid test config:\n{}", e.lines().join("\n")));
        Context::new(&c)
    }

    fn flags(cx: &Context) -> Vec<String> {
        cx.init_images.iter().map(|(flag, image)| format!("{flag} {image}")).collect()
    }

    #[test]
    fn a_known_version_gives_init_every_table_image_including_etcds_init_container() {
        let cx = cx("[karmada]\nversion = \"v1.15.9\"\n");
        assert_eq!(
            flags(&cx),
            [
                "--karmada-controller-manager-image localhost:32000/karmada-controller-manager:v1.15.9",
                "--karmada-scheduler-image localhost:32000/karmada-scheduler:v1.15.9",
                "--karmada-webhook-image localhost:32000/karmada-webhook:v1.15.9",
                "--karmada-aggregated-apiserver-image localhost:32000/karmada-aggregated-apiserver:v1.15.9",
                "--karmada-apiserver-image localhost:32000/kube-apiserver:v1.31.3",
                "--karmada-kube-controller-manager-image localhost:32000/kube-controller-manager:v1.31.3",
                "--etcd-image localhost:32000/etcd:3.5.16-0",
                "--etcd-init-image localhost:32000/alpine:3.21.3",
            ]
        );
        assert_eq!(cx.agent_image, "10.123.45.1:32000/karmada-agent:v1.15.9");
    }

    /// A version without a table: the file's own entries, by name; no alpine listed means no
    /// `--etcd-init-image` (the flag karmadactl v1.17 removed); the agent keeps its listed tag.
    #[test]
    fn an_unknown_version_gives_init_the_listed_images() {
        let mut text = String::from("[karmada]\nversion = \"v1.20.0\"\njoin_mode = \"pull\"\n\n[[members]]\nname = \"member1\"\napi_port = 16441\n");
        for (name, source) in [
            ("karmada-controller-manager", "docker.io/karmada/karmada-controller-manager:v1.20.0"),
            ("karmada-scheduler", "docker.io/karmada/karmada-scheduler:v1.20.0"),
            ("karmada-webhook", "docker.io/karmada/karmada-webhook:v1.20.0"),
            ("karmada-aggregated-apiserver", "docker.io/karmada/karmada-aggregated-apiserver:v1.20.0"),
            ("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.35.0"),
            ("kube-controller-manager", "registry.k8s.io/kube-controller-manager:v1.35.0"),
            ("etcd", "registry.k8s.io/etcd:3.6.5-0"),
            ("karmada-agent", "docker.io/karmada/karmada-agent:v1.20.1"),
        ] {
            text.push_str(&format!("\n[[images]]\nname = \"{name}\"\nsource = \"{source}\"\n"));
        }
        let cx = cx(&text);
        assert_eq!(
            flags(&cx),
            [
                "--karmada-controller-manager-image localhost:32000/karmada-controller-manager:v1.20.0",
                "--karmada-scheduler-image localhost:32000/karmada-scheduler:v1.20.0",
                "--karmada-webhook-image localhost:32000/karmada-webhook:v1.20.0",
                "--karmada-aggregated-apiserver-image localhost:32000/karmada-aggregated-apiserver:v1.20.0",
                "--karmada-apiserver-image localhost:32000/kube-apiserver:v1.35.0",
                "--karmada-kube-controller-manager-image localhost:32000/kube-controller-manager:v1.35.0",
                "--etcd-image localhost:32000/etcd:3.6.5-0",
            ]
        );
        assert_eq!(cx.agent_image, "10.123.45.1:32000/karmada-agent:v1.20.1");
    }
}
