//! What the steps of the layers still simulated on their own (registry, Karmada) need of the MicroK8s
//! below them: the host's MicroK8s running, a member's container and its MicroK8s running. The MicroK8s
//! layer itself is the real provider over the simulated programs ([`crate::member_programs`]).

use testbed_plan::Address;
use testbed_provider::ProviderError;

use crate::step::precondition;
use crate::world::{HostMicrok8s, Instance, MemberMicrok8s, SimWorld};

/// The host MicroK8s, installed and running, for a step that needs it.
pub(crate) fn require_host<'a>(
    world: &'a SimWorld,
    address: &Address,
    doing: &str,
) -> Result<&'a HostMicrok8s, ProviderError> {
    let m = world.host.microk8s.as_ref().ok_or_else(|| {
        precondition(
            format!("{address}: cannot {doing}: MicroK8s is not installed on the host"),
            "apply host.microk8s first",
        )
    })?;
    if !m.running {
        return Err(precondition(
            format!("{address}: cannot {doing}: the host MicroK8s is stopped"),
            "run testbed apply to start it, or: microk8s start",
        ));
    }
    Ok(m)
}

/// The member's container, existing and running, for a step that runs a command in it.
pub(crate) fn running_container<'a>(
    world: &'a SimWorld,
    address: &Address,
    member: &str,
    doing: &str,
) -> Result<&'a Instance, ProviderError> {
    let i = world.instance(member).ok_or_else(|| {
        precondition(
            format!("{address}: cannot {doing}: container {member} does not exist"),
            format!("apply lxd_instance.{member} first"),
        )
    })?;
    if !i.is_running() {
        return Err(precondition(
            format!("{address}: cannot {doing}: container {member} is stopped"),
            format!("run testbed apply, which starts testbed's stopped containers, or: lxc start {member}"),
        ));
    }
    Ok(i)
}

/// The member's MicroK8s, installed and running in a running container.
pub(crate) fn running_member<'a>(
    world: &'a SimWorld,
    address: &Address,
    member: &str,
    doing: &str,
) -> Result<&'a MemberMicrok8s, ProviderError> {
    let i = running_container(world, address, member, doing)?;
    let m = i.microk8s.as_ref().ok_or_else(|| {
        precondition(
            format!("{address}: cannot {doing}: MicroK8s is not installed in {member}"),
            format!("apply microk8s.{member} first"),
        )
    })?;
    if !m.running {
        return Err(precondition(
            format!("{address}: cannot {doing}: MicroK8s in {member} is stopped"),
            format!("run testbed apply to start it, or: lxc exec {member} -- microk8s start"),
        ));
    }
    Ok(m)
}
