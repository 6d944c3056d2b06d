//! The data path's own io_uring (src/io/uring): values far larger than a receive buffer (and than the whole
//! provided-buffer pool), a client that stops reading its replies is paused instead of buffered without bound, and
//! many connections accepted and served at once.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn setup(workers: usize) -> (Vec<Proc>, Ferrule, u16) {
    setup_with(workers, "")
}

/// Like [`setup`], with extra `[proxy]` lines.
fn setup_with(workers: usize, proxy_extra: &str) -> (Vec<Proc>, Ferrule, u16) {
    let backends = vec![redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &servers, "hash = \"md5\"\ntimeout_ms = 10000")
    );
    let f = Ferrule::start_opts(&body, port, workers, &format!("shutdown_timeout_ms = 2000\n{proxy_extra}"), &[]);
    (backends, f, port)
}

fn value_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn set_command(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ferrule::protocol::redis::write_command(&mut out, &[b"SET", key.as_bytes(), value]);
    out
}

#[test]
fn values_larger_than_the_receive_buffer_pool_round_trip() {
    let (_backends, _f, port) = setup(1);
    let mut c = Client::connect(port);
    // Receive buffers are 16 KiB, 512 per worker: 12 MiB is more than the whole pool, so it arrives over many passes
    // with buffers recycled in between.
    let sizes = [1usize, 16 * 1024 - 1, 16 * 1024 + 1, 300_000, 3 << 20, 12 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        let key = format!("big:{i}");
        let value = value_of(len, i as u8);
        c.send(&set_command(&key, &value));
        assert_eq!(c.redis_reply(), b"+OK\r\n", "SET of {len} bytes");
        let reply = c.redis(&["GET", &key]);
        let header = format!("${len}\r\n");
        assert!(reply.starts_with(header.as_bytes()), "GET of {len} bytes: header {:?}", &reply[..reply.len().min(20)]);
        assert_eq!(&reply[header.len()..reply.len() - 2], &value[..], "GET of {len} bytes: the value changed");
    }
    // A split MGET whose fragments are megabytes each, reassembled in key order.
    let keys: Vec<String> = (0..sizes.len()).map(|i| format!("big:{i}")).collect();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(|k| k.as_str()));
    let reply = c.redis(&args);
    let mut expected = format!("*{}\r\n", sizes.len()).into_bytes();
    for (i, &len) in sizes.iter().enumerate() {
        expected.extend_from_slice(format!("${len}\r\n").as_bytes());
        expected.extend_from_slice(&value_of(len, i as u8));
        expected.extend_from_slice(b"\r\n");
    }
    assert!(reply == expected, "MGET of the large values differs ({} bytes, expected {})", reply.len(), expected.len());
}

