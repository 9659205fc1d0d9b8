//! The microk8s snap as programs: `snap install | refresh | list | remove microk8s` and the `microk8s`
//! command, alike on the host and in members. What they print and how they exit follow snapd 2.66 and
//! MicroK8s 1.32 (canonical/microk8s `scripts/wrappers/status.py`, `enable.py`, `disable.py`, `config.py`;
//! the hostpath-storage addon's `disable` script in canonical/microk8s-core-addons):
//!
//! - `microk8s status --format yaml` prints `microk8s: running: True` and the addons with their status; a
//!   stopped MicroK8s prints "microk8s is not running, try microk8s start";
//! - `microk8s status --wait-ready --timeout N` waits up to N seconds and exits 1 if MicroK8s is not ready;
//! - `microk8s enable A B` enables several addons in one call; an unknown addon is "Addon A was not found in
//!   any repository" (exit 1);
//! - `microk8s disable hostpath-storage` asks "Remove PVC storage at ... ? (Y/N)" on stdin and, with no one
//!   to answer (LXD exec has no stdin), exits 1; `hostpath-storage:destroy-storage` does not ask
//!   (real-tools.md, behaviour 1);
//! - `microk8s config` prints the admin kubeconfig with the server at the machine's own address, port 16443.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use testbed_command::Output;

use crate::programs::{fail, ok, Ran};
use crate::world::ClusterPki;

/// What the microk8s snap keeps, on the host or in a member.
pub(crate) trait Snapped {
    fn channel(&self) -> &str;
    fn set_channel(&mut self, channel: String);
    fn running(&self) -> bool;
    fn set_running(&mut self, running: bool);
    fn addons(&mut self) -> &mut BTreeSet<String>;
    /// The addons `status` shows as enabled.
    fn enabled(&self) -> BTreeSet<String>;
    /// What an addon brings or takes with it besides being listed.
    fn addon_changed(&mut self, _addon: &str, _enabled: bool) {}
    fn pki(&mut self) -> &mut Option<ClusterPki>;
    /// Installed from a file: it tracks no channel.
    fn installed_from_file(&self) -> bool {
        false
    }
    fn set_from_file(&mut self, _from_file: bool) {}
}

/// The MicroK8s version a channel installs (`1.32/stable` → `v1.32.3`), and the snap revision.
pub(crate) fn release(channel: &str) -> Option<(String, u32)> {
    let (track, risk) = channel.split_once('/').unwrap_or((channel, "stable"));
    if !matches!(risk, "stable" | "candidate" | "beta" | "edge") {
        return None;
    }
    let minor: u32 = match track {
        "latest" => 35,
        t => t.strip_prefix("1.")?.parse().ok()?,
    };
    (20..=36).contains(&minor).then(|| (format!("v1.{minor}.3"), 7000 + minor * 20))
}

/// The channel as snapd shows it (`1.32` → `1.32/stable`).
pub(crate) fn tracked(channel: &str) -> String {
    if channel.contains('/') {
        channel.to_owned()
    } else {
        format!("{channel}/stable")
    }
}

/// `snap list microk8s`.
pub(crate) fn snap_list(m: Option<&dyn Snapped>) -> Ran {
    match m {
        None => fail(1, "error: no matching snaps installed\n"),
        Some(m) => {
            let (version, rev) = release(m.channel()).unwrap_or_else(|| ("v1.32.3".into(), 7964));
            // A snap installed from a file with its assertions acknowledged keeps the store's revision and
            // publisher, and tracks no channel (cmd_list.go's fmtChannel: "" is "-").
            let tracking = if m.installed_from_file() { "-".to_owned() } else { tracked(m.channel()) };
            ok(
                format!(
                    "Name      Version  Rev   Tracking     Publisher   Notes\nmicrok8s  {version}  {rev}  {tracking}  canonical✓  classic\n"
                ),
                0,
            )
        }
    }
}

