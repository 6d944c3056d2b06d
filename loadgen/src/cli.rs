//! Command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::schedule::Arrival;
use crate::workload::{KeyDistribution, Ratio, ValueSize};

/// Load generator for Redis and Memcached servers and proxies: closed loop for the throughput
/// ceiling, open loop at a fixed rate for honest (coordinated-omission corrected) latency.
#[derive(Parser, Debug)]
#[command(name = "ferrule-loadgen", version, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Other tasks (the default is to generate load).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Load generation options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Tasks other than generating load.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Draw the percentile curves of .hgrm files into one SVG chart.
    Plot(PlotArgs),
}

/// `plot` options.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// SVG file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "Latency by percentile")]
    pub title: String,
    /// Curves to draw: NAME=FILE.hgrm, or FILE.hgrm (named after the file).
    #[arg(required = true)]
    pub series: Vec<String>,
}

/// Wire protocol of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// RESP (Redis, twemproxy, ferrule redis listeners).
    Redis,
    /// Memcached text protocol.
    Memcache,
    /// Memcached meta commands: `mg <key> v` for reads, a multi-key read as quiet `mg <key> k v q` lines ended
    /// by `mn`, `ms <key> <len>` for writes.
    #[serde(rename = "memcache-meta")]
    MemcacheMeta,
}

/// `--distribution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributionName {
    /// Every key equally likely.
    Uniform,
    /// Skewed popularity, see --zipf-exponent.
    Zipf,
    /// Keys in order, each connection taking every N-th.
    Sequential,
}

/// Load generation options.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Protocol spoken by the target.
    #[arg(long, required = true)]
    pub protocol: Option<ProtocolName>,
    /// HOST:PORT, or the path of a unix socket.
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// Worker threads, one executor each, pinned to the allowed CPUs in order when there are
    /// enough of them.
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Connections per thread.
    #[arg(short, long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,
    /// Open loop: total requests per second over all connections. Without it the generator
    /// runs closed loop, as fast as replies come back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open-loop arrival process.
    #[arg(long, value_enum, default_value_t = Arrival::Constant)]
    pub arrival: Arrival,
    /// Keyspace size: keys are PREFIX0 .. PREFIX<keys-1>.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// How keys are chosen.
    #[arg(long, value_enum, default_value_t = DistributionName::Uniform)]
    pub distribution: DistributionName,
    /// Skew of --distribution zipf (0 = uniform, ~1 = typical cache, higher = hotter).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_exponent: f64,
    /// Prefix of every key name.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,
    /// Value size in bytes, fixed (100) or a range (64-1024).
    #[arg(long, default_value = "32")]
    pub value_size: ValueSize,
    /// Writes to reads, SET:GET.
    #[arg(long, default_value = "1:10")]
    pub ratio: Ratio,
    /// Keys per read: above 1, reads are MGET (redis) or multi-key get (memcache).
    #[arg(long, default_value_t = 1)]
    pub mget: usize,
    /// Write every key once before the measured run.
    #[arg(long)]
    pub prefill: bool,
    /// Length of the measured run in seconds (default 10 unless --requests is given).
    #[arg(long, conflicts_with = "requests")]
    pub duration: Option<f64>,
    /// Stop after this many requests in total instead of after a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Milliseconds to wait for a connection or a reply before counting a timeout.
    #[arg(long, default_value_t = 1000)]
    pub timeout: u64,
    /// Check that every value read back is the value written for that key.
    #[arg(long)]
    pub verify: bool,
    /// Write the report as JSON to this file ("-" for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write PREFIX.OP.hgrm, PREFIX.OP.service.hgrm and PREFIX.OP.hlog for each operation.
    #[arg(long)]
    pub hdr_prefix: Option<String>,
    /// Find the highest open-loop rate whose percentile stays under a bound, e.g. "p99<1000"
    /// (microseconds); each step runs for --duration (default 5 s per step).
    #[arg(long)]
    pub search: Option<SearchBound>,
    /// CPUs to pin the worker threads to, e.g. "2,3" (default: the allowed CPUs in order).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Seed for key choice and Poisson arrivals (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No per-second progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The key distribution with its parameter.
    pub fn key_distribution(&self) -> KeyDistribution {
        match self.distribution {
            DistributionName::Uniform => KeyDistribution::Uniform,
            DistributionName::Zipf => KeyDistribution::Zipf { exponent: self.zipf_exponent },
            DistributionName::Sequential => KeyDistribution::Sequential,
        }
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout.clamp(1, MAX_TIMEOUT_MS))
    }

    /// Checks what clap cannot: the combinations and ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.threads == 0 || self.connections == 0 || self.pipeline == 0 {
            return Err("--threads, --connections and --pipeline must be at least 1".into());
        }
        if self.mget == 0 || self.mget > MAX_KEYS_PER_READ {
            return Err(format!("--mget must be between 1 and {MAX_KEYS_PER_READ}"));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        if let Some(duration) = self.duration {
            if !(duration > 0.0 && duration <= crate::plan::MAX_DURATION_SECS) {
                return Err("--duration must be a positive number of seconds, at most a year".into());
            }
        }
        if self.timeout == 0 || self.timeout > MAX_TIMEOUT_MS {
            return Err(format!("--timeout must be between 1 and {MAX_TIMEOUT_MS} milliseconds"));
        }
        if self.value_size.max() > MAX_VALUE_SIZE {
            return Err(format!("--value-size is limited to {MAX_VALUE_SIZE} bytes"));
        }
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.search.is_some() && self.requests.is_some() {
            return Err("--search runs each step for --duration; --requests does not apply".into());
        }
        if let Some(cpus) = &self.cpus {
            if cpus.len() < self.threads {
                return Err(format!("--cpus names {} CPUs for {} threads", cpus.len(), self.threads));
            }
        }
        Ok(())
    }
}

