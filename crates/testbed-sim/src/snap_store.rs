//! The snap store as the simulated machine sees it: what `snap download` writes (a snap file and its
//! assertions, as stand-ins that name what they stand for, with the size of the real thing), what
//! `snap info` lists, and the internet line downloads share.
//!
//! Sizes are the real ones' magnitude: the microk8s snap about 180 MB, its base (core18, core20 or core22,
//! by MicroK8s version as canonical/microk8s' `snap/snapcraft.yaml` names it per release branch: core18 up
//! to 1.26, core20 from 1.27 to 1.33, core22 from 1.34) 56 to 74 MB. Every download from the store (a
//! `snap download` on the host, a `snap install`/`snap refresh` from the store in a member or on the host)
//! goes over one line of [`SimOptions::line_mbits`](crate::SimOptions) (100 Mbit/s by default,
//! `TESTBED_SIM_LINE_MBITS`): downloads at the same time wait for each other (first come, first served,
//! which ends the last of them when fair sharing would). A push into a member through LXD's file API goes
//! over the local socket instead ([`LOCAL_SOCKET_BYTES_PER_SEC`]).

use std::time::Duration;

use crate::microk8s_snap::release;

/// The microk8s snap's size, about what the store serves for 1.32 to 1.35.
pub(crate) const MICROK8S_SNAP_BYTES: u64 = 180_000_000;
/// How fast LXD's file API takes a file over its unix socket (a local copy: hundreds of MB/s).
pub(crate) const LOCAL_SOCKET_BYTES_PER_SEC: u64 = 500_000_000;

/// The base snap of a MicroK8s channel (canonical/microk8s `snap/snapcraft.yaml` on each release branch).
pub(crate) fn base_of(channel: &str) -> &'static str {
    let minor = channel.split('/').next().and_then(|t| t.strip_prefix("1.")).and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(m) if m <= 26 => "core18",
        Some(m) if m <= 33 => "core20",
        _ => "core22",
    }
}

/// A base snap's revision and size.
pub(crate) fn base_snap(name: &str) -> Option<(u32, u64)> {
    match name {
        "core18" => Some((2855, 56_000_000)),
        "core20" => Some((2582, 64_000_000)),
        "core22" => Some((2045, 74_000_000)),
        _ => None,
    }
}

/// A snap file as the simulation writes it: what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapFile {
    pub name: String,
    pub version: String,
    pub revision: u32,
    /// The channel it was downloaded from (microk8s only; a real file does not say, the simulation keeps it
    /// to know which release it is).
    pub channel: String,
    pub base: Option<String>,
    pub size: u64,
}

const SNAP_MAGIC: &str = "testbed simulated snap";

impl SnapFile {
    /// The microk8s snap of `channel` (fully qualified), if the store has that channel.
    pub fn microk8s(channel: &str) -> Option<SnapFile> {
        let (version, revision) = release(channel)?;
        Some(SnapFile {
            name: "microk8s".into(),
            version,
            revision,
            channel: channel.to_owned(),
            base: Some(base_of(channel).to_owned()),
            size: MICROK8S_SNAP_BYTES,
        })
    }

    /// A base snap from its latest/stable channel.
    pub fn base(name: &str) -> Option<SnapFile> {
        let (revision, size) = base_snap(name)?;
        Some(SnapFile {
            name: name.to_owned(),
            version: "16-2.61".into(),
            revision,
            channel: "latest/stable".into(),
            base: None,
            size,
        })
    }

