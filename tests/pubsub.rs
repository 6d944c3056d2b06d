//! Pub/sub through ferrule over two redis servers, compared byte for byte with one redis where that says what is
//! right: the confirmations and their counts, PING and refusals in subscribe mode, messages from both servers on
//! the one client connection, patterns on every server, RESP3 pushes, PUBSUB over the pool, and the limit.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn reply(c: &mut Client) -> String {
    String::from_utf8_lossy(&c.redis_reply()).into_owned()
}

/// Sends one command and reads `n` replies (a SUBSCRIBE of n channels answers n confirmations).
fn send_read(c: &mut Client, args: &[&str], n: usize) -> Vec<String> {
    c.send(&resp(args));
    (0..n).map(|_| reply(c)).collect()
}

/// Channels that ferrule places on different servers: PUBSUB NUMSUB asked of each server directly tells which
/// one a subscriber sits on.
fn channels_on_two_servers(backends: &[Proc; 2], port: u16) -> (String, String) {
    let server_of = |ch: &str| {
        let mut sub = Client::connect(port);
        send_read(&mut sub, &["SUBSCRIBE", ch], 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for (i, b) in backends.iter().enumerate() {
                if Client::connect(b.port).redis_str(&["PUBSUB", "NUMSUB", ch]).ends_with(":1\r\n") {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no server has a subscriber of {ch}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let first = server_of("ch:0");
    for i in 1..100 {
        let ch = format!("ch:{i}");
        if server_of(&ch) != first {
            return ("ch:0".into(), ch);
        }
    }
    panic!("no two channels on different servers");
}

/// The same conversation with ferrule and with one redis gives the same bytes.
fn same_as_redis(port: u16, steps: &[(&[&str], usize)]) -> Vec<String> {
    let reference = redis_server();
    let run = |port: u16| {
        let mut c = Client::connect(port);
        let mut out = Vec::new();
        for (args, n) in steps {
            out.extend(send_read(&mut c, args, *n));
        }
        out
    };
    let through = run(port);
    assert_eq!(through, run(reference.port), "replies as one redis gives them");
    through
}

#[test]
fn confirmations_counts_ping_and_refusals_as_on_one_redis() {
    let (_b, _f, port) = two_redis_behind_ferrule("");
    let got = same_as_redis(
        port,
        &[
            (&["SUBSCRIBE", "a", "b", "a"], 3),
            (&["PSUBSCRIBE", "p*", "q*"], 2),
            (&["PING"], 1),
            (&["PING", "hi"], 1),
            (&["GET", "k"], 1),
            (&["SSUBSCRIBE", "s1"], 1),
            (&["UNSUBSCRIBE", "b", "never"], 2),
            (&["PUNSUBSCRIBE"], 2),
            (&["UNSUBSCRIBE"], 1),
            (&["SUNSUBSCRIBE", "s1"], 1),
            // Out of subscribe mode: ordinary again.
            (&["PING"], 1),
            (&["UNSUBSCRIBE"], 1),
            (&["PUNSUBSCRIBE"], 1),
        ],
    );
    // The counts are the client's totals across both servers.
    assert_eq!(got[2], "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n");
    assert_eq!(got[4], "*3\r\n$10\r\npsubscribe\r\n$2\r\nq*\r\n:4\r\n");
    assert_eq!(got[5], "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert!(got[7].starts_with("-ERR Can't execute 'get'"), "{}", got[7]);
    assert_eq!(got[got.len() - 3], "+PONG\r\n");
    assert_eq!(got[got.len() - 2], "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
}

#[test]
fn messages_of_both_servers_reach_one_subscriber_and_patterns_hear_every_server() {
    let (backends, _f, port) = two_redis_behind_ferrule("");
    let (a, b) = channels_on_two_servers(&backends, port);
    let mut sub = Client::connect(port);
    let confirmations = send_read(&mut sub, &["SUBSCRIBE", &a, &b], 2);
    assert!(confirmations[1].ends_with(":2\r\n"), "{confirmations:?}");
    assert!(send_read(&mut sub, &["PSUBSCRIBE", "ch:*"], 1)[0].ends_with(":3\r\n"));
    let mut publisher = Client::connect(port);
    // Each PUBLISH meets its subscribers on the channel's server: the direct subscriber and the pattern.
    assert_eq!(publisher.redis_str(&["PUBLISH", &a, "one"]), ":2\r\n");
    assert_eq!(publisher.redis_str(&["PUBLISH", &b, "two"]), ":2\r\n");
    assert_eq!(publisher.redis_str(&["PUBLISH", "nobody", "x"]), ":0\r\n");
    let mut got: Vec<String> = (0..4).map(|_| reply(&mut sub)).collect();
    got.sort();
    let mut want = vec![
        format!("*3\r\n$7\r\nmessage\r\n${}\r\n{a}\r\n$3\r\none\r\n", a.len()),
        format!("*3\r\n$7\r\nmessage\r\n${}\r\n{b}\r\n$3\r\ntwo\r\n", b.len()),
        format!("*4\r\n$8\r\npmessage\r\n$4\r\nch:*\r\n${}\r\n{a}\r\n$3\r\none\r\n", a.len()),
        format!("*4\r\n$8\r\npmessage\r\n$4\r\nch:*\r\n${}\r\n{b}\r\n$3\r\ntwo\r\n", b.len()),
    ];
    want.sort();
    assert_eq!(got, want);
    // PUBSUB over the pool: both channels, one subscriber each, one pattern (not one per server).
    let mut c = Client::connect(port);
    let channels = c.redis_str(&["PUBSUB", "CHANNELS", "ch:*"]);
    assert!(channels.starts_with("*2\r\n") && channels.contains(&a) && channels.contains(&b), "{channels}");
    assert_eq!(
        c.redis_str(&["PUBSUB", "NUMSUB", &a, &b, "none"]),
        format!("*6\r\n${}\r\n{a}\r\n:1\r\n${}\r\n{b}\r\n:1\r\n$4\r\nnone\r\n:0\r\n", a.len(), b.len())
    );
    assert_eq!(c.redis_str(&["PUBSUB", "NUMPAT"]), ":1\r\n");
    // After UNSUBSCRIBE of one channel, its messages stop; the other's still come.
    assert!(send_read(&mut sub, &["UNSUBSCRIBE", &a], 1)[0].ends_with(":2\r\n"));
    assert_eq!(publisher.redis_str(&["PUBLISH", &a, "late"]), ":1\r\n");
    assert!(reply(&mut sub).starts_with("*4\r\n$8\r\npmessage"));
}

#[test]
fn a_message_published_after_the_confirmation_arrives() {
    let (_b, _f, port) = two_redis_behind_ferrule("");
    let mut sub = Client::connect(port);
    let mut publisher = Client::connect(port);
    for i in 0..20 {
        let ch = format!("race:{i}");
        send_read(&mut sub, &["SUBSCRIBE", &ch], 1);
        assert_eq!(publisher.redis_str(&["PUBLISH", &ch, "m"]), ":1\r\n", "the server subscribed before confirming");
        assert_eq!(reply(&mut sub), format!("*3\r\n$7\r\nmessage\r\n${}\r\n{ch}\r\n$1\r\nm\r\n", ch.len()));
    }
}

/// The servers are made slow (a busy script) while the SUBSCRIBE is on its way: a confirmation given before the
/// server subscribed would let the PUBLISH that follows it reach the server first, and the message would be lost.
#[test]
fn the_confirmation_waits_for_a_slow_server() {
    const BUSY: &str = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
        while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - start > 300000 then break end end \
        return 1";
    let (backends, _f, port) = two_redis_behind_ferrule("");
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    for i in 0..5 {
        let sleepers: Vec<_> = ports
            .iter()
            .map(|&p| std::thread::spawn(move || Client::connect(p).redis_str(&["EVAL", BUSY, "0"])))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let ch = format!("slow:{i}");
        let mut sub = Client::connect(port);
        send_read(&mut sub, &["SUBSCRIBE", &ch], 1);
        let mut publisher = Client::connect(port);
        assert_eq!(publisher.redis_str(&["PUBLISH", &ch, "m"]), ":1\r\n", "subscribed before the confirmation");
        assert_eq!(reply(&mut sub), format!("*3\r\n$7\r\nmessage\r\n${}\r\n{ch}\r\n$1\r\nm\r\n", ch.len()));
        for t in sleepers {
            assert_eq!(t.join().unwrap(), ":1\r\n");
        }
    }
}

#[test]
fn resp3_gets_pushes_and_runs_commands_while_subscribed() {
    let (_b, _f, port) = two_redis_behind_ferrule("");
    let reference = redis_server();
    let run = |port: u16| {
        let mut c = Client::connect(port);
        let mut out = send_read(&mut c, &["HELLO", "3"], 1);
        out[0] = "HELLO".into();
        out.extend(send_read(&mut c, &["SUBSCRIBE", "r3"], 1));
        out.extend(send_read(&mut c, &["SET", "k", "v"], 1));
        out.extend(send_read(&mut c, &["GET", "k"], 1));
        out.extend(send_read(&mut c, &["PING"], 1));
        let mut p = Client::connect(port);
        assert_eq!(p.redis_str(&["PUBLISH", "r3", "hello"]), ":1\r\n");
        out.push(reply(&mut c));
        out.extend(send_read(&mut c, &["UNSUBSCRIBE"], 1));
        out
    };
    let through = run(port);
    assert_eq!(through, run(reference.port));
    assert_eq!(through[1], ">3\r\n$9\r\nsubscribe\r\n$2\r\nr3\r\n:1\r\n");
    assert_eq!(through[5], ">3\r\n$7\r\nmessage\r\n$2\r\nr3\r\n$5\r\nhello\r\n");
}

#[test]
fn subscriber_connections_are_bounded_by_max_dedicated_connections() {
    let (_b, _f, port) = two_redis_behind_ferrule("max_dedicated_connections = 1");
    let mut first = Client::connect(port);
    assert!(send_read(&mut first, &["PSUBSCRIBE", "*"], 1)[0].ends_with(":1\r\n"));
    let mut second = Client::connect(port);
    let refused = send_read(&mut second, &["PSUBSCRIBE", "*"], 1);
    assert!(
        refused[0].starts_with("-ERR ferrule: backend main/") && refused[0].contains("max_dedicated_connections = 1"),
        "{refused:?}"
    );
    // Refused whole: the client is not in subscribe mode.
    assert_eq!(second.redis_str(&["PING"]), "+PONG\r\n");
    // Once the first lets go, the place is free again.
    send_read(&mut first, &["PUNSUBSCRIBE"], 1);
    assert_eq!(first.redis_str(&["PING"]), "+PONG\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = send_read(&mut second, &["PSUBSCRIBE", "*"], 1);
        if r[0].ends_with(":1\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_lost_subscriber_connection_ends_the_client_connection() {
    let (backends, _f, port) = two_redis_behind_ferrule("");
    let mut sub = Client::connect(port);
    send_read(&mut sub, &["PSUBSCRIBE", "*"], 1);
    // Kill the server-side connections of the subscriber on one server.
    let mut admin = Client::connect(backends[0].port);
    assert_eq!(admin.redis_str(&["CLIENT", "KILL", "TYPE", "pubsub"]), ":1\r\n");
    let err = reply(&mut sub);
    assert!(err.starts_with("-ERR ferrule: subscriber connection to backend main/"), "{err}");
    assert!(sub.closed_by_peer(), "the client is told by its connection ending");
}

#[test]
fn what_cannot_be_done_while_subscribed_or_in_a_transaction_is_refused() {
    let (_b, _f, port) = two_redis_behind_ferrule("");
    let mut c = Client::connect(port);
    send_read(&mut c, &["HELLO", "3"], 1);
    send_read(&mut c, &["SUBSCRIBE", "x"], 1);
    assert_eq!(
        reply_of(&mut c, &["HELLO", "2"]),
        "-ERR ferrule: HELLO is not supported while subscribed (unsubscribe from everything first)\r\n"
    );
    send_read(&mut c, &["UNSUBSCRIBE"], 1);
    // Nothing subscribed any more: the version can change, and the client subscribes again in it.
    assert!(reply_of(&mut c, &["HELLO", "2"]).starts_with("*14\r\n"));
    assert_eq!(send_read(&mut c, &["SUBSCRIBE", "x"], 1)[0], "*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n");
    let mut p = Client::connect(port);
    assert_eq!(p.redis_str(&["PUBLISH", "x", "m"]), ":1\r\n");
    assert_eq!(reply(&mut c), "*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\nm\r\n", "RESP2 now");
    // Subscribe commands cannot be queued in a transaction (it is aborted); PUBLISH can.
    let mut t = Client::connect(port);
    assert_eq!(t.redis_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(
        t.redis_str(&["SUBSCRIBE", "y"]),
        "-ERR ferrule: SUBSCRIBE cannot be queued in a transaction; the transaction is aborted\r\n"
    );
    assert!(t.redis_str(&["EXEC"]).starts_with("-EXECABORT"));
    let tx = [&["MULTI"][..], &["PUBLISH", "x", "in-tx"], &["EXEC"]];
    let replies: Vec<String> = tx.iter().map(|a| t.redis_str(a)).collect();
    assert_eq!(replies, ["+OK\r\n", "+QUEUED\r\n", "*1\r\n:1\r\n"]);
    assert_eq!(reply(&mut c), "*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$5\r\nin-tx\r\n");
}

fn reply_of(c: &mut Client, args: &[&str]) -> String {
    send_read(c, args, 1).remove(0)
}

#[test]
fn a_client_that_leaves_before_its_confirmation_leaves_nothing_behind() {
    let (backends, f, port) = two_redis_behind_ferrule("");
    const BUSY: &str = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
        while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - start > 300000 then break end end \
        return 1";
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let sleepers: Vec<_> =
        ports.iter().map(|&p| std::thread::spawn(move || Client::connect(p).redis_str(&["EVAL", BUSY, "0"]))).collect();
    std::thread::sleep(Duration::from_millis(50));
    {
        let mut sub = Client::connect(port);
        sub.send(&resp(&["PSUBSCRIBE", "gone:*"]));
    }
    for t in sleepers {
        t.join().unwrap();
    }
    // The session ended (its replies still awaited did not hold it open) and its subscriber connections closed:
    // no client connection is open on ferrule, no subscriber is left on either server.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = ports.iter().map(|&p| Client::connect(p).redis_str(&["PUBSUB", "NUMPAT"])).collect();
        let (_, stats) = f.admin("GET", "/stats");
        let open = stats.split("\"curr_connections\"").nth(1).map(|rest| {
            rest.trim_start_matches([':', ' ']).chars().take_while(char::is_ascii_digit).collect::<String>()
        });
        if left.iter().all(|n| n == ":0\r\n") && open.as_deref() == Some("0") {
            break;
        }
        assert!(Instant::now() < deadline, "{left:?} open {open:?}: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_that_changes_the_pool_makes_subscribers_subscribe_again() {
    let backends = [redis_server(), redis_server()];
    let third = redis_server();
    let port = free_port();
    let body = |servers: &[u16], timeout: u64| {
        let specs: Vec<String> = servers.iter().map(|p| format!("127.0.0.1:{p}:1")).collect();
        let pool = format!("hash = \"md5\"\nhash_tag = \"{{}}\"\ntimeout_ms = {timeout}");
        format!("{}{}", listener_toml("cache", port, "redis", "main", ""), redis_pool_toml("main", &specs, &pool))
    };
    let two = [backends[0].port, backends[1].port];
    let f = Ferrule::start(&body(&two, 1000), port);
    let mut sub = Client::connect(port);
    send_read(&mut sub, &["SUBSCRIBE", "news"], 1);
    let mut pattern = Client::connect(port);
    send_read(&mut pattern, &["PSUBSCRIBE", "n*"], 1);
    // A reload that keeps the pool's servers (another timeout) moves nothing: the subscribers stay.
    f.write_config(&body(&two, 1500));
    assert!(f.wait_log("config applied", 1, Duration::from_secs(10)), "{}", f.log());
    let mut publisher = Client::connect(port);
    assert_eq!(publisher.redis_str(&["PUBLISH", "news", "a"]), ":2\r\n");
    assert!(reply(&mut sub).ends_with("$1\r\na\r\n"));
    assert!(reply(&mut pattern).ends_with("$1\r\na\r\n"));
    // One that adds a server: the placement changes, so each subscriber is told and its connection closed (its
    // library reconnects and subscribes where publishers now publish), with a warning in the log.
    f.write_config(&body(&[two[0], two[1], third.port], 1500));
    for c in [&mut sub, &mut pattern] {
        let err = reply(c);
        assert!(err.starts_with("-ERR ferrule: the configuration was reloaded: pool 'main' changed"), "{err}");
        assert!(c.closed_by_peer());
    }
    assert!(f.log().contains("closing its connection so that it subscribes again"), "{}", f.log());
    // Subscribing again works on the new pool.
    let mut again = Client::connect(port);
    send_read(&mut again, &["SUBSCRIBE", "news"], 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Client::connect(port).redis_str(&["PUBLISH", "news", "b"]) != ":1\r\n" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reply(&mut again).ends_with("$1\r\nb\r\n"));
}

#[test]
fn a_server_that_never_confirms_fails_the_subscription_after_timeout_ms() {
    use std::io::{Read, Write};
    // A fake server that answers PING (so it stays in the ring) and stalls on everything else.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in fake.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    for _ in 0..buf[..n].windows(4).filter(|w| w.eq_ignore_ascii_case(b"PING")).count() {
                        let _ = conn.write_all(b"+PONG\r\n");
                    }
                }
            });
        }
    });
    let port = free_port();
    let body = format!(
        "{}{}",
        listener_toml("cache", port, "redis", "main", ""),
        redis_pool_toml("main", &[format!("127.0.0.1:{fake_port}:1")], "timeout_ms = 300")
    );
    let f = Ferrule::start(&body, port);
    let mut sub = Client::connect(port);
    let started = Instant::now();
    sub.send(&resp(&["SUBSCRIBE", "stalled"]));
    let err = reply(&mut sub);
    assert!(
        err.starts_with("-ERR ferrule: subscriber connection to backend main/")
            && err.ends_with("did not confirm SUBSCRIBE within timeout_ms (300 ms)\r\n"),
        "{err}"
    );
    // Bounded by the timeout, not forever (loose: the machine may be busy).
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert!(sub.closed_by_peer());
    assert!(f.log().contains("did not confirm SUBSCRIBE"), "{}", f.log());
}
