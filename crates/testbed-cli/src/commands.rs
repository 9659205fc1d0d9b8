//! The subcommands. Each returns the process exit code or an error that main renders.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use testbed_exec::{execute, ExecOptions, Interrupt};
use testbed_plan::{render, Plan};

use crate::cli::{Cli, LockWait, RunArgs};
use crate::error::CliError;
use crate::progress::{self, Progress};
use crate::runlog::RunLog;
use crate::session::{Goal, Planned, Session};
use crate::style;

/// Which layers are simulated, or that all are real: every run says so.
fn banner(session: &Session) {
    eprintln!("{}", session.simulation_banner());
}

/// The plan as text for stdout: coloured when stdout takes colour, in destroy's words for a destroy.
fn plan_text(plan: &Plan, goal: Goal) -> String {
    render::text_styled(plan, render::TextStyle { color: style::stdout(), destroy: goal == Goal::Destroy })
}

/// What a destroy leaves in place (said with what it destroys).
fn print_kept(plan: &Plan, kept: &[String]) {
    if !plan.is_empty() && !kept.is_empty() {
        println!("\nKept: destroy leaves these in place:");
        for k in kept {
            println!("    {k}");
        }
    }
}

/// A run limited by --target may leave the machine half-way: said as Terraform says it.
fn warn_targeted(targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    let warning = style::paint("Warning:", "1;33", style::stderr());
    eprintln!(
        "\n{warning} --target is in effect: only {} and what {} need{} are planned, so the result may be \
         partial.\n    Use it to repair or rehearse one part; run without --target to bring the whole file \
         about.\n",
        targets.join(", "),
        if targets.len() == 1 { "it" } else { "they" },
        if targets.len() == 1 { "s" } else { "" },
    );
}

/// Prints what the host pre-flight found; returns how many findings would make apply fail.
fn report_preflight(findings: &[testbed_host::preflight::Finding]) -> usize {
    for f in findings {
        let what = if f.blocking { "blocking" } else { "warning" };
        eprintln!("Pre-flight {what}: {}", f.message);
        if let Some(h) = &f.hint {
            eprintln!("  next: {h}");
        }
    }
    findings.iter().filter(|f| f.blocking).count()
}