/// What `snap install microk8s ARGS` is asked for: the channel, or why snapd refuses.
pub(crate) fn install_request(args: &[&str]) -> Result<String, Ran> {
    let channel = args.iter().find_map(|a| a.strip_prefix("--channel=")).unwrap_or("latest/stable");
    if !args.contains(&"--classic") {
        return Err(fail(
            1,
            "error: This revision of snap \"microk8s\" was published using classic confinement and thus may\n       perform arbitrary system changes outside of the security sandbox that snaps are usually\n       confined to, which may put your system at risk.\n\n       If you understand and want to proceed repeat the command including --classic.\n",
        ));
    }
    if release(channel).is_none() {
        return Err(fail(
            1,
            format!("error: snap \"microk8s\" is not available on {channel} but is available to install on the\n       following channels: 1.35/stable ... (see 'snap info microk8s')\n"),
        ));
    }
    Ok(tracked(channel))
}

/// `snap install microk8s` succeeded. The download from the store (over the line, [`crate::snap_store`]) is
/// added by the caller; this is the install and the first start.
pub(crate) fn installed(channel: &str) -> Ran {
    let (version, _) = release(channel).unwrap_or_else(|| ("v1.32.3".into(), 7964));
    Ran { out: Output::ok(format!("microk8s ({channel}) {version} from Canonical✓ installed\n")), took: secs(75) }
}

