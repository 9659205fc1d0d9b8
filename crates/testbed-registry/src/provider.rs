//! The real registry layer: the host MicroK8s registry addon, the images copied into it, and the images
//! side-loaded into members ([`crate::sideload`]).
//!
//! - **Registry** (`registry.local`): present when a distribution registry answers `GET /v2/` on
//!   `localhost:PORT`. testbed's if the record says testbed enabled it ([`crate::record`]); anyone else's
//!   registry there is used as it is. Created with `microk8s enable registry` (the catalogue's step), then
//!   waited for until it answers.
//! - **Image** (`image.NAME`): observed with one manifest HEAD per image against the local registry and one
//!   manifest GET per image against its source (through `[registry.mirrors]`), all at once. An image of
//!   testbed's whose tag has another digest than the source's needs repair (the plan shows an update); a tag
//!   someone else pushed is used as it is. Copied with [`Engine::copy`] (digests kept, shared layers
//!   mounted), progress shown per image. Deleted by digest, and only while the tag still has the digest
//!   testbed wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use testbed_command::{run_step, CommandRunner, Values};
use testbed_config::image_ref::ImageRef;
use testbed_plan::{Action, Address, ForeignUse, Health, Kind, Layer, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{
    ActionLog, ContainerView, LayerObservation, Provider, ProviderError, RegistryFacts, RegistryView,
};
use testbed_steps::{Context, Step};

use crate::record::{CopiedImage, Record};
use crate::{CopyJob, Engine, Event, Location, Options, Platform, Platforms, Registry};

/// Whether this provider may enable the registry addon itself.
#[derive(Debug, Clone)]
pub enum Addon {
    /// `microk8s enable registry` on the host, through the runner.
    Managed,
    /// MicroK8s is not run for real (simulated): a registry must already answer; the string says why not.
    Unmanaged(String),
}

pub struct RegistryProvider {
    pub(crate) engine: Engine,
    pub(crate) runner: Arc<dyn CommandRunner>,
    pub(crate) cx: Context,
    pub(crate) settings: testbed_config::Registry,
    /// Where the local registry is reached from the host: `127.0.0.1:PORT`, plain HTTP (as the addon serves).
    local: Arc<Registry>,
    pub(crate) record: Record,
    addon: Addon,
    ready_timeout: Duration,
    poll: Duration,
    /// Image name → target, of the images the last observation was asked about (for [`RegistryView`]).
    wanted: Mutex<BTreeMap<String, String>>,
    pub(crate) containers: Option<Arc<dyn ContainerView>>,
    /// The config file's directory: relative side-load archives are read from there.
    pub(crate) base_dir: std::path::PathBuf,
}

fn failed(message: impl Into<String>, hint: impl Into<String>) -> ProviderError {
    ProviderError::failed(message).with_hint(hint)
}

/// An engine error as the layer's own. The engine's error reads "image {image}: what went wrong": the image
/// is the message and what went wrong the source, so that the report reads as the engine's error did.
fn engine_error(e: crate::Error) -> ProviderError {
    ProviderError::failed(format!("image {}", e.image)).caused_by(*e.kind)
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// The `repository` and tag (or digest) of a target `localhost:PORT/REPOSITORY[:TAG|@DIGEST]`.
fn split_target(target: &str) -> Option<(String, String)> {
    let r = ImageRef::parse(target).ok()?;
    let reference = r.digest.or(r.tag)?;
    Some((r.repository, reference))
}

fn platforms_of(list: &str) -> Result<Platforms, String> {
    let parsed: Vec<Platform> = list
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| Platform::parse(p).ok_or_else(|| format!("platform {p:?} is not os/arch[/variant]")))
        .collect::<Result<_, _>>()?;
    Ok(if parsed.is_empty() { Platforms::default() } else { Platforms::Only(parsed) })
}

impl RegistryProvider {
    /// `record` is the ownership record file ([`crate::record`]), `.testbed/registry.json` beside the config.
    pub fn new(
        runner: Arc<dyn CommandRunner>,
        cx: Context,
        settings: testbed_config::Registry,
        record: impl Into<std::path::PathBuf>,
        addon: Addon,
    ) -> Result<RegistryProvider, ProviderError> {
        let engine = Engine::new(Options::default()).map_err(engine_error)?;
        let local = Arc::new(Registry::insecure(format!("127.0.0.1:{}", settings.port)));
        Ok(RegistryProvider {
            engine,
            runner,
            cx,
            settings,
            local,
            record: Record::at(record),
            addon,
            ready_timeout: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            wanted: Mutex::new(BTreeMap::new()),
            containers: None,
            base_dir: std::path::PathBuf::from("."),
        })
    }

    /// How registries are reached (default: the machine's own network).
    pub fn with_network(mut self, network: crate::Network) -> Result<RegistryProvider, ProviderError> {
        self.engine = Engine::new(Options { network, ..Options::default() }).map_err(engine_error)?;
        Ok(self)
    }

    /// The member containers, for side-loading (the LXD layer's view).
    pub fn with_containers(mut self, containers: Arc<dyn ContainerView>) -> RegistryProvider {
        self.containers = Some(containers);
        self
    }

    /// The config file's directory, against which a relative side-load `archive` is resolved (default: the
    /// current directory).
    pub fn with_base_dir(mut self, dir: std::path::PathBuf) -> RegistryProvider {
        self.base_dir = dir;
        self
    }

    /// How long a freshly enabled registry may take to answer, and how often to ask.
    pub fn with_ready_timeout(mut self, timeout: Duration, poll: Duration) -> RegistryProvider {
        self.ready_timeout = timeout;
        self.poll = poll;
        self
    }

    fn local_location(&self, target: &str) -> Option<Location> {
        let (repository, reference) = split_target(target)?;
        Some(Location::new(Arc::clone(&self.local), repository, reference))
    }

    /// Where an image's source is fetched from: its registry, or the mirror the file names for it.
    pub(crate) fn source_location(&self, source: &str) -> Result<Location, ProviderError> {
        let r =
            ImageRef::parse(source).map_err(|why| ProviderError::failed(format!("image source {source:?} {why}")))?;
        let ep = testbed_config::source_endpoint(&self.settings, &r.registry);
        let registry = if ep.https { Registry::https(ep.host) } else { Registry::insecure(ep.host) };
        let reference = r.digest.or(r.tag).unwrap_or_else(|| "latest".into());
        Ok(Location::new(Arc::new(registry), r.repository, reference))
    }

    fn job(&self, name: &str, spec: &Spec) -> Result<CopyJob, ProviderError> {
        let get = |k: &str| spec.get(k).map(String::as_str).unwrap_or_default();
        let source = self.source_location(get("source"))?;
        let target = self
            .local_location(get("target"))
            .ok_or_else(|| ProviderError::failed(format!("image {name}: target {:?} is malformed", get("target"))))?;
        let platforms =
            platforms_of(get("platforms")).map_err(|why| ProviderError::failed(format!("image {name}: {why}")))?;
        Ok(CopyJob::new(source, target).named(name).platforms(platforms))
    }

    /// The tags in testbed's registry that testbed did not copy (not in the record): someone else's, which
    /// disabling the addon would take with it.
    async fn foreign_tags(&self, record: &crate::record::Contents) -> Result<Vec<ForeignUse>, ProviderError> {
        let copied: std::collections::BTreeSet<(String, String)> = record
            .images
            .values()
            .filter_map(|i| self.local_location(&i.target))
            .map(|l| (l.repository, l.reference))
            .collect();
        let tags = self.engine.tags(&self.local).await.map_err(|e| {
            ProviderError::state_unknown(format!(
                "the local registry localhost:{} did not list its tags",
                self.settings.port
            ))
            .with_hint("check the registry (`curl -s localhost:32000/v2/_catalog`) and plan again")
            .caused_by(e)
        })?;
        Ok(tags
            .into_iter()
            .filter(|t| !copied.contains(t))
            .map(|(repository, tag)| ForeignUse::Tag(format!("{repository}:{tag}")))
            .collect())
    }

    fn record_error(&self, e: String) -> ProviderError {
        ProviderError::state_unknown(format!("testbed's registry record cannot be read: {e}")).with_hint(format!(
            "fix or remove {} (without it testbed treats the registry's images as someone else's)",
            self.record.path().display()
        ))
    }

    async fn observe_images(
        &self,
        wanted: &[&Resource],
        record: &crate::record::Contents,
    ) -> Result<Vec<Observed>, ProviderError> {
        // What to look at: every wanted image, and every image testbed copied that the file no longer wants.
        struct Probe {
            name: String,
            target: String,
            spec: Spec,
            owned: Option<CopiedImage>,
            /// The copy job that says which digest the tag should have (wanted images only).
            job: Option<CopyJob>,
        }
        let mut probes: Vec<Probe> = Vec::new();
        for r in wanted {
            // Under its name, or, for an image renamed in the file, under the name it had for the same tag.
            let owned = record.images.get(&r.name).cloned().or_else(|| {
                let target = r.spec.get("target")?;
                record.images.values().find(|o| &o.target == target).cloned()
            });
            // The record's target is what testbed made under this name; the file may have moved it.
            let (target, spec) = match &owned {
                Some(o) => (
                    o.target.clone(),
                    Spec::from([
                        ("source".to_owned(), o.source.clone()),
                        ("target".to_owned(), o.target.clone()),
                        ("platforms".to_owned(), o.platforms.clone()),
                    ]),
                ),
                None => (r.spec.get("target").cloned().unwrap_or_default(), r.spec.clone()),
            };
            let same_target = r.spec.get("target") == Some(&target);
            let job = if same_target { self.job(&r.name, &r.spec).ok() } else { None };
            probes.push(Probe { name: r.name.clone(), target, spec, owned, job });
        }
        for (name, o) in &record.images {
            if wanted.iter().any(|r| &r.name == name) {
                continue;
            }
            let spec = Spec::from([
                ("source".to_owned(), o.source.clone()),
                ("target".to_owned(), o.target.clone()),
                ("platforms".to_owned(), o.platforms.clone()),
            ]);
            probes.push(Probe {
                name: name.clone(),
                target: o.target.clone(),
                spec,
                owned: Some(o.clone()),
                job: None,
            });
        }

        let heads = futures_util::future::join_all(probes.iter().map(|p| async {
            match self.local_location(&p.target) {
                Some(loc) => self.engine.head_manifest(&loc).await,
                None => Ok(None),
            }
        }));
        let sources = futures_util::future::join_all(probes.iter().map(|p| async {
            match &p.job {
                Some(job) => Some(self.engine.wanted_digest(job).await),
                None => None,
            }
        }));
        let (heads, sources) = futures_util::future::join(heads, sources).await;

        let mut out = Vec::new();
        for ((p, head), source) in probes.into_iter().zip(heads).zip(sources) {
            let have = head.map_err(|e| {
                ProviderError::state_unknown(format!(
                    "the local registry localhost:{} did not answer about {}",
                    self.settings.port, p.target
                ))
                .with_hint("check the registry (`curl -s localhost:32000/v2/_catalog`) and plan again")
                .caused_by(e)
            })?;
            let Some(have) = have else { continue };
            let owner = match &p.owned {
                Some(_) => Owner::Testbed,
                None => {
                    Owner::Other(format!("{} is in the local registry, but testbed did not copy it there", p.target))
                }
            };
            let mut o = Observed::new(Address::new(Kind::Image, &[&p.name]), Kind::Image, None, owner, p.spec);
            o.spec.insert("digest".into(), have.clone());
            match source {
                Some(Ok(want)) if want != have => {
                    o.health =
                        Health::NeedsRepair(format!("the tag has {}, the source has {}", short(&have), short(&want)));
                }
                Some(Err(e)) => tracing::warn!("image {}: the source could not be compared: {e}", p.name),
                _ => {}
            }
            out.push(o);
        }
        Ok(out)
    }

    async fn apply_registry(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        match action.op {
            Op::Delete => {
                let owned = self.record.read().map_err(|e| self.record_error(e))?.registry_enabled;
                if !owned {
                    return Err(failed(
                        format!("{}: the registry was not enabled by testbed; it is left alone", action.address),
                        "disable it yourself if it should go: microk8s disable registry",
                    ));
                }
                self.run_steps(action, log).await?;
                self.record.update(|c| c.registry_enabled = false).map_err(ProviderError::failed)?;
                Ok(())
            }
            Op::Create | Op::Replace => {
                if self.engine.ping(&self.local).await.unwrap_or(false) {
                    log.note(format!("a registry already answers on localhost:{}", self.settings.port));
                    return Ok(());
                }
                if let Addon::Unmanaged(why) = &self.addon {
                    return Err(ProviderError::precondition(format!(
                            "{}: no registry answers on localhost:{}, and testbed cannot enable the MicroK8s registry addon: {why}",
                            action.address, self.settings.port
                        )).with_hint(format!(
                            "start a registry on 127.0.0.1:{} (`cargo xtask testenv up` starts a test one), or run the microk8s layer for real",
                            self.settings.port
                        )));
                }
                // The catalogue's steps: the enable command, then the wait (done here).
                self.run_steps(action, log).await?;
                self.record.update(|c| c.registry_enabled = true).map_err(ProviderError::failed)?;
                self.wait_ready(action, log).await
            }
            Op::Update => self.wait_ready(action, log).await,
        }
    }

    async fn run_steps(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let values = Values::default();
        for step in testbed_steps::steps(action, &self.cx) {
            if let Step::Run { .. } = step {
                run_step(self.runner.as_ref(), &step, &values, log, Duration::from_secs(600), true).await?;
            }
        }
        Ok(())
    }

    async fn wait_ready(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let started = Instant::now();
        log.api("GET", &format!("http://localhost:{}/v2/", self.settings.port));
        loop {
            if self.engine.ping(&self.local).await.unwrap_or(false) {
                return Ok(());
            }
            if started.elapsed() >= self.ready_timeout {
                return Err(failed(
                    format!(
                        "{}: the registry did not answer on localhost:{} within {} s",
                        action.address,
                        self.settings.port,
                        self.ready_timeout.as_secs()
                    ),
                    "look at `microk8s kubectl -n container-registry get pods,pvc` (the registry needs the hostpath-storage addon)",
                ));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn apply_image(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let name = action.address.as_str().strip_prefix("image.").unwrap_or(action.address.as_str()).to_owned();
        if matches!(action.op, Op::Delete | Op::Replace) {
            self.delete_image(action, &name, log).await?;
            if action.op == Op::Delete {
                return Ok(());
            }
        }
        let desired = action
            .desired
            .as_ref()
            .ok_or_else(|| ProviderError::failed(format!("{}: no desired settings", action.address)))?;
        if action.op == Op::Update && action.observed.as_ref().is_some_and(|o| o.owner != Owner::Testbed) {
            return Err(failed(
                format!(
                    "{}: {} was not copied by testbed; it is left alone",
                    action.address,
                    setting(desired, "target")
                ),
                "delete the tag yourself if testbed should copy it",
            ));
        }
        let job = self.job(&name, &desired.spec)?;
        log.api("COPY", &format!("{} -> {}", setting(desired, "source"), setting(desired, "target")));
        if job.source.registry.host()
            != ImageRef::parse(setting(desired, "source")).map(|r| r.registry).unwrap_or_default()
        {
            log.note(format!(
                "source fetched from {}://{}",
                if job.source.registry.is_insecure() { "http" } else { "https" },
                job.source.registry.host()
            ));
        }
        let state = Mutex::new((0usize, 0u64, 0usize, 0u64));
        let progress = |p: &crate::Progress<'_>| {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match &p.event {
                Event::Blobs { count, bytes } => *s = (*count, *bytes, 0, 0),
                Event::BlobPresent { size, .. }
                | Event::BlobMounted { size, .. }
                | Event::BlobUploaded { size, .. } => {
                    s.2 += 1;
                    s.3 += size;
                }
                _ => return,
            }
            log.progress(format!(
                "copying: {} of {} blobs, {:.1} of {:.1} MB",
                s.2,
                s.0,
                s.3 as f64 / 1e6,
                s.1 as f64 / 1e6
            ));
        };
        let report = self.engine.copy(&job, &progress).await.map_err(|e| {
            let hint = match *e.kind {
                crate::ErrorKind::Unauthorized { .. } => {
                    "the registry wants credentials: use a mirror that does not ([registry.mirrors]), or copy the image yourself"
                }
                crate::ErrorKind::NotFound { .. } => "check the image reference in the file (tag and repository)",
                crate::ErrorKind::NoPlatform { .. } => "change [registry] platforms, or the image",
                _ => "apply again: the copy resumes, sending only what is still missing",
            };
            engine_error(e).with_hint(hint)
        })?;
        let copied = CopiedImage {
            source: setting(desired, "source").to_owned(),
            target: setting(desired, "target").to_owned(),
            platforms: setting(desired, "platforms").to_owned(),
            digest: report.digest.clone(),
        };
        self.record
            .update(|c| {
                c.images.insert(name.clone(), copied);
            })
            .map_err(ProviderError::failed)?;
        if report.up_to_date {
            log.note(format!("already there with the source's digest {}", report.digest));
        } else {
            log.note(format!(
                "copied {}: {} blob(s) uploaded ({:.1} MB), {} mounted from another repository, {} already there; digest {}",
                setting(desired, "target"),
                report.blobs_uploaded,
                report.bytes_uploaded as f64 / 1e6,
                report.blobs_mounted,
                report.blobs_present,
                report.digest
            ));
        }
        Ok(())
    }

    async fn delete_image(&self, action: &Action, name: &str, log: &ActionLog) -> Result<(), ProviderError> {
        let record = self.record.read().map_err(|e| self.record_error(e))?;
        let Some(owned) = record.images.get(name).cloned() else {
            if action.op == Op::Replace || action.replace {
                return Ok(());
            }
            return Err(failed(
                format!("{}: testbed did not copy this image; it is left alone", action.address),
                "nothing to do: testbed deletes only images it copied",
            ));
        };
        let forget = || self.record.update(|c| c.images.remove(name)).map(|_| ()).map_err(ProviderError::failed);
        let Some(loc) = self.local_location(&owned.target) else { return forget() };
        let have = self.engine.head_manifest(&loc).await.map_err(|e| engine_error(e).with_hint("plan again"))?;
        match have {
            None => {
                log.note(format!("{} is already gone", owned.target));
                return forget();
            }
            Some(d) if d != owned.digest => {
                log.note(format!(
                    "{} now has {} (someone pushed over testbed's {}); the tag is left alone",
                    owned.target,
                    short(&d),
                    short(&owned.digest)
                ));
                return forget();
            }
            Some(_) => {}
        }
        // Deleting a manifest removes every tag that points at it: keep it if another wanted tag shares it.
        let others: Vec<String> = self
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .filter(|(_, t)| split_target(t).map(|(repo, _)| repo) == Some(loc.repository.clone()))
            .map(|(_, t)| t.clone())
            .collect();
        // The same tag wanted under another name (an image renamed in the file): it stays, recorded under
        // that name.
        let renamed = self
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(n, t)| n.as_str() != name && *t == &owned.target)
            .map(|(n, _)| n.clone());
        if let Some(new_name) = renamed {
            log.note(format!("{} is kept: the file now calls it image.{new_name}", owned.target));
            return self
                .record
                .update(|c| {
                    if let Some(entry) = c.images.remove(name) {
                        c.images.entry(new_name).or_insert(entry);
                    }
                })
                .map_err(ProviderError::failed);
        }
        for t in others {
            if let Some(other) = self.local_location(&t) {
                if self.engine.head_manifest(&other).await.ok().flatten().as_deref() == Some(owned.digest.as_str()) {
                    log.note(format!(
                        "{} is kept: {t} points at the same manifest, and deleting one would delete both",
                        owned.target
                    ));
                    return forget();
                }
            }
        }
        log.api("DELETE", &format!("{}/manifests/{}", owned.target, owned.digest));
        let deleted = self
            .engine
            .delete_manifest(&loc, &owned.digest)
            .await
            .map_err(|e| engine_error(e).with_hint("apply again"))?;
        if !deleted {
            log.note(format!(
                "the registry does not allow deletes (HTTP 405): {} stays, and testbed no longer counts it as its own",
                owned.target
            ));
        }
        forget()
    }
}

fn setting<'a>(r: &'a Resource, key: &str) -> &'a str {
    r.spec.get(key).map(String::as_str).unwrap_or_default()
}

