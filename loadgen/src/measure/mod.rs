//! What loadgen measures besides the deliveries themselves: latency
//! histograms and their files ([`histogram`]), CPU time of the server and of
//! loadgen ([`cpu`]), loadgen watching itself ([`selfcheck`]) and the hooks
//! that let a caller see every event of a run ([`observe`]).

pub mod cpu;
pub mod histogram;
pub mod observe;
pub mod selfcheck;
