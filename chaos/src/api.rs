//! The HTTP API, compatible with Toxiproxy's (`api.go`): same routes, JSON
//! shapes, status codes and error body `{"error": msg, "status": code}`, so
//! an existing Toxiproxy client drives it unchanged. Requests whose
//! User-Agent starts with `Mozilla/` are refused with 403, as Toxiproxy does,
//! so a web page cannot drive it from a browser.
//!
//! Extras (ignored by Toxiproxy clients): `refuse_when_upstream_down` and
//! `toxics` on a proxy in `POST /proxies` and `/populate`; the `limit_time`
//! toxic; and per proxy `POST …/hold`, `…/release`, `…/partition`, `…/heal`
//! with an optional body `{"stream": "upstream"|"downstream"}` (both
//! streams when absent), each answering the proxy.

pub mod collection;
pub mod request;
pub mod toxiproxy_client;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::collection::ProxyCollection;
use crate::api::request::ToxicHead;
use crate::proxy::error::FaultError;
use crate::proxy::fault_proxy::{FaultProxy, ProxyInfo};
use crate::proxy::toxics::{Direction, ToxicInfo};

/// What `GET /version` reports: the Toxiproxy release whose API this
/// follows, and this crate's version as build metadata.
pub const VERSION: &str = concat!("2.12.0+rtmc-chaos.", env!("CARGO_PKG_VERSION"));

/// The port Toxiproxy's API listens on by default.
pub const DEFAULT_API_PORT: u16 = 8474;

type Proxies = State<Arc<ProxyCollection>>;
type Answer = Result<Response, ApiError>;

/// Serves the API on `listener` until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    proxies: Arc<ProxyCollection>,
    token: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(proxies))
        .with_graceful_shutdown(token.cancelled_owned())
        .await
}

/// The API's routes over `proxies`.
pub fn router(proxies: Arc<ProxyCollection>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/proxies", get(proxy_index).post(proxy_create))
        .route("/populate", post(populate))
        .route(
            "/proxies/{proxy}",
            get(proxy_show)
                .post(proxy_update)
                .patch(proxy_update)
                .delete(proxy_delete),
        )
        .route(
            "/proxies/{proxy}/toxics",
            get(toxic_index).post(toxic_create),
        )
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(toxic_show)
                .post(toxic_update)
                .patch(toxic_update)
                .delete(toxic_delete),
        )
        .route("/proxies/{proxy}/hold", post(hold))
        .route("/proxies/{proxy}/release", post(release))
        .route("/proxies/{proxy}/partition", post(partition))
        .route("/proxies/{proxy}/heal", post(heal))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(middleware::from_fn(stop_browsers))
        .with_state(proxies)
}

/// Toxiproxy's `stopBrowsersMiddleware`, plus a debug log line per request.
async fn stop_browsers(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let browser = req
        .headers()
        .get(header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/"));
    let response = if browser {
        (StatusCode::FORBIDDEN, "User agent not allowed\n").into_response()
    } else {
        next.run(req).await
    };
    tracing::debug!(%method, path = ?path, status = response.status().as_u16(), "api request");
    response
}

/// A [`FaultError`] as Toxiproxy answers it.
pub struct ApiError(FaultError);

impl From<FaultError> for ApiError {
    fn from(e: FaultError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status >= 500 {
            tracing::warn!(error = ?self.0.to_string(), "api error");
        }
        json(status, &ErrorBody::from(&self.0), true)
    }
}

/// `{"error": msg, "status": code}`.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
    status: u16,
}

impl From<&FaultError> for ErrorBody {
    fn from(e: &FaultError) -> Self {
        Self {
            error: e.to_string(),
            status: e.status(),
        }
    }
}

/// `value` as a JSON response (`newline`: Go's `http.Error` ends with one).
fn json(status: u16, value: &impl Serialize, newline: bool) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    if newline {
        body.push(b'\n');
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn ok(value: &impl Serialize) -> Answer {
    Ok(json(200, value, false))
}

async fn version() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        format!("{{\"version\": \"{VERSION}\"}}\n"),
    )
        .into_response()
}

