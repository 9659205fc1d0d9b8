//! Semantic checks: everything that parses but cannot be built. Each problem points at its line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::error::Reporter;
use crate::model::{ReplicaMode, TestbedFile, HOST_MICROK8S_API_PORT};
use crate::source::Seg::{self, Index, Key};
use crate::{karmada_release, mirror, net, text};

/// Runs every check and records each problem once.
pub(crate) fn check(file: &TestbedFile, r: &mut Reporter<'_>) {
    let label_problem = || {
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        (!edge(file.name.as_bytes().first()) || !edge(file.name.as_bytes().last()))
            .then_some("must start and end with a letter or digit (it is the value of the testbed/owner label on what testbed registers in Kubernetes)")
    };
    check_control_characters(r);
    if let Some(why) = segment_problem(&file.name).or_else(label_problem) {
        r.report(
            r.map.value_span(&[Key("name")]),
            format!("testbed name {:?} {why}", file.name),
            "invalid name",
            Some("a short lowercase name such as \"lab\"".into()),
        );
    }
    check_names(file, r);
    check_ports(file, r);
    check_network(file, r);
    check_karmada(file, r);
    check_mirrors(file, r);
    check_images(file, r);
    check_proxies(file, r);
    check_members(file, r);
    check_workloads(file, r);
    check_text_fields(file, r);
}

/// No key or string value holds a control character: a newline would print as a line of its own (a fake
/// one, in `--dry-run`), and each becomes part of a path, an argument or an API call. The one exception is a
/// newline in an LXD `raw.*` setting of `[lxd.profile_config]`, which LXD reads line by line. A value reported
/// here is not reported again by its field's own rule.
fn check_control_characters(r: &mut Reporter<'_>) {
    for w in r.map.written_strings() {
        let multi_line =
            !w.is_key && w.path.strip_prefix("lxd.profile_config.").is_some_and(text::multi_line_config_key);
        let Some(c) = w.text.chars().find(|c| c.is_control() && !(multi_line && *c == '\n')) else { continue };
        let what =
            if w.is_key { format!("key {:?}", w.text) } else { format!("{} = {:?}", w.path.escape_debug(), w.text) };
        r.report(
            w.span.clone(),
            format!("{what} contains {}", text::describe_control(c)),
            "control character",
            Some(
                "values and keys are printable text on one line: remove it (only the raw.* values of [lxd.profile_config] may span lines)"
                    .into(),
            ),
        );
        r.tainted.insert(w.span.start);
    }
}

