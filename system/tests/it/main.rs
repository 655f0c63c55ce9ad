//! Integration tests of the `rtmc` library that need no services.

mod codec;
mod layers;
mod startup;
