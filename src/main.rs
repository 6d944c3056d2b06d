//! The `ferrule` command: run the proxy, or check a config.

use clap::Parser;
use ferrule::config::{Config, Workers};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ferrule", version, about = "A thread-per-core io_uring proxy for Redis and Memcached")]
struct Cli {
    /// Config file (TOML).
    #[arg(short = 'c', long = "config", default_value = "conf/ferrule.toml")]
    config: PathBuf,
    /// Validate the config and exit: 0 when valid, 1 with the problems printed otherwise.
    #[arg(short = 't', long = "test-config")]
    test_config: bool,
    /// Number of pinned worker cores (overrides proxy.workers).
    #[arg(long)]
    workers: Option<usize>,
    /// More log output (-v debug, -vv trace); RUST_LOG works too.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Do not reload when the config file changes (SIGHUP and POST /reload still work).
    #[arg(long)]
    no_watch: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp_millis()
        .init();

    let mut cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrule: invalid config: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(n) = cli.workers {
        if n == 0 {
            eprintln!("ferrule: --workers must be at least 1");
            return ExitCode::from(1);
        }
        cfg.proxy.workers = Workers::Count(n);
    }
    if cli.test_config {
        if let Err(e) = ferrule::io::worker_cpus(&cfg) {
            eprintln!("ferrule: invalid config: {e}");
            return ExitCode::from(1);
        }
        println!("ferrule: config {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    match ferrule::io::run(cfg, ferrule::io::RunOptions { config_path: cli.config, watch_config: !cli.no_watch }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("ferrule: {e}");
            ExitCode::from(1)
        }
    }
}
