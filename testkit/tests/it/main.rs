//! End-to-end suites on real RabbitMQ, Redis and PostgreSQL containers.
//! One binary (one shared set of services); each test has its own pipeline.

mod bad_input;
mod delivery;
mod gateway;
mod support;
