//! HdrHistogram interval logs (`.hlog`): one compressed histogram per interval, so a latency
//! spike can be placed in time after the run.
//!
//! Writing goes through the hdrhistogram crate's `IntervalLogWriterBuilder` and
//! `V2DeflateSerializer`, so the lines are what the Java `HistogramLogReader` and
//! HistogramLogAnalyzer expect. Values are microseconds, and so is the `Interval_Max` column.

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, IntervalLogWriterError, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use super::Histogram;

/// Format version the Java writer announces; readers use it to pick a decoder.
const FORMAT_VERSION_COMMENT: &str = "[Histogram log format version 1.3]";
/// Column legend line of the Java writer.
const LEGEND: &str = "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// Appends interval histograms to an interval log.
pub struct IntervalLogWriter<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
}

impl<W: Write> IntervalLogWriter<W> {
    /// Starts a log whose interval timestamps count seconds from `start` (written as both
    /// StartTime and BaseTime), after one `#` comment line per line of `comment`.
    pub fn new(mut out: W, start: SystemTime, comment: &str) -> io::Result<Self> {
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        for line in comment.lines() {
            builder.add_comment(line);
        }
        builder.add_comment(FORMAT_VERSION_COMMENT).with_start_time(start).with_base_time(start);
        builder.begin_log_with(&mut out, &mut serializer)?;
        writeln!(out, "{LEGEND}")?;
        Ok(Self { out, serializer })
    }

    /// Appends one interval: `hist` holds what was recorded from `offset` (since the log's start)
    /// for `length`. `tag` must not contain commas, spaces or line breaks.
    pub fn write_interval(
        &mut self,
        hist: &Histogram,
        offset: Duration,
        length: Duration,
        tag: Option<&str>,
    ) -> Result<(), IntervalLogError> {
        let tag = match tag {
            None => None,
            Some(text) => Some(Tag::new(text).ok_or_else(|| IntervalLogError::BadTag(text.to_string()))?),
        };
        // A builder with no headers configured writes nothing, so each interval borrows the
        // writer only for its own line.
        let mut writer = IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        writer.write_histogram(hist.inner(), offset, length, tag).map_err(|err| match err {
            IntervalLogWriterError::IoError(io) => IntervalLogError::Io(io),
            IntervalLogWriterError::SerializeError(ser) => IntervalLogError::Encode(ser.to_string()),
        })
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One interval read back from a log.
#[derive(Clone, Debug)]
pub struct LogInterval {
    /// The interval's tag, if it had one.
    pub tag: Option<String>,
    /// Start of the interval: seconds since the log's BaseTime when it has one (as this module
    /// writes), else seconds since the Unix epoch.
    pub offset: Duration,
    /// Length of the interval.
    pub length: Duration,
    /// The values recorded in the interval.
    pub histogram: Histogram,
}

/// Why an interval log could not be written or read.
#[derive(Debug)]
pub enum IntervalLogError {
    /// The underlying writer failed.
    Io(io::Error),
    /// A histogram could not be encoded.
    Encode(String),
    /// A tag contained a comma, space or line break.
    BadTag(String),
    /// A line is neither a comment, a header nor an interval.
    Parse {
        /// Byte offset of the line in the log.
        offset: usize,
    },
    /// An interval's histogram is not valid base64 or not a valid encoded histogram.
    Decode {
        /// 0-based index of the interval in the log.
        interval: usize,
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for IntervalLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(err) => write!(f, "writing interval log: {err}"),
            Self::Encode(reason) => write!(f, "encoding histogram: {reason}"),
            Self::BadTag(tag) => write!(f, "interval tag {tag:?} contains ',', ' ' or a newline"),
            Self::Parse { offset } => write!(f, "interval log is malformed at byte {offset}"),
            Self::Decode { interval, reason } => {
                write!(f, "interval {interval} cannot be decoded: {reason}")
            }
        }
    }
}

impl std::error::Error for IntervalLogError {}

impl From<io::Error> for IntervalLogError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// Reads every interval of a log, decoding its histogram.
pub fn read_interval_log(log: &[u8]) -> Result<Vec<LogInterval>, IntervalLogError> {
    let mut intervals = Vec::new();
    let mut deserializer = Deserializer::new();
    let mut encoded = Vec::new();
    for entry in IntervalLogIterator::new(log) {
        let entry = entry.map_err(|err| match err {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                IntervalLogError::Parse { offset }
            }
        })?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let index = intervals.len();
        let decode_error = |reason: String| IntervalLogError::Decode { interval: index, reason };
        encoded.clear();
        decode_base64(interval.encoded_histogram().as_bytes(), &mut encoded).map_err(decode_error)?;
        let histogram: hdrhistogram::Histogram<u64> =
            deserializer.deserialize(&mut encoded.as_slice()).map_err(|err| decode_error(err.to_string()))?;
        intervals.push(LogInterval {
            tag: interval.tag().map(|tag| tag.as_str().to_string()),
            offset: interval.start_timestamp(),
            length: interval.duration(),
            histogram: Histogram::from_inner(histogram),
        });
    }
    Ok(intervals)
}

