//! Toxics: the faults a proxy applies to the bytes of a connection, as typed
//! Rust values and as Toxiproxy's JSON (`{name, type, stream, toxicity,
//! attributes}`). What each one does to a byte stream, per connection, lives in
//! `stage`.
//!
//! Attribute names, units and defaults are Toxiproxy's (`toxics/*.go`): times
//! in milliseconds except `slicer.delay` (microseconds), `bandwidth.rate` in
//! KB/s (1 KB = 1000 bytes), every attribute 0 when not given. Beyond
//! Toxiproxy there is `limit_time` {time} ms: the connection is cut after that
//! long, however busy it is.

pub(crate) mod stage;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::proxy::error::FaultError;

/// `n` milliseconds; reads well in fault code: `proxy.latency(ms(200))`.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Which way bytes flow through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client → server (what the proxy reads from its clients).
    Upstream,
    /// Server → client: Toxiproxy's default stream.
    Downstream,
}

impl Direction {
    /// Both directions, upstream first (the order Toxiproxy lists toxics in).
    pub const BOTH: [Direction; 2] = [Direction::Upstream, Direction::Downstream];

    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Upstream => 0,
            Self::Downstream => 1,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = FaultError;

    /// Case-insensitive, as Toxiproxy's `stream.ParseDirection`.
    fn from_str(s: &str) -> Result<Self, FaultError> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Ok(Self::Upstream),
            "downstream" => Ok(Self::Downstream),
            _ => Err(FaultError::InvalidStream),
        }
    }
}

/// `latency`: every chunk is delayed by `latency` ± `jitter` (uniform),
/// measured from when the proxy read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Added delay (`latency`, ms).
    pub latency: Duration,
    /// Spread around it (`jitter`, ms).
    pub jitter: Duration,
}

impl Latency {
    /// `latency` of `n` ms.
    pub fn ms(n: u64) -> Self {
        Self {
            latency: ms(n),
            jitter: Duration::ZERO,
        }
    }
}

/// `bandwidth`: bytes pass at most at `rate_kb_per_sec` (0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bandwidth {
    /// `rate`, KB/s (1 KB = 1000 bytes).
    pub rate_kb_per_sec: u64,
}

/// `slow_close`: the close of the stream reaches the other side `delay` late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlowClose {
    /// `delay`, ms.
    pub delay: Duration,
}

/// `timeout`: no data passes (it is dropped); the connection is closed after
/// `timeout`, or never when it is zero (a black hole until the toxic goes —
/// removing it closes the connections it held, as the data is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeout {
    /// `timeout`, ms; zero = hold forever.
    pub timeout: Duration,
}

/// `reset_peer`: on the next data, wait `timeout` then reset the connection
/// (TCP RST to both sides, `SO_LINGER` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResetPeer {
    /// `timeout`, ms.
    pub timeout: Duration,
}

/// `slicer`: every chunk is cut into pieces of about `average_size_bytes`
/// (± `size_variation_bytes`), `delay` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slicer {
    /// `average_size`, bytes.
    pub average_size_bytes: u64,
    /// `size_variation`, bytes.
    pub size_variation_bytes: u64,
    /// `delay` between pieces, µs.
    pub delay: Duration,
}

/// `limit_data`: the connection is closed once `bytes` have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitData {
    /// `bytes`.
    pub bytes: u64,
}

/// `limit_time` (not in Toxiproxy): the connection is closed `time` after the
/// toxic took hold of it — "the cable is pulled", even mid-transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitTime {
    /// `time`, ms.
    pub time: Duration,
}

/// A toxic's type with its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToxicKind {
    /// Passes everything (Toxiproxy's `noop`).
    Noop,
    /// See [`Latency`].
    Latency(Latency),
    /// See [`Bandwidth`].
    Bandwidth(Bandwidth),
    /// See [`SlowClose`].
    SlowClose(SlowClose),
    /// See [`Timeout`].
    Timeout(Timeout),
    /// See [`ResetPeer`].
    ResetPeer(ResetPeer),
    /// See [`Slicer`].
    Slicer(Slicer),
    /// See [`LimitData`].
    LimitData(LimitData),
    /// See [`LimitTime`].
    LimitTime(LimitTime),
}

/// The unit an attribute is counted in on the wire.
#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Micros,
    Count,
}

impl ToxicKind {
    /// Every type name this proxy knows.
    pub const TYPE_NAMES: [&'static str; 9] = [
        "noop",
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "limit_time",
    ];

    /// The toxic of type `name` with every attribute 0 (Toxiproxy's default).
    pub fn from_type_name(name: &str) -> Option<Self> {
        Some(match name {
            "noop" => Self::Noop,
            "latency" => Self::Latency(Latency::default()),
            "bandwidth" => Self::Bandwidth(Bandwidth::default()),
            "slow_close" => Self::SlowClose(SlowClose::default()),
            "timeout" => Self::Timeout(Timeout::default()),
            "reset_peer" => Self::ResetPeer(ResetPeer::default()),
            "slicer" => Self::Slicer(Slicer::default()),
            "limit_data" => Self::LimitData(LimitData::default()),
            "limit_time" => Self::LimitTime(LimitTime::default()),
            _ => return None,
        })
    }

