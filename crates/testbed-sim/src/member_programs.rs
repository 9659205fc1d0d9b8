//! The programs inside a member's container: what LXD exec runs there (the simulated daemon's
//! `POST /1.0/instances/NAME/exec`, or the simulated programs bound to a real container in mixed mode).
//! snapd (`snap wait`, and `install | refresh | list | remove microk8s`), the `microk8s` command once the
//! snap is in, and the file programs. Anything else is not found (exit 127, as LXD answers for a program
//! that is not there).
//!
//! What runs in a container belongs to that container: it is kept in [`SimWorld::inside`] under the
//! container's name with its identity (`volatile.uuid`), and a container re-created under the same name
//! starts empty.

use std::collections::BTreeSet;
use std::time::Duration;

use testbed_plan::{Address, Kind};

use crate::coreutils::{self, make_dirs, InsideTree, Tree};
use crate::microk8s_snap::{self, Snapped};
use crate::programs::{fail, ok, Ran};
use crate::world::{testbed, Inside, MemberMicrok8s, SimWorld};

/// The container a program runs in, as LXD reports it.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub name: String,
    /// `volatile.uuid`.
    pub identity: String,
    /// Its IPv4 address on the bridge.
    pub address: Option<String>,
    /// The bridge it is on, when known (a real container's is not in its facts).
    pub bridge: Option<String>,
}

/// What a fresh MicroK8s' containerd already holds (the sandbox image every pod uses).
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.7";

/// Where the snap keeps its data; `snap remove --purge` takes it along.
const SNAP_DATA: &str = "/var/snap/microk8s";

/// The resource a program call changes, as the catalogue uses it: what `TESTBED_SIM_FAIL=ADDRESS` fails
/// (its first change, once).
fn changes(member: &str, name: &str, a: &[&str]) -> Option<String> {
    // A side-load's import: the catalogue pushes `sideload.MEMBER.NAME` as `SIDELOAD_DIR/NAME.tar`.
    if let ("microk8s", ["images", "import", tar]) = (name, a) {
        let image = std::path::Path::new(tar).file_stem()?.to_str()?;
        return Some(Address::new(Kind::Sideload, &[member, image]).to_string());
    }
    let kind = match (name, a) {
        ("snap", ["install" | "refresh" | "remove" | "ack", ..]) => Kind::Microk8s,
        ("microk8s", ["enable" | "disable", ..]) => Kind::Microk8sAddons,
        // What the kubeconfig files are written from.
        ("microk8s", ["config", ..]) => Kind::Kubeconfig,
        _ => return None,
    };
    Some(Address::new(kind, &[member]).to_string())
}

/// Runs `argv` in container `c`; its inside is created on first use.
pub(crate) fn run(world: &mut SimWorld, c: &Container, argv: &[String]) -> Ran {
    let Some(program) = argv.first() else { return fail(127, "") };
    let name = program.rsplit('/').next().unwrap_or(program).to_owned();
    let a: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    if let Some(fault) = world.faults.program(&c.name, &name, &a, &mut world.consumed_failures) {
        let (code, text) = crate::faults::program_failure(&name, &a, &fault);
        return fail(code, text);
    }
    let mut ran = run_unfaulted(world, c, &name, &a);
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    ran.took = world.faults.latency(&c.name, &words, ran.took);
    ran
}

fn run_unfaulted(world: &mut SimWorld, c: &Container, name: &str, a: &[&str]) -> Ran {
    let name = name.to_owned();
    let a = a.to_vec();
    if let Some(address) = changes(&c.name, &name, &a) {
        if world.fail_once.contains(&address) && world.consumed_failures.insert(address.clone()) {
            return fail(1, format!("{name}: simulated failure injected by TESTBED_SIM_FAIL ({address})\n"));
        }
    }
    // The host's forwarding rules are what let the container reach the snap store.
    let online = match &c.bridge {
        Some(b) => world.forwards(b),
        None => world.forwards_any(),
    };
    // A new cluster's kube-system namespace UID, for a MicroK8s installed here now (from the store, or
    // from a file that is the microk8s snap).
    let new_microk8s = name == "snap"
        && inside_of(world, c).microk8s.is_none()
        && match a.as_slice() {
            ["install", "microk8s", ..] => true,
            ["install", rest @ ..] => rest
                .iter()
                .filter(|x| !x.starts_with("--"))
                .any(|p| snap_file(inside_of(world, c), p).is_ok_and(|f| f.name == "microk8s")),
            _ => false,
        };
    let cluster_id = new_microk8s.then(|| world.new_cluster_id());
    let inside = inside_of(world, c);
    match name.as_str() {
        "snap" => {
            let mut store_bytes = 0;
            let mut ran = snap(inside, &a, online, cluster_id.unwrap_or_default(), &mut store_bytes);
            if store_bytes > 0 {
                ran.took += world.line.transfer(store_bytes);
            }
            ran
        }
        "microk8s" => match inside.microk8s.as_mut() {
            None => not_found(&name),
            Some(m) if matches!(a.first(), Some(&"images" | &"ctr")) => {
                let member_api = format!("{}:25000", c.address.as_deref().unwrap_or("127.0.0.1"));
                crate::containerd::run(m, &inside.files, &a, &member_api)
            }
            Some(m) => microk8s_snap::microk8s(m, &a, c.address.as_deref().unwrap_or("127.0.0.1")),
        },
        other => match coreutils::run(&mut InsideTree { files: &mut inside.files }, other, &a) {
            Some(out) => Ran { out, took: Duration::from_millis(50) },
            None => not_found(other),
        },
    }
}

