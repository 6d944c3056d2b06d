//! Binary upgrade (docs/operations.md, "Binary upgrade"): a new ferrule takes the listening sockets over from the
//! running one while clients connect in a loop and send requests through it to real redis and memcached; no
//! connection is refused, no request fails, the old process exits within `shutdown_timeout_ms`, the new one
//! serves. A successor that cannot start leaves the old one serving.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHUTDOWN_TIMEOUT_MS: u64 = 3000;
/// The backends' request timeout: a backend that a loaded machine holds up for more than the default second is not
/// what these tests are about (a timed-out request is answered with an error, which they count as failed).
const BACKEND_TIMEOUT: &str = "timeout_ms = 10000";
/// The bound on a start-up (" ready: " in the log): generous, because a debug build's start on a loaded 2-core
/// machine once took more than 10 s.
const START: Duration = Duration::from_secs(30);

struct Setup {
    _redis: Proc,
    _memcached: Proc,
    redis_port: u16,
    mc_port: u16,
    admin_port: u16,
    config_path: PathBuf,
    dir: common::TempDir,
}

fn config(workers: usize, redis_port: u16, mc_port: u16, admin_port: u16, backends: (u16, u16), sock: &Path) -> String {
    format!(
        "[proxy]\nworkers = {workers}\nadmin = \"127.0.0.1:{admin_port}\"\nshutdown_timeout_ms = {SHUTDOWN_TIMEOUT_MS}\n\
         upgrade_socket = \"{}\"\n\n{}{}{}[pools.mc]\nservers = [\"127.0.0.1:{}:1\"]\nprotocol = \"memcache\"\n\
         {BACKEND_TIMEOUT}\n",
        sock.display(),
        listener_toml("cache", redis_port, "redis", "main", ""),
        listener_toml("mcache", mc_port, "memcache", "mc", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{}:1", backends.0)], BACKEND_TIMEOUT),
        backends.1
    )
}

fn setup(tag: &str, workers: usize) -> Setup {
    let redis = redis_server();
    let memcached = memcached();
    let dir = tempdir(tag);
    let (redis_port, mc_port, admin_port) = (free_port(), free_port(), free_port());
    let config_path = dir.join("ferrule.toml");
    let text =
        config(workers, redis_port, mc_port, admin_port, (redis.port, memcached.port), &dir.join("upgrade.sock"));
    std::fs::write(&config_path, text).unwrap();
    Setup { _redis: redis, _memcached: memcached, redis_port, mc_port, admin_port, config_path, dir }
}

/// A ferrule process with its own log file (a successor is started the same way, with `--takeover`).
fn start(s: &Setup, config: &Path, name: &str, args: &[&str]) -> (Proc, PathBuf) {
    start_with_env(s, config, name, args, &[])
}

/// [`start`] with extra environment variables (the debug build's test hooks).
fn start_with_env(s: &Setup, config: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> (Proc, PathBuf) {
    let log_path = s.dir.join(format!("{name}.log"));
    let child = Command::new(ferrule_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start ferrule");
    (Proc { child, port: s.redis_port, name: name.to_string(), dir: None }, log_path)
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_log(path: &Path, needle: &str, timeout: Duration) -> bool {
    eventually(timeout, || log_of(path).contains(needle))
}

fn wait_exit(p: &mut Proc, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the load threads saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, what: &AtomicU64, error: String) {
        what.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(error);
        }
    }
}

/// A SET and a GET of key `n` in one write, and the replies to expect.
fn set_and_get(port: u16, redis: bool, n: u64) -> (String, String) {
    let key = format!("up:{port}:{n}");
    let value = format!("v{n}");
    if redis {
        (
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n",
                key.len(),
                value.len(),
                key.len()
            ),
            format!("+OK\r\n${}\r\n{value}\r\n", value.len()),
        )
    } else {
        (
            format!("set {key} 0 0 {}\r\n{value}\r\nget {key}\r\n", value.len()),
            format!("STORED\r\nVALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()),
        )
    }
}

/// One client: connect, a SET and a GET in one write, both replies checked, close.
fn one_client(port: u16, redis: bool, n: u64, tally: &Tally) {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => return tally.record(&tally.refused, format!("connect to {port}: {e}")),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (request, expected) = set_and_get(port, redis, n);
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return tally.record(&tally.failed, format!("write to {port}: {e}"));
    }
    let mut got = vec![0u8; expected.len()];
    match stream.read_exact(&mut got) {
        Ok(()) if got == expected.as_bytes() => {
            tally.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(()) => tally.record(&tally.failed, format!("{port}: got {:?}", String::from_utf8_lossy(&got))),
        Err(e) => tally.record(&tally.failed, format!("read from {port}: {e}")),
    }
}

/// Clients connecting in a loop on both listeners until `stop` (bounded in count and time as well).
fn load(s: &Setup, stop: &Arc<AtomicBool>, tally: &Arc<Tally>) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for (t, (port, redis)) in
        [(s.redis_port, true), (s.mc_port, false), (s.redis_port, true), (s.mc_port, false)].into_iter().enumerate()
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            for n in 0..200_000u64 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                one_client(port, redis, n * 4 + t as u64, &tally);
            }
        }));
    }
    threads
}

