//! The simulated network the registry engine talks to: two unix sockets, one plain HTTP (the local
//! registry) and one TLS (the public registries and Docker Hub's token service, with certificates of a CA
//! made for this process), and the route that tells the engine which socket answers for an address
//! ([`testbed_registry::Route`]): the world decides at every request whether anything listens there
//! ([`crate::registry::site`]). What each registry answers is [`crate::registry`]'s.
//!
//! The servers run on a thread of their own for as long as the machine's handles live.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::machine::Shared;
use crate::registry::{self, Internet, Site};

/// The servers, and what the engine needs to reach them.
pub(crate) struct Registries {
    dir: tempfile::TempDir,
    ca_der: Vec<u8>,
    tls: Arc<rustls::ServerConfig>,
    served: Arc<Served>,
    /// Whether the newest servers still run (their runtime may have ended).
    alive: Mutex<Arc<AtomicBool>>,
    /// Stops the servers' own thread, when they run on one, when the machine goes.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// What both servers share, across restarts.
struct Served {
    shared: Weak<Shared>,
    internet: Mutex<Internet>,
    sessions: AtomicU64,
}

/// Marks its servers as gone when their task ends (with its runtime).
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Registries {
    /// The servers for the machine `shared`; `mirrors` are the https mirrors' hosts the TLS server's
    /// certificate names besides the public registries. They start with [`Registries::ensure`].
    pub fn new(shared: Weak<Shared>, mirrors: &[String]) -> std::io::Result<Registries> {
        let dir = tempfile::Builder::new().prefix("testbed-sim-net-").tempdir()?;
        let (ca_der, tls) = certificates(mirrors).map_err(std::io::Error::other)?;
        let served =
            Arc::new(Served { shared, internet: Mutex::new(Internet::default()), sessions: AtomicU64::new(0) });
        Ok(Registries {
            dir,
            ca_der,
            tls: Arc::new(tls),
            served,
            alive: Mutex::new(Arc::new(AtomicBool::new(false))),
            stop: Mutex::new(None),
        })
    }

    /// Makes sure the servers run: on the current tokio runtime (so that a paused clock is theirs too),
    /// or, outside one, on a thread of their own; again when the runtime they ran on has ended.
    pub fn ensure(&self) -> std::io::Result<()> {
        let mut alive = self.alive.lock().unwrap_or_else(|p| p.into_inner());
        if alive.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (plain_path, tls_path) = (self.dir.path().join("http.socket"), self.dir.path().join("https.socket"));
        for p in [&plain_path, &tls_path] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let now = Arc::new(AtomicBool::new(true));
        let guard = Alive(Arc::clone(&now));
        let (served, tls) = (Arc::clone(&self.served), Arc::clone(&self.tls));
        let bind = move || -> std::io::Result<_> {
            let plain = UnixListener::bind(&plain_path)?;
            let secure = UnixListener::bind(&tls_path)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            Ok((plain, secure, acceptor))
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let _entered = handle.enter();
                let (plain, secure, acceptor) = bind()?;
                handle.spawn(serve(plain, secure, acceptor, served, guard, None));
            }
            Err(_) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                crate::server_thread::spawn("testbed-sim-registries", "the simulated registries", move || {
                    let (plain, secure, acceptor) = bind()?;
                    Ok(serve(plain, secure, acceptor, served, guard, Some(stopped)))
                })?;
                *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
            }
        }
        *alive = now;
        Ok(())
    }

    /// The route for the engine: the world's answer for each address, at each request.
    pub fn route(&self, shared: Weak<Shared>) -> Arc<dyn testbed_registry::Route> {
        Arc::new(WorldRoute {
            shared,
            plain: self.dir.path().join("http.socket"),
            tls: self.dir.path().join("https.socket"),
            nowhere: self.dir.path().join("nothing-listens-here.socket"),
            ca_der: self.ca_der.clone(),
        })
    }
}

struct WorldRoute {
    shared: Weak<Shared>,
    plain: PathBuf,
    tls: PathBuf,
    nowhere: PathBuf,
    ca_der: Vec<u8>,
}

impl testbed_registry::Route for WorldRoute {
    fn socket(&self, authority: &str, tls: bool) -> PathBuf {
        let Some(shared) = self.shared.upgrade() else { return self.nowhere.clone() };
        let mirrors = shared.catalogue().map(|cx| registry::mirrors(&cx.registry)).unwrap_or_default();
        match shared.read(|w| registry::site(w, &mirrors, authority, tls)) {
            Some(_) if tls => self.tls.clone(),
            Some(_) => self.plain.clone(),
            None => self.nowhere.clone(),
        }
    }

    fn roots(&self) -> Vec<Vec<u8>> {
        vec![self.ca_der.clone()]
    }
}

