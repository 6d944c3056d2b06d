//! How a backend connection batches its clients' requests (`batching` in a pool). A fake server that can hold a
//! reply back shows what reaches the server and when; real servers cannot be paused mid-request this precisely.

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A redis-speaking fake with one connection from ferrule, driven step by step from the test.
struct FakeServer {
    conn: TcpStream,
}

impl FakeServer {
    fn accept(listener: &TcpListener) -> FakeServer {
        listener.set_nonblocking(false).unwrap();
        let (conn, _) = listener.accept().expect("ferrule connects to the fake server");
        conn.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        FakeServer { conn }
    }

    /// Everything that arrives within `window` (reads that return nothing for 100 ms end it early once something
    /// arrived), and how many reads it took.
    fn receive(&mut self, window: Duration) -> (Vec<u8>, usize) {
        let (mut got, mut reads) = (Vec::new(), 0);
        let end = Instant::now() + window;
        let mut buf = [0u8; 65536];
        while Instant::now() < end {
            match self.conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    reads += 1;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if !got.is_empty() {
                        break;
                    }
                }
                Err(e) => panic!("fake server read: {e}"),
            }
        }
        (got, reads)
    }

    fn answer(&mut self, replies: usize) {
        // A nil: what a GET of a missing key gets (a reply of another type would be a protocol fault).
        self.conn.write_all(&b"$-1\r\n".repeat(replies)).unwrap();
    }
}

fn commands_in(bytes: &[u8]) -> usize {
    bytes.windows(4).filter(|w| w == b"*2\r\n").count()
}

/// ferrule in front of the fake server, with one request (from `first`) written and unanswered.
struct OneInFlight {
    ferrule: Ferrule,
    port: u16,
    server: FakeServer,
    first: Client,
}

/// Starts ferrule with one pool on a fake server and sends a first request: nothing is in flight yet, so it goes out
/// at once, alone, whatever the batching.
fn start_with_one_in_flight(batching: &str, max_hold_us: u64) -> OneInFlight {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = listener.local_addr().unwrap().port();
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml(
            "main",
            &[format!("127.0.0.1:{fake_port}:1")],
            &format!("batching = \"{batching}\"\nbatching_max_hold_us = {max_hold_us}\ntimeout_ms = 10000\n")
        )
    );
    let ferrule = Ferrule::start(&body, port);
    let first = send_get(port, "first");
    let mut server = FakeServer::accept(&listener);
    let (got, _) = server.receive(Duration::from_secs(5));
    assert_eq!(commands_in(&got), 1, "{:?}", String::from_utf8_lossy(&got));
    OneInFlight { ferrule, port, server, first }
}

/// Sends `GET name` on a new client connection without waiting for the reply.
fn send_get(port: u16, name: &str) -> Client {
    let mut c = Client::connect(port);
    c.send(format!("*2\r\n$3\r\nGET\r\n${}\r\n{name}\r\n", name.len()).as_bytes());
    c
}

/// Reads what reaches the server until `commands` commands are in or `limit` has passed.
fn receive_commands(server: &mut FakeServer, commands: usize, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    while commands_in(&got) < commands && start.elapsed() < limit {
        got.extend(server.receive(Duration::from_millis(100)).0);
    }
    got
}

/// Answers the first request and the `others`, and checks every client gets its reply.
fn answer_all(setup: &mut OneInFlight, others: &mut [Client]) {
    setup.server.answer(1 + others.len());
    assert_eq!(setup.first.redis_reply(), b"$-1\r\n");
    for c in others {
        assert_eq!(c.redis_reply(), b"$-1\r\n");
    }
}

#[test]
fn adaptive_batching_holds_requests_behind_a_batch_in_flight_then_sends_them_in_one_write() {
    // A hold bound far beyond the test's waits: only the reply releases the held requests.
    let mut s = start_with_one_in_flight("adaptive", 1_000_000);

    // While the first is unanswered, five more clients send: ferrule holds them. Waited for until ferrule has all
    // five queued (on a loaded machine it may take a while to accept and read them; one read after the reply would
    // go out on its own).
    let mut others: Vec<Client> = (0..5).map(|i| send_get(s.port, &format!("held{i}"))).collect();
    let in_flight = |f: &Ferrule| {
        let (_, metrics) = f.admin("GET", "/metrics");
        metrics
            .lines()
            .find(|l| l.starts_with("ferrule_server_in_flight_requests{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(10), || in_flight(&s.ferrule) == 6),
        "{} requests in flight",
        in_flight(&s.ferrule)
    );
    let (early, _) = s.server.receive(Duration::from_millis(500));
    assert!(early.is_empty(), "sent while a batch was in flight: {:?}", String::from_utf8_lossy(&early));

    // The reply releases them, together: one write, so the server reads them at once.
    s.server.answer(1);
    assert_eq!(s.first.redis_reply(), b"$-1\r\n");
    let (held, reads) = s.server.receive(Duration::from_secs(5));
    assert_eq!(commands_in(&held), 5, "{:?}", String::from_utf8_lossy(&held));
    assert_eq!(reads, 1, "the held requests came in {reads} reads");
    s.server.answer(5);
    for c in &mut others {
        assert_eq!(c.redis_reply(), b"$-1\r\n");
    }
}

#[test]
fn eager_batching_sends_requests_while_others_are_in_flight() {
    let mut s = start_with_one_in_flight("eager", 1_000_000);
    let mut others: Vec<Client> = (0..5).map(|i| send_get(s.port, &format!("eager{i}"))).collect();
    let early = receive_commands(&mut s.server, 5, Duration::from_secs(5));
    assert_eq!(commands_in(&early), 5, "eager must not wait for replies: {:?}", String::from_utf8_lossy(&early));
    answer_all(&mut s, &mut others);
}

#[test]
fn adaptive_batching_writes_a_held_batch_once_it_has_waited_max_hold() {
    let mut s = start_with_one_in_flight("adaptive", 300_000);
    // The first request stays unanswered; the held ones still go out, once their hold time is up.
    let queued = Instant::now();
    let mut others: Vec<Client> = (0..3).map(|i| send_get(s.port, &format!("bounded{i}"))).collect();
    let held = receive_commands(&mut s.server, 3, Duration::from_secs(5));
    assert_eq!(commands_in(&held), 3, "{:?}", String::from_utf8_lossy(&held));
    // A timer never fires early, so this cannot fail on a slow machine.
    assert!(queued.elapsed() >= Duration::from_millis(300), "written after {:?}", queued.elapsed());
    answer_all(&mut s, &mut others);
}
