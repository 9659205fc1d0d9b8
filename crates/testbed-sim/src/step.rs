//! What every simulated step shares: the resource it acts on, the log of what the real step would run,
//! ownership checks, and errors phrased like the real tools'.

use testbed_plan::{Action, Address, Kind, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{ActionLog, LogEntry, ProviderError};

use crate::world::{is_testbed, SimWorld};

/// A step that makes or changes a resource the file describes.
pub(crate) type Make = fn(&mut SimWorld, &Resource, &mut Transcript) -> Result<(), ProviderError>;
/// A step that removes a resource.
pub(crate) type Remove = fn(&mut SimWorld, &Target, &mut Transcript) -> Result<(), ProviderError>;

/// Runs an action through its kind's steps; a replace is a delete followed by a create.
pub(crate) fn run_op(
    world: &mut SimWorld,
    action: &Action,
    t: &mut Transcript,
    create: Make,
    update: Make,
    delete: Remove,
) -> Result<(), ProviderError> {
    match action.op {
        Op::Create => create(world, desired(action)?, t),
        Op::Update => update(world, desired(action)?, t),
        Op::Replace => {
            let r = desired(action)?;
            delete(world, &Target::of(action), t)?;
            create(world, r, t)
        }
        Op::Delete => delete(world, &Target::of(action), t),
    }
}

/// The commands and API calls a step would make, collected while the step is checked and played back to
/// the action's log once it is known to start.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    entries: Vec<LogEntry>,
}

impl Transcript {
    pub fn command(&mut self, argv: &[&str]) {
        self.entries.push(LogEntry::Command(argv.iter().map(|s| (*s).to_owned()).collect()));
    }

    pub fn api(&mut self, method: &str, path: &str) {
        self.entries.push(LogEntry::Api { method: method.to_owned(), path: path.to_owned() });
    }

    /// A command run inside a container through the LXD exec API.
    pub fn exec(&mut self, container: &str, argv: &[&str]) {
        self.api("POST", &format!("/1.0/instances/{container}/exec"));
        self.command(argv);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.entries.push(LogEntry::Note(text.into()));
    }

    pub fn emit(self, log: &ActionLog) {
        for e in self.entries {
            match e {
                LogEntry::Command(argv) => log.command(&argv),
                LogEntry::Api { method, path } => log.api(&method, &path),
                LogEntry::Output(text) => log.output(text),
                LogEntry::Note(text) => log.note(text),
                LogEntry::Progress(text) => log.progress(text),
            }
        }
    }
}

/// The resource an action acts on, whether or not the file still describes it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub address: Address,
    pub member: Option<String>,
    /// The last segment that is not the kind or member.
    pub name: String,
}

impl Target {
    pub fn of(action: &Action) -> Target {
        let name = match &action.desired {
            Some(r) => r.name.clone(),
            None => name_from_address(&action.address, action.kind, action.member.as_deref()),
        };
        Target { address: action.address.clone(), member: action.member.clone(), name }
    }

    /// The member (container) name, which member-scoped kinds must have.
    pub fn member(&self) -> Result<&str, ProviderError> {
        self.member.as_deref().ok_or_else(|| {
            ProviderError::failed(format!(
                "{}: the action names no member (an internal error in the plan)",
                self.address
            ))
        })
    }
}

fn name_from_address(address: &Address, kind: Kind, member: Option<&str>) -> String {
    let rest = address.as_str().strip_prefix(kind.prefix()).and_then(|r| r.strip_prefix('.')).unwrap_or("");
    match (kind, member) {
        (Kind::Proxy | Kind::Sideload, Some(m)) => {
            rest.strip_prefix(m).and_then(|r| r.strip_prefix('.')).unwrap_or(rest).to_owned()
        }
        (_, Some(m)) if kind.is_member_scoped() => m.to_owned(),
        _ => rest.to_owned(),
    }
}

/// The member a member-scoped resource belongs to.
pub(crate) fn member_of(r: &Resource) -> Result<&str, ProviderError> {
    r.member.as_deref().ok_or_else(|| {
        ProviderError::failed(format!("{}: the resource names no member (an internal error in the plan)", r.address))
    })
}

