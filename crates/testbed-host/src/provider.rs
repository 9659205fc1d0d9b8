//! The real host layer: packages, kernel limits, the bridge's firewall rules (the NodePort rule is in
//! `node_ports.rs`).
//!
//! It runs the command catalogue's steps (`testbed_steps::steps`) as argument vectors, skipping the ones
//! whose work is already done: an install whose program is there, a limit the kernel already has as high,
//! a rule `iptables -C` finds. Choices the catalogue leaves to the host are made here from [`HostSystem`]:
//! LXD from Debian's package on Debian 12 and 13 and from the snap elsewhere, the karmadactl archive for
//! this machine's architecture, and nft in place of iptables on hosts that have only nft.
//!
//! Ownership markers, as in the simulated host layer: the packages testbed installed are listed in
//! `/var/lib/testbed/host-packages`; the kernel limits are testbed's when `/etc/sysctl.d/60-testbed.conf`
//! carries testbed's header; firewall rules are testbed's when they carry the comment `testbed`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use testbed_command::{run_step, CommandRunner, Output, Values, DEFAULT_TIMEOUT};
use testbed_plan::{Action, Address, Health, Kind, Layer, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{ActionLog, ErrorKind, LayerObservation, Provider, ProviderError, ResultExt};
use testbed_steps::{Arg, Context, Purpose, Role, Step, Where};

use crate::firewall::{self, Check, FirewallTool, NFT_TABLE, RULES};
use crate::karmadactl;
use crate::system::HostSystem;

/// Where testbed writes its kernel settings.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/60-testbed.conf";
/// The first line of [`SYSCTL_FILE`]: testbed's ownership marker.
pub const SYSCTL_HEADER: &str =
    "# managed by testbed: fs.inotify limits for the member clusters (raised, never lowered)";
/// The packages testbed installed, one per line.
pub const PACKAGES_MARKER: &str = "/var/lib/testbed/host-packages";

const OBSERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// apt and snap downloads on a slow mirror.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

/// Packages looked for when the file names none (destroy observes too).
const KNOWN_PACKAGES: [&str; 5] = ["karmadactl", "kubectl", "lxd", "incus", "snapd"];

/// What is on the search path under the name karmadactl.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Karmadactl {
    Absent,
    Release(String),
    /// Something that does not answer `karmadactl version` like a karmada release.
    Foreign {
        path: String,
        said: String,
    },
}

/// The real host layer.
pub struct HostProvider {
    runner: Arc<dyn CommandRunner>,
    pub(crate) cx: Context,
    system: HostSystem,
    /// Held while the firewall is changed: `host.firewall` and `host.nodeports` share nft's table, and
    /// whether the table goes with a rule is decided from what it holds.
    pub(crate) firewall_changes: tokio::sync::Mutex<()>,
}

pub(crate) fn precondition(message: String, hint: impl Into<String>) -> ProviderError {
    ProviderError::precondition(message).with_hint(hint)
}

fn failed(message: String, hint: impl Into<String>) -> ProviderError {
    ProviderError::failed(message).with_hint(hint)
}

pub(crate) fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

