//! A loopback relay to whichever node is the primary now, for a store that
//! fails over (Redis behind Sentinel, PostgreSQL with a standby). A
//! component's client connects to the relay as if it were the store; the
//! relay carries each connection to the primary a watcher names, and closes
//! them all when the watcher names another. The clients rtmc already uses
//! (redis's auto-reconnecting `ConnectionManager`, sqlx's pool) then
//! reconnect, and land on the new primary, without knowing about failover.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How a store's primary is found, for [`start`]'s watcher.
pub trait PrimaryFinder: Send + 'static {
    /// The store as logs name it (`redis`, `postgres`).
    const STORE: &'static str;
    /// The `host:port` of the primary now, or why none was found.
    fn primary(&mut self) -> impl Future<Output = Result<String, String>> + Send;
}

/// A running relay and its watcher: dropping it stops both and closes
/// every connection the relay carries.
pub struct Relay {
    /// Cancels the accept loop, the connections and the watcher.
    _stop: DropGuard,
    /// Where the relay listens (`127.0.0.1:port`).
    pub addr: String,
}

/// Starts a relay to `first` and a watcher that asks `finder` every
/// `interval` and moves the relay when it names another primary (counted
/// in `switches`; connects that fail are counted in `failures`).
pub async fn start<F: PrimaryFinder>(
    finder: F,
    first: String,
    interval: Duration,
    switches: metrics::Counter,
    failures: metrics::Counter,
) -> std::io::Result<Relay> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let stop = CancellationToken::new();
    let (named, primary) = watch::channel(first);
    tokio::spawn(watch_primary(
        finder,
        named,
        interval,
        switches,
        stop.clone(),
    ));
    tokio::spawn(run(listener, primary, failures, stop.clone()));
    Ok(Relay {
        _stop: stop.drop_guard(),
        addr,
    })
}

/// Asks `finder` every `interval` until `stop`, and tells the relay when
/// it names another primary.
async fn watch_primary<F: PrimaryFinder>(
    mut finder: F,
    named: watch::Sender<String>,
    interval: Duration,
    switches: metrics::Counter,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = tokio::select! {
            _ = stop.cancelled() => break,
            p = finder.primary() => p,
        };
        match now {
            Ok(primary) => {
                let switched = named.send_if_modified(|current| {
                    let changed = *current != primary;
                    if changed {
                        *current = primary.clone();
                    }
                    changed
                });
                if switched {
                    switches.increment(1);
                    tracing::warn!(store = F::STORE, %primary, "another node is the primary; reconnecting to it");
                }
            }
            Err(e) => tracing::warn!(store = F::STORE, error = %e, "no primary found"),
        }
    }
}

/// `url` with its `host:port` replaced by `addr`; credentials, database
/// and query kept (the relay passes bytes, so the primary still checks them).
pub fn with_address(url: &str, addr: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let credentials = authority.rsplit_once('@').map(|(c, _)| c);
    match credentials {
        Some(c) => format!("{scheme}://{c}@{addr}{path}"),
        None => format!("{scheme}://{addr}{path}"),
    }
}

/// Bound on connecting to the primary.
const CONNECT_LIMIT: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` until `stop`, each carried to the
/// primary `primary` names (`host:port`) in a task of its own; a connect
/// to the primary that fails is counted in `failures`.
async fn run(
    listener: TcpListener,
    primary: watch::Receiver<String>,
    failures: metrics::Counter,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((client, _)) => {
                let carried = carry(client, primary.clone(), failures.clone(), stop.clone());
                tokio::spawn(carried);
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Carries one connection to the primary named now, until either side
/// closes, another primary is named, or `stop`. A primary that cannot be
/// reached closes the connection at once: the caller's client sees a lost
/// connection and reconnects, by then perhaps to a new primary.
async fn carry(
    mut client: TcpStream,
    mut primary: watch::Receiver<String>,
    failures: metrics::Counter,
    stop: CancellationToken,
) {
    let target = primary.borrow_and_update().clone();
    let connect = tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(&target)).await;
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            failures.increment(1);
            tracing::debug!(%target, error = %e, "relay: the primary refused a connection");
            return;
        }
        Err(_) => {
            failures.increment(1);
            tracing::debug!(%target, "relay: no connection to the primary within {CONNECT_LIMIT:?}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = primary.changed() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_relayed_url_keeps_credentials_and_database() {
        assert_eq!(
            with_address("redis://:pw@10.0.0.2:6379/3", "127.0.0.1:4000"),
            "redis://:pw@127.0.0.1:4000/3"
        );
        assert_eq!(
            with_address("redis://10.0.0.2", "127.0.0.1:4000"),
            "redis://127.0.0.1:4000"
        );
        assert_eq!(
            with_address("redis://u:p@host:1?protocol=resp3", "127.0.0.1:9"),
            "redis://u:p@127.0.0.1:9?protocol=resp3"
        );
    }

    /// An upstream that answers each connection with `tag` and holds it open.
    async fn tagged_upstream(tag: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                let _ = sock.write_all(tag).await;
                held.push(sock);
            }
        });
        addr
    }

    #[tokio::test]
    async fn connections_go_to_the_named_primary_and_are_closed_when_it_changes() {
        let (a, b) = (tagged_upstream(b"A").await, tagged_upstream(b"B").await);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = listener.local_addr().unwrap();
        let (named, primary) = watch::channel(a);
        let stop = CancellationToken::new();
        let failures = metrics::counter!("rtmc_test_relay_failures_total");
        tokio::spawn(run(listener, primary, failures, stop.clone()));

        let mut first = TcpStream::connect(relay_addr).await.unwrap();
        let mut tag = [0u8; 1];
        first.read_exact(&mut tag).await.unwrap();
        assert_eq!(&tag, b"A");
        named.send(b).unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut rest));
        assert!(
            closed.await.is_ok(),
            "the old primary's connection is closed"
        );
        let mut second = TcpStream::connect(relay_addr).await.unwrap();
        second.read_exact(&mut tag).await.unwrap();
        assert_eq!(&tag, b"B", "a new connection reaches the new primary");
        stop.cancel();
    }
}
