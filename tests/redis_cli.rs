//! redis-cli, the tool operators reach for first, through ferrule over two redis servers and straight to one redis:
//! the same invocations print the same output (RESP2 and `-3`): get/set, mget/mset, hashes, `--pipe`, a
//! transaction with hash tags from stdin, a blocking pop fed by a producer, SUBSCRIBE and PSUBSCRIBE fed by
//! PUBLISH from another connection, EVAL, and a full `--scan`.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cli(port: u16, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new("timeout")
        .args(["20", "redis-cli", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli (apt-get install redis-tools; scripts/test.sh does)");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything the workload printed, in order (the SCAN's keys sorted).
fn workload(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        &["SET", "cli:k", "v"][..],
        &["GET", "cli:k"],
        &["GET", "cli:missing"],
        &["MSET", "cli:a", "1", "cli:b", "2", "cli:c", "3"],
        &["MGET", "cli:a", "cli:b", "cli:missing", "cli:c"],
        &["HSET", "cli:h", "f1", "x", "f2", "y"],
        &["HGETALL", "cli:h"],
        &["-3", "HGETALL", "cli:h"],
        &["-3", "MGET", "cli:a", "cli:missing"],
        &["EVAL", "return redis.call('INCRBY', KEYS[1], ARGV[1])", "1", "cli:e", "5"],
        &["DEL", "cli:a", "cli:b", "cli:nope"],
    ] {
        out.push(cli(port, args, None));
    }
    // Mass insertion: raw protocol on stdin.
    let mut raw = Vec::new();
    for i in 0..200 {
        let (k, v) = (format!("cli:p{i}"), format!("v{i}"));
        ferrule::protocol::redis::write_command(&mut raw, &[b"SET", k.as_bytes(), v.as_bytes()]);
    }
    out.push(cli(port, &["--pipe"], Some(&raw)));
    // A transaction whose keys share a hash tag, one command per line on one connection.
    out.push(cli(port, &[], Some(b"MULTI\nSET {cli}:x 10\nINCRBY {cli}:y 5\nDECRBY {cli}:x 3\nEXEC\n")));
    let mut keys: Vec<String> = cli(port, &["--scan", "--pattern", "cli:*"], None).lines().map(String::from).collect();
    keys.sort();
    out.push(keys.join(","));
    out
}

/// A redis-cli that stays connected (BLPOP, SUBSCRIBE): its output lines, read as they come.
struct Streaming {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Streaming {
    fn start(port: u16, args: &[&str]) -> Streaming {
        let mut child = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines }
    }

    fn read(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        (0..n)
            .map(|_| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.lines.recv_timeout(left).expect("redis-cli printed nothing in time")
            })
            .collect()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BLPOP fed by a producer, and SUBSCRIBE / PSUBSCRIBE fed by PUBLISH from another connection.
fn live(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let blocked = Streaming::start(port, &["BLPOP", "cli:q", "10"]);
    std::thread::sleep(Duration::from_millis(200));
    out.push(cli(port, &["RPUSH", "cli:q", "job"], None));
    out.extend(blocked.read(2));
    let sub = Streaming::start(port, &["SUBSCRIBE", "cli:news", "cli:other"]);
    out.extend(sub.read(6));
    let psub = Streaming::start(port, &["PSUBSCRIBE", "cli:*"]);
    out.extend(psub.read(3));
    out.push(cli(port, &["PUBLISH", "cli:news", "hello"], None));
    out.extend(sub.read(3));
    out.extend(psub.read(4));
    out.push(cli(port, &["PUBSUB", "NUMSUB", "cli:news", "cli:other"], None));
    out
}

#[test]
fn redis_cli_prints_through_ferrule_what_it_prints_with_one_redis() {
    let backends = [redis_server(), redis_server()];
    let servers: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}:1", b.port)).collect();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &servers, "hash = \"md5\"\nhash_tag = \"{}\"")
    );
    let _f = Ferrule::start(&body, port);
    let reference = redis_server();
    let direct = workload(reference.port);
    let through = workload(port);
    assert_eq!(through, direct);
    assert_eq!(through[12], "OK\nQUEUED\nQUEUED\nQUEUED\nOK\n5\n7\n", "the transaction ran whole");
    assert!(through[11].contains("errors: 0, replies: 200"), "{}", through[11]);
    let direct = live(reference.port);
    let through = live(port);
    assert_eq!(through, direct);
    assert_eq!(through[..3], ["1\n", "cli:q", "job"], "the pop got the producer's job");
}
