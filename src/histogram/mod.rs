//! Latency histograms and the file formats operators already have tools for.
//!
//! Pure code: no sockets, no clocks. The proxy (`ferrule hist`) and the load generator
//! (`ferrule-loadgen`) both record into [`Histogram`] and write the same files:
//! - [`write_hgrm`] / [`parse_hgrm`]: HdrHistogram's percentile distribution text (`.hgrm`), the
//!   4-column format that HdrHistogram's plotter and hdr-plot read;
//! - [`IntervalLogWriter`] / [`read_interval_log`]: HdrHistogram's interval log (`.hlog`), one
//!   compressed histogram per interval, readable by HistogramLogAnalyzer and the Java tools;
//! - [`PercentileSummary`]: the handful of numbers a report table or a JSON file carries;
//! - [`write_percentile_plot`]: an SVG of percentile curves on HdrHistogram's `1/(1-p)` axis.
//!
//! Values are recorded in microseconds: fine enough for loopback round trips (tens of
//! microseconds), coarse enough that an hour fits the fixed-size counts array.

mod hgrm;
mod interval_log;
mod plot;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hgrm::{parse_hgrm, write_hgrm, Hgrm, HgrmError, HgrmRow};
pub use interval_log::{read_interval_log, IntervalLogError, IntervalLogWriter, LogInterval};
pub use plot::{write_percentile_plot, PlotSeries};

/// Divide a microsecond value by this to get milliseconds, the unit `.hgrm` files and reports use.
pub const MICROS_PER_MILLI: f64 = 1000.0;

/// Largest latency kept exactly (one hour, in microseconds); larger values are clamped to it
/// rather than dropped, so a pathological stall still shows up as the maximum.
pub const MAX_TRACKABLE_MICROS: u64 = 3_600_000_000;

/// Significant decimal digits kept: 3 means every value is within 0.1% of what was recorded.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds (3 significant digits, up to one hour).
///
/// A thin wrapper over `hdrhistogram::Histogram<u64>` so that every histogram in the project has
/// the same bounds and can be merged without error, and so that recording never fails.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: hdrhistogram::Histogram<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram with the project's standard bounds.
    pub fn new() -> Self {
        // The bounds are constants that satisfy every precondition of new_with_bounds
        // (low >= 1, high >= 2 * low, sigfig <= 5), so this cannot fail.
        let inner = hdrhistogram::Histogram::new_with_bounds(1, MAX_TRACKABLE_MICROS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self { inner }
    }

    /// Wraps a histogram read from elsewhere (for example from an interval log), whatever its
    /// bounds.
    pub fn from_inner(inner: hdrhistogram::Histogram<u64>) -> Self {
        Self { inner }
    }

    /// The underlying hdrhistogram, for serialization and iteration.
    pub fn inner(&self) -> &hdrhistogram::Histogram<u64> {
        &self.inner
    }

    /// Records one latency in microseconds; values beyond the range are clamped to it.
    pub fn record(&mut self, micros: u64) {
        self.inner.saturating_record(micros);
    }

    /// Records `count` occurrences of one latency in microseconds.
    pub fn record_n(&mut self, micros: u64, count: u64) {
        self.inner.saturating_record_n(micros, count);
    }

    /// Records a latency given as a `Duration`, rounded down to whole microseconds.
    pub fn record_duration(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record(micros);
    }

    /// Adds every value of `other` to `self` (per-thread histograms into a total).
    pub fn merge(&mut self, other: &Histogram) {
        if self.inner.add(&other.inner).is_err() {
            // Only histograms of different bounds (read from a file) get here: re-record their
            // values one bucket at a time, clamping what does not fit.
            for bucket in other.inner.iter_recorded() {
                self.inner.saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
            }
        }
    }

    /// Forgets every recorded value, keeping the allocation (for per-interval histograms).
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Number of values recorded.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The recorded value at quantile `q` (0.0 to 1.0), in microseconds; 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.inner.value_at_quantile(q.clamp(0.0, 1.0))
    }

    /// Largest recorded value in microseconds (0 when empty).
    pub fn max(&self) -> u64 {
        self.inner.max()
    }

    /// Mean of the recorded values in microseconds (0 when empty).
    pub fn mean(&self) -> f64 {
        self.inner.mean()
    }

    /// The percentiles a report shows, converted to milliseconds.
    pub fn summary(&self) -> PercentileSummary {
        let ms = |micros: u64| micros as f64 / MICROS_PER_MILLI;
        PercentileSummary {
            count: self.len(),
            mean: self.mean() / MICROS_PER_MILLI,
            p50: ms(self.value_at_quantile(0.50)),
            p90: ms(self.value_at_quantile(0.90)),
            p99: ms(self.value_at_quantile(0.99)),
            p99_9: ms(self.value_at_quantile(0.999)),
            p99_99: ms(self.value_at_quantile(0.9999)),
            max: ms(self.max()),
        }
    }
}

/// The figures a report carries for one latency distribution, in milliseconds.
///
/// Serialized with these field names into the load generator's `--json` output and the proxy's
/// stats; `p99_9` is the 99.9th percentile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PercentileSummary {
    /// Number of values in the distribution.
    pub count: u64,
    /// Arithmetic mean in milliseconds.
    pub mean: f64,
    /// Median in milliseconds.
    pub p50: f64,
    /// 90th percentile in milliseconds.
    pub p90: f64,
    /// 99th percentile in milliseconds.
    pub p99: f64,
    /// 99.9th percentile in milliseconds.
    pub p99_9: f64,
    /// 99.99th percentile in milliseconds.
    pub p99_99: f64,
    /// Largest value in milliseconds.
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_summarises_in_milliseconds() {
        let mut h = Histogram::new();
        for micros in 1..=1000 {
            h.record(micros);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 0.5).abs() < 0.001, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.001, "{s:?}");
        assert!((s.max - 1.0).abs() < 0.001, "{s:?}");
        assert!((s.mean - 0.5005).abs() < 0.001, "{s:?}");
    }

    #[test]
    fn clamps_values_beyond_range_instead_of_failing() {
        let mut h = Histogram::new();
        h.record(u64::MAX);
        h.record_duration(Duration::from_secs(100_000));
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_TRACKABLE_MICROS);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record_n(100, 3);
        b.record_n(200, 2);
        a.merge(&b);
        assert_eq!(a.len(), 5);
        assert_eq!(a.max(), 200);
    }

    #[test]
    fn merge_accepts_histograms_of_other_bounds() {
        let mut a = Histogram::new();
        let other = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000, 2).unwrap();
        let mut b = Histogram::from_inner(other);
        b.record_n(5_000, 7);
        a.merge(&b);
        assert_eq!(a.len(), 7);
        // The other histogram keeps 2 digits, so the value comes back within 1%.
        assert!((4_950..=5_050).contains(&a.max()), "{}", a.max());
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = Histogram::new().summary();
        assert_eq!(s, PercentileSummary::default());
    }

    #[test]
    fn reset_keeps_bounds() {
        let mut h = Histogram::new();
        h.record(10);
        h.reset();
        assert!(h.is_empty());
        h.record(MAX_TRACKABLE_MICROS);
        assert_eq!(h.len(), 1);
    }
}