/// One text field's rule: a problem at the value when `why` says what is wrong.
fn field(
    r: &mut Reporter<'_>,
    path: &[Seg<'_>],
    what: String,
    why: Option<impl std::fmt::Display>,
    label: &str,
    hint: &str,
) {
    if let Some(why) = why {
        r.report(r.map.value_span(path), format!("{what} {why}"), label, Some(hint.into()));
    }
}

/// The text fields that reach a path, an argument or an API and have no rule of their own elsewhere. The
/// fields that share a rule are gathered first (where each is, how the message names it, its value).
fn check_text_fields(file: &TestbedFile, r: &mut Reporter<'_>) {
    let (h, l) = (&file.host, &file.lxd);
    let member = |i: usize, k: &'static str| vec![Key("members"), Index(i), Key(k)];
    let of = |i: usize| format!(" of member {:?}", file.members[i].name);

    let mut channels = vec![(
        vec![Key("host"), Key("microk8s_channel")],
        "[host] microk8s_channel",
        String::new(),
        &h.microk8s_channel,
    )];
    let mut addons: Vec<_> = h
        .addons
        .iter()
        .enumerate()
        .map(|(j, a)| (vec![Key("host"), Key("addons"), Index(j)], "host addon", String::new(), a))
        .collect();
    let mut images = vec![(vec![Key("lxd"), Key("image")], "[lxd] image", String::new(), &l.image)];
    for (i, m) in file.members.iter().enumerate() {
        if let Some(c) = &m.microk8s_channel {
            channels.push((member(i, "microk8s_channel"), "microk8s_channel", of(i), c));
        }
        for (j, a) in m.addons.iter().enumerate() {
            addons.push((vec![Key("members"), Index(i), Key("addons"), Index(j)], "addon", of(i), a));
        }
        if let Some(img) = &m.image {
            images.push((member(i, "image"), "image", of(i), img));
        }
    }
    for (path, what, whose, c) in channels {
        let why = text::snap_channel_problem(c);
        let hint = "write a snap channel such as \"1.35/stable\" (TRACK/RISK[/BRANCH], or a track alone)";
        field(r, &path, format!("{what} {c:?}{whose} is not a snap channel: it"), why, "not a snap channel", hint);
    }
    for (path, what, whose, a) in addons {
        let why = text::addon_problem(a);
        let hint = "write the addon's name as `microk8s status` lists it, e.g. \"dns\" or \"hostpath-storage\"";
        field(r, &path, format!("{what} {a:?}{whose} is not a MicroK8s addon name: it"), why, "invalid addon", hint);
    }
    for (path, what, whose, img) in images {
        let hint = "write an image-server alias such as \"ubuntu:24.04\" (servers ubuntu:, ubuntu-daily:, images:) or a local alias such as \"testbed-busybox\"";
        field(r, &path, format!("{what} {img:?}{whose}"), text::lxd_image_problem(img), "invalid image", hint);
    }
    for (key, what, name) in [("storage_pool", "storage pool", &l.storage_pool), ("profile", "profile", &l.profile)] {
        let why = text::lxd_entity_name_problem(name);
        let hint = "use 1-63 ASCII letters, digits, '-' and '_', starting with a letter or digit";
        field(
            r,
            &[Key("lxd"), Key(key)],
            format!("[lxd] {key} {name:?} is not a {what} name testbed takes: it"),
            why,
            "invalid name",
            hint,
        );
    }
    let mut paths = vec![(vec![Key("host"), Key("kubeconfig_dir")], "[host] kubeconfig_dir", &h.kubeconfig_dir)];
    for (i, img) in file.images.iter().enumerate() {
        paths.extend(img.archive.as_ref().map(|a| (vec![Key("images"), Index(i), Key("archive")], "archive", a)));
    }
    for (path, what, p) in paths {
        field(
            r,
            &path,
            format!("{what} {p:?}"),
            text::path_problem(p),
            "invalid path",
            "name a file or folder, relative to this file or absolute",
        );
    }
    let driver = &l.storage_driver;
    let hint = "use a driver your LXD has, e.g. \"dir\" or \"zfs\"";
    field(
        r,
        &[Key("lxd"), Key("storage_driver")],
        format!("[lxd] storage_driver {driver:?}"),
        text::storage_driver_problem(driver),
        "invalid driver",
        hint,
    );
    for k in l.profile_config.keys() {
        if let Some(why) = text::config_key_problem(k) {
            r.report(
                r.map.key_span(&[Key("lxd"), Key("profile_config"), Key(k)]),
                format!("[lxd.profile_config] key {k:?} {why}"),
                "invalid key",
                Some("write LXD's own key, quoted, e.g. \"linux.kernel_modules\"".into()),
            );
        }
    }
    for (j, p) in file.registry.platforms.iter().enumerate() {
        let hint = "write e.g. \"linux/amd64\" or \"linux/arm/v7\"";
        field(
            r,
            &[Key("registry"), Key("platforms"), Index(j)],
            format!("platform {p:?}"),
            text::platform_problem(p),
            "not OS/ARCH[/VARIANT]",
            hint,
        );
    }
    let dir = &file.karmada.data_dir;
    let label = if dir.starts_with('/') { "unsafe folder" } else { "relative path" };
    let hint = "name a folder of its own, e.g. \"/etc/karmada\": init wipes it and destroy deletes it";
    field(
        r,
        &[Key("karmada"), Key("data_dir")],
        format!("[karmada] data_dir {dir:?}"),
        text::data_dir_problem(dir),
        label,
        hint,
    );
}

/// An LXD instance name: 1 to 63 characters of ASCII letters, digits and hyphens, not starting with a digit
/// or a hyphen, not ending with a hyphen (LXD's own rule, which also makes it a valid hostname).
pub fn lxd_instance_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Some("may contain only ASCII letters, digits and hyphens");
    }
    if name.starts_with('-') || name.as_bytes()[0].is_ascii_digit() {
        return Some("must not start with a digit or a hyphen");
    }
    if name.ends_with('-') {
        return Some("must not end with a hyphen");
    }
    None
}

/// The member name is also its Karmada cluster name: lowercase, at most 48 characters (Karmada's own
/// cluster-name validation).
fn karmada_cluster_name_problem(name: &str) -> Option<&'static str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("contains uppercase letters");
    }
    if name.len() > 48 {
        return Some("is longer than 48 characters");
    }
    None
}

/// A name used as one segment of a resource address (proxy and image names): lowercase letters, digits,
/// hyphens and underscores.
fn segment_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 63 {
        return Some("must be 1 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Some("may contain only lowercase letters, digits, '-' and '_'");
    }
    None
}

