//! The one error type of the fault proxy, shaped after Toxiproxy's API errors
//! (`api.go`: `ErrBadRequestBody`, `ErrMissingField`, …) so that the HTTP layer
//! can answer with the same message and status code a Toxiproxy client expects.

use std::io;

/// What went wrong in a proxy operation. `Display` is the message Toxiproxy
/// would put in `{"error": …}`; [`FaultError::status`] is its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The request body is not the JSON the endpoint takes.
    #[error("bad request body: {0}")]
    BadRequestBody(String),
    /// A field the operation cannot do without (`name`, `upstream`).
    #[error("missing required field: {0}")]
    MissingField(String),
    /// No proxy of that name.
    #[error("proxy not found")]
    ProxyNotFound,
    /// A proxy of that name exists already.
    #[error("proxy already exists")]
    ProxyAlreadyExists,
    /// `stream` is neither `upstream` nor `downstream`.
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,
    /// `type` names no toxic this proxy knows.
    #[error("invalid toxic type")]
    InvalidToxicType,
    /// A toxic of that name exists already on the proxy (in either stream).
    #[error("toxic already exists")]
    ToxicAlreadyExists,
    /// No toxic of that name on the proxy.
    #[error("toxic not found")]
    ToxicNotFound,
    /// The listen address could not be resolved or bound (Toxiproxy: 500).
    #[error("listen tcp {addr}: {source}")]
    Listen {
        /// The address as given.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// An error inside one element of a list (`/populate`, a config file):
    /// Toxiproxy's "missing required field: name at proxy 2".
    #[error("{source} at {place}")]
    At {
        /// Where, e.g. `proxy 2` or `proxy 2 toxic 1` (1-based, as Toxiproxy).
        place: String,
        /// What.
        source: Box<FaultError>,
    },
}

impl FaultError {
    /// The HTTP status Toxiproxy answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequestBody(_)
            | Self::MissingField(_)
            | Self::InvalidStream
            | Self::InvalidToxicType => 400,
            Self::ProxyNotFound | Self::ToxicNotFound => 404,
            Self::ProxyAlreadyExists | Self::ToxicAlreadyExists => 409,
            Self::Listen { .. } => 500,
            Self::At { source, .. } => source.status(),
        }
    }

    /// This error, located at `place` of a list.
    pub fn at(self, place: impl Into<String>) -> Self {
        Self::At {
            place: place.into(),
            source: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_are_toxiproxys() {
        let e = FaultError::MissingField("name".into()).at("proxy 2");
        assert_eq!(e.to_string(), "missing required field: name at proxy 2");
        assert_eq!(e.status(), 400);
        assert_eq!(FaultError::ToxicAlreadyExists.status(), 409);
        assert_eq!(FaultError::ProxyNotFound.to_string(), "proxy not found");
    }
}
