//! Observability end to end: known traffic through ferrule to real redis-server and memcached backends, then the
//! figures read back through every output: Prometheus text (parsed), twemproxy JSON (admin and raw stats port),
//! percentile JSON, `.hgrm` dumps (POST and SIGUSR1), interval logs, redis INFO, memcache `stats`, `ferrule hist`.

mod common;
use common::*;

use ferrule::protocol::memcache::Command as Mc;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

// ------------------------------------------------------------------------------------------------ Prometheus parser

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y\"z"}` starting after the `{`; returns the labels and the rest after `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let name = &s[..eq];
        if !valid_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        s = s[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        s = &s[end + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

/// Parses the text exposition format strictly enough to catch what a Prometheus server would reject: every sample
/// belongs to a family declared by `# TYPE` before it, names are valid, a series appears once, counters end in
/// `_total`, histogram buckets are cumulative and end with `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let ctx = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(valid_name(name), "{}", ctx("bad family name".into()));
            if kind == "TYPE" {
                let t = parts.next().unwrap_or_default();
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&t), "{}", ctx(t.into()));
                if t == "counter" {
                    assert!(name.ends_with("_total"), "{}", ctx("counter without _total".into()));
                }
                assert!(types.insert(name.to_owned(), t.to_owned()).is_none(), "{}", ctx("TYPE twice".into()));
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{}", ctx("no value".into())));
        let name = &line[..name_end];
        assert!(valid_name(name), "{}", ctx("bad metric name".into()));
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end + 1..]).unwrap_or_else(|e| panic!("{}", ctx(e)))
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value_text = rest.trim().split(' ').next().unwrap_or_default();
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{}", ctx("bad value".into()))),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "{}", ctx("sample before its # TYPE".into()));
        assert!(seen.insert(format!("{name}{labels:?}")), "{}", ctx("series twice".into()));
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    check_histograms(&samples, &types);
    samples
}

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let buckets: Vec<&Sample> = samples.iter().filter(|s| s.name == format!("{family}_bucket")).collect();
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for b in &buckets {
            let mut key = b.labels.clone();
            let le: f64 = match key.remove("le").expect("bucket has le").as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("le is a number"),
            };
            series.entry(format!("{key:?}")).or_default().push((le, b.value));
        }
        for (key, points) in series {
            assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family}{key} not cumulative");
            let (last_le, last) = *points.last().unwrap();
            assert!(last_le.is_infinite(), "{family}{key} has no +Inf bucket");
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && format!("{:?}", without_le(&s.labels)) == key)
                .unwrap_or_else(|| panic!("{family}{key} has no _count"));
            assert_eq!(count.value, last, "{family}{key}: +Inf bucket != _count");
        }
    }
}

fn without_le(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The value of the series `name` with exactly `labels`, 0 when absent.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|s| s.name == name && s.labels == want).map_or(0.0, |s| s.value)
}

/// Sum of every series of `name` whose labels include `labels`.
fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
        .sum()
}

