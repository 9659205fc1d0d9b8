//! Two real image registries for the image tests: Debian's `docker-registry` (CNCF distribution v2), started by
//! hand on loopback, each with its own config file, storage directory and log under the testenv directory.
//!
//! - "upstream" on 127.0.0.1:5000: the source, standing in for docker.io and registry.k8s.io behind mirrors.
//!   `up` seeds it with the offline-built test images of [`crate::testimages`].
//! - "local" on 127.0.0.1:32000: the target, on the port of the MicroK8s registry addon.
//!
//! Both allow deletes (`storage.delete.enabled`), so tests can delete a tag's manifest.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::testenv::DIR;

/// One test registry.
pub struct Registry {
    pub name: &'static str,
    pub addr: &'static str,
}

pub const UPSTREAM: Registry = Registry { name: "upstream", addr: "127.0.0.1:5000" };
pub const LOCAL: Registry = Registry { name: "local", addr: "127.0.0.1:32000" };
pub const ALL: [Registry; 2] = [UPSTREAM, LOCAL];

fn say(msg: &str) {
    eprintln!("testenv: {msg}");
}

impl Registry {
    fn dir(&self) -> PathBuf {
        Path::new(DIR).join(format!("registry-{}", self.name))
    }
    fn pid_file(&self) -> PathBuf {
        self.dir().join("registry.pid")
    }
    fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        // A pid file outliving its process (a reboot) may name an unrelated process: check what it runs.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains("docker-registry").then_some(pid)
    }

    /// `GET /v2/` answers 200: a distribution registry listens there.
    pub fn answers(&self) -> bool {
        matches!(http(self.addr, "GET", "/v2/", &[], &[], Duration::from_secs(2)), Ok(r) if r.status == 200)
    }

    fn config(&self) -> String {
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {}\n",
            self.dir().join("data").display(),
            self.addr
        )
    }

    /// Starts the registry unless ours already runs and answers.
    pub fn start(&self) -> Result<(), String> {
        if self.pid().is_some() && self.answers() {
            say(&format!("registry {} already running on {}", self.name, self.addr));
            return Ok(());
        }
        if self.pid().is_none()
            && TcpStream::connect_timeout(&self.addr.parse().unwrap(), Duration::from_millis(300)).is_ok()
        {
            return Err(format!(
                "{} is taken by another process: the {} test registry needs it (stop that process, e.g. a registry \
                 the docker-registry package started, and run `cargo xtask testenv up` again)",
                self.addr, self.name
            ));
        }
        std::fs::create_dir_all(self.dir().join("data")).map_err(|e| format!("{}: {e}", self.dir().display()))?;
        let config = self.dir().join("config.yml");
        std::fs::write(&config, self.config()).map_err(|e| format!("{}: {e}", config.display()))?;
        let log_path = self.dir().join("registry.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start docker-registry: {e}"))?;
        std::fs::write(self.pid_file(), child.id().to_string()).map_err(|e| e.to_string())?;
        // The child exiting is what tells a registry that cannot start (a bad config, a port lost to a race);
        // otherwise it is given time: a loaded machine (a cold build beside it) can be slow to start one.
        const START_LIMIT: Duration = Duration::from_secs(90);
        let deadline = Instant::now() + START_LIMIT;
        while !self.answers() {
            let exited = child.try_wait().ok().flatten();
            if Instant::now() > deadline || exited.is_some() {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
                return Err(format!(
                    "the {} registry did not answer on {} within {} s{} (log: {}):\n{}",
                    self.name,
                    self.addr,
                    START_LIMIT.as_secs(),
                    exited.map(|s| format!("; it exited with {s}")).unwrap_or_default(),
                    log_path.display(),
                    tail.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        say(&format!(
            "registry {} started on {} (pid {}, log {})",
            self.name,
            self.addr,
            child.id(),
            log_path.display()
        ));
        Ok(())
    }

    pub fn stop(&self) -> Result<(), String> {
        let Some(pid) = self.pid() else { return Ok(()) };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.pid().is_some() {
            if Instant::now() > deadline {
                return Err(format!("the {} registry (pid {pid}) did not stop", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.pid_file());
        say(&format!("registry {} stopped", self.name));
        Ok(())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 exchange with a loopback registry (`Connection: close`, the body read to the end).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).and_then(|_| s.write_all(body)).map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("{addr}: {e}"))?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("{addr}: malformed answer"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: malformed status line"))?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[end + 4..].to_vec();
    if method == "HEAD" {
        body.clear();
    }
    Ok(Response { status, headers, body })
}

pub fn up() -> Result<(), String> {
    for r in ALL {
        r.start()?;
    }
    crate::testimages::seed(UPSTREAM.addr)
}

pub fn down() -> Result<(), String> {
    let mut result = Ok(());
    for r in ALL {
        if let Err(e) = r.stop() {
            result = Err(e);
        }
    }
    result
}
