//! The project's own test environment: a real LXD daemon and two real image registries, started by hand (no
//! service manager runs here), in a directory of its own so that it never touches an LXD or a registry the
//! machine already has.
//!
//! `up` installs Debian's LXD, docker-registry and skopeo if missing, starts the LXD daemon, initialises a
//! storage pool and a default profile, and imports a busybox image built offline; then it starts the two
//! registries (crate::registries) and seeds the upstream one with test images built offline
//! (crate::testimages). `down` stops them all and removes everything `up` made.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test daemon lives. Fixed and short: a unix socket path must stay under 108 bytes.
pub const DIR: &str = "/var/lib/testbed-testenv";
/// The image alias examples/testenv.toml and the tests use.
pub const IMAGE_ALIAS: &str = "testbed-busybox";

fn lxd_dir() -> PathBuf {
    Path::new(DIR).join("lxd")
}

fn say(msg: &str) {
    eprintln!("testenv: {msg}");
}

/// Runs a command with the test daemon's LXD_DIR; Err with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LXD_DIR", lxd_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", "command -v \"$1\" >/dev/null", "sh", program]).status().is_ok_and(|s| s.success())
}

fn install() -> Result<(), String> {
    let programs = ["lxd", "lxc", "busybox", "nft", "iptables", "ip", "docker-registry", "skopeo"];
    if programs.iter().all(|p| have(p)) {
        return Ok(());
    }
    say(
        "installing Debian's lxd, lxd-client, busybox-static, nftables, iptables, iproute2, docker-registry and skopeo",
    );
    run("apt-get", &["update", "-q"])?;
    run(
        "apt-get",
        &[
            "install",
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=600",
            "lxd",
            "lxd-client",
            "busybox-static",
            "nftables",
            "iptables",
            "iproute2",
            "docker-registry",
            "skopeo",
        ],
    )?;
    Ok(())
}

fn pid_file() -> PathBuf {
    Path::new(DIR).join("lxd.pid")
}

fn daemon_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file()).ok()?.trim().parse().ok()?;
    Path::new("/proc").join(pid.to_string()).exists().then_some(pid)
}

fn start_daemon() -> Result<(), String> {
    if daemon_pid().is_some() && run("lxd", &["waitready", "--timeout=5"]).is_ok() {
        say("LXD already running");
        return Ok(());
    }
    std::fs::create_dir_all(lxd_dir()).map_err(|e| format!("{}: {e}", lxd_dir().display()))?;
    let log = Path::new(DIR).join("lxd.log");
    let child = Command::new("lxd")
        .args(["--group", "lxd", "--logfile"])
        .arg(&log)
        .env("LXD_DIR", lxd_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start lxd: {e}"))?;
    std::fs::write(pid_file(), child.id().to_string()).map_err(|e| e.to_string())?;
    run("lxd", &["waitready", "--timeout=60"]).map_err(|e| format!("{e}\n(daemon log: {})", log.display()))?;
    say(&format!("LXD started (pid {}, LXD_DIR={})", child.id(), lxd_dir().display()));
    Ok(())
}

fn initialise() -> Result<(), String> {
    if run("lxc", &["storage", "show", "default"]).is_ok() {
        return Ok(());
    }
    // A storage pool and a default profile with a root disk; no network: testbed makes its own bridge.
    let preseed = "storage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root: {path: /, pool: default, type: disk}\n";
    let mut child = Command::new("lxd")
        .args(["init", "--preseed"])
        .env("LXD_DIR", lxd_dir())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(preseed.as_bytes()).map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("lxd init --preseed failed".into());
    }
    say("initialised: storage pool default (dir), default profile");
    Ok(())
}

/// A busybox-static root filesystem that brings its NIC up with DHCP (LXD's dnsmasq hands out the static
/// addresses testbed sets), packed with LXD image metadata.
fn import_image() -> Result<(), String> {
    if run("lxc", &["image", "show", IMAGE_ALIAS]).is_ok() {
        return Ok(());
    }
    let work = Path::new(DIR).join("image-build");
    let _ = std::fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/init.d",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "var/log",
        "usr/share/udhcpc",
        "www",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(|e| e.to_string())?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox-static is not installed")?;
    std::fs::copy(busybox, rootfs.join("bin/busybox")).map_err(|e| e.to_string())?;
    run("chroot", &[&rootfs.to_string_lossy(), "/bin/busybox", "--install", "-s"])?;
    let files: [(&str, &str, u32); 4] = [
        ("etc/inittab", "::sysinit:/etc/init.d/rcS\n::respawn:/bin/sleep 3600\n::shutdown:/bin/sync\n", 0o644),
        (
            "etc/init.d/rcS",
            "#!/bin/sh\nmount -t proc proc /proc 2>/dev/null\nip link set lo up\nip link set eth0 up\nbusybox udhcpc -b -q -i eth0 -s /usr/share/udhcpc/default.script\n",
            0o755,
        ),
        (
            "usr/share/udhcpc/default.script",
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    ip addr flush dev \"$interface\"\n    ip addr add \"$ip/$mask\" dev \"$interface\"\n    [ -n \"$router\" ] && ip route replace default via \"$router\"\n    ;;\nesac\nexit 0\n",
            0o755,
        ),
        ("www/index.html", "testbed member api stand-in\n", 0o644),
    ];
    for (path, text, mode) in files {
        let p = rootfs.join(path);
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
    }
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    std::fs::write(
        work.join("metadata.yaml"),
        format!("architecture: x86_64\ncreation_date: {created}\nproperties:\n  os: busybox\n  release: \"1\"\n  description: testbed test image\n"),
    )
    .map_err(|e| e.to_string())?;
    let tarball = work.join("busybox.tar.gz");
    let status = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&work)
        .args(["metadata.yaml", "rootfs"])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("tar failed".into());
    }
    run("lxc", &["image", "import", &tarball.to_string_lossy(), "--alias", IMAGE_ALIAS])?;
    say(&format!("imported image {IMAGE_ALIAS}"));
    Ok(())
}

pub fn up() -> Result<(), String> {
    install()?;
    start_daemon()?;
    initialise()?;
    import_image()?;
    crate::registries::up()?;
    say(&format!(
        "ready: LXD_DIR={}, registries upstream {} and local {}",
        lxd_dir().display(),
        crate::registries::UPSTREAM.addr,
        crate::registries::LOCAL.addr
    ));
    Ok(())
}

pub fn down() -> Result<(), String> {
    crate::registries::down()?;
    if daemon_pid().is_some() {
        if let Ok(list) = run("lxc", &["list", "--format", "csv", "-c", "n"]) {
            for name in list.lines().filter(|l| !l.is_empty()) {
                let _ = run("lxc", &["delete", "--force", name]);
            }
        }
        let _ = run("lxd", &["shutdown", "--timeout=60"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while daemon_pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(pid) = daemon_pid() {
            return Err(format!("LXD (pid {pid}) did not stop"));
        }
    }
    // Bridges the tests made outlive the daemon only if it died; remove what is left of them.
    let _ = std::fs::remove_dir_all(DIR);
    if have("nft") && Command::new("pgrep").args(["-x", "lxd"]).status().is_ok_and(|s| !s.success()) {
        let _ = Command::new("nft").args(["delete", "table", "inet", "lxd"]).stderr(Stdio::null()).status();
    }
    say("down: test daemon and registries stopped and their directory removed");
    Ok(())
}
