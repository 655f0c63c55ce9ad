//! rtmc-chaos: the fault injector. Today: a TCP fault proxy compatible with
//! Toxiproxy (its toxics, its HTTP API and JSON, so Toxiproxy clients work
//! unchanged), with what Toxiproxy lacks — refusing clients while the
//! upstream is down, a `limit_time` toxic, proxies created with their toxics
//! atomically, and turmoil's hold/release and one-way partitions.
//!
//! In-process, a test starts a [`FaultProxy`] and injects faults with its
//! verbs ([`proxy::faults`]); across processes, `chaos proxy` serves the [`api`] and
//! [`ToxiproxyClient`] drives it. A [`ChaosStack`] puts proxies on the links
//! of a whole rtmc stack ([`stack`]) and drives real outages of its
//! containers and processes ([`stack::outage`]).
//!
//! The history checker (design §8) proves that nothing acknowledged was lost:
//! a run records its publishes and every client's sessions and deliveries
//! into a [`Recording`], and [`History::check`] returns a [`Verdict`]
//! ([`history`], [`checker`]).
//!
//! Scenarios ([`scenario`]) put faults on a timeline while loadgen's client
//! engine drives a load: `chaos run FILE` ([`scenario::runner`]) applies them on
//! schedule ([`scenario::timeline`]), records the history through loadgen's hooks
//! ([`history::hooks`]), checks it and reports recovery times with a plot
//! ([`scenario::report`]).

pub mod api;
pub mod checker;
pub mod history;
pub mod proxy;
pub mod scenario;
pub mod stack;

pub use api::collection::ProxyCollection;
pub use api::toxiproxy_client::{ClientError, NewProxy, ToxiproxyClient};
pub use checker::{Anomaly, AnomalyKind, Checker, Verdict};
pub use history::{ClientLog, History, HistoryError, PublishLog, Recording};
pub use proxy::error::FaultError;
pub use proxy::faults::{StreamFaults, ToxicHandle};
pub use proxy::toxics::{
    ms, Bandwidth, Direction, Latency, LimitData, LimitTime, ResetPeer, Slicer, SlowClose, Timeout,
    Toxic, ToxicInfo, ToxicKind,
};
pub use proxy::{FaultProxy, ProxyConfig, ProxyInfo, ProxyUpdate};
pub use stack::outage::{Action, Fault, OutageError, OutageLog, ProcessFault, ServiceFault, Step};
pub use stack::{ChaosStack, Link, StackOptions};
