//! What the real programs print, read back: `snap list microk8s`, `microk8s status --format yaml`, and the
//! listing of testbed's addon record.

use std::collections::BTreeSet;

/// The microk8s snap as `snap list microk8s` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapInfo {
    pub version: String,
    /// The `Rev` column: the installed revision (`x1` for a snap installed with `--dangerous`).
    pub revision: String,
    /// The `Tracking` column: the channel the snap follows (`1.32/stable`; a branch is cut to `1.32/stable/…`).
    pub tracking: String,
    /// The `Notes` column (`classic`, `disabled,classic`, ...).
    pub notes: String,
}

/// Reads `snap list microk8s`:
///
/// ```text
/// Name      Version  Rev   Tracking     Publisher   Notes
/// microk8s  v1.32.3  7964  1.32/stable  canonical✓  classic
/// ```
///
/// `None` when the output has no `microk8s` row (snap says `error: no matching snaps installed` on stderr
/// and exits 1 then; the caller checks the exit code).
pub(crate) fn snap_list(stdout: &str) -> Option<SnapInfo> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (version, rev, tracking, notes) = (col("Version")?, col("Rev")?, col("Tracking")?, col("Notes"));
    lines.map(|l| l.split_whitespace().collect::<Vec<&str>>()).find(|cells| cells.first() == Some(&"microk8s")).map(
        |cells| SnapInfo {
            version: cells.get(version).unwrap_or(&"").to_string(),
            revision: cells.get(rev).unwrap_or(&"").to_string(),
            tracking: cells.get(tracking).unwrap_or(&"").to_string(),
            notes: notes.and_then(|n| cells.get(n)).unwrap_or(&"").to_string(),
        },
    )
}

/// Whether the channel the snap tracks is the one the file asks for. snapd shows a channel fully
/// qualified (`1.32` is tracked as `1.32/stable`, `stable` as `latest/stable`) and cuts a branch to
/// `track/risk/…`.
pub(crate) fn same_channel(wanted: &str, tracking: &str) -> bool {
    fn full(c: &str) -> String {
        const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];
        match c.split('/').collect::<Vec<_>>().as_slice() {
            [one] if RISKS.contains(one) => format!("latest/{one}"),
            [one] => format!("{one}/stable"),
            _ => c.to_owned(),
        }
    }
    let (w, t) = (full(wanted), full(tracking));
    if w == t {
        return true;
    }
    // `1.32/stable/…` stands for any branch of 1.32/stable.
    match t.strip_suffix('…') {
        Some(prefix) => w.starts_with(prefix) && w.len() > prefix.len(),
        None => false,
    }
}

/// What `microk8s status --format yaml` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// `microk8s: running: True`, with the names of the enabled addons.
    Running { enabled: BTreeSet<String> },
    /// `running: False`: started, but the API server or the node is not ready (the command exits 1).
    NotReady,
    /// `microk8s stop` was run: the command prints `microk8s is not running, try microk8s start` (and exits
    /// 0), no YAML.
    Stopped,
}

/// Reads `microk8s status --format yaml` (scripts/wrappers/status.py, `print_yaml`):
///
/// ```text
/// microk8s:
///   running: True
/// high-availability:
///   enabled: False
/// addons:
///   - name: dns
///     repository: core
///     description: CoreDNS
///     version: 1.10.1
///     status: enabled
/// ```
///
/// `None` when the text is neither that nor the stopped message.
pub(crate) fn status(stdout: &str) -> Option<Status> {
    if stdout.contains("microk8s is not running, try microk8s start") {
        return Some(Status::Stopped);
    }
    let mut section = "";
    let mut running = None;
    let mut enabled = BTreeSet::new();
    let mut name: Option<String> = None;
    for line in stdout.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            section = line.trim().trim_end_matches(':');
            continue;
        }
        let item = line.trim_start();
        let (item, new_entry) = match item.strip_prefix("- ") {
            Some(rest) => (rest, true),
            None => (item, false),
        };
        let Some((key, value)) = item.split_once(':') else { continue };
        let value = value.trim();
        match (section, key.trim()) {
            ("microk8s", "running") => running = Some(value.eq_ignore_ascii_case("true")),
            ("addons", "name") => name = Some(value.to_owned()),
            ("addons", "status") if value == "enabled" => {
                if let Some(n) = name.take() {
                    enabled.insert(n);
                }
            }
            ("addons", _) if new_entry => name = None,
            _ => {}
        }
    }
    match running? {
        true => Some(Status::Running { enabled }),
        false => Some(Status::NotReady),
    }
}

/// The revision of each channel `snap info microk8s` lists (cmd/snapd/cli/cmd_info.go: under `channels:`,
/// one line per channel, `  TRACK/RISK:  VERSION  DATE  (REVISION)  SIZE  NOTES`; a closed channel shows `↑`
/// or `–` and no revision), by the fully qualified channel.
pub(crate) fn channel_revisions(stdout: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut in_channels = false;
    for line in stdout.lines() {
        if !line.starts_with(' ') {
            in_channels = line.trim_end() == "channels:";
            continue;
        }
        if !in_channels {
            continue;
        }
        let mut cells = line.split_whitespace();
        let Some(channel) = cells.next().and_then(|c| c.strip_suffix(':')) else { continue };
        let revision = cells.find_map(|c| c.strip_prefix('(').and_then(|c| c.strip_suffix(')')));
        if let Some(r) = revision.filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())) {
            out.insert(testbed_config::text::full_snap_channel(channel), r.to_owned());
        }
    }
    out
}

