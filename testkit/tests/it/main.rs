//! End-to-end suites on real RabbitMQ, Redis and PostgreSQL containers.
//! One binary (one shared set of services); each test has its own pipeline.
//! Tests that stop or break a service start their own services.

mod bad_input;
mod delivery;
mod durability;
mod failover;
mod gateway;
mod ha_stack;
mod layers;
mod limits;
mod operations;
mod ops;
mod overload;
mod pg_failover;
mod rabbit_cluster;
mod rabbit_failover;
mod redis_failover;
mod redis_ha;
mod resume;
mod room_admin;
mod rooms;
mod rooms_store;
mod schema;
mod security;
mod sessions;
mod status;
mod support;
mod sync;
mod terminal;
mod terminal_driver;
mod tls;
mod watchdog;
