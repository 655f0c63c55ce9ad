//! The coordinator's side of the control API: one typed call per endpoint
//! of an agent, every failure an [`AgentError`] that names the agent.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::agents::clock::ClockSample;
use crate::agents::order::{
    AgentResults, AgentStatus, ClockReading, DrainOrder, ErrorBody, Hello, Prepared, StartOrder,
    WorkOrder,
};

/// Bound on a control request other than `prepare`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed call to an agent.
#[derive(Debug, thiserror::Error)]
#[error("agent {agent}: {problem}")]
pub struct AgentError {
    /// The agent's address as given to `--agents`.
    pub agent: String,
    /// What went wrong.
    pub problem: String,
    /// The agent's error code, when it answered with one.
    pub code: Option<String>,
}

/// One agent as the coordinator talks to it.
#[derive(Debug, Clone)]
pub struct AgentClient {
    /// `host:port`, as given.
    pub name: String,
    base_url: String,
    http: reqwest::Client,
}

impl AgentClient {
    /// A client of the agent at `addr` (`host:port`).
    pub fn new(addr: &str) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| AgentError {
                agent: addr.into(),
                problem: format!("HTTP client: {e}"),
                code: None,
            })?;
        Ok(Self {
            name: addr.into(),
            base_url: format!("http://{addr}"),
            http,
        })
    }

    fn fail(&self, problem: String, code: Option<String>) -> AgentError {
        AgentError {
            agent: self.name.clone(),
            problem,
            code,
        }
    }

    /// Sends `req` and reads a JSON answer; an error answer becomes an
    /// [`AgentError`] with the agent's code.
    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, AgentError> {
        let resp = req
            .send()
            .await
            .map_err(|e| self.fail(format!("{what}: unreachable ({e})"), None))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.fail(format!("{what}: reading the answer: {e}"), None))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => self.fail(format!("{what}: {} ({})", b.message, b.code), Some(b.code)),
                Err(_) => self.fail(format!("{what}: HTTP {status}"), None),
            });
        }
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body)
            .map_err(|e| self.fail(format!("{what}: unexpected answer: {e}"), None))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base_url))
            .timeout(REQUEST_TIMEOUT)
    }

    fn post(&self, path: &str, body: &impl Serialize) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base_url))
            .timeout(REQUEST_TIMEOUT)
            .json(body)
    }

    /// `GET /v1/hello`.
    pub async fn hello(&self) -> Result<Hello, AgentError> {
        self.call("hello", self.get("/v1/hello")).await
    }

    /// One clock exchange (midpoint method).
    pub async fn clock_sample(&self) -> Result<ClockSample, AgentError> {
        let sent_us = rtmc::protocol::now_us();
        let r: ClockReading = self.call("clock", self.get("/v1/clock")).await?;
        Ok(ClockSample {
            sent_us,
            agent_us: r.now_us,
            received_us: rtmc::protocol::now_us(),
        })
    }

    /// `POST /v1/prepare`, waiting up to `bring_up` for the fleet.
    pub async fn prepare(
        &self,
        order: &WorkOrder,
        bring_up: Duration,
    ) -> Result<Prepared, AgentError> {
        let req = self.post("/v1/prepare", order).timeout(bring_up);
        self.call("prepare", req).await
    }

    /// `POST /v1/start`.
    pub async fn start(&self, order: &StartOrder) -> Result<(), AgentError> {
        self.call("start", self.post("/v1/start", order)).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<AgentStatus, AgentError> {
        self.call("status", self.get("/v1/status")).await
    }

    /// `POST /v1/drain`.
    pub async fn drain(&self, order: &DrainOrder) -> Result<(), AgentError> {
        self.call("drain", self.post("/v1/drain", order)).await
    }

    /// `GET /v1/results`.
    pub async fn results(&self) -> Result<AgentResults, AgentError> {
        let req = self.get("/v1/results").timeout(Duration::from_secs(60));
        self.call("results", req).await
    }
}
