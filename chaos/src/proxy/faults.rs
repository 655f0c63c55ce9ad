//! The fault verbs of a [`FaultProxy`], for tests that run the proxy
//! in-process: they read like the fault they inject.
//!
//! ```no_run
//! # async fn demo(redis_addr: std::net::SocketAddr) -> Result<(), rtmc_chaos::FaultError> {
//! use rtmc_chaos::{ms, Direction, FaultProxy};
//!
//! let proxy = FaultProxy::start("redis", redis_addr.to_string()).await?;
//! // point the component at proxy.addr() instead of redis_addr …
//! let slow = proxy.latency(ms(200)).jitter(ms(20)); // server → client
//! proxy.upstream().bandwidth(64); // client → server, 64 KB/s
//! slow.remove();
//! proxy.partition(Direction::Upstream); // requests vanish, replies flow
//! proxy.heal();
//! proxy.hold(); // nothing moves …
//! proxy.release(); // … then everything at once
//! proxy.down().await; // refused, connections closed
//! proxy.up().await?;
//! # Ok(()) }
//! ```
//!
//! Toxics added this way are named `<type>_<stream>` (then `_2`, `_3`, … if
//! taken) and stay until removed: dropping the handle does not remove them.

use std::marker::PhantomData;
use std::time::Duration;

use crate::proxy::error::FaultError;
use crate::proxy::fault_proxy::{Condition, FaultProxy};
use crate::proxy::toxics::{
    Bandwidth, Direction, Latency, LimitData, LimitTime, ResetPeer, Slicer, SlowClose, Timeout,
    Toxic, ToxicAttributes, ToxicKind,
};

/// The toxics one verb added (one, or one per stream), to tune or remove.
pub struct ToxicHandle<K> {
    proxy: FaultProxy,
    names: Vec<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> std::fmt::Debug for ToxicHandle<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToxicHandle")
            .field("names", &self.names)
            .finish()
    }
}

impl<K> ToxicHandle<K> {
    fn new(proxy: &FaultProxy, names: Vec<String>) -> Self {
        Self {
            proxy: proxy.clone(),
            names,
            _kind: PhantomData,
        }
    }

    /// The toxics' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Applies to this fraction of connections (drawn again for each).
    pub fn toxicity(self, toxicity: f32) -> Self {
        self.update(|t| t.toxicity = toxicity)
    }

    /// Removes the toxics.
    pub fn remove(self) {
        for name in &self.names {
            if self.proxy.remove_toxic(name).is_err() {
                tracing::debug!(toxic = ?name, "toxic already removed");
            }
        }
    }

    fn update(self, edit: impl Fn(&mut Toxic)) -> Self {
        for name in &self.names {
            let updated = self.proxy.update_toxic(name, |t| {
                edit(t);
                Ok(())
            });
            if updated.is_err() {
                tracing::debug!(toxic = ?name, "toxic removed meanwhile: not updated");
            }
        }
        self
    }
}

impl<K: ToxicAttributes> ToxicHandle<K> {
    fn edit(self, edit: impl Fn(&mut K)) -> Self {
        self.update(|t| {
            if let Some(attributes) = K::within(&mut t.kind) {
                edit(attributes);
            }
        })
    }
}

impl ToxicHandle<Latency> {
    /// ± `jitter` around the latency.
    pub fn jitter(self, jitter: Duration) -> Self {
        self.edit(|l| l.jitter = jitter)
    }
}

impl ToxicHandle<Slicer> {
    /// Pieces vary by up to ± `bytes`.
    pub fn size_variation(self, bytes: u64) -> Self {
        self.edit(|s| s.size_variation_bytes = bytes)
    }

    /// `delay` between pieces.
    pub fn delay(self, delay: Duration) -> Self {
        self.edit(|s| s.delay = delay)
    }
}

impl ToxicHandle<ResetPeer> {
    /// Reset `timeout` after the data that triggers it (default: at once).
    pub fn after(self, timeout: Duration) -> Self {
        self.edit(|r| r.timeout = timeout)
    }
}

/// The verbs for one stream of a proxy: `proxy.upstream().latency(ms(50))`.
#[derive(Debug, Clone, Copy)]
pub struct StreamFaults<'a> {
    proxy: &'a FaultProxy,
    stream: Direction,
}

