//! Developer tasks: `cargo xtask test` (what CI runs), `cargo xtask bench` (figures for docs/performance.md),
//! `cargo xtask schema` (regenerate testbed.schema.json).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in the repo root, echoing it; false if it failed.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> bool {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot run {program}: {e}");
            false
        }
    }
}

fn test() -> bool {
    run("cargo", &["fmt", "--all", "--", "--check"], &[])
        && run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])
        && run("cargo", &["test", "--workspace", "--all-targets"], &[("INSTA_UPDATE", "no")])
}

fn bench() -> bool {
    run("cargo", &["bench", "-p", "testbed-cli", "--bench", "makespan"], &[])
        && run("cargo", &["bench", "-p", "testbed-cli", "--bench", "plan", "--", "--noplot"], &[])
}

fn schema() -> bool {
    run("cargo", &["test", "-p", "testbed-config", "--test", "schema"], &[("TESTBED_BLESS", "1")])
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let ok = match task.as_str() {
        "test" => test(),
        "bench" => bench(),
        "schema" => schema(),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  test    formatting check, clippy (warnings denied), every test: what CI runs\n  bench   the benchmarks behind docs/performance.md\n  schema  regenerate testbed.schema.json from the model"
            );
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
