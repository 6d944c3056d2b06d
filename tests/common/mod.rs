//! Shared test harness: real redis-server / memcached / nutcracker processes and a ferrule process on ephemeral
//! loopback ports, all stopped when dropped. A missing server binary fails the test with an install hint.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod pipelined;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds a binary on PATH or in /usr/sbin, or panics with how to install it.
pub fn require_binary(name: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/bin", "/sbin"]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: run `apt-get install -y {package}` (scripts/test.sh does this)");
}

/// A free loopback port for a server the test starts next.
///
/// Picked below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): `connect()` and `bind(:0)` never
/// hand those out, so neither an outgoing connection (the tests and ferrule open thousands) nor another process's
/// `bind(:0)` can take the port between this pick and the server's own bind. Within one test binary (whose tests run
/// in parallel threads) a port is handed out once only; each process starts at an offset of its own (its pid) and
/// skips ports some other process holds (the bind check), so test binaries run at the same time do not collide
/// either. Servers started on a picked port are checked to be alive and ours after they listen (see
/// [`wait_for_child_port`]), so a collision that slips through fails loudly instead of testing the wrong process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static RANGE: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let range = *RANGE.get_or_init(|| {
        let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(32768);
        // Below 10000 are the well-known and commonly configured ports; too small a range left: use bind(:0).
        let low = 10000;
        (ephemeral_low >= low + 4000).then(|| {
            let span = ephemeral_low - low;
            NEXT.store(std::process::id().wrapping_mul(7919) % span, Ordering::Relaxed);
            (low, span)
        })
    });
    let Some((low, span)) = range else {
        return TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    };
    for _ in 0..span {
        let port = (low + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{}", low + span);
}

/// Waits until something listens on `port` (bounded: a loaded machine can take seconds to start a debug build).
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start listening on port {port}");
}

/// How long a server may take to start listening. Generous: on a loaded 2-core CI machine, starting a process can
/// take seconds; a server that cannot start at all fails at once instead (its exit is seen, see
/// [`wait_for_child_port`]).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until `child` listens on `port`; panics at once if it exited (e.g. the port was taken), naming `what`.
pub fn wait_for_child_port(child: &mut Child, port: u16, what: &str) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) instead of listening on port {port}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what} did not start listening on port {port} within {STARTUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory, removed with everything in it when dropped (set FERRULE_KEEP_TEST_DIRS=1 to keep them,
/// e.g. to read the logs of a failed test).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("FERRULE_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: String,
    /// The process's files (config, log, data dir), removed after it is killed.
    pub dir: Option<TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Resume a SIGSTOPped process first so it can die cleanly.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn new(child: Child, port: u16, name: impl Into<String>) -> Proc {
        Proc { child, port, name: name.into(), dir: None }
    }

    /// Keeps `dir` until the process is gone.
    pub fn with_dir(mut self, dir: TempDir) -> Proc {
        self.dir = Some(dir);
        self
    }

    /// Sends `sig`. A SIGSTOP returns once every thread of the process has stopped (bounded: 5 s): `kill` only
    /// queues it, and a thread that is running when it is sent may still answer a request that arrives at once.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.id();
        unsafe {
            libc::kill(pid as i32, sig);
        }
        if sig != libc::SIGSTOP {
            return;
        }
        let all_stopped = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
            tasks.flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the command name's closing parenthesis: T (stopped) or t (traced).
                stat.rsplit_once(')')
                    .is_none_or(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('T' | 't')))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_stopped() {
            assert!(Instant::now() < deadline, "{} (pid {pid}) did not stop within 5 s of SIGSTOP", self.name);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A fresh directory under the system's temp dir, removed when the returned guard is dropped.
pub fn tempdir(tag: &str) -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "ferrule-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover of an earlier process with the same pid: start empty.
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

pub fn redis_server() -> Proc {
    redis_server_on(free_port())
}

pub fn redis_server_on(port: u16) -> Proc {
    redis_server_with(port, &["--port", &port.to_string()], "redis")
}

/// A redis-server on loopback without persistence, started with `args` (its listening ports, TLS settings, ...);
/// `port` is the one to wait for, `what` names it in messages.
pub fn redis_server_with(port: u16, args: &[&str], what: &str) -> Proc {
    let bin = require_binary("redis-server", "redis-server");
    let dir = tempdir(what);
    let child = Command::new(bin)
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let mut proc = Proc::new(child, port, format!("{what}:{port}")).with_dir(dir);
    wait_for_child_port(&mut proc.child, port, what);
    proc
}

pub fn memcached() -> Proc {
    memcached_on(free_port())
}

pub fn memcached_on(port: u16) -> Proc {
    memcached_with(port, &[], "memcached")
}

/// A memcached on loopback `port` (TCP only, 64 MB) with `extra` arguments (e.g. `-Z` for TLS); `what` names it in
/// messages.
pub fn memcached_with(port: u16, extra: &[&str], what: &str) -> Proc {
    let bin = require_binary("memcached", "memcached");
    let child = Command::new(bin)
        .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-u", "root", "-m", "64"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start memcached");
    let mut proc = Proc::new(child, port, format!("{what}:{port}"));
    wait_for_child_port(&mut proc.child, port, what);
    proc
}

/// Starts nutcracker with a YAML config body (the pool's listen address must be 127.0.0.1:`port`).
pub fn nutcracker(yaml: &str, port: u16) -> Proc {
    let bin = require_binary("nutcracker", "nutcracker");
    let dir = tempdir("nutcracker");
    let conf = dir.join("nutcracker.yml");
    std::fs::write(&conf, yaml).unwrap();
    let stats = free_port();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .args(["-s", &stats.to_string(), "-o"])
        .arg(dir.join("nutcracker.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nutcracker");
    let mut proc = Proc::new(child, port, format!("nutcracker:{port}")).with_dir(dir);
    wait_for_child_port(&mut proc.child, port, "nutcracker");
    proc
}

/// The ferrule binary the tests run: cargo's build of this tree, or `FERRULE_BIN` when set (to measure another
/// build with the same test, e.g. `FERRULE_BIN=target/release/ferrule` or the build before a change).
pub fn ferrule_bin() -> PathBuf {
    match std::env::var_os("FERRULE_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ferrule")),
    }
}

