//! `testbed`: the command-line entry point. Parses arguments, sets up tracing and diagnostics, and runs one
//! subcommand. Exit codes: 0 success, 1 error or failed actions (a usage error too), 2 changes pending
//! (`plan --detailed-exitcode`) or a lab not as the file wants (`status`), 130 and 143 an apply or destroy stopped by Ctrl-C or SIGTERM.

mod cli;
mod commands;
mod doctor;
mod drill;
mod error;
mod kubeconfig;
mod lock;
mod progress;
mod runlog;
mod session;
mod status;
mod style;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use cli::{Cli, Command};
use session::Goal;

fn init_tracing(verbose: u8) {
    // kube's client logs every answer of 500 and up as an ERROR of its own; testbed reports the failures
    // that matter in its own words (a wait for Ready polls through many), so they are shown from -vv on.
    let default = match verbose {
        0 => "warn,kube_client=off",
        1 => "warn,kube_client=off,testbed_cli=debug,testbed_exec=debug,testbed_sim=debug,testbed_provider=debug",
        _ => "debug,testbed_cli=trace,testbed_exec=trace,testbed_sim=trace,testbed_provider=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::TracingWriter)
        .with_ansi(style::stderr())
        .try_init();
}

fn init_diagnostics() {
    let terminal = std::io::stderr().is_terminal();
    let color = style::stderr();
    let _ = miette::set_hook(Box::new(move |_| {
        let opts = miette::MietteHandlerOpts::new().color(color).terminal_links(false).context_lines(1);
        // Lines are wrapped to the terminal; into a file or a pipe each message stays on one line.
        let opts = if terminal { opts } else { opts.width(usize::MAX / 4) };
        Box::new(opts.build())
    }));
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error exits 1 like every other error: 2 means "changes pending" under
        // `plan --detailed-exitcode`, and a mistyped flag must not read as drift. Help and version exit 0.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    style::set(cli.color);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "testbed", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    init_tracing(cli.verbose);
    init_diagnostics();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Plan { json, detailed_exitcode, target } => {
                commands::plan(&cli, *json, *detailed_exitcode, target).await
            }
            Command::Apply(run) | Command::Destroy(run) => {
                let goal = if matches!(cli.command, Command::Apply(_)) { Goal::Converge } else { Goal::Destroy };
                if run.dry_run {
                    commands::dry_run(&cli, goal, &run.target).await
                } else {
                    commands::run(&cli, goal, run).await
                }
            }
            Command::Status { json } => status::status(&cli, *json).await,
            Command::Doctor { json, members } => doctor::doctor(&cli, *json, members).await,
            Command::Graph { target } => commands::graph(&cli, target).await,
            Command::Kubeconfig { member, output, merge, unmerge } => {
                let mode = match (output, merge, unmerge) {
                    (Some(path), _, _) => kubeconfig::Mode::Write(path),
                    (None, true, _) => kubeconfig::Mode::Merge,
                    (None, _, true) => kubeconfig::Mode::Unmerge,
                    (None, false, false) => kubeconfig::Mode::Print,
                };
                kubeconfig::kubeconfig(&cli, member.as_deref(), mode).await
            }
            Command::Drill { drill: cli::DrillCommand::Failover(args) } => drill::failover(&cli, args).await,
            Command::Validate => commands::validate(&cli),
            Command::Schema => commands::schema(),
            Command::Completions { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::FAILURE
        }
    }
}
