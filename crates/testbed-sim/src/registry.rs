//! The registry layer: the local registry (host MicroK8s `registry` addon), the images copied into it, and
//! images side-loaded into members' MicroK8s.

use std::collections::{BTreeMap, BTreeSet};

use testbed_plan::{Action, Address, Kind, Observed, Resource};
use testbed_provider::ProviderError;

use crate::below::{require_host, running_member};
use crate::step::{
    already_exists, ensure_owned, failed, list, member_of, observed, owner_of, port_setting, precondition, run_op,
    setting, spec, wanted_address, Target, Transcript,
};
use crate::world::{testbed, PortHolder, Registry, RegistryImage, SideloadedImage, SimWorld};

/// The NodePort the MicroK8s registry addon uses unless told otherwise.
pub const ADDON_DEFAULT_PORT: u16 = 32000;

const REGISTRY_MARKER: &str = "testbed annotation on the container-registry namespace";
const IMAGE_MARKER: &str = "testbed annotation on the manifest";
const SIDELOAD_MARKER: &str = "testbed record of side-loaded images";

pub(crate) fn observe_all(world: &SimWorld, wanted: &[Resource]) -> Vec<Observed> {
    let mut out = Vec::new();
    if let Some(r) = world.registry() {
        // There is one registry; it goes by the file's name for it.
        let address =
            wanted_address(wanted, Kind::Registry).unwrap_or_else(|| Address::new(Kind::Registry, &[&r.name]));
        let owner = owner_of(&r.owner, "the host MicroK8s registry addon, enabled by someone else,", REGISTRY_MARKER);
        out.push(observed(address, Kind::Registry, None, owner, spec([("port", r.port.to_string())])));
        for (name, img) in &r.images {
            let owner = owner_of(&img.owner, &format!("image {} in the local registry", img.target), IMAGE_MARKER);
            out.push(observed(
                Address::new(Kind::Image, &[name]),
                Kind::Image,
                None,
                owner,
                spec([
                    ("source", img.source.clone()),
                    ("target", img.target.clone()),
                    ("platforms", img.platforms.iter().map(String::as_str).collect::<Vec<_>>().join(",")),
                ]),
            ));
        }
    }
    for (member, i) in &world.lxd.instances {
        let Some(m) = &i.microk8s else { continue };
        for (name, img) in &m.sideloaded {
            let mut s = spec([("source", img.source.clone())]);
            if let Some(a) = &img.archive {
                s.insert("archive".into(), a.clone());
            }
            let owner = owner_of(&img.owner, &format!("image {} in {member}'s MicroK8s", img.source), SIDELOAD_MARKER);
            out.push(observed(Address::new(Kind::Sideload, &[member, name]), Kind::Sideload, Some(member), owner, s));
        }
    }
    out
}

pub(crate) fn apply(world: &mut SimWorld, action: &Action, t: &mut Transcript) -> Result<(), ProviderError> {
    match action.kind {
        Kind::Registry => run_op(world, action, t, enable_registry, check_registry, disable_registry),
        Kind::Image => run_op(world, action, t, copy_image, copy_image, delete_image),
        Kind::Sideload => run_op(world, action, t, sideload, sideload, remove_sideload),
        other => Err(ProviderError::failed(format!("the registry layer does not handle {other:?} resources"))),
    }
}

// The registry.

fn enable_registry(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let port = port_setting(r, "port")?;
    let host = require_host(world, &r.address, "enable the registry addon")?;
    if let Some(existing) = &host.registry {
        return Err(already_exists(&r.address, &existing.owner, "the host MicroK8s registry addon", REGISTRY_MARKER));
    }
    if let Some(holder) = world.port_holder(port, Some(&PortHolder::Registry)) {
        return Err(precondition(
            format!(
                "{}: the registry cannot listen on port {port}: address already in use (held by {holder})",
                r.address
            ),
            format!("free port {port} on the host, or choose another [registry] port in the file"),
        ));
    }
    t.command(&["microk8s", "enable", "registry"]);
    if port != ADDON_DEFAULT_PORT {
        let patch = format!(r#"[{{"op":"replace","path":"/spec/ports/0/nodePort","value":{port}}}]"#);
        t.command(&[
            "microk8s",
            "kubectl",
            "-n",
            "container-registry",
            "patch",
            "service",
            "registry",
            "--type=json",
            "-p",
            &patch,
        ]);
    }
    if let Some(m) = world.host.microk8s.as_mut() {
        m.registry = Some(Registry { name: r.name.clone(), port, owner: testbed(), images: BTreeMap::new() });
    }
    Ok(())
}

fn check_registry(world: &mut SimWorld, r: &Resource, _t: &mut Transcript) -> Result<(), ProviderError> {
    let what = "the host MicroK8s registry addon";
    let reg = world.registry().ok_or_else(|| {
        failed(format!("{}: {what} is no longer enabled", r.address), "plan again: the machine changed")
    })?;
    ensure_owned(&r.address, "change", &reg.owner, what, REGISTRY_MARKER)
}

fn disable_registry(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let Some(reg) = world.registry() else {
        t.note("the registry addon is not enabled");
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &reg.owner, "the host MicroK8s registry addon", REGISTRY_MARKER)?;
    require_host(world, &target.address, "disable the registry addon")?;
    if !reg.images.is_empty() {
        t.note(format!("{} image(s) in the registry go with it", reg.images.len()));
    }
    t.command(&["microk8s", "disable", "registry"]);
    if let Some(m) = world.host.microk8s.as_mut() {
        m.registry = None;
    }
    Ok(())
}

// Images in the registry.

/// `localhost:32000/etcd:3.5.16-0` → (`localhost:32000`, `etcd`, `3.5.16-0`).
fn split_target(target: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = target.split_once('/')?;
    let (repo, reference) = match rest.split_once('@') {
        Some((repo, digest)) => (repo, digest),
        None => rest.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).unwrap_or((rest, "latest")),
    };
    Some((host, repo, reference))
}

