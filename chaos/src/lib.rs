//! rtmc-chaos: the fault injector. Today: a TCP fault proxy compatible with
//! Toxiproxy (its toxics, its HTTP API and JSON, so Toxiproxy clients work
//! unchanged), with what Toxiproxy lacks — refusing clients while the
//! upstream is down, a `limit_time` toxic, proxies created with their toxics
//! atomically, and turmoil's hold/release and one-way partitions.
//!
//! In-process, a test starts a [`FaultProxy`] and injects faults with its
//! verbs ([`faults`]); across processes, `chaos proxy` serves the [`api`] and
//! [`ToxiproxyClient`] drives it. A [`ChaosStack`] puts proxies on the links
//! of a whole rtmc stack ([`stack`]) and drives real outages of its
//! containers and processes ([`outage`]).
//!
//! The history checker (design §8) proves that nothing acknowledged was lost:
//! a run records its publishes and every client's sessions and deliveries
//! into a [`Recording`], and [`History::check`] returns a [`Verdict`]
//! ([`history`], [`checker`]).
//!
//! Scenarios ([`scenario`]) put faults on a timeline while loadgen's client
//! engine drives a load: `chaos run FILE` ([`runner`]) applies them on
//! schedule ([`timeline`]), records the history through loadgen's hooks
//! ([`recorder_hooks`]), checks it and reports recovery times with a plot
//! ([`report`]).

pub mod api;
pub mod checker;
pub mod client;
pub mod collection;
mod connection;
pub mod error;
pub mod faults;
pub mod history;
mod link;
pub mod outage;
pub mod proxy;
pub mod recorder_hooks;
pub mod report;
pub mod request;
pub mod runner;
pub mod scenario;
pub mod stack;
pub mod timeline;
pub mod toxic;

pub use checker::{Anomaly, AnomalyKind, Checker, Verdict};
pub use client::{ClientError, NewProxy, ToxiproxyClient};
pub use collection::ProxyCollection;
pub use error::FaultError;
pub use faults::{StreamFaults, ToxicHandle};
pub use history::{ClientLog, History, HistoryError, PublishLog, Recording};
pub use outage::{Action, Fault, OutageError, OutageLog, ProcessFault, ServiceFault, Step};
pub use proxy::{FaultProxy, ProxyConfig, ProxyInfo, ProxyUpdate};
pub use stack::{ChaosStack, Link, StackOptions};
pub use toxic::{
    ms, Bandwidth, Direction, Latency, LimitData, LimitTime, ResetPeer, Slicer, SlowClose, Timeout,
    Toxic, ToxicInfo, ToxicKind,
};
