//! What can go wrong opening or saving the simulated machine, or reading its settings.

use std::path::PathBuf;

/// An error of the simulated machine itself (not of a simulated step: those are `ProviderError`s).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "cannot read the simulated machine's state file {}: {source}; check its permissions, or delete it to start from an empty simulated machine",
        path.display()
    )]
    Read { path: PathBuf, source: std::io::Error },

    #[error(
        "the simulated machine's state file {} is corrupted ({detail}); delete it to start from an empty simulated machine",
        path.display()
    )]
    Corrupted { path: PathBuf, detail: String },

    #[error(
        "the simulated machine's state file {} has format {found}, and this testbed reads format {expected}; delete it to start from an empty simulated machine",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf, found: String, expected: u32 },

    #[error("cannot save the simulated machine's state to {}: {source}", path.display())]
    Save { path: PathBuf, source: std::io::Error },

    #[error("cannot start {what}: {source}")]
    Runtime { what: &'static str, source: std::io::Error },

    #[error("{name}={value:?}: {reason}")]
    BadSetting { name: String, value: String, reason: String },
}
