//! The Karmada layer: the control plane on the host cluster (`karmadactl init`/`deinit`) and the members'
//! memberships (`karmadactl join`/`unjoin` in push mode, `register`/`unregister` in pull mode).

use testbed_plan::{Action, Address, Kind, Observed, Resource};
use testbed_provider::ProviderError;

use crate::below::{require_host, running_member};
use crate::step::{
    already_exists, ensure_owned, failed, member_of, observed, owner_of, port_setting, precondition, run_op, setting,
    spec, wanted_address, Target, Transcript,
};
use crate::world::{is_testbed, testbed, ClusterRecord, ControlPlane, PortHolder, SimWorld, SyncMode};

/// The host cluster's admin kubeconfig, which karmadactl init and deinit use.
pub const HOST_KUBECONFIG: &str = "/var/snap/microk8s/current/credentials/client.config";

const CONTROL_PLANE: &str = "a Karmada control plane on the host cluster";
const CONTROL_PLANE_MARKER: &str = "testbed label on the karmada-system namespace";
const CLUSTER_MARKER: &str = "testbed label on the Cluster object";

pub(crate) fn observe_all(world: &SimWorld, wanted: &[Resource]) -> Vec<Observed> {
    let mut out = Vec::new();
    let Some(cp) = world.control_plane() else { return out };
    let address = wanted_address(wanted, Kind::KarmadaControlPlane)
        .unwrap_or_else(|| Address::new(Kind::KarmadaControlPlane, &[&cp.name]));
    out.push(observed(
        address,
        Kind::KarmadaControlPlane,
        None,
        owner_of(&cp.owner, CONTROL_PLANE, CONTROL_PLANE_MARKER),
        spec([
            ("version", cp.version.clone()),
            ("api_port", cp.api_port.to_string()),
            ("data_dir", cp.data_dir.clone()),
            ("advertise_address", cp.advertise_address.clone()),
            ("image_registry", cp.image_registry.clone()),
        ]),
    ));
    for (name, c) in &cp.clusters {
        let mut s = spec([("mode", c.sync_mode.name().to_owned())]);
        if let Some(e) = &c.api_endpoint {
            s.insert("api_endpoint".into(), e.clone());
        }
        let owner = owner_of(&c.owner, &format!("a cluster named {name} registered in Karmada"), CLUSTER_MARKER);
        out.push(observed(Address::new(Kind::KarmadaMember, &[name]), Kind::KarmadaMember, Some(name), owner, s));
    }
    out
}

pub(crate) fn apply(world: &mut SimWorld, action: &Action, t: &mut Transcript) -> Result<(), ProviderError> {
    match action.kind {
        Kind::KarmadaControlPlane => run_op(world, action, t, init, reconfigure, deinit),
        Kind::KarmadaMember => run_op(world, action, t, join, update_membership, unjoin),
        other => Err(ProviderError::failed(format!("the Karmada layer does not handle {other:?} resources"))),
    }
}

/// Images a resource needs from the local registry (its `image.*` dependencies) that are not there.
fn missing_images(world: &SimWorld, r: &Resource) -> Vec<String> {
    let present = |name: &str| world.registry().is_some_and(|reg| reg.images.contains_key(name));
    r.depends_on
        .iter()
        .filter_map(|d| d.as_str().strip_prefix("image.").map(|name| (d, name)))
        .filter(|(_, name)| !present(name))
        .map(|(d, _)| d.to_string())
        .collect()
}

// The control plane.

