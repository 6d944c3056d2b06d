//! When each request is meant to be sent, and how its latency is measured against that.
//!
//! Closed loop sends whenever the pipeline window has room, so it measures the throughput
//! ceiling. Open loop gives every request an intended send time from a fixed schedule (constant
//! spacing, or Poisson arrivals) and measures latency from that intended time, as wrk2 does: if
//! the server stalls, the requests that should have gone out during the stall still count the
//! stall in their latency ("coordinated omission" corrected). The uncorrected service time, from
//! the actual send, is recorded beside it.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How open-loop requests are spaced in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced: exactly one request every 1/rate seconds.
    Constant,
    /// Exponentially distributed gaps: the arrivals of many independent clients.
    Poisson,
}

/// The send schedule of one connection.
#[derive(Debug)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Send as soon as the window allows.
    Closed,
    /// Constant spacing: the k-th request is due at `(phase + k) * interval`, computed from k
    /// rather than accumulated so rounding never drifts over a long run.
    Constant { interval_nanos: f64, phase: f64, index: u64 },
    /// Poisson arrivals: exponentially distributed gaps with mean `interval_nanos`.
    Poisson { interval_nanos: f64, next_nanos: f64, rng: SmallRng },
}

impl Schedule {
    /// A closed-loop schedule: nothing is ever "due", requests go out when there is room.
    pub fn closed() -> Self {
        Self { kind: Kind::Closed }
    }

    /// An open-loop schedule sending `rate` requests per second.
    ///
    /// `phase` (0.0 to 1.0) shifts a constant schedule by a fraction of one interval so that the
    /// connections of a run do not all fire at the same instant; Poisson schedules draw their
    /// gaps from an RNG seeded with `seed`.
    pub fn open(rate: f64, arrival: Arrival, phase: f64, seed: u64) -> Self {
        let interval_nanos = 1e9 / rate.max(f64::MIN_POSITIVE);
        let kind = match arrival {
            Arrival::Constant => Kind::Constant { interval_nanos, phase: phase.clamp(0.0, 1.0), index: 0 },
            Arrival::Poisson => {
                let mut rng = SmallRng::seed_from_u64(seed);
                let first = exponential_gap(&mut rng, interval_nanos);
                Kind::Poisson { interval_nanos, next_nanos: first, rng }
            }
        };
        Self { kind }
    }

    /// True for closed-loop schedules.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }

    /// Intended send time of the next request as an offset from the run's start; `None` in
    /// closed loop, where the actual send time is the intended one.
    pub fn next_due(&self) -> Option<Duration> {
        let nanos = match &self.kind {
            Kind::Closed => return None,
            Kind::Constant { interval_nanos, phase, index } => (phase + *index as f64) * interval_nanos,
            Kind::Poisson { next_nanos, .. } => *next_nanos,
        };
        Some(Duration::from_nanos(nanos as u64))
    }

    /// Moves to the request after the one [`Schedule::next_due`] named.
    pub fn advance(&mut self) {
        match &mut self.kind {
            Kind::Closed => {}
            Kind::Constant { index, .. } => *index += 1,
            Kind::Poisson { interval_nanos, next_nanos, rng } => *next_nanos += exponential_gap(rng, *interval_nanos),
        }
    }

    /// Skips every request due before `offset` (used while the connection is down, and to count
    /// the backlog at the end) and returns how many were skipped.
    ///
    /// Constant time, whatever the rate: a constant schedule jumps its index; a Poisson schedule
    /// counts the expected number of arrivals in the gap and, being memoryless, draws the next
    /// arrival after `offset` afresh.
    pub fn skip_until(&mut self, offset: Duration) -> u64 {
        let target = offset.as_nanos() as f64;
        match &mut self.kind {
            Kind::Closed => 0,
            Kind::Constant { interval_nanos, phase, index } => {
                // Requests k with (phase + k) * interval < target are due before the offset.
                let first_not_due = (target / *interval_nanos - *phase).ceil().max(0.0);
                let first_not_due = if first_not_due >= u64::MAX as f64 { u64::MAX } else { first_not_due as u64 };
                let skipped = first_not_due.saturating_sub(*index);
                *index = (*index).max(first_not_due);
                skipped
            }
            Kind::Poisson { interval_nanos, next_nanos, rng } => {
                if *next_nanos >= target {
                    return 0;
                }
                let expected_more = ((target - *next_nanos) / *interval_nanos).round();
                *next_nanos = target + exponential_gap(rng, *interval_nanos);
                1 + expected_more.min(u64::MAX as f64 - 1.0) as u64
            }
        }
    }
}

