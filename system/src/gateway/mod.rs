//! The HTTP gateway: `POST /v1/messages` (a user, with a session token) and
//! `POST /v1/service/messages` (a service, with an API key) publish with a
//! broker confirm and answer 202 only after it; `POST /v1/login` issues session tokens. Every
//! failure is a JSON `{code, message}` body with a precise status: 400 bad
//! JSON or fields, 401 no valid credentials, 413 oversized, 503 broker down,
//! and 503 `overloaded` with `Retry-After` at once when the gateway already
//! works on `gateway.max_inflight_requests` posts ([`admission`]) or the
//! publisher already awaits `rabbitmq.max_inflight_publishes` confirms.
//! The room routes (`/v1/rooms…`, `/v1/service/rooms/{room}/messages`)
//! live in `rooms.rs`.

mod admission;
mod rooms;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::LoginRefused;
use crate::broker::{BrokerError, PublishedMessage, Publisher};
use crate::config::Config;
use crate::error::StartError;
use crate::presence::{Presence, SessionKind};
use crate::protocol::{now_us, SessionToken};
use crate::stream;

/// The OpenAPI 3 description of this gateway, served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub use admission::OVERLOADED_RETRY_AFTER_SECS;

#[derive(Clone)]
struct Gateway {
    cfg: Arc<Config>,
    publisher: Arc<Publisher>,
    presence: Presence,
    pg: PgPool,
    /// Room heads, history and membership events.
    redis: redis::aio::ConnectionManager,
    keys: stream::RedisKeys,
}

/// Request body of `POST /v1/messages`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub body: String,
    #[serde(default)]
    pub message_id: Option<String>,
    /// Required with an API key: the service's name (a user-id shape), published
    /// as `from` = `service:<sender>`. With a session token it must be absent
    /// or equal to the user.
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub sent_at_us: Option<u64>,
}

impl PostMessage {
    /// The message to publish, from `from`, to `room` (`None`: the lobby),
    /// stamped with the gateway's receive time (also the send time when the
    /// request gives none) and a fresh id when it names none.
    fn into_message(self, from: String, room: Option<String>) -> PublishedMessage {
        let received_at_us = now_us();
        PublishedMessage {
            message_id: self
                .message_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            from,
            body: self.body,
            sent_at_us: self.sent_at_us.unwrap_or(received_at_us),
            received_at_us,
            room,
        }
    }
}

/// Response of `POST /v1/messages`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Accepted {
    pub message_id: String,
}

/// Request body of `POST /v1/login`. `Debug` leaves the password out.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user_id: String,
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user_id", &self.user_id)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Response of `POST /v1/login`.
#[derive(Debug, Deserialize, Serialize)]
pub struct LoginResponse {
    pub user_id: String,
    pub session_token: SessionToken,
}

/// An error response.
#[derive(Debug, Deserialize, Serialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    metrics::counter!("rtmc_gateway_rejected_total", "code" => code.to_owned()).increment(1);
    (
        status,
        Json(ApiError {
            code: code.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

fn json_rejection(e: JsonRejection) -> Response {
    match e {
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            b.body_text(),
        ),
        JsonRejection::JsonDataError(e) => {
            fail(StatusCode::BAD_REQUEST, "invalid_field", e.body_text())
        }
        other => fail(StatusCode::BAD_REQUEST, "bad_json", other.body_text()),
    }
}

/// Refuses a request whose `Content-Length` already exceeds
/// `gateway.max_request_bytes`, before its body is read: hyper sends
/// `100 Continue` only when the body is read, so a client that waits for it
/// gets the 413 instead and never sends the body. The connection is closed
/// after the answer (the unread body would otherwise follow on it).
async fn refuse_declared_oversize(
    State(max_request_bytes): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max_request_bytes as u64 => {
            let mut refused = fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body ({len} bytes) exceeds {max_request_bytes} bytes"),
            );
            refused.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            refused
        }
        _ => next.run(req).await,
    }
}

