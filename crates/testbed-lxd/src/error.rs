//! What an LXD client error means for the LXD layer: the provider error, with what to do next.

use testbed_lxd_client::LxdError;
use testbed_provider::ProviderError;

/// An [`LxdError`] as the layer's provider error.
pub trait IntoProvider {
    /// As a provider error, with what to do next.
    fn into_provider(self, context: &str) -> ProviderError;
}

impl IntoProvider for LxdError {
    fn into_provider(self, context: &str) -> ProviderError {
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