/// What the simulation keeps inside `c`: a re-created container (another identity) starts empty.
pub(crate) fn inside_of<'a>(world: &'a mut SimWorld, c: &Container) -> &'a mut Inside {
    let entry = world.inside.entry(c.name.clone()).or_insert_with(|| Inside::fresh(&c.identity));
    if entry.identity != c.identity {
        *entry = Inside::fresh(&c.identity);
    }
    entry
}

fn not_found(program: &str) -> Ran {
    fail(127, format!("exec: \"{program}\": executable file not found in $PATH\n"))
}

/// A snap file testbed pushed: the stand-in the simulated `snap download` wrote, read from the container.
fn snap_file(inside: &Inside, path: &str) -> Result<crate::snap_store::SnapFile, Ran> {
    let bytes = crate::coreutils::file_bytes(&inside.files, path)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| fail(1, format!("error: cannot open \"{path}\": no such file or directory\n")))?;
    crate::snap_store::SnapFile::parse(&bytes)
        .ok_or_else(|| fail(1, format!("error: cannot read \"{path}\": file is not a snap (squashfs)\n")))
}

/// `snap install [--classic] PATH`: a snap from a file, installed only with its assertions acknowledged
/// (snapd daemon/api_sideload_n_try.go: "cannot find signatures with metadata for snap/component"); over an
/// installed snap it is a refresh (snapstate.InstallPath is UpdateOne): the snap's data stays.
fn install_file(inside: &mut Inside, rest: &[&str], cluster_id: String) -> Ran {
    let Some(path) = rest.iter().find(|a| !a.starts_with("--")) else { return fail(1, "error: no snap given\n") };
    if !inside.seeded {
        return fail(1, "error: too early for operation, device not yet seeded or device model not acknowledged\n");
    }
    let file = match snap_file(inside, path) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    if !inside.acked.contains(&(file.name.clone(), file.revision)) {
        return fail(1, format!("error: cannot find signatures with metadata for snap/component \"{path}\"\n"));
    }
    let install_secs = (file.size / 40_000_000).max(2);
    if file.name != "microk8s" {
        let fresh = inside.bases.insert(file.name.clone());
        let verb = if fresh { "installed" } else { "refreshed" };
        return ok(format!("{} {} from Canonical✓ {verb}\n", file.name, file.version), install_secs);
    }
    if let Err(refused) = microk8s_snap::install_request(&["--classic", &format!("--channel={}", file.channel)]) {
        return refused;
    }
    if !rest.contains(&"--classic") {
        return microk8s_snap::install_request(&[]).err().unwrap_or_else(|| fail(1, ""));
    }
    if let Some(base) = file.base.as_ref().filter(|b| !inside.bases.contains(*b)) {
        return fail(
            1,
            format!("error: cannot install snap file: cannot install \"microk8s\": snap \"{base}\" is not installed and\n       the store cannot be reached to fetch it\n"),
        );
    }
    match inside.microk8s.as_mut() {
        Some(m) => {
            // In place: the services restart on the new revision; addons, certificates and data stay.
            m.channel = file.channel.clone();
            m.from_file = true;
            ok(format!("microk8s {} from Canonical✓ refreshed\n", file.version), 60)
        }
        None => {
            fresh_microk8s(inside, file.channel.clone(), cluster_id, true);
            ok(format!("microk8s {} from Canonical✓ installed\n", file.version), 75)
        }
    }
}

