//! The Karmada layer's steps: the control plane (`karmadactl init`/`deinit`) and each member's membership (push:
//! `join`/`unjoin`; pull: `token create` + `register`/`unregister`).

use testbed_plan::{Action, Kind};

use crate::*;

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
                Step::Call {
                    api: "kubernetes",
                    method: "GET",
                    path: "/apis/apps/v1/namespaces/karmada-system/deployments".into(),
                    note: "on the host cluster: karmada-apiserver, karmada-aggregated-apiserver, karmada-controller-manager, karmada-scheduler, karmada-webhook, kube-controller-manager available".into(),
                },
            ]
        }
        Kind::KarmadaMember => membership_create(a, cx),
        _ => vec![],
    }
}

pub(crate) fn update(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    match a.kind {
        Kind::KarmadaMember => vec![Step::Call {
            api: "karmada",
            method: "PATCH",
            path: format!("/apis/cluster.karmada.io/v1alpha1/clusters/{m}"),
            note: format!("spec.apiEndpoint = {}", setting(a, "api_endpoint")),
        }],
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
        Kind::KarmadaControlPlane => vec![host(["karmadactl", "deinit", "--kubeconfig", &cx.host_kubeconfig, "-f"])],
        Kind::KarmadaMember => {
            if setting(a, "mode") == "pull" {
                vec![host([
                    "karmadactl".to_owned(),
                    "unregister".into(),
                    m.clone(),
                    "--cluster-kubeconfig".into(),
                    format!("{}/{m}.config", cx.kubeconfig_dir),
                    "--karmada-config".into(),
                    cx.karmada_kubeconfig.clone(),
                ])]
            } else {
                vec![host([
                    "karmadactl".to_owned(),
                    "unjoin".into(),
                    m.clone(),
                    "--kubeconfig".into(),
                    cx.karmada_kubeconfig.clone(),
                    "--cluster-kubeconfig".into(),
                    format!("{}/{m}-karmada.config", cx.kubeconfig_dir),
                    "--wait".into(),
                    "60s".into(),
                ])]
            }
        }
        _ => vec![],
    }
}

fn membership_create(a: &Action, cx: &Context) -> Vec<Step> {
    let m = member(a);
    let wait = Step::Call {
        api: "karmada",
        method: "GET",
        path: format!("/apis/cluster.karmada.io/v1alpha1/clusters/{m}"),
        note: "until condition Ready is True".into(),
    };
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
            wait,
        ]
    }
}
