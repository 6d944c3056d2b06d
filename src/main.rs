//! The `ferrule` command: run the proxy, check a config, or read latency histograms (`ferrule hist`).

use clap::Parser;
use ferrule::config::{Config, Workers};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Binary upgrade: take the listening sockets over from the ferrule serving proxy.upgrade_socket, which then
    /// stops accepting and drains (docs/operations.md, "Binary upgrade"). SIGUSR2 to the running one does the same.
    #[arg(long)]
    takeover: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Read .hgrm files or HdrHistogram interval logs, merge, print a percentile table, optionally plot them.
    Hist(HistArgs),
    /// Convert another proxy's config (twemproxy, mcrouter, Envoy) into a ferrule config.
    Convert(ConvertArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SourceProxy {
    /// twemproxy (nutcracker) YAML.
    Twemproxy,
    /// mcrouter JSON (pools, routes, named handles).
    Mcrouter,
    /// Envoy YAML (redis_proxy listeners, their prefix routes and clusters).
    Envoy,
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// The proxy the config is for.
    #[arg(long = "from", value_enum)]
    from: SourceProxy,
    /// The config to convert.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Write the ferrule config here instead of to stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// twemproxy: the stats port nutcracker was started with (its -s; default 22222).
    #[arg(long, value_name = "PORT")]
    stats_port: Option<u16>,
    /// twemproxy: the stats address nutcracker was started with (its -a; default: keep stats on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    stats_addr: Option<String>,
    /// twemproxy: the stats interval nutcracker was started with (its -i, in ms); noted, ferrule has none.
    #[arg(long, value_name = "MS")]
    stats_interval: Option<u64>,
    /// mcrouter: where ferrule listens (mcrouter took its port on the command line; default 127.0.0.1:5000).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// mcrouter: the default routing prefix mcrouter was started with (its -R; default /././).
    #[arg(long, value_name = "/REGION/CLUSTER/")]
    route_prefix: Option<String>,
}

/// `ferrule convert`: the config to stdout or `-o`, warnings and errors to stderr.
fn convert(args: &ConvertArgs) -> ExitCode {
    use ferrule::config::import;
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("ferrule convert: {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    let converted = match args.from {
        SourceProxy::Twemproxy => {
            let options = import::twemproxy::TwemproxyOptions {
                stats_port: args.stats_port,
                stats_addr: args.stats_addr.clone(),
                stats_interval_ms: args.stats_interval,
            };
            import::twemproxy::convert(&text, &options)
        }
        SourceProxy::Mcrouter => {
            let options = import::mcrouter::McrouterOptions {
                listen: args.listen.clone(),
                route_prefix: args.route_prefix.clone(),
            };
            import::mcrouter::convert(&text, &options)
        }
        SourceProxy::Envoy => import::envoy::convert(&text),
    };
    let conversion = match converted {
        Ok(conversion) => conversion,
        Err(e) => {
            eprintln!("ferrule convert: {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    for warning in &conversion.warnings {
        eprintln!("ferrule convert: warning: {warning}");
    }
    // Server host names are resolved here, so a config converted away from its network may not validate yet.
    // The model check accepts route kinds this build cannot execute yet (the importers say which in the file).
    if let Err(e) = Config::parse_model(&conversion.toml) {
        eprintln!("ferrule convert: warning: the converted config does not validate on this machine: {e}");
    }
    match &args.output {
        None => print!("{}", conversion.toml),
        Some(out) => {
            if let Err(e) = std::fs::write(out, &conversion.toml) {
                eprintln!("ferrule convert: {}: {e}", out.display());
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args)]
struct HistArgs {
    /// `.hgrm` percentile distributions (values in milliseconds) or interval logs (`.hlog`), in any mix.
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Draw every file's percentile curve into this SVG.
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
    /// Interval logs only: leave out intervals that end before this many seconds after the log's start.
    #[arg(long, value_name = "SECONDS")]
    from: Option<f64>,
    /// Interval logs only: leave out intervals that start at or after this many seconds after the log's start.
    #[arg(long, value_name = "SECONDS")]
    to: Option<f64>,
    /// Title of the plot.
    #[arg(long, default_value = "ferrule latency by percentile")]
    title: String,
}

/// `ferrule hist`: prints the table to stdout, errors to stderr.
fn hist(args: &HistArgs) -> ExitCode {
    use ferrule::stats::hist_cli::{load, percentile_table, plot, Window};
    let seconds = |s: Option<f64>, flag: &str| -> Result<Option<Duration>, String> {
        s.map(|v| {
            Duration::try_from_secs_f64(v).map_err(|_| format!("{flag} {v}: not a number of seconds (0 or more)"))
        })
        .transpose()
    };
    let window = match (seconds(args.from, "--from"), seconds(args.to, "--to")) {
        (Ok(from), Ok(to)) => Window { from, to },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ferrule hist: {e}");
            return ExitCode::from(1);
        }
    };
    let mut loaded = Vec::new();
    for path in &args.files {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let result = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        match result.and_then(|bytes| load(&name, &bytes, &window)) {
            Ok(l) => loaded.push(l),
            Err(e) => {
                eprintln!("ferrule hist: {e}");
                return ExitCode::from(1);
            }
        }
    }
    print!("{}", percentile_table(&loaded));
    if let Some(out) = &args.plot {
        let mut svg = Vec::new();
        let written = plot(&loaded, &args.title, &mut svg).and_then(|()| std::fs::write(out, svg));
        if let Err(e) = written {
            eprintln!("ferrule hist: {}: {e}", out.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Hist(args)) => return hist(args),
        Some(Command::Convert(args)) => return convert(args),
        None => {}
    }
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
        let cpus = match ferrule::io::worker_cpus(&cfg) {
            Ok(cpus) => cpus,
            Err(e) => {
                eprintln!("ferrule: invalid config: {e}");
                return ExitCode::from(1);
            }
        };
        println!("ferrule: config {} is valid", cli.config.display());
        let nofile = ferrule::io::sys::nofile_hard_limit();
        if let Some(warning) = ferrule::io::sys::nofile_warning(&cfg, cpus.len(), nofile) {
            eprintln!("ferrule: warning: {warning}");
        }
        print!("{}", cfg.describe_routes());
        return ExitCode::SUCCESS;
    }
    let opts = ferrule::io::RunOptions { config_path: cli.config, watch_config: !cli.no_watch, takeover: cli.takeover };
    match ferrule::io::run(cfg, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("ferrule: {e}");
            ExitCode::from(1)
        }
    }
}