fn ok_after(tally: &Tally, count: u64, timeout: Duration) -> bool {
    let start = tally.ok.load(Ordering::Relaxed);
    eventually(timeout, || tally.ok.load(Ordering::Relaxed) >= start + count)
}

fn assert_clean(tally: &Tally) {
    let (refused, failed) = (tally.refused.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
    assert!(
        refused == 0 && failed == 0,
        "{refused} refused connections, {failed} failed requests ({} ok): {:?}",
        tally.ok.load(Ordering::Relaxed),
        tally.errors.lock().unwrap()
    );
}

/// `--takeover` under load: 2 workers to 2 workers, then to 1 worker (every old per-worker socket is still served),
/// then to 3; a successor with an invalid config in between changes nothing.
#[test]
fn takeover_under_load_refuses_no_connection_and_fails_no_request() {
    let s = setup("upgrade", 2);
    let (mut old, mut old_log) = start(&s, &s.config_path, "gen0", &[]);
    assert!(wait_log(&old_log, " ready: ", START), "{}", log_of(&old_log));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let threads = load(&s, &stop, &tally);
    assert!(ok_after(&tally, 200, Duration::from_secs(20)), "no load before the upgrade");

    // A successor that cannot start (its config is invalid): it exits, the running one is untouched.
    let bad = s.dir.join("bad.toml");
    std::fs::write(&bad, log_of(&s.config_path).replace("[pools.mc]\n", "[pools.mc]\nhsah = \"md5\"\n")).unwrap();
    let (mut failing, failing_log) = start(&s, &bad, "bad", &["--takeover"]);
    let status = wait_exit(&mut failing, Duration::from_secs(10)).expect("the failing successor exits");
    assert_eq!(status.code(), Some(1), "{}", log_of(&failing_log));
    assert!(ok_after(&tally, 200, Duration::from_secs(20)), "the old process serves after a failed upgrade");
    assert!(old.child.try_wait().unwrap().is_none(), "the old process still runs");
    assert!(!log_of(&old_log).contains("handed over"), "{}", log_of(&old_log));

    // A successor whose config has a listener that cannot bind (the port is held by another program): the workers
    // that did start never accepted (accepts wait until every worker serves), so no client notices.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blocked = s.dir.join("blocked.toml");
    let port = blocker.local_addr().unwrap().port();
    let text = log_of(&s.config_path) + &listener_toml("blocked", port, "redis", "main", "");
    std::fs::write(&blocked, text).unwrap();
    let (mut failing, failing_log) = start(&s, &blocked, "blocked", &["--takeover"]);
    let status = wait_exit(&mut failing, Duration::from_secs(15)).expect("the failing successor exits");
    assert_eq!(status.code(), Some(1), "{}", log_of(&failing_log));
    assert!(log_of(&failing_log).contains("cannot listen on"), "{}", log_of(&failing_log));
    assert!(ok_after(&tally, 200, Duration::from_secs(20)), "the old process serves after a failed upgrade");
    assert!(old.child.try_wait().unwrap().is_none(), "the old process still runs");
    assert!(log_of(&old_log).contains("takeover aborted"), "{}", log_of(&old_log));
    drop(blocker);

    for (i, workers) in [2usize, 1, 3].into_iter().enumerate() {
        let path = s.dir.join(format!("gen{}.toml", i + 1));
        let text = log_of(&s.config_path).replacen("workers = 2", &format!("workers = {workers}"), 1);
        std::fs::write(&path, text).unwrap();
        let (new, new_log) = start(&s, &path, &format!("gen{}", i + 1), &["--takeover"]);
        assert!(wait_log(&new_log, " ready: ", START), "{}", log_of(&new_log));
        let handed_over = Instant::now();
        let status = wait_exit(&mut old, Duration::from_millis(SHUTDOWN_TIMEOUT_MS));
        assert!(
            status.is_some(),
            "the old process is still running {} ms after the hand-over:\n{}",
            handed_over.elapsed().as_millis(),
            log_of(&old_log)
        );
        assert!(status.unwrap().success(), "{}", log_of(&old_log));
        assert!(log_of(&old_log).contains("handed over"), "{}", log_of(&old_log));
        assert!(log_of(&new_log).contains("(taken over)"), "{}", log_of(&new_log));
        assert!(ok_after(&tally, 200, Duration::from_secs(20)), "the new process serves:\n{}", log_of(&new_log));
        assert_eq!(http(s.admin_port, "GET", "/health").0, 200, "the admin endpoint was handed over too");
        (old, old_log) = (new, new_log);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_clean(&tally);
    drop(old);
}

/// Kills a process the test did not start itself (a successor started by SIGUSR2) when dropped.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

/// The pid of the last successor `SIGUSR2` started, from the log.
fn successor_pid(log: &str) -> Option<i32> {
    let line = log.lines().rev().find(|l| l.contains("SIGUSR2: started"))?;
    let rest = &line[line.rfind("(process ")? + "(process ".len()..];
    rest[..rest.find(')')?].parse().ok()
}

/// SIGUSR2 to the running ferrule starts its own binary with `--takeover`: first with a config that does not
/// validate (the successor exits, the running one keeps serving), then with a valid one (it takes over under load).
#[test]
fn sigusr2_starts_the_successor_and_a_failed_one_leaves_the_old_serving() {
    let s = setup("upgrade-usr2", 2);
    let (mut old, log) = start(&s, &s.config_path, "usr2", &[]);
    assert!(wait_log(&log, " ready: ", START), "{}", log_of(&log));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let threads = load(&s, &stop, &tally);
    assert!(ok_after(&tally, 100, Duration::from_secs(20)), "no load before the upgrade");

    let good = log_of(&s.config_path);
    std::fs::write(&s.config_path, good.replace("[pools.mc]\n", "[pools.mc]\nhsah = \"md5\"\n")).unwrap();
    old.signal(libc::SIGUSR2);
    assert!(wait_log(&log, "this process keeps serving", Duration::from_secs(10)), "{}", log_of(&log));
    assert!(ok_after(&tally, 100, Duration::from_secs(20)), "the old process serves after a failed upgrade");
    assert!(old.child.try_wait().unwrap().is_none(), "the old process still runs:\n{}", log_of(&log));

    std::fs::write(&s.config_path, &good).unwrap();
    old.signal(libc::SIGUSR2);
    assert!(wait_log(&log, "handed over", Duration::from_secs(15)), "{}", log_of(&log));
    let successor = KillOnDrop(successor_pid(&log_of(&log)).expect("the successor's pid is logged"));
    let status = wait_exit(&mut old, Duration::from_millis(SHUTDOWN_TIMEOUT_MS));
    assert!(status.is_some_and(|s| s.success()), "the old process exits:\n{}", log_of(&log));
    assert!(unsafe { libc::kill(successor.0, 0) } == 0, "the successor runs:\n{}", log_of(&log));
    assert!(ok_after(&tally, 100, Duration::from_secs(20)), "the successor serves:\n{}", log_of(&log));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_clean(&tally);
    // The successor answers signals as its predecessor did (none is left blocked by the process that started it).
    unsafe {
        libc::kill(successor.0, libc::SIGTERM);
    }
    let gone = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{}/status", successor.0))
            .map_or(true, |status| status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
    });
    assert!(gone, "the successor did not stop on SIGTERM:\n{}", log_of(&log));
}

/// How long the old process's workers stall, in the test below, between their last accept and the cancellation of
/// their accepts (the debug build's `FERRULE_TEST_HANDOVER_STALL`): a moment a loaded machine opens by descheduling
/// a worker there, widened so that a test can connect into it.
const HANDOVER_STALL_MS: u64 = 1500;

/// A client that connects just as the old process stops accepting is answered. The kernel wakes one io_uring accept
/// per new connection, the one armed first (the old process's) for as long as it is armed: a connection that arrives
/// after the old process's last accept and before its accepts are cancelled wakes only the old process's accept,
/// which the cancellation discards without taking the connection. Unless the old process takes what is left in the
/// queue once its accept is gone, such a client waits in the socket's queue until the next connection to the same
/// socket wakes the successor: for ever on a quiet listener, and in the upgrade under load (both clients of a
/// listener caught there at once) for the whole 10 s read timeout. The old process's workers stall in that moment
/// here (a debug-build hook), the clients connect and write then, and every one of them must get its replies.
#[test]
fn a_client_connecting_as_the_old_process_stops_accepting_is_answered() {
    let s = setup("upgrade-window", 2);
    let stall = HANDOVER_STALL_MS.to_string();
    let (mut old, old_log) =
        start_with_env(&s, &s.config_path, "old", &[], &[("FERRULE_TEST_HANDOVER_STALL", stall.as_str())]);
    assert!(wait_log(&old_log, " ready: ", START), "{}", log_of(&old_log));
    // The backends are connected before the hand-over: the replies below wait for nothing but the accept.
    let tally = Tally::default();
    for n in 0..4 {
        one_client(s.redis_port, true, n, &tally);
        one_client(s.mc_port, false, n, &tally);
    }
    assert_clean(&tally);

    let (new, new_log) = start(&s, &s.config_path, "new", &["--takeover"]);
    assert!(wait_log(&new_log, " ready: ", START), "{}", log_of(&new_log));
    let stalling = format!("stalls {HANDOVER_STALL_MS} ms before it stops accepting");
    assert!(
        eventually(Duration::from_secs(10), || log_of(&old_log).matches(&stalling).count() == 2),
        "{}",
        log_of(&old_log)
    );
    // The successor's accepts were released before it said it serves: they are armed by now, behind the old ones.
    std::thread::sleep(Duration::from_millis(200));
    // Both listeners, several clients each: SO_REUSEPORT spreads them over both workers' sockets.
    let mut clients = Vec::new();
    for n in 10..18u64 {
        let (port, redis) = if n % 2 == 0 { (s.redis_port, true) } else { (s.mc_port, false) };
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect during the hand-over");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (request, expected) = set_and_get(port, redis, n);
        stream.write_all(request.as_bytes()).unwrap();
        clients.push((stream, port, expected));
    }
    assert!(
        !log_of(&old_log).contains("stopped accepting (the listening sockets"),
        "the clients connected only after the old process stopped accepting (the machine is too slow for the \
         {HANDOVER_STALL_MS} ms stall): this test could not test anything:\n{}",
        log_of(&old_log)
    );
    let mut failures = Vec::new();
    for (mut stream, port, expected) in clients {
        let mut got = vec![0u8; expected.len()];
        match stream.read_exact(&mut got) {
            Ok(()) if got == expected.as_bytes() => {}
            Ok(()) => failures.push(format!("{port}: got {:?}", String::from_utf8_lossy(&got))),
            Err(e) => failures.push(format!("read from {port}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:?}:\n{}\n{}", log_of(&old_log), log_of(&new_log));
    let status = wait_exit(&mut old, Duration::from_millis(SHUTDOWN_TIMEOUT_MS + 2000));
    assert!(status.is_some_and(|s| s.success()), "the old process exits:\n{}", log_of(&old_log));
    for n in 20..24 {
        one_client(s.redis_port, true, n, &tally);
        one_client(s.mc_port, false, n, &tally);
    }
    assert_clean(&tally);
    drop(new);
}

/// How long a draining process lets a client stay quiet before it closes it (`session::DRAIN_QUIET`): a client is
/// closed only after it has written nothing for at least this long (docs/operations.md, "What happens to connected
/// clients"). A microsecond-level allowance for the clocks of the two processes.
const DRAIN_QUIET: Duration = Duration::from_millis(99);

/// What the persistent clients saw.
#[derive(Default)]
struct Persistent {
    /// Batches fully and correctly answered.
    answered: AtomicU64,
    /// Connections the proxy closed at a boundary: while the client was quiet, with nothing unanswered.
    clean_closes: AtomicU64,
    /// Requests written while the client was not quiet and never answered (or answered wrongly), connections
    /// refused.
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Persistent {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(error);
        }
    }
}

/// A batch of 8 SET/GET pairs on distinct keys, and the replies it must get.
fn batch(redis: bool, t: usize, n: u64) -> (Vec<u8>, Vec<u8>) {
    let (mut request, mut expected) = (Vec::new(), Vec::new());
    for i in 0..8 {
        let key = format!("pp:{t}:{n}:{i}");
        let value = format!("v{n}.{i}");
        if redis {
            request.extend_from_slice(
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n",
                    key.len(),
                    value.len(),
                    key.len()
                )
                .as_bytes(),
            );
            expected.extend_from_slice(format!("+OK\r\n${}\r\n{value}\r\n", value.len()).as_bytes());
        } else {
            request.extend_from_slice(format!("set {key} 0 0 {}\r\n{value}\r\nget {key}\r\n", value.len()).as_bytes());
            expected
                .extend_from_slice(format!("STORED\r\nVALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()).as_bytes());
        }
    }
    (request, expected)
}

/// Whether the proxy closed the connection (end of stream or a reset), without waiting.
fn closed_by_peer(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// One client that keeps its connection and pipelines over it: a batch written in one write, its replies read
/// and checked, the next batch at once; after 250 ms of that it pauses 250 ms (longer than the proxy's quiet time,
/// so a draining proxy closes it then, well within its reading deadline). A batch that is not fully answered is a failure unless it was written after
/// the client had been quiet for the quiet time (the proxy may close then; the batch's requests were sent after
/// the close). After a close the client reconnects (to the successor).
fn persistent_client(port: u16, redis: bool, t: usize, stop: &AtomicBool, tally: &Persistent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0u64;
    'connect: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(e) => return tally.fail(format!("connect to {port}: {e}")),
        };
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut quiet_since = Instant::now();
        let mut busy_since = Instant::now();
        for _ in 0..100_000u64 {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break 'connect;
            }
            if busy_since.elapsed() >= Duration::from_millis(250) {
                std::thread::sleep(Duration::from_millis(250));
                busy_since = Instant::now();
                if closed_by_peer(&stream) {
                    tally.clean_closes.fetch_add(1, Ordering::Relaxed);
                    continue 'connect;
                }
            }
            n += 1;
            let (request, expected) = batch(redis, t, n);
            let quiet = quiet_since.elapsed();
            let written = stream.write_all(&request);
            quiet_since = Instant::now();
            let mut got = vec![0u8; expected.len()];
            let answered = written.and_then(|()| stream.read_exact(&mut got));
            match answered {
                Ok(()) if got == expected => {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(()) => {
                    return tally.fail(format!("{port}: got {:?}", String::from_utf8_lossy(&got)));
                }
                Err(_) if quiet >= DRAIN_QUIET => {
                    tally.clean_closes.fetch_add(1, Ordering::Relaxed);
                    continue 'connect;
                }
                Err(e) => {
                    return tally.fail(format!(
                        "{port}: a batch written {} ms after the previous one was not answered: {e}",
                        quiet.as_millis()
                    ));
                }
            }
        }
    }
}

/// Clients that keep their connections and pipeline over them across upgrades lose no request: the old process
/// reads and answers what they send after the hand-over, and closes each connection only at a boundary (the
/// client quiet, everything it sent answered), after which they reconnect to the successor.
#[test]
fn persistent_pipelining_clients_lose_no_request_across_the_upgrade() {
    let s = setup("upgrade-persistent", 2);
    let (mut old, mut old_log) = start(&s, &s.config_path, "p0", &[]);
    assert!(wait_log(&old_log, " ready: ", START), "{}", log_of(&old_log));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Persistent::default());
    let mut threads = Vec::new();
    for (t, (port, redis)) in
        [(s.redis_port, true), (s.mc_port, false), (s.redis_port, true), (s.mc_port, false), (s.redis_port, true)]
            .into_iter()
            .enumerate()
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || persistent_client(port, redis, t, &stop, &tally)));
    }
    let answered_after = |count: u64| {
        let start = tally.answered.load(Ordering::Relaxed);
        eventually(Duration::from_secs(20), || tally.answered.load(Ordering::Relaxed) >= start + count)
    };
    assert!(answered_after(200), "no load before the upgrade");
    let mut logs = vec![old_log.clone()];
    for i in 1..=3 {
        let closes = tally.clean_closes.load(Ordering::Relaxed);
        let (new, new_log) = start(&s, &s.config_path, &format!("p{i}"), &["--takeover"]);
        assert!(wait_log(&new_log, " ready: ", START), "{}", log_of(&new_log));
        let status = wait_exit(&mut old, Duration::from_millis(SHUTDOWN_TIMEOUT_MS + 1000));
        assert!(status.is_some_and(|s| s.success()), "the old process exits:\n{}", log_of(&old_log));
        assert!(log_of(&old_log).contains("all client connections finished"), "{}", log_of(&old_log));
        assert!(answered_after(200), "the new process serves:\n{}", log_of(&new_log));
        assert!(tally.clean_closes.load(Ordering::Relaxed) > closes, "the old process closed its clients");
        logs.push(new_log.clone());
        (old, old_log) = (new, new_log);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let failed = tally.failed.load(Ordering::Relaxed);
    // A client still pipelining at the reading deadline may lose what it writes after it (documented): say so.
    let deadline_lines: Vec<String> = logs
        .iter()
        .flat_map(|l| {
            log_of(l).lines().filter(|l| l.contains("reading deadline")).map(String::from).collect::<Vec<_>>()
        })
        .collect();
    assert!(
        failed == 0,
        "{failed} failures ({} batches answered, {} clean closes): {:?}; {deadline_lines:?}",
        tally.answered.load(Ordering::Relaxed),
        tally.clean_closes.load(Ordering::Relaxed),
        tally.errors.lock().unwrap()
    );
    drop(old);
}

