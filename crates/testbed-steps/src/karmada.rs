//! The Karmada layer's steps: the control plane (`karmadactl init`/`deinit`) and each member's membership (push:
//! `join`/`unjoin`; pull: `token create` + `register`/`unregister`).
//!
//! Ownership: testbed labels what it made with [`OWNER_LABEL`]` = <the file's name>`: the `karmada-system`
//! namespace after init, each `Cluster` after join/register. It deinits and unjoins only what carries the
//! label.

use testbed_plan::{Action, Kind};

use crate::*;

/// The label testbed puts on the `karmada-system` namespace and on each `Cluster` it registered; its value is
/// the testbed's name (the file's `name`).
pub(crate) const OWNER_LABEL: &str = "testbed/owner";

fn label_namespace() -> Step {
    Step::Call {
        api: "kubernetes",
        method: "PATCH",
        path: "/api/v1/namespaces/karmada-system".into(),
        note: format!("label {OWNER_LABEL}=<testbed name>: testbed made this control plane"),
    }
}

fn wait_control_plane() -> Step {
    Step::Call {
        api: "kubernetes",
        method: "GET",
        path: "/apis/apps/v1/namespaces/karmada-system/deployments".into(),
        note: "on the host cluster: karmada-apiserver, karmada-aggregated-apiserver, karmada-controller-manager, karmada-scheduler, karmada-webhook, kube-controller-manager available".into(),
    }
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
    }
}

fn wait_cluster_ready(m: &str) -> Step {
    Step::Call { api: "karmada", method: "GET", path: cluster_path(m), note: "until condition Ready is True".into() }
}

pub(crate) fn create(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::KarmadaControlPlane => {
            let data = setting(a, "data_dir").trim_end_matches('/').to_owned();
            let advertise = setting(a, "advertise_address").to_owned();
            vec![
                host([
                    "karmadactl".to_owned(),
                    "init".into(),
                    "--kubeconfig".into(),
                    cx.host_kubeconfig.clone(),
                    "--private-image-registry".into(),
                    setting(a, "image_registry").into(),
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
                ]),
                label_namespace(),
                wait_control_plane(),
            ]
        }
        Kind::KarmadaMember => membership_create(a, cx),
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
            },
            wait_cluster_ready(&m),
        ],
        // Only unhealthy (a component not available): wait for it rather than reinstall.
        Kind::KarmadaControlPlane if a.changes.is_empty() => vec![wait_control_plane()],
        Kind::KarmadaControlPlane => {
            let mut s = delete(a, cx);
            s.extend(create(a, cx));
            s
        }
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
            },
            host(["karmadactl", "deinit", "--kubeconfig", &cx.host_kubeconfig, "-f"]),
        ],
        Kind::KarmadaMember => {
            let check = Step::Call {
                api: "karmada",
                method: "GET",
                path: cluster_path(&m),
                note: format!("owned: must carry {OWNER_LABEL}=<testbed name>; not registered: nothing to do"),
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
                    ]),
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
                    ]),
                ]
            }
        }
        _ => vec![],
    }
}

fn membership_create(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    let wait = wait_cluster_ready(&m);
    let member_config = format!("{}/{m}.config", cx.kubeconfig_dir);
    let member_karmada_config = format!("{}/{m}-karmada.config", cx.kubeconfig_dir);
    if setting(a, "mode") == "pull" {
        let agent = format!("{}:{}/karmada-agent:{}", cx.gateway, cx.registry_port, cx.karmada_version);
        vec![
            host(["karmadactl", "token", "create", "--print-register-command", "--kubeconfig", &cx.karmada_kubeconfig]),
            host([
                Arg::from("karmadactl"),
                "register".into(),
                format!("{}:{}", cx.gateway, cx.karmada_api_port).into(),
                "--token".into(),
                Arg::Secret("join-token"),
                "--discovery-token-ca-cert-hash".into(),
                Arg::Runtime("ca-cert-hash"),
                "--kubeconfig".into(),
                member_config.into(),
                "--cluster-name".into(),
                m.clone().into(),
                "--karmada-agent-image".into(),
                agent.into(),
            ]),
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
            ]),
            label_cluster(&m),
            wait,
        ]
    }
}
