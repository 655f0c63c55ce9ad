//! The fault proxy, split as Toxiproxy splits itself: the proxy and its
//! accept loop ([`fault_proxy`]), one proxied connection (`connection`),
//! one direction of it (`link`), the toxics and their byte-stream effects
//! ([`toxics`]), and the verbs a test injects faults with ([`faults`]).

mod connection;
pub mod error;
pub mod fault_proxy;
pub mod faults;
mod link;
pub mod toxics;

pub use fault_proxy::{FaultProxy, ProxyConfig, ProxyInfo, ProxyUpdate};