/// One exponentially distributed gap with the given mean, by inversion.
fn exponential_gap(rng: &mut SmallRng, mean_nanos: f64) -> f64 {
    // gen::<f64>() is in [0, 1), so 1 - u is in (0, 1] and the logarithm is finite.
    let u: f64 = rng.gen();
    -(1.0 - u).ln() * mean_nanos
}

/// When a request was meant to go out and when it actually did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendTimes {
    /// From the schedule (equal to `sent` in closed loop).
    pub intended: Instant,
    /// When it was written to the socket.
    pub sent: Instant,
}

impl SendTimes {
    /// Latency from the intended send time: what a user arriving on schedule would see.
    pub fn corrected_latency(&self, replied: Instant) -> Duration {
        replied.saturating_duration_since(self.intended)
    }

    /// Latency from the actual send: the server's (plus network's) service time only.
    pub fn service_time(&self, replied: Instant) -> Duration {
        replied.saturating_duration_since(self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrule::histogram::Histogram;

    #[test]
    fn closed_loop_has_no_intended_times() {
        let mut schedule = Schedule::closed();
        assert!(schedule.is_closed());
        assert_eq!(schedule.next_due(), None);
        schedule.advance();
        assert_eq!(schedule.skip_until(Duration::from_secs(5)), 0);
    }

    #[test]
    fn constant_schedule_is_evenly_spaced_with_phase() {
        let mut schedule = Schedule::open(1000.0, Arrival::Constant, 0.5, 1);
        let mut due = Vec::new();
        for _ in 0..4 {
            due.push(schedule.next_due().unwrap());
            schedule.advance();
        }
        let micros: Vec<u128> = due.iter().map(|d| d.as_micros()).collect();
        assert_eq!(micros, vec![500, 1500, 2500, 3500]);
    }

    #[test]
    fn constant_schedule_does_not_drift() {
        // 3 per second: intervals of 333.33 ms do not add up exactly in floating point when
        // accumulated, but the millionth request must still be due at exactly 333333.33 s.
        let mut schedule = Schedule::open(3.0, Arrival::Constant, 0.0, 1);
        for _ in 0..1_000_000 {
            schedule.advance();
        }
        let due = schedule.next_due().unwrap().as_secs_f64();
        assert!((due - 1_000_000.0 / 3.0).abs() < 1e-3, "{due}");
    }

    #[test]
    fn poisson_arrivals_have_the_requested_rate_and_exponential_gaps() {
        let rate = 10_000.0;
        let mut schedule = Schedule::open(rate, Arrival::Poisson, 0.0, 42);
        let n = 200_000;
        let mut previous = 0.0;
        let mut gaps = Vec::with_capacity(n);
        for _ in 0..n {
            let due = schedule.next_due().unwrap().as_secs_f64();
            assert!(due >= previous, "arrivals must be non-decreasing");
            gaps.push(due - previous);
            previous = due;
            schedule.advance();
        }
        let achieved = n as f64 / previous;
        assert!((achieved / rate - 1.0).abs() < 0.01, "rate {achieved}");
        let mean = previous / n as f64;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        // An exponential distribution has a coefficient of variation of 1; constant has 0.
        let cv = variance.sqrt() / mean;
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
        // Memorylessness in one number: about e^-1 of gaps exceed the mean.
        let over_mean = gaps.iter().filter(|&&g| g > mean).count() as f64 / n as f64;
        assert!((over_mean - (-1.0f64).exp()).abs() < 0.01, "{over_mean}");
    }

    #[test]
    fn poisson_schedules_differ_by_seed_and_repeat_by_seed() {
        let first = |seed| Schedule::open(100.0, Arrival::Poisson, 0.0, seed).next_due();
        assert_eq!(first(7), first(7));
        assert_ne!(first(7), first(8));
    }

    #[test]
    fn skipping_drops_only_past_requests() {
        let mut schedule = Schedule::open(100.0, Arrival::Constant, 0.0, 1);
        // Due at 0, 10, 20, ... ms: the ones before 35 ms are 0, 10, 20, 30.
        assert_eq!(schedule.skip_until(Duration::from_millis(35)), 4);
        assert_eq!(schedule.next_due(), Some(Duration::from_millis(40)));
        // Exactly at a due time: that request is not skipped.
        assert_eq!(schedule.skip_until(Duration::from_millis(60)), 2);
        assert_eq!(schedule.next_due(), Some(Duration::from_millis(60)));
        // Going back skips nothing.
        assert_eq!(schedule.skip_until(Duration::from_millis(10)), 0);
        assert_eq!(schedule.next_due(), Some(Duration::from_millis(60)));
    }

    #[test]
    fn skipping_is_instant_even_at_absurd_rates() {
        let mut constant = Schedule::open(1e12, Arrival::Constant, 0.0, 1);
        assert_eq!(constant.skip_until(Duration::from_secs(3600)), 3_600_000_000_000_000);
        let mut poisson = Schedule::open(1e12, Arrival::Poisson, 0.0, 1);
        let skipped = poisson.skip_until(Duration::from_secs(10));
        assert!((skipped as f64 / 1e13 - 1.0).abs() < 1e-3, "{skipped}");
        assert!(poisson.next_due().unwrap() >= Duration::from_secs(10));
    }

    #[test]
    fn poisson_skipping_counts_about_rate_times_gap() {
        let mut schedule = Schedule::open(1000.0, Arrival::Poisson, 0.0, 3);
        let skipped = schedule.skip_until(Duration::from_secs(10));
        assert!((9_900..=10_100).contains(&skipped), "{skipped}");
    }

    /// Simulates one connection with a pipeline of 1 against a server that answers in 100 us
    /// but stalls once for 500 ms. Open loop at 1000/s: during the stall ~500 requests are due
    /// and wait; their corrected latency shows the stall, the service times do not.
    #[test]
    fn a_stall_shows_in_corrected_latency_but_not_in_service_time() {
        let start = Instant::now();
        let service = Duration::from_micros(100);
        let stall_at = Duration::from_secs(1);
        let stall = Duration::from_millis(500);
        let mut schedule = Schedule::open(1000.0, Arrival::Constant, 0.0, 1);
        let mut corrected = Histogram::new();
        let mut uncorrected = Histogram::new();
        let mut server_free_at = start;
        let mut stalled = false;
        for _ in 0..3000 {
            let intended = start + schedule.next_due().unwrap();
            schedule.advance();
            // Pipeline of 1: the request goes out when it is due or when the previous reply
            // arrived, whichever is later.
            let sent = intended.max(server_free_at);
            let mut replied = sent + service;
            if !stalled && sent >= start + stall_at {
                replied += stall;
                stalled = true;
            }
            server_free_at = replied;
            let times = SendTimes { intended, sent };
            corrected.record_duration(times.corrected_latency(replied));
            uncorrected.record_duration(times.service_time(replied));
        }
        // Service time: one slow request in 3000, so the p99 stays at the normal 100 us.
        assert_eq!(uncorrected.value_at_quantile(0.99), 100);
        assert!(uncorrected.max() >= 500_000);
        // Corrected: ~500 of the 3000 requests waited behind the stall (1 in 6), so even the
        // p90 is far above 100 us, and the max is the whole stall.
        assert!(corrected.value_at_quantile(0.90) > 100_000);
        assert!(corrected.max() >= 500_000);
        assert!(corrected.value_at_quantile(0.5) < 1_000);
    }

    #[test]
    fn latencies_never_go_negative() {
        let now = Instant::now();
        let times = SendTimes { intended: now + Duration::from_millis(5), sent: now + Duration::from_millis(5) };
        assert_eq!(times.corrected_latency(now), Duration::ZERO);
        assert_eq!(times.service_time(now), Duration::ZERO);
    }
}