/// Longest `--timeout`: an hour, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Largest value size: 64 MiB, well past memcached's 1 MiB item default; the generator keeps one
/// pattern of this size per run.
pub const MAX_VALUE_SIZE: usize = 64 << 20;

/// Most keys one multi-key read may carry: far beyond realistic multi-gets, and it bounds the
/// per-request argument array the encoder builds.
pub const MAX_KEYS_PER_READ: usize = 1024;

/// `--search p99<1000`: the percentile to hold under a bound in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SearchBound {
    /// Quantile, 0.0 to 1.0 (0.99 for p99).
    pub quantile: f64,
    /// Bound in microseconds.
    pub micros: u64,
}

impl std::str::FromStr for SearchBound {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("search bound {text:?} is not like p99<1000 (microseconds)");
        let (percentile, bound) = text.split_once('<').ok_or_else(usage)?;
        let percentile: f64 = percentile.trim().strip_prefix('p').ok_or_else(usage)?.parse().map_err(|_| usage())?;
        let micros: u64 = bound.trim().parse().map_err(|_| usage())?;
        if !(percentile > 0.0 && percentile < 100.0) || micros == 0 {
            return Err(usage());
        }
        Ok(Self { quantile: percentile / 100.0, micros })
    }
}

impl std::fmt::Display for SearchBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}<{}us", self.quantile * 100.0, self.micros)
    }
}

/// Helpers for other modules' tests.
#[cfg(test)]
pub mod tests_support {
    use super::*;

    /// Parses load-generation arguments (without the program name).
    pub fn args(args: &[&str]) -> RunArgs {
        Cli::try_parse_from(std::iter::once("ferrule-loadgen").chain(args.iter().copied()))
            .expect("test arguments parse")
            .run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferrule-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn search_bounds_parse() {
        let bound: SearchBound = "p99<1000".parse().unwrap();
        assert_eq!(bound.micros, 1000);
        assert!((bound.quantile - 0.99).abs() < 1e-12);
        let bound: SearchBound = "p99.9<250".parse().unwrap();
        assert!((bound.quantile - 0.999).abs() < 1e-12);
        for bad in ["99<10", "p99", "p100<5", "p99<x", "p99<0"] {
            assert!(bad.parse::<SearchBound>().is_err(), "{bad}");
        }
    }

    #[test]
    fn run_needs_protocol_and_target_but_plot_does_not() {
        assert!(parse(&["--target", "127.0.0.1:1"]).is_err());
        let cli = parse(&["--protocol", "redis", "--target", "127.0.0.1:6379", "-P", "16"]).unwrap();
        assert_eq!(cli.run.pipeline, 16);
        assert!(cli.run.validate().is_ok());
        let cli = parse(&["plot", "-o", "x.svg", "a=a.hgrm"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Plot(_))));
        assert!(parse(&["--duration", "1", "--requests", "5"]).is_err());
    }

    #[test]
    fn validation_catches_bad_combinations() {
        let base = ["--protocol", "memcache", "--target", "/tmp/s"];
        let check = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
            parse(&args).unwrap().run.validate()
        };
        assert!(check(&["--mget", "0"]).is_err());
        assert!(check(&["--rate=-5"]).is_err());
        assert!(check(&["--threads", "2", "--cpus", "1"]).is_err());
        assert!(check(&["--search", "p99<10", "--requests", "9"]).is_err());
        assert!(check(&["--threads", "2", "--cpus", "0,1"]).is_ok());
        assert!(check(&["--duration", "1e30"]).is_err());
        assert!(check(&["--duration", "NaN"]).is_err());
        assert!(check(&["--timeout", "0"]).is_err());
        assert!(check(&["--value-size", "1-999999999999"]).is_err());
    }
}