fn check_names(file: &TestbedFile, r: &mut Reporter<'_>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in file.members.iter().enumerate() {
        let path = [Key("members"), Index(i), Key("name")];
        let span = r.map.value_span(&path);
        if let Some(why) = lxd_instance_name_problem(&m.name) {
            r.report(
                span.clone(),
                format!("member name {:?} is not a valid LXD instance name: it {why}", m.name),
                "not a valid instance name",
                Some("use 1-63 letters, digits and hyphens, starting with a letter, e.g. \"member4\"".into()),
            );
        } else if let Some(why) = karmada_cluster_name_problem(&m.name) {
            r.report(
                span.clone(),
                format!("member name {:?} cannot be a Karmada cluster name: it {why}", m.name),
                "not a valid cluster name",
                Some("Karmada cluster names are lowercase and at most 48 characters, e.g. \"member4\"".into()),
            );
        }
        if let Some(first) = seen.insert(&m.name, i) {
            let first_span = r.map.value_span(&[Key("members"), Index(first), Key("name")]);
            let first_at = r.location(&first_span);
            r.report(
                span,
                format!("duplicate member name {:?} (first defined at {first_at})", m.name),
                "defined twice",
                Some("give each [[members]] block its own name".into()),
            );
        }
    }
}

/// Something that occupies a host port.
struct PortUse<'p> {
    port: u16,
    what: String,
    path: Option<Vec<Seg<'p>>>,
}

fn check_ports(file: &TestbedFile, r: &mut Reporter<'_>) {
    let mut uses: Vec<PortUse<'_>> =
        vec![PortUse { port: HOST_MICROK8S_API_PORT, what: "the host MicroK8s API server".into(), path: None }];
    uses.push(PortUse {
        port: file.registry.port,
        what: "the registry ([registry] port)".into(),
        path: Some(vec![Key("registry"), Key("port")]),
    });
    uses.push(PortUse {
        port: file.karmada.api_port,
        what: "the Karmada API NodePort ([karmada] api_port)".into(),
        path: Some(vec![Key("karmada"), Key("api_port")]),
    });
    for (i, m) in file.members.iter().enumerate() {
        uses.push(PortUse {
            port: m.api_port,
            what: format!("the API proxy of member {:?}", m.name),
            path: Some(vec![Key("members"), Index(i), Key("api_port")]),
        });
    }
    for (i, p) in file.proxies.iter().enumerate() {
        uses.push(PortUse {
            port: p.host_port,
            what: format!("proxy {:?} of member {:?}", p.name, p.member),
            path: Some(vec![Key("proxies"), Index(i), Key("host_port")]),
        });
    }

    let mut taken: BTreeMap<u16, usize> = BTreeMap::new();
    for (idx, u) in uses.iter().enumerate() {
        let span = u.path.as_ref().map(|p| r.map.value_span(p)).unwrap_or(0..0);
        if u.path.is_some() && u.port < 1024 {
            r.report(
                span.clone(),
                format!("port {} for {} is outside 1024-65535", u.port, u.what),
                "privileged or invalid port",
                Some("pick a port from 1024 to 65535".into()),
            );
        }
        match taken.get(&u.port) {
            Some(&first) if u.path.is_some() => {
                let other = &uses[first];
                let at = match other.path.as_ref().map(|p| r.map.try_value_span(p)) {
                    Some(Some(span)) => format!(" at {}", r.location(&span)),
                    Some(None) => ", which is its default".to_owned(),
                    None => String::new(),
                };
                r.report(
                    span,
                    format!("host port {} is used twice: by {} and by {}{at}", u.port, u.what, other.what),
                    "port already taken",
                    Some("every member, proxy and host service needs its own host port".into()),
                );
            }
            _ => {
                taken.insert(u.port, idx);
            }
        }
    }
}

