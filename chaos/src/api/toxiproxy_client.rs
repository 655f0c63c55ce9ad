//! [`ToxiproxyClient`]: a typed client of the HTTP API, for tests and tools
//! that drive a `chaos proxy` (or a real Toxiproxy) in another process.
//! It sends what Toxiproxy's own Go client sends (`client/*.go`) and turns
//! `{"error", "status"}` answers into [`ClientError::Api`].

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::proxy::fault_proxy::{null_as_empty, ProxyInfo};
use crate::proxy::toxics::{Direction, Toxic, ToxicInfo};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("HTTP {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its `error` message.
        message: String,
    },
    /// The request did not complete.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer was not the JSON expected.
    #[error("unexpected answer: {0}")]
    Decode(#[from] serde_json::Error),
    /// The base address is not a URL.
    #[error("bad address {0:?}")]
    Address(String),
}

/// A proxy to create: Toxiproxy's fields, plus this proxy's extras.
#[derive(Debug, Clone, Serialize)]
pub struct NewProxy {
    /// `name`.
    pub name: String,
    /// `listen` (empty: 127.0.0.1 on a free port).
    pub listen: String,
    /// `upstream`.
    pub upstream: String,
    /// `enabled`.
    pub enabled: bool,
    /// Extra: refuse clients while the upstream is down.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refuse_when_upstream_down: bool,
    /// Extra: toxics in place before the proxy accepts anyone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub toxics: Vec<ToxicInfo>,
}

impl NewProxy {
    /// An enabled proxy on a free loopback port.
    pub fn new(name: impl Into<String>, upstream: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listen: "127.0.0.1:0".into(),
            upstream: upstream.into(),
            enabled: true,
            refuse_when_upstream_down: false,
            toxics: Vec::new(),
        }
    }

    /// Listening on `listen`.
    pub fn listen(mut self, listen: impl Into<String>) -> Self {
        self.listen = listen.into();
        self
    }

    /// With `toxic` in place from the start.
    pub fn toxic(mut self, toxic: impl Into<Toxic>) -> Self {
        self.toxics.push(toxic.into().info());
        self
    }

    /// Refusing clients while the upstream is down.
    pub fn refuse_when_upstream_down(mut self) -> Self {
        self.refuse_when_upstream_down = true;
        self
    }
}

#[derive(Deserialize)]
struct PopulateReply {
    #[serde(default, deserialize_with = "null_as_empty")]
    proxies: Vec<ProxyInfo>,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: String,
}

#[derive(Deserialize)]
struct VersionReply {
    version: String,
}

/// A client of one API server.
#[derive(Debug, Clone)]
pub struct ToxiproxyClient {
    base: Url,
    http: reqwest::Client,
}

