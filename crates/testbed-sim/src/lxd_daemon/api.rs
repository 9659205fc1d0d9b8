//! The simulated daemon's endpoints and the refusals a client sees, modelled on LXD 5.0's
//! `lxd/instances_post.go`, `lxd/instance_put.go`, `lxd/instance_state.go`, `lxd/networks.go`,
//! `lxd/storage_pools.go`, `lxd/profiles.go` and `lxd/operations.go` (lxd-5.0.3): sync responses for reads and
//! for networks, pools and profiles; operations for instance create, update, state changes and delete.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::state::{kind, Devices, Instance, LxdDaemon, Map, Network, Profile, Status, StoragePool};
use super::{Daemon, Flavor, Op, OpEnd};
use crate::world::{listen_port, subnet_allows, SimWorld};
use testbed_lxd::encode;

/// An error answer: the HTTP status and LXD's message.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    code: u16,
    message: String,
}

impl ApiError {
    pub(crate) fn internal(message: String) -> ApiError {
        err(500, message)
    }
}

fn err(code: u16, message: impl Into<String>) -> ApiError {
    ApiError { code, message: message.into() }
}

pub(crate) type Answer = Result<Value, ApiError>;

/// How long each kind of change takes on a real host, unscaled (LXD 5.0, dir pool, a cached image).
mod latency {
    use std::time::Duration;
    pub const CREATE_INSTANCE: Duration = Duration::from_secs(6);
    pub const START: Duration = Duration::from_secs(2);
    pub const STOP: Duration = Duration::from_secs(2);
    pub const DELETE_INSTANCE: Duration = Duration::from_secs(2);
    pub const UPDATE_INSTANCE: Duration = Duration::from_secs(1);
    pub const NETWORK: Duration = Duration::from_secs(2);
    pub const POOL: Duration = Duration::from_secs(2);
    pub const PROFILE: Duration = Duration::from_secs(1);
}