fn check_network(file: &TestbedFile, r: &mut Reporter<'_>) {
    let subnet_path = [Key("lxd"), Key("ipv4_address")];
    let subnet = match net::Subnet::parse(&file.lxd.ipv4_address) {
        Ok(s) => Some(s),
        Err(why) => {
            r.report(
                r.map.value_span(&subnet_path),
                format!("[lxd] ipv4_address {:?} {why}", file.lxd.ipv4_address),
                "not a bridge address",
                Some("write the bridge's own address with its prefix length, e.g. \"10.123.45.1/24\"".into()),
            );
            None
        }
    };
    if let Some(why) = lxd_instance_name_problem(&file.lxd.bridge) {
        r.report(
            r.map.value_span(&[Key("lxd"), Key("bridge")]),
            format!("[lxd] bridge {:?} is not a valid network name: it {why}", file.lxd.bridge),
            "invalid name",
            None,
        );
    } else if file.lxd.bridge.len() > 15 {
        r.report(
            r.map.value_span(&[Key("lxd"), Key("bridge")]),
            format!("[lxd] bridge {:?} is longer than 15 characters (a Linux interface name)", file.lxd.bridge),
            "too long",
            None,
        );
    }

    // Members without an ipv4 get one from the subnet (from its 10th address up): there must be room for
    // all of them, besides the addresses given by hand.
    if let Some(s) = &subnet {
        let automatic = file.members.iter().filter(|m| m.ipv4.is_none()).count();
        let given_in_range = file
            .members
            .iter()
            .filter_map(|m| m.ipv4.as_deref()?.parse::<Ipv4Addr>().ok())
            .filter(|a| s.is_member_candidate(*a))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let room = s.member_room().saturating_sub(given_in_range);
        if automatic > room {
            r.report(
                r.map.value_span(&subnet_path),
                format!(
                    "[lxd] ipv4_address {:?} leaves room for {room} member address{} (testbed gives members addresses from the subnet's 10th up), but {automatic} member{} {} no ipv4",
                    file.lxd.ipv4_address,
                    if room == 1 { "" } else { "es" },
                    if automatic == 1 { "" } else { "s" },
                    if automatic == 1 { "has" } else { "have" },
                ),
                "subnet too small",
                Some("use a larger subnet (a /24 holds 245 members), or give members their ipv4 by hand".into()),
            );
        }
    }

    let mut addrs: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (i, m) in file.members.iter().enumerate() {
        let Some(ip) = &m.ipv4 else { continue };
        let path = [Key("members"), Index(i), Key("ipv4")];
        let span = r.map.value_span(&path);
        let addr: Ipv4Addr = match ip.parse() {
            Ok(a) => a,
            Err(_) => {
                r.report(
                    span,
                    format!("ipv4 {ip:?} of member {:?} is not an IPv4 address", m.name),
                    "not an IPv4 address",
                    None,
                );
                continue;
            }
        };
        if let Some(s) = &subnet {
            if let Err(why) = s.check_host(addr) {
                r.report(
                    span.clone(),
                    format!("ipv4 {addr} of member {:?} {why}", m.name),
                    "unusable address",
                    Some(format!("pick an address in {} other than the bridge's own", s)),
                );
            }
        }
        if let Some(first) = addrs.insert(addr, i) {
            let at = r.location(&r.map.value_span(&[Key("members"), Index(first), Key("ipv4")]));
            r.report(
                span,
                format!("ipv4 {addr} is given to both {:?} (at {at}) and {:?}", file.members[first].name, m.name),
                "address used twice",
                None,
            );
        }
    }
}

fn check_karmada(file: &TestbedFile, r: &mut Reporter<'_>) {
    let v = &file.karmada.version;
    let version_span = || r.map.value_span(&[Key("karmada"), Key("version")]);
    if !karmada_release::is_release_tag(v) {
        r.report(
            version_span(),
            format!("karmada version {v:?} is not a release tag like \"{}\"", karmada_release::DEFAULT_VERSION),
            "unknown version",
            Some("use a release of one of the listed minors; any patch release of a listed minor works".into()),
        );
    } else if karmada_release::images(v).is_none() {
        let missing = karmada_release::missing_listed_images(file);
        if let Some(first) = missing.first() {
            let known = karmada_release::known_minors().iter().map(|m| format!("{m}.x")).collect::<Vec<_>>().join(", ");
            let example = match *first {
                "kube-apiserver" | "kube-controller-manager" | "etcd" => format!("registry.k8s.io/{first}:TAG"),
                name => format!("docker.io/karmada/{name}:{v}"),
            };
            r.report(
                version_span(),
                format!(
                    "karmada version {v:?} has no image table in this testbed (known: {known}), and [[images]] does not list its images: missing {}",
                    missing.join(", ")
                ),
                "unknown version",
                Some(format!(
                    "list each missing image as a registry image, with the tag karmadactl {v} uses, e.g.\n\n[[images]]\nname = \"{first}\"\nsource = \"{example}\"\n\nor use a release of one of the listed minors (any patch release of a listed minor works)"
                )),
            );
        }
    }
    let switch = karmada_release::release(v).map(|r| r.failover);
    // Only when asked for: a workload's failover turns it on where testbed knows how (the planner).
    if file.karmada.failover == Some(true) && karmada_release::is_release_tag(v) && switch.is_none() {
        let known = karmada_release::known_minors().iter().map(|m| format!("{m}.x")).collect::<Vec<_>>().join(", ");
        r.report(
            r.map.value_span(&[Key("karmada"), Key("failover")]),
            format!("testbed does not know how karmada {v} switches cluster failover on (it knows {known})"),
            "unknown for this version",
            Some("use a release of one of the listed minors, or set failover = false".into()),
        );
    }
    // Below 1024 is already reported with the other ports: one problem per value.
    if file.karmada.api_port >= 1024 && !(30000..=32767).contains(&file.karmada.api_port) {
        r.report(
            r.map.value_span(&[Key("karmada"), Key("api_port")]),
            format!("[karmada] api_port {} is outside the NodePort range 30000-32767", file.karmada.api_port),
            "not a NodePort",
            Some("karmadactl init exposes the Karmada API as a NodePort; the default is 32443".into()),
        );
    }
    if file.registry.port >= 1024 && file.registry.port != 32000 {
        r.report(
            r.map.value_span(&[Key("registry"), Key("port")]),
            format!(
                "[registry] port {} cannot be served: the MicroK8s registry addon always listens on NodePort 32000",
                file.registry.port
            ),
            "fixed by MicroK8s",
            Some("remove the key or set it to 32000".into()),
        );
    }
}