#[test]
fn a_client_that_stops_reading_is_paused_not_buffered_without_bound() {
    let (_backends, f, port) = setup(1);
    let value_len = 4096;
    let mut c = Client::connect(port);
    c.send(&set_command("bp", &vec![b'v'; value_len]));
    assert_eq!(c.redis_reply(), b"+OK\r\n");
    // 40,000 pipelined GETs of a 4 KiB value (160 MiB of replies) from a client that reads nothing for two seconds.
    // ferrule must stop reading its requests once a few MiB of replies wait for it, not buffer them all.
    let commands = 40_000;
    let writer_stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader_stream = writer_stream.try_clone().unwrap();
    reader_stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let writer = std::thread::spawn(move || {
        let mut s = writer_stream;
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut cmd = Vec::new();
        ferrule::protocol::redis::write_command(&mut cmd, &[b"GET", b"bp"]);
        for _ in 0..commands {
            if s.write_all(&cmd).is_err() {
                return false;
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
        true
    });
    // Operators see it: the listener's backpressure counter moves once ferrule pauses the client (waited for: a
    // loaded machine may take a while to get there).
    let backpressure = || -> (u64, String) {
        let (status, metrics) = f.admin("GET", "/metrics");
        assert_eq!(status, 200);
        let paused = metrics
            .lines()
            .find(|l| l.starts_with("ferrule_client_backpressure_total{listener=\"cache\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (paused, metrics)
    };
    assert!(
        eventually(Duration::from_secs(30), || backpressure().0 >= 1),
        "ferrule_client_backpressure_total did not count the paused client:\n{}",
        backpressure().1
    );
    // Paused for two seconds more: buffering the replies instead would grow RSS by some 100 MiB meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let rss = ferrule_rss_kib(&f);
    assert!(
        rss < 80 * 1024,
        "ferrule's RSS grew to {rss} KiB for one client that reads nothing ({} GETs sent so far)",
        written.load(Ordering::Relaxed)
    );
    // Now read: every request is answered, in order, nothing lost while the client was paused.
    let reply_len = format!("${value_len}\r\n").len() + value_len + 2;
    let mut expected_reply = format!("${value_len}\r\n").into_bytes();
    expected_reply.extend_from_slice(&vec![b'v'; value_len]);
    expected_reply.extend_from_slice(b"\r\n");
    let mut pending = Vec::new();
    let mut replies = 0usize;
    let mut tmp = vec![0u8; 256 * 1024];
    while replies < commands {
        let n = reader_stream.read(&mut tmp).expect("reading replies");
        assert!(n > 0, "ferrule closed the connection after {replies} replies");
        pending.extend_from_slice(&tmp[..n]);
        let whole = pending.len() / reply_len * reply_len;
        assert!(pending[..whole].chunks(reply_len).all(|r| r == expected_reply), "a wrong reply after {replies}");
        replies += whole / reply_len;
        pending.drain(..whole);
    }
    assert!(pending.is_empty(), "bytes beyond the last reply");
    assert!(writer.join().unwrap(), "the writer failed");
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
}

fn ferrule_rss_kib(f: &Ferrule) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", f.proc.child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hundreds_of_connections_at_once_on_two_workers() {
    let (_backends, _f, port) = setup(2);
    let mut clients: Vec<Client> = (0..400).map(|_| Client::connect(port)).collect();
    // Every connection sends before any reads, so all are open and in flight together.
    for (i, c) in clients.iter_mut().enumerate() {
        let mut out = Vec::new();
        ferrule::protocol::redis::write_command(&mut out, &[b"SET", format!("conn:{i}").as_bytes(), b"x"]);
        ferrule::protocol::redis::write_command(&mut out, &[b"GET", format!("conn:{i}").as_bytes()]);
        c.send(&out);
    }
    for c in clients.iter_mut() {
        assert_eq!(c.redis_reply(), b"+OK\r\n");
        assert_eq!(c.redis_reply(), b"$1\r\nx\r\n");
    }
    drop(clients);
    // Closed connections are gone from the proxy's side too; new ones are served.
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["GET", "conn:7"]), "$1\r\nx\r\n");
}

fn open_fds(f: &Ferrule) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", f.proc.child.id())).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn clients_that_vanish_or_are_dismissed_leak_no_descriptors() {
    let (_backends, f, port) = setup(1);
    // Warm up: the backend connections exist from here on.
    let mut c = Client::connect(port);
    let mut warm = Vec::new();
    for i in 0..20 {
        ferrule::protocol::redis::write_command(&mut warm, &[b"GET", format!("k{i}").as_bytes()]);
    }
    c.send(&warm);
    for _ in 0..20 {
        c.redis_reply();
    }
    drop(c);
    // The baseline once ferrule closed its end of every client (the warm-up one, the start-up readiness probes).
    let clients_open = || {
        let (_, metrics) = f.admin("GET", "/metrics");
        metrics.lines().any(|l| l.starts_with("ferrule_client_connections{") && !l.ends_with(" 0"))
    };
    assert!(eventually(Duration::from_secs(10), || !clients_open()), "client connections stay open");
    let baseline = open_fds(&f);
    // Clients that send a pipeline (and half of a large SET) and then reset the connection without reading: the
    // replies arrive for nobody, receives are cancelled, sends may fail; every descriptor must still be closed.
    let big = set_command("half", &vec![b'x'; 200_000]);
    for round in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut out = warm.clone();
        if round % 3 == 0 {
            out.extend_from_slice(&big[..big.len() / 2]);
        }
        let _ = s.write_all(&out);
        if round % 2 == 0 {
            // SO_LINGER 0: close sends a reset instead of a FIN.
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(s);
    }
    // Clients that ask ferrule to close (QUIT, a protocol error) but keep their end open: ferrule closes its end
    // (after lingering for their unread input) even though the peer never does.
    let mut kept_open = Vec::new();
    for round in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request: &[u8] = if round % 2 == 0 { b"*1\r\n$4\r\nQUIT\r\n" } else { b"*1\r\n$x\r\n" };
        s.write_all(request).unwrap();
        kept_open.push(s);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut now_open = open_fds(&f);
    while now_open > baseline && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now_open = open_fds(&f);
    }
    assert!(
        now_open <= baseline,
        "ferrule holds {now_open} descriptors, {baseline} before 300 vanishing and 100 dismissed clients"
    );
    drop(kept_open);
    let mut c = Client::connect(port);
    assert_eq!(c.redis_str(&["PING"]), "+PONG\r\n");
    assert_eq!(c.redis_str(&["GET", "k1"]), "$-1\r\n");
}

