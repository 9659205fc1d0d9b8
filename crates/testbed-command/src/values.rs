//! Runtime values and secrets: filling a step's placeholders, and keeping secrets out of what is shown.

use std::collections::BTreeMap;
use std::time::Duration;

use testbed_provider::{ActionLog, ProviderError};
use testbed_steps::{quote, Arg, Step, Where};

use crate::runner::{CommandError, CommandRunner, Output};

#[derive(Clone)]
struct Value {
    text: String,
    secret: bool,
}

/// What an action learned while running: values for [`Arg::Runtime`] and [`Arg::Secret`] placeholders.
/// Secrets are redacted from every text that passes through [`Values::redact`]; `Debug` never shows them.
#[derive(Clone, Default)]
pub struct Values {
    by_name: BTreeMap<&'static str, Value>,
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.by_name {
            if v.secret {
                m.entry(k, &"<secret>");
            } else {
                m.entry(k, &v.text);
            }
        }
        m.finish()
    }
}

impl Values {
    pub fn new() -> Values {
        Values::default()
    }

    /// A value that may be shown (an address, a CA certificate hash).
    pub fn set(&mut self, name: &'static str, text: impl Into<String>) {
        self.by_name.insert(name, Value { text: text.into(), secret: false });
    }

    /// A value that must never be shown (a join token, a credential).
    pub fn set_secret(&mut self, name: &'static str, text: impl Into<String>) {
        self.by_name.insert(name, Value { text: text.into(), secret: true });
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|v| v.text.as_str())
    }

    /// The argument vector with every placeholder filled, or the name of the first value not learned yet.
    pub fn fill(&self, argv: &[Arg]) -> Result<Vec<String>, &'static str> {
        argv.iter()
            .map(|a| match a {
                Arg::Lit(s) => Ok(s.clone()),
                Arg::Runtime(n) | Arg::Secret(n) => self.get(n).map(str::to_owned).ok_or(*n),
            })
            .collect()
    }

    /// `text` with every secret value replaced by `<secret:name>`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, v) in &self.by_name {
            // Very short values would redact unrelated text and are not credentials anyway.
            if v.secret && v.text.len() >= 6 {
                out = out.replace(&v.text, &format!("<secret:{name}>"));
            }
        }
        out
    }
}

/// How a command is shown: placeholders for secrets, runtime values filled in (they are not secret).
fn shown(at: &Where, argv: &[Arg], values: &Values) -> String {
    let who = match at {
        Where::Host => "host".to_owned(),
        Where::Member(m) => m.clone(),
    };
    let args: Vec<String> = argv
        .iter()
        .map(|a| match a {
            Arg::Lit(s) => quote(s),
            Arg::Runtime(n) => values.get(n).map(quote).unwrap_or_else(|| format!("<{n}>")),
            Arg::Secret(n) => format!("<secret:{n}>"),
        })
        .collect();
    format!("{who}$ {}", args.join(" "))
}

/// Runs one [`Step::Run`] of the catalogue: fills its placeholders from `values`, logs the command (secrets
/// as placeholders) and its output (secrets redacted), and waits at most `timeout`.
///
/// With `must_succeed`, a non-zero exit is a failed [`ProviderError`] quoting the command's last line;
/// otherwise the output is returned whatever the exit code (for checks such as `iptables -C`).
pub async fn run_step(
    runner: &dyn CommandRunner,
    step: &Step,
    values: &Values,
    log: &ActionLog,
    timeout: Duration,
    must_succeed: bool,
) -> Result<Output, ProviderError> {
    let Step::Run { at, argv, .. } = step else {
        return Err(ProviderError::failed(format!("not a command: {step}")));
    };
    let line = shown(at, argv, values);
    let filled = values.fill(argv).map_err(|missing| {
        ProviderError::failed(format!("{line}: the value <{missing}> was not learned by an earlier step"))
    })?;
    let logged: Vec<String> = argv
        .iter()
        .zip(&filled)
        .map(|(a, f)| match a {
            Arg::Secret(n) => format!("<secret:{n}>"),
            _ => f.clone(),
        })
        .collect();
    let mut logged_with_place = vec![match at {
        Where::Host => "host$".to_owned(),
        Where::Member(m) => format!("{m}$"),
    }];
    logged_with_place.extend(logged);
    log.command(&logged_with_place);
    let out = runner.run(at, &filled, timeout).await.map_err(|e| command_error(&line, e, values))?;
    let printed = values.redact(format!("{}{}", out.stdout, out.stderr).trim_end());
    if !printed.is_empty() {
        log.output(printed);
    }
    if must_succeed && !out.success() {
        return Err(ProviderError::failed(values.redact(&format!(
            "`{}` failed (exit code {}): {}",
            line.split_once("$ ").map(|(_, c)| c).unwrap_or(&line),
            out.code,
            out.error_line()
        ))));
    }
    Ok(out)
}

