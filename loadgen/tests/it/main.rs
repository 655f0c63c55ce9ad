//! loadgen's one integration-test binary: a tiny embedded load against the
//! real stack (containers + the `rtmc` binary as child processes).

mod client_faults;
mod embedded_run;