fn check_mirrors(file: &TestbedFile, r: &mut Reporter<'_>) {
    for (host, m) in &file.registry.mirrors {
        let at = |k: &'static str| [Key("registry"), Key("mirrors"), Key(host.as_str()), Key(k)];
        if let Some(why) = mirror::host_port_problem(host) {
            r.report(
                r.map.key_span(&[Key("registry"), Key("mirrors"), Key(host.as_str())]),
                format!("[registry.mirrors] key {host:?} is not a registry host: it {why}"),
                "not a registry host",
                Some(
                    "key each mirror by the registry host that image references name, e.g. \"docker.io\", \"registry.k8s.io\" or \"localhost:5000\""
                        .into(),
                ),
            );
        }
        let https = match mirror::parse_endpoint(&m.endpoint) {
            Ok((https, _)) => https,
            Err(p) => {
                let shown = if p.secret { String::new() } else { format!(" {:?}", m.endpoint) };
                r.report(
                    r.map.value_span(&at("endpoint")),
                    format!("endpoint{shown} of the mirror for {host:?} {}", p.why),
                    p.label,
                    Some(p.hint),
                );
                continue;
            }
        };
        if !https && !m.insecure {
            r.report(
                r.map.value_span(&at("endpoint")),
                format!(
                    "endpoint {:?} of the mirror for {host:?} is plain HTTP, and the mirror is not marked insecure",
                    m.endpoint
                ),
                "plain HTTP",
                Some(
                    "add `insecure = true` if the mirror really is plain HTTP; otherwise use its https:// endpoint"
                        .into(),
                ),
            );
        }
        if https && m.insecure {
            r.report(
                r.map.value_span(&at("insecure")),
                format!("the mirror for {host:?} is marked insecure, but its endpoint is https://: insecure only applies to http:// endpoints"),
                "only for http://",
                Some("remove `insecure = true`: an https:// mirror must present a certificate the host trusts".into()),
            );
        }
    }
}

fn check_images(file: &TestbedFile, r: &mut Reporter<'_>) {
    let release: Vec<&'static str> =
        karmada_release::images(&file.karmada.version).unwrap_or_default().iter().map(|i| i.name).collect();
    let mut names: BTreeMap<String, std::ops::Range<usize>> = BTreeMap::new();
    for (i, img) in file.images.iter().enumerate() {
        let source_span = r.map.value_span(&[Key("images"), Index(i), Key("source")]);
        if let Err(why) = crate::image_ref::ImageRef::parse(&img.source) {
            r.report(
                source_span.clone(),
                format!("image source {:?} {why}", img.source),
                "not an image reference",
                Some("write e.g. \"docker.io/library/nginx:1.27\"".into()),
            );
            continue;
        }
        let name = crate::image_name(img);
        let name_path = [Key("images"), Index(i), Key("name")];
        let name_span = if img.name.is_some() { r.map.value_span(&name_path) } else { source_span.clone() };
        if let Some(why) = segment_problem(&name) {
            r.report(
                name_span.clone(),
                format!("image name {name:?} {why}"),
                "invalid name",
                Some("set `name` to a short lowercase name".into()),
            );
        }
        if !img.sideload && release.contains(&name.as_str()) {
            r.report(
                name_span.clone(),
                format!(
                    "image name {name:?} is taken by the Karmada {} release image of that name",
                    file.karmada.version
                ),
                "shadows a release image",
                Some("set `name` to something else; the control plane's images are added for you".into()),
            );
        }
        if let Some(first) = names.insert(name.clone(), name_span.clone()) {
            let at = r.location(&first);
            r.report(
                name_span,
                format!("two images are named {name:?} (the other at {at})"),
                "duplicate image name",
                Some("set a distinct `name` on one of them".into()),
            );
        }
        if img.members.is_some() && !img.sideload {
            r.report(
                r.map.value_span(&[Key("images"), Index(i), Key("members")]),
                "`members` is only used with `sideload = true`; registry images serve every member",
                "unused",
                Some("add `sideload = true`, or remove `members`".into()),
            );
        }
        if img.archive.is_some() && !img.sideload {
            r.report(
                r.map.value_span(&[Key("images"), Index(i), Key("archive")]),
                "`archive` is only used with `sideload = true`",
                "unused",
                Some("add `sideload = true`, or remove `archive`".into()),
            );
        }
        if let Some(members) = &img.members {
            for (j, m) in members.iter().enumerate() {
                if !file.members.iter().any(|x| &x.name == m) {
                    r.report(
                        r.map.value_span(&[Key("images"), Index(i), Key("members"), Index(j)]),
                        format!("image {name:?} names member {m:?}, which is not in [[members]]"),
                        "no such member",
                        None,
                    );
                }
            }
        }
    }
}

