//! The command runner: one argument vector, run on the host or in a member, with a time limit.

use std::time::Duration;

use async_trait::async_trait;
use testbed_lxd_client::Client;
use testbed_steps::Where;
use tokio::io::AsyncReadExt;

/// The directories host commands find their programs in, besides the caller's `PATH`: testbed runs as
/// root, whose `PATH` has the `sbin` directories, but `sudo` may hand it a shorter one (Debian's
/// `secure_path` has no `/snap/bin`, where snaps put their programs: real-tools.md, behaviour 11).
pub const STANDARD_PATH_DIRS: [&str; 7] =
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/snap/bin"];

/// The environment every host command gets, besides the caller's: messages in a language testbed can
/// match on, whatever the user's locale; apt and debconf never ask (behaviour 14: with no one to answer, a
/// question would stop the install); `PATH` is [`host_path`].
pub const HOST_ENVIRONMENT: [(&str, &str); 2] = [("LC_ALL", "C"), ("DEBIAN_FRONTEND", "noninteractive")];

/// The `PATH` host commands run with: the caller's, then every [`STANDARD_PATH_DIRS`] entry it lacks.
pub fn host_path(caller: Option<&str>) -> String {
    let mut dirs: Vec<&str> = caller.map(|p| p.split(':').filter(|d| d.starts_with('/')).collect()).unwrap_or_default();
    for d in STANDARD_PATH_DIRS {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.join(":")
}

/// The time limit of a command that does not say otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit code (-1 when the command was killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(stdout: impl Into<String>) -> Output {
        Output { code: 0, stdout: stdout.into(), stderr: String::new() }
    }

    pub fn failed(code: i32, stderr: impl Into<String>) -> Output {
        Output { code, stdout: String::new(), stderr: stderr.into() }
    }

    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// What a message about a failed command quotes: the first line of stderr that says `error` (Go
    /// programs such as karmadactl print their error first and usage or hints after it), else the last
    /// non-empty line of stderr, else of stdout.
    /// An error line that ends with `:` (snapd's "cannot perform the following tasks:") is quoted with the
    /// lines that follow it.
    pub fn error_line(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let said = lines.iter().position(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with("error") || lower.starts_with("e: ")
        });
        match said {
            Some(i) if lines[i].ends_with(':') => lines[i..].join(" "),
            Some(i) => lines[i].to_owned(),
            None => self.last_line().to_owned(),
        }
    }

    /// The last non-empty line of stderr, else of stdout.
    pub fn last_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .or_else(|| self.stdout.lines().rev().find(|l| !l.trim().is_empty()))
            .map(str::trim)
            .unwrap_or("")
    }
}

/// Why a command could not be run to its end. A command that ran and exited non-zero is not an error
/// here: it is an [`Output`] with its code, and the caller decides what the code means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{program} is not installed{where_}")]
    NotFound { program: String, where_: String },
    #[error("{program}{where_} could not be started: {reason}")]
    Spawn { program: String, where_: String, reason: String },
    #[error("{program}{where_} did not finish within {}", shown(*after))]
    Timeout { program: String, where_: String, after: Duration },
    #[error("cannot run {program} in {member}: {reason}")]
    Member { program: String, member: String, reason: String },
}

