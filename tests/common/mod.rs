//! Shared test harness: real redis-server / memcached / nutcracker processes and a ferrule process on ephemeral
//! loopback ports, all stopped when dropped. A missing server binary fails the test with an install hint.
#![allow(dead_code)]

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

/// A free loopback port (bound then released; good enough for tests that start the server right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start listening on port {port}");
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: String,
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
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrule-test-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn redis_server() -> Proc {
    redis_server_on(free_port())
}

pub fn redis_server_on(port: u16) -> Proc {
    let bin = require_binary("redis-server", "redis-server");
    let dir = tempdir("redis");
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    wait_for_port(port, "redis-server");
    Proc { child, port, name: format!("redis:{port}") }
}

pub fn memcached() -> Proc {
    memcached_on(free_port())
}

pub fn memcached_on(port: u16) -> Proc {
    let bin = require_binary("memcached", "memcached");
    let child = Command::new(bin)
        .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-u", "root", "-m", "64"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start memcached");
    wait_for_port(port, "memcached");
    Proc { child, port, name: format!("memcached:{port}") }
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
    wait_for_port(port, "nutcracker");
    Proc { child, port, name: format!("nutcracker:{port}") }
}

pub fn ferrule_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferrule"))
}

/// A running ferrule with its config file; the config can be rewritten for reload tests.
pub struct Ferrule {
    pub proc: Proc,
    pub config_path: PathBuf,
    pub admin_port: u16,
    pub log_path: PathBuf,
}

impl Ferrule {
    /// Starts ferrule on `body` (a TOML config without [proxy]); `port` is the first listener's port to wait for.
    pub fn start(body: &str, port: u16) -> Ferrule {
        Self::start_with(body, port, 1)
    }

    pub fn start_with(body: &str, port: u16, workers: usize) -> Ferrule {
        let dir = tempdir("ferrule");
        let admin_port = free_port();
        let config_path = dir.join("ferrule.toml");
        let text = format!(
            "[proxy]\nworkers = {workers}\nadmin = \"127.0.0.1:{admin_port}\"\nshutdown_timeout_ms = 2000\n\n{body}"
        );
        std::fs::write(&config_path, text).unwrap();
        let log_path = dir.join("ferrule.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(ferrule_bin())
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferrule");
        let proc = Proc { child, port, name: format!("ferrule:{port}") };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!("ferrule did not start; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ferrule { proc, config_path, admin_port, log_path }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
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

pub fn redis_pool_toml(name: &str, servers: &[String], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[pools.{name}]\nservers = [{}]\n{extra}\n", list.join(", "))
}

pub fn listener_toml(name: &str, port: u16, protocol: &str, pool: &str, extra: &str) -> String {
    format!(
        "[listeners.{name}]\nlisten = \"127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\nroute = \"{pool}\"\n{extra}\n"
    )
}
