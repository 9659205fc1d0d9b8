//! The host layer's steps: packages, kernel limits, firewall rules.

use testbed_plan::{Action, Kind};

use crate::*;

pub(crate) fn create(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::HostPackages => {
            let mut s = vec![host(["apt-get", "update"]), host(["apt-get", "install", "-y", "snapd"])];
            s.push(host(["snap", "wait", "system", "seed.loaded"]));
            s.push(host(["snap", "install", "kubectl", "--classic"]));
            match cx.backend {
                Backend::Lxd => s.push(host(["snap", "install", "lxd"])),
                Backend::Incus => s.push(host(["apt-get", "install", "-y", "incus"])),
            }
            let v = &cx.karmada_version;
            let url = format!("https://github.com/karmada-io/karmada/releases/download/{v}/karmadactl-linux-amd64.tgz");
            let tgz = format!("{}/karmadactl-{v}-linux-amd64.tgz", cx.downloads);
            s.push(host(["curl".into(), "-fsSL".into(), "-o".into(), tgz.clone(), url.clone()]));
            s.push(Step::Call {
                api: "https",
                method: "GET",
                path: format!("{url}.sha256"),
                note: format!("testbed compares the archive's SHA-256 with it before unpacking {tgz}"),
            });
            s.push(host(["tar", "-xzf", &tgz, "-C", "/usr/local/bin", "karmadactl"]));
            s.push(host(["karmadactl", "version"]));
            s
        }
        Kind::HostSysctl => {
            let mut s: Vec<Step> = Vec::new();
            let mut lines = Vec::new();
            if let Some(r) = &a.desired {
                for (k, v) in &r.spec {
                    s.push(host(["sysctl".to_owned(), "-w".to_owned(), format!("{k}={v}")]));
                    lines.push(format!("{k} = {v}"));
                }
            }
            s.push(Step::Write {
                at: Where::Host,
                path: "/etc/sysctl.d/60-testbed.conf".into(),
                mode: 0o644,
                content: lines.join("; "),
            });
            s
        }
        Kind::HostFirewall => {
            let bridge = setting(a, "bridge").to_owned();
            let mut s = Vec::new();
            for (chain, dir) in [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")] {
                let rule = |op: &str| {
                    host(["iptables", op, chain, dir, &bridge, "-m", "comment", "--comment", "testbed", "-j", "ACCEPT"])
                };
                s.push(rule("-C"));
                s.push(rule("-I"));
            }
            s.push(Step::Note("each -I runs only when the -C before it fails, so rules are never duplicated; hosts on nftables get the same rules in table inet testbed".into()));
            s
        }
        _ => vec![],
    }
}

pub(crate) fn update(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::HostPackages | Kind::HostSysctl | Kind::HostFirewall => create(a, cx),
        _ => vec![],
    }
}

pub(crate) fn delete(a: &Action, _cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::HostPackages | Kind::HostSysctl => vec![],
        Kind::HostFirewall => {
            let bridge = setting(a, "bridge").to_owned();
            [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")]
                .into_iter()
                .map(|(chain, dir)| {
                    host([
                        "iptables",
                        "-D",
                        chain,
                        dir,
                        &bridge,
                        "-m",
                        "comment",
                        "--comment",
                        "testbed",
                        "-j",
                        "ACCEPT",
                    ])
                })
                .collect()
        }
        _ => vec![],
    }
}
