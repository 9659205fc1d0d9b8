//! Developer tasks: `cargo xtask test` (what CI runs), `cargo xtask bench` (figures for docs/performance.md),
//! `cargo xtask schema` (regenerate testbed.schema.json).

mod registries;
mod testenv;
mod testimages;

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
    // The LXD, Incus and registry integration tests need the real daemons: bring them up (idempotent) before
    // anything else.
    if let Err(e) = testenv::up() {
        eprintln!("xtask: the test environment did not come up: {e}");
        return false;
    }
    run("cargo", &["fmt", "--all", "--", "--check"], &[])
        && run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])
        && run_tests(&["test", "--workspace", "--all-targets"])
}

/// Runs cargo's test harness, echoing its output, and ends with one line totalling every binary's result
/// (`tests: N passed, N failed`), so that the run's last line speaks for all of it.
fn run_tests(args: &[&str]) -> bool {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: $ cargo {}", args.join(" "));
    let child = Command::new("cargo")
        .args(args)
        .current_dir(root())
        .env("INSTA_UPDATE", "no")
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            return false;
        }
    };
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    rest.split(';')
                        .find_map(|part| part.trim().strip_suffix(word).map(str::trim))
                        .and_then(|n| n.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()))
                        .unwrap_or(0)
                };
                passed += count("passed");
                failed += count("failed");
            }
        }
    }
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    println!("tests: {passed} passed, {failed} failed");
    ok
}

fn bench() -> bool {
    if let Err(e) = testenv::up() {
        eprintln!("xtask: the test environment did not come up: {e}");
        return false;
    }
    run("cargo", &["bench", "-p", "testbed-lxd", "--bench", "members"], &[])
        && run("cargo", &["bench", "-p", "testbed-cli", "--bench", "makespan"], &[])
        && run("cargo", &["bench", "-p", "testbed-cli", "--bench", "plan", "--", "--noplot"], &[])
        && run("cargo", &["bench", "-p", "testbed-cli", "--bench", "kubeconfig", "--", "--noplot"], &[])
        && run("cargo", &["bench", "-p", "testbed-plan", "--bench", "leftovers", "--", "--noplot"], &[])
        && run("cargo", &["bench", "-p", "testbed-registry", "--bench", "copy"], &[])
}

fn schema() -> bool {
    run("cargo", &["test", "-p", "testbed-config", "--test", "schema"], &[("TESTBED_BLESS", "1")])
}

fn report(r: Result<(), String>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("testenv: {e}");
            false
        }
    }
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let ok = match task.as_str() {
        "test" => test(),
        "bench" => bench(),
        "schema" => schema(),
        "testenv" => match std::env::args().nth(2).as_deref() {
            Some("up") => report(testenv::up()),
            Some("down") => report(testenv::down()),
            _ => {
                eprintln!("usage: cargo xtask testenv up|down");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  test    formatting check, clippy (warnings denied), every test (brings the test LXD and Incus up): what CI runs\n  testenv up|down  the real LXD and Incus daemons and image registries the integration tests use\n  bench   the benchmarks behind docs/performance.md\n  schema  regenerate testbed.schema.json from the model"
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
