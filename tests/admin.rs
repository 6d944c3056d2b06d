//! The admin endpoint's guards and sockets: cross-site requests and the admin token on the mutating routes, binding
//! with SO_REUSEADDR (a restart right after a scrape keeps /health), and an admin port in use is a start-up error.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An HTTP request with extra header lines: (status code, head, body).
fn request(port: u16, method: &str, path: &str, headers: &[&str]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_string(), body.to_string())
}

fn body(port: u16, redis_port: u16) -> String {
    format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{redis_port}:1")], "")
    )
}

#[test]
fn mutating_routes_refuse_cross_site_requests_and_require_the_token_when_set() {
    let redis = redis_server();
    let port = free_port();
    let f = Ferrule::start(&body(port, redis.port), port);
    let admin = f.admin_port;

    // A browser form posted from another site carries its Origin / Sec-Fetch-Site: refused, nothing reloaded.
    for headers in [
        &["Origin: https://evil.example"][..],
        &["Origin: null"],
        &["Sec-Fetch-Site: cross-site"],
        &["Origin: http://127.0.0.1:1", "Sec-Fetch-Site: same-site"],
    ] {
        let (code, _, why) = request(admin, "POST", "/reload", headers);
        assert_eq!(code, 403, "{headers:?}: {why}");
        assert!(why.contains("refused"), "{why}");
    }
    let (code, _, why) = request(admin, "POST", "/histograms/dump", &["Origin: https://evil.example"]);
    assert_eq!(code, 403, "{why}");
    assert!(!f.log().contains("reload (POST /reload)"), "a refused request must not reload");
    // Tools (no browser headers) and same-origin pages may.
    assert_eq!(request(admin, "POST", "/reload", &[]).0, 200);
    let same = format!("Origin: http://127.0.0.1:{admin}");
    assert_eq!(request(admin, "POST", "/reload", &[&same, "Sec-Fetch-Site: same-origin"]).0, 200);
    // Reading stays open to cross-site requests: a browser cannot read the answer anyway.
    assert_eq!(request(admin, "GET", "/health", &["Origin: https://evil.example"]).0, 200);

    // proxy.admin_token, applied by a reload.
    let with_token = body(port, redis.port);
    std::fs::write(
        &f.config_path,
        f.header.replace("[proxy]\n", "[proxy]\nadmin_token = \"s3cret-token\"\n") + &with_token,
    )
    .unwrap();
    assert_eq!(request(admin, "POST", "/reload", &[]).0, 200);
    let (code, head, why) = request(admin, "POST", "/reload", &[]);
    assert_eq!(code, 401, "{why}");
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    assert!(why.contains("Authorization: Bearer"), "{why}");
    assert_eq!(request(admin, "POST", "/reload", &["Authorization: Bearer wrong"]).0, 401);
    assert_eq!(request(admin, "POST", "/histograms/dump", &[]).0, 401);
    assert_eq!(request(admin, "POST", "/reload", &["Authorization: Bearer s3cret-token"]).0, 200);
    // A valid token does not let another site's page in.
    let (code, _, _) =
        request(admin, "POST", "/reload", &["Authorization: Bearer s3cret-token", "Origin: https://evil.example"]);
    assert_eq!(code, 403);
    // The read-only routes need no token, and /config masks it.
    assert_eq!(request(admin, "GET", "/health", &[]).0, 200);
    let (code, _, config) = request(admin, "GET", "/config", &[]);
    assert_eq!(code, 200);
    assert!(config.contains("admin_token = \"********\"") && !config.contains("s3cret-token"), "{config}");
}

/// Starts ferrule on `config` (a whole file) and waits until it is ready.
fn start_raw(config: &str, tag: &str) -> (Proc, std::path::PathBuf) {
    let dir = tempdir(tag);
    let path = dir.join("ferrule.toml");
    std::fs::write(&path, config).unwrap();
    let log_path = dir.join("ferrule.log");
    let child = Command::new(ferrule_bin())
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let proc = Proc::new(child, 0, tag).with_dir(dir);
    assert!(
        eventually(STARTUP_TIMEOUT, || std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains(" ready: "))),
        "ferrule did not start: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    (proc, log_path)
}

