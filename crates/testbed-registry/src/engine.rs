//! The copy engine: manifests (and indexes), configs and layers from a source registry to a target registry,
//! and manifest HEADs to observe what a registry holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::{Error, ErrorKind, Role};
use crate::http::{Ctx, Http};
use crate::network::Network;
use crate::registry::{Location, Platforms, Registry};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Sent with every manifest request. Without it, CNCF distribution answers an OCI manifest with 404
/// `MANIFEST_UNKNOWN` and a Docker v2 manifest with 400 `MANIFEST_INVALID` (2.8.2; registries with schema 1
/// enabled convert it to schema 1 instead, with another digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (the distribution spec's registries accept at least 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Images copied at once, and blobs transferred at once (each bound separately).
    pub concurrency: usize,
    /// How long a registry may stay silent in the middle of an answer.
    pub timeout: Duration,
    /// How registries are reached.
    pub network: Network,
}

impl Default for Options {
    fn default() -> Options {
        Options { concurrency: 8, timeout: Duration::from_secs(60), network: Network::Direct }
    }
}

/// One image to copy: from where, to where, which platforms of a multi-platform image.
#[derive(Clone, Debug)]
pub struct CopyJob {
    /// The image's name in messages and progress (testbed's image name; by default the source's
    /// `repository:reference`).
    pub name: String,
    pub source: Location,
    pub target: Location,
    pub platforms: Platforms,
}

impl CopyJob {
    pub fn new(source: Location, target: Location) -> CopyJob {
        let sep = if source.reference.contains(':') { '@' } else { ':' };
        CopyJob {
            name: format!("{}{sep}{}", source.repository, source.reference),
            source,
            target,
            platforms: Platforms::default(),
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> CopyJob {
        self.name = name.into();
        self
    }

    pub fn platforms(mut self, platforms: Platforms) -> CopyJob {
        self.platforms = platforms;
        self
    }
}

/// What a copy did for one image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageReport {
    pub image: String,
    /// The digest the target's tag has now (equal to the source's: see the crate docs for indexes).
    pub digest: String,
    /// The target already had it: nothing was sent.
    pub up_to_date: bool,
    /// Manifests pushed (an index counts with each platform's manifest).
    pub manifests_pushed: usize,
    /// Blobs the target repository already had (HEAD 200): not sent.
    pub blobs_present: usize,
    /// Blobs mounted from another repository of the target (`POST ...?mount=&from=`): not sent.
    pub blobs_mounted: usize,
    /// Blobs downloaded from the source, verified, and uploaded.
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
}

/// A step of one image's copy, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    /// The image's blobs are known: how many and how large (all of them, present or not).
    Blobs {
        count: usize,
        bytes: u64,
    },
    BlobPresent {
        digest: String,
        size: u64,
    },
    BlobMounted {
        digest: String,
        size: u64,
        from: String,
    },
    /// Bytes of a blob received from the source (sent in chunks as they arrive).
    Transferred {
        bytes: u64,
    },
    BlobUploaded {
        digest: String,
        size: u64,
    },
    ManifestPushed {
        reference: String,
    },
    /// Done: the target's tag has `digest`; `up_to_date` if it already had it.
    Done {
        digest: String,
        up_to_date: bool,
    },
    Failed {
        message: String,
    },
}

/// A progress event about one image.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub image: &'a str,
    pub event: Event,
}

/// A manifest as fetched: its exact bytes (pushed unchanged, so the digest stays), type and digest.
#[derive(Clone, Debug)]
struct Fetched {
    media_type: String,
    body: Bytes,
    digest: String,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<PlatformField>,
}

#[derive(Deserialize)]
struct PlatformField {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct ImageManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct IndexManifest {
    manifests: Vec<Descriptor>,
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

fn is_image(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes).as_slice())
}