/// A running ferrule with its config file; the config can be rewritten for reload tests.
pub struct Ferrule {
    pub proc: Proc,
    pub config_path: PathBuf,
    pub admin_port: u16,
    pub log_path: PathBuf,
    /// The `[proxy]` table written before the body, kept for rewrites of the config.
    pub header: String,
}

impl Ferrule {
    /// Starts ferrule on `body` (a TOML config without [proxy]); `port` is the first listener's port to wait for.
    pub fn start(body: &str, port: u16) -> Ferrule {
        Self::start_with(body, port, 1)
    }

    pub fn start_with(body: &str, port: u16, workers: usize) -> Ferrule {
        Self::start_opts(body, port, workers, "shutdown_timeout_ms = 2000\n", &[])
    }

    /// Like [`start_with`](Self::start_with), with extra `[proxy]` lines and extra command-line arguments.
    pub fn start_opts(body: &str, port: u16, workers: usize, proxy_extra: &str, args: &[&str]) -> Ferrule {
        Self::start_under(&[], body, port, workers, proxy_extra, args)
    }

    /// Like [`start_opts`](Self::start_opts), run by `wrapper` (e.g. `["prlimit", "--nofile=300:300"]`).
    pub fn start_under(
        wrapper: &[&str],
        body: &str,
        port: u16,
        workers: usize,
        proxy_extra: &str,
        args: &[&str],
    ) -> Ferrule {
        let admin_port = free_port();
        let header = format!("[proxy]\nworkers = {workers}\nadmin = \"127.0.0.1:{admin_port}\"\n{proxy_extra}\n");
        Self::launch(wrapper, &format!("{header}{body}"), header, port, admin_port, args)
    }

    /// Starts ferrule on a whole config text (with its own `[proxy]` table, whose admin endpoint is `admin_port`).
    pub fn start_config(text: &str, port: u16, admin_port: u16) -> Ferrule {
        Self::launch(&[], text, String::new(), port, admin_port, &[])
    }

