//! Against the project's own registries (`cargo xtask testenv up`): never skipped. A test that cannot reach
//! them fails and says how to start them.
//!
//! - upstream, 127.0.0.1:5000 (`TESTBED_UPSTREAM_REGISTRY` overrides): seeded with the test images of
//!   xtask/src/testimages.rs;
//! - local, 127.0.0.1:32000 (`TESTBED_LOCAL_REGISTRY` overrides): the target.
//!
//! Each test copies into a namespace of its own in the target (`<test>-<pid>-<nanos>/...`), so tests run in
//! parallel and again without cleaning up.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testbed_registry::{CopyJob, Engine, Event, Location, Options, Progress, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const UPSTREAM: &str = "127.0.0.1:5000";
pub const LOCAL: &str = "127.0.0.1:32000";

/// The test images the upstream holds (xtask/src/testimages.rs): `(repository, tag)`.
pub const IMAGES: [(&str, &str); 9] = [
    ("karmada/karmada-controller-manager", "v1.15.9"),
    ("karmada/karmada-scheduler", "v1.15.9"),
    ("karmada/karmada-webhook", "v1.15.9"),
    ("karmada/karmada-aggregated-apiserver", "v1.15.9"),
    ("karmada/karmada-agent", "v1.15.9"),
    ("kube-apiserver", "v1.31.3"),
    ("kube-controller-manager", "v1.31.3"),
    ("etcd", "3.5.16-0"),
    ("library/alpine", "3.21.3"),
];
/// The multi-platform one (linux/amd64 and linux/arm64).
pub const INDEXED: &str = "karmada/karmada-agent";

fn addr(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Fails unless a distribution registry answers `GET /v2/` at `host`.
fn require(host: &str, what: &str) {
    let ok = std::net::TcpStream::connect_timeout(&host.parse().expect("host:port"), Duration::from_secs(2))
        .ok()
        .and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).ok()?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).ok()?;
            Some(buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200"))
        })
        .unwrap_or(false);
    assert!(
        ok,
        "no {what} registry answers at {host}: start the project's test registries with `cargo xtask testenv up`"
    );
}

pub fn upstream() -> Arc<Registry> {
    let host = addr("TESTBED_UPSTREAM_REGISTRY", UPSTREAM);
    require(&host, "upstream");
    Arc::new(Registry::insecure(host))
}

pub fn local() -> Arc<Registry> {
    let host = addr("TESTBED_LOCAL_REGISTRY", LOCAL);
    require(&host, "local");
    Arc::new(Registry::insecure(host))
}

pub fn engine() -> Engine {
    Engine::new(Options::default()).expect("engine")
}

/// A fresh namespace in the target for one test run.
pub fn namespace(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Jobs copying every test image from `source` into `target` under `ns/`.
pub fn jobs(source: &Arc<Registry>, target: &Arc<Registry>, ns: &str) -> Vec<CopyJob> {
    IMAGES
        .iter()
        .map(|(repo, tag)| {
            CopyJob::new(
                Location::new(source.clone(), *repo, *tag),
                Location::new(target.clone(), format!("{ns}/{repo}"), *tag),
            )
        })
        .collect()
}

/// Records progress events.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(String, Event)>>,
}

impl Recorder {
    pub fn record(&self, p: &Progress<'_>) {
        self.events.lock().unwrap().push((p.image.to_owned(), p.event.clone()));
    }

    pub fn bytes_transferred(&self) -> u64 {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| if let Event::Transferred { bytes } = e { *bytes } else { 0 })
            .sum()
    }

    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.lock().unwrap().iter().filter(|(_, e)| f(e)).count()
    }
}

/// A plain client for the tests' own requests (deletes, blob HEADs).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `DELETE /v2/<repo>/manifests/<digest>` on a test registry (deletes are enabled there).
pub async fn delete_manifest(registry: &Registry, repository: &str, digest: &str) {
    let r = http()
        .delete(format!("http://{}/v2/{repository}/manifests/{digest}", registry.host()))
        .send()
        .await
        .expect("registry answers");
    assert_eq!(r.status().as_u16(), 202, "delete {repository}@{digest}");
}

