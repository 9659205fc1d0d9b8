//! Errors. Each names the image it is about and, where a registry is at fault, which registry (by host and
//! role). None carries credentials: messages are built from hosts, repositories, digests, status codes and
//! the registry's own error codes, never from request headers.

use std::fmt;

/// Which side of a copy a registry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Target => "target",
        })
    }
}

/// An error about one image.
#[derive(Debug, thiserror::Error)]
#[error("image {image}: {kind}")]
pub struct Error {
    /// The image, as the caller named it.
    pub image: String,
    /// Boxed: results stay small.
    pub kind: Box<ErrorKind>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot reach the {role} registry {registry}: {detail}")]
    Unreachable { role: Role, registry: String, detail: String },
    #[error("the {role} registry {registry} stopped answering in the middle of the copy ({detail}); nothing of this image was tagged in the target, a later copy completes it")]
    Interrupted { role: Role, registry: String, detail: String },
    #[error("the {role} registry {registry} answered {status} for {what}: credentials are needed{}", if *.had_credentials { " (the ones given were refused)" } else { " (none were given)" })]
    Unauthorized { role: Role, registry: String, status: u16, what: String, had_credentials: bool },
    #[error("{what} is not in the {role} registry {registry} ({code})")]
    NotFound { role: Role, registry: String, what: String, code: String },
    #[error("{what} from the {role} registry {registry} does not match its digest {expected} (got {actual}); it was not pushed")]
    DigestMismatch { role: Role, registry: String, what: String, expected: String, actual: String },
    #[error("the {role} registry {registry} answered {status} for {what}: {message}")]
    Registry { role: Role, registry: String, status: u16, what: String, message: String },
    #[error("{what} has media type {media_type:?}, which testbed does not copy")]
    Unsupported { what: String, media_type: String },
    #[error("{what} is malformed: {detail}")]
    Malformed { what: String, detail: String },
    #[error("the index has no {platform} image (it has: {available})")]
    NoPlatform { platform: String, available: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl Error {
    pub(crate) fn new(image: &str, kind: ErrorKind) -> Error {
        Error { image: image.to_owned(), kind: Box::new(kind) }
    }
}