async fn reset(State(proxies): Proxies) -> Answer {
    proxies.reset().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn proxy_index(State(proxies): Proxies) -> Answer {
    let all: BTreeMap<String, ProxyInfo> = proxies
        .proxies()
        .await
        .iter()
        .map(|p| (p.name().to_owned(), p.info()))
        .collect();
    ok(&all)
}

async fn proxy_create(State(proxies): Proxies, body: Bytes) -> Answer {
    let spec = request::new_proxy(&request::parse_body(&body)?)?;
    let proxy = proxies.create(spec).await?;
    Ok(json(201, &proxy.info(), false))
}

/// `/populate`'s answer: the proxies done, and the error if one stopped it
/// (Toxiproxy sends both in one object; an empty list is `null` there too).
#[derive(Serialize)]
struct PopulateBody {
    #[serde(flatten)]
    error: Option<ErrorBody>,
    proxies: Option<Vec<ProxyInfo>>,
}

async fn populate(State(proxies): Proxies, body: Bytes) -> Response {
    let (done, result) = match request::parse_body(&body).and_then(|v| request::proxy_list(&v)) {
        Ok(specs) => proxies.populate(specs).await,
        Err(e) => (Vec::new(), Err(e)),
    };
    let error = result.err();
    if let Some(e) = &error {
        tracing::warn!(error = ?e.to_string(), "populate failed");
    }
    let reply = PopulateBody {
        error: error.as_ref().map(ErrorBody::from),
        proxies: (!done.is_empty()).then(|| done.iter().map(FaultProxy::info).collect()),
    };
    json(
        error.as_ref().map_or(201, FaultError::status),
        &reply,
        false,
    )
}

async fn proxy_show(State(proxies): Proxies, Path(name): Path<String>) -> Answer {
    ok(&proxies.get(&name).await?.info())
}

async fn proxy_update(State(proxies): Proxies, Path(name): Path<String>, body: Bytes) -> Answer {
    let proxy = proxies.get(&name).await?;
    let change = request::proxy_update(&request::parse_body(&body)?)?;
    proxy.update(change).await?;
    ok(&proxy.info())
}

async fn proxy_delete(State(proxies): Proxies, Path(name): Path<String>) -> Answer {
    proxies.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn toxic_index(State(proxies): Proxies, Path(name): Path<String>) -> Answer {
    let toxics: Vec<ToxicInfo> = proxies
        .get(&name)
        .await?
        .toxics()
        .iter()
        .map(|t| t.info())
        .collect();
    ok(&toxics)
}

/// Answers 200, not 201: Toxiproxy's `ToxicCreate` never sets a status.
async fn toxic_create(State(proxies): Proxies, Path(name): Path<String>, body: Bytes) -> Answer {
    let proxy = proxies.get(&name).await?;
    let head = ToxicHead::parse(&request::parse_body(&body)?)?;
    if proxy.toxic(&head.toxic.name).is_some() {
        return Err(FaultError::ToxicAlreadyExists.into());
    }
    let toxic = proxy.add_toxic(head.finish()?)?;
    ok(&toxic.info())
}

async fn toxic_show(
    State(proxies): Proxies,
    Path((name, toxic)): Path<(String, String)>,
) -> Answer {
    let toxic = proxies
        .get(&name)
        .await?
        .toxic(&toxic)
        .ok_or(FaultError::ToxicNotFound)?;
    ok(&toxic.info())
}

async fn toxic_update(
    State(proxies): Proxies,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let proxy = proxies.get(&name).await?;
    if proxy.toxic(&toxic).is_none() {
        return Err(FaultError::ToxicNotFound.into());
    }
    let edit = request::toxic_update(&request::parse_body(&body)?)?;
    ok(&proxy.update_toxic(&toxic, edit)?.info())
}

async fn toxic_delete(
    State(proxies): Proxies,
    Path((name, toxic)): Path<(String, String)>,
) -> Answer {
    proxies.get(&name).await?.remove_toxic(&toxic)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Applies a hold/partition switch to the streams the body names.
async fn switch(
    proxies: &ProxyCollection,
    name: &str,
    body: &[u8],
    set: impl Fn(&FaultProxy, Direction),
) -> Answer {
    let proxy = proxies.get(name).await?;
    for stream in request::streams(body)? {
        set(&proxy, stream);
    }
    ok(&proxy.info())
}

async fn hold(State(proxies): Proxies, Path(name): Path<String>, body: Bytes) -> Answer {
    switch(&proxies, &name, &body, |p, d| p.stream(d).hold()).await
}

async fn release(State(proxies): Proxies, Path(name): Path<String>, body: Bytes) -> Answer {
    switch(&proxies, &name, &body, |p, d| p.stream(d).release()).await
}

async fn partition(State(proxies): Proxies, Path(name): Path<String>, body: Bytes) -> Answer {
    switch(&proxies, &name, &body, |p, d| p.stream(d).partition()).await
}

async fn heal(State(proxies): Proxies, Path(name): Path<String>, body: Bytes) -> Answer {
    switch(&proxies, &name, &body, |p, d| p.stream(d).heal()).await
}