/// Answers one request: the HTTP status and the JSON body.
pub(crate) async fn handle(
    d: &Arc<Daemon>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    if let Some(fault) = injected_request(d, method.as_str(), path) {
        let (code, message) = crate::faults::lxd_failure(&fault);
        return envelope(Err(err(code, message)));
    }
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    // A file push carries the file, not JSON.
    if let (&Method::POST, ["1.0", "instances", name, "files"]) = (method, segs.as_slice()) {
        return envelope(push_file(d, name, query, headers, &body).await);
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return envelope(Err(err(400, format!("Failed to decode request body: {e}")))),
        }
    };
    let recursion = query_value(query, "recursion").and_then(|v| v.parse::<u8>().ok()).unwrap_or(0);
    let answer = match (method, segs.as_slice()) {
        (&Method::GET, ["1.0"]) => Ok(server_info(d)),
        (&Method::GET, ["1.0", "networks"]) => Ok(d.shared.read(|w| list_networks(&w.lxd_daemon, recursion))),
        (&Method::POST, ["1.0", "networks"]) => sync_change(d, latency::NETWORK, |w| create_network(w, &body)).await,
        (&Method::GET, ["1.0", "networks", name]) => d.shared.read(|w| get_network(&w.lxd_daemon, name)),
        (&Method::PUT | &Method::PATCH, ["1.0", "networks", name]) => {
            let replace = method == Method::PUT;
            sync_change(d, latency::NETWORK, |w| update_network(w, name, &body, replace)).await
        }
        (&Method::DELETE, ["1.0", "networks", name]) => {
            sync_change(d, latency::NETWORK, |w| delete_network(w, name)).await
        }
        (&Method::GET, ["1.0", "storage-pools"]) => Ok(d.shared.read(|w| list_pools(&w.lxd_daemon, recursion))),
        (&Method::POST, ["1.0", "storage-pools"]) => sync_change(d, latency::POOL, |w| create_pool(w, &body)).await,
        (&Method::GET, ["1.0", "storage-pools", name]) => d.shared.read(|w| get_pool(&w.lxd_daemon, name)),
        (&Method::DELETE, ["1.0", "storage-pools", name]) => {
            sync_change(d, latency::POOL, |w| delete_pool(w, name)).await
        }
        (&Method::GET, ["1.0", "profiles"]) => Ok(d.shared.read(|w| list_profiles(&w.lxd_daemon, recursion))),
        (&Method::POST, ["1.0", "profiles"]) => sync_change(d, latency::PROFILE, |w| create_profile(w, &body)).await,
        (&Method::GET, ["1.0", "profiles", name]) => d.shared.read(|w| get_profile(&w.lxd_daemon, name)),
        (&Method::PUT | &Method::PATCH, ["1.0", "profiles", name]) => {
            let replace = method == Method::PUT;
            sync_change(d, latency::PROFILE, |w| update_profile(w, name, &body, replace)).await
        }
        (&Method::DELETE, ["1.0", "profiles", name]) => {
            sync_change(d, latency::PROFILE, |w| delete_profile(w, name)).await
        }
        // The listing every observation makes: written straight from the daemon's objects.
        (&Method::GET, ["1.0", "instances"]) if recursion >= 1 => {
            return (StatusCode::OK, d.shared.read(|w| listing(&w.lxd_daemon)));
        }
        (&Method::GET, ["1.0", "instances"]) => Ok(d.shared.read(|w| list_instances(&w.lxd_daemon, recursion))),
        (&Method::POST, ["1.0", "instances"]) => {
            // What LXD refuses before it starts the operation.
            match d.shared.read(|w| check_create(w, &body)) {
                Err(e) => Err(e),
                Ok(name) => {
                    let description = format!("Creating instance {name}");
                    return operation(d, description, name, latency::CREATE_INSTANCE, move |w| {
                        create_instance(w, &body)
                    });
                }
            }
        }
        (&Method::GET, ["1.0", "instances", name]) => d.shared.read(|w| get_instance(&w.lxd_daemon, name)),
        (&Method::PUT, ["1.0", "instances", name]) => {
            let name = (*name).to_owned();
            match d.shared.read(|w| existing(&w.lxd_daemon, &name).map(|_| ())) {
                Err(e) => Err(e),
                Ok(()) => {
                    return operation(
                        d,
                        format!("Updating instance {name}"),
                        name.clone(),
                        latency::UPDATE_INSTANCE,
                        move |w| update_instance(w, &name, &body, true),
                    )
                }
            }
        }
        (&Method::PATCH, ["1.0", "instances", name]) => {
            sync_change(d, latency::UPDATE_INSTANCE, |w| update_instance(w, name, &body, false)).await
        }
        (&Method::DELETE, ["1.0", "instances", name]) => {
            let name = (*name).to_owned();
            match d.shared.read(|w| existing(&w.lxd_daemon, &name).map(|i| i.running())) {
                Err(e) => Err(e),
                // lxd/instance_delete.go: refused before any operation.
                Ok(true) => Err(err(400, "Instance is running")),
                Ok(false) => {
                    return operation(
                        d,
                        format!("Deleting instance {name}"),
                        name.clone(),
                        latency::DELETE_INSTANCE,
                        move |w| delete_instance(w, &name),
                    )
                }
            }
        }
        (&Method::GET, ["1.0", "instances", name, "state"]) => d.shared.read(|w| instance_state(&w.lxd_daemon, name)),
        (&Method::PUT, ["1.0", "instances", name, "state"]) => {
            let name = (*name).to_owned();
            let action = body.get("action").and_then(Value::as_str).unwrap_or_default().to_owned();
            let took = match action.as_str() {
                "start" => latency::START,
                "stop" => latency::STOP,
                _ => latency::STOP + latency::START,
            };
            match d.shared.read(|w| existing(&w.lxd_daemon, &name).map(|_| ())) {
                Err(e) => Err(e),
                Ok(()) => {
                    let description = format!("{} instance {name}", capitalised(&action));
                    return operation(d, description, name.clone(), took, move |w| change_state(w, &name, &action));
                }
            }
        }
        (&Method::POST, ["1.0", "instances", name, "exec"]) => {
            let name = (*name).to_owned();
            match d.shared.read(|w| container(&w.lxd_daemon, &name)) {
                Err(e) => Err(e),
                Ok(c) => return exec(d, c, &body),
            }
        }
        (&Method::GET, ["1.0", "instances", name, "logs"]) => {
            let name = (*name).to_owned();
            match d.shared.read(|w| existing(&w.lxd_daemon, &name).map(|_| ())) {
                Err(e) => Err(e),
                Ok(()) => Ok(json!(exec_logs(d, &name))),
            }
        }
        (&Method::GET, ["1.0", "instances", name, "logs", file]) => {
            match d.logs.lock().unwrap_or_else(|p| p.into_inner()).get(&(name.to_string(), file.to_string())) {
                // lxd/instance_logs.go: the file itself, not an envelope.
                Some(text) => return (StatusCode::OK, text.clone().into_bytes()),
                None => Err(err(404, "not found")),
            }
        }
        (&Method::DELETE, ["1.0", "instances", name, "logs", file]) => {
            match d.logs.lock().unwrap_or_else(|p| p.into_inner()).remove(&(name.to_string(), file.to_string())) {
                Some(_) => Ok(json!({})),
                None => Err(err(404, "not found")),
            }
        }
        (&Method::GET, ["1.0", "images", "aliases", name]) => d.shared.read(|w| get_image_alias(&w.lxd_daemon, name)),
        (&Method::GET, ["1.0", "operations"]) => Ok(list_operations(d, recursion)),
        (&Method::GET, ["1.0", "operations", id]) => match find_op(d, id) {
            Some(op) => Ok(op_json(id, &op)),
            None => Err(err(404, "Operation not found")),
        },
        (&Method::GET, ["1.0", "operations", id, "wait"]) => {
            let secs = query_value(query, "timeout").and_then(|t| t.parse::<i64>().ok()).unwrap_or(-1);
            match find_op(d, id) {
                None => Err(err(404, "Operation not found")),
                Some(op) => {
                    let mut end = op.end.clone();
                    let done = end.wait_for(Option::is_some);
                    let finished = if secs >= 0 {
                        tokio::time::timeout(Duration::from_secs(secs as u64), done).await.is_ok()
                    } else {
                        done.await.is_ok()
                    };
                    // lxd/operations.go operationWaitGet: a timeout and a failed operation are answered as
                    // errors (with HTTP 200, the status being written before the wait), not as the operation.
                    let ended = op.end.borrow().clone();
                    match ended {
                        _ if !finished => return (StatusCode::OK, error_body(500, "context deadline exceeded")),
                        Some(e) if e.status_code != 200 => return (StatusCode::OK, error_body(e.status_code, &e.err)),
                        _ => Ok(op_json(id, &op)),
                    }
                }
            }
        }
        _ => Err(err(404, "not found")),
    };
    envelope(answer)
}

/// A sync response, or LXD's error envelope.
fn envelope(answer: Answer) -> (StatusCode, Vec<u8>) {
    let (status, body) = match answer {
        Ok(metadata) => (
            StatusCode::OK,
            json!({"type": "sync", "status": "Success", "status_code": 200, "operation": "", "error_code": 0, "error": "", "metadata": metadata}),
        ),
        Err(e) => {
            let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, error_body(e.code, &e.message));
        }
    };
    (status, serde_json::to_vec(&body).unwrap_or_default())
}

fn error_body(code: u16, message: &str) -> Vec<u8> {
    let body = json!({"type": "error", "status": "", "status_code": 0, "operation": "", "error_code": code, "error": message, "metadata": null});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A change answered synchronously, after the time it takes.
async fn sync_change(d: &Arc<Daemon>, took: Duration, f: impl FnOnce(&mut SimWorld) -> Answer) -> Answer {
    let wait = d.shared.options.scaled(took);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    d.shared.change(f)
}

/// Starts an operation: answered at once (202) with its URL; the change happens in the background once
/// its time has passed, whether or not anyone waits for it.
fn operation(
    d: &Arc<Daemon>,
    description: String,
    instance: String,
    took: Duration,
    f: impl FnOnce(&mut SimWorld) -> Answer + Send + 'static,
) -> (StatusCode, Vec<u8>) {
    operation_ending(d, description, instance, took, Ending::Change(Box::new(f)))
}

/// What an operation does when its time has passed.
enum Ending {
    /// Changes the world (and saves it).
    Change(Box<dyn FnOnce(&mut SimWorld) -> Answer + Send>),
    /// Ends with what was already decided (an exec, whose program has run).
    Done(Value),
}

fn operation_ending(
    d: &Arc<Daemon>,
    description: String,
    instance: String,
    took: Duration,
    ending: Ending,
) -> (StatusCode, Vec<u8>) {
    let id = d.shared.change_quiet(|w| w.lxd_daemon.new_id());
    let id = format!("00000000-0000-4000-a000-{id:012}");
    let (tx, rx) = watch::channel(None);
    let op = Arc::new(Op { description, instance, end: rx });
    d.ops.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), Arc::clone(&op));
    let shared = Arc::clone(&d.shared);
    let wait = shared.options.scaled(took);
    tokio::spawn(async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let answer = match ending {
            Ending::Change(f) => shared.change(f),
            Ending::Done(metadata) => Ok(metadata),
        };
        let end = match answer {
            Ok(metadata) => OpEnd { status_code: 200, err: String::new(), metadata },
            Err(e) => OpEnd { status_code: e.code, err: e.message, metadata: Value::Null },
        };
        let _ = tx.send(Some(end));
    });
    let body = json!({
        "type": "async",
        "status": "Operation created",
        "status_code": 100,
        "operation": format!("/1.0/operations/{id}"),
        "error_code": 0,
        "error": "",
        "metadata": op_json(&id, &op),
    });
    (StatusCode::ACCEPTED, serde_json::to_vec(&body).unwrap_or_default())
}