fn check_proxies(file: &TestbedFile, r: &mut Reporter<'_>) {
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, p) in file.proxies.iter().enumerate() {
        let at = |k: &'static str| [Key("proxies"), Index(i), Key(k)];
        if let Some(why) = segment_problem(&p.name) {
            r.report(r.map.value_span(&at("name")), format!("proxy name {:?} {why}", p.name), "invalid name", None);
        } else if p.name == "api" {
            r.report(
                r.map.value_span(&at("name")),
                "proxy name \"api\" is reserved for the member's API proxy",
                "reserved",
                Some("the API proxy comes from the member's api_port; name this one after the application".into()),
            );
        }
        if !file.members.iter().any(|m| m.name == p.member) {
            r.report(
                r.map.value_span(&at("member")),
                format!("proxy {:?} forwards into member {:?}, which is not in [[members]]", p.name, p.member),
                "no such member",
                None,
            );
        }
        match (&p.target, &p.pod) {
            (Some(target), None) => {
                if let Err(why) = net::parse_connect(target) {
                    r.report(
                        r.map.value_span(&at("target")),
                        format!("proxy target {target:?} {why}"),
                        "not tcp:ADDRESS:PORT",
                        Some("write e.g. \"tcp:10.1.33.11:9090\"".into()),
                    );
                }
            }
            (None, Some(pod)) => check_pod(r, i, &p.name, pod),
            (None, None) => r.report(
                r.map.value_span(&[Key("proxies"), Index(i)]),
                format!("proxy {:?} says neither where to connect (`target`) nor which pod to follow (`pod`)", p.name),
                "no target and no pod",
                Some("add `pod = { namespace = \"monitoring\", selector = \"app.kubernetes.io/name=prometheus\", port = 9090 }` to follow a pod, or `target = \"tcp:ADDRESS:PORT\"` for a fixed address".into()),
            ),
            (Some(_), Some(_)) => r.report(
                r.map.key_span(&at("pod")),
                format!("proxy {:?} has both `target` and `pod`: it connects either to a fixed address or to a pod it follows", p.name),
                "target and pod",
                Some("remove `target` to follow the pod wherever it runs, or remove `pod` to keep the fixed address".into()),
            ),
        }
        if p.listen.parse::<IpAddr>().is_err() {
            r.report(
                r.map.value_span(&at("listen")),
                format!("listen address {:?} of proxy {:?} is not an IP address", p.listen, p.name),
                "not an IP address",
                None,
            );
        }
        if let Some(first) = seen.insert((&p.member, &p.name), i) {
            let first_at = r.location(&r.map.value_span(&[Key("proxies"), Index(first), Key("name")]));
            r.report(
                r.map.value_span(&at("name")),
                format!("member {:?} has two proxies named {:?} (the other at {first_at})", p.member, p.name),
                "duplicate proxy",
                None,
            );
        }
    }
}

/// A proxy's `pod`: a namespace that is a DNS label, a selector of equality terms with Kubernetes' label
/// keys and values, a port above 0.
fn check_pod(r: &mut Reporter<'_>, i: usize, name: &str, pod: &crate::model::PodTarget) {
    let at = |k: &'static str| [Key("proxies"), Index(i), Key("pod"), Key(k)];
    if let Some(why) = text::dns_label_problem(&pod.namespace) {
        r.report(
            r.map.value_span(&at("namespace")),
            format!("namespace {:?} of proxy {name:?} is not a Kubernetes namespace name: it {why}", pod.namespace),
            "not a namespace name",
            Some("write the namespace as `kubectl get namespaces` lists it, e.g. \"monitoring\"".into()),
        );
    }
    if let Some(why) = text::label_selector_problem(&pod.selector) {
        r.report(
            r.map.value_span(&at("selector")),
            format!("selector {:?} of proxy {name:?} {why}", pod.selector),
            "not KEY=VALUE[,KEY=VALUE]",
            Some("write the pod's labels as equality terms, e.g. \"app.kubernetes.io/name=prometheus\" (`kubectl get pods --show-labels` lists them)".into()),
        );
    }
    if pod.port == 0 {
        r.report(
            r.map.value_span(&at("port")),
            format!("pod port 0 of proxy {name:?} is outside 1-65535"),
            "not a port",
            Some("write the port the pod's container listens on, e.g. 9090".into()),
        );
    }
}