fn lits(step: &Step) -> Option<Vec<String>> {
    match step {
        Step::Run { at: Where::Host, argv, .. } => argv
            .iter()
            .map(|a| match a {
                Arg::Lit(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// What to do next when `program` is not there.
fn missing_program_hint(program: &str) -> String {
    match program {
        "apt-get" => "this host has no apt-get: install snapd, LXD (or Incus) and kubectl with its own package manager, then apply again".into(),
        "snap" => "snapd is not installed: apt-get install snapd, then apply again".into(),
        "curl" => "install curl (apt-get install curl), then apply again".into(),
        "sysctl" => "install procps, which provides sysctl (apt-get install procps), then apply again".into(),
        "iptables" | "nft" => "install iptables (apt-get install iptables) or nftables, then apply again".into(),
        "karmadactl" => "karmadactl was unpacked into /usr/local/bin, which is not on testbed's PATH: add it, then apply again".into(),
        other => format!("{other} should have come with its package; install it by hand, then apply again"),
    }
}

/// A command's failure, with the address and what to do next.
fn in_context(e: ProviderError, address: &Address, program: &str) -> ProviderError {
    let hint = match e.kind() {
        ErrorKind::Precondition if e.message().ends_with("is not installed") => Some(missing_program_hint(program)),
        ErrorKind::Failed if e.hint().is_none() => Some(match program {
            "apt-get" | "snap" => format!(
                "see the run log for {program}'s output; testbed must run as root, and another install holding the package lock (unattended-upgrades) must finish first; then apply again"
            ),
            "curl" => "check that this host reaches github.com and that [karmada] version names a published release, then apply again".into(),
            "iptables" | "nft" => "testbed must run as root to change the firewall; see the run log, then apply again".into(),
            _ => "see the run log for the command's output, then apply again".into(),
        }),
        ErrorKind::Precondition | ErrorKind::Failed | ErrorKind::Unavailable => None,
        ErrorKind::StateUnknown | ErrorKind::Interrupted => return e,
    };
    let e = e.context(address.to_string());
    match hint {
        Some(h) => e.with_hint(h),
        None => e,
    }
}

/// Writes a file the way a reader never sees half of it: a temporary file beside it, then a rename.
fn write_file(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.testbed-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn observed(address: Address, kind: Kind, owner: Owner, spec: Spec, health: Health) -> Observed {
    Observed { address, kind, member: None, owner, spec, health, in_use_by: Vec::new() }
}

/// Which of the catalogue's install steps a run needs.
#[derive(Debug, Default)]
struct InstallPlan {
    missing: BTreeSet<String>,
    lxd_from_apt: bool,
    karmadactl: bool,
}

impl InstallPlan {
    fn snaps(&self) -> bool {
        self.missing.contains("kubectl") || (self.missing.contains("lxd") && !self.lxd_from_apt)
    }

    fn apt(&self) -> bool {
        self.missing.contains("snapd")
            || self.missing.contains("incus")
            || (self.missing.contains("lxd") && self.lxd_from_apt)
    }

    /// Whether the catalogue's command for `role` is needed.
    fn needs(&self, role: &Role) -> bool {
        match role {
            Role::PackageIndex => self.apt(),
            Role::AptInstall(p) if p == "lxd" => self.missing.contains("lxd") && self.lxd_from_apt,
            Role::AptInstall(p) => self.missing.contains(p),
            Role::SnapSeeded => self.snaps(),
            Role::SnapInstall(p) if p == "lxd" => self.missing.contains("lxd") && !self.lxd_from_apt,
            Role::SnapInstall(p) => self.missing.contains(p),
            Role::DaemonReady(p) => self.missing.contains(p),
            Role::Download { .. } | Role::Unpack | Role::KarmadactlVersion => self.karmadactl,
            _ => true,
        }
    }
}

impl HostProvider {
    pub fn new(runner: Arc<dyn CommandRunner>, cx: Context, system: HostSystem) -> HostProvider {
        HostProvider { runner, cx, system, firewall_changes: tokio::sync::Mutex::new(()) }
    }

    pub fn system(&self) -> &HostSystem {
        &self.system
    }

    /// The tool the firewall is managed with: iptables when the host has it, else nft.
    pub fn firewall_tool(&self) -> Option<FirewallTool> {
        if self.system.find_program("iptables").is_some() {
            Some(FirewallTool::Iptables)
        } else if self.system.find_program("nft").is_some() {
            Some(FirewallTool::Nft)
        } else {
            None
        }
    }

    /// Whether a package's program is on the search path. LXD counts only as a real program: Ubuntu's
    /// `lxd-installer` puts shell-script stand-ins at `/usr/sbin/lxd` and `/usr/sbin/lxc` that install the
    /// snap on first use, and they stay there, ahead of `/snap/bin`, once the snap is installed (inferred
    /// from its packaging, not seen running): any real `lxd` on the path counts.
    fn present(&self, package: &str) -> bool {
        match package {
            "snapd" => self.system.find_program("snap").is_some(),
            "lxd" => self.system.find_programs("lxd").iter().any(|p| !is_script(p)),
            other => self.system.find_program(other).is_some(),
        }
    }

    pub(crate) async fn run(
        &self,
        address: &Address,
        args: Vec<String>,
        log: &ActionLog,
        timeout: Duration,
        must_succeed: bool,
    ) -> Result<Output, ProviderError> {
        let program = args.first().cloned().unwrap_or_default();
        let step = Step::Run { at: Where::Host, argv: args.into_iter().map(Arg::Lit).collect(), role: Role::Plain };
        run_step(&*self.runner, &step, &Values::new(), log, timeout, must_succeed)
            .await
            .map_err(|e| in_context(e, address, &program))
    }

    async fn karmadactl(&self) -> Result<Karmadactl, ProviderError> {
        let Some(path) = self.system.find_program("karmadactl") else { return Ok(Karmadactl::Absent) };
        let out = self
            .runner
            .run(&Where::Host, &argv(&["karmadactl", "version"]), OBSERVE_TIMEOUT)
            .await
            .context(ErrorKind::Failed, "host.packages")?;
        let path = path.display().to_string();
        Ok(match (out.success(), karmadactl::parse_version(&out.stdout)) {
            (true, Some(v)) => Karmadactl::Release(v),
            _ => Karmadactl::Foreign { path, said: out.last_line().chars().take(120).collect() },
        })
    }

    fn marker_packages(&self) -> BTreeSet<String> {
        std::fs::read_to_string(self.system.path(PACKAGES_MARKER))
            .map(|t| {
                t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
            })
            .unwrap_or_default()
    }

    async fn observe_packages(&self, wanted: Option<&Resource>) -> Result<Option<Observed>, ProviderError> {
        let order: Vec<String> = wanted
            .and_then(|r| r.spec.get("packages"))
            .map(|s| list(s))
            .unwrap_or_else(|| KNOWN_PACKAGES.iter().map(|s| s.to_string()).collect());
        let present: Vec<&str> = order.iter().map(String::as_str).filter(|p| self.present(p)).collect();
        if present.is_empty() {
            return Ok(None);
        }
        let mut spec = Spec::new();
        spec.insert("packages".into(), present.join(","));
        if present.contains(&"karmadactl") {
            let v = match self.karmadactl().await? {
                Karmadactl::Release(v) => v,
                // Not a release: the plan shows it, and apply refuses to overwrite it.
                Karmadactl::Foreign { .. } | Karmadactl::Absent => "unknown".into(),
            };
            spec.insert("karmadactl.version".into(), v);
        }
        let mine = self.marker_packages();
        let owner = if present.iter().any(|p| mine.contains(*p)) {
            Owner::Testbed
        } else {
            Owner::Other(format!("packages {} were installed by someone else", present.join(", ")))
        };
        let address = Address::new(Kind::HostPackages, &["packages"]);
        Ok(Some(observed(address, Kind::HostPackages, owner, spec, Health::Ok)))
    }

    fn observe_sysctl(&self, wanted: Option<&Resource>) -> Observed {
        let keys: Vec<String> = wanted
            .map(|r| r.spec.keys().cloned().collect())
            .unwrap_or_else(|| vec!["fs.inotify.max_user_instances".into(), "fs.inotify.max_user_watches".into()]);
        let spec: Spec = keys.into_iter().filter_map(|k| self.system.sysctl(&k).map(|v| (k, v))).collect();
        let owner = match std::fs::read_to_string(self.system.path(SYSCTL_FILE)) {
            Ok(t) if t.starts_with("# managed by testbed") => Owner::Testbed,
            Ok(_) => Owner::Other(format!("{SYSCTL_FILE} exists but testbed did not write it")),
            Err(_) => Owner::Other(format!("kernel settings in force were not written by testbed (no {SYSCTL_FILE})")),
        };
        observed(Address::new(Kind::HostSysctl, &["sysctl"]), Kind::HostSysctl, owner, spec, Health::Ok)
    }

    /// Runs a read-only firewall query; a refusal (not root) makes the layer unobservable, with the fix.
    pub(crate) async fn query(&self, args: &[&str]) -> Result<Output, ProviderError> {
        self.runner.run(&Where::Host, &argv(args), OBSERVE_TIMEOUT).await.map_err(|e| {
            ProviderError::state_unknown("host.firewall").with_hint(missing_program_hint(args[0])).caused_by(e)
        })
    }

    /// The firewall is there but cannot be read (not root): the plan must not guess.
    pub(crate) fn unreadable(args: &[String], out: &Output) -> ProviderError {
        ProviderError::state_unknown(format!(
            "host.firewall: cannot read the firewall: `{}` exited {}: {}",
            args.join(" "),
            out.code,
            out.last_line()
        ))
        .with_hint("run testbed as root (sudo): reading and changing firewall rules needs it")
    }

    async fn observe_firewall(&self, wanted: Option<&Resource>) -> Result<Option<Observed>, ProviderError> {
        let want = wanted.and_then(|r| r.spec.get("bridge")).cloned();
        let address = Address::new(Kind::HostFirewall, &["firewall"]);
        let found = |bridge: &str, present: usize| {
            let health = if present == RULES.len() {
                Health::Ok
            } else {
                Health::NeedsRepair(format!(
                    "{} of {} rules for bridge {bridge} are missing; they will be added",
                    RULES.len() - present,
                    RULES.len()
                ))
            };
            let spec: Spec = [("bridge".to_owned(), bridge.to_owned())].into_iter().collect();
            observed(address.clone(), Kind::HostFirewall, Owner::Testbed, spec, health)
        };
        match self.firewall_tool() {
            None => Ok(None),
            Some(FirewallTool::Iptables) => {
                if let Some(w) = &want {
                    let mut present = 0;
                    for (chain, dir) in RULES {
                        let args = firewall::iptables_rule("-C", chain, dir, w, Some(&self.cx.firewall_comment));
                        let out = self.query(&args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
                        match firewall::classify_check(&out) {
                            Check::Present => present += 1,
                            Check::Absent => {}
                            Check::Unknown => return Err(Self::unreadable(&args, &out)),
                        }
                    }
                    if present > 0 {
                        return Ok(Some(found(w, present)));
                    }
                    // Rules someone else added for the bridge (without testbed's comment) are used as they are.
                    let mut foreign = 0;
                    for (chain, dir) in RULES {
                        let args = firewall::iptables_rule("-C", chain, dir, w, None);
                        let out = self.query(&args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
                        if firewall::classify_check(&out) == Check::Present {
                            foreign += 1;
                        }
                    }
                    if foreign == RULES.len() {
                        let spec: Spec = [("bridge".to_owned(), w.clone())].into_iter().collect();
                        let owner = Owner::Other(format!(
                            "forwarding rules for bridge {w} that testbed did not add (no {} comment on the rules)",
                            self.cx.firewall_comment
                        ));
                        return Ok(Some(observed(address, Kind::HostFirewall, owner, spec, Health::Ok)));
                    }
                }
                // testbed's rules for another bridge (the file's bridge changed, or nothing is wanted).
                let args = argv(&["iptables", "-S", "FORWARD"]);
                let out = self.query(&["iptables", "-S", "FORWARD"]).await?;
                if !out.success() {
                    return Err(Self::unreadable(&args, &out));
                }
                // Another testbed's rules (another comment) are not this one's.
                Ok(firewall::commented_bridges(&out.stdout, &self.cx.firewall_comment)
                    .first()
                    .map(|b| found(b, RULES.len())))
            }
            Some(FirewallTool::Nft) => {
                let Some(table) = self.nft_table().await? else { return Ok(None) };
                let rules = table.forwarding;
                let mine: Vec<_> =
                    rules.iter().filter(|r| r.carries(&self.cx.firewall_comment) && r.as_pair().is_some()).collect();
                if let Some(w) = &want {
                    let present: BTreeSet<_> =
                        mine.iter().filter(|r| &r.bridge == w).filter_map(|r| r.as_pair()).collect();
                    if !present.is_empty() {
                        return Ok(Some(found(w, present.len())));
                    }
                }
                Ok(mine.first().map(|r| found(&r.bridge, RULES.len())))
            }
        }
    }

    /// What `table inet testbed` holds, or `None` when the table does not exist.
    pub(crate) async fn nft_table(&self) -> Result<Option<firewall::NftTable>, ProviderError> {
        let args = argv(&["nft", "-j", "list", "table", "inet", NFT_TABLE]);
        let out = self.query(&["nft", "-j", "list", "table", "inet", NFT_TABLE]).await?;
        if firewall::nft_table_absent(&out) {
            return Ok(None);
        }
        if !out.success() {
            return Err(Self::unreadable(&args, &out));
        }
        firewall::parse_nft_table(&out.stdout)
            .map(Some)
            .map_err(|e| ProviderError::failed(format!("host.firewall: {e}")))
    }

    async fn apply_packages(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &a.address;
        let r = a.desired.as_ref().ok_or_else(|| ProviderError::failed(format!("{address}: no desired settings")))?;
        let wanted = list(r.spec.get("packages").map(String::as_str).unwrap_or(""));
        let version = r.spec.get("karmadactl.version").cloned().unwrap_or_else(|| self.cx.karmada_version.clone());
        let distro = self.system.distribution();
        let mut plan = InstallPlan { lxd_from_apt: distro.lxd_from_apt(), ..Default::default() };
        for p in &wanted {
            if !self.present(p) {
                plan.missing.insert(p.clone());
            }
        }
        if wanted.iter().any(|p| p == "karmadactl") {
            plan.karmadactl = match self.karmadactl().await? {
                Karmadactl::Absent => true,
                Karmadactl::Release(v) => v != version,
                Karmadactl::Foreign { path, said } => {
                    return Err(precondition(
                        format!("{address}: {path} is not karmadactl as karmada-io releases it: `karmadactl version` printed {said:?}"),
                        format!("remove or rename {path} (testbed installs karmadactl {version} into /usr/local/bin), then apply again"),
                    ));
                }
            };
        }
        let present: Vec<&str> = wanted.iter().map(String::as_str).filter(|p| !plan.missing.contains(*p)).collect();
        if !present.is_empty() {
            log.note(format!("already installed: {}", present.join(", ")));
        }
        if plan.apt() && self.system.find_program("apt-get").is_none() {
            let names: Vec<&str> = plan.missing.iter().map(String::as_str).collect();
            return Err(precondition(
                format!(
                    "{address}: {} must be installed, and this host ({}) has no apt-get",
                    names.join(", "),
                    distro.pretty
                ),
                missing_program_hint("apt-get"),
            ));
        }
        let arch = if plan.karmadactl {
            let Some(arch) = karmadactl::release_arch(self.system.arch()) else {
                return Err(precondition(
                    format!(
                        "{address}: karmada-io publishes karmadactl for linux amd64 and arm64, not {}",
                        self.system.arch()
                    ),
                    "build karmadactl for this machine, put it on PATH, then apply again",
                ));
            };
            if self.system.find_program("curl").is_none() {
                return Err(precondition(
                    format!("{address}: curl is not installed; karmadactl is downloaded with it"),
                    missing_program_hint("curl"),
                ));
            }
            arch
        } else {
            "amd64"
        };
        let for_arch = |s: &str| s.replace("linux-amd64", &format!("linux-{arch}"));

        let mut installed: Vec<String> = Vec::new();
        let mut archive: Option<String> = None;
        for step in testbed_steps::steps(a, &self.cx) {
            match &step {
                Step::Run { role, .. } => {
                    let Some(args) = lits(&step) else { continue };
                    if !plan.needs(role) {
                        continue;
                    }
                    let args: Vec<String> = args.iter().map(|s| for_arch(s)).collect();
                    match role {
                        Role::Download { file } => {
                            let file = for_arch(file);
                            if let Some(dir) = Path::new(&file).parent() {
                                std::fs::create_dir_all(self.system.path(&dir.to_string_lossy())).map_err(|e| {
                                    failed(
                                        format!("{address}: cannot create {}", dir.display()),
                                        "testbed must run as root; then apply again",
                                    )
                                    .caused_by(e)
                                })?;
                            }
                            self.run(address, args.clone(), log, INSTALL_TIMEOUT, true).await?;
                            archive = Some(file);
                        }
                        Role::Unpack if archive.is_none() => {
                            return Err(ProviderError::failed(format!(
                                "{address}: the catalogue unpacks before it downloads"
                            )));
                        }
                        Role::KarmadactlVersion => {
                            let out = self.run(address, args.clone(), log, OBSERVE_TIMEOUT, true).await?;
                            let got = karmadactl::parse_version(&out.stdout);
                            if got.as_deref() != Some(version.as_str()) {
                                let which = self
                                    .system
                                    .find_program("karmadactl")
                                    .map(|p| p.display().to_string())
                                    .unwrap_or_default();
                                return Err(failed(
                                    format!(
                                        "{address}: after installing karmadactl {version} into /usr/local/bin, `karmadactl version` reports {} ({which})",
                                        got.as_deref().unwrap_or("no karmada version")
                                    ),
                                    format!("another karmadactl comes first on PATH: remove {which} or put /usr/local/bin first, then apply again"),
                                ));
                            }
                            installed.push("karmadactl".into());
                        }
                        _ => {
                            let timeout = match role {
                                Role::PackageIndex | Role::AptInstall(_) | Role::SnapSeeded | Role::SnapInstall(_) => {
                                    INSTALL_TIMEOUT
                                }
                                _ => DEFAULT_TIMEOUT,
                            };
                            self.run(address, args.clone(), log, timeout, true).await?;
                            if let Role::AptInstall(pkg) | Role::SnapInstall(pkg) = role {
                                installed.push(pkg.clone());
                            }
                        }
                    }
                }
                Step::Call { purpose: Purpose::ReleaseChecksum { url: path }, .. } => {
                    if !plan.karmadactl {
                        continue;
                    }
                    let Some(file) = archive.clone() else {
                        return Err(ProviderError::failed(format!(
                            "{address}: the catalogue checks a checksum before it downloads"
                        )));
                    };
                    self.verify_archive(address, &for_arch(path), &file, &version, log).await?;
                }
                Step::Write { path, .. } if path == PACKAGES_MARKER => {
                    if installed.is_empty() {
                        continue;
                    }
                    let mut all = self.marker_packages();
                    all.extend(installed.iter().cloned());
                    let mut text = String::from("# host packages testbed installed (it never removes them)\n");
                    for p in &all {
                        text.push_str(p);
                        text.push('\n');
                    }
                    write_file(&self.system.path(PACKAGES_MARKER), &text, 0o644).map_err(|e| {
                        failed(
                            format!("{address}: cannot write {PACKAGES_MARKER}"),
                            "testbed must run as root; then apply again",
                        )
                        .caused_by(e)
                    })?;
                    log.note(format!("wrote {PACKAGES_MARKER}: {}", installed.join(", ")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Compares the downloaded archive's SHA-256 with the one the release publishes beside it
    /// (`<asset>.sha256`); on a mismatch the archive is removed and nothing is unpacked.
    async fn verify_archive(
        &self,
        address: &Address,
        url: &str,
        file: &str,
        version: &str,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        let asset = url.rsplit('/').next().unwrap_or(url).trim_end_matches(".sha256").to_owned();
        let out = self.run(address, argv(&["curl", "-fsSL", url]), log, DEFAULT_TIMEOUT, true).await?;
        let expected = karmadactl::parse_checksum(&out.stdout, &asset).map_err(|e| {
            failed(
                format!("{address}: {url}: {e}"),
                "check that [karmada] version names a published release, then apply again",
            )
        })?;
        let local = self.system.path(file);
        let actual = karmadactl::sha256_of(&local).map_err(|e| {
            failed(format!("{address}: cannot read the downloaded {file}"), "apply again to download it afresh")
                .caused_by(e)
        })?;
        if actual != expected {
            let _ = std::fs::remove_file(&local);
            return Err(failed(
                format!(
                    "{address}: the downloaded {asset} has SHA-256 {actual}, but karmada-io publishes {expected} for {version}; it was deleted and nothing was installed"
                ),
                "the download was damaged or altered on the way: apply again to download it afresh; if it keeps happening, check the network path to github.com",
            ));
        }
        log.note(format!("SHA-256 of {asset} matches the release's published checksum ({expected})"));
        Ok(())
    }

    async fn apply_sysctl(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &a.address;
        let mut lines = vec![SYSCTL_HEADER.to_owned()];
        for step in testbed_steps::steps(a, &self.cx) {
            match &step {
                Step::Run { role, .. } => {
                    let Some(args) = lits(&step) else { continue };
                    let Role::KernelLimit { key, value: want } = role else {
                        self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                        continue;
                    };
                    let have = self.system.sysctl(key);
                    if Kind::HostSysctl.satisfied(want, have.as_deref()) {
                        let have = have.unwrap_or_default();
                        log.note(format!("{key} is {have}, at least {want}: kept"));
                        lines.push(format!("{key} = {have}"));
                    } else {
                        self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                        lines.push(format!("{key} = {want}"));
                    }
                }
                Step::Write { path, mode, .. } => {
                    let text = lines.join("\n") + "\n";
                    write_file(&self.system.path(path), &text, *mode).map_err(|e| {
                        failed(format!("{address}: cannot write {path}"), "testbed must run as root; then apply again")
                            .caused_by(e)
                    })?;
                    log.note(format!("wrote {path}"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn apply_firewall(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &a.address;
        let _one_at_a_time = self.firewall_changes.lock().await;
        match self.firewall_tool() {
            None => Err(precondition(
                format!("{address}: neither iptables nor nft is installed, so the bridge's forwarding rules cannot be added"),
                missing_program_hint("iptables"),
            )),
            Some(FirewallTool::Nft) => self.apply_nft(a, log).await,
            Some(FirewallTool::Iptables) => {
                // Each -I only when the -C before it found nothing.
                let mut absent = false;
                for step in testbed_steps::steps(a, &self.cx) {
                    let Some(args) = lits(&step) else { continue };
                    match step.role() {
                        Role::RuleCheck => {
                            let out = self.run(address, args.clone(), log, DEFAULT_TIMEOUT, false).await?;
                            absent = match firewall::classify_check(&out) {
                                Check::Present => false,
                                Check::Absent => true,
                                Check::Unknown => {
                                    return Err(failed(
                                        format!("{address}: `{}` exited {}: {}", args.join(" "), out.code, out.last_line()),
                                        "testbed must run as root to change the firewall; then apply again",
                                    ))
                                }
                            };
                        }
                        Role::RuleInsert => {
                            if absent {
                                self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                            }
                            absent = false;
                        }
                        Role::RuleDelete => {
                            let out = self.run(address, args.clone(), log, DEFAULT_TIMEOUT, false).await?;
                            if !out.success() && !firewall::absent_message(&out.stderr) {
                                return Err(failed(
                                    format!("{address}: `{}` exited {}: {}", args.join(" "), out.code, out.last_line()),
                                    "testbed must run as root to change the firewall; then apply again",
                                ));
                            }
                        }
                        _ => {
                            self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Deletes `rules` from `table inet testbed`, by handle.
    async fn delete_nft_rules(
        &self,
        address: &Address,
        rules: impl Iterator<Item = &firewall::NftRule>,
        log: &ActionLog,
    ) -> Result<(), ProviderError> {
        for r in rules {
            let handle = r.handle.to_string();
            let args = argv(&["nft", "delete", "rule", "inet", NFT_TABLE, &r.chain, "handle", &handle]);
            self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
        }
        Ok(())
    }

    /// The catalogue's rules on a host with only nft: testbed's own table `inet testbed`.
    async fn apply_nft(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &a.address;
        let want = a.desired.as_ref().and_then(|r| r.spec.get("bridge")).cloned().filter(|_| a.op != Op::Delete);
        let table = self.nft_table().await?;
        log.note("this host has nft and no iptables: the rules go into table inet testbed");
        let mine = |r: &&firewall::NftRule| r.carries(&self.cx.firewall_comment) && r.as_pair().is_some();
        let Some(want) = want else {
            let Some(table) = table else { return Ok(()) };
            let rules = table.forwarding;
            // The table is shared by every testbed on the host, and by this one's NodePort rule: it goes
            // only with its last rule.
            let others = table.rules > rules.iter().filter(mine).count();
            if !others {
                self.run(address, argv(&["nft", "delete", "table", "inet", NFT_TABLE]), log, DEFAULT_TIMEOUT, true)
                    .await?;
                return Ok(());
            }
            return self.delete_nft_rules(address, rules.iter().filter(mine), log).await;
        };
        let rules = table.map(|t| t.forwarding).unwrap_or_default();
        self.delete_nft_rules(address, rules.iter().filter(mine).filter(|r| r.bridge != want), log).await?;
        let missing: Vec<(&str, &str)> = RULES
            .into_iter()
            .filter(|pair| {
                !rules
                    .iter()
                    .any(|r| r.carries(&self.cx.firewall_comment) && r.bridge == want && r.as_pair() == Some(*pair))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.run(address, argv(&["nft", "add", "table", "inet", NFT_TABLE]), log, DEFAULT_TIMEOUT, true).await?;
        for (chain, hook) in [("input", "input"), ("forward", "forward")] {
            let body = format!("{{ type filter hook {hook} priority 0 ; policy accept ; }}");
            self.run(
                address,
                argv(&["nft", "add", "chain", "inet", NFT_TABLE, chain, &body]),
                log,
                DEFAULT_TIMEOUT,
                true,
            )
            .await?;
        }
        let quoted = format!("\"{want}\"");
        let comment = format!("\"{}\"", self.cx.firewall_comment);
        for (chain, dir) in missing {
            let (c, key) = firewall::nft_names(chain, dir);
            self.run(
                address,
                argv(&["nft", "add", "rule", "inet", NFT_TABLE, c, key, &quoted, "accept", "comment", &comment]),
                log,
                DEFAULT_TIMEOUT,
                true,
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether a program is a script (`#!`) rather than a binary.
fn is_script(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"#!"
}

#[async_trait]
impl Provider for HostProvider {
    fn layer(&self) -> Layer {
        Layer::Host
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        let of = |k: Kind| wanted.iter().find(|r| r.kind == k);
        let mut out = LayerObservation::default();
        if let Some(p) = self.observe_packages(of(Kind::HostPackages)).await? {
            out.resources.push(p);
        }
        out.resources.push(self.observe_sysctl(of(Kind::HostSysctl)));
        if let Some(f) = self.observe_firewall(of(Kind::HostFirewall)).await? {
            out.resources.push(f);
        }
        if let Some(n) = self.observe_node_ports(of(Kind::HostNodeports)).await? {
            out.resources.push(n);
        }
        Ok(out)
    }

    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        match (action.kind, action.op) {
            (Kind::HostPackages | Kind::HostSysctl, Op::Delete) => Err(precondition(
                format!(
                    "{}: testbed leaves host packages and kernel settings in place; it never removes them",
                    action.address
                ),
                "remove them yourself if nothing else on the host needs them",
            )),
            (Kind::HostPackages, _) => self.apply_packages(action, log).await,
            (Kind::HostSysctl, _) => self.apply_sysctl(action, log).await,
            (Kind::HostFirewall, _) => self.apply_firewall(action, log).await,
            (Kind::HostNodeports, _) => self.apply_node_ports(action, log).await,
            (other, _) => Err(ProviderError::failed(format!("the host layer does not handle {other:?} resources"))),
        }
    }
}