/// A stand-in for a successor, on the upgrade socket: asks for the sockets and takes them (the descriptors are
/// dropped by the kernel: no control buffer), then holds the exchange open without saying it serves, so the
/// running process stays in the middle of its hand-over until this is dropped (it then aborts and keeps serving).
struct FakeSuccessor(libc::c_int);

impl FakeSuccessor {
    fn connect(path: &Path) -> FakeSuccessor {
        use std::os::unix::ffi::OsStrExt;
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (dst, &src) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
                *dst = src as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            assert_eq!(libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len), 0, "connect");
            let tv = libc::timeval { tv_sec: 10, tv_usec: 0 };
            let tvp = (&tv as *const libc::timeval).cast();
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tvp, std::mem::size_of::<libc::timeval>() as _);
            let hello = b"ferrule-takeover 1";
            assert_eq!(libc::send(fd, hello.as_ptr().cast(), hello.len(), 0), hello.len() as isize);
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                assert!(n > 0, "the running process stopped the exchange");
                if buf[..n as usize].starts_with(b"end ") {
                    break;
                }
            }
            FakeSuccessor(fd)
        }
    }
}

impl Drop for FakeSuccessor {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.0);
        }
    }
}

/// A reload in the running process once it has started handing its sockets over would close a listener the
/// successor serves (the sockets are the same kernel objects): it is refused with a log line while the hand-over
/// is under way, and applies again once a failed hand-over left the process serving. Here the config file has lost
/// the memcache listener and SIGHUPs reach the process while a successor holds its sockets.
#[test]
fn a_reload_while_the_sockets_are_handed_over_is_refused() {
    let s = setup("upgrade-reload", 2);
    let (old, old_log) = start(&s, &s.config_path, "r0", &[]);
    assert!(wait_log(&old_log, " ready: ", START), "{}", log_of(&old_log));
    let good = log_of(&s.config_path);
    let without_mc = good.replace(&listener_toml("mcache", s.mc_port, "memcache", "mc", ""), "");
    assert_ne!(without_mc, good);
    let successor = FakeSuccessor::connect(&s.dir.join("upgrade.sock"));
    assert!(wait_log(&old_log, "takeover: passed", Duration::from_secs(10)), "{}", log_of(&old_log));
    std::fs::write(&s.config_path, &without_mc).unwrap();
    for i in 1..=4 {
        old.signal(libc::SIGHUP);
        let handled = eventually(Duration::from_secs(5), || log_of(&old_log).matches("reload (SIGHUP)").count() >= i);
        assert!(handled, "{}", log_of(&old_log));
    }
    let text = log_of(&old_log);
    assert!(!text.contains("stops accepting on"), "a listener was closed during the hand-over:\n{text}");
    assert!(text.contains("reload (SIGHUP) refused: this process has handed its listening sockets over"), "{text}");
    let tally = Tally::default();
    for n in 0..10 {
        one_client(s.mc_port, false, n, &tally);
    }
    assert_clean(&tally);

    // The successor goes away: the hand-over is aborted, and reloads apply again.
    drop(successor);
    assert!(wait_log(&old_log, "takeover aborted", Duration::from_secs(10)), "{}", log_of(&old_log));
    old.signal(libc::SIGHUP);
    assert!(wait_log(&old_log, "stops accepting on", Duration::from_secs(10)), "{}", log_of(&old_log));
    drop(old);
}

