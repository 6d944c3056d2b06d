//! HdrHistogram's percentile distribution text format (`.hgrm`).
//!
//! The layout matches `AbstractHistogram.outputPercentileDistribution` of the Java library: a
//! header, one row per quantile tick (5 ticks per half distance to 100%) with the columns
//! `Value Percentile TotalCount 1/(1-Percentile)`, the final 100% row without the last column,
//! then the `#[Mean ...]`, `#[Max ...]` and `#[Buckets ...]` footer. HdrHistogram's
//! plotFiles.html and hdr-plot parse exactly this, so the widths and precisions matter.

use std::fmt;
use std::io::{self, Write};

use super::{Histogram, PercentileSummary};

/// Quantile ticks per half distance to 100%, as the Java tools default to.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Writes `hist` as a `.hgrm` percentile distribution.
///
/// Values are divided by `value_unit_ratio` before printing: recorded microseconds with
/// [`super::MICROS_PER_MILLI`] give the milliseconds the tools expect.
pub fn write_hgrm(hist: &Histogram, value_unit_ratio: f64, out: &mut impl Write) -> io::Result<()> {
    let inner = hist.inner();
    let digits = usize::from(inner.sigfig());
    writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    let mut total_count: u64 = 0;
    for tick in inner.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total_count += tick.count_since_last_iteration();
        let value = tick.value_iterated_to() as f64 / value_unit_ratio;
        let quantile = tick.quantile_iterated_to();
        if quantile < 1.0 {
            let inverse_tail = 1.0 / (1.0 - quantile);
            writeln!(out, "{value:12.digits$} {quantile:2.12} {total_count:10} {inverse_tail:14.2}")?;
        } else {
            writeln!(out, "{value:12.digits$} {quantile:2.12} {total_count:10}")?;
        }
    }
    let mean = inner.mean() / value_unit_ratio;
    let std_deviation = inner.stdev() / value_unit_ratio;
    let max = inner.max() as f64 / value_unit_ratio;
    writeln!(out, "#[Mean    = {mean:12.digits$}, StdDeviation   = {std_deviation:12.digits$}]")?;
    writeln!(out, "#[Max     = {max:12.digits$}, Total count    = {:12}]", inner.len())?;
    writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", inner.buckets(), sub_bucket_count(inner.sigfig()))
}

/// The sub-bucket count HdrHistogram derives from the significant digits: the power of two that
/// holds `2 * 10^digits` distinct values (2048 for 3 digits).
fn sub_bucket_count(significant_digits: u8) -> u64 {
    let largest_single_unit = 2 * 10_u64.pow(u32::from(significant_digits));
    largest_single_unit.next_power_of_two()
}

/// One row of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HgrmRow {
    /// Latency at this quantile, in the file's unit (milliseconds for the project's files).
    pub value: f64,
    /// Quantile, 0.0 to 1.0 (the column is titled "Percentile" but holds a fraction).
    pub quantile: f64,
    /// Number of values at or below `value`.
    pub total_count: u64,
    /// `1/(1-quantile)`, absent on the final 100% row.
    pub inverse_tail: Option<f64>,
}

/// A parsed `.hgrm` file: its rows and whatever footer figures it carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hgrm {
    /// Rows in file order (increasing quantile).
    pub rows: Vec<HgrmRow>,
    /// `#[Mean = ...]`.
    pub mean: Option<f64>,
    /// `StdDeviation = ...`.
    pub std_deviation: Option<f64>,
    /// `#[Max = ...]`.
    pub max: Option<f64>,
    /// `Total count = ...`.
    pub total_count: Option<u64>,
    /// `#[Buckets = ...]`.
    pub buckets: Option<u64>,
    /// `SubBuckets = ...`.
    pub sub_buckets: Option<u64>,
}

impl Hgrm {
    /// Number of values the distribution describes: the footer's count, else the last row's.
    pub fn count(&self) -> u64 {
        self.total_count.or_else(|| self.rows.last().map(|row| row.total_count)).unwrap_or(0)
    }

