//! A runner that answers from a script: the simulated implementation of [`CommandRunner`], for tests of
//! the real providers' logic where the real programs (snap, microk8s, karmadactl) cannot run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use testbed_steps::Where;

use crate::runner::{CommandError, CommandRunner, Output};

/// A scripted command's behaviour computed from where it runs and its argument vector.
pub type EffectFn = dyn Fn(&Where, &[String]) -> Result<Output, CommandError> + Send + Sync;

/// What a scripted command does.
#[derive(Clone)]
pub enum Reply {
    /// Ends with this output.
    Output(Output),
    /// Cannot be run.
    Error(CommandError),
    /// Computes its outcome from the argument vector (and may change a fake world on the way).
    Effect(Arc<EffectFn>),
}

impl Reply {
    pub fn ok(stdout: &str) -> Reply {
        Reply::Output(Output::ok(stdout))
    }

    pub fn exit(code: i32, stderr: &str) -> Reply {
        Reply::Output(Output::failed(code, stderr))
    }

    pub fn effect(f: impl Fn(&Where, &[String]) -> Result<Output, CommandError> + Send + Sync + 'static) -> Reply {
        Reply::Effect(Arc::new(f))
    }
}

struct Rule {
    at: Option<Where>,
    prefix: Vec<String>,
    /// Replies in turn; the last one repeats.
    replies: VecDeque<Reply>,
}

/// A file pushed into a member through [`CommandRunner::push_file`], as the scripted runner received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub member: String,
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// What the runner was asked to do, in order.
enum Entry {
    /// A command, with the time it was given.
    Run(Where, Vec<String>, Duration),
    /// A push, and why it was refused if it was.
    Push(Push, Option<String>),
}

#[derive(Default)]
struct Script {
    rules: Vec<Rule>,
    log: Vec<Entry>,
    /// Members whose pushes fail, with the reason.
    refuse_pushes: Vec<(String, String)>,
}

/// Answers commands by the longest matching argument prefix (the latest rule wins a tie) and records every
/// call. A command no rule matches exits 127 with "not scripted", so a test sees an unexpected command.
/// File pushes succeed (unless refused with [`ScriptedRunner::refuse_pushes`]) and are kept, bytes and all
/// ([`ScriptedRunner::pushes`]).
#[derive(Clone, Default)]
pub struct ScriptedRunner {
    script: Arc<Mutex<Script>>,
}

impl ScriptedRunner {
    pub fn new() -> ScriptedRunner {
        ScriptedRunner::default()
    }

    /// Commands starting with `prefix`, anywhere, reply with `reply`.
    pub fn on(&self, prefix: &[&str], reply: Reply) -> &Self {
        self.rule(None, prefix, vec![reply])
    }

    /// Commands starting with `prefix` at `at` reply with `reply`.
    pub fn on_at(&self, at: Where, prefix: &[&str], reply: Reply) -> &Self {
        self.rule(Some(at), prefix, vec![reply])
    }

    /// Commands starting with `prefix` reply with each of `replies` in turn, then keep the last.
    pub fn on_seq(&self, prefix: &[&str], replies: Vec<Reply>) -> &Self {
        self.rule(None, prefix, replies)
    }

    fn rule(&self, at: Option<Where>, prefix: &[&str], replies: Vec<Reply>) -> &Self {
        let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.rules.push(Rule { at, prefix: prefix.iter().map(|p| p.to_string()).collect(), replies: replies.into() });
        self
    }

    /// File pushes into `member` fail from now on, with `reason` (as an LXD error would say it).
    pub fn refuse_pushes(&self, member: &str, reason: &str) -> &Self {
        let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.refuse_pushes.push((member.to_owned(), reason.to_owned()));
        self
    }

    /// The time each command so far was given to finish, with its argument vector.
    pub fn limits(&self) -> Vec<(Vec<String>, Duration)> {
        let s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.log
            .iter()
            .filter_map(|e| match e {
                Entry::Run(_, argv, limit) => Some((argv.clone(), *limit)),
                Entry::Push(..) => None,
            })
            .collect()
    }

    /// Every call so far: where, and the argument vector.
    pub fn calls(&self) -> Vec<(Where, Vec<String>)> {
        let s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.log
            .iter()
            .filter_map(|e| match e {
                Entry::Run(at, argv, _) => Some((at.clone(), argv.clone())),
                Entry::Push(..) => None,
            })
            .collect()
    }

