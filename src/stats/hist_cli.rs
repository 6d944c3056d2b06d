//! `ferrule hist`: read `.hgrm` percentile files or HdrHistogram interval logs, merge, print a percentile table and
//! draw the curves. The reading and drawing come from [`crate::histogram`], shared with the load generator; this
//! module only decides what a file is, which intervals fall in the window, and lays out the table.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use crate::histogram::{parse_hgrm, read_interval_log, write_percentile_plot, Histogram, PlotSeries, MICROS_PER_MILLI};

/// Which part of an interval log to read: intervals that overlap `[from, to)`, offsets counted from the log's start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    pub from: Option<Duration>,
    pub to: Option<Duration>,
}

impl Window {
    fn is_set(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    fn overlaps(&self, start: Duration, length: Duration) -> bool {
        let end = start + length;
        self.from.is_none_or(|from| end > from) && self.to.is_none_or(|to| start < to)
    }
}

/// A file's distribution, ready for the table and the plot.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: String,
    pub histogram: Histogram,
    /// Intervals merged (interval logs), or `None` for a `.hgrm` file.
    pub intervals: Option<usize>,
}

/// An interval log has comma-separated interval lines; a `.hgrm` file has none outside its `#` footer.
fn is_interval_log(text: &str) -> bool {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).is_some_and(|l| l.contains(','))
}

/// Reads one file's bytes. `.hgrm` values are taken as milliseconds (what ferrule and its load generator write) and
/// rebuilt into a histogram from the rows, so merged `.hgrm` files are exact only at the rows' values.
pub fn load(name: &str, bytes: &[u8], window: &Window) -> Result<Loaded, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{name}: not a text file"))?;
    if is_interval_log(text) {
        let intervals = read_interval_log(bytes).map_err(|e| format!("{name}: {e}"))?;
        let mut histogram = Histogram::new();
        let mut used = 0;
        for i in intervals.iter().filter(|i| window.overlaps(i.offset, i.length)) {
            histogram.merge(&i.histogram);
            used += 1;
        }
        return Ok(Loaded { name: name.to_owned(), histogram, intervals: Some(used) });
    }
    if window.is_set() {
        return Err(format!("{name}: a .hgrm file has no timeline; --from/--to apply to interval logs only"));
    }
    let hgrm = parse_hgrm(text).map_err(|e| format!("{name}: {e}"))?;
    if hgrm.rows.is_empty() {
        return Err(format!("{name}: neither a .hgrm percentile distribution nor an interval log"));
    }
    let mut histogram = Histogram::new();
    let mut seen = 0;
    for row in &hgrm.rows {
        let delta = row.total_count.saturating_sub(seen);
        seen = seen.max(row.total_count);
        if delta > 0 {
            let micros = (row.value * MICROS_PER_MILLI).round().max(0.0) as u64;
            histogram.record_n(micros, delta);
        }
    }
    Ok(Loaded { name: name.to_owned(), histogram, intervals: None })
}

/// The percentile table, milliseconds; a `merged` row follows when there are several files.
pub fn percentile_table(files: &[Loaded]) -> String {
    let width = files.iter().map(|f| f.name.len()).max().unwrap_or(4).clamp(6, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   (milliseconds)",
        "file", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let row = |out: &mut String, name: &str, h: &Histogram| {
        let s = h.summary();
        let _ = writeln!(
            out,
            "{name:<width$} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s.count, s.p50, s.p90, s.p99, s.p99_9, s.p99_99, s.max
        );
    };
    for f in files {
        row(&mut out, &f.name, &f.histogram);
    }
    if files.len() > 1 {
        let mut all = Histogram::new();
        for f in files {
            all.merge(&f.histogram);
        }
        row(&mut out, "merged", &all);
    }
    out
}

/// The SVG of every file's percentile curve (milliseconds on a log-scaled percentile axis).
pub fn plot(files: &[Loaded], title: &str, out: &mut impl io::Write) -> io::Result<()> {
    let series: Vec<PlotSeries> =
        files.iter().map(|f| PlotSeries::from_histogram(&f.name, &f.histogram, MICROS_PER_MILLI)).collect();
    write_percentile_plot(title, "ms", &series, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{write_hgrm, IntervalLogWriter};
    use std::time::SystemTime;

    fn hist(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    #[test]
    fn hgrm_files_rebuild_their_counts() {
        let mut text = Vec::new();
        write_hgrm(&hist(&[100, 200, 300, 4000]), MICROS_PER_MILLI, &mut text).unwrap();
        let loaded = load("a.hgrm", &text, &Window::default()).unwrap();
        assert_eq!(loaded.histogram.len(), 4);
        // Within the histogram's 3 significant digits.
        assert!((4000..=4004).contains(&loaded.histogram.max()), "{}", loaded.histogram.max());
        assert!(load("a.hgrm", &text, &Window { from: Some(Duration::from_secs(1)), to: None }).is_err());
    }

    #[test]
    fn interval_logs_merge_the_window() {
        let mut log = IntervalLogWriter::new(Vec::new(), SystemTime::UNIX_EPOCH, "test").unwrap();
        for (i, v) in [10u64, 20, 30].iter().enumerate() {
            let start = Duration::from_secs(10 * i as u64);
            log.write_interval(&hist(&[*v]), start, Duration::from_secs(10), Some("x")).unwrap();
        }
        let bytes = log.into_inner().unwrap();
        let all = load("x.hlog", &bytes, &Window::default()).unwrap();
        assert_eq!((all.histogram.len(), all.intervals), (3, Some(3)));
        let window = Window { from: Some(Duration::from_secs(12)), to: Some(Duration::from_secs(20)) };
        let part = load("x.hlog", &bytes, &window).unwrap();
        assert_eq!((part.histogram.len(), part.histogram.max()), (1, 20));
    }

    #[test]
    fn table_has_a_merged_row_for_several_files() {
        let files = vec![
            Loaded { name: "a".into(), histogram: hist(&[1000]), intervals: None },
            Loaded { name: "b".into(), histogram: hist(&[3000]), intervals: None },
        ];
        let table = percentile_table(&files);
        let merged = table.lines().find(|l| l.starts_with("merged")).unwrap();
        assert!(merged.contains(" 2 "), "{table}");
        assert!(merged.contains(" 1.000 "), "{table}");
        let mut svg = Vec::new();
        plot(&files, "t", &mut svg).unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("<svg"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(load("x", b"hello world\n", &Window::default()).is_err());
        assert!(load("x", &[0xff, 0xfe], &Window::default()).is_err());
    }
}