fn scrape(f: &Ferrule) -> Vec<Sample> {
    let (code, body) = f.admin("GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    parse_prometheus(&body)
}

fn json(f: &Ferrule, path: &str) -> serde_json::Value {
    let (code, body) = f.admin("GET", path);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

const POOL_FIELDS: [&str; 6] =
    ["client_eof", "client_err", "client_connections", "server_ejects", "forward_error", "fragments"];
/// ferrule's own server fields, after nutcracker's: dedicated and subscriber connections (0 on memcache pools).
const FERRULE_SERVER_FIELDS: [&str; 6] = [
    "dedicated_in_use",
    "dedicated_idle",
    "subscriber_connections",
    "dedicated_opened",
    "subscribers_opened",
    "dedicated_refused",
];

const SERVER_FIELDS: [&str; 13] = [
    "server_eof",
    "server_err",
    "server_timedout",
    "server_connections",
    "server_ejected_at",
    "requests",
    "request_bytes",
    "responses",
    "response_bytes",
    "in_queue",
    "in_queue_bytes",
    "out_queue",
    "out_queue_bytes",
];

/// Checks the twemproxy layout: the top-level keys, then exactly the pool fields plus one object per server with
/// exactly the server fields.
fn assert_twemproxy_layout(v: &serde_json::Value, pools: &[(&str, &[String])]) {
    for key in ["service", "source", "version", "uptime", "timestamp", "total_connections", "curr_connections"] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["service"], "ferrule");
    for (pool, servers) in pools {
        let p = v[pool].as_object().unwrap_or_else(|| panic!("pool {pool} missing: {v}"));
        for f in POOL_FIELDS {
            assert!(p[f].is_u64(), "pool field {f}: {v}");
        }
        assert_eq!(p.len(), POOL_FIELDS.len() + servers.len(), "pool keys: {p:?}");
        for s in servers.iter() {
            let s = p[s.as_str()].as_object().unwrap_or_else(|| panic!("server {s} missing: {v}"));
            let mut keys: Vec<&str> = s.keys().map(String::as_str).collect();
            keys.sort();
            let mut want = SERVER_FIELDS.to_vec();
            want.extend(FERRULE_SERVER_FIELDS);
            want.sort();
            assert_eq!(keys, want);
        }
    }
}

fn raw_stats_port(port: u16) -> serde_json::Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the stats port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the stats port writes JSON and closes");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ferrule_hist(args: &[&Path], extra: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(ferrule_bin())
        .arg("hist")
        .args(args)
        .args(extra)
        .output()
        .expect("run ferrule hist");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hgrm_count(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ferrule::histogram::parse_hgrm(&text).unwrap().count()
}

fn hlog_count(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(path) else { return 0 };
    ferrule::histogram::read_interval_log(&bytes).map_or(0, |v| v.iter().map(|i| i.histogram.len()).sum())
}

// ------------------------------------------------------------------------------------------------ redis

/// Waits until the harness's readiness probe (a connection opened and closed) is counted, so counts taken after
/// this only move with the test's own traffic.
fn settle(f: &Ferrule, listener: &str) {
    let l = [("listener", listener)];
    let settled = eventually(Duration::from_secs(5), || {
        let m = scrape(f);
        metric(&m, "ferrule_client_connections_accepted_total", &l) >= 1.0
            && metric(&m, "ferrule_client_connections", &l) == 0.0
    });
    assert!(settled, "the readiness probe connection was not counted");
}

/// `per_server` keys on each of the pool's two servers, in an interleaved order.
fn keys_on_every_server(config_text: &str, pool: &str, per_server: usize) -> Vec<String> {
    let candidates: Vec<String> = (0..1000).map(|i| format!("spread:{i}")).collect();
    let placement = expected_placement(config_text, pool, &|_| true, &candidates);
    let mut ports: Vec<u16> = placement.clone();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 2, "two servers");
    let mut keys = Vec::new();
    for i in 0..per_server {
        for port in &ports {
            let key = candidates.iter().zip(&placement).filter(|(_, p)| *p == port).nth(i).expect("enough keys");
            keys.push(key.0.clone());
        }
    }
    keys
}

struct RedisSetup {
    _backends: Vec<Proc>,
    f: Ferrule,
    port: u16,
    stats_port: u16,
    hist_dir: TempDir,
    servers: Vec<String>,
    body: String,
}

fn redis_setup(workers: usize, proxy_extra: &str) -> RedisSetup {
    let backends = vec![redis_server(), redis_server()];
    let specs: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let stats_port = free_port();
    let hist_dir = tempdir("hist");
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        // Not reached by a live server on a loaded machine (a false timeout would change every count below).
        redis_pool_toml("main", &specs, "timeout_ms = 1000\n")
    );
    let extra = format!(
        "shutdown_timeout_ms = 2000\nstats_port = {stats_port}\nhistogram_dir = \"{}\"\nhistogram_interval_s = 1\n{proxy_extra}",
        hist_dir.display()
    );
    let f = Ferrule::start_opts(&body, port, workers, &extra, &[]);
    settle(&f, "cache");
    let servers = backends.iter().map(|b| format!("127.0.0.1:{}", b.port)).collect();
    RedisSetup { _backends: backends, f, port, stats_port, hist_dir, servers, body }
}

