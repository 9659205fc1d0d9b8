//! A simulated LXD daemon: the part of LXD's REST API that testbed uses, served over a unix socket like
//! the real daemon's, so that the real LXD client and provider (`testbed-lxd`) run on it unchanged.
//!
//! **This is a simulation.** No container runs. The daemon keeps LXD's objects in the simulated machine's
//! state file ([`state::LxdDaemon`]) and answers as LXD 5.0 does: the same envelopes (sync, async with an
//! operation to wait for, error), the same objects (config maps, devices, profiles, `used_by`,
//! `volatile.uuid`), and the refusals that matter to a client (see [`api`]): an instance that already
//! exists, a profile, network, pool or image that does not, a static address outside the bridge's subnet or
//! held by another running instance, a kernel module the host lacks at start, a proxy whose host port is
//! taken, a running instance deleted, a network, pool or profile deleted while in use.
//!
//! Operations run in the background like LXD's: a create returns at once with an operation, the change
//! happens when the operation's (scaled, real-magnitude) time has passed, and a client that looks before
//! then sees the old state.
//!
//! The socket appears only once LXD is installed on the simulated host (the `lxd` or `incus` package):
//! before that a client finds no socket, as on a fresh host.

pub mod api;
pub mod state;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::machine::Shared;

/// Which daemon the simulated one answers as (`environment.server` of `GET /1.0`, the file headers it reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    #[default]
    Lxd,
    Incus,
}

impl Flavor {
    pub fn server(self) -> &'static str {
        match self {
            Flavor::Lxd => "lxd",
            Flavor::Incus => "incus",
        }
    }
}

/// How a finished operation ended.
#[derive(Debug, Clone)]
pub(crate) struct OpEnd {
    pub status_code: u16,
    pub err: String,
    pub metadata: serde_json::Value,
}

/// A running or finished operation.
pub(crate) struct Op {
    pub description: String,
    /// The instance it affects (its `resources`).
    pub instance: String,
    pub end: watch::Receiver<Option<OpEnd>>,
}

/// The daemon: shared by every connection of one server.
pub(crate) struct Daemon {
    pub shared: Arc<Shared>,
    pub flavor: Flavor,
    pub ops: Mutex<BTreeMap<String, Arc<Op>>>,
    /// Recorded exec outputs, by (instance, file name), until deleted.
    pub logs: Mutex<BTreeMap<(String, String), String>>,
}

/// Where clients find the simulated daemon, and the servers behind it.
pub(crate) struct Sockets {
    /// The directory holding the sockets (private to this process, removed with it).
    dir: tempfile::TempDir,
    served: Mutex<u32>,
    /// The socket of the newest server.
    current: Mutex<Option<PathBuf>>,
    /// Whether the newest server still runs (its runtime may have ended).
    alive: Mutex<Arc<AtomicBool>>,
}

/// Marks its server as gone when the server's task ends (with its runtime).
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Sockets {
    pub fn new() -> std::io::Result<Sockets> {
        let dir = tempfile::Builder::new().prefix("testbed-sim-lxd-").tempdir()?;
        Ok(Sockets {
            dir,
            served: Mutex::new(0),
            current: Mutex::new(None),
            alive: Mutex::new(Arc::new(AtomicBool::new(false))),
        })
    }

    /// The path a client connects to: it exists only while LXD is installed on the simulated host.
    pub fn public(&self) -> PathBuf {
        self.dir.path().join("unix.socket")
    }

    /// Makes sure a server runs: the newest one if it is still up, else a new one on the current tokio
    /// runtime (or, outside one, on a thread of its own). The public path follows the host either way.
    pub fn ensure(&self, shared: &Arc<Shared>, flavor: Flavor) -> std::io::Result<()> {
        let up = self.alive.lock().unwrap_or_else(|p| p.into_inner()).load(Ordering::SeqCst);
        if up {
            return self.sync(shared.as_ref());
        }
        self.start(shared, flavor)
    }

    /// Starts a server and points the public path at it when LXD is installed. Servers started earlier
    /// keep serving the same state while their runtime lasts.
    fn start(&self, shared: &Arc<Shared>, flavor: Flavor) -> std::io::Result<()> {
        let n = {
            let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
            *served += 1;
            *served
        };
        let path = self.dir.path().join(format!("daemon-{n}.socket"));
        let daemon = Arc::new(Daemon {
            shared: Arc::clone(shared),
            flavor,
            ops: Mutex::new(BTreeMap::new()),
            logs: Mutex::new(BTreeMap::new()),
        });
        let alive = Arc::new(AtomicBool::new(true));
        let guard = Alive(Arc::clone(&alive));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let _guard = handle.enter();
                let listener = UnixListener::bind(&path)?;
                handle.spawn(serve(listener, daemon, guard));
            }
            Err(_) => {
                let bind_path = path.clone();
                crate::server_thread::spawn("testbed-sim-lxd", "the simulated LXD daemon", move || {
                    let listener = UnixListener::bind(&bind_path)?;
                    Ok(serve(listener, daemon, guard))
                })?;
            }
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
        *self.alive.lock().unwrap_or_else(|p| p.into_inner()) = alive;
        self.sync(shared.as_ref())
    }

    /// Makes the public path match the simulated host: there while LXD is installed, absent otherwise.
    pub fn sync(&self, shared: &Shared) -> std::io::Result<()> {
        let installed = shared.read(|w| w.lxd_installed());
        let public = self.public();
        // One change of the public path at a time (steps finish concurrently).
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match (installed, current.clone()) {
            (true, Some(target)) => {
                if std::fs::read_link(&public).ok().as_deref() == Some(target.as_path()) {
                    return Ok(());
                }
                let tmp = self.dir.path().join("unix.socket.new");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&target, &tmp)?;
                std::fs::rename(&tmp, &public)
            }
            _ => match std::fs::remove_file(&public) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

async fn serve(listener: UnixListener, daemon: Arc<Daemon>, _alive: Alive) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let d = Arc::clone(&daemon);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let d = Arc::clone(&d);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let (status, out) = api::handle(&d, &parts.method, &parts.uri, &parts.headers, body).await;
                    let mut resp = Response::new(Full::new(Bytes::from(out)));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