fn find_op(d: &Daemon, id: &str) -> Option<Arc<Op>> {
    d.ops.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
}

fn op_json(id: &str, op: &Op) -> Value {
    let end = op.end.borrow().clone();
    let (status, code, err, metadata) = match end {
        None => ("Running", 103, String::new(), Value::Null),
        Some(e) if e.status_code == 200 => ("Success", 200, String::new(), e.metadata),
        Some(e) => ("Failure", 400, e.err, e.metadata),
    };
    json!({
        "id": id,
        "class": "task",
        "description": op.description,
        "status": status,
        "status_code": code,
        // lxd/operations/operations.go Render: each affected object as its URL, by collection (an instance
        // under its old name `containers` too).
        "resources": {
            "instances": [format!("/1.0/instances/{}", encode(&op.instance))],
            "containers": [format!("/1.0/containers/{}", encode(&op.instance))],
        },
        "metadata": metadata,
        "may_cancel": false,
        "err": err,
        "location": "none",
    })
}

/// `GET /1.0/operations`: lxd/operations.go operationsGet groups them by their status in lower case, only the
/// statuses some operation has; URLs, or with recursion the operations themselves.
fn list_operations(d: &Daemon, recursion: u8) -> Value {
    let ops = d.ops.lock().unwrap_or_else(|p| p.into_inner());
    let mut by_status = serde_json::Map::new();
    for (id, op) in ops.iter() {
        let status = match &*op.end.borrow() {
            None => "running",
            Some(e) if e.status_code == 200 => "success",
            Some(_) => "failure",
        };
        let v = if recursion >= 1 { op_json(id, op) } else { json!(format!("/1.0/operations/{id}")) };
        if let Value::Array(list) = by_status.entry(status).or_insert_with(|| json!([])) {
            list.push(v);
        }
    }
    Value::Object(by_status)
}

fn server_info(d: &Daemon) -> Value {
    let version = match d.flavor {
        super::Flavor::Lxd => "5.0.2",
        super::Flavor::Incus => "6.0.4",
    };
    json!({
        "api_extensions": ["network", "container_exec_recording", "instances", "network_state"],
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "public": false,
        "environment": {
            "server": d.flavor.server(),
            "server_version": version,
            "server_name": "simulated",
            "kernel": "Linux",
            "storage": "dir",
        },
    })
}

// ---------------------------------------------------------------------------------------------------------
// Networks

/// Host interfaces LXD lists beside its own networks, unmanaged.
const HOST_INTERFACES: [(&str, &str); 2] = [("lo", "loopback"), ("eth0", "physical")];

fn network_json(daemon: &LxdDaemon, name: &str, n: &Network) -> Value {
    json!({
        "name": name,
        "type": n.kind,
        "managed": true,
        "description": n.description,
        "config": n.config,
        "used_by": daemon.network_used_by(name),
        "status": "Created",
        "locations": ["none"],
    })
}

fn list_networks(daemon: &LxdDaemon, recursion: u8) -> Value {
    let mut all: Vec<Value> = HOST_INTERFACES
        .iter()
        .map(|(name, kind)| {
            json!({"name": name, "type": kind, "managed": false, "description": "", "config": {}, "used_by": null, "status": "", "locations": null})
        })
        .collect();
    all.extend(daemon.networks.iter().map(|(name, n)| network_json(daemon, name, n)));
    listed(all, recursion, "networks")
}

fn get_network(daemon: &LxdDaemon, name: &str) -> Answer {
    one(&daemon.networks, name, "Network not found", |n| network_json(daemon, name, n))
}

/// One object of a collection, rendered, or LXD's 404 with its message.
fn one<T>(
    all: &std::collections::BTreeMap<String, T>,
    name: &str,
    missing: &str,
    render: impl Fn(&T) -> Value,
) -> Answer {
    all.get(name).map(render).ok_or_else(|| err(404, missing))
}

fn check_network_config(name: &str, config: &Map) -> Result<(), ApiError> {
    if let Some(v) = config.get("ipv4.address").filter(|v| !matches!(v.as_str(), "none" | "auto")) {
        // The bridge's own address must be a host address of its subnet.
        let ok = crate::world::parse_cidr(v).is_some_and(|(gw, len)| {
            let mask: u32 = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            let x = u32::from(gw);
            len <= 30 && x & !mask != 0 && x | mask != u32::MAX
        });
        if !ok {
            return Err(err(
                400,
                format!("Invalid value for network \"{name}\" option \"ipv4.address\": Not an IP address in CIDR form with a host part: {v}"),
            ));
        }
    }
    Ok(())
}

fn create_network(w: &mut SimWorld, body: &Value) -> Answer {
    let name = str_field(body, "name");
    if name.is_empty() {
        return Err(err(400, "No name provided"));
    }
    let kind = match str_field(body, "type") {
        "" => "bridge".to_owned(),
        k => k.to_owned(),
    };
    if kind != "bridge" {
        return Err(err(400, format!("Unsupported network type {kind:?} (the simulated daemon makes bridges only)")));
    }
    if w.lxd_daemon.networks.contains_key(name) || HOST_INTERFACES.iter().any(|(n, _)| *n == name) {
        return Err(err(409, "The network already exists"));
    }
    let mut config = map_field(body, "config");
    check_network_config(name, &config)?;
    injected(w, config.get(ADDRESS_KEY).cloned())?;
    if !config.contains_key("ipv4.address") {
        // `auto`: LXD picks a free 10.x subnet.
        let n = w.lxd_daemon.networks.len() + 1;
        config.insert("ipv4.address".into(), format!("10.{}.{}.1/24", 100 + n / 250, n % 250));
    }
    let description = str_field(body, "description").to_owned();
    w.lxd_daemon.networks.insert(name.to_owned(), Network { kind, description, config });
    Ok(Value::Null)
}

