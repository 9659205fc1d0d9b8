//! `testbed kubeconfig`: the lab's contexts (`<name>-karmada`, `<name>-member1`, ...) as one kubeconfig on
//! stdout or in a file, or merged into the user's kubeconfig and removed from it again; and the "Next:" block
//! apply ends with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use testbed_config::Config;
use testbed_kube::contexts::{self, ContextsError, LabContext, LabEntries};
use testbed_plan::Layer;

use crate::cli::Cli;
use crate::error::CliError;
use crate::session::Session;

/// What `testbed kubeconfig` does with the contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Print them to stdout.
    Print,
    /// Write them to a file of their own (0600).
    Write(&'a Path),
    /// Merge them into the user's kubeconfig.
    Merge,
    /// Remove them from the user's kubeconfig.
    Unmerge,
}

/// The context of Karmada's API server, and of a member.
pub fn karmada_context(config: &Config) -> String {
    format!("{}-karmada", config.file.name)
}

pub fn member_context(config: &Config, member: &str) -> String {
    format!("{}-{member}", config.file.name)
}

/// Where each context's kubeconfig is on this host, and what to call it in messages.
struct Source {
    context: String,
    what: String,
    path: PathBuf,
}

fn sources(session: &Session, member: Option<&str>) -> Result<Vec<Source>, CliError> {
    let config = &session.config;
    let cx = testbed_steps::Context::new(config);
    let mut out = Vec::new();
    if let Some(m) = member {
        if !config.file.members.iter().any(|x| x.name == m) {
            let names: Vec<&str> = config.file.members.iter().map(|x| x.name.as_str()).collect();
            return Err(CliError::usage(
                format!("{} has no member {m:?}", config.path.display()),
                Some(format!("the members are {}; leave the name out for all of them and Karmada", names.join(", "))),
            ));
        }
    } else {
        // `karmadactl init` writes it on the host: the simulated host's directory when Karmada is simulated.
        let path = match (&session.sim_state, session.simulated.contains(&Layer::Karmada)) {
            (Some(state), true) => {
                testbed_sim::host_root::under(&testbed_sim::host_root::root_for(state), &cx.karmada_kubeconfig)
            }
            _ => PathBuf::from(&cx.karmada_kubeconfig),
        };
        out.push(Source { context: karmada_context(config), what: "Karmada's API server".into(), path });
    }
    for m in config.file.members.iter().filter(|x| member.is_none_or(|n| n == x.name)) {
        out.push(Source {
            context: member_context(config, &m.name),
            what: m.name.clone(),
            path: Path::new(&cx.kubeconfig_dir).join(format!("{}.config", m.name)),
        });
    }
    Ok(out)
}

/// Reads each source; one not written yet is left out with a warning, unless none is there at all.
fn read_sources(sources: Vec<Source>) -> Result<Vec<LabContext>, CliError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for s in sources {
        match std::fs::read_to_string(&s.path) {
            Ok(text) => found.push(LabContext {
                name: s.context,
                source_name: format!("{}'s kubeconfig ({})", s.what, s.path.display()),
                source: text,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(CliError::usage(
                format!("cannot read {}'s kubeconfig {}: {e}", s.what, s.path.display()),
                Some(
                    "run testbed as root: MicroK8s and karmadactl init write their kubeconfigs readable by root only"
                        .into(),
                ),
            )),
            Err(e) => return Err(CliError::io(&s.path, e)),
        }
    }
    if found.is_empty() {
        let what: Vec<String> = missing.iter().map(|s| format!("{} ({})", s.what, s.path.display())).collect();
        return Err(CliError::usage(
            format!("no kubeconfig of this lab is there yet: {}", what.join(", ")),
            Some("run `testbed apply` first; `testbed status` shows what is built".into()),
        ));
    }
    for s in missing {
        eprintln!(
            "Warning: {} has no kubeconfig yet ({}); its context {} is left out. Run `testbed apply`.",
            s.what,
            s.path.display(),
            s.context
        );
    }
    Ok(found)
}

/// The user's kubeconfig: the first file of `$KUBECONFIG`, or `~/.kube/config`, as kubectl writes new
/// entries.
pub fn users_kubeconfig() -> Result<PathBuf, CliError> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Ok(first);
        }
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".kube/config")),
        None => Err(CliError::usage(
            "neither KUBECONFIG nor HOME is set: there is no kubeconfig to merge into",
            Some("set KUBECONFIG to the file to merge into".into()),
        )),
    }
}

fn contexts_error(e: ContextsError) -> CliError {
    let help = match &e {
        ContextsError::NotOurs { .. } => {
            "rename or remove that entry, or give this lab another `name` in testbed.toml; nothing was changed"
        }
        ContextsError::Layout { .. } => {
            "testbed edits the file a list item at a time and does not rewrite it; use `testbed kubeconfig -o FILE` \
             and add FILE to KUBECONFIG (KUBECONFIG=~/.kube/config:FILE) instead; nothing was changed"
        }
        ContextsError::Unreadable { .. } | ContextsError::MissingContext { .. } => {
            "fix or remove the file; `testbed apply` writes the lab's own kubeconfigs again; nothing was changed"
        }
    };
    CliError::usage(e.to_string(), Some(help.into()))
}