fn check_members(file: &TestbedFile, r: &mut Reporter<'_>) {
    for (i, m) in file.members.iter().enumerate() {
        let at = |k: &'static str| [Key("members"), Index(i), Key(k)];
        if m.listen.parse::<IpAddr>().is_err() {
            r.report(
                r.map.value_span(&at("listen")),
                format!("listen address {:?} of member {:?} is not an IP address", m.listen, m.name),
                "not an IP address",
                None,
            );
        }
        if let Some(cpu) = &m.cpu {
            let ok = !cpu.is_empty() && cpu.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b',');
            if !ok {
                r.report(
                    r.map.value_span(&at("cpu")),
                    format!("cpu limit {cpu:?} of member {:?} is not a count or a CPU set (\"2\", \"0-3\")", m.name),
                    "invalid limit",
                    None,
                );
            }
        }
        if let Some(mem) = &m.memory {
            if !net::is_memory_limit(mem) {
                r.report(
                    r.map.value_span(&at("memory")),
                    format!(
                        "memory limit {mem:?} of member {:?} is not a size (\"4GiB\", \"512MiB\") or a percentage",
                        m.name
                    ),
                    "invalid limit",
                    None,
                );
            }
        }
    }
}

/// A workload name: 1 to 63 lowercase letters, digits and `-`, starting with a letter and ending with a
/// letter or digit. It is the value of the `testbed/workload` label and a segment of resource addresses.
pub(crate) fn workload_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 63 {
        return Some("must be 1 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Some("may contain only lowercase letters, digits and '-'");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Some("must start with a letter");
    }
    if name.ends_with('-') {
        return Some("must end with a letter or digit");
    }
    None
}

/// The most seconds `failover.toleration_seconds` takes.
const MAX_TOLERATION_SECONDS: u32 = 3600;

