//! loadgen past one process: `loadgen agent` serves a control API on a
//! port, `loadgen run --agents A,B,…` (the coordinator) splits the clients
//! and publishers over the agents, compares clocks, starts everyone on one
//! schedule, shows one live line merged from all of them and merges their
//! histograms and accounting into one report. Leaves first: the control
//! API's messages ([`order`]), the clock comparison ([`clock`]) and the
//! split ([`split`]); the agent's server ([`server`]) and the coordinator's
//! client of it ([`client`]); the coordinated run ([`coordinator`]).

pub mod client;
pub mod clock;
pub mod coordinator;
pub mod order;
pub mod server;
pub mod split;