impl StreamFaults<'_> {
    fn toxic<K: Into<ToxicKind>>(&self, attributes: K) -> ToxicHandle<K> {
        let name = add_named(self.proxy, Toxic::new(attributes.into()).on(self.stream));
        ToxicHandle::new(self.proxy, vec![name])
    }

    /// Delays every chunk by `latency` (tune with `.jitter`).
    pub fn latency(&self, latency: Duration) -> ToxicHandle<Latency> {
        self.toxic(Latency {
            latency,
            jitter: Duration::ZERO,
        })
    }

    /// Caps the rate at `rate_kb_per_sec` KB/s.
    pub fn bandwidth(&self, rate_kb_per_sec: u64) -> ToxicHandle<Bandwidth> {
        self.toxic(Bandwidth { rate_kb_per_sec })
    }

    /// Delays the close of the stream by `delay`.
    pub fn slow_close(&self, delay: Duration) -> ToxicHandle<SlowClose> {
        self.toxic(SlowClose { delay })
    }

    /// Drops all data, closing after `timeout` (zero: never, until removed).
    pub fn timeout(&self, timeout: Duration) -> ToxicHandle<Timeout> {
        self.toxic(Timeout { timeout })
    }

    /// Drops all data until removed (a `timeout` of 0); removing it closes
    /// the connections it held.
    pub fn black_hole(&self) -> ToxicHandle<Timeout> {
        self.timeout(Duration::ZERO)
    }

    /// Resets connections on their next data (tune with `.after`).
    pub fn reset_peer(&self) -> ToxicHandle<ResetPeer> {
        self.toxic(ResetPeer::default())
    }

    /// Cuts every chunk into pieces of about `average_size_bytes` (tune with
    /// `.size_variation` and `.delay`).
    pub fn slicer(&self, average_size_bytes: u64) -> ToxicHandle<Slicer> {
        self.toxic(Slicer {
            average_size_bytes,
            ..Slicer::default()
        })
    }

    /// Closes a connection once `bytes` passed this way.
    pub fn limit_data(&self, bytes: u64) -> ToxicHandle<LimitData> {
        self.toxic(LimitData { bytes })
    }

    /// Closes a connection `time` after the toxic took hold of it.
    pub fn limit_time(&self, time: Duration) -> ToxicHandle<LimitTime> {
        self.toxic(LimitTime { time })
    }

    /// Buffers this stream until [`StreamFaults::release`].
    pub fn hold(&self) {
        self.proxy.set_condition(self.stream, Condition::Held, true);
    }

    /// Delivers what was held, at once, and lets bytes flow again.
    pub fn release(&self) {
        self.proxy
            .set_condition(self.stream, Condition::Held, false);
    }

    /// Drops this stream (a one-way partition) until [`StreamFaults::heal`].
    pub fn partition(&self) {
        self.proxy
            .set_condition(self.stream, Condition::Partitioned, true);
    }

    /// Ends the partition; connections that lost bytes to it are closed.
    pub fn heal(&self) {
        self.proxy
            .set_condition(self.stream, Condition::Partitioned, false);
    }
}

/// Adds `toxic` under its default name, or the first free `<name>_<n>`.
fn add_named(proxy: &FaultProxy, toxic: Toxic) -> String {
    let base = toxic.default_name();
    let mut n = 1u32;
    loop {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        match proxy.add_toxic(toxic.clone().named(name)) {
            Ok(added) => return added.name,
            Err(_) => n += 1,
        }
    }
}

impl FaultProxy {
    /// The client → server stream's verbs.
    pub fn upstream(&self) -> StreamFaults<'_> {
        self.stream(Direction::Upstream)
    }

    /// The server → client stream's verbs (what the plain verbs act on).
    pub fn downstream(&self) -> StreamFaults<'_> {
        self.stream(Direction::Downstream)
    }

    /// The verbs of `stream`.
    pub fn stream(&self, stream: Direction) -> StreamFaults<'_> {
        StreamFaults {
            proxy: self,
            stream,
        }
    }

    /// Adds `toxic` as given (409-style error if its name is taken).
    pub fn add(&self, toxic: impl Into<Toxic>) -> Result<ToxicHandle<Toxic>, FaultError> {
        let added = self.add_toxic(toxic)?;
        Ok(ToxicHandle::new(self, vec![added.name]))
    }

    /// Downstream [`StreamFaults::latency`].
    pub fn latency(&self, latency: Duration) -> ToxicHandle<Latency> {
        self.downstream().latency(latency)
    }

    /// Downstream [`StreamFaults::bandwidth`].
    pub fn bandwidth(&self, rate_kb_per_sec: u64) -> ToxicHandle<Bandwidth> {
        self.downstream().bandwidth(rate_kb_per_sec)
    }

    /// Downstream [`StreamFaults::slow_close`].
    pub fn slow_close(&self, delay: Duration) -> ToxicHandle<SlowClose> {
        self.downstream().slow_close(delay)
    }

    /// Downstream [`StreamFaults::timeout`].
    pub fn timeout(&self, timeout: Duration) -> ToxicHandle<Timeout> {
        self.downstream().timeout(timeout)
    }

    /// Downstream [`StreamFaults::reset_peer`].
    pub fn reset_peer(&self) -> ToxicHandle<ResetPeer> {
        self.downstream().reset_peer()
    }

    /// Downstream [`StreamFaults::slicer`].
    pub fn slicer(&self, average_size_bytes: u64) -> ToxicHandle<Slicer> {
        self.downstream().slicer(average_size_bytes)
    }

    /// Downstream [`StreamFaults::limit_data`].
    pub fn limit_data(&self, bytes: u64) -> ToxicHandle<LimitData> {
        self.downstream().limit_data(bytes)
    }

    /// Downstream [`StreamFaults::limit_time`].
    pub fn limit_time(&self, time: Duration) -> ToxicHandle<LimitTime> {
        self.downstream().limit_time(time)
    }

    /// Both streams black-holed (see [`StreamFaults::black_hole`]); one
    /// handle removes both.
    pub fn black_hole(&self) -> ToxicHandle<Timeout> {
        let names = Direction::BOTH
            .into_iter()
            .flat_map(|d| self.stream(d).black_hole().names)
            .collect();
        ToxicHandle::new(self, names)
    }

    /// Holds both streams.
    pub fn hold(&self) {
        Direction::BOTH
            .into_iter()
            .for_each(|d| self.stream(d).hold());
    }

    /// Releases both streams.
    pub fn release(&self) {
        Direction::BOTH
            .into_iter()
            .for_each(|d| self.stream(d).release());
    }

    /// Drops `stream`: a one-way partition.
    pub fn partition(&self, stream: Direction) {
        self.stream(stream).partition();
    }

    /// Heals both streams.
    pub fn heal(&self) {
        Direction::BOTH
            .into_iter()
            .for_each(|d| self.stream(d).heal());
    }

    /// Back to a clean proxy, as Toxiproxy's `/reset` does to each: enabled,
    /// no toxics; here also released and healed.
    pub async fn reset(&self) -> Result<(), FaultError> {
        self.up().await?;
        self.clear_toxics();
        self.release();
        self.heal();
        Ok(())
    }
}