    /// Every file push that succeeded so far, in order, with its bytes.
    pub fn pushes(&self) -> Vec<Push> {
        let s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.log
            .iter()
            .filter_map(|e| match e {
                Entry::Push(p, None) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every call and push so far as one line each, in order (`host$ snap install ...`,
    /// `member1$ microk8s status`, `member1$ <push /var/lib/testbed/sideload/x.tar (1024 bytes)>`).
    pub fn transcript(&self) -> Vec<String> {
        let s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.log
            .iter()
            .map(|e| match e {
                Entry::Run(at, argv, _) => {
                    let who = match at {
                        Where::Host => "host",
                        Where::Member(m) => m.as_str(),
                    };
                    let args: Vec<String> = argv.iter().map(|a| testbed_steps::quote(a)).collect();
                    format!("{who}$ {}", args.join(" "))
                }
                Entry::Push(p, refused) => {
                    let why = refused.as_ref().map(|r| format!(": refused: {r}")).unwrap_or_default();
                    format!("{}$ <push {} ({} bytes){why}>", p.member, p.path, p.content.len())
                }
            })
            .collect()
    }
}

#[async_trait]
impl CommandRunner for ScriptedRunner {
    async fn run(&self, at: &Where, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        let reply = {
            let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
            s.log.push(Entry::Run(at.clone(), argv.to_vec(), timeout));
            let best = s
                .rules
                .iter_mut()
                .enumerate()
                .filter(|(_, r)| r.at.as_ref().is_none_or(|w| w == at) && argv.starts_with(&r.prefix))
                .max_by_key(|(i, r)| (r.prefix.len(), *i))
                .map(|(_, r)| r);
            match best {
                Some(rule) if rule.replies.len() > 1 => rule.replies.pop_front(),
                Some(rule) => rule.replies.front().cloned(),
                None => None,
            }
        };
        match reply {
            Some(Reply::Output(o)) => Ok(o),
            Some(Reply::Error(e)) => Err(e),
            Some(Reply::Effect(f)) => f(at, argv),
            None => Ok(Output::failed(127, format!("not scripted: {}", argv.join(" ")))),
        }
    }

    async fn push_file(&self, member: &str, path: &str, content: Vec<u8>, mode: u32) -> Result<(), CommandError> {
        let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        let refused = s.refuse_pushes.iter().rev().find(|(m, _)| m == member).map(|(_, r)| r.clone());
        let push = Push { member: member.to_owned(), path: path.to_owned(), content, mode };
        s.log.push(Entry::Push(push, refused.clone()));
        match refused {
            None => Ok(()),
            Some(reason) => Err(CommandError::Member {
                program: format!("a file push to {path}"),
                member: member.to_owned(),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn longest_prefix_wins_and_sequences_advance() {
        let r = ScriptedRunner::new();
        r.on(&["snap"], Reply::exit(1, "generic"));
        r.on_seq(
            &["snap", "list", "microk8s"],
            vec![Reply::exit(1, "error: no matching snaps installed"), Reply::ok("microk8s v1.32.3")],
        );
        let t = Duration::from_secs(1);
        let first = r.run(&Where::Host, &v(&["snap", "list", "microk8s"]), t).await.unwrap();
        let second = r.run(&Where::Host, &v(&["snap", "list", "microk8s"]), t).await.unwrap();
        let third = r.run(&Where::Host, &v(&["snap", "list", "microk8s"]), t).await.unwrap();
        assert_eq!((first.code, second.code, third.code), (1, 0, 0));
        assert_eq!(r.run(&Where::Host, &v(&["snap", "info"]), t).await.unwrap().stderr, "generic");
        let unscripted = r.run(&Where::Host, &v(&["rm", "-rf", "/"]), t).await.unwrap();
        assert_eq!(unscripted.code, 127);
        assert_eq!(r.transcript().last().map(String::as_str), Some("host$ rm -rf /"));
    }

    #[tokio::test]
    async fn rules_can_be_scoped_to_a_member() {
        let r = ScriptedRunner::new();
        r.on_at(Where::Member("member1".into()), &["microk8s"], Reply::ok("in member1"));
        let t = Duration::from_secs(1);
        assert_eq!(r.run(&Where::Member("member1".into()), &v(&["microk8s"]), t).await.unwrap().stdout, "in member1");
        assert_eq!(r.run(&Where::Member("member2".into()), &v(&["microk8s"]), t).await.unwrap().code, 127);
    }

    #[tokio::test]
    async fn pushes_are_kept_with_their_bytes_and_shown_in_order() {
        let r = ScriptedRunner::new();
        r.on(&["mkdir"], Reply::ok(""));
        let t = Duration::from_secs(1);
        r.run(&Where::Member("m1".into()), &v(&["mkdir", "-p", "/d"]), t).await.unwrap();
        r.push_file("m1", "/d/a.tar", vec![1, 2, 3], 0o600).await.unwrap();
        r.refuse_pushes("m2", "not found");
        let e = r.push_file("m2", "/d/a.tar", vec![9], 0o600).await.unwrap_err();
        assert_eq!(e.to_string(), "cannot run a file push to /d/a.tar in m2: not found");
        assert_eq!(
            r.pushes(),
            [Push { member: "m1".into(), path: "/d/a.tar".into(), content: vec![1, 2, 3], mode: 0o600 }],
            "only what landed"
        );
        assert_eq!(
            r.transcript(),
            ["m1$ mkdir -p /d", "m1$ <push /d/a.tar (3 bytes)>", "m2$ <push /d/a.tar (1 bytes): refused: not found>"]
        );
        assert_eq!(r.calls().len(), 1, "calls are commands only");
    }
}
