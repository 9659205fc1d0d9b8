//! Images side-loaded into members' MicroK8s (`sideload.MEMBER.NAME`): an image that is in no registry,
//! given as a docker-archive (`docker save`) or OCI tar, pushed into the member's container through LXD's
//! file API and imported with `microk8s images import`.
//!
//! - **Observed** by listing the member's images (`microk8s ctr images ls -q`: containerd's names, such as
//!   `docker.io/library/flask-demo:2.0`), in every member that has a wanted or a recorded side-load and whose
//!   container runs. A container without MicroK8s holds no images. A listing that fails leaves the layer's
//!   state unknown: guessing "missing" would import over what is there.
//! - **Owned** through the record ([`crate::record`]): what testbed imported, with the identity of the
//!   container it imported into (LXD `volatile.uuid`). An image of the file's that is in the member but not in
//!   the record is someone else's (a conflict in the plan: testbed never replaces what it did not make); one
//!   recorded for an older container of the same name went with that container.
//! - **Applied** with exactly the catalogue's steps (`testbed_steps::steps`, what `--dry-run` prints): make
//!   the directory, push the archive (0600), import it, remove the tar; delete is `microk8s ctr images rm`.
//!   Every command is an argument vector; nothing is handed to a shell. After the import the member's images
//!   are listed again: an archive that does not hold the file's `source` is an error naming what it holds.
//!
//! Only archives are side-loaded: a `source` without `archive` (an image to fetch from a registry first) is
//! refused with a hint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use testbed_command::{run_step, CommandError, Values};
use testbed_plan::{Action, Address, Kind, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{ActionLog, ContainerFacts, ErrorKind, ProviderError};
use testbed_steps::{Purpose, Step, Where};

use crate::provider::RegistryProvider;
use crate::record::{Contents, SideloadedImage};

/// How long listing a member's images may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an import may take (a large archive into a busy containerd).
const IMPORT_TIMEOUT: Duration = Duration::from_secs(900);
/// The other commands: `mkdir`, `rm`, `microk8s ctr images rm`.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// The mode of the pushed archive.
const ARCHIVE_MODE: u32 = 0o600;

pub(crate) use testbed_steps::containerd_name;

fn address(member: &str, name: &str) -> Address {
    Address::new(Kind::Sideload, &[member, name])
}

fn recorded_spec(img: &SideloadedImage) -> Spec {
    let mut spec = Spec::from([("source".to_owned(), img.source.clone())]);
    if let Some(a) = &img.archive {
        spec.insert("archive".into(), a.clone());
    }
    spec
}

/// The member's containers as the LXD layer sees them; none without an LXD daemon.
async fn containers(p: &RegistryProvider) -> Result<Vec<ContainerFacts>, ProviderError> {
    let Some(view) = &p.containers else { return Ok(Vec::new()) };
    match view.containers().await {
        Ok(facts) => Ok(facts),
        // No LXD daemon (not installed yet on a fresh host): no containers, so nothing side-loaded in them.
        Err(e) if e.kind() == ErrorKind::Unavailable => Ok(Vec::new()),
        Err(e) => {
            let hint = e.hint().unwrap_or("check that the LXD daemon runs (lxc list)").to_owned();
            Err(ProviderError::state_unknown("cannot see the member containers to list their side-loaded images")
                .with_hint(hint)
                .caused_by(e))
        }
    }
}

/// Why listing a member's images failed.
enum ListError {
    /// `microk8s` is not in the container: it holds no images.
    NoMicrok8s,
    Failed(String),
}

/// The names `microk8s ctr images ls -q` lists in `member`.
async fn list(p: &RegistryProvider, member: &str, log: Option<&ActionLog>) -> Result<BTreeSet<String>, ListError> {
    let argv: Vec<String> = ["microk8s", "ctr", "images", "ls", "-q"].iter().map(|s| s.to_string()).collect();
    if let Some(log) = log {
        let mut shown = vec![format!("{member}$")];
        shown.extend(argv.iter().cloned());
        log.command(&shown);
    }
    let out = match p.runner.run(&Where::Member(member.to_owned()), &argv, LIST_TIMEOUT).await {
        Ok(out) => out,
        Err(CommandError::NotFound { .. }) => return Err(ListError::NoMicrok8s),
        Err(e) => return Err(ListError::Failed(e.to_string())),
    };
    // LXD (and a shell) report a program they could not find as 127.
    if out.code == 127 {
        return Err(ListError::NoMicrok8s);
    }
    if !out.success() {
        return Err(ListError::Failed(format!(
            "`microk8s ctr images ls -q` failed in {member} (exit code {}): {}",
            out.code,
            out.last_line()
        )));
    }
    Ok(out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

pub(crate) async fn observe(
    p: &RegistryProvider,
    wanted: &[&Resource],
    record: &Contents,
) -> Result<Vec<Observed>, ProviderError> {
    let mut members: BTreeSet<String> = wanted.iter().filter_map(|r| r.member.clone()).collect();
    members.extend(record.sideloads.iter().filter(|(_, imgs)| !imgs.is_empty()).map(|(m, _)| m.clone()));
    if members.is_empty() || p.containers.is_none() {
        return Ok(Vec::new());
    }
    let facts = containers(p).await?;
    let running: Vec<&ContainerFacts> = facts.iter().filter(|c| c.running && members.contains(&c.name)).collect();
    let listings = futures_util::future::join_all(running.iter().map(|c| list(p, &c.name, None))).await;

    let mut out = Vec::new();
    // A stopped container cannot be asked, but its disk keeps containerd's images: what testbed imported
    // into this very container is taken from the record.
    for c in facts.iter().filter(|c| !c.running && members.contains(&c.name)) {
        for (name, img) in record.sideloads.get(&c.name).into_iter().flatten() {
            if img.container == c.identity {
                let o = Observed::new(
                    address(&c.name, name),
                    Kind::Sideload,
                    Some(&c.name),
                    Owner::Testbed,
                    recorded_spec(img),
                );
                out.push(o);
            }
        }
    }
    for (c, listing) in running.into_iter().zip(listings) {
        let m = c.name.as_str();
        let images = match listing {
            Ok(images) => images,
            Err(ListError::NoMicrok8s) => continue,
            Err(ListError::Failed(why)) => {
                return Err(ProviderError::state_unknown(format!("cannot list the images in {m}'s MicroK8s: {why}")).with_hint(format!(
                        "check MicroK8s in {m} (`lxc exec {m} -- microk8s status`; `microk8s start` if it is stopped), then plan again"
                    )));
            }
        };
        let mine = record.sideloads.get(m);
        // What testbed imported into this very container and is still there.
        for (name, img) in mine.into_iter().flatten() {
            if img.container == c.identity && images.contains(&containerd_name(&img.source)) {
                out.push(Observed::new(address(m, name), Kind::Sideload, Some(m), Owner::Testbed, recorded_spec(img)));
            }
        }
        // The file's images that are there although testbed did not import them.
        for r in wanted.iter().filter(|r| r.member.as_deref() == Some(m)) {
            if mine.is_some_and(|imgs| imgs.contains_key(&r.name)) {
                continue;
            }
            let source = r.spec.get("source").map(String::as_str).unwrap_or_default();
            let name = containerd_name(source);
            if images.contains(&name) {
                let owner = Owner::Other(format!("{name} is already in {m}'s MicroK8s, and testbed did not import it"));
                out.push(Observed::new(r.address.clone(), Kind::Sideload, Some(m), owner, r.spec.clone()));
            }
        }
    }
    Ok(out)
}

/// One lock per member (and record): imports into one containerd run one after another, so that the names an
/// import added are told apart from another import's.
fn member_lock(p: &RegistryProvider, member: &str) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = Mutex<BTreeMap<(PathBuf, String), Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut locks = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    locks.entry((p.record.path().to_path_buf(), member.to_owned())).or_default().clone()
}

fn precondition(message: String, hint: impl Into<String>) -> ProviderError {
    ProviderError::precondition(message).with_hint(hint)
}

fn failed(message: String, hint: impl Into<String>) -> ProviderError {
    ProviderError::failed(message).with_hint(hint)
}

/// The action as the catalogue's delete (or create) of the same resource.
fn as_op(action: &Action, op: Op) -> Action {
    let mut a = action.clone();
    a.op = op;
    a
}

pub(crate) async fn apply(p: &RegistryProvider, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
    let internal = |what: &str| ProviderError::failed(format!("{}: {what} (an internal error)", action.address));
    let member = action.member.clone().ok_or_else(|| internal("a side-load without a member"))?;
    let name = action
        .address
        .as_str()
        .strip_prefix(&format!("sideload.{member}."))
        .ok_or_else(|| internal("a side-load address that is not sideload.MEMBER.NAME"))?
        .to_owned();
    if let Some(Owner::Other(found)) = action.observed.as_ref().map(|o| &o.owner) {
        return Err(precondition(
            format!(
                "refusing to {} {}: {found}; testbed changes only what it imported",
                action.op.name(),
                action.address
            ),
            format!(
                "remove it yourself (`lxc exec {member} -- microk8s ctr images rm ...`) if testbed should import it"
            ),
        ));
    }
    if !action.runs() {
        // Deleted with its container: only the record is left to forget.
        return forget(p, &member, &name);
    }
    let lock = member_lock(p, &member);
    let _one_at_a_time = lock.lock().await;
    match action.op {
        Op::Delete => remove(p, action, &member, &name, true, log).await,
        Op::Create | Op::Update | Op::Replace => {
            let desired = action.desired.as_ref().ok_or_else(|| internal("no desired settings"))?;
            // The archive is read first: a missing file changes nothing.
            let (path, bytes) = read_archive(p, action, &member, desired).await?;
            if action.op != Op::Create {
                remove(p, &as_op(action, Op::Delete), &member, &name, false, log).await?;
            }
            import(p, action, &member, &name, desired, &path, bytes, log).await
        }
    }
}

async fn read_archive(
    p: &RegistryProvider,
    action: &Action,
    member: &str,
    desired: &Resource,
) -> Result<(PathBuf, Vec<u8>), ProviderError> {
    let source = desired.spec.get("source").map(String::as_str).unwrap_or_default();
    let Some(archive) = desired.spec.get("archive").filter(|a| !a.is_empty()) else {
        return Err(precondition(
            format!(
                "{}: side-loading {source} from a registry reference without an archive is not supported yet",
                action.address
            ),
            format!(
                "give the image's `archive` in the file: a docker-archive (`docker save {source} -o FILE.tar`) or OCI tar; or copy it into the local registry instead (without `sideload`)"
            ),
        ));
    };
    let path = {
        let a = std::path::Path::new(archive);
        if a.is_absolute() {
            a.to_path_buf()
        } else {
            p.base_dir.join(a)
        }
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(precondition(
            format!("{}: the archive {} does not exist", action.address, path.display()),
            format!(
                "write it (`docker save {source} -o {}`), or fix `archive` (relative to the file's directory) before side-loading it into {member}",
                path.display()
            ),
        )),
        Err(e) => Err(failed(
            format!("{}: cannot read the archive {}", action.address, path.display()),
            "check the file's permissions",
        )
        .caused_by(e)),
    }
}

/// The member's container, running; `Ok(None)` when it does not exist.
async fn container(p: &RegistryProvider, member: &str) -> Result<Option<ContainerFacts>, ProviderError> {
    if p.containers.is_none() {
        return Err(ProviderError::precondition(format!(
            "the registry layer cannot see the member containers, so it cannot side-load into {member}"
        ))
        .with_hint("run the LXD layer for real to side-load images"));
    }
    let facts = containers(p).await?;
    Ok(facts.into_iter().find(|c| c.name == member))
}

fn require_running(action: &Action, member: &str, c: Option<ContainerFacts>) -> Result<ContainerFacts, ProviderError> {
    match c {
        None => Err(precondition(
            format!("{}: container {member} does not exist", action.address),
            format!("apply lxd_instance.{member} first"),
        )),
        Some(c) if !c.running => Err(precondition(
            format!("{}: container {member} is stopped", action.address),
            format!("start it (`lxc start {member}`) or apply lxd_instance.{member}, then apply again"),
        )),
        Some(c) => Ok(c),
    }
}

async fn list_for(
    p: &RegistryProvider,
    action: &Action,
    member: &str,
    log: &ActionLog,
) -> Result<BTreeSet<String>, ProviderError> {
    match list(p, member, Some(log)).await {
        Ok(images) => Ok(images),
        Err(ListError::NoMicrok8s) => Err(precondition(
            format!("{}: MicroK8s is not installed in {member}", action.address),
            format!("apply microk8s.{member} first (run testbed apply again: it observes afresh)"),
        )),
        Err(ListError::Failed(why)) => Err(failed(
            format!("{}: {why}", action.address),
            format!("check MicroK8s in {member} (`lxc exec {member} -- microk8s status`), then apply again"),
        )),
    }
}

fn forget(p: &RegistryProvider, member: &str, name: &str) -> Result<(), ProviderError> {
    p.record
        .update(|c| {
            if let Some(imgs) = c.sideloads.get_mut(member) {
                imgs.remove(name);
                if imgs.is_empty() {
                    c.sideloads.remove(member);
                }
            }
        })
        .map_err(ProviderError::failed)
}

/// Runs one command step of the catalogue.
async fn run(p: &RegistryProvider, action: &Action, step: &Step, log: &ActionLog) -> Result<(), ProviderError> {
    let Step::Run { role, .. } = step else {
        return Err(ProviderError::failed(format!(
            "{}: `{step}` is not a command (an internal error)",
            action.address
        )));
    };
    let import = role == &testbed_steps::Role::ImageImport;
    let timeout = if import { IMPORT_TIMEOUT } else { STEP_TIMEOUT };
    let out = run_step(p.runner.as_ref(), step, &Values::new(), log, timeout, true)
        .await
        .map_err(|e| e.context(action.address.to_string()))?;
    if import {
        import_failed(&out).map_err(|e| e.context(action.address.to_string()))?;
    }
    Ok(())
}

/// `microk8s images import` prints "Failed to import images on ..." or "Failed to reach ..." and still exits
/// 0 (canonical/microk8s scripts/wrappers/distributed_op.py): that is a failure, quoting the line.
fn import_failed(out: &testbed_command::Output) -> Result<(), ProviderError> {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    match text.lines().map(str::trim).find(|l| l.starts_with("Failed to import") || l.starts_with("Failed to reach")) {
        Some(line) => Err(ProviderError::failed(format!("`microk8s images import` exited 0 but failed: {line}")).with_hint("archives made by skopeo can fail to import; one made with `docker save` works (microk8s #4460); see the run log for its output, then apply again")),
        None => Ok(()),
    }
}

/// Removes the image testbed imported (the catalogue's delete): `strict` for a delete of its own (refused
/// when testbed did not import it), not for the first half of an update or replace.
async fn remove(
    p: &RegistryProvider,
    action: &Action,
    member: &str,
    name: &str,
    strict: bool,
    log: &ActionLog,
) -> Result<(), ProviderError> {
    let record = p.record.read().map_err(|e| {
        ProviderError::state_unknown(format!("{}: testbed's registry record cannot be read: {e}", action.address))
            .with_hint(format!("fix or remove {}", p.record.path().display()))
    })?;
    let Some(owned) = record.sideloads.get(member).and_then(|m| m.get(name)).cloned() else {
        if !strict {
            log.note(format!("testbed imported no image as {} before: nothing to remove", action.address));
            return Ok(());
        }
        let source = action.observed.as_ref().and_then(|o| o.spec.get("source")).cloned().unwrap_or_default();
        return Err(failed(
            format!(
                "{}: {} in {member}'s MicroK8s was not imported by testbed; left alone",
                action.address,
                containerd_name(&source)
            ),
            "nothing to do: testbed removes only images it imported",
        ));
    };
    let Some(c) = container(p, member).await? else {
        log.note(format!("container {member} is gone, and the image testbed imported with it"));
        return forget(p, member, name);
    };
    if c.identity != owned.container {
        log.note(format!(
            "container {member} was re-created since testbed imported {}: that image went with the old container",
            owned.source
        ));
        return forget(p, member, name);
    }
    let c = require_running(action, member, Some(c))?;
    let image = containerd_name(&owned.source);
    let images = list_for(p, action, &c.name, log).await?;
    if !images.contains(&image) {
        log.note(format!("{image} is no longer in {member}'s MicroK8s"));
        return forget(p, member, name);
    }
    for step in testbed_steps::steps(&as_op(action, Op::Delete), &p.cx) {
        match &step {
            Step::Run { .. } => run(p, action, &step, log).await?,
            Step::Note(n) => log.note(n.clone()),
            other => {
                return Err(ProviderError::failed(format!(
                    "{}: the registry layer cannot carry out the step `{other}` (an internal error)",
                    action.address
                )))
            }
        }
    }
    forget(p, member, name)
}

#[allow(clippy::too_many_arguments)]
async fn import(
    p: &RegistryProvider,
    action: &Action,
    member: &str,
    name: &str,
    desired: &Resource,
    path: &std::path::Path,
    bytes: Vec<u8>,
    log: &ActionLog,
) -> Result<(), ProviderError> {
    let source = desired.spec.get("source").cloned().unwrap_or_default();
    let image = containerd_name(&source);
    let c = require_running(action, member, container(p, member).await?)?;
    let before = list_for(p, action, member, log).await?;
    if before.contains(&image) {
        return Err(precondition(
            format!(
                "{}: {image} is already in {member}'s MicroK8s, and testbed did not import it; it is left alone",
                action.address
            ),
            format!("remove it yourself (`lxc exec {member} -- microk8s ctr images rm {image}`) if testbed should import it"),
        ));
    }
    let size = bytes.len();
    let mut bytes = Some(bytes);
    // Once the tar is in the member, a failing step still removes it (the catalogue's last step).
    let steps = testbed_steps::steps(&as_op(action, Op::Create), &p.cx);
    let cleanup = steps.iter().find(|s| s.role() == &testbed_steps::Role::RemoveArchive).cloned();
    let mut pushed = false;
    for step in &steps {
        let done = match step {
            Step::Run { .. } => run(p, action, step, log).await,
            Step::Call { purpose: Purpose::PushFile { path: file, .. }, path: call, .. } => {
                log.api("POST", call);
                let content = bytes.take().unwrap_or_default();
                match p.runner.push_file(member, file, content, ARCHIVE_MODE).await {
                    Ok(()) => {
                        pushed = true;
                        log.note(format!("pushed {} ({size} bytes) to {file} in {member}", path.display()));
                        Ok(())
                    }
                    Err(e) => Err(failed(
                        format!("{}: pushing {} into {member} failed", action.address, path.display()),
                        format!("check container {member} (`lxc info {member}`) and its free disk, then apply again"),
                    )
                    .caused_by(e)),
                }
            }
            Step::Note(n) => {
                log.note(n.clone());
                Ok(())
            }
            other => Err(ProviderError::failed(format!(
                "{}: the registry layer cannot carry out the step `{other}` (an internal error)",
                action.address
            ))),
        };
        if let Err(e) = done {
            if let (true, Some(rm)) = (pushed, &cleanup) {
                if rm != step {
                    let _ = run(p, action, rm, log).await;
                }
            }
            return Err(e);
        }
    }

    let after = list_for(p, action, member, log).await?;
    let added: Vec<String> = after.difference(&before).cloned().collect();
    if !after.contains(&image) {
        let holds = if added.is_empty() {
            "it added no image name (what it holds was there already, or it names no image)".to_owned()
        } else {
            format!("it holds: {}", added.join(", "))
        };
        return Err(failed(
            format!("{}: the archive {} does not contain {image}; {holds}", action.address, path.display()),
            format!(
                "make `source` name an image the archive holds (docker-archive: `tar -xOf ARCHIVE manifest.json` shows its RepoTags), or save the right image into it; the images it added stay in {member}'s MicroK8s (`microk8s ctr images rm NAME` removes one)"
            ),
        ));
    }
    let mut imported: BTreeSet<String> = added.into_iter().collect();
    imported.insert(image.clone());
    let img = SideloadedImage {
        source,
        archive: desired.spec.get("archive").cloned(),
        imported: imported.into_iter().collect(),
        container: c.identity.clone(),
    };
    p.record
        .update(|rec| {
            rec.sideloads.entry(member.to_owned()).or_default().insert(name.to_owned(), img);
        })
        .map_err(ProviderError::failed)?;
    log.note(format!("imported {image} into {member}'s MicroK8s"));
    Ok(())
}
