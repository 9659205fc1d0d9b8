//! The host layer's steps: packages, kernel limits, firewall rules.

use testbed_plan::{Action, Kind};

use crate::*;

/// Where testbed writes its kernel settings.
pub(crate) const SYSCTL_FILE: &str = "/etc/sysctl.d/60-testbed.conf";

/// Where testbed records the host packages it installed (their ownership marker).
pub(crate) const PACKAGES_MARKER: &str = "/var/lib/testbed/host-packages";

pub(crate) fn create(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::HostPackages => {
            let mut s = vec![
                Step::Note(
                    "each install runs only when its program is missing (karmadactl: or not at the file's version)"
                        .into(),
                ),
                host(["apt-get", "update"]).with_role(Role::PackageIndex),
                host(["apt-get", "install", "-y", "snapd"]).with_role(Role::AptInstall("snapd".into())),
            ];
            s.push(host(["snap", "wait", "system", "seed.loaded"]).with_role(Role::SnapSeeded));
            s.push(host(["snap", "install", "kubectl", "--classic"]).with_role(Role::SnapInstall("kubectl".into())));
            match cx.backend {
                Backend::Lxd => {
                    s.push(host(["snap", "install", "lxd"]).with_role(Role::SnapInstall("lxd".into())));
                    s.push(Step::Note("on Debian 12 and 13, LXD is the distribution's package instead:".into()));
                    s.push(host(["apt-get", "install", "-y", "lxd"]).with_role(Role::AptInstall("lxd".into())));
                    s.push(host(["lxd", "waitready", "--timeout=60"]).with_role(Role::DaemonReady("lxd".into())));
                }
                Backend::Incus => {
                    s.push(host(["apt-get", "install", "-y", "incus"]).with_role(Role::AptInstall("incus".into())));
                    s.push(
                        host(["incus", "admin", "waitready", "--timeout=60"])
                            .with_role(Role::DaemonReady("incus".into())),
                    );
                }
            }
            let v = &cx.karmada_version;
            let url = format!("https://github.com/karmada-io/karmada/releases/download/{v}/karmadactl-linux-amd64.tgz");
            let tgz = format!("{}/karmadactl-{v}-linux-amd64.tgz", cx.downloads);
            s.push(
                host(["curl".into(), "-fsSL".into(), "-o".into(), tgz.clone(), url.clone()])
                    .with_role(Role::Download { file: tgz.clone() }),
            );
            s.push(Step::Call {
                api: "https",
                method: "GET",
                path: format!("{url}.sha256"),
                note: format!("testbed compares the archive's SHA-256 with it before unpacking {tgz}"),
                purpose: Purpose::ReleaseChecksum { url: format!("{url}.sha256") },
            });
            s.push(host(["tar", "-xzf", &tgz, "-C", "/usr/local/bin", "karmadactl"]).with_role(Role::Unpack));
            s.push(host(["karmadactl", "version"]).with_role(Role::KarmadactlVersion));
            s.push(Step::Write {
                at: Where::Host,
                path: PACKAGES_MARKER.into(),
                mode: 0o644,
                content: "the packages testbed installed, one per line".into(),
            });
            s
        }
        Kind::HostSysctl => {
            let mut s: Vec<Step> = Vec::new();
            let mut lines = Vec::new();
            if let Some(r) = &a.desired {
                for (k, v) in &r.spec {
                    s.push(
                        host(["sysctl".to_owned(), "-w".to_owned(), format!("{k}={v}")])
                            .with_role(Role::KernelLimit { key: k.clone(), value: v.clone() }),
                    );
                    lines.push(format!("{k} = {v}"));
                }
            }
            s.push(Step::Note("a limit the kernel already has higher is kept: testbed never lowers one".into()));
            s.push(Step::Write { at: Where::Host, path: SYSCTL_FILE.into(), mode: 0o644, content: lines.join("; ") });
            s
        }
        Kind::HostFirewall => {
            let bridge = setting(a, "bridge").to_owned();
            let mut s = Vec::new();
            for (chain, dir) in [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")] {
                let rule = |op: &str| iptables_rule(op, chain, dir, &bridge, cx);
                s.push(rule("-C").with_role(Role::RuleCheck));
                s.push(rule("-I").with_role(Role::RuleInsert));
            }
            s.push(Step::Note("each -I runs only when the -C before it fails, so rules are never duplicated; hosts with nft and no iptables get the same rules in table inet testbed".into()));
            s
        }
        Kind::HostNodeports => {
            let rule = node_ports_rule(setting(a, "bridge"), setting(a, "ports"), &cx.firewall_comment);
            vec![
                Step::Note(format!(
                    "the raw table's PREROUTING runs before kube-proxy turns a NodePort into its pod: a connection to ports {} on any host address is dropped unless it comes from the host itself (a local source address) or in through {}",
                    setting(a, "ports"),
                    setting(a, "bridge")
                )),
                host(["iptables", "-t", "raw", "-S", "PREROUTING"]),
                Step::Note("any other rule with this testbed's comment in that listing is deleted (-D) first, and the -I below runs only when the listing lacks it; hosts with nft and no iptables get the same rule in table inet testbed, chain prerouting (priority raw)".into()),
                host(raw_prerouting("-I", &rule)),
            ]
        }
        _ => vec![],
    }
}

