//! Clients that do not read, and big requests: neither may hurt other clients, fail a healthy server, or leave
//! memory behind.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Resident memory of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024
}

/// A value from the metrics text: the sum of every sample of `name` (over its labels).
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn one_server(timeout_ms: u64, proxy_extra: &str) -> (Proc, Ferrule, u16) {
    let redis = redis_server();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{}:1", redis.port)],
            &format!("timeout_ms = {timeout_ms}\nauto_eject_hosts = true\nserver_failure_limit = 1\n")
        )
    );
    let f = Ferrule::start_opts(&body, port, 1, &format!("shutdown_timeout_ms = 2000\n{proxy_extra}"), &[]);
    (redis, f, port)
}

/// A client that pipelines `GET big` (1 MiB) and never reads a byte: its sends block once the proxy stops reading
/// it; it ends when the proxy closes it (a send fails) or when time is up.
fn greedy(port: u16, run_for: Duration) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        let batch = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(64);
        let end = Instant::now() + run_for;
        while Instant::now() < end {
            match s.write(&batch) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true, // closed by the proxy
            }
        }
        false
    })
}

#[test]
fn a_client_that_never_reads_hurts_nobody() {
    // A timeout the reading client's requests cannot reach on a loaded machine (400 ms could: a false timeout
    // ejects the server here), while one held up behind the greedy client would reach it and fail.
    let (_redis, f, port) = one_server(2000, "");
    let pid = f.proc.child.id();
    let mut c = Client::connect(port);
    let value = "v".repeat(1 << 20);
    assert_eq!(c.redis_str(&["SET", "big", &value]), "+OK\r\n");
    let base = rss_mib(pid);

    let g = greedy(port, Duration::from_secs(6));
    let start = Instant::now();
    let (mut worst, mut peak, mut n) = (Duration::ZERO, base, 0u32);
    while start.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let key = format!("k{n}");
        let set = c.redis_str(&["SET", &key, &n.to_string()]);
        assert_eq!(set, "+OK\r\n", "request {n} after {:?}; log:\n{}", t.elapsed(), f.log());
        let got = c.redis_str(&["GET", &key]);
        assert_eq!(got, format!("${}\r\n{n}\r\n", n.to_string().len()), "request {n}");
        worst = worst.max(t.elapsed());
        peak = peak.max(rss_mib(pid));
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let closed = g.join().unwrap();
    let (_, metrics) = f.admin("GET", "/metrics");
    let log = f.log();
    assert!(!log.contains("timed out"), "a slow client is not a server timeout:\n{log}");
    assert!(!log.contains("ejecting"), "a healthy server is never ejected:\n{log}");
    assert_eq!(metric_sum(&metrics, "ferrule_server_ejections_total"), 0, "{metrics}");
    assert_eq!(metric_sum(&metrics, "ferrule_server_timeouts_total"), 0, "{metrics}");
    // A round trip held up behind the greedy client would wait for the timeout (2 s) and fail; a healthy one takes a
    // few ms, or a few hundred on a loaded machine.
    assert!(worst < Duration::from_millis(1500), "the reading client waited {worst:?} for one round trip");
    assert!(n > 20, "only {n} round trips in 4 s");
    assert!(peak < base + 100, "RSS grew from {base} MiB to {peak} MiB with a non-reading client");
    // With the default bounds it is throttled, not closed: a few replies in flight, a few MiB held.
    assert!(!closed, "throttled, not closed");
    assert!(metric_sum(&metrics, "ferrule_client_backpressure_total") >= 1, "{metrics}");
}

#[test]
fn a_client_over_its_buffer_cap_is_closed_and_others_carry_on() {
    let (_redis, f, port) = one_server(1000, "client_max_buffered_bytes = 4194304\n");
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["SET", "big", &"v".repeat(1 << 20)]), "+OK\r\n");
    let g = greedy(port, Duration::from_secs(5));
    assert!(g.join().unwrap(), "the non-reading client was closed");
    // The replies still on their way to it were dropped; this client gets its own, in order.
    for i in 0..20 {
        assert_eq!(c.redis_str(&["SET", &format!("k{i}"), &i.to_string()]), "+OK\r\n");
        assert_eq!(c.redis(&["GET", "big"]).len(), (1 << 20) + 12, "GET {i} after the close");
        assert_eq!(c.redis_str(&["GET", &format!("k{i}")]), format!("${}\r\n{i}\r\n", i.to_string().len()));
    }
    let (_, metrics) = f.admin("GET", "/metrics");
    assert_eq!(metric_sum(&metrics, "ferrule_client_buffer_limit_closes_total"), 1, "{metrics}");
    assert_eq!(metric_sum(&metrics, "ferrule_client_buffers_full_closes_total"), 0, "{metrics}");
    let log = f.log();
    assert!(log.contains("that does not read its replies") && log.contains("client_max_buffered_bytes"), "{log}");
}

