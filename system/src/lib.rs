//! rtmc: a real-time chat backend. A message reaches the TCP [`server`] or
//! the HTTP [`gateway`], is published to RabbitMQ with a confirm
//! ([`broker`]), validated, deduplicated and sequenced into a Redis stream by
//! the [`consumer`] ([`stream`]), and broadcast by every server node to every
//! connected client. Users and messages live in PostgreSQL ([`db`]), where
//! the [`sync`] worker copies the stream.
//!
//! Every component starts from a library function taking its configuration,
//! its bound listener and a shutdown token, so tests and tools embed it.

pub mod auth;
pub mod backoff;
pub mod broker;
pub mod cli_help;
pub mod client;
pub mod config;
pub mod consumer;
pub mod db;
pub mod display;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod ops;
pub mod pg_ha;
pub mod presence;
pub mod presence_feed;
pub mod protocol;
pub mod redis_ha;
pub mod relay;
pub mod replay;
pub mod room;
pub mod room_admin;
pub mod room_db;
pub mod secret;
pub mod server;
pub mod stream;
pub mod sync;
pub mod telemetry;
pub mod terminal;
pub mod tls;
