//! Latency histograms in microseconds: the one shape every measurement uses,
//! merging, percentile summaries, and the two standard file formats — the
//! HdrHistogram V2 interval log (`.hlog`) and the percentile distribution
//! text (`.hgrm`) — so the standard HdrHistogram tools read loadgen's output.

use std::io::Write;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Lowest trackable latency: 1 µs.
pub const LOWEST_US: u64 = 1;
/// Highest trackable latency: 60 s; larger values are clamped to it.
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant decimal digits kept.
pub const SIGFIG: u8 = 3;

/// A histogram of latencies in microseconds.
pub type LatencyHistogram = Histogram<u64>;

/// An empty latency histogram (1 µs .. 60 s, 3 significant digits).
pub fn new_histogram() -> LatencyHistogram {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("static bounds are valid")
}

/// Records `us`, clamped into the trackable range.
pub fn record_us(h: &mut LatencyHistogram, us: u64) {
    let _ = h.record(us.clamp(LOWEST_US, HIGHEST_US));
}

/// Adds `from` into `into` (same bounds, so it cannot fail).
pub fn merge_into(into: &mut LatencyHistogram, from: &LatencyHistogram) {
    let _ = into.add(from);
}

/// The percentiles every report quotes, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub p99_99_ms: f64,
    pub max_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencySummary {
    pub fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            p99_99_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Failure reading or writing histogram files.
#[derive(Debug, thiserror::Error)]
pub enum HistogramFileError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing interval log: {0}")]
    Write(String),
    #[error("interval log is malformed at byte {0}")]
    Parse(usize),
    #[error("interval histogram is not valid base64/V2: {0}")]
    Decode(String),
}

/// One interval of an interval log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Offset of the interval's start from the log's start time.
    pub start: Duration,
    pub length: Duration,
    /// What was measured (`rtmc`, `floor`, `ack`…).
    pub tag: String,
    pub histogram: LatencyHistogram,
}

/// Writes an HdrHistogram V2 interval log (compressed histograms, as the
/// Java `HistogramLogWriter` does; the max column is in milliseconds).
pub fn write_interval_log(
    out: &mut impl Write,
    start_time: SystemTime,
    intervals: &[Interval],
) -> Result<(), HistogramFileError> {
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("[Logged with rtmc loadgen; values in microseconds]")
        .add_comment("[Histogram log format version 1.3]")
        .with_start_time(start_time)
        .with_base_time(start_time)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, &mut serializer)?;
    for i in intervals {
        let tag = Tag::new(&i.tag);
        writer
            .write_histogram(&i.histogram, i.start, i.length, tag)
            .map_err(|e| HistogramFileError::Write(format!("{e:?}")))?;
    }
    Ok(())
}

/// Reads every interval of an interval log written by [`write_interval_log`]
/// (or by any V2 writer; untagged intervals get the tag `""`).
pub fn read_interval_log(bytes: &[u8]) -> Result<Vec<Interval>, HistogramFileError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut deserializer = Deserializer::new();
    let mut base: Option<Duration> = None;
    let mut start_time: Option<Duration> = None;
    for entry in IntervalLogIterator::new(bytes) {
        match entry {
            Err(hdrhistogram::serialization::interval_log::LogIteratorError::ParseError {
                offset,
            }) => return Err(HistogramFileError::Parse(offset)),
            Ok(LogEntry::StartTime(t)) => start_time = Some(t),
            Ok(LogEntry::BaseTime(t)) => base = Some(t),
            Ok(LogEntry::Interval(ilh)) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(ilh.encoded_histogram())
                    .map_err(|e| HistogramFileError::Decode(e.to_string()))?;
                let h: Histogram<u64> = deserializer
                    .deserialize(&mut std::io::Cursor::new(raw))
                    .map_err(|e| HistogramFileError::Decode(format!("{e:?}")))?;
                let mut histogram = new_histogram();
                merge_into(&mut histogram, &h);
                // With a BaseTime, timestamps are offsets from it; otherwise
                // absolute and made relative to the StartTime.
                let start = match (base, start_time) {
                    (Some(_), _) => ilh.start_timestamp(),
                    (None, Some(st)) => ilh.start_timestamp().saturating_sub(st),
                    (None, None) => ilh.start_timestamp(),
                };
                out.push(Interval {
                    start,
                    length: ilh.duration(),
                    tag: ilh.tag().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                    histogram,
                });
            }
        }
    }
    Ok(out)
}