/// A duration as a person reads it: "300 s", "250 ms".
pub(crate) fn shown(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn where_suffix(at: &Where) -> String {
    match at {
        Where::Host => String::new(),
        Where::Member(m) => format!(" in {m}"),
    }
}

/// Runs argument vectors.
#[async_trait]
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` at `at` and waits at most `timeout`. `argv[0]` is the program.
    async fn run(&self, at: &Where, argv: &[String], timeout: Duration) -> Result<Output, CommandError>;

    /// Writes `content` to the absolute `path` in member `member` (owner root, `mode`), replacing a file
    /// there: LXD's file API (`POST /1.0/instances/<member>/files?path=<path>`). The parent directory must
    /// exist (LXD does not create it). A runner that cannot reach members' files says so.
    async fn push_file(&self, member: &str, path: &str, content: Vec<u8>, mode: u32) -> Result<(), CommandError> {
        let _ = (content, mode);
        Err(CommandError::Member {
            program: push_label(path),
            member: member.to_owned(),
            reason: "this runner cannot push files".into(),
        })
    }
}

/// How a file push is named in errors: "a file push to /path".
fn push_label(path: &str) -> String {
    format!("a file push to {path}")
}

/// The real runner: host commands as child processes, member commands through LXD's exec API.
#[derive(Clone)]
pub struct SystemRunner {
    lxd: Option<Client>,
}

impl SystemRunner {
    /// A runner for host commands only (member commands fail with a clear error).
    pub fn host_only() -> SystemRunner {
        SystemRunner { lxd: None }
    }

    /// A runner that reaches members through this LXD (or Incus) daemon.
    pub fn with_lxd(client: Client) -> SystemRunner {
        SystemRunner { lxd: Some(client) }
    }

    async fn on_host(&self, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        let program = argv.first().cloned().unwrap_or_default();
        let path = host_path(std::env::var("PATH").ok().as_deref());
        // The program is looked up on that PATH too, not only on the caller's.
        let resolved = path
            .split(':')
            .map(|d| std::path::Path::new(d).join(&program))
            .find(|p| !program.contains('/') && p.is_file())
            .map(|p| p.into_os_string())
            .unwrap_or_else(|| program.clone().into());
        let mut cmd = tokio::process::Command::new(resolved);
        cmd.args(&argv[1..])
            .envs(HOST_ENVIRONMENT)
            .env("PATH", &path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CommandError::NotFound { program: program.clone(), where_: String::new() },
            _ => CommandError::Spawn { program: program.clone(), where_: String::new(), reason: e.to_string() },
        })?;
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let collect = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let read_out = async {
                if let Some(o) = out.as_mut() {
                    let _ = o.read_to_end(&mut stdout).await;
                }
            };
            let read_err = async {
                if let Some(e) = err.as_mut() {
                    let _ = e.read_to_end(&mut stderr).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, stdout, stderr)
        };
        match tokio::time::timeout(timeout, collect).await {
            Err(_) => Err(CommandError::Timeout { program, where_: String::new(), after: timeout }),
            Ok((status, stdout, stderr)) => {
                let status = status.map_err(|e| CommandError::Spawn {
                    program: program.clone(),
                    where_: String::new(),
                    reason: e.to_string(),
                })?;
                Ok(Output {
                    code: status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                })
            }
        }
    }

    async fn in_member(&self, member: &str, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        let program = argv.first().cloned().unwrap_or_default();
        let Some(client) = &self.lxd else {
            return Err(CommandError::Member {
                program,
                member: member.to_owned(),
                reason: "no LXD connection was given to the command runner".into(),
            });
        };
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        match client.exec(member, &args, timeout).await {
            // LXD reports a program it could not find as exit code 127, like a shell.
            Ok(r) if r.code == 127 => {
                Err(CommandError::NotFound { program, where_: where_suffix(&Where::Member(member.to_owned())) })
            }
            Ok(r) => Ok(Output { code: r.code as i32, stdout: r.stdout, stderr: r.stderr }),
            Err(testbed_lxd_client::LxdError::Timeout { after, .. }) => {
                Err(CommandError::Timeout { program, where_: where_suffix(&Where::Member(member.to_owned())), after })
            }
            Err(e) => Err(CommandError::Member { program, member: member.to_owned(), reason: e.to_string() }),
        }
    }
}

#[async_trait]
impl CommandRunner for SystemRunner {
    async fn run(&self, at: &Where, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        if argv.is_empty() {
            return Err(CommandError::Spawn {
                program: String::new(),
                where_: where_suffix(at),
                reason: "empty argument vector".into(),
            });
        }
        match at {
            Where::Host => self.on_host(argv, timeout).await,
            Where::Member(m) => self.in_member(m, argv, timeout).await,
        }
    }

    async fn push_file(&self, member: &str, path: &str, content: Vec<u8>, mode: u32) -> Result<(), CommandError> {
        let Some(client) = &self.lxd else {
            return Err(CommandError::Member {
                program: push_label(path),
                member: member.to_owned(),
                reason: "no LXD connection was given to the command runner".into(),
            });
        };
        client.push_file(member, path, content, mode).await.map_err(|e| CommandError::Member {
            program: push_label(path),
            member: member.to_owned(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn host_commands_get_their_arguments_verbatim() {
        let r = SystemRunner::host_only();
        // A value with shell syntax reaches the program as one argument and is not interpreted.
        let evil = "member1; touch testbed-injected $(id)";
        let out = r.run(&Where::Host, &argv(&["printf", "%s|", evil, "b c"]), DEFAULT_TIMEOUT).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, format!("{evil}|b c|"));
    }

    /// real-tools.md behaviours 11 and 14: /snap/bin is on the PATH whatever sudo left, and apt never asks.
    #[tokio::test]
    async fn host_commands_get_snap_bin_on_their_path_and_apt_never_asks() {
        let r = SystemRunner::host_only();
        let out = r.run(&Where::Host, &argv(&["env"]), DEFAULT_TIMEOUT).await.unwrap();
        let path = out.stdout.lines().find_map(|l| l.strip_prefix("PATH=")).expect("PATH is set");
        assert!(path.split(':').any(|d| d == "/snap/bin"), "{path}");
        assert!(path.split(':').any(|d| d == "/usr/sbin"), "{path}");
        assert!(out.stdout.lines().any(|l| l == "DEBIAN_FRONTEND=noninteractive"), "{}", out.stdout);
        assert!(out.stdout.lines().any(|l| l == "LC_ALL=C"), "{}", out.stdout);
        // sudo's secure_path: no /snap/bin; the standard directories come after the caller's own.
        assert_eq!(
            host_path(Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"
        );
        assert_eq!(host_path(Some("/opt/x/bin:relative")), format!("/opt/x/bin:{}", STANDARD_PATH_DIRS.join(":")));
    }

    #[tokio::test]
    async fn exit_codes_and_stderr_come_back() {
        let r = SystemRunner::host_only();
        let out = r.run(&Where::Host, &argv(&["ls", "/nonexistent-testbed-path"]), DEFAULT_TIMEOUT).await.unwrap();
        assert_ne!(out.code, 0);
        assert!(out.last_line().contains("No such file"), "{out:?}");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let r = SystemRunner::host_only();
        let e = r.run(&Where::Host, &argv(&["testbed-no-such-program"]), DEFAULT_TIMEOUT).await.unwrap_err();
        assert_eq!(e.to_string(), "testbed-no-such-program is not installed");
    }

    #[tokio::test]
    async fn a_command_over_its_limit_is_stopped() {
        let r = SystemRunner::host_only();
        let e = r.run(&Where::Host, &argv(&["sleep", "5"]), Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
        assert_eq!(e.to_string(), "sleep did not finish within 100 ms");
    }

    #[tokio::test]
    async fn member_commands_need_lxd() {
        let r = SystemRunner::host_only();
        let e = r.run(&Where::Member("member1".into()), &argv(&["microk8s", "status"]), DEFAULT_TIMEOUT).await;
        assert!(e.unwrap_err().to_string().contains("cannot run microk8s in member1"));
        let e = r.push_file("member1", "/var/lib/testbed/x.tar", b"tar".to_vec(), 0o600).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot run a file push to /var/lib/testbed/x.tar in member1: no LXD connection was given to the command runner"
        );
    }
}
