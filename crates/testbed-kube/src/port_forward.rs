//! Asking a pod directly, through the API server's port-forward (`kubectl port-forward pod/NAME PORT`): a
//! request sent to the pod's own loopback by the kubelet's runtime, past everything between the host and the
//! pod's address. When a proxy to a pod gets no answer, this tells the pod from the way to it.
//!
//! The request is the one a proxy is tested with (`GET / HTTP/1.0`); the answer is at least one byte back.
//! The kubelet speaks port-forward over a WebSocket (subprotocol `v4.channel.k8s.io`): a data channel and an
//! error channel, where containerd's words arrive when nothing listens on the port inside the pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::KubeClient;
use crate::error::KubeObserveError;

/// Why a request through a port-forward to a pod got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardFailure {
    /// The API server did not open the port-forward (the pod is gone, the credentials may not, ...).
    #[error(transparent)]
    Api(#[from] KubeObserveError),
    /// The kubelet could not connect to the port inside the pod: its words (containerd's
    /// `failed to connect to localhost:PORT inside namespace ...: connection refused`).
    #[error("{0}")]
    Refused(String),
    /// Something inside the pod accepted the connection and closed it without a byte back.
    #[error("accepted inside the pod, then closed without a byte back")]
    Closed,
    /// Nothing came back in time.
    #[error("no byte back within {} s", .0.as_secs())]
    Silent(Duration),
    /// The forwarded stream broke.
    #[error("the port-forward stream failed: {0}")]
    Stream(String),
}

/// Sends `GET / HTTP/1.0` to `port` of pod `name` in `namespace` through the API server's port-forward and
/// waits up to `wait` for the first bytes back: how many came (at least one).
pub async fn pod_answers(
    client: &KubeClient,
    namespace: &str,
    name: &str,
    port: u16,
    wait: Duration,
) -> Result<usize, PortForwardFailure> {
    let api: Api<Pod> = Api::namespaced(client.kube().clone(), namespace);
    let what = format!("open a port-forward to port {port} of {namespace}/{name}");
    let mut forwarder = match tokio::time::timeout(wait, api.portforward(name, &[port])).await {
        Err(_) => return Err(PortForwardFailure::Silent(wait)),
        Ok(Err(e)) => return Err(client.error(e, &what).into()),
        Ok(Ok(forwarder)) => forwarder,
    };
    let (Some(mut stream), Some(error)) = (forwarder.take_stream(port), forwarder.take_error(port)) else {
        forwarder.abort();
        return Err(PortForwardFailure::Stream(format!("no stream for port {port}")));
    };
    let request = format!("GET / HTTP/1.0\r\nHost: localhost:{port}\r\nUser-Agent: testbed\r\n\r\n");
    let mut buf = [0u8; 512];
    let read = async {
        stream.write_all(request.as_bytes()).await?;
        stream.read(&mut buf).await
    };
    let outcome = match tokio::time::timeout(wait, read).await {
        Err(_) => Err(PortForwardFailure::Silent(wait)),
        Ok(Ok(0)) => {
            // Closed without a byte: the error channel says why, when the kubelet could not connect. Once the
            // stream is dropped the forwarding ends, and with it an error that never came.
            drop(stream);
            match tokio::time::timeout(wait, error).await {
                Ok(Some(words)) if !words.is_empty() => Err(PortForwardFailure::Refused(words)),
                _ => Err(PortForwardFailure::Closed),
            }
        }
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(PortForwardFailure::Stream(e.to_string())),
    };
    forwarder.abort();
    outcome
}