/// Builds the gateway's routes (also the ops routes) against live dependencies.
pub async fn router(cfg: Arc<Config>) -> Result<Router, StartError> {
    crate::telemetry::metrics();
    let pg_url = cfg.postgres.url.expose_secret();
    let pg = crate::db::connect(&cfg.postgres)
        .await
        .map_err(|e| StartError::connect("PostgreSQL", pg_url, e))?;
    let redis_url = cfg.redis.url.expose_secret();
    let redis = stream::managed_connection(redis_url)
        .await
        .map_err(|e| StartError::connect("Redis", redis_url, e))?;
    let presence = Presence::from_config(&cfg, redis.clone(), pg.clone());
    let publisher = Arc::new(Publisher::for_config(&cfg));
    let state = Gateway {
        cfg: cfg.clone(),
        publisher: publisher.clone(),
        presence,
        pg,
        redis,
        keys: stream::RedisKeys::new(&cfg.redis.key_prefix),
    };
    let ready: crate::ops::ReadinessCheck = Arc::new(move || {
        let p = publisher.clone();
        Box::pin(async move {
            p.ensure_connected()
                .await
                .map_err(|_| "broker unreachable".to_string())
        })
    });
    let publishing = Router::new()
        .route("/v1/messages", post(post_user_message))
        .route("/v1/service/messages", post(post_service_message));
    let publishing = rooms::with_publishing_routes(publishing).route_layer(
        axum::middleware::from_fn_with_state(
            admission::RequestAdmission::new(cfg.gateway.max_inflight_requests),
            admission::admit,
        ),
    );
    let api = rooms::with_routes(publishing)
        .route("/v1/login", post(login))
        .route(
            "/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI_JSON) }),
        )
        .with_state(state)
        .layer(DefaultBodyLimit::max(cfg.gateway.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            cfg.gateway.max_request_bytes,
            refuse_declared_oversize,
        ));
    Ok(crate::ops::timed(api.merge(crate::ops::routes(ready)))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        }))
}

/// Serves the gateway on `listener` until `shutdown`, finishing requests in
/// flight. With `gateway.tls_cert_path`/`tls_key_path` set it serves HTTPS.
pub async fn run(
    cfg: Arc<Config>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let tls = crate::tls::acceptor(&cfg.gateway.tls_cert_path, &cfg.gateway.tls_key_path)?;
    let (cfg, _relay) = crate::redis_ha::follow_master(cfg).await?;
    let (cfg, _pg_relay) = crate::pg_ha::follow_primary(cfg)
        .await
        .map_err(crate::db::DbError::from)?;
    let app = router(cfg).await?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "gateway listening");
    match tls {
        None => {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await?
        }
        Some(acceptor) => serve_tls(listener, app, acceptor, shutdown).await,
    }
    Ok(())
}

/// HTTPS: TLS handshake per connection, then hyper (HTTP/1.1 or 2) on the router.
async fn serve_tls(
    listener: TcpListener,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) {
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (sock, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let (acceptor, stop) = (acceptor.clone(), shutdown.clone());
        tasks.spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(sock))
                    .await;
            let Ok(Ok(stream)) = handshake else {
                metrics::counter!("rtmc_tls_handshake_failures_total").increment(1);
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait()).await;
}

/// Who is publishing: a session's user, or a service holding an API key.
enum Caller {
    User(String),
    Service,
}

