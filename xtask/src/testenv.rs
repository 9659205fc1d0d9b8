//! The project's own test environment: a real LXD daemon, a real Incus daemon and two real image registries,
//! started by hand (no service manager runs here), each in a directory of its own so that it never touches an
//! LXD, an Incus or a registry the machine already has.
//!
//! `up` installs Debian's LXD, Incus (container-only `incus-base`, from bookworm-backports on Debian 12),
//! docker-registry, skopeo and kubectl (kubernetes-client) if missing, starts both daemons, initialises in each a storage pool and a
//! default profile, and imports into each a busybox image built offline; then it starts the two registries
//! (crate::registries) and seeds the upstream one with test images built offline (crate::testimages). `down`
//! stops them all and removes everything `up` made (the installed packages and the backports source stay).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test daemons live. Fixed and short: a unix socket path must stay under 108 bytes.
pub const DIR: &str = "/var/lib/testbed-testenv";
/// The image alias examples/testenv.toml and the tests use.
pub const IMAGE_ALIAS: &str = "testbed-busybox";

/// One test daemon: how it is started, asked and stopped.
pub struct Daemon {
    /// As messages name it.
    pub name: &'static str,
    /// Its directory under [`DIR`], and the stem of its pid and log files.
    key: &'static str,
    /// The variable that points its programs at its directory.
    dir_var: &'static str,
    /// The daemon's program.
    server: &'static str,
    /// The administration commands (`waitready`, `init --preseed`, `shutdown`).
    admin: &'static [&'static str],
    /// The command-line client.
    client: &'static str,
    /// The group allowed on its socket.
    group: &'static str,
    /// Its firewall table (`inet NAME`), left behind only if the daemon died.
    nft_table: &'static str,
}

pub const LXD: Daemon = Daemon {
    name: "LXD",
    key: "lxd",
    dir_var: "LXD_DIR",
    server: "lxd",
    admin: &["lxd"],
    client: "lxc",
    group: "lxd",
    nft_table: "lxd",
};

/// Incus's daemon is not on PATH: Debian's package keeps it with its helpers.
pub const INCUS: Daemon = Daemon {
    name: "Incus",
    key: "incus",
    dir_var: "INCUS_DIR",
    server: "/usr/libexec/incus/incusd",
    admin: &["incus", "admin"],
    client: "incus",
    group: "incus-admin",
    nft_table: "incus",
};

fn say(msg: &str) {
    eprintln!("testenv: {msg}");
}

/// Runs a command; Err with its stderr when it fails.
fn run_with(program: &str, args: &[&str], env: &[(&str, &Path)]) -> Result<String, String> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().map_err(|e| format!("cannot run {program}: {e}"))?;
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

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    run_with(program, args, &[])
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", "command -v \"$1\" >/dev/null", "sh", program]).status().is_ok_and(|s| s.success())
}

fn apt_install(packages: &[&str], release: Option<&str>) -> Result<(), String> {
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"];
    if let Some(r) = release {
        args.extend(["-t", r]);
    }
    args.extend(packages);
    run("apt-get", &args).map(drop)
}

fn install() -> Result<(), String> {
    let programs = ["lxd", "lxc", "busybox", "nft", "iptables", "ip", "docker-registry", "skopeo"];
    if !programs.iter().all(|p| have(p)) {
        say("installing Debian's lxd, lxd-client, busybox-static, nftables, iptables, iproute2, docker-registry and skopeo");
        run("apt-get", &["update", "-q"])?;
        let packages =
            ["lxd", "lxd-client", "busybox-static", "nftables", "iptables", "iproute2", "docker-registry", "skopeo"];
        apt_install(&packages, None)?;
    }
    if !(have(INCUS.client) && Path::new(INCUS.server).exists()) {
        install_incus()?;
    }
    // The kubectl that reads what `testbed kubeconfig` writes: Debian's, unless the machine has one.
    if !have("kubectl") {
        say("installing Debian's kubernetes-client (kubectl)");
        run("apt-get", &["update", "-q"])?;
        apt_install(&["kubernetes-client"], None)?;
    }
    Ok(())
}