impl ToxiproxyClient {
    /// A client of the server at `addr` (`127.0.0.1:8474` or a URL).
    pub fn new(addr: &str) -> Result<Self, ClientError> {
        let url = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let base = Url::parse(&url).map_err(|_| ClientError::Address(addr.to_owned()))?;
        if base.cannot_be_a_base() {
            return Err(ClientError::Address(addr.to_owned()));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("rtmc-chaos/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { base, http })
    }

    /// The server's version string.
    pub async fn version(&self) -> Result<String, ClientError> {
        let reply: VersionReply = self.call(Method::GET, &["version"], None).await?;
        Ok(reply.version)
    }

    /// Every proxy, by name.
    pub async fn proxies(&self) -> Result<BTreeMap<String, ProxyInfo>, ClientError> {
        self.call(Method::GET, &["proxies"], None).await
    }

    /// Creates a proxy.
    pub async fn create_proxy(&self, proxy: &NewProxy) -> Result<ProxyInfo, ClientError> {
        self.call(
            Method::POST,
            &["proxies"],
            Some(serde_json::to_value(proxy)?),
        )
        .await
    }

    /// Creates or replaces proxies (with their toxics).
    pub async fn populate(&self, proxies: &[NewProxy]) -> Result<Vec<ProxyInfo>, ClientError> {
        let reply: PopulateReply = self
            .call(
                Method::POST,
                &["populate"],
                Some(serde_json::to_value(proxies)?),
            )
            .await?;
        Ok(reply.proxies)
    }

    /// The proxy named `name`.
    pub async fn proxy(&self, name: &str) -> Result<ProxyInfo, ClientError> {
        self.call(Method::GET, &["proxies", name], None).await
    }

    /// Enables the proxy.
    pub async fn enable(&self, name: &str) -> Result<ProxyInfo, ClientError> {
        self.update_proxy(name, json!({"enabled": true})).await
    }

    /// Disables the proxy: clients refused, connections closed.
    pub async fn disable(&self, name: &str) -> Result<ProxyInfo, ClientError> {
        self.update_proxy(name, json!({"enabled": false})).await
    }

    /// Updates fields of the proxy (`listen`, `upstream`, `enabled`,
    /// `refuse_when_upstream_down`).
    pub async fn update_proxy(&self, name: &str, fields: Value) -> Result<ProxyInfo, ClientError> {
        self.call(Method::PATCH, &["proxies", name], Some(fields))
            .await
    }

    /// Deletes the proxy.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["proxies", name], None)
            .await
            .map(drop)
    }

    /// The proxy's toxics.
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<ToxicInfo>, ClientError> {
        self.call(Method::GET, &["proxies", proxy, "toxics"], None)
            .await
    }

    /// Adds a toxic to the proxy.
    pub async fn add_toxic(
        &self,
        proxy: &str,
        toxic: impl Into<Toxic>,
    ) -> Result<ToxicInfo, ClientError> {
        let body = serde_json::to_value(toxic.into().info())?;
        self.call(Method::POST, &["proxies", proxy, "toxics"], Some(body))
            .await
    }

    /// The toxic named `name`.
    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<ToxicInfo, ClientError> {
        self.call(Method::GET, &["proxies", proxy, "toxics", name], None)
            .await
    }

    /// Sets the given attributes (and toxicity, if given) of a toxic.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        name: &str,
        toxicity: Option<f32>,
        attributes: Map<String, Value>,
    ) -> Result<ToxicInfo, ClientError> {
        let mut body = json!({ "attributes": attributes });
        if let Some(toxicity) = toxicity {
            body["toxicity"] = json!(toxicity);
        }
        self.call(
            Method::PATCH,
            &["proxies", proxy, "toxics", name],
            Some(body),
        )
        .await
    }

    /// Removes a toxic.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["proxies", proxy, "toxics", name], None)
            .await
            .map(drop)
    }

    /// Every proxy enabled, without toxics (and released, healed).
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.send(Method::POST, &["reset"], None).await.map(drop)
    }

    /// Extra: holds `stream` (both if `None`).
    pub async fn hold(
        &self,
        proxy: &str,
        stream: Option<Direction>,
    ) -> Result<ProxyInfo, ClientError> {
        self.switch(proxy, "hold", stream).await
    }

    /// Extra: releases `stream` (both if `None`).
    pub async fn release(
        &self,
        proxy: &str,
        stream: Option<Direction>,
    ) -> Result<ProxyInfo, ClientError> {
        self.switch(proxy, "release", stream).await
    }

    /// Extra: partitions (drops) `stream` (both if `None`).
    pub async fn partition(
        &self,
        proxy: &str,
        stream: Option<Direction>,
    ) -> Result<ProxyInfo, ClientError> {
        self.switch(proxy, "partition", stream).await
    }

    /// Extra: heals `stream` (both if `None`).
    pub async fn heal(
        &self,
        proxy: &str,
        stream: Option<Direction>,
    ) -> Result<ProxyInfo, ClientError> {
        self.switch(proxy, "heal", stream).await
    }

    async fn switch(
        &self,
        proxy: &str,
        verb: &str,
        stream: Option<Direction>,
    ) -> Result<ProxyInfo, ClientError> {
        let body = stream.map(|s| json!({ "stream": s }));
        self.call(Method::POST, &["proxies", proxy, verb], body)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path, body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Sends a request (path segments percent-encoded) and returns the body
    /// of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        path: &[&str],
        body: Option<Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::Address(self.base.to_string()))?
            .pop_if_empty()
            .extend(path);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body)?);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?.to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<ErrorReply>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
        })
    }
}