#[test]
fn redis_traffic_is_counted_everywhere() {
    let s = redis_setup(2, "");
    let before = scrape(&s.f);
    let cache = [("listener", "cache")];
    let accepted_before = metric(&before, "ferrule_client_connections_accepted_total", &cache);
    let eof_before = metric(&before, "ferrule_client_eof_total", &cache);

    let mut c = Client::connect(s.port);
    for i in 0..20 {
        assert_eq!(c.redis_str(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
    }
    for i in 0..30 {
        assert_eq!(c.redis_str(&["GET", &format!("k{}", i % 20)]), "$1\r\nv\r\n");
    }
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
    for _ in 0..2 {
        assert!(c.redis_str(&["NOSUCHCOMMAND", "x"]).starts_with("-ERR unknown command"));
    }
    // One MGET over keys on both servers: split into one fragment per server, counted as one request.
    let keys = keys_on_every_server(&s.f.config_text(&s.body), "main", 5);
    let fragments = 2;
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert!(c.redis_str(&mget).starts_with("*10\r\n"));
    drop(c);

    assert!(
        eventually(Duration::from_secs(5), || {
            metric(&scrape(&s.f), "ferrule_client_eof_total", &cache) >= eof_before + 1.0
        }),
        "the closed client is counted"
    );
    let m = scrape(&s.f);
    let cmd = |c: &'static str| [("listener", "cache"), ("command", c)];
    assert_eq!(metric(&m, "ferrule_requests_total", &cmd("set")), 20.0);
    assert_eq!(metric(&m, "ferrule_requests_total", &cmd("get")), 30.0);
    assert_eq!(metric(&m, "ferrule_requests_total", &cmd("ping")), 1.0);
    assert_eq!(metric(&m, "ferrule_requests_total", &cmd("mget")), 1.0);
    assert_eq!(metric(&m, "ferrule_unknown_commands_total", &cache), 2.0);
    assert_eq!(metric(&m, "ferrule_fragments_total", &cache), fragments as f64);
    assert_eq!(metric(&m, "ferrule_request_duration_seconds_count", &cmd("get")), 30.0);
    assert_eq!(metric(&m, "ferrule_request_duration_seconds_count", &cmd("set")), 20.0);
    assert_eq!(metric(&m, "ferrule_request_duration_seconds_count", &cmd("mget")), 1.0);
    assert_eq!(metric(&m, "ferrule_request_duration_seconds_count", &cmd("ping")), 0.0, "local replies are not timed");
    let get_sum = metric(&m, "ferrule_request_duration_seconds_sum", &cmd("get"));
    assert!(get_sum > 0.0 && get_sum < 30.0, "sum of 30 loopback round trips in seconds: {get_sum}");
    assert_eq!(metric(&m, "ferrule_client_connections_accepted_total", &cache), accepted_before + 1.0);
    assert_eq!(metric(&m, "ferrule_client_eof_total", &cache), eof_before + 1.0);
    assert_eq!(metric_sum(&m, "ferrule_worker_requests_total", &[]), 20.0 + 30.0 + 1.0 + 2.0 + 1.0);
    // Every request forwarded reached a server exactly once.
    let forwarded = 20.0 + 30.0 + fragments as f64;
    assert_eq!(metric_sum(&m, "ferrule_server_requests_total", &[("pool", "main")]), forwarded);
    assert_eq!(metric_sum(&m, "ferrule_server_responses_total", &[("pool", "main")]), forwarded);
    assert_eq!(metric_sum(&m, "ferrule_server_duration_seconds_count", &[("pool", "main")]), forwarded);
    assert_eq!(metric(&m, "ferrule_pool_duration_seconds_count", &[("pool", "main")]), forwarded);
    // Connections are made on demand: the worker that served the client has one to each server.
    assert!(metric_sum(&m, "ferrule_server_connections", &[("pool", "main")]) >= 2.0);
    assert_eq!(metric(&m, "ferrule_workers", &[]), 2.0);
    assert_eq!(metric(&m, "ferrule_stats_enabled", &[]), 1.0);

    // twemproxy's JSON, on the admin endpoint and on the raw stats port.
    for v in [json(&s.f, "/stats"), raw_stats_port(s.stats_port)] {
        assert_twemproxy_layout(&v, &[("main", &s.servers)]);
        let pool = &v["main"];
        assert_eq!(pool["fragments"], fragments as u64);
        assert_eq!(pool["client_connections"], 0);
        assert!(pool["client_eof"].as_u64().unwrap() >= 1);
        let requests: u64 = s.servers.iter().map(|n| pool[n]["requests"].as_u64().unwrap()).sum();
        assert_eq!(requests, forwarded as u64);
        let bytes: u64 = s.servers.iter().map(|n| pool[n]["response_bytes"].as_u64().unwrap()).sum();
        assert!(bytes >= 20 * 5 + 30 * 7, "+OK and $1 v replies: {bytes}");
        assert!(v["total_connections"].as_u64().unwrap() >= 1);
    }

    // Percentiles.
    let h = json(&s.f, "/histograms");
    assert_eq!(h["unit"], "microseconds");
    assert_eq!(h["listeners"]["cache"]["get"]["count"], 30);
    assert_eq!(h["pools"]["main"]["count"], forwarded as u64);
    let get = &h["listeners"]["cache"]["get"];
    assert!(get["p50"].as_u64().unwrap() <= get["p99.9"].as_u64().unwrap());
    assert!(get["p99.99"].as_u64().unwrap() <= get["max"].as_u64().unwrap());

    // Cumulative dump on request; the files parse back with the right counts.
    let (code, body) = s.f.admin("POST", "/histograms/dump");
    assert_eq!(code, 200, "{body}");
    let get_hgrm = s.hist_dir.join("listener.cache.get.hgrm");
    assert!(body.contains("listener.cache.get.hgrm"), "{body}");
    assert_eq!(hgrm_count(&get_hgrm), 30);
    assert_eq!(hgrm_count(&s.hist_dir.join("listener.cache.set.hgrm")), 20);
    assert_eq!(hgrm_count(&s.hist_dir.join("pool.main.hgrm")), forwarded as u64);
    let server_files: u64 = s
        .servers
        .iter()
        .map(|n| hgrm_count(&s.hist_dir.join(format!("server.main.{}.hgrm", ferrule::stats::sanitize(n)))))
        .sum();
    assert_eq!(server_files, forwarded as u64);

    // SIGUSR1 writes them again.
    std::fs::remove_file(&get_hgrm).unwrap();
    s.f.proc.signal(libc::SIGUSR1);
    assert!(eventually(Duration::from_secs(5), || get_hgrm.exists()), "SIGUSR1 dumps");
    assert_eq!(hgrm_count(&get_hgrm), 30);

    // Interval logs (every second here) add up to the same counts.
    let get_hlog = s.hist_dir.join("listener.cache.get.hlog");
    assert!(
        eventually(Duration::from_secs(10), || hlog_count(&get_hlog) == 30),
        "interval log holds {} of 30",
        hlog_count(&get_hlog)
    );

    // ferrule hist reads both kinds, merges, plots.
    let svg = s.hist_dir.join("plot.svg");
    let set_hgrm = s.hist_dir.join("listener.cache.set.hgrm");
    let (ok, out, err) =
        ferrule_hist(&[&get_hgrm, &set_hgrm, &get_hlog], &["--plot", svg.to_str().unwrap(), "--title", "obs"]);
    assert!(ok, "{err}");
    let row =
        |name: &str| out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {out}")).to_owned();
    assert_eq!(row("listener.cache.get.hgrm").split_whitespace().nth(1), Some("30"));
    assert_eq!(row("listener.cache.set.hgrm").split_whitespace().nth(1), Some("20"));
    assert_eq!(row("listener.cache.get.hlog").split_whitespace().nth(1), Some("30"));
    assert_eq!(row("merged").split_whitespace().nth(1), Some("80"));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("listener.cache.get.hlog"));
    // A window past the end of the log holds nothing; a window on a .hgrm file is refused.
    let (ok, out, _) = ferrule_hist(&[&get_hlog], &["--from", "100000"]);
    assert!(ok);
    assert_eq!(row_count(&out, "listener.cache.get.hlog"), 0);
    let (ok, _, err) = ferrule_hist(&[&get_hgrm], &["--to", "5"]);
    assert!(!ok && err.contains("interval logs only"), "{err}");
}

fn row_count(table: &str, name: &str) -> u64 {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn redis_info_reports_the_whole_proxy() {
    let s = redis_setup(2, "");
    // Enough connections that both workers almost surely have some; INFO must count them all either way.
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(s.port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        for j in 0..5 {
            c.redis_str(&["SET", &format!("i{i}:{j}"), "x"]);
        }
    }
    let want_clients = clients.len();
    let info_of = |c: &mut Client| -> HashMap<String, String> {
        let text = c.redis_str(&["INFO", "everything"]);
        text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_owned(), v.trim().to_owned())).collect()
    };
    // Other workers' figures are published once a second.
    let ok = eventually(Duration::from_secs(5), || {
        let info = info_of(&mut clients[0]);
        info.get("connected_clients").map(String::as_str) == Some(&want_clients.to_string())
            && info.get("cmdstat_set").is_some_and(|v| v.starts_with("calls=40,"))
    });
    let info = info_of(&mut clients[0]);
    assert!(ok, "INFO: {info:?}");
    assert_eq!(info["ferrule_workers"], "2");
    assert!(info["total_commands_processed"].parse::<u64>().unwrap() >= 40);
    assert!(info.contains_key("worker"));
    assert!(info.contains_key("ferrule_version"));
    // INFO keyspace (a section the proxy does not have) is empty, as redis answers for unknown sections.
    assert_eq!(clients[0].redis_str(&["INFO", "keyspace"]), "$0\r\n\r\n");
}