#[test]
fn the_worker_wide_buffer_bound_closes_the_client_over_it() {
    // Each client may hold 64 MiB (the default), but all clients of the worker together only 4 MiB.
    let (_redis, f, port) = one_server(1000, "client_buffers_max_bytes = 4194304\n");
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["SET", "big", &"v".repeat(1 << 20)]), "+OK\r\n");
    let g = greedy(port, Duration::from_secs(5));
    assert!(g.join().unwrap(), "the non-reading client was closed");
    for i in 0..20 {
        assert_eq!(c.redis_str(&["GET", "big"]).len(), (1 << 20) + 12, "GET {i} after the close");
    }
    let (_, metrics) = f.admin("GET", "/metrics");
    assert_eq!(metric_sum(&metrics, "ferrule_client_buffers_full_closes_total"), 1, "{metrics}");
    assert_eq!(metric_sum(&metrics, "ferrule_client_buffer_limit_closes_total"), 0, "{metrics}");
}

#[test]
fn memory_comes_back_after_big_requests_and_replies() {
    let (_redis, f, port) = one_server(5000, "");
    let pid = f.proc.child.id();
    let mut c = Client::connect(port);
    // 128 MiB through a debug build on a loaded 2-CPU machine can take longer than the helper's 10 s read timeout.
    c.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(c.redis_str(&["SET", "small", "x"]), "+OK\r\n");
    let base = rss_mib(pid);
    let big = "v".repeat(128 << 20);
    for i in 0..2 {
        // A big SET from a client that then closes...
        let mut setter = Client::connect(port);
        setter.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        assert_eq!(setter.redis_str(&["SET", &format!("big{i}"), &big]), "+OK\r\n");
        drop(setter);
    }
    // ...and a big GET by a client that stays connected.
    assert_eq!(c.redis(&["GET", "big0"]).len(), (128 << 20) + 14);
    assert_eq!(c.redis_str(&["GET", "small"]), "$1\r\nx\r\n");
    let settled = eventually(Duration::from_secs(15), || rss_mib(pid) < base + 64);
    assert!(settled, "RSS {} MiB after the big requests, {base} MiB before", rss_mib(pid));
}

/// A fake server that answers two pipelined GETs: the first with 1 MB sent in ten pieces over about 2.5 s, then
/// the second at once.
fn slow_streaming_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while seen.windows(3).filter(|w| w == b"GET").count() < 2 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"$1000000\r\n");
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(250));
                let _ = s.write_all(&[b'v'; 100_000]);
            }
            let _ = s.write_all(b"\r\n$1\r\ny\r\n");
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    port
}

#[test]
fn a_server_streaming_a_big_reply_is_not_timed_out() {
    // The reply takes 2.5 s, far over timeout_ms, but the server sends all along: neither request times out, and
    // the server is not failed. (tests/faults.rs checks that a server stalling mid-reply still times out.) The gaps
    // (250 ms) leave timeout_ms (1 s) room for a fake server thread or a proxy delayed by a loaded machine.
    let fake = slow_streaming_server();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{fake}:1")], "timeout_ms = 1000")
    );
    let f = Ferrule::start(&body, port);
    let mut c = Client::connect(port);
    let t = Instant::now();
    c.send(b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n*2\r\n$3\r\nGET\r\n$1\r\ny\r\n");
    let first = c.redis_reply();
    assert!(first.starts_with(b"$1000000\r\nvvv"), "{:?}", String::from_utf8_lossy(&first[..first.len().min(200)]));
    assert_eq!(first.len(), 1_000_000 + 12);
    assert_eq!(c.redis_reply(), b"$1\r\ny\r\n");
    assert!(t.elapsed() >= Duration::from_millis(2200), "the fake server did stream slowly");
    let (_, metrics) = f.admin("GET", "/metrics");
    assert_eq!(metric_sum(&metrics, "ferrule_server_timeouts_total"), 0, "{metrics}");
}