/// Writes the standard percentile distribution (`.hgrm`) of `h`, values in
/// milliseconds, 5 ticks per half distance, as HdrHistogram's
/// `outputPercentileDistribution` prints it.
pub fn write_hgrm(out: &mut impl Write, h: &LatencyHistogram) -> std::io::Result<()> {
    let scale = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if h.is_empty() {
        return footer(out, h, 0.0, 0.0, 0.0);
    }
    let mut reached_one = false;
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        reached_one |= q >= 1.0;
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            writeln!(
                out,
                "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                value,
                q,
                h.count_between(0, v.value_iterated_to()),
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(
                out,
                "{:>12.3} {:>2.12} {:>10}",
                value,
                q,
                h.count_between(0, v.value_iterated_to())
            )?;
        }
    }
    if !reached_one {
        // Like the Java implementation, the table ends at the 100th percentile.
        writeln!(
            out,
            "{:>12.3} {:>2.12} {:>10}",
            h.max() as f64 / scale,
            1.0,
            h.len()
        )?;
    }
    footer(
        out,
        h,
        h.mean() / scale,
        h.stdev() / scale,
        h.max() as f64 / scale,
    )
}

/// Sub-buckets per bucket, as the Java footer prints it: the next power of
/// two above 2 × 10^significant digits.
/// The `.hgrm` footer (values already in the table's unit).
fn footer(
    out: &mut impl Write,
    h: &LatencyHistogram,
    mean: f64,
    stdev: f64,
    max: f64,
) -> std::io::Result<()> {
    writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h)
    )
}

fn sub_buckets(h: &LatencyHistogram) -> u64 {
    (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(values: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut h = new_histogram();
        for v in values {
            record_us(&mut h, v);
        }
        h
    }

    #[test]
    fn two_histograms_merge_to_the_right_count_and_percentiles() {
        let a = filled(1..=1000);
        let b = filled(1001..=2000);
        let mut m = new_histogram();
        merge_into(&mut m, &a);
        merge_into(&mut m, &b);
        assert_eq!(m.len(), 2000);
        let s = LatencySummary::of(&m);
        assert!((s.p50_ms - 1.0).abs() < 0.002, "{s:?}");
        assert!((s.p99_ms - 1.98).abs() < 0.003, "{s:?}");
        assert!((s.max_ms - 2.0).abs() < 0.003, "{s:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let h = filled([0, HIGHEST_US * 10]);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn interval_log_round_trips() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let intervals = vec![
            Interval {
                start: Duration::from_secs(0),
                length: Duration::from_secs(1),
                tag: "rtmc".into(),
                histogram: filled(1..=100),
            },
            Interval {
                start: Duration::from_secs(1),
                length: Duration::from_secs(1),
                tag: "floor".into(),
                histogram: filled([5_000, 7_000]),
            },
        ];
        let mut buf = Vec::new();
        write_interval_log(&mut buf, start, &intervals).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(
            text.contains("Tag=rtmc,0.000,1.000,0.100,HISTFAA"),
            "{text}"
        );
        let back = read_interval_log(&buf).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].tag, "rtmc");
        assert_eq!(back[0].histogram, intervals[0].histogram);
        assert_eq!(back[1].start, Duration::from_secs(1));
        assert_eq!(back[1].histogram.len(), 2);
    }

    #[test]
    fn hgrm_has_the_standard_shape() {
        let h = filled((1..=10_000).map(|v| v * 10));
        let mut buf = Vec::new();
        write_hgrm(&mut buf, &h).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let first: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(first[0], "0.010");
        assert_eq!(first[1], "0.000000000000");
        assert_eq!(first[2], "1");
        let median = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("0.500000000000"))
            .unwrap();
        assert!(median.trim_start().starts_with("50.0"), "{median}");
        let last_row = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last_row.split_whitespace().nth(1), Some("1.000000000000"));
        assert_eq!(last_row.split_whitespace().nth(2), Some("10000"));
        assert!(text.contains("#[Mean    =       50.00"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        assert!(text.contains("Total count    =        10000]"));
    }
}
