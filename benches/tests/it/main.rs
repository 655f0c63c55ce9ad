//! The benches crate's own checks: the layering of its fixtures and the
//! code maps that describe it.

mod layers;
