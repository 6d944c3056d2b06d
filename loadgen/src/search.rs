//! `--search p99<MICROS`: the highest open-loop rate at which a latency percentile stays under
//! a bound, as mutilate's `--search` finds it.
//!
//! The closed-loop throughput (or `--rate`, when given) is the upper end. That rate is tried
//! first; if it fails, the range below it is bisected. A step passes when the percentile of the
//! corrected latency is under the bound, nothing failed, and the target kept up with the offered
//! rate (achieved at least 95% of it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::SearchBound;
use crate::plan::RunPlan;
use crate::run::{execute, RunOutcome};

/// Bisection steps after the first try: the answer is within 1/2^7 (under 1%) of the ceiling.
const BISECTION_STEPS: u32 = 7;
/// Achieved over offered rate below which the target is considered to have fallen behind.
const KEEP_UP_FRACTION: f64 = 0.95;

/// One tried rate.
#[derive(Clone, Debug, Serialize)]
pub struct SearchStep {
    /// Offered requests per second.
    pub rate: f64,
    /// Replies per second.
    pub achieved: f64,
    /// The searched percentile of the corrected latency, milliseconds.
    pub percentile_ms: f64,
    /// Failed requests and connection attempts.
    pub errors: u64,
    /// Whether the step met the bound.
    pub pass: bool,
}

/// The outcome of a search.
pub struct SearchResult {
    /// The bound searched for.
    pub bound: SearchBound,
    /// The upper end: closed-loop throughput or `--rate`.
    pub ceiling: f64,
    /// Every step in the order tried.
    pub steps: Vec<SearchStep>,
    /// The best passing step's plan and figures, else the last step's.
    pub reported: Option<(Arc<RunPlan>, RunOutcome)>,
    /// The highest passing rate.
    pub best_rate: Option<f64>,
}

impl SearchResult {
    /// The `search` member of the JSON report.
    pub fn to_json(&self) -> Value {
        json!({
            "bound": self.bound.to_string(),
            "quantile": self.bound.quantile,
            "bound_micros": self.bound.micros,
            "ceiling": self.ceiling,
            "best_rate": self.best_rate,
            "steps": self.steps,
        })
    }
}

/// Runs the search; each step lasts `base.duration`.
pub fn search(base: &RunPlan, bound: SearchBound, stop: &Arc<AtomicBool>, quiet: bool) -> Result<SearchResult, String> {
    let ceiling = match base.rate {
        Some(rate) => rate,
        None => {
            let probe = execute(Arc::new(base.at_rate(None)), stop, progress(quiet, "ceiling "), None)?;
            probe.stats.total().completed as f64 / probe.elapsed.as_secs_f64()
        }
    };
    eprintln!("search {bound}: upper end {ceiling:.0} requests/s");
    let mut result = SearchResult { bound, ceiling, steps: Vec::new(), reported: None, best_rate: None };
    if ceiling < 1.0 {
        return Ok(result);
    }
    let (mut low, mut high) = (0.0, ceiling);
    let mut rate = ceiling;
    for _ in 0..=BISECTION_STEPS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let plan = Arc::new(base.at_rate(Some(rate)));
        let label = format!("{rate:.0}/s ");
        let outcome = execute(plan.clone(), stop, progress(quiet, &label), None)?;
        let step = judge(&bound, rate, &outcome);
        eprintln!(
            "search: {:>10.0}/s offered, {:>10.0}/s achieved, p{} {:.3} ms, {} errors: {}",
            step.rate,
            step.achieved,
            bound.quantile * 100.0,
            step.percentile_ms,
            step.errors,
            if step.pass { "ok" } else { "too slow" }
        );
        if step.pass {
            low = rate;
            result.best_rate = Some(rate);
            result.reported = Some((plan, outcome));
        } else {
            high = rate;
            if result.best_rate.is_none() {
                result.reported = Some((plan, outcome));
            }
        }
        result.steps.push(step);
        if low == ceiling {
            break;
        }
        rate = (low + high) / 2.0;
    }
    Ok(result)
}

fn progress(quiet: bool, label: &str) -> Option<&str> {
    (!quiet).then_some(label)
}

/// Whether one step met the bound.
fn judge(bound: &SearchBound, rate: f64, outcome: &RunOutcome) -> SearchStep {
    let total = outcome.stats.total();
    let achieved = total.completed as f64 / outcome.elapsed.as_secs_f64();
    let percentile_micros = total.latency.value_at_quantile(bound.quantile);
    let errors = total.errors.requests() + total.errors.connect;
    SearchStep {
        rate,
        achieved,
        percentile_ms: percentile_micros as f64 / 1000.0,
        errors,
        pass: percentile_micros <= bound.micros
            && errors == 0
            && total.completed > 0
            && achieved >= rate * KEEP_UP_FRACTION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StatsSet;
    use crate::workload::OpKind;
    use std::time::Duration;

    fn outcome(completed: u64, latency_micros: u64, errors: u64) -> RunOutcome {
        let mut stats = StatsSet::default();
        let get = stats.op_mut(OpKind::Get);
        get.completed = completed;
        get.errors.reset = errors;
        for _ in 0..100 {
            get.latency.record(latency_micros);
        }
        RunOutcome { stats, elapsed: Duration::from_secs(1), interrupted: false }
    }

    #[test]
    fn a_step_passes_only_under_the_bound_without_errors_and_keeping_up() {
        let bound: SearchBound = "p99<1000".parse().unwrap();
        assert!(judge(&bound, 1000.0, &outcome(1000, 900, 0)).pass);
        assert!(!judge(&bound, 1000.0, &outcome(1000, 1100, 0)).pass);
        assert!(!judge(&bound, 1000.0, &outcome(1000, 900, 1)).pass);
        assert!(!judge(&bound, 1000.0, &outcome(900, 900, 0)).pass);
        assert!(!judge(&bound, 1000.0, &outcome(0, 0, 0)).pass);
    }
}
