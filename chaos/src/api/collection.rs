//! The named proxies one API server manages (Toxiproxy's `ProxyCollection`):
//! names are unique, `/populate` adds or replaces, `/reset` cleans them all.
//!
//! Beyond Toxiproxy, a proxy may be created with its toxics; they are in
//! place before its listener exists, so no connection escapes them
//! (Toxiproxy issue #148 asks for this).

use std::collections::BTreeMap;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::api::request::ProxySpec;
use crate::proxy::error::FaultError;
use crate::proxy::fault_proxy::{FaultProxy, ProxyConfig};

/// Proxies by name.
pub struct ProxyCollection {
    proxies: Mutex<BTreeMap<String, FaultProxy>>,
    /// Every proxy's life is a child of it.
    token: CancellationToken,
    /// Seeds every proxy's randomness (mixed with its name) when set.
    seed: Option<u64>,
}

impl ProxyCollection {
    /// An empty collection; its proxies stop when `token` is cancelled.
    pub fn new(token: &CancellationToken, seed: Option<u64>) -> Self {
        Self {
            proxies: Mutex::new(BTreeMap::new()),
            token: token.clone(),
            seed,
        }
    }

    /// Every proxy, by name.
    pub async fn proxies(&self) -> Vec<FaultProxy> {
        self.proxies.lock().await.values().cloned().collect()
    }

    /// The proxy named `name`.
    pub async fn get(&self, name: &str) -> Result<FaultProxy, FaultError> {
        self.proxies
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or(FaultError::ProxyNotFound)
    }

    /// Creates a proxy (with its toxics) and, if enabled, starts it.
    pub async fn create(&self, spec: ProxySpec) -> Result<FaultProxy, FaultError> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&spec.name) {
            return Err(FaultError::ProxyAlreadyExists);
        }
        let proxy = self.build(spec).await?;
        proxies.insert(proxy.name().to_owned(), proxy.clone());
        Ok(proxy)
    }

    /// Creates or replaces each proxy in turn, as Toxiproxy's `/populate`: a
    /// proxy that exists with the same listen address and upstream is kept
    /// (with its connections); its toxics become the listed ones if any are
    /// listed. Returns the proxies done so far and the error that stopped it.
    pub async fn populate(
        &self,
        specs: Vec<ProxySpec>,
    ) -> (Vec<FaultProxy>, Result<(), FaultError>) {
        let mut done = Vec::with_capacity(specs.len());
        let mut proxies = self.proxies.lock().await;
        for spec in specs {
            let kept = match proxies.get(&spec.name) {
                Some(existing) => match existing.same_addresses(&spec.listen, &spec.upstream).await
                {
                    Ok(true) => Some(existing.clone()),
                    Ok(false) => {
                        existing.shutdown().await;
                        proxies.remove(&spec.name);
                        None
                    }
                    Err(e) => return (done, Err(e)),
                },
                None => None,
            };
            let result = match kept {
                Some(proxy) if spec.toxics.is_empty() => Ok(proxy),
                Some(proxy) => proxy.set_toxics(spec.toxics).map(|()| proxy),
                None => self.build(spec).await,
            };
            match result {
                Ok(proxy) => {
                    proxies.insert(proxy.name().to_owned(), proxy.clone());
                    done.push(proxy);
                }
                Err(e) => return (done, Err(e)),
            }
        }
        (done, Ok(()))
    }

    /// Stops and forgets the proxy named `name`.
    pub async fn remove(&self, name: &str) -> Result<(), FaultError> {
        let proxy = self
            .proxies
            .lock()
            .await
            .remove(name)
            .ok_or(FaultError::ProxyNotFound)?;
        proxy.shutdown().await;
        Ok(())
    }

    /// Every proxy enabled, without toxics, released and healed.
    pub async fn reset(&self) -> Result<(), FaultError> {
        for proxy in self.proxies().await {
            proxy.reset().await?;
        }
        Ok(())
    }

    /// Stops every proxy.
    pub async fn shutdown(&self) {
        let proxies = std::mem::take(&mut *self.proxies.lock().await);
        for proxy in proxies.values() {
            proxy.shutdown().await;
        }
    }

    async fn build(&self, spec: ProxySpec) -> Result<FaultProxy, FaultError> {
        let mut cfg = ProxyConfig::new(spec.name.as_str())
            .refuse_when_upstream_down(spec.refuse_when_upstream_down);
        cfg.toxics = spec.toxics;
        cfg.seed = self.seed.map(|seed| seed ^ fnv1a(spec.name.as_bytes()));
        let proxy = FaultProxy::new(cfg, spec.listen, spec.upstream, &self.token)?;
        if spec.enabled {
            proxy.up().await?;
        }
        Ok(proxy)
    }
}

/// A stable hash of a name (std's hasher may change between releases, and a
/// seed must replay).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