/// POST /reload and SIGHUP all through an upgrade: every reload request gets an answer (the old process stops
/// serving the admin endpoint once it has handed it over; until then it refuses reloads; the successor waits
/// until its takeover is confirmed, then reloads), and both listeners are served by the successor.
#[test]
fn reloads_during_the_upgrade_are_answered_and_close_nothing() {
    let s = setup("upgrade-reloads", 2);
    let (mut old, old_log) = start(&s, &s.config_path, "q0", &[]);
    assert!(wait_log(&old_log, " ready: ", START), "{}", log_of(&old_log));
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let reloader = {
        let (stop, answers, port) = (stop.clone(), answers.clone(), s.admin_port);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                // A refused connection is recorded, not a panic: the admin endpoint must never refuse one.
                let answer = match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(probe) => {
                        drop(probe);
                        http(port, "POST", "/reload")
                    }
                    Err(e) => (0, format!("connect: {e}")),
                };
                answers.lock().unwrap().push(answer);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    assert!(eventually(Duration::from_secs(10), || answers.lock().unwrap().len() >= 5), "no reload answered");
    let (new, new_log) = start(&s, &s.config_path, "q1", &["--takeover"]);
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_TIMEOUT_MS + 15_000);
    let status = loop {
        if let Ok(Some(status)) = old.child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        old.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.is_some_and(|s| s.success()), "the old process exits:\n{}", log_of(&old_log));
    assert!(wait_log(&new_log, " ready: ", START), "{}", log_of(&new_log));
    let count = answers.lock().unwrap().len();
    assert!(eventually(Duration::from_secs(10), || answers.lock().unwrap().len() >= count + 5), "no reload after");
    stop.store(true, Ordering::Relaxed);
    reloader.join().unwrap();
    for (code, body) in answers.lock().unwrap().iter() {
        assert!(
            *code == 200 || (*code == 400 && body.contains("handed its listening sockets over")),
            "POST /reload answered {code} {body:?}"
        );
    }
    let tally = Tally::default();
    for n in 0..10 {
        one_client(s.mc_port, false, n, &tally);
        one_client(s.redis_port, true, n, &tally);
    }
    assert_clean(&tally);
    for text in [log_of(&old_log), log_of(&new_log)] {
        assert!(!text.contains("stops accepting on"), "a listener was closed:\n{text}");
    }
    drop(new);
    drop(old);
}
