//! The TCP chat server: accepts connections, runs one session per
//! connection, and follows the message stream to broadcast to all of them.
//! `run` takes an already bound listener so tests and tools bind port 0.

pub mod fanout;
pub mod limits;
pub mod outbound;
mod session;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Publisher;
use crate::config::Config;
use crate::presence::Presence;
use crate::protocol::{ErrorCode, ServerFrame};
use crate::stream::{self, RedisKeys};
use fanout::Fanout;

/// Failure to start a component.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("postgres: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What every session of this node shares.
pub(crate) struct NodeContext {
    pub cfg: Arc<Config>,
    pub pg: PgPool,
    pub redis: ConnectionManager,
    pub keys: RedisKeys,
    pub publisher: Arc<Publisher>,
    pub presence: Presence,
    pub fanout: Fanout,
    /// Logins doing database work at once (the pool size): a login storm
    /// queues here, within each connection's login deadline, instead of
    /// timing out on the pool.
    pub login_gate: Semaphore,
}

/// Largest replay served to one `resume`.
pub(crate) const MAX_REPLAY_MESSAGES: u64 = 200_000;

/// Serves clients on `listener` until `shutdown` is cancelled, then tells
/// every session, ends them (sessions closed, users offline) and returns.
pub async fn run(
    cfg: Arc<Config>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    crate::telemetry::metrics();
    let tls = crate::tls::acceptor(&cfg.server.tls_cert_path, &cfg.server.tls_key_path)?;
    let pg = crate::db::connect(&cfg.postgres).await?;
    let mut redis = stream::managed_connection(&cfg.redis.url).await?;
    let keys = RedisKeys::new(&cfg.redis.key_prefix);
    let start = stream::head(&mut redis, &keys).await?;
    let fanout = Fanout::new(cfg.server.outbound_queue_frames, start);
    let presence = Presence::from_config(&cfg, redis.clone(), pg.clone());
    let ctx = Arc::new(NodeContext {
        presence: presence.clone(),
        publisher: Arc::new(Publisher::new(cfg.rabbitmq.clone())),
        cfg: cfg.clone(),
        pg,
        redis,
        keys: keys.clone(),
        fanout: fanout.clone(),
        login_gate: Semaphore::new(cfg.postgres.max_connections.max(1) as usize),
    });
    let tasks = TaskTracker::new();
    let follower_stop = CancellationToken::new();
    tasks.spawn(fanout::follow(
        cfg.redis.url.clone(),
        keys,
        fanout,
        follower_stop.clone(),
    ));
    tasks.spawn(sweep_sessions(
        presence.clone(),
        Duration::from_millis(cfg.server.heartbeat_interval_ms.max(100)),
        follower_stop.clone(),
    ));
    tracing::info!(addr = %listener.local_addr()?, node = %cfg.node_id, "server listening");
    let limit = Arc::new(Semaphore::new(cfg.server.max_connections));
    let active = metrics::gauge!("rtmc_connections_active");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        metrics::counter!("rtmc_connections_total").increment(1);
        let _ = sock.set_nodelay(true);
        if cfg.server.socket_send_buffer_bytes > 0 {
            let _ = socket2::SockRef::from(&sock)
                .set_send_buffer_size(cfg.server.socket_send_buffer_bytes);
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("rtmc_connections_refused_total").increment(1);
            // On a TLS port a plain-text frame would be garbage: just close.
            if tls.is_none() {
                tasks.spawn(refuse(sock));
            }
            continue;
        };
        let ctx = ctx.clone();
        let stop = shutdown.child_token();
        let active = active.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            active.increment(1.0);
            match tls {
                None => {
                    let (rd, wr) = sock.into_split();
                    session::handle(ctx, rd, wr, peer, stop).await;
                }
                Some(acceptor) => {
                    let limit = Duration::from_millis(ctx.cfg.server.login_timeout_ms);
                    match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let (rd, wr) = tokio::io::split(stream);
                            session::handle(ctx, rd, wr, peer, stop).await;
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("rtmc_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("rtmc_tls_handshake_failures_total").increment(1);
                        }
                    }
                }
            }
            active.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("server draining sessions");
    follower_stop.cancel();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after 10 s of shutdown");
    }
    Ok(())
}

/// Ends sessions whose node died without ending them (every interval).
async fn sweep_sessions(presence: Presence, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match presence.sweep(1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "swept expired sessions"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
    }
}

async fn refuse(mut sock: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let f = outbound::frame(&ServerFrame::error(
        ErrorCode::TooManyConnections,
        "server is at its connection limit",
    ));
    let _ = tokio::time::timeout(Duration::from_millis(200), sock.write_all(&f)).await;
}
