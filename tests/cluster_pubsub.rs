//! Pub/sub through ferrule in front of a real Redis Cluster (3 primaries, 3 replicas on loopback), one cluster for
//! every case: SUBSCRIBE and PSUBSCRIBE with PUBLISH through ferrule and straight to nodes, SSUBSCRIBE and SPUBLISH
//! on every primary, -CROSSSLOT, PUBSUB merged over the nodes, RESP3 pushes, a slot moved by hand (the node's
//! `sunsubscribe` reaches the client, which subscribes again on the new owner), redis-py's PubSub, and a node
//! dying under a subscriber.

mod common;

use common::cluster::{cli, RedisCluster};
use common::{resp, Client, Ferrule};
use ferrule::cluster::key_slot;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn reply(c: &mut Client) -> String {
    String::from_utf8_lossy(&c.redis_reply()).into_owned()
}

/// Sends one command and reads `n` replies (a SUBSCRIBE of n channels answers n confirmations).
fn send_read(c: &mut Client, args: &[&str], n: usize) -> Vec<String> {
    c.send(&resp(args));
    (0..n).map(|_| reply(c)).collect()
}

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

fn message(ch: &str, data: &str) -> String {
    format!("*3\r\n$7\r\nmessage\r\n{}{}", bulk(ch), bulk(data))
}

fn smessage(ch: &str, data: &str) -> String {
    format!("*3\r\n$8\r\nsmessage\r\n{}{}", bulk(ch), bulk(data))
}

fn confirmation(word: &str, name: &str, count: usize) -> String {
    format!("*3\r\n{}{}:{count}\r\n", bulk(word), bulk(name))
}

/// `prefix0`, `prefix1`, ...: the first name whose slot the primary on `port` owns.
fn name_on(cluster: &RedisCluster, prefix: &str, port: u16) -> String {
    (0..1000)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| cluster.owner_of(key_slot(n.as_bytes())) == port)
        .unwrap_or_else(|| panic!("no {prefix}N on {port}"))
}