/// Where testenv adds bookworm-backports, when no source of the machine's has it.
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/testbed-testenv-backports.sources";

/// Debian's Incus without virtual machines: `incus-base` (the daemon, with the `incus` client), not `incus`,
/// which adds QEMU and its firmware (some 200 MB) for virtual machines the tests never start. Debian 12 has
/// Incus only in bookworm-backports; later releases have it in main.
fn install_incus() -> Result<(), String> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let bookworm = os.lines().any(|l| l.trim() == "VERSION_CODENAME=bookworm");
    if bookworm && !apt_sources_mention("bookworm-backports") {
        say(&format!("adding bookworm-backports to apt's sources ({BACKPORTS_SOURCE})"));
        let source = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        std::fs::write(BACKPORTS_SOURCE, source).map_err(|e| format!("{BACKPORTS_SOURCE}: {e}"))?;
    }
    say("installing Debian's incus-base (the Incus daemon for containers, and its client)");
    run("apt-get", &["update", "-q"])?;
    apt_install(&["incus-base"], bookworm.then_some("bookworm-backports"))
}

/// Whether one of apt's source files names `suite`.
fn apt_sources_mention(suite: &str) -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources")),
        );
    }
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().any(|l| !l.trim_start().starts_with('#') && l.split_whitespace().any(|w| w == suite))
        })
    })
}

impl Daemon {
    pub fn dir(&self) -> PathBuf {
        Path::new(DIR).join(self.key)
    }

    fn pid_file(&self) -> PathBuf {
        Path::new(DIR).join(format!("{}.pid", self.key))
    }

    fn log(&self) -> PathBuf {
        Path::new(DIR).join(format!("{}.log", self.key))
    }