#[test]
fn backend_failures_are_counted_as_twemproxy_does() {
    let s = redis_setup(1, "");
    let before = json(&s.f, "/stats");
    let mut c = Client::connect(s.port);
    assert_eq!(c.redis_str(&["SET", "warm", "1"]), "+OK\r\n");
    // Stop both servers: the next request times out (timeout_ms = 1000), which closes that connection.
    for b in &s._backends {
        b.signal(libc::SIGSTOP);
    }
    let reply = c.redis_str(&["GET", "warm"]);
    assert!(reply.contains("timed out"), "{reply}");
    for b in &s._backends {
        b.signal(libc::SIGCONT);
    }
    let v = json(&s.f, "/stats");
    let pool = &v["main"];
    let timeouts: u64 = s.servers.iter().map(|n| pool[n]["server_timedout"].as_u64().unwrap()).sum();
    assert_eq!(timeouts, 1, "{v}");
    assert_eq!(pool["forward_error"].as_u64().unwrap(), before["main"]["forward_error"].as_u64().unwrap() + 1);
    let m = scrape(&s.f);
    assert_eq!(metric(&m, "ferrule_request_failures_total", &[("listener", "cache"), ("command", "get")]), 1.0);
    assert_eq!(metric_sum(&m, "ferrule_server_timeouts_total", &[]), 1.0);
    // The failed request still has a latency: about the timeout.
    let h = json(&s.f, "/histograms");
    assert!(h["listeners"]["cache"]["get"]["max"].as_u64().unwrap() >= 950_000, "{h}");
}

