//! Request-level admission control for the publishing routes: at most
//! `gateway.max_inflight_requests` posts are worked on at once; the next is
//! refused at once with 503 `overloaded` and `Retry-After`, before its body
//! is parsed or its caller authenticated. The gateway runs out of CPU long
//! before the publisher's confirm bound (`rabbitmq.max_inflight_publishes`)
//! is reached, so without this bound an overload queued requests for seconds
//! instead of refusing them: by Little's law the bound caps the queueing
//! time at about `max_inflight_requests ÷ throughput`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

/// `Retry-After` of an `overloaded` 503, in seconds: requests and confirms
/// in flight drain within milliseconds, so the next second is a fair time
/// to retry.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// The bound on publishing requests in flight at this gateway.
#[derive(Clone)]
pub struct RequestAdmission {
    /// One permit per request being worked on.
    slots: Arc<Semaphore>,
    /// The configured bound (at least 1), for the refusal's message.
    bound: usize,
}

impl RequestAdmission {
    pub fn new(max_inflight_requests: usize) -> Self {
        let bound = max_inflight_requests.max(1);
        Self {
            slots: Arc::new(Semaphore::new(bound)),
            bound,
        }
    }
}

/// Middleware: runs the request with one slot held, or refuses it at once
/// (counted in `rtmc_gateway_shed_total` and, as every refusal, in
/// `rtmc_gateway_rejected_total{code="overloaded"}`).
pub async fn admit(State(a): State<RequestAdmission>, req: Request, next: Next) -> Response {
    let Ok(_slot) = a.slots.clone().try_acquire_owned() else {
        metrics::counter!("rtmc_gateway_shed_total").increment(1);
        return overloaded(format!(
            "overloaded: {} requests already in flight at this gateway; not published",
            a.bound
        ));
    };
    next.run(req).await
}

/// A 503 `overloaded` with `Retry-After`.
pub fn overloaded(message: String) -> Response {
    let mut refused = super::fail(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
    refused.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(OVERLOADED_RETRY_AFTER_SECS),
    );
    refused
}
