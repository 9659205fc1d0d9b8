//! `GET .../pods/<name>/portforward?ports=P` upgraded to a WebSocket, as the kubelet serves it behind
//! kube-apiserver (pkg/kubelet/cri/streaming/portforward/websocket.go, subprotocol `v4.channel.k8s.io`), with
//! containerd's CRI connecting inside the pod (internal/cri/server/sandbox_portforward_linux.go).
//!
//! The protocol: every frame is binary, its first byte the channel. Each port has two channels, data (`2i`)
//! and error (`2i + 1`); the server's first frame on each is the port as a little-endian `u16`. containerd
//! dials `localhost:PORT` in the pod's network namespace (IPv4, then IPv6). When something listens there,
//! the bytes flow both ways until one side ends; when nothing does, the error channel carries the kubelet's
//! sentence around containerd's, and the connection closes.
//!
//! A fake pod's containers answer on the addresses they listen on ([`super::FakeContainer::listens`]): a
//! request gets [`ANSWER`] back. Only one port per request is modelled (testbed asks for one).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::FakePod;

/// The subprotocol the kubelet speaks for port-forward over a WebSocket.
pub(super) const PROTOCOL: &str = "v4.channel.k8s.io";

/// What an application of a fake pod sends back for any request.
pub const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What the kubelet does for a port-forward to `port` of `pod`: whether something listens on the pod's
/// loopback there (containerd dials `localhost`), and the error it reports when nothing does.
pub(super) fn reaches(pod: &FakePod, port: u16) -> Result<(), String> {
    let listens = pod
        .containers
        .iter()
        .flat_map(|c| &c.listens)
        .any(|at: &SocketAddr| at.port() == port && (at.ip().is_unspecified() || at.ip().is_loopback()));
    if listens {
        return Ok(());
    }
    // The CRI streaming server names the pod by its sandbox's ID, with no UID.
    let sandbox = sandbox_id(pod);
    let netns = format!("/var/run/netns/cni-{}", super::fake_uid("netns", &format!("{}/{}", pod.namespace, pod.name)));
    Err(format!(
        "error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network namespace \"{netns}\": failed to connect to localhost:{port} inside namespace \"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: connection refused "
    ))
}

/// A sandbox ID as containerd makes them: 64 hex digits, here from the pod's namespace and name.
fn sandbox_id(pod: &FakePod) -> String {
    let uid = super::fake_uid("sandbox", &format!("{}/{}", pod.namespace, pod.name)).replace('-', "");
    let again = super::fake_uid("sandbox-2", &format!("{}/{}", pod.namespace, pod.name)).replace('-', "");
    format!("{uid}{again}")
}

/// The port of `ports=P` in a query (the first one when several are asked for).
pub(super) fn port_of(query: &str) -> Option<u16> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "ports")
        .and_then(|(_, v)| v.split(',').next()?.parse().ok())
        .filter(|p: &u16| *p > 0)
}

/// Serves one upgraded port-forward connection: the port on both channels, then the application's answer to
/// the first bytes the client sends, or the kubelet's error; then the connection closes.
pub(super) async fn serve(upgrade: OnUpgrade, port: u16, reached: Result<(), String>) {
    let Ok(upgraded) = upgrade.await else { return };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    for channel in [0u8, 1] {
        if sink.send(Message::binary(vec![channel, lo, hi])).await.is_err() {
            return;
        }
    }
    match reached {
        Ok(()) => {
            // The application answers once the request's first bytes reach it on the data channel.
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Binary(bytes) if bytes.len() > 1 && bytes[0] == 0 => {
                        let mut frame = vec![0u8];
                        frame.extend_from_slice(ANSWER);
                        let _ = sink.send(Message::binary(frame)).await;
                        break;
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        }
        Err(error) => {
            let mut frame = vec![1u8];
            frame.extend_from_slice(error.as_bytes());
            let _ = sink.send(Message::binary(frame)).await;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}