/// The registry a step on an image needs: enabled and answering.
fn answering_registry<'a>(
    world: &'a SimWorld,
    r_address: &Address,
    doing: &str,
) -> Result<&'a Registry, ProviderError> {
    let reg = world.registry().ok_or_else(|| {
        precondition(
            format!("{r_address}: cannot {doing}: the local registry is not enabled (host MicroK8s registry addon)"),
            "apply the registry resource (registry.local) first",
        )
    })?;
    require_host(world, r_address, &format!("{doing} (the local registry runs in the host MicroK8s)"))?;
    Ok(reg)
}

fn copy_image(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let source = setting(r, "source")?.to_owned();
    let target = setting(r, "target")?.to_owned();
    let platforms: BTreeSet<String> =
        list(r.spec.get("platforms").map(String::as_str).unwrap_or("")).into_iter().collect();
    let doing = format!("copy {source} into the local registry");
    let reg = answering_registry(world, &r.address, &doing)?;
    let local = format!("localhost:{}", reg.port);
    let Some((host, repo, reference)) = split_target(&target).filter(|(h, _, _)| *h == local) else {
        return Err(failed(
            format!("{}: cannot push {target}: nothing listens there (the local registry is {local})", r.address),
            "check [registry] port in the file",
        ));
    };
    if let Some(existing) = reg.images.get(&r.name) {
        let what = format!("image {} in the local registry", existing.target);
        ensure_owned(&r.address, "overwrite", &existing.owner, &what, IMAGE_MARKER)?;
    }
    t.api("PUT", &format!("http://{host}/v2/{repo}/manifests/{reference}"));
    let shown: Vec<&str> = platforms.iter().map(String::as_str).collect();
    t.note(format!("copied {source} → {target} (platforms: {})", shown.join(", ")));
    if let Some(reg) = world.host.microk8s.as_mut().and_then(|m| m.registry.as_mut()) {
        reg.images.insert(r.name.clone(), RegistryImage { source, target, platforms, owner: testbed() });
    }
    Ok(())
}

fn delete_image(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let Some(img) = world.registry().and_then(|reg| reg.images.get(&target.name)) else {
        t.note(format!("image {} is not in the local registry", target.name));
        return Ok(());
    };
    let what = format!("image {} in the local registry", img.target);
    ensure_owned(&target.address, "delete", &img.owner, &what, IMAGE_MARKER)?;
    answering_registry(world, &target.address, &format!("delete {}", img.target))?;
    if let Some((host, repo, reference)) = split_target(&img.target) {
        t.api("DELETE", &format!("http://{host}/v2/{repo}/manifests/{reference}"));
    }
    if let Some(reg) = world.host.microk8s.as_mut().and_then(|m| m.registry.as_mut()) {
        reg.images.remove(&target.name);
    }
    Ok(())
}

// Side-loaded images.

fn sideload(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = member_of(r)?.to_owned();
    let source = setting(r, "source")?.to_owned();
    let archive = r.spec.get("archive").cloned();
    let m = running_member(world, &r.address, &member, &format!("side-load {source} into {member}"))?;
    if let Some(existing) = m.sideloaded.get(&r.name) {
        let what = format!("image {} in {member}'s MicroK8s", existing.source);
        ensure_owned(&r.address, "overwrite", &existing.owner, &what, SIDELOAD_MARKER)?;
    }
    let tar = format!("/var/lib/testbed/sideload/{}.tar", r.name);
    if archive.is_none() {
        t.command(&["skopeo", "copy", &format!("docker://{source}"), &format!("docker-archive:{tar}:{source}")]);
    }
    t.api("POST", &format!("/1.0/instances/{member}/files?path={tar}"));
    t.exec(&member, &["microk8s", "images", "import", &tar]);
    if let Some(m) = world.instance_mut(&member).and_then(|i| i.microk8s.as_mut()) {
        m.sideloaded.insert(r.name.clone(), SideloadedImage { source, archive, owner: testbed() });
    }
    Ok(())
}

fn remove_sideload(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let member = target.member()?;
    let Some(img) =
        world.instance(member).and_then(|i| i.microk8s.as_ref()).and_then(|m| m.sideloaded.get(&target.name))
    else {
        t.note(format!("image {} is not side-loaded in {member}", target.name));
        return Ok(());
    };
    let what = format!("image {} in {member}'s MicroK8s", img.source);
    ensure_owned(&target.address, "delete", &img.owner, &what, SIDELOAD_MARKER)?;
    let source = img.source.clone();
    running_member(world, &target.address, member, &format!("remove {source} from {member}"))?;
    t.exec(member, &["microk8s", "ctr", "images", "rm", &source]);
    if let Some(m) = world.instance_mut(member).and_then(|i| i.microk8s.as_mut()) {
        m.sideloaded.remove(&target.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn targets_split_into_registry_repository_and_reference() {
        assert_eq!(split_target("localhost:32000/etcd:3.5.16-0"), Some(("localhost:32000", "etcd", "3.5.16-0")));
        assert_eq!(split_target("localhost:32000/a/b@sha256:00"), Some(("localhost:32000", "a/b", "sha256:00")));
        assert_eq!(split_target("localhost:32000/nginx"), Some(("localhost:32000", "nginx", "latest")));
        assert_eq!(split_target("nothing"), None);
    }
}