/// The `base:` line of `snap info --verbose` (the base snap the snap runs on); `None` without one.
pub(crate) fn snap_base(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("base:"))
        .map(str::trim)
        .filter(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_".contains(&c)))
        .map(str::to_owned)
}

/// The `snap-revision` header of a snap's assertions (`snap download`'s `.assert`: the `snap-revision`
/// assertion of the downloaded file, `snap-revision: 7964`).
pub(crate) fn asserted_revision(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("snap-revision:"))
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// testbed's record of a snap installed from a download ([`testbed_steps::snap_record`]): (channel,
/// revision).
pub(crate) fn snap_record(text: &str) -> Option<(String, String)> {
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned());
    Some((value("channel=")?, value("revision=")?))
}

/// The addons named in a listing of testbed's record (`ls -1`, one name per line). Names that are not
/// addon names (a stray file) are ignored.
pub(crate) fn record(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `snap list microk8s` as snapd prints it (cmd/snapd/cli/cmd_list.go: a tabwriter, padding 2).
    const SNAP_LIST: &str = "Name      Version  Rev   Tracking     Publisher   Notes\n\
                             microk8s  v1.32.3  7964  1.32/stable  canonical✓  classic\n";

    /// `snap info microk8s` as snapd prints it (channels and revisions made up; the layout is cmd_info.go's).
    const SNAP_INFO: &str = "name:      microk8s\nsummary:   Kubernetes for workstations and appliances\npublisher: Canonical✓\nstore-url: https://snapcraft.io/microk8s\nlicense:   Apache-2.0\ndescription: |\n  MicroK8s is a small, fast, secure, certified Kubernetes distribution\nsnap-id:      EaXqgt1lyCaxKaQCU349mlodBkDCXRcg\nchannels:\n  1.32/stable:      v1.32.3  2025-04-01 (7964) 172MB classic\n  1.32/candidate:   v1.32.3  2025-04-01 (7964) 172MB classic\n  1.32/beta:        ↑\n  latest/stable:    v1.35.0  2026-01-10 (8600) 180MB classic\n";

    #[test]
    fn channel_revisions_come_from_snap_info() {
        let r = channel_revisions(SNAP_INFO);
        assert_eq!(r.get("1.32/stable").map(String::as_str), Some("7964"));
        assert_eq!(r.get("latest/stable").map(String::as_str), Some("8600"));
        assert!(!r.contains_key("1.32/beta"), "a closed channel has no revision of its own");
        assert_eq!(snap_base("name: microk8s\nbase:    core20\n").as_deref(), Some("core20"));
        assert_eq!(asserted_revision("type: snap-revision\nsnap-revision: 7964\n").as_deref(), Some("7964"));
        assert_eq!(snap_record("channel=1.32/stable\nrevision=7964\n"), Some(("1.32/stable".into(), "7964".into())));
    }

    #[test]
    fn the_tracking_channel_comes_from_snap_list() {
        let s = snap_list(SNAP_LIST).unwrap();
        assert_eq!((s.version.as_str(), s.tracking.as_str(), s.notes.as_str()), ("v1.32.3", "1.32/stable", "classic"));
        assert_eq!(snap_list(""), None);
        assert_eq!(
            snap_list("Name  Version  Rev  Tracking  Publisher  Notes\nlxd  5.21  1  5.21/stable  canonical✓  -\n"),
            None
        );
    }

    #[test]
    fn channels_compare_as_snapd_shows_them() {
        assert!(same_channel("1.32/stable", "1.32/stable"));
        assert!(same_channel("1.32", "1.32/stable"));
        assert!(same_channel("stable", "latest/stable"));
        assert!(same_channel("1.32/stable/hotfix", "1.32/stable/…"));
        assert!(!same_channel("1.31/stable", "1.32/stable"));
        assert!(!same_channel("1.32/edge", "1.32/stable"));
    }

    #[test]
    fn status_yaml_running_with_addons() {
        let out = "microk8s:\n  running: True\nhigh-availability:\n  enabled: False\naddons:\n  \
                   - name: dns\n    repository: core\n    description: CoreDNS\n    version: 1.10.1\n    status: enabled\n  \
                   - name: ha-cluster\n    repository: core\n    description: Configure high availability on the current node\n    version: 1.32.3\n    status: enabled\n  \
                   - name: registry\n    repository: core\n    description: Private image registry exposed on localhost:32000\n    version: 2.8.1\n    status: disabled\n";
        let Some(Status::Running { enabled }) = status(out) else { panic!("{:?}", status(out)) };
        assert_eq!(enabled.into_iter().collect::<Vec<_>>(), ["dns", "ha-cluster"]);
    }

    #[test]
    fn status_not_ready_and_stopped() {
        let not_ready = "microk8s:\n  running: False\nhigh-availability:\n  enabled: False\n  \
                         message: microk8s is not running. Use microk8s inspect for a deeper inspection.\n";
        assert_eq!(status(not_ready), Some(Status::NotReady));
        assert_eq!(status("microk8s is not running, try microk8s start\n"), Some(Status::Stopped));
        assert_eq!(status("Insufficient permissions to access MicroK8s.\n"), None);
    }

    #[test]
    fn the_record_lists_addon_names() {
        let r = record("dns\nhostpath-storage\n.hidden\n");
        assert_eq!(r.into_iter().collect::<Vec<_>>(), ["dns", "hostpath-storage"]);
    }
}
