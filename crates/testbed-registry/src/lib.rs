//! Images as resources: copies between registries over the OCI distribution API, observed by manifest HEAD.
//!
//! # What a copy does
//!
//! [`Engine::copy`] copies one image ([`CopyJob`]: a source [`Location`], a target [`Location`], the
//! [`Platforms`] wanted) and [`Engine::copy_all`] a set of them, up to [`Options::concurrency`] images and
//! as many blob transfers at once:
//!
//! 1. The source manifest is fetched with an `Accept` header naming the OCI index, OCI manifest, Docker
//!    manifest list and Docker v2 manifest types (always: without it, CNCF distribution 2.8 answers an OCI
//!    manifest with 404 `MANIFEST_UNKNOWN` and a Docker v2 manifest with 400 `MANIFEST_INVALID`). Its bytes
//!    are checked against the digest asked for or the one the registry names, and pushed unchanged, so the
//!    target's digest is the source's.
//! 2. If the target's tag already has the wanted digest (one HEAD), nothing else happens: the image is
//!    [`ImageReport::up_to_date`].
//! 3. Each blob (config and layers) is looked up in the target repository (`HEAD`); one that is there is not
//!    sent. One that another repository of the target received earlier in this engine's life (a base layer
//!    shared by several images) is mounted from there (`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`);
//!    concurrent copies needing the same blob wait for the first to place it, then mount it. Source and
//!    target in one registry: mounted from the source repository. Otherwise the blob is downloaded, checked
//!    against its digest and size, and only then uploaded (`POST` then `PUT ?digest=`): a blob whose content
//!    does not match its digest is never pushed. A registry that cannot mount answers 202 with an upload
//!    session, which is used for the upload.
//! 4. Manifests are pushed after all their blobs, the tag last. An image whose copy failed is therefore never
//!    tagged in the target ([`Engine::head_manifest`] does not report it), and a later copy completes it,
//!    sending only what is still missing.
//!
//! Blobs are held in memory between download and upload (one per transfer permit): the price of verifying
//! before uploading without a temporary file.
//!
//! # Multi-platform images (indexes) and their digests
//!
//! A subset of an index is a new index whose digest no registry of the source has. testbed never makes one:
//!
//! - **One platform** (the default, `linux/amd64`): that platform's manifest, config and layers are copied
//!   and the manifest is tagged alone. The target tag's digest is the source's digest *of that platform's
//!   manifest*, not the index's (the same as `skopeo copy` without `--all`). [`Engine::wanted_digest`] gives
//!   the digest to compare with when observing.
//! - **Several platforms, or [`Platforms::All`]**: the whole index is copied unchanged, with every platform
//!   in it (also those not asked for), and the tag's digest is the source index's digest. Asking for a
//!   platform the index lacks is an error that lists what it has.
//!
//! # Observation
//!
//! [`Engine::head_manifest`] sends one `HEAD /v2/<name>/manifests/<ref>` (with the same `Accept` header)
//! and reads `Docker-Content-Digest`; [`Engine::head_manifests`] does it for a whole set at once.
//!
//! # Errors, credentials, insecure registries
//!
//! Every [`Error`] names the image and, where a registry is at fault, which one and on which side of the
//! copy ([`ErrorKind`]): unreachable, stopped mid-copy, 401/403 (credentials needed, or refused), tag or blob
//! missing, digest mismatch. A 401 with a `WWW-Authenticate: Bearer realm=...` challenge is answered once with
//! a token from that realm (asked with the registry's Basic [`Credentials`] if any); `Basic` challenges with
//! the Basic credentials. Credentials are never part of an error, a log line or a `Debug` output. Plain HTTP
//! is used only for a [`Registry`] made with [`Registry::insecure`] or [`Registry::endpoint`] with
//! `insecure_allowed`.
//!
//! # Why not an OCI client crate
//!
//! `oci-client` (oras-project, 0.18) was evaluated: it speaks the same API and answers token challenges, but
//! for a registry-to-registry copy engine it falls short where this crate's requirements are: its
//! `mount_blob` treats the spec's 202 answer (the registry could not mount and opened an upload session) as
//! an error, leaving the session unused; `fetch_manifest_digest` of a missing tag sends a HEAD and then a GET
//! (the observation must be one HEAD per image); it has no per-blob outcome (present, mounted, uploaded) to
//! report, and its errors do not say which side of a copy failed. It would also bring a second TLS provider
//! (aws-lc) unless configured around. The distribution API a copy needs is a dozen requests; they are here
//! on reqwest over rustls with ring (as testbed-kube), which keeps each request, its count and its failure
//! in view.

mod engine;
mod error;
mod http;
mod network;
pub mod provider;
pub mod record;
mod registry;
mod sideload;

pub use engine::{
    CopyJob, Engine, Event, ImageReport, Options, Progress, DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_ACCEPT, OCI_INDEX,
    OCI_MANIFEST,
};
pub use error::{Error, ErrorKind, Role};
pub use network::{Network, Route};
pub use provider::{Addon, RegistryProvider};
pub use registry::{Credentials, EndpointError, Location, Platform, Platforms, Registry};