fn update_network(w: &mut SimWorld, name: &str, body: &Value, replace: bool) -> Answer {
    let Some(n) = w.lxd_daemon.networks.get(name).cloned() else { return Err(err(404, "Network not found")) };
    injected(w, n.config.get(ADDRESS_KEY).cloned())?;
    let mut config = if replace { Map::new() } else { n.config.clone() };
    config.extend(map_field(body, "config"));
    check_network_config(name, &config)?;
    let net = w.lxd_daemon.networks.get_mut(name).expect("looked up above");
    net.config = config;
    if let Some(d) = body.get("description").and_then(Value::as_str) {
        net.description = d.to_owned();
    }
    Ok(Value::Null)
}

fn delete_network(w: &mut SimWorld, name: &str) -> Answer {
    let Some(n) = w.lxd_daemon.networks.get(name).cloned() else { return Err(err(404, "Network not found")) };
    if !w.lxd_daemon.network_used_by(name).is_empty() {
        return Err(err(400, "The network is currently in use"));
    }
    injected(w, n.config.get(ADDRESS_KEY).cloned())?;
    w.lxd_daemon.networks.remove(name);
    Ok(Value::Null)
}

// ---------------------------------------------------------------------------------------------------------
// Storage pools

fn pool_json(daemon: &LxdDaemon, name: &str, p: &StoragePool) -> Value {
    json!({
        "name": name,
        "driver": p.driver,
        "description": p.description,
        "config": p.config,
        "used_by": daemon.pool_used_by(name),
        "status": "Created",
        "locations": ["none"],
    })
}

fn list_pools(daemon: &LxdDaemon, recursion: u8) -> Value {
    let all = daemon.storage_pools.iter().map(|(name, p)| pool_json(daemon, name, p)).collect();
    listed(all, recursion, "storage-pools")
}

fn get_pool(daemon: &LxdDaemon, name: &str) -> Answer {
    one(&daemon.storage_pools, name, "Storage pool not found", |p| pool_json(daemon, name, p))
}

fn create_pool(w: &mut SimWorld, body: &Value) -> Answer {
    let name = str_field(body, "name");
    if name.is_empty() {
        return Err(err(400, "No name provided"));
    }
    let driver = str_field(body, "driver");
    if !matches!(driver, "dir" | "btrfs" | "lvm" | "zfs") {
        return Err(err(400, format!("Storage pool driver {driver:?} is not supported")));
    }
    if w.lxd_daemon.storage_pools.contains_key(name) {
        return Err(err(409, format!("Storage pool {name:?} already exists")));
    }
    let config = map_field(body, "config");
    injected(w, config.get(ADDRESS_KEY).cloned())?;
    let description = str_field(body, "description").to_owned();
    w.lxd_daemon.storage_pools.insert(name.to_owned(), StoragePool { driver: driver.to_owned(), description, config });
    Ok(Value::Null)
}

fn delete_pool(w: &mut SimWorld, name: &str) -> Answer {
    let Some(p) = w.lxd_daemon.storage_pools.get(name).cloned() else {
        return Err(err(404, "Storage pool not found"));
    };
    if !w.lxd_daemon.pool_used_by(name).is_empty() {
        return Err(err(400, "The storage pool is currently in use"));
    }
    injected(w, p.config.get(ADDRESS_KEY).cloned())?;
    w.lxd_daemon.storage_pools.remove(name);
    Ok(Value::Null)
}

// ---------------------------------------------------------------------------------------------------------
// Profiles

fn profile_json(daemon: &LxdDaemon, name: &str, p: &Profile) -> Value {
    json!({
        "name": name,
        "description": p.description,
        "config": p.config,
        "devices": p.devices,
        "used_by": daemon.profile_used_by(name),
    })
}

fn list_profiles(daemon: &LxdDaemon, recursion: u8) -> Value {
    let all = daemon.profiles.iter().map(|(name, p)| profile_json(daemon, name, p)).collect();
    listed(all, recursion, "profiles")
}

/// `GET /1.0/images/aliases/NAME`: a locally imported image's alias (the simulation keeps no fingerprints).
fn get_image_alias(daemon: &LxdDaemon, name: &str) -> Answer {
    if !daemon.images.contains(name) {
        return Err(err(404, "Image alias not found"));
    }
    Ok(json!({"name": name, "description": "", "target": "", "type": "container"}))
}

fn get_profile(daemon: &LxdDaemon, name: &str) -> Answer {
    one(&daemon.profiles, name, "Fetch profile: Profile not found", |p| profile_json(daemon, name, p))
}

fn create_profile(w: &mut SimWorld, body: &Value) -> Answer {
    let name = str_field(body, "name");
    if name.is_empty() {
        return Err(err(400, "No name provided"));
    }
    if w.lxd_daemon.profiles.contains_key(name) {
        return Err(err(409, format!("Error inserting {name:?} into database: The profile already exists")));
    }
    let config = map_field(body, "config");
    let devices = devices_field(body, "devices");
    check_devices(&w.lxd_daemon, &devices)?;
    injected(w, config.get(ADDRESS_KEY).cloned())?;
    let description = str_field(body, "description").to_owned();
    w.lxd_daemon.profiles.insert(name.to_owned(), Profile { description, config, devices });
    Ok(Value::Null)
}

fn update_profile(w: &mut SimWorld, name: &str, body: &Value, replace: bool) -> Answer {
    let Some(p) = w.lxd_daemon.profiles.get(name).cloned() else {
        return Err(err(404, "Fetch profile: Profile not found"));
    };
    injected(w, p.config.get(ADDRESS_KEY).cloned())?;
    let (mut config, mut devices) = if replace { (Map::new(), Devices::new()) } else { (p.config, p.devices) };
    config.extend(map_field(body, "config"));
    devices.extend(devices_field(body, "devices"));
    check_devices(&w.lxd_daemon, &devices)?;
    let profile = w.lxd_daemon.profiles.get_mut(name).expect("looked up above");
    profile.config = config;
    profile.devices = devices;
    if let Some(d) = body.get("description").and_then(Value::as_str) {
        profile.description = d.to_owned();
    }
    Ok(Value::Null)
}