fn hex_digest(d: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn url(loc: &Location, tail: &str) -> String {
    format!("{}/v2/{}/{tail}", loc.registry.base_url(), loc.repository)
}

/// What a copy of one image comes down to.
enum Resolved {
    /// An image manifest, tagged as it is.
    Image(Fetched),
    /// One platform of an index: that platform's manifest (`digest`) is tagged alone.
    Platform { digest: String },
    /// The whole index, unchanged, with every manifest in it.
    Index { index: Fetched, children: Vec<String> },
}

impl Resolved {
    /// The digest the target's tag has once the copy is done.
    fn digest(&self) -> &str {
        match self {
            Resolved::Image(f) => &f.digest,
            Resolved::Platform { digest, .. } => digest,
            Resolved::Index { index, .. } => &index.digest,
        }
    }
}

/// The target repository that holds a blob, once one does.
type Placed = Arc<OnceCell<String>>;

enum BlobOutcome {
    Present,
    Mounted,
    Uploaded(u64),
}

enum Mount {
    Done,
    /// The registry could not mount and opened an upload session instead (202 with a Location).
    Session(String),
}

/// Copies images between registries and observes them. One engine is shared by every copy of a run: it
/// bounds how many images and blob transfers run at once and remembers which target repository received a
/// blob, so that other repositories mount it instead of receiving it again.
pub struct Engine {
    http: Http,
    opts: Options,
    transfers: Semaphore,
    /// (target host, digest) → the target repository that holds the blob (set once it is there).
    placed: Mutex<HashMap<(String, String), Placed>>,
}

impl Engine {
    pub fn new(opts: Options) -> Result<Engine, Error> {
        let http =
            Http::new(opts.timeout, opts.network.clone()).map_err(|e| Error::new("(none)", ErrorKind::Client(e)))?;
        let permits = opts.concurrency.max(1);
        Ok(Engine { http, opts, transfers: Semaphore::new(permits), placed: Mutex::new(HashMap::new()) })
    }

    /// Copies every job, up to `concurrency` at a time; one result per job, in order.
    pub async fn copy_all(
        &self,
        jobs: &[CopyJob],
        progress: &(dyn Fn(&Progress<'_>) + Sync),
    ) -> Vec<Result<ImageReport, Error>> {
        futures_util::stream::iter(jobs)
            .map(|job| self.copy(job, progress))
            .buffered(self.opts.concurrency.max(1))
            .collect()
            .await
    }

    /// Copies one image: blobs first (each one verified against its digest before it is uploaded), manifests
    /// after, the tag last. An image whose copy failed is not tagged in the target, and a later copy picks up
    /// what is already there.
    pub async fn copy(&self, job: &CopyJob, progress: &(dyn Fn(&Progress<'_>) + Sync)) -> Result<ImageReport, Error> {
        let emit = |event| progress(&Progress { image: &job.name, event });
        emit(Event::Started);
        let result = self.copy_inner(job, &emit).await;
        match &result {
            Ok(r) => emit(Event::Done { digest: r.digest.clone(), up_to_date: r.up_to_date }),
            Err(e) => emit(Event::Failed { message: e.kind.to_string() }),
        }
        result
    }

    /// The digest the job's target tag has after a copy: the source's manifest digest, or, for one platform
    /// of a multi-platform image, that platform's manifest digest. One GET of the source manifest.
    pub async fn wanted_digest(&self, job: &CopyJob) -> Result<String, Error> {
        Ok(self.resolve(job).await?.digest().to_owned())
    }

    /// The digest of the manifest at `loc` (`Docker-Content-Digest` of a HEAD that accepts every manifest
    /// type), or None if it is not there.
    pub async fn head_manifest(&self, loc: &Location) -> Result<Option<String>, Error> {
        let image = loc.to_string();
        let ctx = Ctx {
            image: &image,
            role: Role::Target,
            registry: &loc.registry,
            scope: pull_scope(&loc.repository),
            what: format!("manifest {}:{}", loc.repository, loc.reference),
        };
        let target = url(loc, &format!("manifests/{}", loc.reference));
        let resp = self.http.send(&ctx, |c| c.head(&target).header(ACCEPT, MANIFEST_ACCEPT)).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(ctx.status(resp).await),
        }
        match resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            Some(d) => Ok(Some(d.to_owned())),
            // A registry that does not send the header: hash what a GET returns.
            None => Ok(Some(self.get_manifest(&image, Role::Target, loc).await?.digest)),
        }
    }

    /// Whether a distribution registry answers `GET /v2/` at `registry` (200, or 401 from one that wants
    /// credentials). `Ok(false)` when nothing listens there; an error when something answers that is not a
    /// registry, or the answer does not come.
    pub async fn ping(&self, registry: &Registry) -> Result<bool, Error> {
        let ctx = Ctx {
            image: "(registry)",
            role: Role::Target,
            registry,
            scope: String::new(),
            what: "the registry API (/v2/)".to_owned(),
        };
        let base = format!("{}/v2/", registry.base_url());
        let resp = match self.http.send(&ctx, |c| c.get(&base)).await {
            Ok(r) => r,
            Err(e) if matches!(*e.kind, ErrorKind::Unreachable { .. }) => return Ok(false),
            Err(e) if matches!(*e.kind, ErrorKind::Unauthorized { .. }) => return Ok(true),
            Err(e) => return Err(e),
        };
        match resp.status() {
            StatusCode::OK | StatusCode::UNAUTHORIZED => Ok(true),
            _ => Err(ctx.status(resp).await),
        }
    }

    /// Deletes the manifest `digest` from `loc`'s repository (every tag pointing at it goes with it).
    /// `Ok(false)` if the registry does not allow deletes (405, distribution's default unless
    /// `REGISTRY_STORAGE_DELETE_ENABLED`); a manifest already gone is `Ok(true)`.
    pub async fn delete_manifest(&self, loc: &Location, digest: &str) -> Result<bool, Error> {
        let image = loc.to_string();
        let ctx = Ctx {
            image: &image,
            role: Role::Target,
            registry: &loc.registry,
            scope: format!("repository:{}:delete", loc.repository),
            what: format!("manifest {}@{digest}", loc.repository),
        };
        let target = url(loc, &format!("manifests/{digest}"));
        let resp = self.http.send(&ctx, |c| c.delete(&target)).await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NOT_FOUND => Ok(true),
            StatusCode::METHOD_NOT_ALLOWED => Ok(false),
            _ => Err(ctx.status(resp).await),
        }
    }

    /// Every `(repository, tag)` the registry holds: its catalogue (`GET /v2/_catalog`), then each
    /// repository's tags (`GET /v2/NAME/tags/list`). A repository whose tags were all deleted lists none.
    pub async fn tags(&self, registry: &Arc<Registry>) -> Result<Vec<(String, String)>, Error> {
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let catalog: Catalog =
            self.get_json(registry, "registry:catalog:*", "the catalogue (/v2/_catalog)", "_catalog?n=10000").await?;
        let mut out = Vec::new();
        for repository in catalog.repositories.unwrap_or_default() {
            let what = format!("the tags of {repository}");
            let tags: Tags =
                self.get_json(registry, &pull_scope(&repository), &what, &format!("{repository}/tags/list")).await?;
            out.extend(tags.tags.unwrap_or_default().into_iter().map(|t| (repository.clone(), t)));
        }
        Ok(out)
    }

    /// `GET /v2/TAIL`, read as JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        registry: &Registry,
        scope: &str,
        what: &str,
        tail: &str,
    ) -> Result<T, Error> {
        let ctx =
            Ctx { image: "(registry)", role: Role::Target, registry, scope: scope.to_owned(), what: what.to_owned() };
        let target = format!("{}/v2/{tail}", registry.base_url());
        let resp = self.http.send(&ctx, |c| c.get(&target)).await?;
        if resp.status() != StatusCode::OK {
            return Err(ctx.status(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| ctx.transport(&e, true))?;
        serde_json::from_slice(&body)
            .map_err(|e| ctx.err(ErrorKind::Malformed { what: ctx.what.clone(), detail: e.to_string() }))
    }

    /// [`Engine::head_manifest`] for every location at once; one result per location, in order.
    pub async fn head_manifests(&self, locs: &[Location]) -> Vec<Result<Option<String>, Error>> {
        futures_util::future::join_all(locs.iter().map(|l| self.head_manifest(l))).await
    }

    async fn copy_inner(&self, job: &CopyJob, emit: &(dyn Fn(Event) + Sync)) -> Result<ImageReport, Error> {
        // The source's manifest and the target's tag, at once.
        let (resolved, present) = futures_util::future::join(self.resolve(job), self.head_manifest(&job.target)).await;
        let resolved = resolved?;
        let present = present.map_err(|e| Error { image: job.name.clone(), kind: e.kind })?;
        let mut report =
            ImageReport { image: job.name.clone(), digest: resolved.digest().to_owned(), ..Default::default() };
        if present.as_deref() == Some(resolved.digest()) {
            report.up_to_date = true;
            return Ok(report);
        }
        let tally = match resolved {
            Resolved::Image(m) => self.copy_image(job, &m, &job.target, emit).await?,
            Resolved::Platform { digest, .. } => {
                let m = self.get_image_manifest(job, &digest).await?;
                self.copy_image(job, &m, &job.target, emit).await?
            }
            Resolved::Index { index, children } => {
                // Every platform's blobs and manifest (pushed by digest), then the index under the tag.
                let tallies = futures_util::future::try_join_all(children.iter().map(|d| async move {
                    let m = self.get_image_manifest(job, d).await?;
                    self.copy_image(job, &m, &job.target.at(d.clone()), emit).await
                }))
                .await?;
                self.push_manifest(job, &job.target, &index).await?;
                emit(Event::ManifestPushed { reference: job.target.reference.clone() });
                let mut sum = Tally { manifests: 1, ..Default::default() };
                for t in tallies {
                    sum.add(&t);
                }
                sum
            }
        };
        report.manifests_pushed = tally.manifests;
        report.blobs_present = tally.present;
        report.blobs_mounted = tally.mounted;
        report.blobs_uploaded = tally.uploaded;
        report.bytes_uploaded = tally.bytes;
        Ok(report)
    }

    /// Reads the source manifest and decides what the copy is (see the crate docs on indexes).
    async fn resolve(&self, job: &CopyJob) -> Result<Resolved, Error> {
        let top = self.get_manifest(&job.name, Role::Source, &job.source).await?;
        if is_image(&top.media_type) {
            return Ok(Resolved::Image(top));
        }
        if !is_index(&top.media_type) {
            let what = format!("manifest {}:{}", job.source.repository, job.source.reference);
            return Err(Error::new(&job.name, ErrorKind::Unsupported { what, media_type: top.media_type }));
        }
        let index: IndexManifest = serde_json::from_slice(&top.body).map_err(|e| {
            let what = format!("index {}:{}", job.source.repository, job.source.reference);
            Error::new(&job.name, ErrorKind::Malformed { what, detail: e.to_string() })
        })?;
        let find = |p: &crate::registry::Platform| {
            index
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|q| p.matches(&q.os, &q.architecture, q.variant.as_deref())))
        };
        let available = || {
            index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let whole = |index: Fetched, manifests: &[Descriptor]| Resolved::Index {
            index,
            children: manifests.iter().map(|d| d.digest.clone()).collect(),
        };
        match &job.platforms {
            Platforms::All => Ok(whole(top, &index.manifests)),
            Platforms::Only(wanted) => {
                for p in wanted {
                    if find(p).is_none() {
                        return Err(Error::new(
                            &job.name,
                            ErrorKind::NoPlatform { platform: p.to_string(), available: available() },
                        ));
                    }
                }
                match wanted.as_slice() {
                    [one] => {
                        let digest = find(one).map(|d| d.digest.clone()).unwrap_or_default();
                        Ok(Resolved::Platform { digest })
                    }
                    _ => Ok(whole(top, &index.manifests)),
                }
            }
        }
    }

    async fn get_image_manifest(&self, job: &CopyJob, digest: &str) -> Result<Fetched, Error> {
        let m = self.get_manifest(&job.name, Role::Source, &job.source.at(digest)).await?;
        if is_image(&m.media_type) {
            Ok(m)
        } else {
            Err(Error::new(
                &job.name,
                ErrorKind::Unsupported { what: format!("manifest {digest}"), media_type: m.media_type },
            ))
        }
    }

    /// GETs a manifest's exact bytes (always with the Accept header) and checks them against the digest
    /// asked for, or the one the registry names.
    async fn get_manifest(&self, image: &str, role: Role, loc: &Location) -> Result<Fetched, Error> {
        let what = if loc.reference.starts_with("sha256:") {
            format!("manifest {} of {}", loc.reference, loc.repository)
        } else {
            format!("tag {} of {}", loc.reference, loc.repository)
        };
        let ctx = Ctx { image, role, registry: &loc.registry, scope: pull_scope(&loc.repository), what };
        let target = url(loc, &format!("manifests/{}", loc.reference));
        let resp = self.http.send(&ctx, |c| c.get(&target).header(ACCEPT, MANIFEST_ACCEPT)).await?;
        if resp.status() != StatusCode::OK {
            return Err(ctx.status(resp).await);
        }
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let named = header("docker-content-digest");
        let content_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
        if header(CONTENT_LENGTH.as_str()).and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l > MAX_MANIFEST) {
            return Err(ctx.err(ErrorKind::Malformed { what: ctx.what.clone(), detail: "larger than 4 MiB".into() }));
        }
        let body = resp.bytes().await.map_err(|e| ctx.transport(&e, true))?;
        let digest = sha256(&body);
        let expected = if loc.reference.contains(':') { Some(loc.reference.clone()) } else { named };
        if let Some(expected) = expected.filter(|e| e.starts_with("sha256:") && *e != digest) {
            return Err(ctx.err(ErrorKind::DigestMismatch {
                role,
                registry: loc.registry.host().to_owned(),
                what: ctx.what.clone(),
                expected,
                actual: digest,
            }));
        }
        let mut media_type = content_type.split(';').next().unwrap_or("").trim().to_owned();
        if !is_image(&media_type) && !is_index(&media_type) {
            // Some registries answer application/json: the manifest says what it is.
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(t) = v["mediaType"].as_str() {
                media_type = t.to_owned();
            }
        }
        Ok(Fetched { media_type, body, digest })
    }

    /// Copies an image manifest's config and layers, then pushes the manifest at `target`.
    async fn copy_image(
        &self,
        job: &CopyJob,
        m: &Fetched,
        target: &Location,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Tally, Error> {
        let parsed: ImageManifest = serde_json::from_slice(&m.body).map_err(|e| {
            Error::new(
                &job.name,
                ErrorKind::Malformed { what: format!("manifest {}", m.digest), detail: e.to_string() },
            )
        })?;
        let blobs: Vec<&Descriptor> = std::iter::once(&parsed.config).chain(parsed.layers.iter()).collect();
        emit(Event::Blobs { count: blobs.len(), bytes: blobs.iter().map(|b| b.size).sum() });
        let outcomes =
            futures_util::future::try_join_all(blobs.iter().map(|b| self.ensure_blob(job, b, target, emit))).await?;
        let mut tally = Tally { manifests: 1, ..Default::default() };
        for o in outcomes {
            match o {
                BlobOutcome::Present => tally.present += 1,
                BlobOutcome::Mounted => tally.mounted += 1,
                BlobOutcome::Uploaded(n) => {
                    tally.uploaded += 1;
                    tally.bytes += n;
                }
            }
        }
        self.push_manifest(job, target, m).await?;
        emit(Event::ManifestPushed { reference: target.reference.clone() });
        Ok(tally)
    }

    /// Makes one blob present in the target repository: already there, mounted from the target repository
    /// that received it first, or downloaded, verified and uploaded.
    async fn ensure_blob(
        &self,
        job: &CopyJob,
        blob: &Descriptor,
        target: &Location,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<BlobOutcome, Error> {
        let digest = &blob.digest;
        if !digest.starts_with("sha256:") || digest.len() != 71 {
            return Err(Error::new(
                &job.name,
                ErrorKind::Unsupported { what: format!("blob {digest}"), media_type: blob.media_type.clone() },
            ));
        }
        let ctx = Ctx {
            image: &job.name,
            role: Role::Target,
            registry: &target.registry,
            scope: push_scope(&target.repository),
            what: format!("blob {digest} of {}", target.repository),
        };
        let head = url(target, &format!("blobs/{digest}"));
        let resp = self.http.send(&ctx, |c| c.head(&head)).await?;
        match resp.status() {
            StatusCode::OK => {
                emit(Event::BlobPresent { digest: digest.clone(), size: blob.size });
                return Ok(BlobOutcome::Present);
            }
            StatusCode::NOT_FOUND => {}
            _ => return Err(ctx.status(resp).await),
        }
        let cell = {
            let mut placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(placed.entry((target.registry.host().to_owned(), digest.clone())).or_default())
        };
        let ran = AtomicBool::new(false);
        let mounted_from_source = AtomicBool::new(false);
        let holder = cell
            .get_or_try_init(|| async {
                ran.store(true, Ordering::SeqCst);
                // Source and target in one registry: the source repository has the blob, mount it.
                let mut session = None;
                if job.source.same_registry(target) {
                    match self.mount(&ctx, target, digest, &job.source.repository).await? {
                        Mount::Done => {
                            mounted_from_source.store(true, Ordering::SeqCst);
                            return Ok(target.repository.clone());
                        }
                        Mount::Session(s) => session = Some(s),
                    }
                }
                self.transfer(job, blob, target, session, emit).await?;
                Ok::<_, Error>(target.repository.clone())
            })
            .await?;
        if ran.load(Ordering::SeqCst) {
            if mounted_from_source.load(Ordering::SeqCst) {
                emit(Event::BlobMounted {
                    digest: digest.clone(),
                    size: blob.size,
                    from: job.source.repository.clone(),
                });
                return Ok(BlobOutcome::Mounted);
            }
            emit(Event::BlobUploaded { digest: digest.clone(), size: blob.size });
            return Ok(BlobOutcome::Uploaded(blob.size));
        }
        if *holder == target.repository {
            // Another image of the same repository put it there meanwhile.
            emit(Event::BlobPresent { digest: digest.clone(), size: blob.size });
            return Ok(BlobOutcome::Present);
        }
        match self.mount(&ctx, target, digest, holder).await? {
            Mount::Done => {
                emit(Event::BlobMounted { digest: digest.clone(), size: blob.size, from: holder.clone() });
                Ok(BlobOutcome::Mounted)
            }
            Mount::Session(s) => {
                // The repository that had it lost it (deleted since): send it again.
                self.transfer(job, blob, target, Some(s), emit).await?;
                emit(Event::BlobUploaded { digest: digest.clone(), size: blob.size });
                Ok(BlobOutcome::Uploaded(blob.size))
            }
        }
    }

    /// `POST /v2/<target>/blobs/uploads/?mount=<digest>&from=<repository>`.
    async fn mount(&self, ctx: &Ctx<'_>, target: &Location, digest: &str, from: &str) -> Result<Mount, Error> {
        let mount_ctx = Ctx {
            image: ctx.image,
            role: Role::Target,
            registry: &target.registry,
            scope: format!("{} {}", push_scope(&target.repository), pull_scope(from)),
            what: format!("mounting blob {digest} from {from} into {}", target.repository),
        };
        let post = url(target, "blobs/uploads/");
        let resp = self.http.send(&mount_ctx, |c| c.post(&post).query(&[("mount", digest), ("from", from)])).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Done),
            StatusCode::ACCEPTED => Ok(Mount::Session(self.location(&mount_ctx, &resp)?)),
            _ => Err(mount_ctx.status(resp).await),
        }
    }

    fn location(&self, ctx: &Ctx<'_>, resp: &reqwest::Response) -> Result<String, Error> {
        let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ctx.err(ErrorKind::Malformed {
                what: ctx.what.clone(),
                detail: "an upload session without a Location".into(),
            })
        })?;
        Ok(if loc.starts_with('/') { format!("{}{loc}", ctx.registry.base_url()) } else { loc.to_owned() })
    }

    /// Downloads a blob from the source, checks it against its digest and size, then uploads it (into
    /// `session` if the registry already opened one). Holds one transfer permit throughout.
    async fn transfer(
        &self,
        job: &CopyJob,
        blob: &Descriptor,
        target: &Location,
        session: Option<String>,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<(), Error> {
        let _permit =
            self.transfers.acquire().await.map_err(|_| {
                Error::new(&job.name, ErrorKind::Client("the engine's transfer limit was closed".into()))
            })?;
        let data = self.download(job, blob, emit).await?;
        let ctx = Ctx {
            image: &job.name,
            role: Role::Target,
            registry: &target.registry,
            scope: push_scope(&target.repository),
            what: format!("upload of blob {} to {}", blob.digest, target.repository),
        };
        let session = match session {
            Some(s) => s,
            None => {
                let post = url(target, "blobs/uploads/");
                let resp = self.http.send(&ctx, |c| c.post(&post).header(CONTENT_LENGTH, "0")).await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(ctx.status(resp).await);
                }
                self.location(&ctx, &resp)?
            }
        };
        let sep = if session.contains('?') { '&' } else { '?' };
        let put = format!("{session}{sep}digest={}", blob.digest);
        let resp = self
            .http
            .send(&ctx, |c| {
                c.put(&put).header(CONTENT_TYPE, "application/octet-stream").body(reqwest::Body::from(data.clone()))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(ctx.status(resp).await);
        }
        Ok(())
    }

    async fn download(&self, job: &CopyJob, blob: &Descriptor, emit: &(dyn Fn(Event) + Sync)) -> Result<Bytes, Error> {
        let src = &job.source;
        let ctx = Ctx {
            image: &job.name,
            role: Role::Source,
            registry: &src.registry,
            scope: pull_scope(&src.repository),
            what: format!("blob {} of {}", blob.digest, src.repository),
        };
        let get = url(src, &format!("blobs/{}", blob.digest));
        let resp = self.http.send(&ctx, |c| c.get(&get)).await?;
        if resp.status() != StatusCode::OK {
            return Err(ctx.status(resp).await);
        }
        let mismatch = |actual: String| {
            ctx.err(ErrorKind::DigestMismatch {
                role: Role::Source,
                registry: src.registry.host().to_owned(),
                what: ctx.what.clone(),
                expected: blob.digest.clone(),
                actual,
            })
        };
        let mut hasher = Sha256::new();
        let mut buf = Vec::with_capacity(blob.size.min(256 << 20) as usize);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ctx.transport(&e, true))?;
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
            emit(Event::Transferred { bytes: chunk.len() as u64 });
            if buf.len() as u64 > blob.size {
                return Err(mismatch(format!("more than the {} bytes the manifest gives", blob.size)));
            }
        }
        let actual = hex_digest(hasher.finalize().as_slice());
        if actual != blob.digest {
            return Err(mismatch(actual));
        }
        if buf.len() as u64 != blob.size {
            return Err(mismatch(format!("{actual} but {} bytes instead of {}", buf.len(), blob.size)));
        }
        Ok(Bytes::from(buf))
    }

    /// PUTs a manifest's exact bytes; the registry must answer with the same digest.
    async fn push_manifest(&self, job: &CopyJob, target: &Location, m: &Fetched) -> Result<(), Error> {
        let ctx = Ctx {
            image: &job.name,
            role: Role::Target,
            registry: &target.registry,
            scope: push_scope(&target.repository),
            what: format!("manifest {}:{}", target.repository, target.reference),
        };
        let put = url(target, &format!("manifests/{}", target.reference));
        let resp = self
            .http
            .send(&ctx, |c| c.put(&put).header(CONTENT_TYPE, m.media_type.as_str()).body(m.body.clone()))
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(ctx.status(resp).await);
        }
        if let Some(d) = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            if d != m.digest {
                return Err(ctx.err(ErrorKind::DigestMismatch {
                    role: Role::Target,
                    registry: target.registry.host().to_owned(),
                    what: ctx.what.clone(),
                    expected: m.digest.clone(),
                    actual: d.to_owned(),
                }));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    manifests: usize,
    present: usize,
    mounted: usize,
    uploaded: usize,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.manifests += o.manifests;
        self.present += o.present;
        self.mounted += o.mounted;
        self.uploaded += o.uploaded;
        self.bytes += o.bytes;
    }
}
