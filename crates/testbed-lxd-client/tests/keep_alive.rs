//! The client keeps its connections to the daemon for the next request, and a kept connection the daemon
//! has closed never fails a request. The daemon here is a minimal HTTP/1.1 server on a unix socket that
//! answers every request with an empty sync envelope and counts the connections it accepts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use testbed_lxd_client::{Client, Flavor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

const ANSWER: &str = r#"{"type":"sync","status":"Success","status_code":200,"metadata":{}}"#;

/// Serves at `path`: each connection answers requests until the client closes it, or (with
/// `close_after_one`) closes right after its first answer, as a daemon that restarts between requests.
fn serve(path: &std::path::Path, close_after_one: bool) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(path).expect("bind");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    // Every request here is a bodiless GET, written at once.
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
                        ANSWER.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() || close_after_one {
                        return;
                    }
                }
            });
        }
    });
    accepted
}

/// A daemon (see [`serve`]) in a fresh directory and a client of it; the directory lives as long as the
/// returned guard.
fn daemon_and_client(close_after_one: bool) -> (tempfile::TempDir, Arc<AtomicUsize>, Client) {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("unix.socket");
    let accepted = serve(&socket, close_after_one);
    (dir, accepted, Client::at(&socket, Flavor::Lxd))
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let (_dir, accepted, client) = daemon_and_client(false);
    for _ in 0..5 {
        let _: serde_json::Value = client.get("/1.0/instances").await.expect("answered");
    }
    // A clone shares what its original keeps.
    let _: serde_json::Value = client.clone().get("/1.0/instances").await.expect("answered");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "six requests, one connection");
}

#[tokio::test]
async fn a_kept_connection_the_daemon_closed_is_replaced_without_an_error() {
    let (_dir, accepted, client) = daemon_and_client(true);
    for i in 0..4 {
        let answer: Result<serde_json::Value, _> = client.get("/1.0/instances").await;
        assert!(answer.is_ok(), "request {i}: {answer:?}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "each request needed a connection of its own");
}

#[test]
fn a_connection_is_reused_only_on_the_runtime_that_drives_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("unix.socket");
    // The daemon on a runtime of its own, driven throughout.
    let daemon = tokio::runtime::Runtime::new().expect("runtime");
    let accepted = daemon.block_on(async { serve(&socket, false) });
    let client = Client::at(&socket, Flavor::Lxd);
    let first = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let second = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let get = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let answer: Result<serde_json::Value, _> =
                tokio::time::timeout(std::time::Duration::from_secs(10), client.get("/1.0/instances"))
                    .await
                    .expect("answered in time, not stuck on a connection another runtime drives");
            answer.expect("answered");
        })
    };
    get(&first);
    // `first` lives on but is not driven now: its connection must not carry `second`'s request.
    get(&second);
    get(&second);
    get(&first);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one connection per runtime");
}