/// Decodes standard base64 (with `=` padding), the encoding of the log's histogram column.
///
/// Hand-written because the hdrhistogram crate does not re-export its decoder and this is the
/// only place the project needs one.
fn decode_base64(text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let unpadded = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"="));
    let body = unpadded.unwrap_or(text);
    if !text.len().is_multiple_of(4) {
        return Err(format!("base64 length {} is not a multiple of 4", text.len()));
    }
    let mut accumulator: u32 = 0;
    let mut bits: u32 = 0;
    for &byte in body {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("byte {byte:#04x} is not base64")),
        };
        accumulator = (accumulator << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((accumulator >> bits) as u8);
            accumulator &= (1 << bits) - 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    #[test]
    fn intervals_round_trip_through_the_log() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut writer = IntervalLogWriter::new(Vec::new(), start, "ferrule-loadgen get").unwrap();
        let first = histogram_of(&[100, 200, 300]);
        let second = histogram_of(&[5_000, 70_000]);
        writer.write_interval(&first, Duration::ZERO, Duration::from_secs(1), Some("get")).unwrap();
        writer.write_interval(&second, Duration::from_secs(1), Duration::from_secs(1), None).unwrap();
        let log = writer.into_inner().unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.starts_with("#ferrule-loadgen get\n#[Histogram log format version 1.3]\n"));
        assert!(text.contains("#[StartTime: 1700000000.000 "));
        assert!(text.contains("#[BaseTime: 1700000000.000 "));
        assert!(text.contains(LEGEND));
        assert!(text.contains("Tag=get,0.000,1.000,300.000,"));

        let intervals = read_interval_log(&log).unwrap();
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[0].tag.as_deref(), Some("get"));
        assert_eq!(intervals[0].offset, Duration::ZERO);
        assert_eq!(intervals[0].histogram.len(), 3);
        assert_eq!(intervals[0].histogram.max(), 300);
        assert_eq!(intervals[1].tag, None);
        assert_eq!(intervals[1].offset, Duration::from_secs(1));
        assert_eq!(intervals[1].length, Duration::from_secs(1));
        assert_eq!(intervals[1].histogram.value_at_quantile(1.0), second.value_at_quantile(1.0));
    }

    #[test]
    fn rejects_bad_tags_and_bad_lines() {
        let mut writer = IntervalLogWriter::new(Vec::new(), SystemTime::UNIX_EPOCH, "").unwrap();
        let err = writer.write_interval(&Histogram::new(), Duration::ZERO, Duration::ZERO, Some("a b")).unwrap_err();
        assert!(matches!(err, IntervalLogError::BadTag(_)));
        let err = read_interval_log(b"not a log line\n").unwrap_err();
        assert!(matches!(err, IntervalLogError::Parse { offset: 0 }));
        let err = read_interval_log(b"0.000,1.000,1.0,@@@@\n").unwrap_err();
        assert!(matches!(err, IntervalLogError::Decode { interval: 0, .. }), "{err}");
        let err = read_interval_log(b"0.000,1.000,1.0,QUJD\n").unwrap_err();
        assert!(matches!(err, IntervalLogError::Decode { interval: 0, .. }), "{err}");
    }

    #[test]
    fn base64_decodes_all_padding_forms() {
        for (text, bytes) in
            [(&b""[..], &b""[..]), (b"Zg==", b"f"), (b"Zm8=", b"fo"), (b"Zm9v", b"foo"), (b"+/+/", &[0xfb, 0xff, 0xbf])]
        {
            let mut out = Vec::new();
            decode_base64(text, &mut out).unwrap();
            assert_eq!(out, bytes);
        }
        assert!(decode_base64(b"Zm9", &mut Vec::new()).is_err());
    }
}