pub async fn plan(cli: &Cli, json: bool, detailed: bool, targets: &[String]) -> Result<ExitCode, CliError> {
    let session = Session::open(cli)?;
    if !json {
        banner(&session);
    }
    let Planned { plan, findings, .. } = session.plan_checked(Goal::Converge, targets).await?;
    if json {
        let simulated: Vec<&str> = session.simulated.iter().map(|l| l.name()).collect();
        print!("{}", render::json_simulated(&plan, &simulated));
    } else {
        report_preflight(&findings);
        warn_targeted(targets);
        print!("{}", plan_text(&plan, Goal::Converge));
    }
    Ok(if detailed && !plan.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

pub async fn graph(cli: &Cli, targets: &[String]) -> Result<ExitCode, CliError> {
    let session = Session::open(cli)?;
    let plan = session.plan(Goal::Converge, targets).await?;
    print!("{}", render::dot(&plan));
    Ok(ExitCode::SUCCESS)
}

pub fn validate(cli: &Cli) -> Result<ExitCode, CliError> {
    let config = testbed_config::load(&cli.config)?;
    let objects: usize = config.workloads.iter().map(|w| w.objects.len()).sum();
    println!(
        "{} is valid: {} member{}, {} image{} listed, {} application prox{}, {} workload{} ({} object{}).",
        cli.config.display(),
        config.file.members.len(),
        if config.file.members.len() == 1 { "" } else { "s" },
        config.file.images.len(),
        if config.file.images.len() == 1 { "" } else { "s" },
        config.file.proxies.len(),
        if config.file.proxies.len() == 1 { "y" } else { "ies" },
        config.workloads.len(),
        if config.workloads.len() == 1 { "" } else { "s" },
        objects,
        if objects == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}

pub fn schema() -> Result<ExitCode, CliError> {
    let text = serde_json::to_string_pretty(&testbed_config::schema())
        .map_err(|e| CliError::usage(format!("cannot print the schema: {e}"), None))?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `apply --dry-run` / `destroy --dry-run`: the plan, then each action's steps in the order they would run.
/// Reads only; takes no lock and asks nothing.
pub async fn dry_run(cli: &Cli, goal: Goal, targets: &[String]) -> Result<ExitCode, CliError> {
    let session = Session::open(cli)?;
    banner(&session);
    let Planned { plan, findings, kept } = session.plan_checked(goal, targets).await?;
    report_preflight(&findings);
    warn_targeted(targets);
    print!("{}", plan_text(&plan, goal));
    print_kept(&plan, &kept);
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let cx = testbed_steps::Context::new(&session.config);
    println!("\nDry run: nothing is changed. Each action, in order, with what it would run");
    println!("(<name> is a value learned while applying; <secret:name> is never shown or logged):\n");
    for a in plan.actions() {
        let half = if a.replace { ", half of a replace" } else { "" };
        println!("{} {} ({}{half})", a.op.symbol(), a.address, a.op.name());
        match &a.cascade {
            Some(c) => println!("    goes with {c}: nothing of its own to run"),
            None => {
                let steps = testbed_steps::steps(a, &cx);
                if steps.is_empty() {
                    println!("    nothing to run");
                }
                for s in steps {
                    // A step that shows a body (an object applied) continues on lines of its own, indented under it.
                    let text = s.to_string();
                    let mut lines = text.lines();
                    println!("    {}", lines.next().unwrap_or_default());
                    for line in lines {
                        println!("        {line}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies the plan towards `goal`: converge (apply) or destroy.
pub async fn run(cli: &Cli, goal: Goal, args: &RunArgs) -> Result<ExitCode, CliError> {
    let RunArgs { yes, parallelism, target: targets, lock: LockWait { lock_timeout }, .. } = args;
    let what = match goal {
        Goal::Converge => "apply",
        Goal::Destroy => "destroy",
    };
    if *parallelism == 0 {
        return Err(CliError::usage("--parallelism must be at least 1", None));
    }
    let (session, locks) = Session::open_locked(cli, what, *lock_timeout)?;
    for n in &locks.notes {
        eprintln!("Note: {n}");
    }
    banner(&session);
    let Planned { plan, findings, kept } = session.plan_checked(goal, targets).await?;
    let blocking = report_preflight(&findings);
    warn_targeted(targets);
    print!("{}", plan_text(&plan, goal));
    print_kept(&plan, &kept);
    if plan.is_empty() {
        print_next(&session, goal, targets);
        return Ok(unfinished(goal, &plan).unwrap_or(ExitCode::SUCCESS));
    }
    if blocking > 0 {
        return Err(CliError::Preflight { count: blocking });
    }
    confirm(*yes, goal)?;

    let log = Arc::new(RunLog::create(&session.state_dir, what)?);
    crate::session::prune_logs(&session.state_dir.join("logs"), crate::session::LOGS_KEPT);
    log.raw(&format!(
        "testbed {} {what}\nconfig: {}\n{}\n\n{}",
        env!("CARGO_PKG_VERSION"),
        session.config.path.display(),
        session.simulation_banner(),
        render::text(&plan)
    ));

    let estimates = session.providers.clone();
    let options = ExecOptions::new(*parallelism)
        .with_estimate(move |a| estimates.expected_duration(a).unwrap_or(std::time::Duration::from_secs(1)));
    let interrupt = Interrupt::new();
    interrupt.listen_for_signals();
    let mut presses = interrupt.subscribe();
    // Printed around the spinners, so that their next redraw does not erase it.
    tokio::spawn(async move {
        while presses.changed().await.is_ok() {
            let count = *presses.borrow();
            match count {
                1 => progress::notice(
                    "\nInterrupt: starting no new actions; running ones finish. Press Ctrl-C again to abort them.",
                ),
                _ => progress::notice("\nInterrupt: aborting running actions."),
            }
        }
    });
    let progress = Arc::new(Progress::new());
    let sink = {
        let log = Arc::clone(&log);
        let progress = Arc::clone(&progress);
        move |e: testbed_exec::Event| {
            log.event(&e);
            progress.event(&e);
        }
    };
    let runner: Arc<dyn testbed_provider::ActionRunner> = Arc::new(session.providers.clone());
    let report = execute(&plan, runner, &options, &interrupt, sink).await;
    drop(progress);

    let summary = report.summary_line(match goal {
        Goal::Converge => "Apply",
        Goal::Destroy => "Destroy",
    });
    log.raw(&format!("\n{summary}\nmakespan: {:.3}s", report.makespan.as_secs_f64()));
    log.finish();
    println!();
    println!("{summary}");
    print_errors(&report);
    if !report.success() {
        println!("Run `testbed {what}` again to pick up what is left; the log is {}", log.path().display());
        // Stopped by Ctrl-C or SIGTERM: the shell's code for a run the signal ended (130, 143), as scripts expect.
        if let Some(status) = interrupt.signal_exit_status() {
            return Ok(ExitCode::from(status));
        }
        return Ok(ExitCode::FAILURE);
    }
    println!("Log: {}", log.path().display());
    print_next(&session, goal, targets);
    Ok(unfinished(goal, &plan).unwrap_or(ExitCode::SUCCESS))
}

/// After an apply of the whole file that left nothing to do: how to reach the clusters and the app proxies.
fn print_next(session: &Session, goal: Goal, targets: &[String]) {
    if goal != Goal::Converge || !targets.is_empty() {
        return;
    }
    let steps = crate::kubeconfig::next_steps(session);
    let width = steps.iter().map(|(s, _)| s.chars().count()).max().unwrap_or(0);
    println!("\nNext:");
    for (step, what) in &steps {
        match what {
            Some(w) => println!("  {step:<width$}  # {w}"),
            None => println!("  {step}"),
        }
    }
    if session.simulated.contains(&testbed_plan::Layer::Microk8s)
        || session.simulated.contains(&testbed_plan::Layer::Karmada)
    {
        println!("  (Simulated: these contexts and proxies are the simulated machine's; they reach no real cluster.)");
    }
}

/// A destroy that kept something testbed owns, because something it does not own uses it, has not
/// finished: it says so after its summary and exits 1, so that a script does not take the machine for clean.
fn unfinished(goal: Goal, plan: &testbed_plan::Plan) -> Option<ExitCode> {
    if goal != Goal::Destroy || plan.kept.is_empty() {
        return None;
    }
    println!(
        "Destroy is not finished: {} that testbed owns {} kept, because something it does not own uses {} or \
         what needs {}. See the notes above for what to do, then run `testbed destroy` again.",
        if plan.kept.len() == 1 { "1 resource".to_owned() } else { format!("{} resources", plan.kept.len()) },
        if plan.kept.len() == 1 { "is" } else { "are" },
        if plan.kept.len() == 1 { "it" } else { "them" },
        if plan.kept.len() == 1 { "it" } else { "them" },
    );
    Some(ExitCode::FAILURE)
}

/// Each failed action again, after the summary, with what to do next: the lines scrolled by long ago.
fn print_errors(report: &testbed_exec::Report) {
    let failed: Vec<_> = report
        .actions
        .iter()
        .filter_map(|a| match &a.outcome {
            testbed_exec::Outcome::Failed { error } => Some((a, error)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        return;
    }
    let color = style::stdout();
    println!("\n{}", style::paint("Errors:", "1;31", color));
    for (a, error) in failed {
        println!(
            "\n  {}: {}",
            style::paint(a.address.as_str(), "1", color),
            progress::message(a.address.as_str(), error)
        );
        if let Some(h) = error.hint() {
            println!("    next: {h}");
        }
    }
    println!();
}

/// Asks on the terminal (never on stdout, which may be a file): the question goes to /dev/tty, or to
/// stderr when that is a terminal; the answer is read from the terminal on stdin.
fn confirm(yes: bool, goal: Goal) -> Result<(), CliError> {
    let what = match goal {
        Goal::Converge => "apply",
        Goal::Destroy => "destroy",
    };
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::NoTerminal { what });
    }
    let question = match goal {
        Goal::Converge => "\nApply all of the above? Only 'yes' will be accepted: ",
        Goal::Destroy => "\nDestroy all of the above? There is no undo. Only 'yes' will be accepted: ",
    };
    let asked = match std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        Ok(mut tty) => tty.write_all(question.as_bytes()).and_then(|()| tty.flush()).is_ok(),
        Err(_) => false,
    };
    if !asked {
        if !std::io::stderr().is_terminal() {
            return Err(CliError::NoTerminal { what });
        }
        eprint!("{question}");
        let _ = std::io::stderr().flush();
    }
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| CliError::io(Path::new("<stdin>"), e))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::Declined { what })
    }
}