/// The keys of a `[[workloads]]` entry. Its manifest files are read after every check here passes.
fn check_workloads(file: &TestbedFile, r: &mut Reporter<'_>) {
    let members: Vec<&str> = file.members.iter().map(|m| m.name.as_str()).collect();
    let listed = |names: &[&str]| match names {
        [] => "there are none".to_owned(),
        _ => format!("they are {}", names.join(", ")),
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, w) in file.workloads.iter().enumerate() {
        let at = |k: &'static str| [Key("workloads"), Index(i), Key(k)];
        let name = &w.name;
        if let Some(why) = workload_name_problem(name) {
            r.report(
                r.map.value_span(&at("name")),
                format!("workload name {name:?} {why} (it is a label value and a segment of resource addresses)"),
                "invalid name",
                Some("use 1-63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, e.g. \"web\"".into()),
            );
        }
        if let Some(first) = seen.insert(name, i) {
            let first_at = r.location(&r.map.value_span(&[Key("workloads"), Index(first), Key("name")]));
            r.report(
                r.map.value_span(&at("name")),
                format!("duplicate workload name {name:?} (first defined at {first_at})"),
                "defined twice",
                Some("give each [[workloads]] block its own name".into()),
            );
        }
        if w.manifests.is_empty() {
            r.report(
                r.map.value_span(&at("manifests")),
                format!("workload {name:?} has no manifests"),
                "empty",
                Some("list its YAML files or directories of them, e.g. manifests = [\"workloads/web.yaml\"]".into()),
            );
        }
        for (j, m) in w.manifests.iter().enumerate() {
            field(
                r,
                &[Key("workloads"), Index(i), Key("manifests"), Index(j)],
                format!("manifests entry {m:?} of workload {name:?}"),
                text::path_problem(m),
                "invalid path",
                "name a YAML file or a directory of them, relative to this file or absolute",
            );
        }
        if let Some(p) = &w.policy {
            field(
                r,
                &at("policy"),
                format!("policy {p:?} of workload {name:?}"),
                text::path_problem(p),
                "invalid path",
                "name the PropagationPolicy's YAML file, relative to this file or absolute",
            );
            let given = [
                ("members", w.members.is_some()),
                ("replicas", w.replicas.is_some()),
                ("weights", w.weights.is_some()),
                ("spread", w.spread.is_some()),
                ("failover", w.failover.is_some()),
            ];
            for (key, _) in given.iter().filter(|(_, given)| *given) {
                r.report(
                    r.map.key_span(&at(key)),
                    format!("workload {name:?} has a policy file, so `{key}` has no effect: the policy file decides placement"),
                    "the policy file decides placement",
                    Some(format!("remove `{key}` (and write it into the policy file), or remove `policy` and let testbed write the policy")),
                );
            }
            continue;
        }
        let mut placed: Vec<&str> = members.clone();
        if let Some(ms) = &w.members {
            if ms.is_empty() {
                r.report(
                    r.map.value_span(&at("members")),
                    format!("`members = []` places workload {name:?} on no member"),
                    "no members",
                    Some("list at least one member, or remove `members` to place it on every member".into()),
                );
            }
            placed.clear();
            for (j, m) in ms.iter().enumerate() {
                let span = r.map.value_span(&[Key("workloads"), Index(i), Key("members"), Index(j)]);
                if !members.contains(&m.as_str()) {
                    r.report(
                        span,
                        format!(
                            "workload {name:?} names member {m:?}, which is not in [[members]] ({})",
                            listed(&members)
                        ),
                        "no such member",
                        None,
                    );
                } else if placed.contains(&m.as_str()) {
                    r.report(
                        span,
                        format!("workload {name:?} lists member {m:?} twice"),
                        "listed twice",
                        Some("list each member once".into()),
                    );
                } else {
                    placed.push(m);
                }
            }
        }
        if let Some(ws) = &w.weights {
            if w.replicas == Some(ReplicaMode::Duplicated) {
                r.report(
                    r.map.value_span(&at("replicas")),
                    format!("workload {name:?} has `replicas = \"duplicated\"` and `weights`: duplicated replicas run in full on every member, so there is nothing to divide by weight"),
                    "conflicts with weights",
                    Some("remove one: `weights` to divide the replicas, or `replicas = \"duplicated\"` to run them all everywhere".into()),
                );
            }
            for k in ws.keys() {
                if placed.contains(&k.as_str()) {
                    continue;
                }
                let message = if members.contains(&k.as_str()) {
                    format!("weights of workload {name:?} name member {k:?}, which the workload is not placed on (its members: {})", placed.join(", "))
                } else {
                    format!(
                        "weights of workload {name:?} name {k:?}, which is not in [[members]] ({})",
                        listed(&members)
                    )
                };
                r.report(
                    r.map.key_span(&[Key("workloads"), Index(i), Key("weights"), Key(k)]),
                    message,
                    "not placed there",
                    Some("weigh only the members the workload is placed on (`members`, or every member when it is absent)".into()),
                );
            }
            if ws.values().all(|w| *w == 0) {
                let what = if ws.is_empty() { "`weights = {}` gives no member a weight" } else { "every weight is 0" };
                r.report(
                    r.map.value_span(&at("weights")),
                    format!("{what} in workload {name:?}: Karmada then divides the replicas equally among all its members, as if no weights were given"),
                    "no member weighed",
                    Some("give at least one member a weight above 0 (a member whose weight is 0 gets no replicas), or remove `weights` for an equal division".into()),
                );
            }
        }
        if let Some(spread) = w.spread {
            let n = placed.len();
            if spread == 0 || spread as usize > n {
                let on = match n {
                    0 => "on no member".to_owned(),
                    1 => "on 1 member".to_owned(),
                    n => format!("on {n} members"),
                };
                r.report(
                    r.map.value_span(&at("spread")),
                    format!("spread = {spread} of workload {name:?} is outside 1-{n}: the workload is placed {on}"),
                    "out of range",
                    Some("spread is how many of its members run the workload at a time: at least 1, at most the members it is placed on".into()),
                );
            }
        }
        if let Some(f) = &w.failover {
            let fo = |k: &'static str| [Key("workloads"), Index(i), Key("failover"), Key(k)];
            if f.toleration_seconds > MAX_TOLERATION_SECONDS {
                r.report(
                    r.map.value_span(&fo("toleration_seconds")),
                    format!("failover.toleration_seconds = {} of workload {name:?} is above {MAX_TOLERATION_SECONDS} (an hour)", f.toleration_seconds),
                    "out of range",
                    Some(format!("use 0-{MAX_TOLERATION_SECONDS} seconds; Karmada's default is 300")),
                );
            }
            if let Some((message, help)) = karmada_release::purge_mode_problem(&file.karmada.version, &f.purge_mode) {
                r.report(r.map.value_span(&fo("purge_mode")), message, "not accepted by this version", Some(help));
            }
        }
    }
}
