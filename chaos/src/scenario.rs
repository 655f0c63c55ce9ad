//! Scenarios: faults on a timeline while loadgen's client engine drives a
//! load. The file format ([`file`](mod@file)), the load driver ([`load`]), the faults
//! applied on schedule ([`timeline`]), `chaos run` ([`runner`]) and its
//! report ([`report`]).

pub mod file;
pub mod load;
pub mod report;
pub mod room_load;
pub mod runner;
pub mod timeline;

pub use file::{
    format_span, parse_link, parse_span, ClientFaultSpec, FaultFile, FaultSpec, LinkFault, Load,
    LoadFile, Outage, PublishPath, Scenario, ScenarioError, ScenarioFile, TimedFault, FAULT_NAMES,
    MAX_DURATION,
};