/// `snap refresh microk8s --channel=C`.
pub(crate) fn refresh(m: &mut dyn Snapped, args: &[&str]) -> Ran {
    let Some(channel) = args.iter().find_map(|a| a.strip_prefix("--channel=")) else {
        return ok("snap \"microk8s\" has no updates available\n", 3);
    };
    if release(channel).is_none() {
        return fail(1, format!("error: snap \"microk8s\" is not available on {channel}\n"));
    }
    let channel = tracked(channel);
    if channel == m.channel() && !m.installed_from_file() {
        return ok("snap \"microk8s\" has no updates available\n", 3);
    }
    let (version, _) = release(&channel).unwrap_or_default();
    m.set_channel(channel.clone());
    m.set_from_file(false);
    // A refresh restarts MicroK8s' services; a stopped MicroK8s stays stopped.
    ok(format!("microk8s ({channel}) {version} from Canonical✓ refreshed\n"), 60)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The addons MicroK8s' core and community repositories have, as far as testbed uses them.
const KNOWN_ADDONS: [&str; 14] = [
    "dns",
    "hostpath-storage",
    "storage",
    "registry",
    "ingress",
    "metrics-server",
    "dashboard",
    "helm",
    "helm3",
    "rbac",
    "cert-manager",
    "metallb",
    "observability",
    "ha-cluster",
];

fn addon_name(arg: &str) -> &str {
    arg.split(':').next().unwrap_or(arg)
}

const NOT_RUNNING: &str = "microk8s is not running, try microk8s start\n";

/// The `microk8s` command. `address` is the machine's own address (what `microk8s config` puts in the
/// server URL).
pub(crate) fn microk8s(m: &mut dyn Snapped, args: &[&str], address: &str) -> Ran {
    match args {
        ["status", rest @ ..] => status(m, rest),
        ["start"] => {
            m.set_running(true);
            ok("", 20)
        }
        ["stop"] => {
            m.set_running(false);
            ok("Stopped.\n", 10)
        }
        ["enable", addons @ ..] if !addons.is_empty() => {
            if !m.running() {
                return fail(1, NOT_RUNNING);
            }
            if let Some(unknown) = addons.iter().map(|a| addon_name(a)).find(|a| !KNOWN_ADDONS.contains(a)) {
                return fail(1, format!("Addon {unknown} was not found in any repository\n"));
            }
            let mut out = String::new();
            for a in addons.iter().map(|a| addon_name(a)) {
                out.push_str(&format!("Infer repository core for addon {a}\nEnabling {a}\n{a} is enabled\n"));
                m.addons().insert(a.to_owned());
                m.addon_changed(a, true);
                // The registry addon enables hostpath-storage first.
                if a == "registry" {
                    m.addons().insert("hostpath-storage".into());
                }
            }
            ok(out, 30 * addons.len() as u64)
        }
        ["disable", addons @ ..] if !addons.is_empty() => {
            if !m.running() {
                return fail(1, NOT_RUNNING);
            }
            let mut out = String::new();
            for arg in addons.iter() {
                let a = addon_name(arg);
                if !KNOWN_ADDONS.contains(&a) {
                    return fail(1, format!("Addon {a} was not found in any repository\n"));
                }
                if a == "hostpath-storage" && !arg.ends_with(":destroy-storage") && m.addons().contains(a) {
                    // `input()` at end of file: Python's EOFError, exit 1.
                    out.push_str(
                        "Infer repository core for addon hostpath-storage\nDisabling hostpath storage.\nRemove PVC storage at /var/snap/microk8s/common/default-storage ? (Y/N): ",
                    );
                    return Ran {
                        out: Output {
                            code: 1,
                            stdout: out,
                            stderr: "Traceback (most recent call last):\n  ...\nEOFError: EOF when reading a line\n"
                                .into(),
                        },
                        took: secs(2),
                    };
                }
                out.push_str(&format!("Infer repository core for addon {a}\nDisabling {a}\n{a} is disabled\n"));
                m.addons().remove(a);
                m.addon_changed(a, false);
            }
            ok(out, 15 * addons.len() as u64)
        }
        ["config", rest @ ..] => {
            let address = if rest.contains(&"-l") { "127.0.0.1" } else { address };
            let pki = m.pki().get_or_insert_with(ClusterPki::generate).clone();
            ok(kubeconfig(&pki, address), 1)
        }
        _ => fail(1, format!("Error: the simulated microk8s does not model `microk8s {}`\n", args.join(" "))),
    }
}

fn status(m: &dyn Snapped, rest: &[&str]) -> Ran {
    if rest.contains(&"--wait-ready") {
        let limit = rest.windows(2).find(|w| w[0] == "--timeout").and_then(|w| w[1].parse::<u64>().ok());
        if m.running() {
            return ok("microk8s is running\nhigh-availability: no\n", 5);
        }
        // Without --timeout it would wait forever (behaviour 14).
        return Ran {
            out: Output::failed(1, "microk8s is not running. Use microk8s inspect for a deeper inspection.\n"),
            took: secs(limit.unwrap_or(u64::from(u32::MAX))),
        };
    }
    if !m.running() {
        return Ran { out: Output { code: 1, stdout: NOT_RUNNING.into(), stderr: String::new() }, took: secs(1) };
    }
    let enabled = m.enabled();
    let mut text = String::from("microk8s:\n  running: True\nhigh-availability:\n  enabled: False\naddons:\n");
    for a in KNOWN_ADDONS {
        let state = if enabled.contains(a) { "enabled" } else { "disabled" };
        text.push_str(&format!("  - name: {a}\n    repository: core\n    status: {state}\n"));
    }
    ok(text, 2)
}

/// The admin kubeconfig `microk8s config` prints.
fn kubeconfig(pki: &ClusterPki, address: &str) -> String {
    let port = crate::world::MEMBER_API_PORT;
    kubeconfig_text(pki, &format!("https://{address}:{port}"), "microk8s-cluster", "admin", "microk8s")
}

/// A kubeconfig for `server` with the admin client certificate `pki` signed.
pub(crate) fn kubeconfig_text(pki: &ClusterPki, server: &str, cluster: &str, user: &str, context: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: {cluster}\ncontexts:\n- context:\n    cluster: {cluster}\n    user: {user}\n  name: {context}\ncurrent-context: {context}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&pki.ca_pem),
        b64(&pki.admin_cert_pem),
        b64(&pki.admin_key_pem),
    )
}