#[async_trait]
impl Provider for RegistryProvider {
    fn layer(&self) -> Layer {
        Layer::Registry
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn observe(&self, wanted: &[Resource]) -> Result<LayerObservation, ProviderError> {
        let record = self.record.read().map_err(|e| self.record_error(e))?;
        let images: Vec<&Resource> = wanted.iter().filter(|r| r.kind == Kind::Image).collect();
        if let Ok(mut w) = self.wanted.lock() {
            *w = images.iter().map(|r| (r.name.clone(), setting(r, "target").to_owned())).collect();
        }
        let mut resources = Vec::new();
        let answers = self.engine.ping(&self.local).await.map_err(|e| {
            ProviderError::state_unknown(format!(
                "the local registry localhost:{} answers, but not as a registry",
                self.settings.port
            ))
            .with_hint(format!("see what listens on port {}", self.settings.port))
            .caused_by(e)
        })?;
        if answers {
            let address = wanted
                .iter()
                .find(|r| r.kind == Kind::Registry)
                .map(|r| r.address.clone())
                .unwrap_or_else(|| Address::new(Kind::Registry, &["local"]));
            let owner = if record.registry_enabled {
                Owner::Testbed
            } else {
                Owner::Other(format!(
                    "a registry answers on localhost:{}, and testbed did not enable it",
                    self.settings.port
                ))
            };
            let spec = Spec::from([("port".to_owned(), self.settings.port.to_string())]);
            let mut registry = Observed::new(address, Kind::Registry, None, owner, spec);
            if registry.owner == Owner::Testbed {
                registry.in_use_by = self.foreign_tags(&record).await?;
            }
            resources.push(registry);
            resources.extend(self.observe_images(&images, &record).await?);
        }
        let sideloads: Vec<&Resource> = wanted.iter().filter(|r| r.kind == Kind::Sideload).collect();
        resources.extend(crate::sideload::observe(self, &sideloads, &record).await?);
        Ok(LayerObservation { resources, ..Default::default() })
    }

    async fn apply(&self, action: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        match action.kind {
            Kind::Registry => self.apply_registry(action, log).await,
            Kind::Image => self.apply_image(action, log).await,
            Kind::Sideload => crate::sideload::apply(self, action, log).await,
            other => Err(ProviderError::failed(format!("the registry layer does not handle {other:?} resources"))),
        }
    }
}

#[async_trait]
impl RegistryView for RegistryProvider {
    async fn registry(&self) -> Result<Option<RegistryFacts>, ProviderError> {
        if !self.engine.ping(&self.local).await.map_err(engine_error)? {
            return Ok(None);
        }
        let wanted: Vec<(String, String)> =
            self.wanted.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        let heads = futures_util::future::join_all(wanted.iter().map(|(_, t)| async {
            match self.local_location(t) {
                Some(loc) => self.engine.head_manifest(&loc).await.ok().flatten(),
                None => None,
            }
        }))
        .await;
        let images = wanted.into_iter().zip(heads).filter(|(_, h)| h.is_some()).map(|((n, t), _)| (n, t)).collect();
        Ok(Some(RegistryFacts { port: self.settings.port, images }))
    }
}
