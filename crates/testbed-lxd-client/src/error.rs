//! What can go wrong talking to LXD.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Operations on instances were still running when the wait for them ended: what they will leave
    /// cannot be read yet.
    #[error("{flavor} was still carrying out operations on {} after {after:?} ({})", instances.join(", "), operations.join("; "))]
    Busy {
        flavor: &'static str,
        /// The daemon's command-line client (`lxc`, `incus`), for the hint.
        command: &'static str,
        instances: Vec<String>,
        operations: Vec<String>,
        after: Duration,
    },
}