    /// The value at quantile `q` (0.0 to 1.0), with the same rank rule as the histogram itself:
    /// the first row whose cumulative count reaches `ceil(q * count)`.
    ///
    /// Exact for the quantiles the file has a tick at (0.5, 0.9, 0.99 is between ticks); for other
    /// quantiles it is the next value the file lists, so never an underestimate of the tail.
    pub fn value_at_quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        let wanted_rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        self.rows.iter().find(|row| row.total_count >= wanted_rank).or(self.rows.last()).map(|row| row.value)
    }

    /// The report figures, in the file's unit.
    pub fn summary(&self) -> PercentileSummary {
        let at = |q| self.value_at_quantile(q).unwrap_or(0.0);
        let last_value = self.rows.last().map(|row| row.value).unwrap_or(0.0);
        PercentileSummary {
            count: self.count(),
            mean: self.mean.unwrap_or(0.0),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            p99_99: at(0.9999),
            max: self.max.unwrap_or(last_value),
        }
    }
}

/// Why a `.hgrm` text could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HgrmError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for HgrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for HgrmError {}

/// Parses a `.hgrm` percentile distribution (ours or one written by any HdrHistogram library).
///
/// Blank lines and the `Value Percentile ...` header are skipped; other `#` lines are footer
/// lines whose `Key = value` pairs are kept when known and ignored otherwise.
pub fn parse_hgrm(text: &str) -> Result<Hgrm, HgrmError> {
    let mut parsed = Hgrm::default();
    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with("Value") {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_footer_line(comment, &mut parsed).map_err(|reason| HgrmError { line: line_number, reason })?;
            continue;
        }
        let row = parse_row(line).map_err(|reason| HgrmError { line: line_number, reason })?;
        parsed.rows.push(row);
    }
    Ok(parsed)
}

fn parse_row(line: &str) -> Result<HgrmRow, String> {
    let mut fields = line.split_whitespace();
    let mut next_field = |name: &str| fields.next().ok_or_else(|| format!("missing {name} column in {line:?}"));
    let value = parse_number::<f64>(next_field("Value")?, "Value")?;
    let quantile = parse_number::<f64>(next_field("Percentile")?, "Percentile")?;
    let total_count = parse_number::<u64>(next_field("TotalCount")?, "TotalCount")?;
    let inverse_tail = match fields.next() {
        None => None,
        Some("Infinity") => None,
        Some(text) => Some(parse_number::<f64>(text, "1/(1-Percentile)")?),
    };
    if fields.next().is_some() {
        return Err(format!("more than 4 columns in {line:?}"));
    }
    if !(0.0..=1.0).contains(&quantile) {
        return Err(format!("percentile {quantile} is outside 0..1"));
    }
    Ok(HgrmRow { value, quantile, total_count, inverse_tail })
}

fn parse_number<T: std::str::FromStr>(text: &str, column: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{column} column is not a number: {text:?}"))
}