    /// The JSON `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Latency(_) => "latency",
            Self::Bandwidth(_) => "bandwidth",
            Self::SlowClose(_) => "slow_close",
            Self::Timeout(_) => "timeout",
            Self::ResetPeer(_) => "reset_peer",
            Self::Slicer(_) => "slicer",
            Self::LimitData(_) => "limit_data",
            Self::LimitTime(_) => "limit_time",
        }
    }

    /// Every attribute as (JSON name, unit, mutable slot): the one table both
    /// reading and writing JSON go through.
    fn slots(&mut self) -> Vec<(&'static str, Unit, Slot<'_>)> {
        use Slot::{Count, Time};
        match self {
            Self::Noop => vec![],
            Self::Latency(l) => vec![
                ("latency", Unit::Millis, Time(&mut l.latency)),
                ("jitter", Unit::Millis, Time(&mut l.jitter)),
            ],
            Self::Bandwidth(b) => vec![("rate", Unit::Count, Count(&mut b.rate_kb_per_sec))],
            Self::SlowClose(s) => vec![("delay", Unit::Millis, Time(&mut s.delay))],
            Self::Timeout(t) => vec![("timeout", Unit::Millis, Time(&mut t.timeout))],
            Self::ResetPeer(r) => vec![("timeout", Unit::Millis, Time(&mut r.timeout))],
            Self::Slicer(s) => vec![
                (
                    "average_size",
                    Unit::Count,
                    Count(&mut s.average_size_bytes),
                ),
                (
                    "size_variation",
                    Unit::Count,
                    Count(&mut s.size_variation_bytes),
                ),
                ("delay", Unit::Micros, Time(&mut s.delay)),
            ],
            Self::LimitData(l) => vec![("bytes", Unit::Count, Count(&mut l.bytes))],
            Self::LimitTime(l) => vec![("time", Unit::Millis, Time(&mut l.time))],
        }
    }

    /// The `attributes` object, every attribute present.
    pub fn attributes(&self) -> Map<String, Value> {
        let mut copy = *self;
        copy.slots()
            .into_iter()
            .map(|(name, unit, slot)| (name.to_owned(), Value::from(slot.get(unit))))
            .collect()
    }

    /// Sets the attributes present in `attributes` (an object, or `null` for
    /// none), leaving the others as they are — Toxiproxy decodes into the
    /// existing toxic the same way. Unknown keys are ignored, as by Go's
    /// decoder; a value that is not a non-negative integer is an error.
    /// Nothing changes when it fails.
    pub fn merge_attributes(&mut self, attributes: &Value) -> Result<(), FaultError> {
        let map = match attributes {
            Value::Null => return Ok(()),
            Value::Object(map) => map,
            other => {
                return Err(FaultError::BadRequestBody(format!(
                    "attributes must be an object, not {}",
                    json_kind(other)
                )))
            }
        };
        let mut updated = *self;
        for (name, unit, slot) in updated.slots() {
            match map.get(name) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    let n = value.as_u64().ok_or_else(|| {
                        FaultError::BadRequestBody(format!(
                            "attribute {name:?} must be a non-negative integer, not {value}"
                        ))
                    })?;
                    slot.set(unit, n);
                }
            }
        }
        *self = updated;
        Ok(())
    }
}

