//! A configuration value that must not leak into logs: database and broker
//! URLs (which may carry a password) and API keys. `Debug` prints
//! `[redacted]`, and the value is read only through
//! [`Secret::expose_secret`], so every use shows in review. Serde is
//! transparent: config files and `RTMC_…` variables take the plain value,
//! and the config still round-trips (figment layers it through serde).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value whose `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself; call it only where the value is needed (to
    /// connect, to compare a key), never to log it.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value_and_serde_does_not() {
        let s = Secret::from("amqp://guest:hunter2@127.0.0.1:5672/%2f");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("hunter2"));
        let back: Secret<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