fn init(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let version = setting(r, "version")?.to_owned();
    let api_port = port_setting(r, "api_port")?;
    let data_dir = setting(r, "data_dir")?.to_owned();
    let advertise = setting(r, "advertise_address")?.to_owned();
    let image_registry = setting(r, "image_registry")?.to_owned();
    let a = &r.address;

    let karmadactl = world.host.packages.get("karmadactl").ok_or_else(|| {
        precondition(format!("{a}: karmadactl is not installed on the host"), "apply host.packages first")
    })?;
    if karmadactl.version.as_deref() != Some(version.as_str()) {
        let have = karmadactl.version.as_deref().unwrap_or("of an unknown version");
        return Err(precondition(
            format!(
                "{a}: karmadactl on the host is {have} but the control plane wants {version}: init would pull Karmada images tagged with its own version"
            ),
            format!("apply host.packages to install karmadactl {version}"),
        ));
    }
    let host = require_host(world, a, "run karmadactl init")?;
    if let Some(cp) = &host.karmada {
        return Err(already_exists(a, &cp.owner, CONTROL_PLANE, CONTROL_PLANE_MARKER));
    }
    if !host.addons.contains("dns") {
        return Err(precondition(
            format!(
                "{a}: karmadactl init needs cluster DNS on the host MicroK8s, and the dns addon is not enabled (karmada-apiserver would fail to resolve etcd-client.karmada-system.svc)"
            ),
            "apply host.addons first, with dns in [host] addons",
        ));
    }
    let registry = host.registry.as_ref().ok_or_else(|| {
        precondition(
            format!(
                "{a}: karmadactl init pulls its images from {image_registry}, but the local registry is not enabled"
            ),
            "apply the registry resource (registry.local) first",
        )
    })?;
    let local = format!("localhost:{}", registry.port);
    if image_registry != local {
        return Err(precondition(
            format!("{a}: karmadactl init would pull from {image_registry}, but the local registry is {local}"),
            "make [registry] port and the control plane's image registry agree",
        ));
    }
    let missing = missing_images(world, r);
    if !missing.is_empty() {
        return Err(precondition(
            format!(
                "{a}: karmadactl init would pull {} image(s) that are not in the local registry {image_registry}: {}",
                missing.len(),
                missing.join(", ")
            ),
            "apply those image resources first: testbed apply copies them into the local registry",
        ));
    }
    if let Some(holder) = world.port_holder(api_port, Some(&PortHolder::KarmadaApi)) {
        return Err(precondition(
            format!("{a}: karmadactl init cannot use --port {api_port}: the port is already in use (held by {holder})"),
            format!("free port {api_port} on the host, or choose another [karmada] api_port"),
        ));
    }
    let pki = format!("{}/pki", data_dir.trim_end_matches('/'));
    let port = api_port.to_string();
    t.command(&[
        "karmadactl",
        "init",
        "--kubeconfig",
        HOST_KUBECONFIG,
        "--private-image-registry",
        &image_registry,
        "--port",
        &port,
        "--karmada-data",
        &data_dir,
        "--karmada-pki",
        &pki,
        "--karmada-apiserver-advertise-address",
        &advertise,
        "--cert-external-ip",
        &advertise,
    ]);
    let cp = ControlPlane {
        name: r.name.clone(),
        version,
        api_port,
        data_dir,
        advertise_address: advertise,
        image_registry,
        owner: testbed(),
        clusters: Default::default(),
    };
    t.note(format!("wrote {}", cp.kubeconfig_path()));
    if let Some(m) = world.host.microk8s.as_mut() {
        m.karmada = Some(cp);
    }
    Ok(())
}

fn reconfigure(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let advertise = setting(r, "advertise_address")?.to_owned();
    let image_registry = setting(r, "image_registry")?.to_owned();
    let cp = world
        .control_plane()
        .ok_or_else(|| failed(format!("{}: the Karmada control plane no longer exists", r.address), "plan again"))?;
    ensure_owned(&r.address, "change", &cp.owner, CONTROL_PLANE, CONTROL_PLANE_MARKER)?;
    require_host(world, &r.address, "change the Karmada control plane")?;
    if cp.advertise_address != advertise || cp.image_registry != image_registry {
        t.note(format!("control plane reconfigured: advertise address {advertise}, images from {image_registry}"));
    }
    if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
        cp.advertise_address = advertise;
        cp.image_registry = image_registry;
    }
    Ok(())
}

fn deinit(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let Some(cp) = world.control_plane() else {
        t.note("no Karmada control plane to remove");
        return Ok(());
    };
    ensure_owned(&target.address, "delete", &cp.owner, CONTROL_PLANE, CONTROL_PLANE_MARKER)?;
    require_host(world, &target.address, "run karmadactl deinit")?;
    if !cp.clusters.is_empty() {
        t.note(format!("{} registered cluster(s) go with it", cp.clusters.len()));
    }
    t.command(&["karmadactl", "deinit", "--kubeconfig", HOST_KUBECONFIG, "-f"]);
    t.note(format!("karmadactl deinit leaves {} and /var/lib/karmada-etcd behind", cp.data_dir));
    if let Some(m) = world.host.microk8s.as_mut() {
        m.karmada = None;
    }
    Ok(())
}

// Memberships.