/// A MicroK8s just installed in the container, running, with what its install hook writes.
fn fresh_microk8s(inside: &mut Inside, channel: String, cluster_id: String, from_file: bool) {
    let mut tree = InsideTree { files: &mut inside.files };
    make_dirs(&mut tree, "/var/snap/microk8s/common");
    make_dirs(&mut tree, "/var/snap/microk8s/current/args/certs.d/localhost:32000");
    tree.write(
        "/var/snap/microk8s/current/args/certs.d/localhost:32000/hosts.toml",
        "server = \"http://localhost:32000\"\n\n[host.\"http://localhost:32000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        0o644,
    );
    inside.microk8s = Some(MemberMicrok8s {
        channel,
        running: true,
        owner: testbed(),
        cluster_id,
        addons: Default::default(),
        addons_owner: None,
        images: BTreeSet::from([PAUSE_IMAGE.to_owned()]),
        karmada_agent: false,
        from_file,
        pki: None,
        pods: Default::default(),
    });
}

fn snap(inside: &mut Inside, a: &[&str], online: bool, cluster_id: String, store_bytes: &mut u64) -> Ran {
    match a {
        ["ack", path] => {
            let Some(text) = crate::coreutils::file_bytes(&inside.files, path).map(<[u8]>::to_vec) else {
                return fail(1, format!("error: cannot read assertion file: open {path}: no such file or directory\n"));
            };
            match crate::snap_store::asserted(&String::from_utf8_lossy(&text)) {
                Some(key) => {
                    inside.acked.insert(key);
                    ok("", 1)
                }
                None => fail(1, "error: cannot assert: assertion stream is empty or not valid\n"),
            }
        }
        ["list", base] if *base != "microk8s" => {
            if inside.bases.contains(*base) {
                ok(format!("Name    Version  Rev   Tracking  Publisher   Notes\n{base}  16-2.61  2045  -  canonical✓  base\n"), 0)
            } else {
                fail(1, "error: no matching snaps installed\n")
            }
        }
        ["install", rest @ ..] if rest.iter().any(|x| x.starts_with('/') || x.ends_with(".snap")) => {
            install_file(inside, rest, cluster_id)
        }
        ["wait", "system", "seed.loaded"] => {
            let first = !inside.seeded;
            inside.seeded = true;
            // A fresh container's snapd seeds for a while after boot.
            ok("", if first { 20 } else { 0 })
        }
        ["list", "microk8s"] => microk8s_snap::snap_list(inside.microk8s.as_ref().map(|m| m as &dyn Snapped)),
        ["install", "microk8s", rest @ ..] => {
            if !inside.seeded {
                return fail(1, "error: too early for operation, device not yet seeded or device model not acknowledged\n");
            }
            if inside.microk8s.is_some() {
                return ok("snap \"microk8s\" is already installed, see 'snap help refresh'\n", 1);
            }
            let channel = match microk8s_snap::install_request(rest) {
                Ok(c) => c,
                Err(refused) => return refused,
            };
            if !online {
                return fail(
                    1,
                    "error: cannot install \"microk8s\": Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp:\n       lookup api.snapcraft.io: Temporary failure in name resolution\n",
                );
            }
            // From the store: the snap, and its base when the container lacks it.
            let base = crate::snap_store::base_of(&channel);
            *store_bytes = crate::snap_store::MICROK8S_SNAP_BYTES;
            if inside.bases.insert(base.to_owned()) {
                *store_bytes += crate::snap_store::base_snap(base).map_or(0, |(_, size)| size);
            }
            let done = microk8s_snap::installed(&channel);
            fresh_microk8s(inside, channel, cluster_id, false);
            done
        }
        ["refresh", "microk8s", rest @ ..] => match inside.microk8s.as_mut() {
            None => fail(1, "error: snap \"microk8s\" is not installed\n"),
            Some(_) if !online => {
                fail(1, "error: cannot refresh \"microk8s\": dial tcp: lookup api.snapcraft.io: Temporary failure in name resolution\n")
            }
            Some(m) => {
                let ran = microk8s_snap::refresh(m, rest);
                if ran.out.success() && ran.took > Duration::from_secs(10) {
                    *store_bytes = crate::snap_store::MICROK8S_SNAP_BYTES;
                }
                ran
            }
        },
        ["remove", "microk8s", ..] => {
            if inside.microk8s.take().is_none() {
                return ok("snap \"microk8s\" is not installed\n", 1);
            }
            InsideTree { files: &mut inside.files }.remove(SNAP_DATA);
            ok("microk8s removed\n", 30)
        }
        _ => fail(1, format!("error: the simulated snapd does not model `snap {}`\n", a.join(" "))),
    }
}

/// Writes a file pushed through LXD's file API; the parent directory must exist.
pub(crate) fn push(world: &mut SimWorld, c: &Container, path: &str, content: &[u8], mode: u32) -> Result<(), String> {
    let inside = inside_of(world, c);
    let mut tree = InsideTree { files: &mut inside.files };
    if tree.write_bytes(path, content, mode) {
        Ok(())
    } else {
        Err(format!("Failed to open {path}: no such file or directory"))
    }
}
