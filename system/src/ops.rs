//! The operations endpoint every component serves: `/healthz` (alive),
//! `/readyz` (dependencies reachable) and `/metrics` (Prometheus text).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers whether the component can do its work right now.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Which dependencies a component needs to be ready.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub redis: bool,
    pub postgres: bool,
    pub rabbitmq: bool,
}

/// A readiness check that pings each needed dependency (bounded to 2 s each).
pub fn readiness(cfg: &crate::config::Config, needs: Needs) -> ReadinessCheck {
    let redis = needs
        .redis
        .then(|| redis::Client::open(cfg.redis.url.expose_secret().as_str()).ok())
        .flatten();
    // Behind Sentinel, the primary named at check time is the one to ping.
    let sentinel = (needs.redis && !cfg.redis.sentinels.is_empty()).then(|| cfg.redis.clone());
    let pg = needs
        .postgres
        .then(|| {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(2))
                .connect_lazy(cfg.postgres.url.expose_secret())
                .ok()
        })
        .flatten();
    // With `postgres.urls`, ready when some node takes writes.
    let pg_nodes =
        (needs.postgres && !cfg.postgres.urls.is_empty()).then(|| cfg.postgres.urls.clone());
    let pg = if pg_nodes.is_some() { None } else { pg };
    let amqp = needs.rabbitmq.then(|| {
        let urls = cfg.rabbitmq.node_urls();
        urls.iter()
            .map(|u| u.expose_secret().clone())
            .collect::<Vec<_>>()
    });
    Arc::new(move || {
        let (redis, pg, amqp) = (redis.clone(), pg.clone(), amqp.clone());
        let (sentinel, pg_nodes) = (sentinel.clone(), pg_nodes.clone());
        Box::pin(async move {
            let limit = std::time::Duration::from_secs(2);
            if let Some(client) = redis {
                let ping = async {
                    let client = match &sentinel {
                        Some(r) => crate::redis_ha::primary_client(r).await?,
                        None => client,
                    };
                    let mut c = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut c).await
                };
                match tokio::time::timeout(limit, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("redis: {e}")),
                    Err(_) => return Err("redis: no answer within 2 s".into()),
                }
            }
            if let Some(pool) = pg {
                match tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(&pool)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("postgres: {e}")),
                    Err(_) => return Err("postgres: no answer within 2 s".into()),
                }
            }
            if let Some(urls) = pg_nodes {
                match tokio::time::timeout(limit, crate::pg_ha::primary_address(urls)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("postgres: {e}")),
                    Err(_) => return Err("postgres: no node took writes within 2 s".into()),
                }
            }
            if let Some(urls) = amqp {
                // Ready when any broker node accepts: a cluster that lost
                // one node still takes publishes (the publisher fails over).
                rabbitmq_reachable(&urls, limit).await?;
            }
            Ok(())
        })
    })
}

/// Routes shared by every component's HTTP surface.
pub fn routes(ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    crate::telemetry::render(),
                )
            }),
        )
        .with_state(ready)
}

/// Times every request to a matched route into
/// `rtmc_http_request_duration_seconds{route, method, status}`: the route
/// is the template (`/v1/messages`), never the path a client sent, so the
/// label values stay a small fixed set.
pub fn timed(router: Router) -> Router {
    router.route_layer(axum::middleware::from_fn(time_request))
}

async fn time_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics::histogram!(
        "rtmc_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => resp.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    resp
}

async fn readyz(State(ready): State<ReadinessCheck>) -> (StatusCode, String) {
    match ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// Serves the ops routes on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ready: ReadinessCheck,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, timed(routes(ready)))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Whether any of the broker nodes accepts a connection within `limit`
/// each; the error names the last node's failure.
async fn rabbitmq_reachable(urls: &[String], limit: std::time::Duration) -> Result<(), String> {
    let mut last = String::from("rabbitmq: no node configured");
    for url in urls {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
        match tokio::time::timeout(limit, conn).await {
            Ok(Ok(c)) => {
                let _ = c.close(200, "readiness".into()).await;
                return Ok(());
            }
            Ok(Err(e)) => last = format!("rabbitmq: {e}"),
            Err(_) => last = "rabbitmq: no answer within 2 s".into(),
        }
    }
    Err(last)
}
