//! testbed on a terminal, as a person in tmux meets it: each run here has a pseudo-terminal as its
//! controlling terminal, and what it writes there goes through a terminal emulator (vt100), so the tests
//! read the screen the person sees after every redraw, not the bytes.

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use support::{Lab, THREE};

/// Tall enough that nothing a three-member run prints scrolls off the screen.
const ROWS: u16 = 300;
const COLS: u16 = 200;

/// A run of testbed on a pseudo-terminal.
struct Pty {
    master: std::fs::File,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    /// Starts `cmd` in a new session whose controlling terminal is a fresh pty. Its stdin is the pty; its
    /// stdout and stderr too, unless given.
    fn spawn(mut cmd: Command, stdout: Option<Stdio>, stderr: Option<Stdio>) -> Pty {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(Path::new(name.to_str().expect("pty name")))
            .expect("open the pty's slave");
        let size = rustix::termios::Winsize { ws_row: ROWS, ws_col: COLS, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(&slave, size).expect("set the window size");
        cmd.stdin(slave.try_clone().expect("dup"));
        cmd.stdout(stdout.unwrap_or_else(|| slave.try_clone().expect("dup").into()));
        cmd.stderr(stderr.unwrap_or_else(|| slave.try_clone().expect("dup").into()));
        // SAFETY: between fork and exec only async-signal-safe calls: setsid and an ioctl.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin())?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("run testbed");
        drop(cmd);
        drop(slave);
        let master = std::fs::File::from(master);
        let screen =
            Arc::new(Mutex::new(vt100::Parser::new(NonZeroU16::new(ROWS).unwrap(), NonZeroU16::new(COLS).unwrap(), 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (mut from, screen, raw) = (master.try_clone().expect("dup"), screen.clone(), raw.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                // Ends with EIO once the last holder of the slave side is gone.
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    screen.lock().unwrap().process(&buf[..n]);
                    raw.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Pty { master, screen, raw, child, reader: Some(reader) }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows what `pred` looks for; false after `timeout`.
    fn wait_for(&self, timeout: Duration, pred: impl Fn(&vt100::Screen) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if pred(self.screen.lock().unwrap().screen()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("type on the terminal");
    }

    /// Waits for the run to end (at most two minutes) and for its last output; gives its exit code.
    fn finish(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                panic!("testbed did not end; the screen:\n{}", self.contents());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lab {
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_testbed"));
        cmd.arg("-c").arg(self.config()).args(["--simulate", "all"]).args(args);
        cmd.env("TESTBED_SIM_SPEED", "0")
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .env_remove("TESTBED_SIM_FAIL")
            .env_remove("TESTBED_SIM_SEED")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs on a pty to the end; gives the exit code and the screen.
    fn on_terminal(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, Vec<u8>) {
        let mut pty = Pty::spawn(self.command(args, env), None, None);
        let code = pty.finish();
        let raw = pty.raw.lock().unwrap().clone();
        (code, pty.contents(), raw)
    }

    fn out_file(&self, name: &str) -> (PathBuf, Stdio) {
        let path = self.path().join(name);
        let file = std::fs::File::create(&path).expect("create output file");
        (path, file.into())
    }
}

/// The screen's rows as they are shown (a row filled to the last column is not joined with the next).
fn rows(screen: &vt100::Screen) -> Vec<String> {
    screen.rows(0, COLS).collect()
}

/// Spinner lines on the screen: one per running action.
fn running(screen: &vt100::Screen) -> usize {
    rows(screen).iter().filter(|l| l.contains("ing") && l.trim_end().ends_with(']')).count()
}

#[test]
fn the_ctrl_c_notice_stays_on_screen_while_actions_run_in_parallel() {
    let lab = Lab::new(THREE);
    // Real-magnitude step times at a twentieth: each member's steps take seconds, side by side.
    let mut pty = Pty::spawn(lab.command(&["apply", "--yes"], &[("TESTBED_SIM_SPEED", "0.05")]), None, None);
    assert!(
        pty.wait_for(Duration::from_secs(60), |s| running(s) >= 2),
        "two actions never ran at once; the screen:\n{}",
        pty.contents()
    );
    pty.type_text("\x03");
    let code = pty.finish();
    let screen = pty.contents();
    assert!(
        screen.contains("Interrupt: starting no new actions; running ones finish."),
        "the notice is not on the screen:\n{screen}"
    );
    assert_eq!(code, 130, "{screen}");
    assert!(screen.contains("not started (interrupted)"), "{screen}");
}

#[test]
fn a_failure_reaches_the_terminal_when_stderr_goes_elsewhere() {
    let lab = Lab::new(THREE);
    for (name, stderr) in [("null", Stdio::null()), ("file", lab.out_file("stderr.txt").1)] {
        let env = [("TESTBED_SIM_FAIL", "program:snap.install@member2=always")];
        let mut pty = Pty::spawn(lab.command(&["apply", "--yes"], &env), None, Some(stderr));
        let code = pty.finish();
        let screen = pty.contents();
        assert_eq!(code, 1, "stderr to {name}: {screen}");
        let failed = screen.lines().find(|l| l.starts_with("microk8s.member2: FAILED")).unwrap_or_default();
        assert!(failed.contains("cannot communicate with server"), "stderr to {name}:\n{screen}");
        assert!(screen.contains("next: run it yourself"), "the hint, stderr to {name}:\n{screen}");
        assert!(
            screen.contains("karmada_member.member2: skipped, because microk8s.member2"),
            "every action's line, stderr to {name}:\n{screen}"
        );
    }
}

#[test]
fn the_question_is_asked_on_the_terminal_when_stdout_goes_to_a_file() {
    let lab = Lab::new(THREE);
    let (out, stdout) = lab.out_file("out.txt");
    let mut pty = Pty::spawn(lab.command(&["apply"], &[]), Some(stdout), None);
    assert!(
        pty.wait_for(Duration::from_secs(60), |s| s.contents().contains("Only 'yes' will be accepted")),
        "no question on the terminal:\n{}\nout.txt:\n{}",
        pty.contents(),
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    pty.type_text("no\n");
    let code = pty.finish();
    assert_eq!(code, 1, "{}", pty.contents());
    assert!(pty.contents().contains("apply cancelled; nothing was changed"), "{}", pty.contents());
    let file = std::fs::read_to_string(&out).unwrap();
    assert!(file.contains("+ lxd_instance.member1"), "the plan is in the file: {file}");
    assert!(!file.contains("Only 'yes'"), "the question is not in the file: {file}");
}

/// The colour of the first cell of `needle` on the screen.
fn color_of(screen: &vt100::Screen, needle: &str) -> Option<vt100::Color> {
    rows(screen).iter().enumerate().find_map(|(row, line)| {
        let col = line[..line.find(needle)?].chars().count() as u16;
        screen.cell(row as u16, col).map(|c| c.fgcolor())
    })
}

#[test]
fn the_plan_is_coloured_on_a_terminal_and_no_color_turns_all_colour_off() {
    let lab = Lab::new(THREE);
    let mut pty = Pty::spawn(lab.command(&["plan"], &[]), None, None);
    assert_eq!(pty.finish(), 0, "{}", pty.contents());
    let screen = pty.screen.lock().unwrap().screen().clone();
    assert_eq!(color_of(&screen, "+ lxd_instance.member1"), Some(vt100::Color::Idx(2)), "+ is green");
    assert_eq!(color_of(&screen, "~ host.packages"), Some(vt100::Color::Idx(3)), "~ is yellow");

    // NO_COLOR, any non-empty value: neither the plan nor an error has colour.
    let (code, screen, raw) = lab.on_terminal(&["plan"], &[("NO_COLOR", "1")]);
    assert_eq!(code, 0, "{screen}");
    assert!(!raw.contains(&0x1b), "{:?}", String::from_utf8_lossy(&raw));
    let (code, screen, raw) = lab.on_terminal(&["plan", "--target", "member9"], &[("NO_COLOR", "1")]);
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("matches no resource"), "{screen}");
    assert!(!raw.contains(&0x1b), "{:?}", String::from_utf8_lossy(&raw));
    // An empty NO_COLOR is as if unset.
    let (_, _, raw) = lab.on_terminal(&["plan", "--target", "member9"], &[("NO_COLOR", "")]);
    assert!(raw.contains(&0x1b), "errors are coloured on a terminal: {:?}", String::from_utf8_lossy(&raw));
}

#[test]
fn destroy_asks_in_its_own_words_on_the_terminal() {
    let lab = Lab::new(THREE);
    let (code, screen, _) = lab.on_terminal(&["apply", "--yes"], &[]);
    assert_eq!(code, 0, "{screen}");
    let mut pty = Pty::spawn(lab.command(&["destroy"], &[]), None, None);
    assert!(
        pty.wait_for(Duration::from_secs(60), |s| s.contents().contains("Only 'yes' will be accepted")),
        "{}",
        pty.contents()
    );
    assert!(pty.contents().contains("Destroy all of the above?"), "{}", pty.contents());
    pty.type_text("no\n");
    assert_eq!(pty.finish(), 1);
    assert!(pty.contents().contains("destroy cancelled; nothing was changed"), "{}", pty.contents());
}

#[test]
fn tracing_lines_stay_on_screen_among_the_spinners() {
    let lab = Lab::new(THREE);
    let env = [("TESTBED_SIM_SPEED", "0.02"), ("RUST_LOG", "testbed_exec=debug")];
    let (code, screen, _) = lab.on_terminal(&["apply", "--yes"], &env);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("Plan: 35 to create, 2 to update"), "{screen}");
    // One debug line per action started and per action finished: 37 of each (the plan has 37 actions).
    for what in ["action started", "action finished"] {
        let seen = screen.lines().filter(|l| l.contains(what)).count();
        assert_eq!(seen, 37, "{what}: {seen} of 37 lines on the screen:\n{screen}");
    }
}