/// Reads `[Key = value, Key = value]` footer lines; comments of any other shape are ignored.
fn parse_footer_line(comment: &str, parsed: &mut Hgrm) -> Result<(), String> {
    let Some(body) = comment.trim().strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) else {
        return Ok(());
    };
    for pair in body.split(',') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Mean" => parsed.mean = Some(parse_number(value, "Mean")?),
            "StdDeviation" => parsed.std_deviation = Some(parse_number(value, "StdDeviation")?),
            "Max" => parsed.max = Some(parse_number(value, "Max")?),
            "Total count" => parsed.total_count = Some(parse_number(value, "Total count")?),
            "Buckets" => parsed.buckets = Some(parse_number(value, "Buckets")?),
            "SubBuckets" => parsed.sub_buckets = Some(parse_number(value, "SubBuckets")?),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::MICROS_PER_MILLI;
    use super::*;

    fn to_text(hist: &Histogram) -> String {
        let mut out = Vec::new();
        write_hgrm(hist, MICROS_PER_MILLI, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A long-tailed distribution like real latencies: most fast, a few very slow.
    fn long_tailed() -> Histogram {
        let mut h = Histogram::new();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            // Pareto-like: 50 us minimum, heavy tail.
            let micros = 50.0 / (1.0 - u).max(1e-6).powf(0.7);
            h.record(micros as u64);
        }
        h
    }

    #[test]
    fn layout_matches_hdrhistogram_text_output() {
        let mut h = Histogram::new();
        for micros in [1000, 2000, 3000, 4000] {
            h.record(micros);
        }
        let text = to_text(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       1.000 0.000000000000          1           1.00");
        let last_row = lines[lines.len() - 4];
        assert_eq!(last_row, "       4.001 1.000000000000          4");
        assert_eq!(lines[lines.len() - 3], "#[Mean    =        2.501, StdDeviation   =        1.118]");
        assert_eq!(lines[lines.len() - 2], "#[Max     =        4.001, Total count    =            4]");
        assert!(lines[lines.len() - 1].starts_with("#[Buckets = "));
        assert!(lines[lines.len() - 1].ends_with("SubBuckets     =         2048]"));
    }

    #[test]
    fn written_file_parses_back_to_the_same_rows_and_footer() {
        let h = long_tailed();
        let parsed = parse_hgrm(&to_text(&h)).unwrap();
        assert_eq!(parsed.count(), h.len());
        assert_eq!(parsed.total_count, Some(h.len()));
        assert_eq!(parsed.sub_buckets, Some(2048));
        let expected_rows: Vec<(u64, f64)> = h
            .inner()
            .iter_quantiles(TICKS_PER_HALF_DISTANCE)
            .map(|tick| (tick.value_iterated_to(), tick.quantile_iterated_to()))
            .collect();
        assert_eq!(parsed.rows.len(), expected_rows.len());
        for (row, (micros, quantile)) in parsed.rows.iter().zip(expected_rows) {
            assert_eq!((row.value * MICROS_PER_MILLI).round() as u64, micros);
            assert!((row.quantile - quantile).abs() < 1e-12);
        }
        assert_eq!(parsed.rows.last().unwrap().inverse_tail, None);
        assert!(parsed.rows[0].inverse_tail.is_some());
    }

    #[test]
    fn percentiles_survive_the_round_trip() {
        let h = long_tailed();
        let original = h.summary();
        let parsed = parse_hgrm(&to_text(&h)).unwrap().summary();
        assert_eq!(parsed.count, original.count);
        // 0.5 and 0.9 are quantile ticks of the format, so they come back exactly.
        assert_eq!(parsed.p50, original.p50);
        assert_eq!(parsed.p90, original.p90);
        // Quantiles between ticks come back as the next listed value: never lower, and within
        // the spacing of the ticks around them.
        for (back, orig, next_tick) in [
            (parsed.p99, original.p99, 0.9907),
            (parsed.p99_9, original.p99_9, 0.99913),
            (parsed.p99_99, original.p99_99, 0.99992),
        ] {
            let ceiling = h.value_at_quantile(next_tick) as f64 / MICROS_PER_MILLI;
            assert!(back >= orig && back <= ceiling, "{back} vs {orig}..{ceiling}");
        }
        assert!((parsed.mean - original.mean).abs() < 0.001);
        assert_eq!(parsed.max, original.max);
    }

    #[test]
    fn empty_histogram_writes_only_header_and_footer() {
        let parsed = parse_hgrm(&to_text(&Histogram::new())).unwrap();
        assert!(parsed.rows.is_empty());
        assert_eq!(parsed.count(), 0);
        assert_eq!(parsed.value_at_quantile(0.99), None);
        assert_eq!(parsed.summary().p99, 0.0);
    }

    #[test]
    fn reads_files_written_by_the_java_library() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    \x20      0.100 0.000000000000          1           1.00\n\
                    \x20      0.200 0.500000000000          5           2.00\n\
                    \x20      9.000 1.000000000000         10\n\
                    #[Mean    =        1.000, StdDeviation   =        2.000]\n\
                    #[Max     =        9.000, Total count    =           10]\n\
                    #[Buckets =           20, SubBuckets     =         2048]\n";
        let parsed = parse_hgrm(text).unwrap();
        assert_eq!(parsed.rows.len(), 3);
        assert_eq!(parsed.value_at_quantile(0.5), Some(0.2));
        assert_eq!(parsed.value_at_quantile(0.51), Some(9.0));
        assert_eq!(parsed.mean, Some(1.0));
        assert_eq!(parsed.std_deviation, Some(2.0));
        assert_eq!(parsed.buckets, Some(20));
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let err = parse_hgrm("Value Percentile\n\n1.0 0.5 x\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("TotalCount"), "{err}");
        let err = parse_hgrm("1.0 7.5 3\n").unwrap_err();
        assert!(err.reason.contains("outside"), "{err}");
        let err = parse_hgrm("1.0\n").unwrap_err();
        assert!(err.reason.contains("missing"), "{err}");
        let err = parse_hgrm("#[Max = lots]\n").unwrap_err();
        assert!(err.reason.contains("Max"), "{err}");
    }
}
