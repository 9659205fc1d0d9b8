//! One run at a time per world, and runs stopped from outside, through the binary: two applies started
//! together, a run killed mid-way or told to stop with SIGTERM, two configs sharing one simulated machine,
//! and the log a killed run leaves. Every run here is on a
//! simulated machine in a temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A file with `n` members.
fn members(n: u16) -> String {
    // Ports from 16441, stepping over 16443: the host MicroK8s API server's own.
    (1..=n)
        .map(|i| format!("[[members]]\nname = \"member{i}\"\napi_port = {}\n\n", 16440 + i + u16::from(i >= 3)))
        .collect()
}

/// `testbed -c DIR/testbed.toml --simulate all ARGS` at `speed`, not yet started.
fn testbed(config: &Path, speed: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testbed"));
    cmd.arg("-c").arg(config).args(["--simulate", "all"]).args(args);
    cmd.env("TESTBED_SIM_SPEED", speed)
        .env_remove("TESTBED_SIM_FAIL")
        .env_remove("TESTBED_SIM_SEED")
        .env_remove("TESTBED_LOCK_TIMEOUT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn lab(dir: &Path, text: &str) -> PathBuf {
    let config = dir.join("testbed.toml");
    std::fs::write(&config, text).unwrap();
    config
}

fn text(o: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", o.status.code(), out(o), err(o))
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads the child's stdout until a line satisfies `until`; returns what it read.
fn read_until(child: &mut Child, until: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stdout.as_mut().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if until(&line) {
            return seen;
        }
    }
    panic!("the run ended before the awaited line:\n{seen}");
}

#[test]
fn two_applies_started_together_fifty_times_exactly_one_runs() {
    // Five labs at a time, ten rounds each; every round on a fresh simulated machine, so the winner has
    // real work to do (a second or two of it) while the loser asks for the lock.
    let workers: Vec<_> = (0..5)
        .map(|w| {
            std::thread::spawn(move || {
                for round in 0..10 {
                    let dir = tempfile::tempdir().unwrap();
                    let config = lab(dir.path(), &members(1));
                    let a = testbed(&config, "0.005", &["apply", "--yes"]).spawn().unwrap();
                    let b = testbed(&config, "0.005", &["apply", "--yes"]).spawn().unwrap();
                    let (pid_a, pid_b) = (a.id(), b.id());
                    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
                    let (winner, loser, winner_pid) = match (a.status.success(), b.status.success()) {
                        (true, false) => (a, b, pid_a),
                        (false, true) => (b, a, pid_b),
                        _ => panic!("worker {w} round {round}: exactly one must run\n{}\n{}", text(&a), text(&b)),
                    };
                    assert!(out(&winner).contains(" done, 0 failed"), "{}", text(&winner));
                    assert_eq!(loser.status.code(), Some(1), "{}", text(&loser));
                    let refusal = err(&loser);
                    assert!(
                        refusal.contains("is locked by another testbed run")
                            && refusal.contains(&format!("pid {winner_pid} (testbed apply for ")),
                        "the refusal names the holder: {refusal}"
                    );
                    assert!(
                        !out(&loser).contains("create lxd_instance"),
                        "the loser changed nothing: {}",
                        text(&loser)
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn an_apply_killed_mid_way_leaves_its_log_and_the_next_one_takes_the_lock_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab(dir.path(), &members(3));
    // At a hundredth of real time the apply takes seconds; it is killed once its first action has finished.
    let mut child = testbed(&config, "0.01", &["apply", "--yes"]).spawn().unwrap();
    let seen = read_until(&mut child, |l| l.contains(": created"));
    let finished = seen.lines().find(|l| l.contains(": created")).unwrap();
    let address = finished.split(':').next().unwrap().trim_start_matches(|c: char| !c.is_ascii_alphabetic());
    child.kill().unwrap();
    let _ = child.wait();

    // The log says everything up to the kill, the finished action included.
    let logs: Vec<PathBuf> =
        std::fs::read_dir(dir.path().join(".testbed/logs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains(&format!("start   create {address}")), "{address} in the killed run's log:\n{log}");
    assert!(log.contains(&format!("done    create {address} in")), "{address} in the killed run's log:\n{log}");

    let next = testbed(&config, "0", &["apply", "--yes"]).output().unwrap();
    assert!(next.status.success(), "{}", text(&next));
    assert!(
        err(&next).contains("ended without releasing its lock: it was killed or crashed"),
        "the next run says the last one died: {}",
        text(&next)
    );
    let plan = testbed(&config, "0", &["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[test]
fn a_run_holding_the_lock_is_named_and_nothing_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab(dir.path(), &members(3));
    // This test holds the simulated machine's lock, as a running apply would.
    std::fs::create_dir_all(dir.path().join(".testbed")).unwrap();
    let mut held = std::fs::File::create(dir.path().join(".testbed/sim.json.lock")).unwrap();
    held.lock().unwrap();
    let holder = serde_json::json!({
        "pid": std::process::id(),
        "start_time": null,
        "command": "destroy",
        "config": "/elsewhere/testbed.toml",
        "since": "2026-12-06T10:00:00Z",
    });
    writeln!(held, "{holder}").unwrap();

    let refused = testbed(&config, "0", &["apply", "--yes"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let message = err(&refused);
    assert!(message.contains("is locked by another testbed run"), "{message}");
    assert!(
        message.contains(&format!(
            "pid {} (testbed destroy for /elsewhere/testbed.toml, since 2026-12-06T10:00:00Z)",
            std::process::id()
        )),
        "{message}"
    );
    assert!(message.contains("--lock-timeout"), "says how to wait instead: {message}");
    assert!(!dir.path().join(".testbed/sim.json").exists(), "nothing was changed");

    // Waiting: the run goes on once the holder lets go.
    let mut waiting = testbed(&config, "0", &["apply", "--yes", "--lock-timeout", "1m"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiting.try_wait().unwrap().is_none(), "it waits while the lock is held");
    held.unlock().unwrap();
    let waited = waiting.wait_with_output().unwrap();
    assert!(waited.status.success(), "{}", text(&waited));
}

#[test]
fn two_configs_in_different_folders_sharing_one_simulated_machine_share_its_lock() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared-sim.json");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (config_a, config_b) = (lab(&a, &members(3)), lab(&b, &members(3)));
    let with_state = |config: &Path, speed: &str| {
        let mut cmd = testbed(config, speed, &["apply", "--yes"]);
        cmd.arg("--sim-state").arg(&shared);
        cmd
    };
    let mut first = with_state(&config_a, "0.01").spawn().unwrap();
    read_until(&mut first, |l| l.contains(": created"));
    let second = with_state(&config_b, "0").output().unwrap();
    first.kill().unwrap();
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let message = err(&second);
    assert!(
        message.contains(&format!("pid {} (testbed apply for {}", first.id(), config_a.display())),
        "the refusal names the other config's run: {message}"
    );
}

#[test]
fn an_apply_told_to_stop_with_sigterm_stops_like_ctrl_c_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab(dir.path(), &members(3));
    let mut child = testbed(&config, "0.01", &["apply", "--yes"]).spawn().unwrap();
    read_until(&mut child, |l| l.contains(": created"));
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let stopped = child.wait_with_output().unwrap();
    // 128 + 15, as a shell reports a process SIGTERM ended; the run itself said what is left.
    assert_eq!(stopped.status.code(), Some(143), "{}", text(&stopped));
    assert!(out(&stopped).contains("Run `testbed apply` again"), "{}", text(&stopped));
    assert!(err(&stopped).contains("starting no new actions"), "{}", text(&stopped));

    // It ended cleanly: its lock released as a finished run's is, and the next apply completes the lab.
    let next = testbed(&config, "0", &["apply", "--yes"]).output().unwrap();
    assert!(next.status.success(), "{}", text(&next));
    assert!(!err(&next).contains("ended without releasing its lock"), "{}", text(&next));
}