    fn launch(wrapper: &[&str], text: &str, header: String, port: u16, admin_port: u16, args: &[&str]) -> Ferrule {
        let dir = tempdir("ferrule");
        let config_path = dir.join("ferrule.toml");
        std::fs::write(&config_path, text).unwrap();
        let log_path = dir.join("ferrule.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(ferrule_bin());
                c
            }
            None => Command::new(ferrule_bin()),
        };
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferrule");
        let mut proc = Proc::new(child, port, format!("ferrule:{port}")).with_dir(dir);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        // Listening on the port is not enough: with several workers the first may accept before the others have
        // bound theirs. "ready" is logged once every worker has.
        loop {
            let ready = std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(" ready: "));
            if ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("ferrule exited ({status}) instead of starting; log:\n{log}");
            }
            if Instant::now() > deadline {
                panic!("ferrule did not start; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ferrule { proc, config_path, admin_port, log_path, header }
    }

    /// The whole config text for `body` (with this instance's `[proxy]` table).
    pub fn config_text(&self, body: &str) -> String {
        format!("{}{body}", self.header)
    }

    /// Rewrites the config file in place (as `echo > file` does).
    pub fn write_config(&self, body: &str) {
        std::fs::write(&self.config_path, self.config_text(body)).unwrap();
    }

    /// Replaces the config file the way editors do: write a new file, rename it over the old one.
    pub fn replace_config(&self, body: &str) {
        let tmp = self.config_path.with_extension("toml.swp");
        std::fs::write(&tmp, self.config_text(body)).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Waits until the log has `needle` at least `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An HTTP request to the admin endpoint: (status code, body).
    pub fn admin(&self, method: &str, path: &str) -> (u16, String) {
        http(self.admin_port, method, path)
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// A minimal HTTP/1.1 request (Connection: close): (status code, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write (write! would send each piece on its own), and its failure tolerated: the peer may be gone.
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes());
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// A blocking test client speaking raw bytes; replies framed with ferrule's own codecs.
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) => panic!("read failed: {e} (have {:?})", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Reads one RESP reply.
    pub fn redis_reply(&mut self) -> Vec<u8> {
        loop {
            if let Ok(Some(n)) = ferrule::protocol::redis::reply_len(&self.buf) {
                return self.buf.drain(..n).collect();
            }
            if !self.fill() {
                panic!("connection closed; partial: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Sends a command and reads its reply.
    pub fn redis(&mut self, args: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        ferrule::protocol::redis::write_command(&mut out, &a);
        self.send(&out);
        self.redis_reply()
    }

    pub fn redis_str(&mut self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.redis(args)).into_owned()
    }

    /// Reads one memcache reply for `cmd`.
    pub fn mc_reply(&mut self, cmd: ferrule::protocol::memcache::Command) -> Vec<u8> {
        loop {
            if let Ok(Some(n)) = ferrule::protocol::memcache::reply_len(&self.buf, cmd) {
                return self.buf.drain(..n).collect();
            }
            if !self.fill() {
                panic!("connection closed; partial: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    pub fn mc(&mut self, line: &str, cmd: ferrule::protocol::memcache::Command) -> String {
        self.send(line.as_bytes());
        String::from_utf8_lossy(&self.mc_reply(cmd)).into_owned()
    }

    /// True when the peer closed the connection (reads until EOF or timeout).
    pub fn closed_by_peer(&mut self) -> bool {
        self.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut tmp = [0u8; 4096];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(_) => return false,
            }
        }
    }

    pub fn pending_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A redis command in RESP.
pub fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    ferrule::protocol::redis::write_command(&mut out, &a);
    out
}

/// Two redis servers behind one pool (md5, `{}` hash tags; `extra` goes into the pool's section) and a ferrule in
/// front of them: (the servers, ferrule, its listener's port).
pub fn two_redis_behind_ferrule(extra: &str) -> ([Proc; 2], Ferrule, u16) {
    let backends = [redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let pool = format!("hash = \"md5\"\nhash_tag = \"{{}}\"\n{extra}");
    let body =
        format!("{}{}", listener_toml("cache", port, "redis", "main", ""), redis_pool_toml("main", &servers, &pool));
    (backends, Ferrule::start(&body, port), port)
}

pub fn redis_pool_toml(name: &str, servers: &[String], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[pools.{name}]\nservers = [{}]\n{extra}\n", list.join(", "))
}

pub fn listener_toml(name: &str, port: u16, protocol: &str, pool: &str, extra: &str) -> String {
    format!(
        "[listeners.{name}]\nlisten = \"127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\nroute = \"{pool}\"\n{extra}\n"
    )
}

/// What a [`Pipeliner`] saw.
#[derive(Debug, Default, Clone)]
pub struct PipelineReport {
    /// Batches whose replies all arrived.
    pub batches: u64,
    pub replies: u64,
    /// (when the request's batch began to be written, request, error reply) for every error reply, in order. The send
    /// time, not the
    /// time the reply was read: on a loaded machine this thread may read a reply long after ferrule sent it, and
    /// what a test asks is whether requests sent after some event (an ejection) still fail.
    pub errors: Vec<(Instant, String, String)>,
    /// Set when the connection ended: how, and when the write of the batch then in flight had completed (if it had),
    /// with the number of its replies that had arrived and how many were expected.
    pub ended: Option<PipelineEnd>,
    /// The slowest batch round trip.
    pub max_batch: Duration,
}

#[derive(Debug, Clone)]
pub struct PipelineEnd {
    pub why: String,
    pub at: Instant,
    pub batch_written_at: Option<Instant>,
    pub replies_of_batch: usize,
    pub batch_len: usize,
}

/// A client thread pipelining redis requests (SET/GET pairs and an MGET per batch, keys spread over the pool) in
/// batches until stopped, checking that every reply has the expected shape. Replies whose values depend on which
/// server a key is on at the time (GET after a reload or an ejection) may be a value or nil; errors are recorded.
pub struct Pipeliner {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<PipelineReport>>,
    pub report: std::sync::Arc<std::sync::Mutex<PipelineReport>>,
}

impl Pipeliner {
    pub fn start(port: u16, tag: &str, batch: usize) -> Pipeliner {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(PipelineReport::default()));
        let (stop2, report2, tag) = (stop.clone(), report.clone(), tag.to_string());
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let handle = std::thread::spawn(move || {
            let mut buf: Vec<u8> = Vec::new();
            let mut n: u64 = 0;
            while !stop2.load(Ordering::Relaxed) {
                let mut out = Vec::new();
                let mut reqs: Vec<String> = Vec::new();
                for _ in 0..batch / 2 {
                    let key = format!("load:{tag}:{}", n % 2000);
                    let val = format!("v{n}");
                    ferrule::protocol::redis::write_command(&mut out, &[b"SET", key.as_bytes(), val.as_bytes()]);
                    ferrule::protocol::redis::write_command(&mut out, &[b"GET", key.as_bytes()]);
                    reqs.push(format!("SET {key} {val}"));
                    reqs.push(format!("GET {key}"));
                    n += 1;
                }
                let keys: Vec<String> = (0..4).map(|i| format!("load:{tag}:{}", (n + i * 7) % 2000)).collect();
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                ferrule::protocol::redis::write_command(&mut out, &args);
                reqs.push(format!("MGET {}", keys.join(" ")));
                let t0 = Instant::now();
                let end = |why: String, written: Option<Instant>, got: usize| PipelineEnd {
                    why,
                    at: Instant::now(),
                    batch_written_at: written,
                    replies_of_batch: got,
                    batch_len: reqs.len(),
                };
                if let Err(e) = s.write_all(&out) {
                    report2.lock().unwrap().ended = Some(end(format!("write: {e}"), None, 0));
                    break;
                }
                let written = Instant::now();
                let mut got = 0;
                let mut tmp = [0u8; 65536];
                let mut failed = None;
                while got < reqs.len() {
                    match ferrule::protocol::redis::reply_len(&buf) {
                        Ok(Some(len)) => {
                            let reply: Vec<u8> = buf.drain(..len).collect();
                            let req = &reqs[got];
                            let ok = match req.split(' ').next() {
                                Some("SET") => reply == b"+OK\r\n",
                                Some("GET") => reply.starts_with(b"$"),
                                _ => reply.starts_with(b"*4\r\n"),
                            };
                            if !ok {
                                let text = String::from_utf8_lossy(&reply).into_owned();
                                report2.lock().unwrap().errors.push((t0, req.clone(), text));
                            }
                            got += 1;
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed = Some(format!("unparseable reply: {e:?}"));
                            break;
                        }
                    }
                    match s.read(&mut tmp) {
                        Ok(0) => {
                            failed = Some("closed by ferrule".into());
                            break;
                        }
                        Ok(k) => buf.extend_from_slice(&tmp[..k]),
                        Err(e) => {
                            failed = Some(format!("read: {e}"));
                            break;
                        }
                    }
                }
                let mut r = report2.lock().unwrap();
                if let Some(why) = failed {
                    r.ended = Some(end(why, Some(written), got));
                    break;
                }
                r.batches += 1;
                r.replies += got as u64;
                r.max_batch = r.max_batch.max(t0.elapsed());
            }
            let r = report2.lock().unwrap().clone();
            r
        });
        Pipeliner { stop, handle: Some(handle), report }
    }

    /// A copy of the report so far.
    pub fn peek(&self) -> PipelineReport {
        self.report.lock().unwrap().clone()
    }

    /// Stops after the batch in flight and returns the report.
    pub fn finish(mut self) -> PipelineReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("pipeliner thread panicked")
    }
}

impl Drop for Pipeliner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Placement probing: writes, on each backend directly, `key = <that backend's port>` for every key, so that a GET
/// through the proxy tells which backend the key was routed to.
pub fn mark_keys(backend_port: u16, keys: &[String]) {
    let mut c = Client::connect(backend_port);
    let mut out = Vec::new();
    let port = backend_port.to_string();
    for k in keys {
        ferrule::protocol::redis::write_command(&mut out, &[b"SET", k.as_bytes(), port.as_bytes()]);
    }
    c.send(&out);
    for _ in keys {
        assert_eq!(c.redis_reply(), b"+OK\r\n");
    }
}

/// The backend port each key is routed to through one connection (0: a backend without marks, or an error).
pub fn placement_on(c: &mut Client, keys: &[String]) -> Vec<u16> {
    let mut out = Vec::new();
    for k in keys {
        ferrule::protocol::redis::write_command(&mut out, &[b"GET", k.as_bytes()]);
    }
    c.send(&out);
    keys.iter()
        .map(|_| {
            let r = c.redis_reply();
            let text = String::from_utf8_lossy(&r);
            text.lines().nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
        })
        .collect()
}

/// The worker a connection landed on (from ferrule's INFO).
pub fn worker_of(c: &mut Client) -> usize {
    let info = c.redis_str(&["INFO"]);
    info.lines()
        .find_map(|l| l.strip_prefix("worker:"))
        .and_then(|w| w.trim().parse().ok())
        .expect("INFO names the worker")
}

/// Placement seen through many fresh connections, until connections on `workers` distinct workers were seen; an
/// error when two connections disagree (cores must share one view of every ring).
pub fn placement_all_workers(port: u16, keys: &[String], workers: usize) -> Result<Vec<u16>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut first: Option<(usize, Vec<u16>)> = None;
    for attempt in 0..64 {
        let mut c = Client::connect(port);
        let w = worker_of(&mut c);
        let p = placement_on(&mut c, keys);
        match &first {
            None => first = Some((w, p)),
            Some((w0, p0)) => {
                if *p0 != p {
                    let diff = p0.iter().zip(&p).filter(|(a, b)| a != b).count();
                    return Err(format!("worker {w0} and worker {w} route {diff} of {} keys differently", keys.len()));
                }
            }
        }
        seen.insert(w);
        if seen.len() >= workers && attempt >= 3 {
            break;
        }
    }
    if seen.len() < workers {
        return Err(format!("connections reached only workers {seen:?}"));
    }
    Ok(first.map(|f| f.1).unwrap_or_default())
}

/// Where `config_text`'s pool `pool` puts each key when only the servers for which `live(port)` holds are in the
/// ring (ports; 0 when none is live), computed with ferrule's own router (whose placement is checked against
/// twemproxy in tests/placement.rs).
pub fn expected_placement(config_text: &str, pool: &str, live: &dyn Fn(u16) -> bool, keys: &[String]) -> Vec<u16> {
    let cfg = ferrule::config::Config::parse(config_text).expect("valid config");
    let pc = cfg.pool(pool).expect("pool exists");
    let members: Vec<(&str, u32, bool)> =
        pc.servers.iter().map(|s| (s.ident.as_str(), s.weight, live(s.port))).collect();
    let router = ferrule::router::PoolRouter::new(pc.hash, pc.distribution, pc.hash_tag, &members);
    keys.iter().map(|k| router.server_for(k.as_bytes()).map_or(0, |i| pc.servers[i].port)).collect()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
