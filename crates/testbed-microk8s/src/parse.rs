//! What the real programs print, read back: `snap list microk8s`, `microk8s status --format yaml`, and the
//! listing of testbed's addon record.

use std::collections::BTreeSet;

/// The microk8s snap as `snap list microk8s` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapInfo {
    pub version: String,
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
    let (version, tracking, notes) = (col("Version")?, col("Tracking")?, col("Notes"));
    lines.map(|l| l.split_whitespace().collect::<Vec<&str>>()).find(|cells| cells.first() == Some(&"microk8s")).map(
        |cells| SnapInfo {
            version: cells.get(version).unwrap_or(&"").to_string(),
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