#[test]
fn a_restart_right_after_scrapes_binds_the_admin_port_again() {
    let redis = redis_server();
    let port = free_port();
    let admin = free_port();
    let stats = free_port();
    let config = format!(
        "[proxy]\nworkers = 1\nadmin = \"127.0.0.1:{admin}\"\nstats_port = {stats}\nshutdown_timeout_ms = 500\n\n{}",
        body(port, redis.port)
    );
    let (mut first, _) = start_raw(&config, "rebind1");
    // The proxy closes each admin and stats connection first, so each leaves a TIME_WAIT socket on its port.
    for _ in 0..5 {
        assert_eq!(http(admin, "GET", "/metrics").0, 200);
        let mut s = TcpStream::connect(("127.0.0.1", stats)).unwrap();
        let mut json = String::new();
        s.read_to_string(&mut json).unwrap();
        assert!(json.contains("\"service\""), "{json}");
    }
    first.signal(libc::SIGTERM);
    first.child.wait().unwrap();

    let (mut second, log) = start_raw(&config, "rebind2");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Address already in use"), "{text}");
    assert_eq!(http(admin, "GET", "/health"), (200, "ok\n".to_string()));
    let mut s = TcpStream::connect(("127.0.0.1", stats)).unwrap();
    let mut json = String::new();
    s.read_to_string(&mut json).unwrap();
    assert!(json.contains("\"service\""), "{json}");

    // After a crash too: the kernel keeps the dead process's listening sockets a moment, start-up waits for them.
    second.signal(libc::SIGKILL);
    second.child.wait().unwrap();
    let (_third, _) = start_raw(&config, "rebind3");
    assert_eq!(http(admin, "GET", "/health"), (200, "ok\n".to_string()));
}

/// Starts ferrule on `config` and expects it to exit 1 within seconds, saying `what` cannot bind `addr`.
fn expect_start_failure(config: &str, what: &str, addr: &str) {
    let dir = tempdir("adminbusy");
    let path = dir.join("ferrule.toml");
    std::fs::write(&path, config).unwrap();
    let mut child =
        Command::new(ferrule_bin()).arg("-c").arg(&path).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferrule kept running although its {what} cannot have {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(what) && err.contains(addr), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
}

#[test]
fn an_admin_or_stats_port_in_use_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{busy}");
    let config = |line: &str| format!("[proxy]\nworkers = 1\n{line}\n\n{}", body(free_port(), 6379));
    expect_start_failure(&config(&format!("admin = \"{addr}\"")), "admin endpoint (proxy.admin)", &addr);
    expect_start_failure(
        &config(&format!("admin = \"off\"\nstats_port = {busy}")),
        "stats port (proxy.stats_port)",
        &addr,
    );

    // A second ferrule may not share a running one's admin port (it would answer half of its /health and /reload).
    let redis = redis_server();
    let port = free_port();
    let first = Ferrule::start(&body(port, redis.port), port);
    let addr = format!("127.0.0.1:{}", first.admin_port);
    expect_start_failure(&config(&format!("admin = \"{addr}\"")), "admin endpoint (proxy.admin)", &addr);
    assert_eq!(first.admin("GET", "/health").0, 200);
}

#[test]
fn a_reload_that_a_worker_does_not_confirm_answers_503_naming_the_worker() {
    let redis = redis_server();
    let port = free_port();
    // The debug build's test hook: worker 1 takes 6.5 s over each reload, past control's 5 s wait for confirmations.
    let f = Ferrule::start_under(
        &["env", "FERRULE_TEST_RELOAD_STALL=1:6500"],
        &body(port, redis.port),
        port,
        2,
        "shutdown_timeout_ms = 1000\n",
        &[],
    );
    let started = Instant::now();
    let (code, msg) = f.admin("POST", "/reload");
    assert_eq!(code, 503, "a reload that a worker did not confirm must not answer success: {msg}");
    assert!(msg.starts_with("reload not confirmed: worker 1 of 2 did not confirm the new config within 5 s"), "{msg}");
    assert!(started.elapsed() >= Duration::from_secs(5), "answered before the ack timeout: {:?}", started.elapsed());
    assert!(f.log().contains("reload (POST /reload): worker 1 of 2 did not confirm"), "{}", f.log());
    // The late worker catches up, and the proxy keeps serving on both workers.
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
}

/// Connects and sends a request in two pieces, the second after a pause; (status code, body) of what comes back.
fn request_in_pieces(port: u16, path: &str) -> Result<(u16, String), std::io::Error> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\n").as_bytes())?;
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

#[test]
fn over_its_connection_bound_the_admin_endpoint_reads_the_request_then_answers_503() {
    let redis = redis_server();
    let port = free_port();
    let f = Ferrule::start_opts(&body(port, redis.port), port, 1, "admin_max_connections = 2\n", &[]);
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", f.admin_port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // Answered and closed before the request was read, the client's second piece meets a reset and the 503 is lost.
    let answer = request_in_pieces(f.admin_port, "/health");
    let (code, msg) = answer.expect("the client must see the 503, not a reset");
    assert_eq!(code, 503, "{msg}");
    assert!(msg.contains("too many admin connections (proxy.admin_max_connections)"), "{msg}");
    drop(idle);
    assert!(
        eventually(Duration::from_secs(5), || f.admin("GET", "/health") == (200, "ok\n".to_string())),
        "the endpoint does not answer again once connections are free"
    );
}