/// `PUBSUB NUMSUB`/`SHARDNUMSUB` of `ch` asked of the node on `port` itself.
fn node_numsub(port: u16, sub: &str, ch: &str) -> String {
    cli(port, &["PUBSUB", sub, ch])
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ferrule_for(cluster: &RedisCluster) -> (Ferrule, u16) {
    // Replicas are `loading` until their first sync: ferrule's one map read must see every node online.
    wait_until("every node is online", || {
        cli(cluster.ports[0], &["CLUSTER", "SHARDS"]).lines().filter(|l| *l == "online").count() == cluster.ports.len()
    });
    // No periodic refresh: the slot moved by hand below is learnt only from the nodes (sunsubscribe, MOVED).
    common::cluster::ferrule_for(cluster, "cluster_refresh_ms = 600000")
}

#[test]
fn pub_sub_through_a_cluster_pool_as_through_one_server() {
    let mut cluster = RedisCluster::start(3, 1);
    let (f, port) = ferrule_for(&cluster);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    let mut publisher = Client::connect(port);

    classic_channels_and_patterns(&cluster, &primaries, port, &mut publisher);
    shard_channels_on_every_primary(&cluster, &primaries, port, &mut publisher);
    pubsub_counts_merged_over_the_nodes(&cluster, &primaries, port);
    resp3_pushes(port, &mut publisher);
    a_moved_slot_unsubscribes_and_the_resubscription_goes_to_the_new_owner(&cluster, &primaries, port, &f);
    redis_py_pubsub(port);
    a_dying_node_ends_its_subscribers(&mut cluster, port, &f);
}

/// SUBSCRIBE of channels whose slots are on every primary, one client: PUBLISH through ferrule and straight to
/// any node (primary or replica) reaches it, as a cluster propagates PUBLISH to every node. PSUBSCRIBE likewise.
fn classic_channels_and_patterns(cluster: &RedisCluster, primaries: &[u16], port: u16, publisher: &mut Client) {
    let chans: Vec<String> = primaries.iter().map(|&p| name_on(cluster, "news:", p)).collect();
    let mut sub = Client::connect(port);
    let mut args = vec!["SUBSCRIBE"];
    args.extend(chans.iter().map(|c| c.as_str()));
    let confirmations = send_read(&mut sub, &args, chans.len());
    for (i, ch) in chans.iter().enumerate() {
        assert_eq!(confirmations[i], confirmation("subscribe", ch, i + 1));
    }
    // A channel is subscribed on its slot's primary (ferrule's placement): its PUBLISH there counts it.
    for (ch, &p) in chans.iter().zip(primaries) {
        assert_eq!(node_numsub(p, "NUMSUB", ch), format!("{ch}\n1"), "{ch} is subscribed on its slot's primary");
    }
    for (i, ch) in chans.iter().enumerate() {
        let data = format!("via-ferrule-{i}");
        assert_eq!(publisher.redis_str(&["PUBLISH", ch, &data]), ":1\r\n");
        assert_eq!(reply(&mut sub), message(ch, &data));
    }
    // Published straight to every node of the cluster, replicas too: each reaches the client once.
    for &node in &cluster.ports {
        let data = format!("direct-{node}");
        cli(node, &["PUBLISH", &chans[0], &data]);
        assert_eq!(reply(&mut sub), message(&chans[0], &data), "PUBLISH on node {node}");
    }
    // In subscribe mode, as on one redis: PING answers `pong`, GET is refused.
    assert_eq!(send_read(&mut sub, &["PING"], 1)[0], "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert!(send_read(&mut sub, &["GET", "x"], 1)[0].starts_with("-ERR Can't execute 'get'"));

    let mut psub = Client::connect(port);
    assert_eq!(send_read(&mut psub, &["PSUBSCRIBE", "alert.*"], 1)[0], confirmation("psubscribe", "alert.*", 1));
    // PUBLISH counts the receivers on the node it ran on: the channel's slot primary, which has the pattern's
    // subscriber only when the pattern's slot is there too.
    let same_node = cluster.owner_of(key_slot(b"alert.x")) == cluster.owner_of(key_slot(b"alert.*"));
    let want = if same_node { ":1\r\n" } else { ":0\r\n" };
    assert_eq!(publisher.redis_str(&["PUBLISH", "alert.x", "a"]), want);
    assert_eq!(
        reply(&mut psub),
        format!("*4\r\n$8\r\npmessage\r\n{}{}{}", bulk("alert.*"), bulk("alert.x"), bulk("a"))
    );
    for &node in &cluster.ports {
        cli(node, &["PUBLISH", "alert.y", "b"]);
        let want = format!("*4\r\n$8\r\npmessage\r\n{}{}{}", bulk("alert.*"), bulk("alert.y"), bulk("b"));
        assert_eq!(reply(&mut psub), want, "PUBLISH on node {node}");
    }
    // Unsubscribing everything leaves subscribe mode: the client runs commands again.
    assert_eq!(send_read(&mut psub, &["PUNSUBSCRIBE"], 1)[0], confirmation("punsubscribe", "alert.*", 0));
    assert_eq!(psub.redis_str(&["SET", "after-sub", "1"]), "+OK\r\n");
    let mut args = vec!["UNSUBSCRIBE"];
    args.extend(chans.iter().map(|c| c.as_str()));
    let done = send_read(&mut sub, &args, chans.len());
    assert_eq!(done.last().unwrap(), &confirmation("unsubscribe", chans.last().unwrap(), 0));
    for (ch, &p) in chans.iter().zip(primaries) {
        wait_until("the node forgot the subscriber", || node_numsub(p, "NUMSUB", ch) == format!("{ch}\n0"));
    }
}

/// SSUBSCRIBE of shard channels on every primary (one command each, as their slots differ), SPUBLISH through
/// ferrule reaching each; channels of several slots in one SSUBSCRIBE get redis' -CROSSSLOT.
fn shard_channels_on_every_primary(cluster: &RedisCluster, primaries: &[u16], port: u16, publisher: &mut Client) {
    let chans: Vec<String> = primaries.iter().map(|&p| name_on(cluster, "orders:", p)).collect();
    let mut sub = Client::connect(port);
    assert_eq!(
        send_read(&mut sub, &["SSUBSCRIBE", &chans[0], &chans[1]], 1)[0],
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(sub.redis_str(&["PING"]), "+PONG\r\n", "a refused SSUBSCRIBE subscribes nothing");
    for (i, ch) in chans.iter().enumerate() {
        assert_eq!(send_read(&mut sub, &["SSUBSCRIBE", ch], 1)[0], confirmation("ssubscribe", ch, i + 1));
    }
    // Channels sharing a hash tag share a slot: one SSUBSCRIBE of both.
    let tagged = send_read(&mut sub, &["SSUBSCRIBE", "{t}.a", "{t}.b"], 2);
    assert_eq!(tagged, vec![confirmation("ssubscribe", "{t}.a", 4), confirmation("ssubscribe", "{t}.b", 5)]);
    for (ch, &p) in chans.iter().zip(primaries) {
        assert_eq!(node_numsub(p, "SHARDNUMSUB", ch), format!("{ch}\n1"), "{ch} is on its slot's primary");
    }
    for (i, ch) in chans.iter().enumerate() {
        let data = format!("s{i}");
        assert_eq!(publisher.redis_str(&["SPUBLISH", ch, &data]), ":1\r\n");
        assert_eq!(reply(&mut sub), smessage(ch, &data));
    }
    assert_eq!(publisher.redis_str(&["SPUBLISH", "{t}.b", "tb"]), ":1\r\n");
    assert_eq!(reply(&mut sub), smessage("{t}.b", "tb"));
    // SUNSUBSCRIBE of every one at once: ferrule asks each node per slot (a node refuses two slots in one).
    let done = send_read(&mut sub, &["SUNSUBSCRIBE"], 5);
    assert_eq!(done.iter().filter(|r| r.contains("sunsubscribe")).count(), 5, "{done:?}");
    assert!(done[4].ends_with(":0\r\n"), "{done:?}");
    assert_eq!(sub.redis_str(&["SET", "after-ssub", "1"]), "+OK\r\n", "no longer in subscribe mode");
}

/// PUBSUB asked of every node of the map, merged: what one server holding every subscriber would answer.
fn pubsub_counts_merged_over_the_nodes(cluster: &RedisCluster, primaries: &[u16], port: u16) {
    let ch = name_on(cluster, "count:", primaries[0]);
    let sh = name_on(cluster, "scount:", primaries[1]);
    let mut through = Client::connect(port);
    send_read(&mut through, &["SUBSCRIBE", &ch], 1);
    let mut through2 = Client::connect(port);
    send_read(&mut through2, &["SSUBSCRIBE", &sh], 1);
    send_read(&mut through2, &["PSUBSCRIBE", "cnt.*"], 1);
    // A direct subscriber on a replica (any node serves classic pub/sub).
    let replica = *cluster.ports.iter().find(|p| !primaries.contains(p)).unwrap();
    let mut direct = Client::connect(replica);
    send_read(&mut direct, &["SUBSCRIBE", &ch], 1);
    let mut q = Client::connect(port);
    assert_eq!(q.redis_str(&["PUBSUB", "NUMSUB", &ch]), format!("*2\r\n{}:2\r\n", bulk(&ch)));
    assert_eq!(q.redis_str(&["PUBSUB", "SHARDNUMSUB", &sh]), format!("*2\r\n{}:1\r\n", bulk(&sh)));
    assert_eq!(q.redis_str(&["PUBSUB", "NUMPAT"]), ":1\r\n");
    assert_eq!(q.redis_str(&["PUBSUB", "CHANNELS", "count:*"]), format!("*1\r\n{}", bulk(&ch)));
    assert_eq!(q.redis_str(&["PUBSUB", "SHARDCHANNELS", "scount:*"]), format!("*1\r\n{}", bulk(&sh)));
}

/// A RESP3 client gets its confirmations and messages as pushes, between replies to its other commands.
fn resp3_pushes(port: u16, publisher: &mut Client) {
    let mut c = Client::connect(port);
    assert!(c.redis_str(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(
        send_read(&mut c, &["SSUBSCRIBE", "r3"], 1)[0],
        format!(">3\r\n{}{}:1\r\n", bulk("ssubscribe"), bulk("r3"))
    );
    assert_eq!(
        send_read(&mut c, &["SUBSCRIBE", "r3c"], 1)[0],
        format!(">3\r\n{}{}:1\r\n", bulk("subscribe"), bulk("r3c"))
    );
    assert_eq!(publisher.redis_str(&["SPUBLISH", "r3", "hi"]), ":1\r\n");
    assert_eq!(reply(&mut c), format!(">3\r\n$8\r\nsmessage\r\n{}{}", bulk("r3"), bulk("hi")));
    assert_eq!(publisher.redis_str(&["PUBLISH", "r3c", "yo"]), ":1\r\n");
    assert_eq!(reply(&mut c), format!(">3\r\n$7\r\nmessage\r\n{}{}", bulk("r3c"), bulk("yo")));
    // Other commands run while subscribed.
    assert_eq!(c.redis_str(&["SET", "r3k", "v"]), "+OK\r\n");
}

/// A shard channel's slot moved by hand to another primary: the old owner's `sunsubscribe` reaches the client
/// (with its own count), and its SSUBSCRIBE again lands on the new owner, where SPUBLISH reaches it.
fn a_moved_slot_unsubscribes_and_the_resubscription_goes_to_the_new_owner(
    cluster: &RedisCluster,
    primaries: &[u16],
    port: u16,
    f: &Ferrule,
) {
    // First with no subscriber on the slot: nothing tells ferrule of the move (no periodic refresh), so its
    // SSUBSCRIBE goes by the stale map to the old owner, which answers -MOVED; ferrule follows it.
    let stale = "{stale}.orders";
    let stale_slot = key_slot(stale.as_bytes());
    let stale_from = cluster.owner_of(stale_slot);
    let stale_to = *primaries.iter().find(|&&p| p != stale_from).unwrap();
    cluster.move_slot(stale_slot, stale_from, stale_to, &[], true);
    let moved_before = cluster_stat(f, "moved");
    let mut sub = Client::connect(port);
    assert_eq!(send_read(&mut sub, &["SSUBSCRIBE", stale], 1)[0], confirmation("ssubscribe", stale, 1));
    assert_eq!(cluster_stat(f, "moved"), moved_before + 1, "the SSUBSCRIBE met the old owner's MOVED");
    assert_eq!(node_numsub(stale_to, "SHARDNUMSUB", stale), format!("{stale}\n1"), "subscribed on the new owner");
    assert_eq!(cli(stale_to, &["SPUBLISH", stale, "x"]), "1");
    assert_eq!(reply(&mut sub), smessage(stale, "x"));
    assert_eq!(send_read(&mut sub, &["SUNSUBSCRIBE", stale], 1)[0], confirmation("sunsubscribe", stale, 0));
    cluster.move_slot(stale_slot, stale_to, stale_from, &[], true);

    let ch = "{mv}.orders";
    let slot = key_slot(ch.as_bytes());
    let from = cluster.owner_of(slot);
    let to = *primaries.iter().find(|&&p| p != from).unwrap();
    let other = name_on(cluster, "stay:", from);
    assert_eq!(send_read(&mut sub, &["SSUBSCRIBE", ch], 1)[0], confirmation("ssubscribe", ch, 1));
    // A second shard channel on the same node, whose slot stays: it is not disturbed.
    assert_eq!(send_read(&mut sub, &["SSUBSCRIBE", &other], 1)[0], confirmation("ssubscribe", &other, 2));
    let unsubscribes_before = cluster_stat(f, "slot_unsubscribes");
    cluster.move_slot(slot, from, to, &[], true);
    assert_eq!(reply(&mut sub), confirmation("sunsubscribe", ch, 1), "the old owner's notice, with the client's count");
    assert_eq!(cluster_stat(f, "slot_unsubscribes"), unsubscribes_before + 1);
    // Subscribing again: by the new map, or through the old owner's MOVED if ferrule has not read it yet.
    assert_eq!(send_read(&mut sub, &["SSUBSCRIBE", ch], 1)[0], confirmation("ssubscribe", ch, 2));
    assert_eq!(node_numsub(to, "SHARDNUMSUB", ch), format!("{ch}\n1"), "subscribed on the new owner");
    assert_eq!(node_numsub(from, "SHARDNUMSUB", ch), format!("{ch}\n0"));
    let mut publisher = Client::connect(port);
    assert_eq!(publisher.redis_str(&["SPUBLISH", ch, "after-move"]), ":1\r\n");
    assert_eq!(reply(&mut sub), smessage(ch, "after-move"));
    assert_eq!(cli(to, &["SPUBLISH", ch, "direct"]), "1");
    assert_eq!(reply(&mut sub), smessage(ch, "direct"));
    assert_eq!(publisher.redis_str(&["SPUBLISH", &other, "still"]), ":1\r\n");
    assert_eq!(reply(&mut sub), smessage(&other, "still"));
    // The slot goes back, so the cluster is as it was for the next case.
    cluster.move_slot(slot, to, from, &[], true);
    assert_eq!(reply(&mut sub), confirmation("sunsubscribe", ch, 1));
}

/// redis-py's PubSub (tests/clients/redis_py_cluster_pubsub.py) through the cluster pool, RESP2 and RESP3.
fn redis_py_pubsub(port: u16) {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let python = std::env::var_os("FERRULE_PYTHON").map(PathBuf::from).unwrap_or(venv);
    assert!(python.exists(), "redis-py is not installed: run scripts/test.sh (it makes target/pyenv)");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py_cluster_pubsub.py");
    let out = Command::new(&python).arg(&script).arg(port.to_string()).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("protocol=2: ok") && stdout.contains("protocol=3: ok"), "{stdout}");
}

/// The node a subscriber's connection is on dies: the client gets an error and its connection is closed, so it
/// reconnects and subscribes again rather than silently missing messages.
fn a_dying_node_ends_its_subscribers(cluster: &mut RedisCluster, port: u16, f: &Ferrule) {
    let victim = cluster.primaries()[2];
    let ch = name_on(cluster, "doomed:", victim);
    let mut sub = Client::connect(port);
    assert_eq!(send_read(&mut sub, &["SUBSCRIBE", &ch], 1)[0], confirmation("subscribe", &ch, 1));
    cluster.kill(victim);
    let err = reply(&mut sub);
    assert!(err.starts_with("-ERR ferrule: subscriber connection to backend c/127.0.0.1:"), "{err}");
    assert!(sub.closed_by_peer(), "the client's connection is closed");
    assert!(f.wait_log("(subscriber)", 1, Duration::from_secs(5)), "{}", f.log());
}

/// A figure of the cluster pool from GET /stats (`cluster_<name>` in the pool's object).
fn cluster_stat(f: &Ferrule, name: &str) -> u64 {
    let (code, body) = f.admin("GET", "/stats");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["c"][format!("cluster_{name}")].as_u64().unwrap_or_else(|| panic!("no cluster_{name} in {body}"))
}
