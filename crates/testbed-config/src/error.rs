//! What can be wrong with a desired-state file, with the place in the file for each problem.

use std::ops::Range;

use miette::{Diagnostic, NamedSource, SourceSpan};
use thiserror::Error;

/// Loading or validating `testbed.toml` failed.
#[derive(Debug, Error, Diagnostic)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    #[diagnostic(
        code(testbed::config::read),
        help("pass the file with -c/--config PATH, or run testbed where testbed.toml is")
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// Malformed TOML, a wrong type, or an unknown key: the file could not be read as a testbed file.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(Box<Problem>),

    /// The file parsed but says something testbed cannot build.
    #[error("{path}: {} problem{} found", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    #[diagnostic(code(testbed::config::invalid), help("fix the lines shown, then run `testbed validate`"))]
    Invalid {
        path: String,
        #[related]
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem's one-line form (`file:line:col: message`), for tests and plain output.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { problems, .. } => problems.iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// One problem in the file, at its place.
#[derive(Debug, Error, Diagnostic)]
#[error("{location}: {message}")]
#[diagnostic(code(testbed::config::problem))]
pub struct Problem {
    /// `file:line:col`.
    pub location: String,
    pub message: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// Builds problems against one file's text.
pub(crate) struct Reporter<'a> {
    pub path: &'a str,
    pub map: &'a crate::source::SourceMap,
    pub problems: Vec<Problem>,
}

impl<'a> Reporter<'a> {
    pub fn location(&self, span: &Range<usize>) -> String {
        let (line, col) = self.map.line_col(span.start);
        format!("{}:{line}:{col}", self.path)
    }

    pub fn report(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        self.problems.push(Problem {
            location: self.location(&span),
            message: message.into(),
            src: NamedSource::new(self.path, self.map.text().to_owned()),
            span: (span.start, span.end.saturating_sub(span.start)).into(),
            label: label.into(),
            help,
        });
    }
}
