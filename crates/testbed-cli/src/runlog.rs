//! The complete log of an apply or destroy under `.testbed/logs/`: each action, each command with its
//! output, and timings.
//!
//! Each event is written to the file as it happens, in one write, unbuffered: a run that is killed leaves
//! a log that says everything up to the moment it died.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use testbed_exec::{Event, Outcome};
use testbed_provider::LogEntry;

use crate::error::CliError;

pub struct RunLog {
    path: PathBuf,
    started: Instant,
    out: Mutex<File>,
}

impl RunLog {
    /// Creates `dir/logs/<UTC time>-<what>.log`.
    pub fn create(dir: &Path, what: &str) -> Result<RunLog, CliError> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| CliError::io(&logs, e))?;
        let stamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string().replace(':', "");
        let mut path = logs.join(format!("{stamp}-{what}.log"));
        let mut n = 1;
        while path.exists() {
            path = logs.join(format!("{stamp}-{what}-{n}.log"));
            n += 1;
        }
        let file = File::create(&path).map_err(|e| CliError::io(&path, e))?;
        Ok(RunLog { path, started: Instant::now(), out: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes lines as they are, without a time prefix.
    pub fn raw(&self, text: &str) {
        let mut block = text.to_owned();
        if !block.ends_with('\n') {
            block.push('\n');
        }
        self.write(&block);
    }

    fn line(&self, text: &str) {
        let t = self.started.elapsed().as_secs_f64();
        let block: String = text.lines().map(|l| format!("[{t:>9.3}s] {l}\n")).collect();
        self.write(&block);
    }

    /// One write per event, so that lines from actions running at once never interleave mid-line.
    fn write(&self, block: &str) {
        if let Ok(mut w) = self.out.lock() {
            let _ = w.write_all(block.as_bytes());
        }
    }

    pub fn event(&self, e: &Event) {
        match e {
            Event::Started { address, op } => self.line(&format!("start   {} {address}", op.name())),
            Event::Log { address, entry } => match entry {
                LogEntry::Command(argv) => self.line(&format!("{address}: $ {}", display_argv(argv))),
                LogEntry::Api { method, path } => self.line(&format!("{address}: {method} {path}")),
                LogEntry::Output(out) => {
                    self.line(&out.lines().map(|l| format!("{address}: | {l}")).collect::<Vec<_>>().join("\n"))
                }
                LogEntry::Note(n) => self.line(&format!("{address}: {n}")),
                LogEntry::Warning(w) => self.line(&format!("{address}: warning: {w}")),
                // Live progress is for the terminal; the step's own notes say what it did.
                LogEntry::Progress(_) => {}
            },
            Event::Finished { address, op, outcome, duration } => {
                let d = duration.as_secs_f64();
                let what = match outcome {
                    Outcome::Done => format!("done    {} {address} in {d:.3}s", op.name()),
                    Outcome::Failed { error } => {
                        let hint = error.hint().map(|h| format!(" (next: {h})")).unwrap_or_default();
                        format!("FAILED  {} {address} after {d:.3}s: {}{hint}", op.name(), error.report())
                    }
                    Outcome::Skipped { because } => {
                        format!("skipped {} {address}: {because} did not succeed", op.name())
                    }
                    Outcome::NotStarted => format!("not started {} {address}: interrupted", op.name()),
                    Outcome::Interrupted => format!("aborted {} {address} after {d:.3}s", op.name()),
                };
                self.line(&what);
            }
        }
    }

    /// Makes the log durable: on disk, not only in the kernel's cache.
    pub fn finish(&self) {
        if let Ok(w) = self.out.lock() {
            let _ = w.sync_data();
        }
    }
}

/// An argument vector shown for reading: each argument that needs it is single-quoted. Only for display;
/// testbed never hands such a string to a shell.
pub fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_shell_metacharacters_are_quoted_for_display() {
        let argv = vec!["lxc".to_owned(), "launch".into(), "a b;rm".into(), "it's".into()];
        assert_eq!(display_argv(&argv), r"lxc launch 'a b;rm' 'it'\''s'");
    }
}