    /// Runs one of this daemon's commands (its client, its administration command) on its directory.
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let dir = self.dir();
        run_with(program, args, &[(self.dir_var, &dir)])
    }

    fn client(&self, args: &[&str]) -> Result<String, String> {
        self.run(self.client, args)
    }

    fn admin(&self, args: &[&str]) -> Result<String, String> {
        let (program, first) = self.admin.split_first().expect("an admin command");
        let all: Vec<&str> = first.iter().chain(args).copied().collect();
        self.run(program, &all)
    }

    /// The daemon's pid, if its pid file names a process that runs it (a pid file outliving its process,
    /// after a reboot, may name an unrelated one).
    fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let program = Path::new(self.server).file_name()?.to_string_lossy().into_owned();
        String::from_utf8_lossy(&cmdline).contains(&program).then_some(pid)
    }

    fn start(&self) -> Result<(), String> {
        if self.pid().is_some() && self.admin(&["waitready", "--timeout=5"]).is_ok() {
            say(&format!("{} already running", self.name));
            return Ok(());
        }
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Its helpers next to it on PATH, as Debian's service unit has it; only the unix socket, no network
        // address (a fresh daemon listens on none).
        let path = format!(
            "{}:{}",
            Path::new(self.server)
                .parent()
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/usr/bin".into()),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let child = Command::new(self.server)
            .args(["--group", self.group, "--logfile"])
            .arg(self.log())
            .env(self.dir_var, &dir)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.server))?;
        std::fs::write(self.pid_file(), child.id().to_string()).map_err(|e| e.to_string())?;
        self.admin(&["waitready", "--timeout=60"])
            .map_err(|e| format!("{e}\n(daemon log: {})", self.log().display()))?;
        say(&format!("{} started (pid {}, {}={})", self.name, child.id(), self.dir_var, dir.display()));
        Ok(())
    }

    fn initialise(&self) -> Result<(), String> {
        if self.client(&["storage", "show", "default"]).is_ok() {
            return Ok(());
        }
        // A storage pool and a default profile with a root disk; no network: testbed makes its own bridge.
        let preseed = "storage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root: {path: /, pool: default, type: disk}\n";
        let (program, first) = self.admin.split_first().expect("an admin command");
        let mut child = Command::new(program)
            .args(first)
            .args(["init", "--preseed"])
            .env(self.dir_var, self.dir())
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(preseed.as_bytes()).map_err(|e| e.to_string())?;
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("{} init --preseed failed", self.admin.join(" ")));
        }
        say(&format!("{}: initialised storage pool default (dir), default profile", self.name));
        Ok(())
    }

    fn import_image(&self, tarball: &Path) -> Result<(), String> {
        if self.client(&["image", "show", IMAGE_ALIAS]).is_ok() {
            return Ok(());
        }
        self.client(&["image", "import", &tarball.to_string_lossy(), "--alias", IMAGE_ALIAS])?;
        say(&format!("{}: imported image {IMAGE_ALIAS}", self.name));
        Ok(())
    }

    fn up(&self, tarball: &Path) -> Result<(), String> {
        self.start()?;
        self.initialise()?;
        self.import_image(tarball)
    }

    /// Deletes its instances and stops it; Err if it does not stop.
    fn stop(&self) -> Result<(), String> {
        if self.pid().is_none() {
            return Ok(());
        }
        if let Ok(list) = self.client(&["list", "--format", "csv", "-c", "n"]) {
            for name in list.lines().filter(|l| !l.is_empty()) {
                let _ = self.client(&["delete", "--force", name]);
            }
        }
        let _ = self.admin(&["shutdown", "--timeout=60"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        match self.pid() {
            Some(pid) => Err(format!("{} (pid {pid}) did not stop", self.name)),
            None => Ok(()),
        }
    }

    /// What a daemon that died leaves: mounts under its directory, and its firewall table (removed only if
    /// no daemon of its kind runs on the machine: the table is shared by name).
    fn clean_up(&self) {
        let dir = self.dir();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut under: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| Path::new(m).starts_with(&dir))
                .collect();
            under.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in under {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
        let program = Path::new(self.server).file_name().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        // A daemon that just stopped may still be exiting (not yet reaped): give it a few seconds.
        let running =
            || Command::new("pgrep").args(["-x", &program]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        if have("nft") && !running() {
            let _ =
                Command::new("nft").args(["delete", "table", "inet", self.nft_table]).stderr(Stdio::null()).status();
        }
    }
}

/// Both test daemons.
pub const DAEMONS: [&Daemon; 2] = [&LXD, &INCUS];

/// A busybox-static root filesystem that brings its NIC up with DHCP (the daemon's dnsmasq hands out the
/// static addresses testbed sets), packed with LXD image metadata (which Incus reads as well). Built once;
/// returns the tarball.
fn build_image() -> Result<PathBuf, String> {
    let work = Path::new(DIR).join("image-build");
    let tarball = work.join("busybox.tar.gz");
    if tarball.exists() {
        return Ok(tarball);
    }
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
    let partial = work.join("busybox.tar.gz.partial");
    let status = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-czf")
        .arg(&partial)
        .arg("-C")
        .arg(&work)
        .args(["metadata.yaml", "rootfs"])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("tar failed".into());
    }
    std::fs::rename(&partial, &tarball).map_err(|e| e.to_string())?;
    Ok(tarball)
}

pub fn up() -> Result<(), String> {
    install()?;
    let tarball = build_image()?;
    for daemon in DAEMONS {
        daemon.up(&tarball)?;
    }
    crate::registries::up()?;
    say(&format!(
        "ready: LXD_DIR={}, INCUS_DIR={}, registries upstream {} and local {}",
        LXD.dir().display(),
        INCUS.dir().display(),
        crate::registries::UPSTREAM.addr,
        crate::registries::LOCAL.addr
    ));
    Ok(())
}

pub fn down() -> Result<(), String> {
    crate::registries::down()?;
    for daemon in DAEMONS {
        daemon.stop()?;
    }
    // What the daemons leave only if they died: mounts under their directories, their firewall tables.
    for daemon in DAEMONS {
        daemon.clean_up();
    }
    let _ = std::fs::remove_dir_all(DIR);
    say("down: test daemons and registries stopped and their directory removed");
    Ok(())
}