fn delete_profile(w: &mut SimWorld, name: &str) -> Answer {
    let Some(p) = w.lxd_daemon.profiles.get(name).cloned() else {
        return Err(err(404, "Fetch profile: Profile not found"));
    };
    if name == "default" {
        return Err(err(403, "The \"default\" profile cannot be deleted"));
    }
    if !w.lxd_daemon.profile_used_by(name).is_empty() {
        // lxd-5.0.3 lxd/profiles.go: a plain error, so HTTP 500 (5.21 answers 400).
        return Err(err(500, "Profile is currently in use"));
    }
    injected(w, p.config.get(ADDRESS_KEY).cloned())?;
    w.lxd_daemon.profiles.remove(name);
    Ok(Value::Null)
}

// ---------------------------------------------------------------------------------------------------------
// Instances

fn instance_json(daemon: &LxdDaemon, name: &str, i: &Instance) -> Value {
    let e = daemon.expanded(i);
    json!({
        "name": name,
        "type": "container",
        "status": i.status.name(),
        "status_code": i.status.code(),
        "description": i.description,
        "architecture": "x86_64",
        "ephemeral": false,
        "stateful": false,
        "location": "none",
        "project": "default",
        "config": i.config,
        "devices": i.devices,
        "profiles": i.profiles,
        "expanded_config": e.config,
        "expanded_devices": e.devices,
    })
}

/// An instance as `GET /1.0/instances?recursion=1` lists it, borrowed from the daemon's objects.
#[derive(serde::Serialize)]
struct InstanceOut<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    status_code: u16,
    description: &'a str,
    architecture: &'static str,
    ephemeral: bool,
    stateful: bool,
    location: &'static str,
    project: &'static str,
    config: &'a Map,
    devices: &'a Devices,
    profiles: &'a [String],
    expanded_config: Map,
    expanded_devices: std::collections::BTreeMap<&'a str, &'a Map>,
}

#[derive(serde::Serialize)]
struct Sync<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    status_code: u16,
    operation: &'static str,
    error_code: u16,
    error: &'static str,
    metadata: T,
}

