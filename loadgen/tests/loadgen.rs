//! Runs ferrule-loadgen against real redis-server and memcached processes on loopback and checks
//! its report against the servers' own counters (INFO commandstats, memcached `stats`).
//!
//! The servers come from the Debian packages redis-server and memcached; a missing binary fails
//! the test with the command that installs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn start(binary: &str, package: &str, args: impl Fn(u16) -> Vec<String>) -> Server {
    let port = free_port();
    let child = Command::new(binary)
        .args(args(port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {binary} ({err}); install it with: apt-get install -y {package}"));
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{binary} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn start_redis() -> Server {
    start("redis-server", "redis-server", |port| {
        ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(String::from)
            .to_vec()
    })
}

fn start_memcached() -> Server {
    // -u root is needed when the tests run as root and ignored otherwise.
    start("memcached", "memcached", |port| {
        ["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0", "-u", "root"].map(String::from).to_vec()
    })
}

/// Runs the load generator with the whitespace-separated `args` plus `--json` and returns its
/// exit status and report.
fn loadgen(args: &str) -> (Output, Option<Value>) {
    let json_path = scratch_file("json");
    let output = Command::new(env!("CARGO_BIN_EXE_ferrule-loadgen"))
        .args(args.split_whitespace())
        .arg("--json")
        .arg(&json_path)
        .arg("--quiet")
        .output()
        .expect("run ferrule-loadgen");
    let report = std::fs::read_to_string(&json_path)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("the --json report is valid JSON"));
    let _ = std::fs::remove_file(&json_path);
    (output, report)
}

fn scratch_file(extension: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("ferrule-loadgen-test-{}-{n}.{extension}", std::process::id()))
}

fn u64_at(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "ferrule-loadgen failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `INFO commandstats` as (command, calls) pairs.
fn redis_command_calls(port: u16) -> Vec<(String, u64)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n").expect("send INFO");
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).expect("read INFO header");
    let len: usize = header.trim().strip_prefix('$').and_then(|n| n.parse().ok()).expect("INFO returns a bulk string");
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("read INFO body");
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

fn calls(stats: &[(String, u64)], command: &str) -> u64 {
    stats.iter().find(|(name, _)| name == command).map(|(_, calls)| *calls).unwrap_or(0)
}

/// memcached's `stats` as (name, value) pairs.
fn memcached_stats(port: u16) -> Vec<(String, u64)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to memcached");
    stream.write_all(b"stats\r\n").expect("send stats");
    let mut reader = BufReader::new(stream);
    let mut stats = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read stats");
        let line = line.trim_end();
        if line == "END" || line.is_empty() {
            break;
        }
        let mut parts = line.split(' ').skip(1);
        if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            if let Ok(value) = value.parse() {
                stats.push((name.to_string(), value));
            }
        }
    }
    stats
}