fn sync_mode(r: &Resource) -> Result<SyncMode, ProviderError> {
    match setting(r, "mode")? {
        "push" => Ok(SyncMode::Push),
        "pull" => Ok(SyncMode::Pull),
        other => Err(failed(format!("{}: unknown join mode {other:?}", r.address), "use push or pull")),
    }
}

/// The member's API answers through its proxy: container running, MicroK8s running, API proxy present.
fn require_member_api(world: &SimWorld, address: &Address, member: &str, doing: &str) -> Result<String, ProviderError> {
    let why = format!("{doing}: {member}'s API must answer through its proxy, and it cannot");
    let m = running_member(world, address, member, &why)?;
    if !world.instance(member).is_some_and(|i| i.proxies.contains_key("api")) {
        return Err(precondition(
            format!("{address}: cannot {why}: the API proxy (proxy.{member}.api) does not exist"),
            format!("apply proxy.{member}.api first"),
        ));
    }
    Ok(m.cluster_id.clone())
}

fn join(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let a = &r.address;
    let member = member_of(r)?.to_owned();
    let mode = sync_mode(r)?;
    let verb = match mode {
        SyncMode::Push => "join",
        SyncMode::Pull => "register",
    };
    let doing = format!("{verb} {member} to Karmada");
    let cp = world.control_plane().ok_or_else(|| {
        precondition(
            format!("{a}: cannot {doing}: the Karmada control plane is not installed"),
            "apply karmada.control_plane first",
        )
    })?;
    require_host(world, a, &format!("{doing} (the Karmada API server runs in the host MicroK8s)"))?;
    let cluster_id = require_member_api(world, a, &member, &doing)?;
    let kubeconfig = world.kubeconfigs.get(&member).ok_or_else(|| {
        precondition(
            format!("{a}: cannot {doing}: the kubeconfig of {member} has not been written"),
            format!("apply kubeconfig.{member} first"),
        )
    })?;
    if let Some(existing) = cp.clusters.get(&member) {
        let by = if is_testbed(&existing.owner) { "by testbed earlier" } else { "by someone else" };
        return Err(precondition(
            format!("{a}: karmadactl {verb} {member} failed: the same cluster has been registered with name {member} ({by})"),
            "unregister it yourself (karmadactl unjoin), or rename the member in the file",
        ));
    }
    if let Some((other, _)) = cp.clusters.iter().find(|(_, c)| c.id == cluster_id) {
        return Err(failed(
            format!(
                "{a}: karmadactl {verb} {member} failed: the same cluster has been registered with name {other} ({member} has the same kube-system UID; was its container copied from another member?)"
            ),
            format!("rebuild {member}'s container from an image without MicroK8s"),
        ));
    }
    let karmada_config = cp.kubeconfig_path();
    let record = match mode {
        SyncMode::Push => {
            let endpoint = setting(r, "api_endpoint")?.to_owned();
            t.command(&[
                "karmadactl",
                "join",
                &member,
                "--kubeconfig",
                &karmada_config,
                "--cluster-kubeconfig",
                &kubeconfig.karmada_path,
            ]);
            ClusterRecord { sync_mode: mode, api_endpoint: Some(endpoint), id: cluster_id, owner: testbed() }
        }
        SyncMode::Pull => {
            let missing = missing_images(world, r);
            if !missing.is_empty() {
                return Err(precondition(
                    format!(
                        "{a}: cannot {doing}: the karmada-agent image is not in the local registry: {}",
                        missing.join(", ")
                    ),
                    "apply those image resources first",
                ));
            }
            if world.instance(&member).and_then(|i| i.microk8s.as_ref()).is_some_and(|m| m.karmada_agent) {
                return Err(failed(
                    format!("{a}: karmadactl register preflight failed: karmada-system/karmada-kubeconfig already exists on {member}"),
                    format!("remove the old karmada-agent from {member} (karmadactl unregister)"),
                ));
            }
            let agent_image = r
                .depends_on
                .iter()
                .filter_map(|d| d.as_str().strip_prefix("image."))
                .find_map(|name| world.registry().and_then(|reg| reg.images.get(name)))
                .map(|img| img.target.clone())
                .unwrap_or_else(|| format!("{}/karmada-agent:{}", cp.image_registry, cp.version));
            let endpoint = format!("{}:{}", cp.advertise_address, cp.api_port);
            t.command(&["karmadactl", "token", "create", "--print-register-command", "--kubeconfig", &karmada_config]);
            t.command(&[
                "karmadactl",
                "register",
                &endpoint,
                "--token",
                "<token>",
                "--discovery-token-ca-cert-hash",
                "<ca-cert-hash>",
                "--kubeconfig",
                &kubeconfig.path,
                "--cluster-name",
                &member,
                "--karmada-agent-image",
                &agent_image,
            ]);
            ClusterRecord { sync_mode: mode, api_endpoint: None, id: cluster_id, owner: testbed() }
        }
    };
    if mode == SyncMode::Pull {
        if let Some(m) = world.instance_mut(&member).and_then(|i| i.microk8s.as_mut()) {
            m.karmada_agent = true;
        }
    }
    if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
        cp.clusters.insert(member, record);
    }
    Ok(())
}