#[test]
fn a_client_streaming_for_long_does_not_grow_the_proxy() {
    let (_backends, f, port) = setup(1);
    // 48 MiB of small pipelined SETs, written as fast as the proxy takes them while another thread reads the
    // replies as fast as they come: the unread input never runs out, which is when a receive buffer that only
    // forgets consumed bytes once it is empty would keep all 48 MiB.
    let mut chunk = Vec::new();
    for i in 0..1000 {
        ferrule::protocol::redis::write_command(&mut chunk, &[b"SET", format!("s{}", i % 10).as_bytes(), b"vvvv"]);
    }
    let chunks = (48 << 20) / chunk.len();
    let baseline_rss = ferrule_rss_kib(&f);
    let commands = chunks * 1000;
    let writer_stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader_stream = writer_stream.try_clone().unwrap();
    reader_stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let writer = std::thread::spawn(move || {
        let mut s = writer_stream;
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        (0..chunks).all(|_| s.write_all(&chunk).is_ok())
    });
    let mut peak_rss = 0;
    let mut replies = 0usize;
    let mut pending = 0usize;
    let mut tmp = vec![0u8; 256 * 1024];
    let mut reads = 0u64;
    while replies < commands {
        let n = reader_stream.read(&mut tmp).expect("reading replies");
        assert!(n > 0, "ferrule closed the connection after {replies} replies");
        // Every reply is "+OK\r\n" (checked on a sample of reads: the check is slow in debug builds).
        if reads.is_multiple_of(16) {
            assert!(tmp[..n].iter().all(|&b| b"+OK\r\n".contains(&b)), "an unexpected reply after {replies}");
        }
        pending += n;
        replies += pending / 5;
        pending %= 5;
        reads += 1;
        if reads.is_multiple_of(64) {
            peak_rss = peak_rss.max(ferrule_rss_kib(&f));
        }
    }
    assert!(writer.join().unwrap(), "the writer failed");
    assert!(
        peak_rss < baseline_rss + 24 * 1024,
        "ferrule's RSS went from {baseline_rss} to {peak_rss} KiB while one client streamed 48 MiB"
    );
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(f: &Ferrule) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", f.proc.child.id())).unwrap();
    // The command name may hold spaces: the fields counted here come after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn busy_polling_workers_serve_then_sleep_once_traffic_stops() {
    let (_backends, f, port) = setup_with(2, "busy_poll_us = 5000\n");
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(port)).collect();
    for i in 0..200 {
        let c = &mut clients[i % 4];
        let key = format!("poll:{i}");
        assert_eq!(c.redis_str(&["SET", &key, "v"]), "+OK\r\n");
        assert_eq!(c.redis_str(&["GET", &key]), "$1\r\nv\r\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(&f);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(&f) - before;
    // Two workers that never stopped polling would use about 4 s per 2 s (400 ticks at the usual 100 Hz).
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(used < hz / 2, "idle ferrule used {used} ticks of CPU in 2 s: the workers keep polling");
    assert_eq!(clients[0].redis_str(&["GET", "poll:0"]), "$1\r\nv\r\n");
}
