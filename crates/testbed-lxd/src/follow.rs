//! What a proxy that follows a pod needs beyond its device: finding the pod (a Ready one, waited for), and
//! proving that the proxy works, by a request through its host port that gets an answer.
//!
//! An LXD proxy device accepts every connection on its host port whether or not anything listens behind it
//! (forkproxy accepts, then dials inside the container, and closes the accepted connection when that
//! fails): a connection that is accepted proves nothing. What counts is a byte back for a request sent
//! through it: `GET / HTTP/1.0` with a `Host` header, which an HTTP server answers (with an error, for a
//! path it does not serve) and most other servers answer with an error line of their own.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use testbed_provider::{PodLookup, PodMatch, ProviderError};

use crate::provider::HostPort;

/// One attempt at a request through a host port: how many bytes came back (at least one), or what happened
/// instead, in words ("connection refused", "accepted, then closed without a byte").
pub type Probe = Arc<dyn Fn(SocketAddr) -> Pin<Box<dyn Future<Output = Result<usize, String>> + Send>> + Send + Sync>;

/// How long one attempt waits to connect, and then for the first byte.
const ATTEMPT: Duration = Duration::from_secs(3);

/// The real probe: connect over TCP, send `GET / HTTP/1.0`, wait for at least one byte.
pub fn tcp_probe() -> Probe {
    Arc::new(|addr: SocketAddr| Box::pin(probe_once(addr)))
}

async fn probe_once(addr: SocketAddr) -> Result<usize, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = match tokio::time::timeout(ATTEMPT, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => return Err(format!("no connection within {} s", ATTEMPT.as_secs())),
        Ok(Err(e)) => return Err(format!("connecting failed: {e}")),
        Ok(Ok(s)) => s,
    };
    let request = format!("GET / HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: testbed\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Err(format!("accepted, then sending the request failed: {e}"));
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(ATTEMPT, stream.read(&mut buf)).await {
        Err(_) => Err(format!("accepted, then no byte back within {} s", ATTEMPT.as_secs())),
        Ok(Ok(0)) => Err("accepted, then closed without a byte back".into()),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(format!("accepted, then reading failed: {e}")),
    }
}

/// Where a client on the host reaches a proxy listening at `port`: its own address, or loopback for a
/// wildcard.
pub fn reach(port: HostPort) -> SocketAddr {
    let ip = match port.addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, port.addr.port())
}

/// How long apply waits for things, and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For a Ready pod to follow.
    pub pod: Duration,
    /// For an answer through the proxy once it is there.
    pub answer: Duration,
    /// Between two looks.
    pub every: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits { pod: Duration::from_secs(300), answer: Duration::from_secs(30), every: Duration::from_secs(1) }
    }
}

/// What waiting for an answer found.
pub struct Unanswered {
    pub tries: u32,
    pub last: String,
}

/// Sends requests through `addr` until one gets a byte back, at most `limit`.
pub async fn wait_for_answer(
    probe: &Probe,
    addr: SocketAddr,
    limit: Duration,
    every: Duration,
) -> Result<usize, Unanswered> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut tries = 0;
    loop {
        tries += 1;
        let last = match probe(addr).await {
            Ok(n) => return Ok(n),
            Err(why) => why,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(Unanswered { tries, last });
        }
        tokio::time::sleep(every.min(left)).await;
    }
}

/// What waiting for a Ready pod found last: the pods the selector matched, or why the API could not say.
pub enum NoPod {
    Seen(Vec<PodMatch>),
    Failed(ProviderError),
}

/// Asks for the pods until one is Ready with an address, at most `limit`: its name and IP.
pub async fn wait_for_pod(
    pods: &dyn PodLookup,
    member: &str,
    namespace: &str,
    selector: &str,
    limit: Duration,
    every: Duration,
    mut waiting: impl FnMut(&str),
) -> Result<(String, String), NoPod> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut said = String::new();
    loop {
        let last = match pods.pods(member, namespace, selector).await {
            Ok(found) => match testbed_provider::first_ready(&found) {
                Some(ready) => return Ok(ready),
                None => NoPod::Seen(found),
            },
            Err(e) => NoPod::Failed(e),
        };
        let now = match &last {
            NoPod::Seen(found) if found.is_empty() => "no pod matches yet".to_owned(),
            NoPod::Seen(found) => {
                format!("none Ready yet: {}", found.iter().map(PodMatch::describe).collect::<Vec<_>>().join(", "))
            }
            NoPod::Failed(e) => format!("the API did not say: {}", e.report()),
        };
        if now != said {
            waiting(&now);
            said = now;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        tokio::time::sleep(every.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_accepted_connection_that_closes_is_no_answer_and_a_byte_is_one() {
        // A listener that accepts and closes, as LXD's proxy does with nothing behind it.
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closing_at = closing.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = closing.accept().await {
                    drop(s);
                }
            }
        });
        let why = probe_once(closing_at).await.unwrap_err();
        assert!(why.contains("closed without a byte") || why.contains("reading failed"), "{why}");

        // A server that answers the request.
        let answering = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let answering_at = answering.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                if let Ok((mut s, _)) = answering.accept().await {
                    let mut buf = [0u8; 256];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET / HTTP/1.0\r\nHost: 127.0.0.1:"));
                    let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n").await;
                }
            }
        });
        assert!(probe_once(answering_at).await.unwrap() > 0);

        // Nothing listening: refused.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = free.local_addr().unwrap();
        drop(free);
        assert!(probe_once(nowhere).await.unwrap_err().contains("connecting failed"));

        let probe = tcp_probe();
        let tried = wait_for_answer(&probe, closing_at, Duration::from_millis(300), Duration::from_millis(100)).await;
        let Err(unanswered) = tried else { panic!("a closing listener answered") };
        assert!(unanswered.tries >= 2, "tried again until the limit: {}", unanswered.tries);
        assert!(wait_for_answer(&probe, answering_at, Duration::from_secs(1), Duration::from_millis(100))
            .await
            .is_ok());
    }

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let p = |s: &str| reach(HostPort::parse(s).unwrap()).to_string();
        assert_eq!(p("tcp:0.0.0.0:9091"), "127.0.0.1:9091");
        assert_eq!(p("tcp:[::]:9091"), "[::1]:9091");
        assert_eq!(p("tcp:127.0.0.2:9091"), "127.0.0.2:9091");
    }

    #[test]
    fn the_waits_are_the_ones_the_dry_run_shows() {
        let w = Waits::default();
        assert_eq!(w.pod.as_secs(), testbed_steps::POD_WAIT_SECS);
        assert_eq!(w.answer.as_secs(), testbed_steps::ANSWER_WAIT_SECS);
    }
}
