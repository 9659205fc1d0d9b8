//! Progress per action while apply runs: spinners on a terminal, plain lines otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use testbed_exec::{Event, Outcome};
use testbed_plan::Op;
use testbed_provider::LogEntry;

pub struct Progress {
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
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
    /// Bars when stdout is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let bars = std::io::stdout().is_terminal().then(|| (MultiProgress::new(), Mutex::new(BTreeMap::new())));
        Progress { bars }
    }

    pub fn event(&self, e: &Event) {
        match (&self.bars, e) {
            (Some((_, bars)), Event::Log { address, entry: LogEntry::Progress(text) }) => {
                if let Some(bar) = bars.lock().ok().and_then(|m| m.get(address.as_str()).cloned()) {
                    bar.set_message(format!("{address}: {text}"));
                }
            }
            (_, Event::Log { .. }) => {}
            (None, Event::Started { address, op }) => println!("{address}: {}...", verb(*op).0),
            (None, Event::Finished { address, op, outcome, duration }) => {
                println!("{}", finished(address.as_str(), *op, outcome, *duration))
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
                let line = finished(address.as_str(), *op, outcome, *duration);
                let bar = bars.lock().ok().and_then(|mut m| m.remove(address.as_str()));
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let _ = multi.println(line);
            }
        }
    }
}

fn finished(address: &str, op: Op, outcome: &Outcome, d: Duration) -> String {
    let secs = d.as_secs_f64();
    match outcome {
        Outcome::Done => format!("{address}: {} ({secs:.1}s)", verb(op).1),
        Outcome::Failed { error } => {
            let hint = error.hint().map(|h| format!("\n    next: {h}")).unwrap_or_default();
            format!("{address}: FAILED to {} after {secs:.1}s: {}{hint}", op.name(), error.report())
        }
        Outcome::Skipped { because } => format!("{address}: skipped, because {because} did not succeed"),
        Outcome::NotStarted => format!("{address}: not started (interrupted)"),
        Outcome::Interrupted => format!("{address}: aborted after {secs:.1}s (interrupted)"),
    }
}
