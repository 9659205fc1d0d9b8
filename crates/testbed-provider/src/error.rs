//! Why an action or an observation failed: [`ProviderError`], its [`ErrorKind`], and [`ResultExt`] to
//! give a foreign error its context.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What kind of failure a [`ProviderError`] is: the plan, the executor and the CLI decide by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The step cannot run yet: what it needs is not there (as the real tool would fail).
    Precondition,
    /// The step ran and failed.
    Failed,
    /// The layer cannot be reached at all (daemon not running, not installed yet): taken to be absent.
    Unavailable,
    /// The layer is there but its state cannot be read now (an API that does not answer although its
    /// kubeconfig exists): the plan leaves its resources alone rather than guess.
    StateUnknown,
    /// Stopped by the user (a second Ctrl-C).
    Interrupted,
}

/// The cause of a [`ProviderError`]: shared, so that the error stays `Clone` (a run's report and its log
/// both hold it).
type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// Why an action or an observation failed, with what to do next.
///
/// It is a [`kind`](Self::kind), this layer's own [`message`](Self::message) (what it was doing, or what
/// went wrong, in its words), an optional [`hint`](Self::hint) (the next step for the user), and the
/// error that caused it, if any, as its [`source`](Error::source): an LXD client error, an I/O error, a
/// Kubernetes client error, or a lower layer's `ProviderError`. Build one with [`failed`](Self::failed)
/// and its siblings, [`with_hint`](Self::with_hint) and [`caused_by`](Self::caused_by), or from a `Result`
/// with [`ResultExt::context`].
///
/// `Display` shows the message only, as the Rust convention has it for an error with a source; whatever
/// shows an error to a person (the CLI, the run log, an unobservable layer in the plan) prints
/// [`report`](Self::report), the message followed by its causes.
///
/// # Guarantees
/// - The report never loses a cause: each cause is rendered after the message, separated by `": "`, so
///   an error built as `failed(ctx).caused_by(e)` reads exactly as the `format!("{ctx}: {e}")` it replaces.
/// - The cause is kept as it was: [`Error::source`] returns it, and `downcast_ref` finds its concrete type.
/// - [`hint`](Self::hint) finds a hint given to this error or to a `ProviderError` that caused it.
///
/// # Caveats
/// - A foreign cause is rendered by its own `Display`, which by convention already shows its causes
///   (`io::Error`, thiserror's `{0}`), so the report does not walk below it; a lower `ProviderError` is
///   walked, since its `Display` shows its message only.
/// - A cause whose text the report already shows (a message that quotes the error in its own words) is
///   not repeated.
/// - Equality compares the cause by its text: two errors with causes of different types that read the
///   same are equal.
#[derive(Debug, Clone)]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    source: Option<Cause>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError { kind, message: message.into(), hint: None, source: None }
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        ProviderError::new(ErrorKind::Precondition, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        ProviderError::new(ErrorKind::Failed, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ProviderError::new(ErrorKind::Unavailable, message)
    }

    pub fn state_unknown(message: impl Into<String>) -> Self {
        ProviderError::new(ErrorKind::StateUnknown, message)
    }

    pub fn interrupted() -> Self {
        ProviderError::new(ErrorKind::Interrupted, "interrupted")
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps `cause` as this error's source; the kind, message and hint stay.
    pub fn caused_by(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    /// This error as the cause of a new one of the same kind, whose message says what this layer was doing
    /// (`"{message}: {self}"` in the report). The hint stays reachable through [`hint`](Self::hint).
    pub fn context(self, message: impl Into<String>) -> Self {
        ProviderError::new(self.kind, message).caused_by(self)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// This error's own words, without its causes (see [`report`](Self::report)).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The next step to try, if the provider knows one: this error's own, else that of the
    /// `ProviderError` that caused it.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref().or_else(|| self.provider_cause()?.hint())
    }

    /// The whole error as a person reads it: the message, then each cause, `": "` between them.
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }

    fn provider_cause(&self) -> Option<&ProviderError> {
        self.source.as_deref()?.downcast_ref::<ProviderError>()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ProviderError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        // The cause itself, not the `Arc` around it, so that `downcast_ref` finds its type.
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl PartialEq for ProviderError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.message == other.message
            && self.hint == other.hint
            && self.source.as_ref().map(ToString::to_string) == other.source.as_ref().map(ToString::to_string)
    }
}

impl Eq for ProviderError {}

/// A [`ProviderError`] with its causes, as [`ProviderError::report`] renders it.
pub struct Report<'a>(&'a ProviderError);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rendered into a string first: a cause the text so far already quotes is left out.
        let mut text = self.0.message.clone();
        let mut cause = self.0.source.as_deref();
        while let Some(c) = cause {
            let (words, next) = match c.downcast_ref::<ProviderError>() {
                Some(p) => (p.message.clone(), p.source.as_deref()),
                None => (c.to_string(), None),
            };
            if !words.is_empty() && !text.contains(&words) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&words);
            }
            cause = next;
        }
        f.write_str(&text)
    }
}