#[test]
fn redis_counts_match_the_servers_command_stats() {
    let redis = start_redis();
    let target = format!("127.0.0.1:{}", redis.port);
    let keys = 500;
    let (output, report) = loadgen(&format!(
        "--protocol redis --target {target} --duration 2 -c 4 -P 4 --ratio 1:3 --keys 500 --prefill --verify --seed 7 --value-size 10-200"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    let stats = redis_command_calls(redis.port);
    let gets = u64_at(&report, "/ops/get/count");
    let sets = u64_at(&report, "/ops/set/count");
    assert!(gets > 100, "too little traffic: {report:#}");
    assert_eq!(calls(&stats, "get"), gets, "{stats:?}");
    // The prefill wrote every key once before the measured run.
    assert_eq!(calls(&stats, "set"), sets + keys, "{stats:?}");
    assert_eq!(u64_at(&report, "/totals/errors"), 0, "{report:#}");
    // Everything was prefilled, so every read hits, and verification found every value right.
    assert_eq!(u64_at(&report, "/ops/get/hits"), gets);
    assert_eq!(u64_at(&report, "/ops/get/misses"), 0);
    assert_eq!(u64_at(&report, "/totals/errors_by_kind/verify"), 0);
    let rate = report["ops"]["get"]["ops_per_sec"].as_f64().expect("ops_per_sec");
    assert!((rate - gets as f64 / 2.0).abs() < 1.0, "{rate} vs {gets} in 2 s");
    for field in ["p50", "p99", "p99_9", "max", "mean"] {
        assert!(report["totals"]["latency_ms"][field].as_f64().is_some(), "{field}");
    }

    let (output, report) = loadgen(&format!(
        "--protocol redis --target {target} --requests 1000 -c 2 --ratio 0:1 --mget 5 --keys 500 --verify --value-size 10-200"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    let stats = redis_command_calls(redis.port);
    assert_eq!(u64_at(&report, "/ops/mget/count"), 1000);
    assert_eq!(calls(&stats, "mget"), 1000, "{stats:?}");
    assert_eq!(u64_at(&report, "/ops/mget/hits"), 5000);
    assert_eq!(u64_at(&report, "/totals/errors"), 0, "{report:#}");

    // Values are a function of the key and the value-size setting: reading with another
    // setting must flag every value as wrong.
    let (output, report) = loadgen(&format!(
        "--protocol redis --target {target} --requests 50 -c 1 --ratio 0:1 --keys 500 --verify --value-size 300"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    assert_eq!(u64_at(&report, "/totals/errors_by_kind/verify"), 50, "{report:#}");
}

#[test]
fn memcache_counts_match_the_servers_stats() {
    let memcached = start_memcached();
    let target = format!("127.0.0.1:{}", memcached.port);
    let (output, report) = loadgen(&format!(
        "--protocol memcache --target {target} --duration 2 -c 3 -P 8 --ratio 1:2 --mget 4 --keys 2000 --distribution zipf --verify"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    let stats = memcached_stats(memcached.port);
    let stat = |name: &str| calls(&stats, name);
    let mgets = u64_at(&report, "/ops/mget/count");
    let sets = u64_at(&report, "/ops/set/count");
    let hits = u64_at(&report, "/ops/mget/hits");
    let misses = u64_at(&report, "/ops/mget/misses");
    assert!(mgets > 100, "too little traffic: {report:#}");
    // memcached counts every key of a multi-get.
    assert_eq!(stat("cmd_get"), mgets * 4, "{stats:?}");
    assert_eq!(stat("get_hits"), hits, "{stats:?}");
    assert_eq!(stat("get_misses"), misses, "{stats:?}");
    assert_eq!(stat("cmd_set"), sets, "{stats:?}");
    assert!(hits > 0 && misses > 0, "no prefill: both hits and misses expected");
    assert_eq!(u64_at(&report, "/totals/errors"), 0, "{report:#}");
}

/// Meta mode: `mg`/`ms` (and quiet `mg ... q` lines ended by `mn` for multi-key reads), counted by memcached as
/// gets and sets; in open loop too, where latency is measured from the intended send as for the text protocol.
#[test]
fn memcache_meta_counts_match_the_servers_stats() {
    let memcached = start_memcached();
    let target = format!("127.0.0.1:{}", memcached.port);
    let (output, report) = loadgen(&format!(
        "--protocol memcache-meta --target {target} --duration 2 -c 3 -P 8 --ratio 1:2 --mget 4 --keys 2000 --distribution zipf --verify"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    assert_eq!(report["parameters"]["protocol"], "memcache-meta", "{report:#}");
    let stats = memcached_stats(memcached.port);
    let mgets = u64_at(&report, "/ops/mget/count");
    let sets = u64_at(&report, "/ops/set/count");
    let hits = u64_at(&report, "/ops/mget/hits");
    let misses = u64_at(&report, "/ops/mget/misses");
    assert!(mgets > 100, "too little traffic: {report:#}");
    assert_eq!(calls(&stats, "cmd_get"), mgets * 4, "{stats:?}");
    assert_eq!(calls(&stats, "get_hits"), hits, "{stats:?}");
    assert_eq!(calls(&stats, "get_misses"), misses, "{stats:?}");
    assert_eq!(calls(&stats, "cmd_set"), sets, "{stats:?}");
    assert!(hits > 0 && misses > 0, "no prefill: both hits and misses expected");
    assert_eq!(u64_at(&report, "/totals/errors"), 0, "{report:#}");

    let (output, report) = loadgen(&format!(
        "--protocol memcache-meta --target {target} --duration 2 -c 2 --rate 1000 --ratio 1:1 --keys 100 --prefill --verify"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    assert_eq!(report["parameters"]["mode"], "open");
    let completed = u64_at(&report, "/totals/count");
    assert!((1800..=2200).contains(&completed), "offered 2000 in 2 s, got {completed}");
    assert_eq!(u64_at(&report, "/ops/get/hits"), u64_at(&report, "/ops/get/count"), "prefilled: every read hits");
    assert_eq!(u64_at(&report, "/totals/errors"), 0, "{report:#}");
}

#[test]
fn open_loop_holds_the_rate_and_writes_histograms() {
    let redis = start_redis();
    let target = format!("127.0.0.1:{}", redis.port);
    let prefix = scratch_file("hdr");
    let prefix = prefix.to_str().expect("utf-8 temp path");
    let (output, report) = loadgen(&format!(
        "--protocol redis --target {target} --duration 2 -c 4 --rate 2000 --arrival poisson --ratio 1:1 --hdr-prefix {prefix}"
    ));
    assert_success(&output);
    let report = report.expect("a JSON report");
    let completed = u64_at(&report, "/totals/count");
    assert!((3600..=4400).contains(&completed), "offered 4000 in 2 s, got {completed}");
    assert_eq!(report["parameters"]["mode"], "open");
    let stats = redis_command_calls(redis.port);
    assert_eq!(calls(&stats, "get") + calls(&stats, "set"), completed);
    for op in ["get", "set"] {
        for suffix in ["hgrm", "service.hgrm"] {
            let path = format!("{prefix}.{op}.{suffix}");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let parsed = ferrule::histogram::parse_hgrm(&text).expect("valid .hgrm");
            assert_eq!(parsed.count(), u64_at(&report, &format!("/ops/{op}/count")));
            let _ = std::fs::remove_file(&path);
        }
        let path = format!("{prefix}.{op}.hlog");
        let log = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let intervals = ferrule::histogram::read_interval_log(&log).expect("valid .hlog");
        assert!(intervals.len() >= 2, "one interval per second");
        let logged: u64 = intervals.iter().map(|i| i.histogram.len()).sum();
        assert_eq!(logged, u64_at(&report, &format!("/ops/{op}/count")));
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_dead_target_is_counted_not_fatal() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let (output, report) = loadgen(&format!("--protocol memcache --target {target} --duration 1 -c 2 --timeout 200"));
    assert!(started.elapsed() < Duration::from_secs(10), "must not hang");
    assert_eq!(output.status.code(), Some(2), "exit 2: no request got a reply");
    let report = report.expect("a JSON report even when everything failed");
    assert!(u64_at(&report, "/connect_errors") >= 2, "{report:#}");
    assert_eq!(u64_at(&report, "/totals/count"), 0);
}
