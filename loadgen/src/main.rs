//! `ferrule-loadgen`: load for Redis and Memcached servers and proxies, with honest tail
//! latency. See `ferrule-loadgen --help` and docs/benchmarks.md.

mod cli;
mod client;
mod conn;
mod plan;
mod report;
mod run;
mod schedule;
mod search;
mod stats;
mod worker;
mod workload;

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use ferrule::histogram::{parse_hgrm, write_percentile_plot, PlotSeries};

use crate::cli::{Cli, Command, PlotArgs, RunArgs};
use crate::plan::RunPlan;
use crate::run::{execute, IntervalLogs, RunOutcome};

/// Exit status when the run completed but not a single request got a reply.
const EXIT_NO_REPLIES: u8 = 2;
/// Exit status for bad arguments or files.
const EXIT_USAGE: u8 = 1;
/// Exit status after Ctrl-C or SIGTERM (the report is still written): the shell convention for
/// "stopped by SIGINT", so a script running the generator stops too instead of carrying on.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Plot(args)) => plot(&args),
        None => generate_load(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ferrule-loadgen: {err}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn generate_load(args: &RunArgs) -> Result<ExitCode, String> {
    let seed = args
        .seed
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let plan = Arc::new(RunPlan::from_args(args, seed)?);
    let stop = install_stop_signals()?;
    let label = (!args.quiet).then_some("");

    if args.prefill {
        let prefill = Arc::new(plan.prefill());
        let outcome = execute(prefill, &stop, (!args.quiet).then_some("prefill "), None)?;
        let total = outcome.stats.total();
        eprintln!(
            "prefilled {} keys in {:.2} s ({} errors)",
            total.completed,
            outcome.elapsed.as_secs_f64(),
            total.errors.requests() + total.errors.connect
        );
        if outcome.interrupted {
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    }

    let (reported_plan, outcome, search_json) = match args.search {
        Some(bound) => {
            let result = search::search(&plan, bound, &stop, args.quiet)?;
            let json = result.to_json();
            match result.best_rate {
                Some(rate) => println!("search {bound}: highest passing rate {rate:.0} requests/s"),
                None => println!("search {bound}: no tried rate met the bound"),
            }
            let Some((plan, outcome)) = result.reported else {
                return Ok(ExitCode::from(EXIT_NO_REPLIES));
            };
            (plan, outcome, Some(json))
        }
        None => {
            let mut logs = match &args.hdr_prefix {
                Some(prefix) => Some(
                    IntervalLogs::create(prefix, &plan.ops(), "ferrule-loadgen")
                        .map_err(|err| format!("interval log: {err}"))?,
                ),
                None => None,
            };
            let outcome = execute(plan.clone(), &stop, label, logs.as_mut())?;
            if let Some(logs) = logs {
                logs.finish().map_err(|err| format!("interval log: {err}"))?;
            }
            (plan, outcome, None)
        }
    };
    write_outputs(args, &reported_plan, &outcome, search_json)?;
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if outcome.stats.total().completed == 0 {
        eprintln!("ferrule-loadgen: no request got a reply");
        return Ok(ExitCode::from(EXIT_NO_REPLIES));
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C and SIGTERM raise the stop flag (the run then reports what it has); a second one
/// exits at once.
fn install_stop_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, i32::from(EXIT_INTERRUPTED), stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|err| format!("installing signal handlers: {err}"))?;
    }
    Ok(stop)
}

fn write_outputs(
    args: &RunArgs,
    plan: &RunPlan,
    outcome: &RunOutcome,
    search: Option<serde_json::Value>,
) -> Result<(), String> {
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let table = {
        let mut table = Vec::new();
        report::print_table(&mut table, plan, outcome).map_err(|err| err.to_string())?;
        table
    };
    let written = if json_to_stdout { io::stderr().write_all(&table) } else { io::stdout().write_all(&table) };
    written.map_err(|err| format!("writing the report: {err}"))?;

    if let Some(prefix) = &args.hdr_prefix {
        let files =
            report::write_hgrm_files(prefix, plan, outcome).map_err(|err| format!("writing histograms: {err}"))?;
        eprintln!("wrote {}", files.join(", "));
    }
    if let Some(path) = &args.json {
        let document = report::json_report(args, plan, outcome, search);
        let text = serde_json::to_string_pretty(&document).map_err(|err| err.to_string())? + "\n";
        if json_to_stdout {
            io::stdout().write_all(text.as_bytes()).map_err(|err| format!("writing JSON: {err}"))?;
        } else {
            fs::write(path, text).map_err(|err| format!("{}: {err}", path.display()))?;
        }
    }
    Ok(())
}

fn plot(args: &PlotArgs) -> Result<ExitCode, String> {
    let mut series = Vec::with_capacity(args.series.len());
    for spec in &args.series {
        let (name, path) = match spec.split_once('=') {
            Some((name, path)) => (name.to_string(), path),
            None => {
                let stem = Path::new(spec)
                    .file_name()
                    .map(|name| name.to_string_lossy().trim_end_matches(".hgrm").to_string())
                    .unwrap_or_else(|| spec.clone());
                (stem, spec.as_str())
            }
        };
        let text = fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
        let parsed = parse_hgrm(&text).map_err(|err| format!("{path}: {err}"))?;
        series.push(PlotSeries::from_hgrm(&name, &parsed));
    }
    let mut svg = Vec::new();
    write_percentile_plot(&args.title, "ms", &series, &mut svg).map_err(|err| err.to_string())?;
    fs::write(&args.output, svg).map_err(|err| format!("{}: {err}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