/// Whether `HEAD /v2/<repo>/blobs/<digest>` answers 200.
pub async fn has_blob(registry: &Registry, repository: &str, digest: &str) -> bool {
    let r = http()
        .head(format!("http://{}/v2/{repository}/blobs/{digest}", registry.host()))
        .send()
        .await
        .expect("registry answers");
    r.status().as_u16() == 200
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A TCP proxy in front of a registry that, once armed, cuts every connection after `limit` bytes have come
/// back from the registry in total, and then refuses new ones (nobody listens): a source registry that stops
/// in the middle of a copy, without stopping the shared upstream. `heal` makes it forward everything again.
pub struct CutProxy {
    pub host: String,
    limit: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    upstream: String,
}

impl CutProxy {
    pub async fn start(upstream: &str, limit: u64) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().unwrap().to_string();
        let limit = Arc::new(AtomicU64::new(limit));
        let sent = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let task = Self::serve(listener, upstream.to_owned(), limit.clone(), sent.clone(), cut.clone());
        CutProxy { host, limit, sent, cut, task, upstream: upstream.to_owned() }
    }

    fn serve(
        listener: TcpListener,
        upstream: String,
        limit: Arc<AtomicU64>,
        sent: Arc<AtomicU64>,
        cut: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                if cut.load(Ordering::SeqCst) {
                    // Dropping the set aborts every connection; dropping the listener refuses new ones.
                    return;
                }
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((down, _)) = accepted else { continue };
                        let (upstream, limit, sent, cut) = (upstream.clone(), limit.clone(), sent.clone(), cut.clone());
                        conns.spawn(async move { let _ = pipe(down, &upstream, &limit, &sent, &cut).await; });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        })
    }

    /// Whether it has cut.
    pub fn has_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Listens again on the same port and forwards without a limit.
    pub async fn heal(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let listener = TcpListener::bind(&self.host).await.expect("rebind the proxy port");
        self.limit.store(u64::MAX, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
        self.task =
            Self::serve(listener, self.upstream.clone(), self.limit.clone(), self.sent.clone(), self.cut.clone());
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut down: TcpStream,
    upstream: &str,
    limit: &AtomicU64,
    sent: &AtomicU64,
    cut: &AtomicBool,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let (mut dr, mut dw) = down.split();
    let (mut ur, mut uw) = up.split();
    let to_up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = dr.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            uw.write_all(&buf[..n]).await?;
        }
    };
    let to_down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = ur.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let before = sent.fetch_add(n as u64, Ordering::SeqCst);
            if before + n as u64 > limit.load(Ordering::SeqCst) {
                cut.store(true, Ordering::SeqCst);
                return Err(std::io::Error::other("cut"));
            }
            dw.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        r = to_up => r,
        r = to_down => r,
    }
}

/// A request to the fake registry.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }
    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Response {
        self.body = b.into();
        self
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A tiny HTTP/1.1 server answering each request with `handler` (one request per connection): a registry
/// that misbehaves on purpose.
pub struct FakeRegistry {
    pub host: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    pub async fn start(handler: Handler) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().unwrap().to_string();
        let requests: Arc<Mutex<Vec<Request>>> = Default::default();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let (handler, seen) = (handler.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve_one(s, handler, seen).await;
                });
            }
        });
        FakeRegistry { host, requests, task }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut s: TcpStream, handler: Handler, seen: Arc<Mutex<Vec<Request>>>) -> std::io::Result<()> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let req = Request { method, path, headers };
    let length: usize = req.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    while body.len() < length {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    seen.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n", resp.status, resp.body.len());
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes()).await?;
    if req.method != "HEAD" {
        s.write_all(&resp.body).await?;
    }
    s.shutdown().await
}

/// A small OCI image for fake registries: `(manifest, config, layer)` bytes; the layer is `layer_len` bytes
/// derived from `seed`.
pub fn small_image(seed: &str, layer_len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer: Vec<u8> = (0..layer_len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed.len() as u8 ^ seed.as_bytes()[i % seed.len()])
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": testbed_registry::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    (manifest, config, layer)
}
