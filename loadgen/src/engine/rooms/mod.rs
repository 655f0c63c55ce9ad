//! Room workloads against rtmc (protocol v2): one connection's task
//! ([`client`]: log in, carry out orders, keep the membership ledger), the
//! run over all of them ([`driver`]: create, join, publish with churn and
//! direct messages, drain, settle), and what it reports ([`summary`]); the
//! same workload on a peer, Redis pub/sub, NATS core or JetStream ([`peer`],
//! its channels and publishers from [`peer_map`]).

pub mod client;
pub mod driver;
pub mod peer;
pub mod peer_map;
pub mod summary;
