//! The publishing side: an open-loop schedule at a fixed aggregate rate
//! (tick `i` is due at `start + i / rate`, never derived from when the
//! previous send completed), over pipelined TCP `send`s, HTTP
//! `POST /v1/service/messages`, Redis `PUBLISH` for the floor, or NATS `PUB`
//! (core) and JetStream publishes awaited for their `PubAck` for the NATS
//! peers. Every message
//! carries its intended send time, so latency is corrected for coordinated
//! omission, and a publisher sequence in its message id.

mod http;
mod jetstream;
mod nats;
mod pipeline;
mod redis;
mod share;
mod tcp;

use std::net::SocketAddr;

pub use share::{ChannelShare, MessageShape, PublishError, PublishOutcome, Schedule};

/// How the messages travel.
#[derive(Debug, Clone)]
pub enum Channel {
    /// A logged-in TCP connection sending pipelined `send`s.
    Tcp {
        addr: SocketAddr,
        user: String,
        password: String,
    },
    /// The HTTP gateway with an API key.
    Http {
        base_url: String,
        api_key: String,
        concurrency: usize,
    },
    /// A Redis connection pipelining `PUBLISH channel payload`.
    Redis { addr: SocketAddr, channel: String },
    /// A NATS connection pipelining `PUB subject payload` + `PING`: core
    /// NATS acknowledges nothing, so the `PONG` after each message (the
    /// server has routed it to every subscriber) is its ack, as `PUBLISH`'s
    /// reply is the floor's.
    Nats { addr: SocketAddr, subject: String },
    /// JetStream through async-nats: each publish awaited for its `PubAck`
    /// (the message is in the stream's file store), many in flight.
    JetStream { url: String, subject: String },
}

/// Runs one channel over its share of the schedule, then waits up to the
/// ack timeout for the outstanding answers.
pub async fn publish(
    channel: Channel,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    match channel {
        Channel::Tcp {
            addr,
            user,
            password,
        } => tcp::publish_tcp(addr, &user, &password, share).await,
        Channel::Http {
            base_url,
            api_key,
            concurrency,
        } => http::publish_http(&base_url, &api_key, concurrency, share).await,
        Channel::Redis { addr, channel } => redis::publish_redis(addr, &channel, share).await,
        Channel::Nats { addr, subject } => nats::publish_nats(addr, &subject, share).await,
        Channel::JetStream { url, subject } => {
            jetstream::publish_jetstream(&url, &subject, share).await
        }
    }
}
