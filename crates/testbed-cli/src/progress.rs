//! Progress per action while apply runs: spinners when stderr (where they draw) is a terminal, plain lines
//! otherwise.
//!
//! The lines that stay (each action's result, its failure and what to do next) are the run's report and go
//! to stdout, as Terraform's do; spinners and notices are for the person watching and go to stderr. While
//! spinners draw, everything else printed to the terminal (those lines, the Ctrl-C notice, tracing output)
//! goes through [`suspended`], which takes the spinners off the screen, prints, and draws them again below:
//! printed past them, it would be erased by their next redraw.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use testbed_exec::{Event, Outcome};
use testbed_plan::Op;
use testbed_provider::LogEntry;

use crate::style;

/// The spinners on screen, if any: what [`suspended`] takes off the screen.
static DRAWING: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `print` with the spinners (if any are drawing) taken off the screen, then draws them again.
pub fn suspended<R>(print: impl FnOnce() -> R) -> R {
    let multi = DRAWING.lock().ok().and_then(|m| m.clone());
    match multi {
        Some(m) => m.suspend(print),
        None => print(),
    }
}

/// A notice for the person at the terminal (stderr), kept on screen above the spinners.
pub fn notice(text: &str) {
    suspended(|| eprintln!("{text}"));
}

/// Where tracing writes: stderr, around the spinners.
pub struct TracingWriter;

impl Write for TracingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspended(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub struct Progress {
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
    color: bool,
}

fn verb(op: Op) -> (&'static str, &'static str) {
    match op {
        Op::Create => ("creating", "created"),
        Op::Update => ("updating", "updated"),
        Op::Replace => ("replacing", "replaced"),
        Op::Delete => ("deleting", "deleted"),
    }
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            if let Ok(mut d) = DRAWING.lock() {
                *d = Some(multi.clone());
            }
            (multi, Mutex::new(BTreeMap::new()))
        });
        Progress { bars, color: style::stdout() }
    }

    pub fn event(&self, e: &Event) {
        match (&self.bars, e) {
            (Some((_, bars)), Event::Log { address, entry: LogEntry::Progress(text) }) => {
                if let Some(bar) = bars.lock().ok().and_then(|m| m.get(address.as_str()).cloned()) {
                    bar.set_message(format!("{address}: {text}"));
                }
            }
            (bars, Event::Log { address, entry: LogEntry::Warning(text) }) => {
                let line = format!("{address}: {} {text}", style::paint("Warning:", "1;33", self.color));
                match bars {
                    Some((multi, _)) => multi.suspend(|| println!("{line}")),
                    None => println!("{line}"),
                }
            }
            (_, Event::Log { .. }) => {}
            (None, Event::Started { address, op }) => println!("{address}: {}...", verb(*op).0),
            (None, Event::Finished { address, op, outcome, duration }) => {
                println!("{}", finished(address.as_str(), *op, outcome, *duration, self.color))
            }
            (Some((multi, bars)), Event::Started { address, op }) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("{address}: {}", verb(*op).0));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut map) = bars.lock() {
                    map.insert(address.to_string(), bar);
                }
            }
            (Some((multi, bars)), Event::Finished { address, op, outcome, duration }) => {
                let line = finished(address.as_str(), *op, outcome, *duration, self.color);
                let bar = bars.lock().ok().and_then(|mut m| m.remove(address.as_str()));
                if let Some(b) = bar {
                    b.finish_and_clear();
                    multi.remove(&b);
                }
                multi.suspend(|| println!("{line}"));
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
            if let Ok(mut d) = DRAWING.lock() {
                *d = None;
            }
        }
    }
}

/// One action's result line; a failure with its hint on the next line.
pub fn finished(address: &str, op: Op, outcome: &Outcome, d: Duration, color: bool) -> String {
    let secs = d.as_secs_f64();
    match outcome {
        Outcome::Done => format!("{address}: {} ({secs:.1}s)", verb(op).1),
        Outcome::Failed { error } => {
            let hint = error.hint().map(|h| format!("\n    next: {h}")).unwrap_or_default();
            let failed = style::paint("FAILED", "1;31", color);
            format!("{address}: {failed} to {} after {secs:.1}s: {}{hint}", op.name(), message(address, error))
        }
        Outcome::Skipped { because } => format!("{address}: skipped, because {because} did not succeed"),
        Outcome::NotStarted => format!("{address}: not started (interrupted)"),
        Outcome::Interrupted => format!("{address}: aborted after {secs:.1}s (interrupted)"),
    }
}

/// A failed action's error, without the action's address when the error starts with it: the address is
/// already at the start of the line.
pub fn message(address: &str, error: &testbed_provider::ProviderError) -> String {
    let report = error.report().to_string();
    match report.strip_prefix(address).and_then(|r| r.strip_prefix(": ")) {
        Some(rest) => rest.to_owned(),
        None => report,
    }
}
