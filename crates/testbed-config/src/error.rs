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

    /// The file is not UTF-8: the problem is at its first bad byte.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Encoding(Box<Problem>),

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

/// How much of one line a problem shows: a longer line is cut to this many bytes around the problem (and
/// other long lines to their start), so that a problem far along a line (a generated file, a pasted
/// certificate) renders at all: the diagnostic renderer cannot indent past 65535 columns.
const WIDEST: usize = 240;

/// The file's text as a problem shows it, and the problem's span in that text: every line longer than
/// [`WIDEST`] is cut, the problem's own around the problem, with `…` where text was left out.
pub(crate) fn shown(path: &str, text: &str, span: &Range<usize>) -> (NamedSource<String>, SourceSpan) {
    if text.lines().all(|l| l.len() <= WIDEST) {
        return (NamedSource::new(path, text.to_owned()), (span.start, span.end.saturating_sub(span.start)).into());
    }
    let floor = |s: &str, mut i: usize| {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let ceil = |s: &str, mut i: usize| {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let mut out = String::new();
    let mut at = (span.start, span.end.saturating_sub(span.start));
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let (start, end) = (offset, offset + line.len());
        offset = end;
        let body = line.trim_end_matches(['\n', '\r']);
        let newline = &line[body.len()..];
        let holds = start <= span.start && (span.start < end || end == text.len());
        let base = out.len();
        if body.len() <= WIDEST {
            out.push_str(line);
            if holds {
                at = (base + (span.start - start), span.end.saturating_sub(span.start));
            }
            continue;
        }
        if holds {
            let rel_start = (span.start - start).min(body.len());
            let rel_end = span.end.saturating_sub(start).clamp(rel_start, body.len());
            let from = floor(body, rel_start.saturating_sub(WIDEST / 2));
            // At most WIDEST after the problem's start, however long the problem's own span is.
            let to = ceil(body, rel_end.clamp(rel_start + WIDEST / 2, rel_start + WIDEST));
            if from > 0 {
                out.push('…');
            }
            let shift = out.len() - base;
            out.push_str(&body[from..to]);
            if to < body.len() {
                out.push('…');
            }
            at = (base + shift + rel_start - from, rel_end.min(to) - rel_start);
        } else {
            out.push_str(&body[..floor(body, WIDEST)]);
            out.push('…');
        }
        out.push_str(newline);
    }
    (NamedSource::new(path, out), at.into())
}

/// A message or label as a problem shows it: a word longer than [`WIDEST`] (a long value the message quotes)
/// keeps its start and end with `…` between, so one problem stays a few lines.
pub(crate) fn brief(text: String) -> String {
    if text.split_whitespace().all(|w| w.len() <= WIDEST) {
        return text;
    }
    let mut out = String::with_capacity(WIDEST * 2);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let chars: Vec<char> = word.chars().collect();
        if word.len() > WIDEST && chars.len() > 100 {
            out.extend(&chars[..80]);
            out.push('…');
            out.extend(&chars[chars.len() - 20..]);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Builds problems against one file's text.
pub(crate) struct Reporter<'a> {
    pub path: &'a str,
    pub map: &'a crate::source::SourceMap,
    pub problems: Vec<Problem>,
    /// Starts of the values (and keys) already reported for a control character: one problem per value, so
    /// the field's own rule is not reported there again.
    pub tainted: std::collections::BTreeSet<usize>,
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
        if self.tainted.contains(&span.start) {
            return;
        }
        self.problems.push(problem(self.path, self.map.text(), span, message, label, help));
    }
}

/// A problem at `span` of a file's `text`, the file named `path` (`path:line:col` in its location): for
/// testbed.toml and for the YAML files a workload reads alike.
pub(crate) fn problem(
    path: &str,
    text: &str,
    span: Range<usize>,
    message: impl Into<String>,
    label: impl Into<String>,
    help: Option<String>,
) -> Problem {
    let (line, col) = crate::source::line_col(text, span.start);
    let (src, shown_span) = shown(path, text, &span);
    Problem {
        location: format!("{path}:{line}:{col}"),
        message: brief(message.into()),
        src,
        span: shown_span,
        label: brief(label.into()),
        help,
    }
}