/// A place an attribute is stored in.
enum Slot<'a> {
    Time(&'a mut Duration),
    Count(&'a mut u64),
}

impl Slot<'_> {
    fn get(&self, unit: Unit) -> u64 {
        let n = match (self, unit) {
            (Slot::Time(d), Unit::Micros) => d.as_micros(),
            (Slot::Time(d), _) => d.as_millis(),
            (Slot::Count(n), _) => u128::from(**n),
        };
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    fn set(self, unit: Unit, n: u64) {
        match (self, unit) {
            (Slot::Time(d), Unit::Micros) => *d = Duration::from_micros(n),
            (Slot::Time(d), _) => *d = Duration::from_millis(n),
            (Slot::Count(c), _) => *c = n,
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A toxic: what it does, to which stream, for which share of connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique within its proxy (both streams). Empty = Toxiproxy's default,
    /// `<type>_<stream>`, given when the toxic is added.
    pub name: String,
    /// The stream it acts on.
    pub stream: Direction,
    /// The fraction of connections it acts on (0..=1, default 1), drawn once
    /// per connection when the toxic reaches it.
    pub toxicity: f32,
    /// Its type and attributes.
    pub kind: ToxicKind,
}

impl Toxic {
    /// A toxic of `kind` on the downstream, for every connection, with the
    /// default name.
    pub fn new(kind: ToxicKind) -> Self {
        Self {
            name: String::new(),
            stream: Direction::Downstream,
            toxicity: 1.0,
            kind,
        }
    }

    /// Named `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// On the client → server stream.
    pub fn upstream(mut self) -> Self {
        self.stream = Direction::Upstream;
        self
    }

    /// On the server → client stream (the default).
    pub fn downstream(mut self) -> Self {
        self.stream = Direction::Downstream;
        self
    }

    /// On `stream`.
    pub fn on(mut self, stream: Direction) -> Self {
        self.stream = stream;
        self
    }

    /// For this fraction of connections.
    pub fn toxicity(mut self, toxicity: f32) -> Self {
        self.toxicity = toxicity;
        self
    }

    /// Toxiproxy's default name, `<type>_<stream>`.
    pub fn default_name(&self) -> String {
        format!("{}_{}", self.kind.type_name(), self.stream)
    }

    /// Its JSON shape.
    pub fn info(&self) -> ToxicInfo {
        ToxicInfo {
            name: self.name.clone(),
            kind: self.kind.type_name().to_owned(),
            stream: self.stream.as_str().to_owned(),
            toxicity: self.toxicity,
            attributes: self.kind.attributes(),
        }
    }
}

macro_rules! into_toxic {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Toxic {
            fn from(attrs: $ty) -> Self {
                Toxic::new(ToxicKind::$ty(attrs))
            }
        }
        impl From<$ty> for ToxicKind {
            fn from(attrs: $ty) -> Self {
                ToxicKind::$ty(attrs)
            }
        }
    )*};
}
into_toxic!(Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData, LimitTime);

/// Attribute structs that can be found inside a [`ToxicKind`]; lets a typed
/// handle edit the attributes of its own kind only.
pub trait ToxicAttributes: Copy {
    /// These attributes, if `kind` is of this type.
    fn within(kind: &mut ToxicKind) -> Option<&mut Self>;
}

macro_rules! attributes_within {
    ($($ty:ident),*) => {$(
        impl ToxicAttributes for $ty {
            fn within(kind: &mut ToxicKind) -> Option<&mut Self> {
                match kind {
                    ToxicKind::$ty(attrs) => Some(attrs),
                    _ => None,
                }
            }
        }
    )*};
}
attributes_within!(Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData, LimitTime);

/// A toxic as Toxiproxy's API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToxicInfo {
    /// `name`.
    pub name: String,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `stream`: `upstream` or `downstream`.
    pub stream: String,
    /// `toxicity`.
    pub toxicity: f32,
    /// `attributes`, by name.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

impl TryFrom<&ToxicInfo> for Toxic {
    type Error = FaultError;

    fn try_from(info: &ToxicInfo) -> Result<Self, FaultError> {
        let mut kind = ToxicKind::from_type_name(&info.kind).ok_or(FaultError::InvalidToxicType)?;
        kind.merge_attributes(&Value::Object(info.attributes.clone()))?;
        Ok(Toxic {
            name: info.name.clone(),
            stream: info.stream.parse()?,
            toxicity: info.toxicity,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_round_trip_in_toxiproxy_units() {
        let kind = ToxicKind::Slicer(Slicer {
            average_size_bytes: 64,
            size_variation_bytes: 8,
            delay: Duration::from_micros(250),
        });
        let attrs = kind.attributes();
        assert_eq!(
            Value::Object(attrs.clone()),
            json!({"average_size": 64, "size_variation": 8, "delay": 250})
        );
        let mut back = ToxicKind::from_type_name("slicer").unwrap();
        back.merge_attributes(&Value::Object(attrs)).unwrap();
        assert_eq!(back, kind);
    }

    #[test]
    fn merge_keeps_what_is_not_given_and_ignores_unknown_keys() {
        let mut kind = ToxicKind::Latency(Latency {
            latency: ms(100),
            jitter: ms(10),
        });
        kind.merge_attributes(&json!({"latency": 1000, "nonsense": "x"}))
            .unwrap();
        assert_eq!(
            kind,
            ToxicKind::Latency(Latency {
                latency: ms(1000),
                jitter: ms(10)
            })
        );
    }

    #[test]
    fn merge_rejects_wrong_types_and_changes_nothing() {
        let mut kind = ToxicKind::Latency(Latency::ms(5));
        for bad in [
            json!({"latency": "100"}),
            json!({"latency": -1}),
            json!({"latency": 1.5}),
            json!([1]),
            json!(7),
        ] {
            let err = kind.merge_attributes(&bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
        assert_eq!(kind, ToxicKind::Latency(Latency::ms(5)));
    }

    #[test]
    fn stream_parses_like_toxiproxy() {
        assert_eq!(
            "UpStream".parse::<Direction>().unwrap(),
            Direction::Upstream
        );
        assert!("".parse::<Direction>().is_err());
        assert!("walrustream".parse::<Direction>().is_err());
    }
}