pub async fn kubeconfig(cli: &Cli, member: Option<&str>, mode: Mode<'_>) -> Result<ExitCode, CliError> {
    let session = Session::open(cli)?;
    let lab = session.config.file.name.clone();
    let simulated = session.simulated.contains(&Layer::Microk8s) || session.simulated.contains(&Layer::Karmada);
    if mode == Mode::Unmerge {
        return unmerge(&lab);
    }
    let found = read_sources(sources(&session, member)?)?;
    let entries = LabEntries::build(&lab, simulated, &found).map_err(contexts_error)?;
    match mode {
        Mode::Print => print!("{}", entries.kubeconfig()),
        Mode::Write(path) => {
            testbed_command::files::write_private(path, entries.kubeconfig().as_bytes())
                .map_err(|e| CliError::io(path, e))?;
            eprintln!("Wrote {} (0600): contexts {}.", path.display(), entries.contexts.join(", "));
            if simulated {
                eprintln!("They are the simulated machine's: they reach no real cluster.");
            }
        }
        Mode::Merge => merge(&entries)?,
        Mode::Unmerge => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Saves the file's current text beside it (0600) and writes the new one (0600, atomically).
fn replace_file(path: &Path, old: Option<&str>, new: &str) -> Result<Option<PathBuf>, CliError> {
    // The file a symbolic link names is the one to change.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let backup = match old {
        Some(old) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".testbed-backup");
            let backup = path.with_file_name(name);
            testbed_command::files::write_private(&backup, old.as_bytes()).map_err(|e| CliError::io(&backup, e))?;
            Some(backup)
        }
        None => None,
    };
    testbed_command::files::write_private(&path, new.as_bytes()).map_err(|e| CliError::io(&path, e))?;
    Ok(backup)
}

fn read_users(path: &Path) -> Result<Option<String>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::io(path, e)),
    }
}

fn merge(entries: &LabEntries) -> Result<(), CliError> {
    let path = users_kubeconfig()?;
    let old = read_users(&path)?;
    let edit = contexts::merge(&path.display().to_string(), old.as_deref().unwrap_or_default(), entries)
        .map_err(contexts_error)?;
    if old.as_deref() == Some(edit.text.as_str()) {
        println!("{} already has the contexts {}: nothing to change.", path.display(), entries.contexts.join(", "));
        return Ok(());
    }
    let backup = replace_file(&path, old.as_deref(), &edit.text)?;
    let mut said = Vec::new();
    for (what, names) in [("added", &edit.added), ("updated", &edit.replaced), ("removed", &edit.removed)] {
        if !names.is_empty() {
            said.push(format!("{what} {}", names.join(", ")));
        }
    }
    println!("Merged into {} (0600): {}.", path.display(), said.join("; "));
    if let Some(b) = backup {
        println!("The file as it was is in {b}.", b = b.display());
    }
    println!("Use: kubectl --context {} get clusters", entries.contexts[0]);
    if entries.simulated {
        println!("These contexts are the simulated machine's: they reach no real cluster.");
    }
    Ok(())
}

fn unmerge(lab: &str) -> Result<ExitCode, CliError> {
    let path = users_kubeconfig()?;
    let Some(old) = read_users(&path)? else {
        println!("{} does not exist: nothing to remove.", path.display());
        return Ok(ExitCode::SUCCESS);
    };
    let edit = contexts::unmerge(&path.display().to_string(), &old, lab).map_err(contexts_error)?;
    if edit.text == old {
        println!("{} has no context of the lab {lab:?}: nothing to remove.", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let backup = replace_file(&path, Some(&old), &edit.text)?;
    println!("Removed from {}: {}.", path.display(), edit.removed.join(", "));
    if edit.cleared_current_context {
        println!("The current context was one of them and is now unset: pick one with `kubectl config use-context`.");
    }
    if let Some(b) = backup {
        println!("The file as it was is in {}.", b.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines apply ends with when the lab converged: how to reach the clusters, and the app proxies; each
/// a command or URL, with what it is for.
pub fn next_steps(session: &Session) -> Vec<(String, Option<String>)> {
    let config = &session.config;
    let mut out = Vec::new();
    let karmada = karmada_context(config);
    let merged = users_kubeconfig()
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|t| contexts::lab_contexts(&t, &config.file.name).contains(&karmada));
    if !merged {
        let members: Vec<String> = config.file.members.iter().map(|m| member_context(config, &m.name)).collect();
        out.push((
            "testbed kubeconfig --merge".to_owned(),
            Some(format!("adds the contexts {karmada}, {} to your kubeconfig", members.join(", "))),
        ));
    }
    out.push((format!("kubectl --context {karmada} get clusters"), Some("the members, as Karmada sees them".into())));
    for m in &config.file.members {
        out.push((format!("kubectl --context {} get nodes", member_context(config, &m.name)), None));
    }
    for p in &config.file.proxies {
        let host = match p.listen.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => p.listen.clone(),
        };
        let to = match (&p.pod, &p.target) {
            (Some(pod), _) => format!("the pod {} in {}, port {}", pod.selector, pod.namespace, pod.port),
            (None, Some(target)) => target.clone(),
            (None, None) => String::new(),
        };
        out.push((
            format!("http://{host}:{}/", p.host_port),
            Some(format!("proxy.{}.{} → {to} in {}", p.member, p.name, p.member)),
        ));
    }
    out
}