fn update_membership(world: &mut SimWorld, r: &Resource, t: &mut Transcript) -> Result<(), ProviderError> {
    let a = &r.address;
    let member = member_of(r)?.to_owned();
    let cp = world.control_plane().ok_or_else(|| {
        precondition(
            format!("{a}: cannot change {member}'s membership: the Karmada control plane is not installed"),
            "apply karmada.control_plane first",
        )
    })?;
    let what = format!("a cluster named {member} registered in Karmada");
    let record =
        cp.clusters.get(&member).ok_or_else(|| failed(format!("{a}: {what} no longer exists"), "plan again"))?;
    ensure_owned(a, "change", &record.owner, &what, CLUSTER_MARKER)?;
    require_host(world, a, "reach the Karmada API server")?;
    let endpoint = r.spec.get("api_endpoint").cloned();
    if record.sync_mode == SyncMode::Push && endpoint.is_some() && record.api_endpoint != endpoint {
        let patch = format!(r#"{{"spec":{{"apiEndpoint":"{}"}}}}"#, endpoint.as_deref().unwrap_or_default());
        let karmada_config = cp.kubeconfig_path();
        t.command(&[
            "kubectl",
            "--kubeconfig",
            &karmada_config,
            "patch",
            "cluster",
            &member,
            "--type=merge",
            "-p",
            &patch,
        ]);
        if let Some(c) =
            world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()).and_then(|cp| cp.clusters.get_mut(&member))
        {
            c.api_endpoint = endpoint;
        }
    }
    Ok(())
}

fn unjoin(world: &mut SimWorld, target: &Target, t: &mut Transcript) -> Result<(), ProviderError> {
    let a = &target.address;
    let member = target.member()?.to_owned();
    let Some(cp) = world.control_plane() else {
        t.note(format!("nothing to unjoin: the Karmada control plane is gone, and {member}'s membership with it"));
        return Ok(());
    };
    let Some(record) = cp.clusters.get(&member) else {
        t.note(format!("{member} is not registered in Karmada"));
        return Ok(());
    };
    let what = format!("a cluster named {member} registered in Karmada");
    ensure_owned(a, "delete", &record.owner, &what, CLUSTER_MARKER)?;
    require_host(world, a, &format!("unjoin {member} (the Karmada API server runs in the host MicroK8s)"))?;
    let karmada_config = cp.kubeconfig_path();
    let reachable = require_member_api(world, a, &member, "reach the member").is_ok();
    let kubeconfig = world.kubeconfigs.get(&member);
    let mode = record.sync_mode;
    match mode {
        SyncMode::Push => {
            let cluster_config = kubeconfig.map(|k| k.karmada_path.clone()).unwrap_or_default();
            let mut argv = vec![
                "karmadactl",
                "unjoin",
                &member,
                "--kubeconfig",
                &karmada_config,
                "--cluster-kubeconfig",
                &cluster_config,
            ];
            if !reachable || kubeconfig.is_none() {
                argv.push("--force");
            }
            t.command(&argv);
        }
        SyncMode::Pull => {
            let cluster_config = kubeconfig.map(|k| k.path.clone()).unwrap_or_default();
            t.command(&[
                "karmadactl",
                "unregister",
                &member,
                "--cluster-kubeconfig",
                &cluster_config,
                "--karmada-config",
                &karmada_config,
            ]);
            if !reachable {
                t.note(format!("{member} does not answer: its karmada-agent is left behind"));
            }
        }
    }
    if mode == SyncMode::Pull && reachable {
        if let Some(m) = world.instance_mut(&member).and_then(|i| i.microk8s.as_mut()) {
            m.karmada_agent = false;
        }
    }
    if let Some(cp) = world.host.microk8s.as_mut().and_then(|m| m.karmada.as_mut()) {
        cp.clusters.remove(&member);
    }
    Ok(())
}