/// A CA for this process, and a server certificate for every public name (and `mirrors`) it signs.
fn certificates(mirrors: &[String]) -> Result<(Vec<u8>, rustls::ServerConfig), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let ca_key = KeyPair::generate().map_err(|x| e(&x))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|x| e(&x))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "testbed simulated internet CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(|x| e(&x))?;
    let issuer = Issuer::new(ca, ca_key);
    let mut names: Vec<String> =
        registry::PUBLIC_REGISTRIES.iter().chain([&registry::DOCKER_AUTH]).map(|s| (*s).to_owned()).collect();
    names.extend(mirrors.iter().cloned());
    let key = KeyPair::generate().map_err(|x| e(&x))?;
    let mut params = CertificateParams::new(names).map_err(|x| e(&x))?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(|x| e(&x))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|x| e(&x))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(|x| e(&x))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((ca_cert.der().to_vec(), config))
}

async fn serve(
    plain: UnixListener,
    secure: UnixListener,
    acceptor: tokio_rustls::TlsAcceptor,
    served: Arc<Served>,
    _alive: Alive,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
) {
    let stopped = async move {
        match stopped {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = accept(plain, None, Arc::clone(&served)) => {}
        _ = accept(secure, Some(acceptor), served) => {}
        _ = stopped => {}
    }
}

async fn accept(listener: UnixListener, tls: Option<tokio_rustls::TlsAcceptor>, served: Arc<Served>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let served = Arc::clone(&served);
        let tls = tls.clone();
        tokio::spawn(async move {
            let secure = tls.is_some();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let served = Arc::clone(&served);
                async move { Ok::<_, Infallible>(answer(&served, req, secure).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

async fn answer(served: &Served, req: Request<hyper::body::Incoming>, tls: bool) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let header = |name: hyper::header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let host = header(hyper::header::HOST).unwrap_or_default();
    let authority = if host.contains(':') { host.to_owned() } else { format!("{host}:{}", if tls { 443 } else { 80 }) };
    let request = registry::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        content_type: header(hyper::header::CONTENT_TYPE),
        authorization: header(hyper::header::AUTHORIZATION),
        body: &body,
    };
    // The request takes its time first; what answers is looked at again after it (the registry may have
    // gone meanwhile).
    let site_now = |shared: &Shared| {
        let mirrors = shared.catalogue().map(|cx| registry::mirrors(&cx.registry)).unwrap_or_default();
        shared.read(|w| registry::site(w, &mirrors, &authority, tls))
    };
    let wait = served.shared.upgrade().and_then(|shared| {
        let site = site_now(&shared)?;
        Some(shared.options.scaled(registry::took(&site, &request)))
    });
    if let Some(wait) = wait.filter(|w| !w.is_zero()) {
        tokio::time::sleep(wait).await;
    }
    let reply = served.shared.upgrade().and_then(|shared| respond(served, &shared, site_now(&shared)?, &request));
    // A connection kept from before the address stopped answering: what a registry going away mid-request
    // looks like to a client.
    let reply = reply.unwrap_or(registry::Reply {
        status: 503,
        body: b"no registry here now\n".to_vec(),
        ..Default::default()
    });
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

fn respond(served: &Served, shared: &Shared, site: Site, req: &registry::Request<'_>) -> Option<registry::Reply> {
    match site {
        Site::Local => {
            let mut world = shared.lock();
            if let Some(fault) = injected_fault(&world, shared, req) {
                world.consumed_failures.insert(fault.clone());
                let _ = shared.save_locked(&world);
                return Some(registry::Reply::injected(&fault));
            }
            let reg = world.host.microk8s.as_mut()?.registry.as_mut()?;
            let session = || format!("{:08x}", served.sessions.fetch_add(1, Ordering::SeqCst));
            let (reply, changed) = registry::handle_local(reg, req, session);
            if changed {
                if let Err(e) = shared.save_locked(&world) {
                    return Some(registry::Reply::internal(&e.to_string()));
                }
            }
            Some(reply)
        }
        Site::Public(host) => {
            let mut net = served.internet.lock().unwrap_or_else(|p| p.into_inner());
            Some(registry::handle_public(&mut net, &host, req))
        }
        Site::DockerAuth => {
            let mut net = served.internet.lock().unwrap_or_else(|p| p.into_inner());
            Some(registry::handle_docker_auth(&mut net, req))
        }
    }
}

/// `TESTBED_SIM_FAIL=image.NAME`: the push of that image's tag fails, once.
fn injected_fault(world: &crate::world::SimWorld, shared: &Shared, req: &registry::Request<'_>) -> Option<String> {
    if req.method != "PUT" || !req.path.contains("/manifests/") {
        return None;
    }
    let cx = shared.catalogue()?;
    cx.images
        .iter()
        .filter(|(_, target)| registry::pushed_to(req.path, target))
        .map(|(name, _)| format!("image.{name}"))
        .find(|a| world.fail_once.contains(a) && !world.consumed_failures.contains(a))
}