/// Gives a foreign error the context of the layer it failed in.
pub trait ResultExt<T> {
    /// The error as the source of a [`ProviderError`] of `kind` whose message says what was being done:
    /// `read(path).context(ErrorKind::Failed, format!("cannot read {path}"))`.
    fn context(self, kind: ErrorKind, message: impl Into<String>) -> Result<T, ProviderError>;
}

impl<T, E: Error + Send + Sync + 'static> ResultExt<T> for Result<T, E> {
    fn context(self, kind: ErrorKind, message: impl Into<String>) -> Result<T, ProviderError> {
        self.map_err(|e| ProviderError::new(kind, message).caused_by(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn io_error() -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, "permission denied")
    }

    #[test]
    fn source_is_the_cause_itself() {
        let e = ProviderError::failed("cannot write /etc/x").caused_by(io_error());
        let source = e.source().expect("a source");
        let io = source.downcast_ref::<io::Error>().expect("the io::Error, not a wrapper");
        assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
        assert!(ProviderError::failed("no cause").source().is_none());
    }

    #[test]
    fn display_is_the_message_and_the_report_renders_the_chain_once() {
        let e = ProviderError::failed("applying x")
            .caused_by(ProviderError::unavailable("observing LXD").caused_by(io_error()));
        assert_eq!(e.to_string(), "applying x");
        assert_eq!(e.report().to_string(), "applying x: observing LXD: permission denied");
        // A message that quotes its cause does not get it twice.
        let quoted = ProviderError::failed("port 80 is in use (permission denied)").caused_by(io_error());
        assert_eq!(quoted.report().to_string(), "port 80 is in use (permission denied)");
        assert_eq!(ProviderError::interrupted().report().to_string(), "interrupted");
    }

    #[test]
    fn context_reads_as_the_flattened_text_did() {
        let r: Result<(), io::Error> = Err(io_error());
        let e = r.context(ErrorKind::StateUnknown, "host.firewall").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StateUnknown);
        assert_eq!(e.message(), "host.firewall");
        assert_eq!(e.report().to_string(), format!("host.firewall: {}", io_error()));

        let wrapped =
            ProviderError::precondition("nft is not installed").with_hint("install it").context("host.firewall");
        assert_eq!(wrapped.kind(), ErrorKind::Precondition);
        assert_eq!(wrapped.report().to_string(), "host.firewall: nft is not installed");
        assert_eq!(wrapped.hint(), Some("install it"));
    }

    #[test]
    fn a_hint_survives_caused_by() {
        let e = ProviderError::unavailable("observing LXD").with_hint("start the daemon").caused_by(io_error());
        assert_eq!(e.hint(), Some("start the daemon"));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        // Its own hint comes before its cause's.
        let outer = ProviderError::failed("x").with_hint("mine").caused_by(e.clone());
        assert_eq!(outer.hint(), Some("mine"));
        assert_eq!(ProviderError::failed("x").caused_by(e).hint(), Some("start the daemon"));
    }

    #[test]
    fn equality_covers_the_cause_text() {
        let a = ProviderError::failed("x").caused_by(io_error());
        assert_eq!(a, a.clone());
        assert_ne!(a, ProviderError::failed("x"));
        assert_ne!(a, ProviderError::failed("x").caused_by(io::Error::other("other")));
        assert_ne!(ProviderError::failed("x"), ProviderError::failed("x").with_hint("h"));
    }
}
