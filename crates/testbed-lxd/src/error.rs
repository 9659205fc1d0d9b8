//! What an LXD client error means for the LXD layer: the provider error, with what to do next.

use testbed_lxd_client::LxdError;
use testbed_provider::ProviderError;

/// An [`LxdError`] as the layer's provider error.
pub trait IntoProvider {
    /// As a provider error whose message is `context` and whose source is the LXD error, with what to do
    /// next.
    fn into_provider(self, context: &str) -> ProviderError;
}

impl IntoProvider for LxdError {
    fn into_provider(self, context: &str) -> ProviderError {
        let error = match &self {
            LxdError::NotInstalled { flavor, .. } => ProviderError::unavailable(context).with_hint(format!(
                "apply installs {flavor} first (host.packages) when the host layer is testbed's; if it is installed, start the {flavor} daemon (for the project's test daemon: cargo xtask testenv up), then apply again"
            )),
            LxdError::Unreachable { flavor, .. } => ProviderError::unavailable(context).with_hint(format!(
                "start the {flavor} daemon (for the project's test daemon: cargo xtask testenv up), then apply again"
            )),
            LxdError::Lost { flavor, .. } => ProviderError::unavailable(context).with_hint(format!(
                "once the {flavor} daemon answers again (for the project's test daemon: cargo xtask testenv up), apply again: the next apply observes what the interrupted step left and finishes it"
            )),
            LxdError::WrongDaemon { found, .. } => ProviderError::unavailable(context).with_hint(format!(
                "set [lxd] backend = \"{found}\" in the file, or point LXD_SOCKET/INCUS_SOCKET at the daemon you mean"
            )),
            LxdError::Busy { flavor, command, .. } => {
                ProviderError::state_unknown(context).with_hint(format!(
                    "{flavor} is still changing them (an apply that was stopped may have left its operations running; `{command} operation list` shows them): what they leave is unknown until they finish; plan or apply again then"
                ))
            }
            LxdError::Timeout { .. } => ProviderError::failed(context)
                .with_hint("check the daemon's log; a later apply picks up where this one stopped"),
            _ => ProviderError::failed(context),
        };
        error.caused_by(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::path::PathBuf;
    use testbed_provider::ErrorKind;

    #[test]
    fn the_lxd_error_is_the_source_and_the_text_is_as_before() {
        let lxd = LxdError::Unreachable {
            flavor: "LXD",
            socket: PathBuf::from("/var/snap/lxd/common/lxd/unix.socket"),
            reason: "connection refused".into(),
        };
        let flattened = format!("observing LXD: {lxd}");
        let e = lxd.into_provider("observing LXD");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.to_string(), "observing LXD");
        assert_eq!(e.report().to_string(), flattened);
        assert_eq!(
            e.report().to_string(),
            "observing LXD: LXD is not running or not reachable: cannot connect to /var/snap/lxd/common/lxd/unix.socket: connection refused"
        );
        let source = e.source().and_then(|s| s.downcast_ref::<LxdError>());
        assert!(
            matches!(source, Some(LxdError::Unreachable { reason, .. }) if reason == "connection refused"),
            "{e:?}"
        );
        assert!(e.hint().is_some_and(|h| h.contains("start the LXD daemon")), "{e:?}");
    }

    #[test]
    fn an_api_error_is_a_failure_with_its_cause() {
        let lxd =
            LxdError::Api { method: "PUT".into(), path: "/1.0/instances/m1".into(), code: 500, message: "boom".into() };
        let e = lxd.clone().into_provider("lxd_instance.m1 (member m1)");
        assert_eq!(e.kind(), ErrorKind::Failed);
        assert_eq!(e.report().to_string(), format!("lxd_instance.m1 (member m1): {lxd}"));
        assert!(e.source().is_some_and(|s| s.is::<LxdError>()));
    }
}