async fn authenticate(g: &Gateway, headers: &HeaderMap) -> Result<Caller, Response> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let keys = g
            .cfg
            .gateway
            .api_keys
            .iter()
            .map(|k| k.expose_secret().as_str());
        if crate::auth::api_key_matches(key, keys) {
            return Ok(Caller::Service);
        }
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API key",
        ));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <session token>` or `X-Api-Key`",
        ));
    };
    match g.presence.session_user(token).await {
        Ok(Some(user)) => {
            // Each use extends an HTTP session; a TCP session's lifetime
            // stays with its connection.
            if Presence::token_kind(token) == SessionKind::Http {
                let _ = g
                    .presence
                    .refresh_session(token, &user, SessionKind::Http)
                    .await;
            }
            Ok(Caller::User(user))
        }
        Ok(None) => Err(fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "session expired or unknown",
        )),
        Err(e) => Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "session_store_unavailable",
            e.to_string(),
        )),
    }
}

/// Who the message is from: a service names its `sender` and publishes as
/// `service:<sender>` (never as a user); a user's session is the sender,
/// and a `sender` it gives must match. `Err` is why the request is invalid.
fn sender(caller: Caller, sender: Option<String>) -> Result<String, &'static str> {
    match (caller, sender) {
        (Caller::Service, Some(s)) if crate::auth::valid_user_id(&s) => {
            Ok(crate::auth::service_sender(&s))
        }
        (Caller::Service, _) => Err(
            "`sender` is required with an API key: the service's name, 1-128 bytes without `:` or control characters",
        ),
        (Caller::User(u), Some(s)) if s != u => Err("`sender` must match the session's user"),
        (Caller::User(u), _) => Ok(u),
    }
}

/// `POST /v1/messages`: a user publishes with a session token.
async fn post_user_message(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Response {
    match route_credential(&headers, false) {
        Ok(()) => post_message(g, headers, body).await,
        Err(r) => r,
    }
}

/// `POST /v1/service/messages`: a service publishes with an API key, as
/// `service:<sender>`.
async fn post_service_message(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Response {
    match route_credential(&headers, true) {
        Ok(()) => post_message(g, headers, body).await,
        Err(r) => r,
    }
}

#[allow(clippy::result_large_err)] // a Response is the natural error of a handler step
/// Each publishing route takes one kind of credential: an API key on the
/// service route, a session token on the user route.
/// `Err` is why the credential does not fit the route.
fn route_credential(headers: &HeaderMap, service_route: bool) -> Result<(), Response> {
    let has_key = headers.contains_key("x-api-key");
    let why = match (service_route, has_key) {
        (true, true) | (false, false) => return Ok(()),
        (true, false) => "send `X-Api-Key`; users publish with a session token at POST /v1/messages",
        (false, true) => "this route takes a session token; services with an API key publish at POST /v1/service/messages",
    };
    Err(fail(StatusCode::UNAUTHORIZED, "unauthorized", why))
}

async fn post_message(
    g: Gateway,
    headers: HeaderMap,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Response {
    let caller = match authenticate(&g, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Json(mut req) = match body {
        Ok(b) => b,
        Err(e) => return json_rejection(e),
    };
    let from = match sender(caller, req.sender.take()) {
        Ok(from) => from,
        Err(why) => return fail(StatusCode::BAD_REQUEST, "invalid_field", why),
    };
    let msg = req.into_message(from, None);
    match publish_checked(&g, msg).await {
        Ok(message_id) => (StatusCode::ACCEPTED, Json(Accepted { message_id })).into_response(),
        Err(r) => r,
    }
}

/// Checks `msg` against the limits (413 oversized body, 400 otherwise) and
/// publishes it with a confirm: its message id, or the refusal (503
/// `overloaded` with `Retry-After`, 503 `broker_unavailable`).
async fn publish_checked(g: &Gateway, msg: PublishedMessage) -> Result<String, Response> {
    let limits = &g.cfg.server;
    if msg.body.len() > limits.max_body_bytes {
        return Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body exceeds {} bytes", limits.max_body_bytes),
        ));
    }
    if let Err(reason) = msg.check_limits(limits.max_body_bytes, limits.max_frame_bytes) {
        return Err(fail(StatusCode::BAD_REQUEST, "invalid_field", reason));
    }
    match g.publisher.publish(&msg).await {
        Ok(()) => {
            metrics::counter!("rtmc_gateway_accepted_total").increment(1);
            Ok(msg.message_id)
        }
        Err(e @ BrokerError::Overloaded { .. }) => Err(admission::overloaded(e.to_string())),
        Err(e) => Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            e.to_string(),
        )),
    }
}

async fn login(
    State(g): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return json_rejection(e),
    };
    if !crate::auth::valid_user_id(&req.user_id) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            crate::auth::USER_ID_RULE,
        );
    }
    let checked = crate::auth::check_password(
        &g.presence,
        &g.pg,
        &g.cfg.server,
        &req.user_id,
        &req.password,
        peer.ip(),
    )
    .await;
    if let Err(refused) = checked {
        return refuse_login(refused);
    }
    match g
        .presence
        .open_session(&req.user_id, SessionKind::Http)
        .await
    {
        Ok(token) => Json(LoginResponse {
            user_id: req.user_id,
            session_token: SessionToken::new(token),
        })
        .into_response(),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "session_store_unavailable",
            e.to_string(),
        ),
    }
}

/// The status and body of a refused login.
fn refuse_login(refused: LoginRefused) -> Response {
    let message = refused.to_string();
    match refused {
        LoginRefused::Throttled { retry_after_secs } => {
            let mut refused = fail(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
            refused.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
            refused
        }
        LoginRefused::WrongPassword => fail(StatusCode::UNAUTHORIZED, "auth_failed", message),
        LoginRefused::ThrottleUnavailable(_) | LoginRefused::DatabaseUnavailable(_) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "login_unavailable",
            message,
        ),
    }
}