/// The sync answer of `GET /1.0/instances?recursion=1`.
fn listing(daemon: &LxdDaemon) -> Vec<u8> {
    let all: Vec<InstanceOut> = daemon
        .instances
        .iter()
        .map(|(name, i)| {
            let mut expanded_config = Map::new();
            for p in i.profiles.iter().filter_map(|p| daemon.profiles.get(p)) {
                expanded_config.extend(p.config.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            expanded_config.extend(i.config.iter().map(|(k, v)| (k.clone(), v.clone())));
            InstanceOut {
                name,
                kind: "container",
                status: i.status.name(),
                status_code: i.status.code(),
                description: &i.description,
                architecture: "x86_64",
                ephemeral: false,
                stateful: false,
                location: "none",
                project: "default",
                config: &i.config,
                devices: &i.devices,
                profiles: &i.profiles,
                expanded_config,
                expanded_devices: daemon.devices_of(i),
            }
        })
        .collect();
    let answer = Sync {
        kind: "sync",
        status: "Success",
        status_code: 200,
        operation: "",
        error_code: 0,
        error: "",
        metadata: all,
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

fn list_instances(daemon: &LxdDaemon, recursion: u8) -> Value {
    let all = daemon.instances.iter().map(|(name, i)| instance_json(daemon, name, i)).collect();
    listed(all, recursion, "instances")
}

fn existing<'a>(daemon: &'a LxdDaemon, name: &str) -> Result<&'a Instance, ApiError> {
    daemon.instances.get(name).ok_or_else(|| err(404, "Instance not found"))
}

fn get_instance(daemon: &LxdDaemon, name: &str) -> Answer {
    existing(daemon, name).map(|i| instance_json(daemon, name, i))
}

fn instance_state(daemon: &LxdDaemon, name: &str) -> Answer {
    let i = existing(daemon, name)?;
    let network = match (i.running(), daemon.ipv4_of(i)) {
        (false, _) => Value::Null,
        (true, ip) => {
            let len = daemon
                .expanded(i)
                .devices
                .values()
                .filter(|d| kind(d) == "nic")
                .find_map(|d| daemon.networks.get(d.get("network")?))
                .and_then(Network::subnet)
                .map(|(_, len)| len.to_string())
                .unwrap_or_else(|| "24".into());
            let addresses: Vec<Value> = ip
                .into_iter()
                .map(|a| json!({"family": "inet", "address": a, "netmask": len, "scope": "global"}))
                .collect();
            json!({
                "eth0": {"addresses": addresses, "state": "up", "type": "broadcast"},
                "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}], "state": "up", "type": "loopback"},
            })
        }
    };
    Ok(json!({
        "status": i.status.name(),
        "status_code": i.status.code(),
        "pid": if i.running() { 4242 } else { 0 },
        "processes": if i.running() { 12 } else { 0 },
        "network": network,
    }))
}

/// Images the simulated image servers carry (`server` + `alias` of a create's source).
fn remote_image_known(server: &str, alias: &str) -> bool {
    if server.contains("cloud-images.ubuntu.com") {
        return matches!(alias, "20.04" | "22.04" | "24.04" | "focal" | "jammy" | "noble" | "lts");
    }
    server.contains("images.linuxcontainers.org") && alias.contains('/')
}

/// What LXD 5.0 refuses before it starts a create: a name missing, a profile that does not exist (a plain
/// error, so HTTP 500: lxd-5.0.3 lxd/instances_post.go). Returns the name.
fn check_create(w: &SimWorld, body: &Value) -> Result<String, ApiError> {
    let name = str_field(body, "name");
    if name.is_empty() {
        return Err(err(400, "No name provided"));
    }
    for p in string_list(body, "profiles") {
        if !w.lxd_daemon.profiles.contains_key(&p) {
            return Err(err(500, format!("Requested profile {p:?} doesn't exist")));
        }
    }
    Ok(name.to_owned())
}

/// The create operation: what LXD 5.0 finds wrong only once the operation runs comes back as its error.
fn create_instance(w: &mut SimWorld, body: &Value) -> Answer {
    let name = check_create(w, body)?;
    if w.lxd_daemon.instances.contains_key(&name) {
        // lxd-5.0.3: no check before the operation; the database insert fails.
        return Err(err(409, "Failed creating instance record: Add instance info to the database: This \"instances\" entry already exists"));
    }
    let source = body.get("source").cloned().unwrap_or(Value::Null);
    let alias = str_field(&source, "alias");
    let image_found = match str_field(&source, "server") {
        "" => w.lxd_daemon.images.contains(alias),
        server => remote_image_known(server, alias),
    };
    if !image_found {
        // lxd-5.0.3 instances_post.go: the alias lookup's 404 is dropped and the operation fails.
        return Err(err(500, "Image not provided for instance creation"));
    }
    let mut config = map_field(body, "config");
    let devices = devices_field(body, "devices");
    let profiles = if body.get("profiles").is_some_and(Value::is_array) {
        string_list(body, "profiles")
    } else {
        vec!["default".to_owned()]
    };
    let candidate = Instance {
        status: Status::Stopped,
        description: String::new(),
        config: config.clone(),
        devices,
        profiles,
        dhcp_ipv4: None,
    };
    check_instance(&w.lxd_daemon, &candidate).map_err(|e| {
        err(
            e.code,
            format!("Failed creating instance record: Failed initialising instance: Invalid devices: {}", e.message),
        )
    })?;
    injected(w, config.get(ADDRESS_KEY).cloned())?;
    let uuid = w.lxd_daemon.new_id();
    config.insert("volatile.uuid".into(), format!("00000000-0000-4000-9000-{uuid:012}"));
    config.insert("volatile.last_state.power".into(), "STOPPED".into());
    config.insert("image.release".into(), alias.to_owned());
    let description = str_field(body, "description").to_owned();
    w.lxd_daemon.instances.insert(name, Instance { config, description, ..candidate });
    // LXD 5.0 ignores `start` in the create request: a client starts the instance itself.
    Ok(Value::Null)
}

fn update_instance(w: &mut SimWorld, name: &str, body: &Value, replace: bool) -> Answer {
    let old = existing(&w.lxd_daemon, name)?.clone();
    let mut next = old.clone();
    let volatile: Map =
        old.config.iter().filter(|(k, _)| k.starts_with("volatile.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    if replace {
        next.config = volatile;
        next.config.extend(map_field(body, "config"));
        next.devices = devices_field(body, "devices");
        if body.get("profiles").is_some_and(Value::is_array) {
            next.profiles = string_list(body, "profiles");
        }
    } else {
        merge_nullable(&mut next.config, body.get("config"));
        if let Some(devs) = body.get("devices").and_then(Value::as_object) {
            for (dev, keys) in devs {
                match keys {
                    Value::Null => {
                        next.devices.remove(dev);
                    }
                    v => {
                        next.devices.insert(dev.clone(), to_map(v));
                    }
                }
            }
        }
        if body.get("profiles").is_some_and(Value::is_array) {
            next.profiles = string_list(body, "profiles");
        }
    }
    for p in &next.profiles {
        if !w.lxd_daemon.profiles.contains_key(p) {
            return Err(err(400, format!("Requested profile {p:?} doesn't exist")));
        }
    }
    check_instance(&w.lxd_daemon, &next)?;
    // The proxies testbed adds or removes record themselves as `user.testbed.proxy.<device>` keys.
    let touched: Vec<String> = proxy_keys(&old.config)
        .symmetric_difference(&proxy_keys(&next.config))
        .cloned()
        .chain(if proxy_keys(&old.config) == proxy_keys(&next.config) {
            old.config.get(ADDRESS_KEY).cloned()
        } else {
            None
        })
        .collect();
    for address in touched {
        injected(w, Some(address))?;
    }
    if next.running() {
        // Devices added to a running container start now (lxd/instance_put.go → Update → device start).
        let before = w.lxd_daemon.expanded(&old).devices;
        let after = w.lxd_daemon.expanded(&next).devices;
        for (dev, d) in after.iter().filter(|(dev, d)| kind(d) == "proxy" && before.get(*dev) != Some(*d)) {
            check_proxy_port(w, name, dev, d)?;
        }
    }
    w.lxd_daemon.instances.insert(name.to_owned(), next);
    Ok(Value::Null)
}

fn change_state(w: &mut SimWorld, name: &str, action: &str) -> Answer {
    let i = existing(&w.lxd_daemon, name)?.clone();
    injected(w, i.config.get(ADDRESS_KEY).cloned())?;
    match action {
        "start" => {
            if i.running() {
                return Err(err(400, "The instance is already running"));
            }
            start(w, name)
        }
        "stop" => {
            if !i.running() {
                return Err(err(400, "The instance is already stopped"));
            }
            stop(w, name);
            Ok(Value::Null)
        }
        "restart" => {
            if i.running() {
                stop(w, name);
            }
            start(w, name)
        }
        other => Err(err(400, format!("Unknown action {other}"))),
    }
}

fn stop(w: &mut SimWorld, name: &str) {
    if let Some(i) = w.lxd_daemon.instances.get_mut(name) {
        i.status = Status::Stopped;
        i.dhcp_ipv4 = None;
        i.config.insert("volatile.last_state.power".into(), "STOPPED".into());
    }
}

/// What LXD checks when a container starts: kernel modules, NIC addresses, proxy ports.
fn start(w: &mut SimWorld, name: &str) -> Answer {
    let i = existing(&w.lxd_daemon, name)?.clone();
    let e = w.lxd_daemon.expanded(&i);
    // lxd/instance/drivers/driver_lxc.go: linux.kernel_modules are loaded with modprobe before start.
    if let Some(list) = e.config.get("linux.kernel_modules") {
        for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !w.host.kernel_modules.contains(&m.replace('-', "_")) {
                return Err(err(400, format!("Failed to load kernel module '{m}': modprobe: FATAL: Module {m} not found in directory /lib/modules/6.1.0-simulated")));
            }
        }
    }
    for (dev, d) in e.devices.iter().filter(|(_, d)| kind(d) == "nic") {
        let Some(ip) = d.get("ipv4.address") else { continue };
        let clash = w.lxd_daemon.instances.iter().filter(|(n, _)| n.as_str() != name).any(|(_, other)| {
            w.lxd_daemon.devices_of(other).values().any(|od| {
                kind(od) == "nic" && od.get("network") == d.get("network") && od.get("ipv4.address") == Some(ip)
            })
        });
        if clash {
            return Err(err(
                400,
                format!(
                    "Failed start validation for device \"{dev}\": IP address \"{ip}\" already defined on another NIC"
                ),
            ));
        }
    }
    for (dev, d) in e.devices.iter().filter(|(_, d)| kind(d) == "proxy") {
        // At start the forkproxy failure comes from the post-start hook, without the device prefix
        // (lxd-5.0.3 driver_lxc.go), and the container is stopped again.
        check_proxy_port(w, name, dev, d).map_err(|e| {
            let without = e.message.split_once(": ").map(|(_, rest)| rest.to_owned()).unwrap_or(e.message.clone());
            err(e.code, without)
        })?;
    }
    let lease = match e.devices.values().find(|d| kind(d) == "nic" && !d.contains_key("ipv4.address")) {
        Some(d) => d.get("network").and_then(|n| w.lxd_daemon.lease(n)),
        None => None,
    };
    if let Some(i) = w.lxd_daemon.instances.get_mut(name) {
        i.status = Status::Running;
        i.dhcp_ipv4 = lease;
        i.config.insert("volatile.last_state.power".into(), "RUNNING".into());
    }
    Ok(Value::Null)
}

fn delete_instance(w: &mut SimWorld, name: &str) -> Answer {
    let i = existing(&w.lxd_daemon, name)?.clone();
    if i.running() {
        return Err(err(400, "Instance is running"));
    }
    injected(w, i.config.get(ADDRESS_KEY).cloned())?;
    w.lxd_daemon.instances.remove(name);
    Ok(Value::Null)
}

/// Device validation LXD does on create and update (lxd/device/nic_bridged.go, disk.go, proxy.go).
fn check_instance(daemon: &LxdDaemon, i: &Instance) -> Result<(), ApiError> {
    let e = daemon.expanded(i);
    if !e.devices.values().any(|d| kind(d) == "disk" && d.get("path").map(String::as_str) == Some("/")) {
        return Err(err(400, "Failed initializing instance: Failed getting root disk: No root device could be found"));
    }
    check_devices(daemon, &e.devices)?;
    for (dev, d) in e.devices.iter().filter(|(_, d)| kind(d) == "nic") {
        let (Some(ip), Some(net)) = (d.get("ipv4.address"), d.get("network")) else { continue };
        let subnet = daemon.networks.get(net).and_then(Network::subnet);
        let inside = match (ip.parse(), subnet) {
            (Ok(ip), Some(s)) => subnet_allows(s, ip),
            _ => false,
        };
        if !inside {
            return Err(err(400, format!("Device validation failed for \"{dev}\": Device IP address \"{ip}\" not within network \"{net}\" subnet")));
        }
    }
    Ok(())
}

/// Validation of a device map (profile or expanded instance): what each device refers to must exist.
fn check_devices(daemon: &LxdDaemon, devices: &Devices) -> Result<(), ApiError> {
    for (dev, d) in devices {
        match kind(d) {
            "nic" => {
                if let Some(net) = d.get("network") {
                    if !daemon.networks.contains_key(net) {
                        return Err(err(400, format!("Device validation failed for \"{dev}\": Failed loading network \"{net}\": Network not found")));
                    }
                }
            }
            "disk" => {
                if let Some(pool) = d.get("pool") {
                    if !daemon.storage_pools.contains_key(pool) {
                        return Err(err(400, format!("Device validation failed for \"{dev}\": Failed loading storage pool \"{pool}\": Storage pool not found")));
                    }
                }
            }
            "proxy" => {
                for k in ["listen", "connect"] {
                    let v = d.get(k).map(String::as_str).unwrap_or_default();
                    let ok = v.starts_with("unix:") || (v.split(':').count() == 3 && listen_port(v).is_some());
                    if !ok {
                        return Err(err(400, format!("Device validation failed for \"{dev}\": Invalid value for device option \"{k}\": {v:?}")));
                    }
                }
            }
            "unix-char" | "unix-block" | "gpu" | "none" => {}
            "" => return Err(err(400, format!("Device validation failed for \"{dev}\": Missing device type"))),
            other => {
                return Err(err(
                    400,
                    format!("Device validation failed for \"{dev}\": Unsupported device type {other:?}"),
                ))
            }
        }
    }
    Ok(())
}

/// A proxy's host side must be free (forkproxy binds it when the device starts).
fn check_proxy_port(w: &SimWorld, instance: &str, dev: &str, d: &Map) -> Result<(), ApiError> {
    let listen = d.get("listen").map(String::as_str).unwrap_or_default();
    let Some(port) = listen_port(listen) else { return Ok(()) };
    let held_outside = w.host_ports_outside_lxd().contains(&port);
    let held_by_proxy = w.lxd_daemon.instances.iter().filter(|(_, i)| i.running()).any(|(n, i)| {
        w.lxd_daemon.expanded(i).devices.iter().any(|(od, o)| {
            kind(o) == "proxy"
                && (n != instance || od != dev)
                && o.get("listen").and_then(|l| listen_port(l)) == Some(port)
        })
    });
    if held_outside || held_by_proxy {
        let addr = listen.split_once(':').map_or(listen, |(_, a)| a);
        return Err(err(400, format!("Failed to start device \"{dev}\": Error occurred when starting proxy device: Error: Failed to listen on {addr}: listen tcp {addr}: bind: address already in use")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Faults and helpers

/// The ownership key testbed writes on what it creates: the resource address, which `TESTBED_SIM_FAIL`
/// names. The daemon reads it only to inject the requested faults; it means nothing else here.
const ADDRESS_KEY: &str = "user.testbed.address";

fn proxy_keys(config: &Map) -> BTreeSet<String> {
    config.iter().filter(|(k, _)| k.starts_with("user.testbed.proxy.")).map(|(_, v)| v.clone()).collect()
}

/// The fault `TESTBED_SIM_FAIL` names for this request (`lxd:METHOD:PATH`), if one fires; a once-fault is
/// spent in the state file.
fn injected_request(d: &Arc<Daemon>, method: &str, path: &str) -> Option<String> {
    d.shared.request_fault(|faults, spent| faults.lxd(method, path, spent))
}

/// Fails a request that changes a resource named in `TESTBED_SIM_FAIL`, the first time only.
fn injected(w: &mut SimWorld, address: Option<String>) -> Result<(), ApiError> {
    let Some(address) = address else { return Ok(()) };
    if w.fail_once.contains(&address) && w.consumed_failures.insert(address.clone()) {
        return Err(err(500, format!("{address}: simulated failure injected by TESTBED_SIM_FAIL")));
    }
    Ok(())
}

fn listed(all: Vec<Value>, recursion: u8, collection: &str) -> Value {
    if recursion >= 1 {
        return Value::Array(all);
    }
    Value::Array(
        all.iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .map(|n| Value::String(format!("/1.0/{collection}/{n}")))
            .collect(),
    )
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn to_map(v: &Value) -> Map {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Null => None,
                    other => Some((k.clone(), other.to_string())),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn map_field(v: &Value, key: &str) -> Map {
    v.get(key).map(to_map).unwrap_or_default()
}

fn merge_nullable(into: &mut Map, patch: Option<&Value>) {
    for (k, v) in patch.and_then(Value::as_object).into_iter().flatten() {
        match v {
            Value::Null => {
                into.remove(k);
            }
            Value::String(s) => {
                into.insert(k.clone(), s.clone());
            }
            other => {
                into.insert(k.clone(), other.to_string());
            }
        }
    }
}

fn devices_field(v: &Value, key: &str) -> Devices {
    v.get(key)
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(name, d)| (name.clone(), to_map(d))).collect())
        .unwrap_or_default()
}

fn string_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Percent-decoding of one path segment.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// Exec and files: what runs inside a container ([`crate::member_programs`]).
// ---------------------------------------------------------------------------------------------------

/// A running instance as the programs in it see it, or LXD's refusal.
fn container(daemon: &LxdDaemon, name: &str) -> Result<crate::member_programs::Container, ApiError> {
    let i = existing(daemon, name)?;
    if !i.running() {
        // lxd/instance_exec.go and instance_file.go.
        return Err(err(400, "Instance is not running"));
    }
    let bridge = daemon
        .expanded(i)
        .devices
        .values()
        .filter(|d| kind(d) == "nic")
        .find_map(|d| d.get("network").or_else(|| d.get("parent")).cloned());
    Ok(crate::member_programs::Container {
        name: name.to_owned(),
        identity: i.config.get("volatile.uuid").cloned().unwrap_or_default(),
        address: daemon.ipv4_of(i),
        bridge,
    })
}

/// `POST /1.0/instances/NAME/exec` without websockets: the program runs, and the operation ends when it
/// has (its real-magnitude time, scaled) with its exit code in `metadata.return` and, with `record-output`,
/// the paths of its recorded stdout and stderr (`metadata.output`, lxd-5.0.3 lxd/instance_exec.go:
/// `logs/exec_<operation>.stdout`), which stay until deleted (real-tools.md, behaviour 12).
fn exec(d: &Arc<Daemon>, c: crate::member_programs::Container, body: &Value) -> (StatusCode, Vec<u8>) {
    let argv: Vec<String> = string_list(body, "command");
    if argv.is_empty() {
        return envelope(Err(err(400, "Command cannot be empty")));
    }
    if body.get("wait-for-websocket").and_then(Value::as_bool) == Some(true) {
        return envelope(Err(err(501, "the simulated LXD daemon runs exec without websockets only")));
    }
    let record = body.get("record-output").and_then(Value::as_bool).unwrap_or(false);
    let ran = match d.shared.run_inside(&c.name, |w| crate::member_programs::run(w, &c, &argv)) {
        Ok(ran) => ran,
        Err(e) => return envelope(Err(ApiError::internal(e.to_string()))),
    };
    let id = d.shared.change_quiet(|w| w.lxd_daemon.new_id());
    let mut metadata = json!({ "return": ran.out.code });
    if record {
        let stdout = format!("exec_{id}.stdout");
        let stderr = format!("exec_{id}.stderr");
        let mut logs = d.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.insert((c.name.clone(), stdout.clone()), ran.out.stdout.clone());
        logs.insert((c.name.clone(), stderr.clone()), ran.out.stderr.clone());
        metadata["output"] = json!({
            "1": format!("/1.0/instances/{}/logs/{stdout}", c.name),
            "2": format!("/1.0/instances/{}/logs/{stderr}", c.name),
        });
    }
    operation_ending(d, format!("Executing command in {}", c.name), c.name.clone(), ran.took, Ending::Done(metadata))
}

/// The recorded exec outputs still kept for an instance.
fn exec_logs(d: &Daemon, instance: &str) -> Vec<String> {
    d.logs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .filter(|(i, _)| i == instance)
        .map(|(i, f)| format!("/1.0/instances/{i}/logs/{f}"))
        .collect()
}

/// `POST /1.0/instances/NAME/files?path=P`: writes the body as the file, with the mode of the
/// `X-LXD-mode` (`X-Incus-mode`) header; the parent directory must exist.
async fn push_file(d: &Arc<Daemon>, name: &str, query: &str, headers: &HeaderMap, body: &Bytes) -> Answer {
    let c = d.shared.read(|w| container(&w.lxd_daemon, name))?;
    let path = query_value(query, "path").map(decode).unwrap_or_default();
    if !path.starts_with('/') {
        return Err(err(400, "Missing or invalid path"));
    }
    let prefix = match d.flavor {
        Flavor::Lxd => "x-lxd",
        Flavor::Incus => "x-incus",
    };
    let header = |k: &str| headers.get(format!("{prefix}-{k}")).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if header("type").is_some_and(|t| t != "file") {
        return Err(err(501, "the simulated LXD daemon pushes regular files only"));
    }
    let mode = header("mode").and_then(|m| u32::from_str_radix(&m, 8).ok()).unwrap_or(0o644);
    // A few hundred kB per second through the daemon, at least a moment.
    // A snap stand-in counts as the size of the snap it stands for, over the local socket.
    let took =
        crate::snap_store::push_time(body).unwrap_or_else(|| Duration::from_millis(50 + body.len() as u64 / 4_000));
    let wait = d.shared.options.scaled(took);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let bytes = body.to_vec();
    d.shared.change(|w| {
        crate::member_programs::push(w, &c, &path, &bytes, mode).map(|()| json!({})).map_err(|m| err(404, m))
    })
}