fn command_error(line: &str, e: CommandError, values: &Values) -> ProviderError {
    // The command error is the whole message, redacted: it is not kept as a source, whose text would show
    // the secrets the redaction removes.
    let message = values.redact(&e.to_string());
    match e {
        CommandError::NotFound { program, .. } => ProviderError::precondition(message)
            .with_hint(format!("{program} comes with host.packages (or MicroK8s); apply it first")),
        CommandError::Timeout { .. } => ProviderError::failed(format!("{message} ({})", values.redact(line)))
            .with_hint("see the run log for the command's output so far; apply again to retry"),
        CommandError::Member { .. } => ProviderError::unavailable(message),
        CommandError::Spawn { .. } => ProviderError::failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::{Reply, ScriptedRunner};
    use std::sync::{Arc, Mutex};
    use testbed_provider::LogEntry;

    fn capture() -> (ActionLog, Arc<Mutex<Vec<LogEntry>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (ActionLog::new(move |e| s.lock().unwrap().push(e)), seen)
    }

    #[tokio::test]
    async fn secrets_reach_the_command_but_never_the_log_or_the_error() {
        let token = "abcdef.0123456789abcdef";
        let mut values = Values::new();
        values.set_secret("join-token", token);
        values.set("ca-cert-hash", "sha256:feed");
        let step = Step::Run {
            at: Where::Host,
            argv: vec![
                "karmadactl".into(),
                "register".into(),
                "--token".into(),
                Arg::Secret("join-token"),
                "--discovery-token-ca-cert-hash".into(),
                Arg::Runtime("ca-cert-hash"),
            ],
            role: testbed_steps::Role::Plain,
        };
        let runner = ScriptedRunner::new();
        runner.on(&["karmadactl", "register"], Reply::exit(1, &format!("error: token {token} is invalid")));
        let (log, seen) = capture();
        let err = run_step(&runner, &step, &values, &log, Duration::from_secs(5), true).await.unwrap_err();

        assert_eq!(runner.calls()[0].1[3], token, "the program gets the real token");
        let logged = format!("{:?}", seen.lock().unwrap());
        assert!(!logged.contains(token), "{logged}");
        assert!(logged.contains("<secret:join-token>") && logged.contains("sha256:feed"), "{logged}");
        assert!(!err.report().to_string().contains(token), "{err}", err = err.report());
        assert!(err.report().to_string().contains("exit code 1"), "{err}", err = err.report());
        assert!(!format!("{values:?}").contains(token));
    }

    #[tokio::test]
    async fn a_value_not_learned_yet_is_an_error_before_anything_runs() {
        let step = Step::Run {
            at: Where::Host,
            argv: vec!["karmadactl".into(), Arg::Secret("join-token")],
            role: testbed_steps::Role::Plain,
        };
        let runner = ScriptedRunner::new();
        let e = run_step(&runner, &step, &Values::new(), &ActionLog::discard(), Duration::from_secs(1), true)
            .await
            .unwrap_err();
        assert!(e.report().to_string().contains("<join-token> was not learned"), "{e}", e = e.report());
        assert!(runner.calls().is_empty());
    }
}
