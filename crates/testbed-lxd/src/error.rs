//! What can go wrong talking to LXD.

use std::path::PathBuf;
use std::time::Duration;

use testbed_provider::ProviderError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LxdError {
    #[error("{flavor} is not installed or not running: no socket at {}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotInstalled { flavor: &'static str, tried: Vec<PathBuf> },
    #[error("{flavor} is not running or not reachable: cannot connect to {}: {reason}", socket.display())]
    Unreachable { flavor: &'static str, socket: PathBuf, reason: String },
    /// Connected, then the connection broke before the answer came: the daemon stopped or restarted while
    /// handling `request` (which it may have carried out anyway).
    #[error("{flavor} is not reachable: the connection to {} broke during {request} ({reason}); the daemon stopped or restarted", socket.display())]
    Lost { flavor: &'static str, socket: PathBuf, request: String, reason: String },
    #[error("{method} {path}: {message} (HTTP {code})")]
    Api { method: String, path: String, code: u16, message: String },
    #[error("the daemon at {} is {found}, but the file says [lxd] backend = \"{expected}\"", socket.display())]
    WrongDaemon { socket: PathBuf, found: String, expected: String },
    #[error("{path}: {reason}")]
    Http { path: String, reason: String },
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
}

impl LxdError {
    /// As a provider error, with what to do next.
    pub fn into_provider(self, context: &str) -> ProviderError {
        match &self {
            LxdError::NotInstalled { flavor, .. } => ProviderError::Unavailable {
                message: format!("{context}: {self}"),
                hint: Some(format!(
                    "apply installs {flavor} first (host.packages) when the host layer is testbed's; if it is installed, start the {flavor} daemon (for the project's test daemon: cargo xtask testenv up), then apply again"
                )),
            },
            LxdError::Unreachable { flavor, .. } => ProviderError::Unavailable {
                message: format!("{context}: {self}"),
                hint: Some(format!(
                    "start the {flavor} daemon (for the project's test daemon: cargo xtask testenv up), then apply again"
                )),
            },
            LxdError::Lost { flavor, .. } => ProviderError::Unavailable {
                message: format!("{context}: {self}"),
                hint: Some(format!(
                    "once the {flavor} daemon answers again (for the project's test daemon: cargo xtask testenv up), apply again: the next apply observes what the interrupted step left and finishes it"
                )),
            },
            LxdError::WrongDaemon { found, .. } => ProviderError::Unavailable {
                message: format!("{context}: {self}"),
                hint: Some(format!("set [lxd] backend = \"{found}\" in the file, or point LXD_SOCKET/INCUS_SOCKET at the daemon you mean")),
            },
            LxdError::Timeout { .. } => ProviderError::Failed {
                message: format!("{context}: {self}"),
                hint: Some("check the daemon's log; a later apply picks up where this one stopped".into()),
            },
            _ => ProviderError::failed(format!("{context}: {self}")),
        }
    }
}