    /// The stand-in file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        format!(
            "{SNAP_MAGIC}\nname: {}\nversion: {}\nrevision: {}\nchannel: {}\nbase: {}\nsize: {}\n",
            self.name,
            self.version,
            self.revision,
            self.channel,
            self.base.as_deref().unwrap_or("-"),
            self.size
        )
        .into_bytes()
    }

    /// Reads a stand-in back; `None` for anything else (not a snap).
    pub fn parse(bytes: &[u8]) -> Option<SnapFile> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != SNAP_MAGIC {
            return None;
        }
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}: "))).map(str::to_owned);
        Some(SnapFile {
            name: field("name")?,
            version: field("version")?,
            revision: field("revision")?.parse().ok()?,
            channel: field("channel")?,
            base: field("base").filter(|b| b != "-"),
            size: field("size")?.parse().ok()?,
        })
    }

    /// The assertions `snap download` writes beside it (the `snap-revision` assertion's headers, as
    /// snapd's encoder writes them; signatures left out).
    pub fn assertions(&self) -> String {
        format!(
            "type: account-key\nauthority-id: canonical\nname: store\n\ntype: snap-declaration\nauthority-id: canonical\nsnap-name: {}\n\ntype: snap-revision\nauthority-id: canonical\nsnap-sha3-384: sim-{}-{}\nsnap-revision: {}\nsnap-size: {}\n",
            self.name, self.name, self.revision, self.revision, self.size
        )
    }

    /// What `snap info --verbose FILE` prints of it (cmd_info.go, a local file: no channels).
    pub fn info(&self, path: &str) -> String {
        let mut s = format!(
            "path:       {path:?}\nname:       {}\nsummary:    {}\nversion:    {}\nbuild-date: 1 month ago\nlicense:    unset\n",
            self.name,
            if self.name == "microk8s" { "Kubernetes for workstations and appliances" } else { "Runtime environment" },
            self.version,
        );
        if let Some(b) = &self.base {
            s.push_str(&format!("base:       {b}\n"));
        }
        if self.name == "microk8s" {
            s.push_str("confinement: classic\n");
        }
        s
    }
}

/// The revision an assertion file names for snap `name`, if it is one the simulation wrote.
pub(crate) fn asserted(text: &str) -> Option<(String, u32)> {
    let name = text.lines().find_map(|l| l.strip_prefix("snap-name: "))?;
    let rev = text.lines().find_map(|l| l.strip_prefix("snap-revision: "))?.parse().ok()?;
    Some((name.to_owned(), rev))
}

/// `snap info microk8s`: the channels the simulated store has, with their revisions.
pub(crate) fn info_microk8s() -> String {
    let mut s = String::from(
        "name:      microk8s\nsummary:   Kubernetes for workstations and appliances\npublisher: Canonical✓\nstore-url: https://snapcraft.io/microk8s\ncontact:   https://github.com/canonical/microk8s\nlicense:   Apache-2.0\ndescription: |\n  MicroK8s is a small, fast, single-package Kubernetes.\nsnap-id: EaXqgt1lyCaxKaQCU349mlodBkDCXRcg\nchannels:\n",
    );
    for track in std::iter::once("latest".to_owned()).chain((20..=36).rev().map(|m| format!("1.{m}"))) {
        for risk in ["stable", "candidate", "beta", "edge"] {
            let channel = format!("{track}/{risk}");
            if let Some((version, rev)) = release(&channel) {
                s.push_str(&format!("  {channel}:  {version}  2026-01-10 ({rev}) 180MB classic\n"));
            }
        }
    }
    s
}

/// The internet line the host and the members share for store downloads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Line {
    /// When the downloads already on the line end, in the run's (scaled) clock.
    busy_until: Option<tokio::time::Instant>,
    /// The run's speed factor (as [`crate::SimOptions::speed`]) times 1e6, and the line's rate.
    speed_micro: u64,
    mbits: u64,
}

impl Line {
    pub fn new(speed: f64, mbits: f64) -> Line {
        let speed_micro = if speed.is_finite() && speed > 0.0 { (speed * 1e6) as u64 } else { 0 };
        Line { busy_until: None, speed_micro, mbits: if mbits.is_finite() && mbits > 0.0 { mbits as u64 } else { 100 } }
    }

    /// How long (real magnitude) downloading `bytes` takes from now, after the downloads already on the line.
    pub fn transfer(&mut self, bytes: u64) -> Duration {
        let mbits = self.mbits.max(1);
        let alone = Duration::from_secs_f64(bytes as f64 * 8.0 / (mbits as f64 * 1e6));
        if self.speed_micro == 0 || tokio::runtime::Handle::try_current().is_err() {
            return alone;
        }
        let speed = self.speed_micro as f64 / 1e6;
        let now = tokio::time::Instant::now();
        let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
        let end = start + alone.mul_f64(speed);
        self.busy_until = Some(end);
        (end - now).div_f64(speed)
    }
}

/// How long a push of `bytes` through LXD's file API takes: a modelled snap counts as the size it stands
/// for.
pub(crate) fn push_time(bytes: &[u8]) -> Option<Duration> {
    let snap = SnapFile::parse(bytes)?;
    Some(Duration::from_millis(50) + Duration::from_secs_f64(snap.size as f64 / LOCAL_SOCKET_BYTES_PER_SEC as f64))
}