/// The rule of `host.nodeports` in iptables' words, in the order `iptables -S` prints them back (after
/// `-A PREROUTING`): TCP to `ports` on an address of the host, not from a local source address, not in
/// through `bridge`, is dropped.
pub fn node_ports_rule(bridge: &str, ports: &str, comment: &str) -> Vec<String> {
    [
        "!",
        "-i",
        bridge,
        "-p",
        "tcp",
        "-m",
        "multiport",
        "--dports",
        ports,
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-m",
        "addrtype",
        "!",
        "--src-type",
        "LOCAL",
        "-m",
        "comment",
        "--comment",
        comment,
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `iptables -t raw OP PREROUTING RULE...`.
pub fn raw_prerouting(op: &str, rule: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["iptables", "-t", "raw", op, "PREROUTING"].iter().map(|s| s.to_string()).collect();
    v.extend(rule.iter().cloned());
    v
}

pub(crate) fn update(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::HostPackages | Kind::HostSysctl => create(a, cx),
        Kind::HostFirewall => {
            // Rules for a bridge the file no longer names go first.
            let old = a.observed.as_ref().and_then(|o| o.spec.get("bridge")).filter(|b| !b.is_empty());
            let mut s = match old {
                Some(b) if b.as_str() != setting(a, "bridge") => firewall_deletes(b, cx),
                _ => vec![],
            };
            s.extend(create(a, cx));
            s
        }
        Kind::HostNodeports => {
            let old = |k: &str| a.observed.as_ref().and_then(|o| o.spec.get(k)).cloned().unwrap_or_default();
            let mut s = Vec::new();
            if (old("bridge"), old("ports")) != (setting(a, "bridge").to_owned(), setting(a, "ports").to_owned()) {
                s.push(host(raw_prerouting(
                    "-D",
                    &node_ports_rule(&old("bridge"), &old("ports"), &cx.firewall_comment),
                )));
            }
            s.extend(create(a, cx));
            s
        }
        _ => vec![],
    }
}

fn firewall_deletes(bridge: &str, cx: &Context) -> Vec<Step> {
    [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")]
        .into_iter()
        .map(|(chain, dir)| iptables_rule("-D", chain, dir, bridge, cx).with_role(Role::RuleDelete))
        .collect()
}

/// `iptables OP CHAIN DIR BRIDGE` for one of testbed's rules, with its comment.
fn iptables_rule(op: &str, chain: &str, dir: &str, bridge: &str, cx: &Context) -> Step {
    host(["iptables", op, chain, dir, bridge, "-m", "comment", "--comment", &cx.firewall_comment, "-j", "ACCEPT"])
}

pub(crate) fn delete(a: &Action, cx: &Context) -> Vec<Step> {
    match a.kind {
        Kind::HostPackages | Kind::HostSysctl => vec![],
        Kind::HostFirewall => firewall_deletes(setting(a, "bridge"), cx),
        Kind::HostNodeports => {
            vec![host(raw_prerouting(
                "-D",
                &node_ports_rule(setting(a, "bridge"), setting(a, "ports"), &cx.firewall_comment),
            ))]
        }
        _ => vec![],
    }
}
