//! What the command line reports when it cannot go on: what went wrong, where, and what to do next.

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum CliError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] testbed_config::ConfigError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Drill(#[from] crate::drill::DrillError),

    #[error("{0}")]
    #[diagnostic(code(testbed::plan::conflict), help("testbed only changes what it created; nothing was changed"))]
    Plan(#[from] testbed_plan::PlanError),

    /// The simulated machine's state file or its settings (`TESTBED_SIM_*`): each says which, and what to do.
    #[error(transparent)]
    #[diagnostic(code(testbed::sim))]
    Sim(#[from] testbed_sim::SimError),

    #[error("{path}: {source}")]
    #[diagnostic(code(testbed::io))]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{} is locked by another testbed run: {}", world, holder.as_deref().unwrap_or("one that is just starting"))]
    #[diagnostic(
        code(testbed::locked),
        help("{}wait for it to finish, or pass --lock-timeout 10m to wait for it; the lock is {} and goes away with its holder", if waited.is_zero() { String::new() } else { format!("waited {}; ", humantime::format_duration(*waited)) }, path.display())
    )]
    Locked { world: String, path: PathBuf, holder: Option<String>, waited: std::time::Duration },

    #[error("{message}")]
    #[diagnostic(code(testbed::usage))]
    Usage {
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error("pre-flight: {count} problem{} on this host would make apply fail; nothing was changed", if *count == 1 { "" } else { "s" })]
    #[diagnostic(code(testbed::preflight), help("fix what is listed above, then run apply again"))]
    Preflight { count: usize },

    #[error("refusing to {what} without confirmation: there is no terminal to ask on")]
    #[diagnostic(code(testbed::confirm), help("review `testbed plan`, then run again with --yes"))]
    NoTerminal { what: &'static str },

    #[error("{what} cancelled; nothing was changed")]
    #[diagnostic(code(testbed::cancelled))]
    Declined { what: &'static str },
}

impl CliError {
    pub fn io(path: &Path, source: std::io::Error) -> CliError {
        CliError::Io { path: path.to_path_buf(), source }
    }

    pub fn usage(message: impl Into<String>, help: Option<String>) -> CliError {
        CliError::Usage { message: message.into(), help }
    }
}