/// The per-server request counters, summed over the pool's servers, from /metrics and from /stats.
fn server_requests(s: &RedisSetup) -> [(&'static str, u64); 6] {
    let m = scrape(&s.f);
    let sum = |name: &str| metric_sum(&m, name, &[("pool", "main")]) as u64;
    let v = json(&s.f, "/stats");
    let field = |f: &str| s.servers.iter().map(|n| v["main"][n][f].as_u64().unwrap()).sum::<u64>();
    [
        ("ferrule_server_requests_total", sum("ferrule_server_requests_total")),
        ("ferrule_server_responses_total", sum("ferrule_server_responses_total")),
        ("ferrule_server_errors_total", sum("ferrule_server_errors_total")),
        ("ferrule_server_failed_requests_total", sum("ferrule_server_failed_requests_total")),
        ("/stats requests", field("requests")),
        ("/stats responses", field("responses")),
    ]
}

#[test]
fn requests_on_dedicated_connections_are_counted_per_server() {
    let s = redis_setup(1, "");
    let before = server_requests(&s);
    let mut c = Client::connect(s.port);
    // A transaction: MULTI (sent when the first key names the server), SET and EXEC go on a dedicated connection.
    c.send(&[resp(&["MULTI"]), resp(&["SET", "{t}:a", "1"]), resp(&["EXEC"])].concat());
    for want in ["+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"] {
        assert_eq!(String::from_utf8_lossy(&c.redis_reply()), want);
    }
    // A blocking command that has its answer at once: one more, on the (reused) dedicated connection.
    assert_eq!(c.redis_str(&["RPUSH", "{t}:q", "job"]), ":1\r\n");
    assert_eq!(c.redis_str(&["BLPOP", "{t}:q", "1"]), "*2\r\n$5\r\n{t}:q\r\n$3\r\njob\r\n");
    // A client that leaves mid-transaction: its connection is closed by ferrule, which is no server fault, and
    // what it sent there stays counted.
    {
        let mut gone = Client::connect(s.port);
        gone.send(&[resp(&["MULTI"]), resp(&["INCR", "{t}:n"])].concat());
        assert_eq!(String::from_utf8_lossy(&gone.redis_reply()), "+OK\r\n");
        assert_eq!(String::from_utf8_lossy(&gone.redis_reply()), "+QUEUED\r\n");
    }
    // 3 + 1 (RPUSH, shared) + 1 (BLPOP) + 2 (MULTI and INCR of the client that left, which got both replies).
    let want = [7, 7, 0, 0, 7, 7];
    let counted = eventually(Duration::from_secs(5), || {
        let now = server_requests(&s);
        now.iter().zip(&before).zip(want).all(|(((_, n), (_, b)), w)| n - b == w)
    });
    let now = server_requests(&s);
    let delta: Vec<(&str, u64)> = now.iter().zip(&before).map(|((name, n), (_, b))| (*name, n - b)).collect();
    assert!(counted, "per-server counts grew by {delta:?}, want {want:?}");
    // They were dedicated connections indeed.
    let m = scrape(&s.f);
    assert!(metric_sum(&m, "ferrule_server_dedicated_opened_total", &[("pool", "main")]) >= 1.0);
}

#[test]
fn stats_off_keeps_connection_and_server_counters_only() {
    let s = redis_setup(1, "stats = false\n");
    let mut c = Client::connect(s.port);
    for i in 0..10 {
        assert_eq!(c.redis_str(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
    }
    let m = scrape(&s.f);
    assert_eq!(metric(&m, "ferrule_stats_enabled", &[]), 0.0);
    assert!(!m.iter().any(|x| x.name == "ferrule_requests_total"), "no per-command series");
    assert!(!m.iter().any(|x| x.name.starts_with("ferrule_request_duration_seconds")));
    assert_eq!(metric_sum(&m, "ferrule_server_requests_total", &[]), 10.0);
    assert_eq!(metric(&m, "ferrule_client_connections", &[("listener", "cache")]), 1.0);
    assert_eq!(metric_sum(&m, "ferrule_worker_requests_total", &[]), 10.0);
    let (code, body) = s.f.admin("POST", "/histograms/dump");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"written\":[]"), "nothing recorded, nothing written: {body}");
    assert_eq!(s.f.admin("GET", "/histograms/dump").0, 405);
    assert_eq!(s.f.admin("GET", "/nope").0, 404);
}

// ------------------------------------------------------------------------------------------------ memcache

#[test]
fn memcache_traffic_and_stats_command() {
    let backends = [memcached(), memcached()];
    let specs: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("mc", port, "memcache", "cache", ""),
        redis_pool_toml("cache", &specs, "protocol = \"memcache\"\n")
    );
    let f = Ferrule::start(&body, port);
    settle(&f, "mc");
    let keys = keys_on_every_server(&f.config_text(&body), "cache", 20);
    let fragments = 2;
    let mut c = Client::connect(port);
    for k in &keys {
        assert_eq!(c.mc(&format!("set {k} 0 0 1\r\nx\r\n"), Mc::Set), "STORED\r\n");
    }
    for k in keys.iter().take(15) {
        assert!(c.mc(&format!("get {k}\r\n"), Mc::Get).starts_with("VALUE"));
    }
    let reply = c.mc(&format!("get {}\r\n", keys.join(" ")), Mc::Get);
    assert_eq!(reply.matches("VALUE").count(), 40);
    c.send(b"set quiet 0 0 1 noreply\r\nq\r\n");

    let stats = c.mc("stats\r\n", Mc::Stats);
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("STAT {name} in {stats}"))
    };
    assert_eq!(stat("curr_connections"), 1);
    assert_eq!(stat("cmd_get"), 16);
    assert_eq!(stat("cmd_set"), 41);
    assert_eq!(stat("fragments"), fragments as u64);
    assert!(stats.contains("STAT version 1.6.0-ferrule-"));
    assert!(stats.ends_with("END\r\n"));

    let m = scrape(&f);
    let cmd = |c: &'static str| [("listener", "mc"), ("command", c)];
    assert_eq!(metric(&m, "ferrule_requests_total", &cmd("get")), 16.0);
    assert_eq!(metric(&m, "ferrule_requests_total", &cmd("set")), 41.0);
    assert_eq!(metric(&m, "ferrule_request_duration_seconds_count", &cmd("get")), 16.0, "a split get counts once");
    assert_eq!(metric(&m, "ferrule_request_duration_seconds_count", &cmd("set")), 40.0, "noreply is not timed");
    assert!(eventually(Duration::from_secs(5), || {
        metric_sum(&scrape(&f), "ferrule_server_requests_total", &[("pool", "cache")]) == 40.0 + 15.0 + 2.0 + 1.0
    }));
    let v = json(&f, "/stats");
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}", b.port)).collect();
    assert_twemproxy_layout(&v, &[("cache", &servers)]);
    assert_eq!(v["cache"]["fragments"], fragments as u64);
    assert_eq!(v["cache"]["client_connections"], 1);
}