/// The desired resource of a create, update or replace.
pub(crate) fn desired(action: &Action) -> Result<&Resource, ProviderError> {
    action.desired.as_ref().ok_or_else(|| {
        ProviderError::failed(format!(
            "{}: a {} action without the file's settings (an internal error in the plan)",
            action.address,
            action.op.name()
        ))
    })
}

/// A setting the resource kind always has.
pub(crate) fn setting<'a>(r: &'a Resource, key: &str) -> Result<&'a str, ProviderError> {
    r.spec.get(key).map(String::as_str).ok_or_else(|| {
        ProviderError::failed(format!("{}: the setting {key} is missing (an internal error in the plan)", r.address))
    })
}

/// A port-valued setting.
pub(crate) fn port_setting(r: &Resource, key: &str) -> Result<u16, ProviderError> {
    let v = setting(r, key)?;
    v.parse().map_err(|_| ProviderError::failed(format!("{}: {key} = {v:?} is not a port number", r.address)))
}

/// A comma-joined list setting, empty items dropped.
pub(crate) fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub(crate) fn precondition(message: impl Into<String>, hint: impl Into<String>) -> ProviderError {
    ProviderError::Precondition { message: message.into(), hint: Some(hint.into()) }
}

pub(crate) fn failed(message: impl Into<String>, hint: impl Into<String>) -> ProviderError {
    ProviderError::Failed { message: message.into(), hint: Some(hint.into()) }
}

/// How an object someone else made is described: `what` ("a container named member2"), and the marker
/// testbed would have left on it ("user.testbed.owner key").
pub(crate) fn foreign_description(what: &str, owner: &Option<String>, marker: &str) -> String {
    match owner.as_deref() {
        None => format!("{what} exists that testbed did not create (no {marker})"),
        Some(other) => format!("{what} exists that belongs to {other:?}, not testbed (its {marker} says so)"),
    }
}

/// The observed owner of an object.
pub(crate) fn owner_of(owner: &Option<String>, what: &str, marker: &str) -> Owner {
    if is_testbed(owner) {
        Owner::Testbed
    } else {
        Owner::Other(foreign_description(what, owner, marker))
    }
}

/// Refuses to change or delete an object testbed did not make (defence in depth: the planner never asks).
pub(crate) fn ensure_owned(
    address: &Address,
    verb: &str,
    owner: &Option<String>,
    what: &str,
    marker: &str,
) -> Result<(), ProviderError> {
    if is_testbed(owner) {
        return Ok(());
    }
    Err(precondition(
        format!(
            "refusing to {verb} {address}: {}; testbed changes only what it created",
            foreign_description(what, owner, marker)
        ),
        "rename or remove it yourself, or change the file so that testbed does not want it",
    ))
}

/// Refuses to create what already exists.
pub(crate) fn already_exists(address: &Address, owner: &Option<String>, what: &str, marker: &str) -> ProviderError {
    if is_testbed(owner) {
        failed(
            format!("{address}: {what} already exists"),
            "observe again (testbed plan): the machine changed since the plan was made",
        )
    } else {
        precondition(
            format!("{address}: {}", foreign_description(what, owner, marker)),
            "rename or remove it yourself, or rename it in the file",
        )
    }
}

pub(crate) fn observed(address: Address, kind: Kind, member: Option<&str>, owner: Owner, spec: Spec) -> Observed {
    Observed::new(address, kind, member, owner, spec)
}

pub(crate) fn spec<const N: usize>(pairs: [(&str, String); N]) -> Spec {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The address the file wants for the one object of `kind` (the registry, the control plane), if any.
pub(crate) fn wanted_address(wanted: &[Resource], kind: Kind) -> Option<Address> {
    wanted.iter().find(|r| r.kind == kind).map(|r| r.address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_back_from_addresses() {
        let a = Address::new(Kind::Proxy, &["member1", "web"]);
        assert_eq!(name_from_address(&a, Kind::Proxy, Some("member1")), "web");
        let a = Address::new(Kind::LxdInstance, &["member1"]);
        assert_eq!(name_from_address(&a, Kind::LxdInstance, Some("member1")), "member1");
        let a = Address::new(Kind::Image, &["etcd"]);
        assert_eq!(name_from_address(&a, Kind::Image, None), "etcd");
        let a = Address::new(Kind::LxdNetwork, &["lxdbr0"]);
        assert_eq!(name_from_address(&a, Kind::LxdNetwork, None), "lxdbr0");
    }
}
