//! The TCP chat server: accepts connections, runs one session per
//! connection, and follows the message stream to broadcast to all of them.
//! `run` takes an already bound listener so tests and tools bind port 0.
//!
//! Inside, each module uses only those listed before it: `limits` and
//! `direct` (leaves) ← `outbound` and `fanout` ← `rooms` ←
//! `presence_watch` ← `node` ← `session` ← `cmd` ← `connection` ← this
//! file.

#[cfg(feature = "test-broadcast-delay")]
pub mod broadcast_delay;
mod cmd;
mod connection;
pub mod direct;
pub mod fanout;
#[cfg(feature = "test-fanout-cpu")]
pub mod fanout_cpu;
pub mod limits;
mod node;
pub mod outbound;
pub mod presence_watch;
pub mod rooms;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::StartError;
use crate::presence::Presence;
use crate::protocol::{ErrorCode, ServerFrame};
use node::NodeContext;

/// How long shutdown waits for sessions to end.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (EMFILE and friends) instead of spinning.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Expired sessions one sweep ends at most.
const SWEEP_BATCH_SESSIONS: usize = 1000;

/// Serves clients on `listener` until `shutdown` is cancelled, then tells
/// every session, ends them (sessions closed, users offline) and returns.
pub async fn run(
    cfg: Arc<Config>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    crate::telemetry::metrics();
    let tls = crate::tls::acceptor(&cfg.server.tls_cert_path, &cfg.server.tls_key_path)?;
    let (cfg, _relay) = crate::redis_ha::follow_master(cfg).await?;
    let (cfg, _pg_relay) = crate::pg_ha::follow_primary(cfg)
        .await
        .map_err(crate::db::DbError::from)?;
    let ctx = Arc::new(NodeContext::connect(cfg.clone()).await?);
    let tasks = TaskTracker::new();
    let background_stop = CancellationToken::new();
    spawn_background(&tasks, &ctx, &background_stop)?;
    tracing::info!(addr = %listener.local_addr()?, node = %cfg.node_id, "server listening");
    accept_until(&listener, &ctx, tls, &tasks, &shutdown).await;
    drop(listener);
    tracing::info!("server draining sessions");
    background_stop.cancel();
    tasks.close();
    if tokio::time::timeout(DRAIN_LIMIT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after 10 s of shutdown");
    }
    Ok(())
}

/// Starts the node's own tasks: the stream follower, the shard follower
/// and the session sweep.
fn spawn_background(
    tasks: &TaskTracker,
    ctx: &NodeContext,
    stop: &CancellationToken,
) -> Result<(), StartError> {
    let cfg = &ctx.cfg;
    tasks.spawn(sweep_sessions(
        ctx.presence.clone(),
        Duration::from_millis(cfg.server.heartbeat_interval_ms.max(100)),
        stop.clone(),
    ));
    if cfg.server.direct_delivery {
        ctx.fanout
            .start_direct(cfg.server.direct_pumps, tasks, stop);
    }
    let url = cfg.redis.url.expose_secret().clone();
    tasks.spawn(rooms::follow_shards(
        url.clone(),
        ctx.keys.clone(),
        ctx.shards(),
        ctx.rooms.clone(),
        stop.clone(),
    ));
    tasks.spawn(presence_watch::follow_presence(
        url.clone(),
        ctx.keys.clone(),
        ctx.rooms.clone(),
        stop.clone(),
    ));
    // Test-only (compiled out of the release build): busy work in the
    // fan-out, for the gate's injected CPU cost per delivery.
    #[cfg(feature = "test-fanout-cpu")]
    if let Some(pct) = fanout_cpu::pct_from_env()? {
        let burner = fanout_cpu::CpuBurner::new(ctx.fanout.clone(), pct);
        tasks.spawn(fanout::follow(url, ctx.keys.clone(), burner, stop.clone()));
        return Ok(());
    }
    // Test-only (compiled out too): a delay line between the follower and
    // the ring, for the gate's injected slowdown.
    #[cfg(feature = "test-broadcast-delay")]
    if let Some(delay) = broadcast_delay::delay_from_env()? {
        let line = broadcast_delay::DelayLine::start(ctx.fanout.clone(), delay)?;
        tasks.spawn(fanout::follow(url, ctx.keys.clone(), line, stop.clone()));
        return Ok(());
    }
    tasks.spawn(fanout::follow(
        url,
        ctx.keys.clone(),
        ctx.fanout.clone(),
        stop.clone(),
    ));
    Ok(())
}

/// Accepts connections until `shutdown`, each in its own task, refusing
/// those over `server.max_connections`.
async fn accept_until(
    listener: &TcpListener,
    ctx: &Arc<NodeContext>,
    tls: Option<TlsAcceptor>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(ctx.cfg.server.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        metrics::counter!("rtmc_connections_total").increment(1);
        tune_socket(&sock, ctx.cfg.server.socket_send_buffer_bytes);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("rtmc_connections_refused_total").increment(1);
            // On a TLS port a plain-text frame would be garbage: just close.
            if tls.is_none() {
                tasks.spawn(refuse(sock));
            }
            continue;
        };
        let stop = shutdown.child_token();
        tasks.spawn(serve(ctx.clone(), sock, peer, tls.clone(), stop, permit));
    }
}

fn tune_socket(sock: &TcpStream, send_buffer_bytes: usize) {
    let _ = sock.set_nodelay(true);
    if send_buffer_bytes > 0 {
        let _ = socket2::SockRef::from(sock).set_send_buffer_size(send_buffer_bytes);
    }
}

/// Runs one accepted connection (after a TLS handshake on a TLS port),
/// holding its connection slot until it ends.
async fn serve(
    ctx: Arc<NodeContext>,
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let active = metrics::gauge!("rtmc_connections_active");
    active.increment(1.0);
    match tls {
        None => {
            let (rd, wr) = sock.into_split();
            let lane = ctx.fanout.lane();
            connection::handle(ctx, rd, wr, peer, stop, lane).await;
        }
        Some(acceptor) => {
            let limit = Duration::from_millis(ctx.cfg.server.login_timeout_ms);
            match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                Ok(Ok(stream)) => {
                    let (rd, wr) = tokio::io::split(stream);
                    connection::handle(ctx, rd, wr, peer, stop, None).await;
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
        match presence.sweep(SWEEP_BATCH_SESSIONS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "swept expired sessions"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
    }
}

/// Tells a connection over the limit why, then closes it.
async fn refuse(mut sock: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let f = outbound::frame(&ServerFrame::error(
        ErrorCode::TooManyConnections,
        "server is at its connection limit",
    ));
    let _ = tokio::time::timeout(Duration::from_millis(200), sock.write_all(&f)).await;
}
