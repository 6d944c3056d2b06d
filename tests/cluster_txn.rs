//! Transactions and blocking commands on a `redis_cluster` pool, against a real 3+3 cluster on loopback: one
//! cluster for every case (they run in order in one test, the slot moves last).

mod common;

use common::cluster::{cli, ferrule_for, RedisCluster};
use common::Client;
use ferrule::cluster::key_slot;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

/// Sends `cmds` pipelined and returns their replies (commands written as slices of slices, which the shared
/// helper's generic parameter cannot infer from array literals of different lengths).
fn pipeline(c: &mut Client, cmds: &[&[&str]]) -> Vec<String> {
    common::cluster::pipeline(c, cmds)
}

/// A hash tag `{<prefix>N}` for every primary (in `primaries`' order), found by asking the cluster who owns its
/// slot.
fn tag_per_primary(cluster: &RedisCluster, primaries: &[u16], prefix: &str) -> Vec<String> {
    let mut tags: Vec<Option<String>> = vec![None; primaries.len()];
    for n in 0..1000 {
        let tag = format!("{{{prefix}{n}}}");
        let owner = cluster.owner_of(key_slot(tag.as_bytes()));
        let i = primaries.iter().position(|&p| p == owner).unwrap();
        if tags[i].is_none() {
            tags[i] = Some(tag);
        }
        if tags.iter().all(Option::is_some) {
            return tags.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("no tag for every primary");
}

fn python_with_redis_py() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let python = std::env::var_os("FERRULE_PYTHON").map(PathBuf::from).unwrap_or(venv);
    let found = Command::new(&python).args(["-c", "import redis"]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "redis-py is not installed for {} (scripts/test.sh makes target/pyenv; or set FERRULE_PYTHON)",
        python.display()
    );
    python
}

#[test]
fn transactions_and_blocking_commands_on_a_cluster_pool() {
    let cluster = RedisCluster::start(3, 1);
    // No periodic refresh: the slot moves below must meet a stale map (a refresh comes only from the redirects).
    let (f, port) = ferrule_for(&cluster, "cluster_refresh_ms = 600000\nmax_dedicated_connections = 8");
    let mut c = Client::connect(port);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    let tags = tag_per_primary(&cluster, &primaries, "t");

    // MULTI/EXEC with hash-tagged keys, on each primary: applied there, pipelined as client libraries send it.
    for (tag, &owner) in tags.iter().zip(&primaries) {
        let (a, b) = (format!("{tag}.a"), format!("{tag}.b"));
        let replies =
            pipeline(&mut c, &[&["MULTI"], &["PING"], &["SET", &a, "1"], &["INCR", &b], &["GET", &a], &["EXEC"]]);
        assert_eq!(replies[..5], ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n"], "{tag}");
        assert_eq!(replies[5], format!("*4\r\n+PONG\r\n+OK\r\n:1\r\n{}", bulk("1")), "{tag}");
        assert_eq!(cli(owner, &["GET", &a]), "1", "{tag}'s transaction ran on its primary {owner}");
        assert_eq!(cli(owner, &["GET", &b]), "1");
    }
    // A transaction of keyless commands only, and an empty one.
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["ECHO", "x"], &["EXEC"]])[2], format!("*1\r\n{}", bulk("x")));
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["EXEC"]])[1], "*0\r\n");

    // A queued command of another slot: redis' CROSSSLOT, and EXEC aborts with nothing applied. Two slots of one
    // node count as different, as in Redis Cluster.
    let first = format!("{}.x", tags[0]);
    let other_node = format!("{}.x", tags[1]);
    let mut same_node = None;
    for n in 0..10000 {
        let k = format!("same{n}");
        if key_slot(k.as_bytes()) != key_slot(first.as_bytes())
            && cluster.owner_of(key_slot(k.as_bytes())) == primaries[0]
        {
            same_node = Some(k);
            break;
        }
    }
    let same_node = same_node.expect("another slot of the first primary");
    for other in [&other_node, &same_node] {
        let replies = pipeline(
            &mut c,
            &[&["MULTI"], &["SET", &first, "applied"], &["SET", other, "applied"], &["INCR", &first], &["EXEC"]],
        );
        assert_eq!(replies[..2], ["+OK\r\n", "+QUEUED\r\n"]);
        assert_eq!(replies[2], CROSSSLOT, "{other}");
        assert_eq!(replies[3], "+QUEUED\r\n");
        assert_eq!(replies[4], EXECABORT);
        assert_eq!(c.redis_str(&["EXISTS", &first, other]), ":0\r\n", "nothing of the aborted transaction applied");
    }
    // WATCH of keys in two slots: CROSSSLOT, and nothing is watched.
    assert_eq!(c.redis_str(&["WATCH", &first, &other_node]), CROSSSLOT);

    // WATCH, then another client's write through ferrule: EXEC answers nil and nothing is applied.
    let w = format!("{}.watched", tags[2]);
    assert_eq!(c.redis_str(&["SET", &w, "start"]), "+OK\r\n");
    assert_eq!(c.redis_str(&["WATCH", &w]), "+OK\r\n");
    assert_eq!(c.redis_str(&["GET", &w]), bulk("start"), "a read after WATCH");
    let mut other = Client::connect(port);
    assert_eq!(other.redis_str(&["SET", &w, "theirs"]), "+OK\r\n");
    let replies = pipeline(&mut c, &[&["MULTI"], &["SET", &w, "mine"], &["EXEC"]]);
    assert_eq!(replies, ["+OK\r\n", "+QUEUED\r\n", "*-1\r\n"]);
    assert_eq!(c.redis_str(&["GET", &w]), bulk("theirs"));
    // Without the interference it commits.
    assert_eq!(c.redis_str(&["WATCH", &w]), "+OK\r\n");
    let replies = pipeline(&mut c, &[&["MULTI"], &["SET", &w, "mine"], &["EXEC"]]);
    assert_eq!(replies[2], "*1\r\n+OK\r\n");
    assert_eq!(cli(primaries[2], &["GET", &w]), "mine");

    // BLPOP woken by another client's LPUSH through ferrule; a timeout answers nil; keys of two slots are refused.
    let q = format!("{}.queue", tags[1]);
    let mut blocked = Client::connect(port);
    blocked.send(&common::resp(&["BLPOP", &q, "5"]));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(other.redis_str(&["LPUSH", &q, "hello"]), ":1\r\n");
    assert_eq!(String::from_utf8_lossy(&blocked.redis_reply()), format!("*2\r\n{}{}", bulk(&q), bulk("hello")));
    assert_eq!(blocked.redis_str(&["GET", &w]), bulk("mine"), "the session goes on after the block");
    assert_eq!(blocked.redis_str(&["BLPOP", &q, "0.1"]), "*-1\r\n");
    assert_eq!(blocked.redis_str(&["BLPOP", &q, &first, "1"]), CROSSSLOT);
    let s = format!("{}.stream", tags[0]);
    assert!(blocked.redis_str(&["XADD", &s, "*", "f", "v"]).starts_with('$'));
    assert!(blocked.redis_str(&["XREAD", "BLOCK", "100", "STREAMS", &s, "0"]).contains("f"));

    // redis-py's pipeline(transaction=True) and transaction() with WATCH, against the cluster pool.
    let script = format!(
        r#"
import redis
r = redis.Redis(host="127.0.0.1", port={port}, protocol=2)
p = r.pipeline(transaction=True)
p.set("{{py}}.a", "1").incr("{{py}}.b").get("{{py}}.a")
print("pipeline", p.execute())
def bump(pipe):
    v = int(pipe.get("{{py}}.b"))
    pipe.multi()
    pipe.set("{{py}}.b", v + 10)
print("transaction", r.transaction(bump, "{{py}}.b"))
print("b", r.get("{{py}}.b"))
try:
    p = r.pipeline(transaction=True)
    p.set("{{py}}.a", "2").set("{{other}}.a", "2")
    p.execute()
    print("crossslot not raised")
except redis.exceptions.ResponseError as e:
    print("crossslot raised", type(e).__name__, e)
print("a", r.get("{{py}}.a"))
"#
    );
    let out = Command::new("timeout")
        .arg("60")
        .arg(python_with_redis_py())
        .args(["-c", &script])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "redis-py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pipeline [True, 1, b'1']"), "{stdout}");
    assert!(stdout.contains("transaction [True]"), "{stdout}");
    assert!(stdout.contains("b b'11'"), "{stdout}");
    // redis-py raises CROSSSLOT as its ClusterCrossSlotError.
    assert!(stdout.contains("crossslot raised ClusterCrossSlotError"), "{stdout}");
    assert!(stdout.contains("a b'1'"), "the aborted pipeline applied nothing: {stdout}");

    // A blocking command sent to a slot's old owner (the map is stale): the MOVED is followed, since nothing
    // blocked there, and it blocks on the new owner, where a push wakes it.
    let bq = "{blockmoved}.q";
    let slot = key_slot(bq.as_bytes());
    let from = cluster.owner_of(slot);
    let to = *primaries.iter().find(|&&p| p != from).unwrap();
    let moved_line = format!("1 slots moved from primary 127.0.0.1:{from} to 127.0.0.1:{to}");
    let refreshes = f.log().matches(&moved_line).count();
    cluster.move_slot(slot, from, to, &[], true);
    blocked.send(&common::resp(&["BLPOP", bq, "5"]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cli(to, &["LPUSH", bq, "woken"]), "1");
    assert_eq!(String::from_utf8_lossy(&blocked.redis_reply()), format!("*2\r\n{}{}", bulk(bq), bulk("woken")));
    assert!(f.wait_log(&moved_line, refreshes + 1, Duration::from_secs(10)), "no refresh; log:\n{}", f.log());

    // A slot moved between MULTI and EXEC: EXEC is not followed to the new owner; the client gets an EXECABORT
    // naming the move, nothing is applied anywhere, and once the map is refreshed the next transaction runs on
    // the new owner.
    let mk = "{txnmoved}.k";
    let slot = key_slot(mk.as_bytes());
    assert_eq!(c.redis_str(&["SET", mk, "before"]), "+OK\r\n");
    let from = cluster.owner_of(slot);
    let to = *primaries.iter().find(|&&p| p != from).unwrap();
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["SET", mk, "during"], &["INCR", "{txnmoved}.n"]])[2], "+QUEUED\r\n");
    let moved_line = format!("1 slots moved from primary 127.0.0.1:{from} to 127.0.0.1:{to}");
    let refreshes = f.log().matches(&moved_line).count();
    cluster.move_slot(slot, from, to, &[mk], true);
    let exec = c.redis_str(&["EXEC"]);
    assert!(
        exec.starts_with(&format!(
            "-EXECABORT Transaction discarded: ferrule: pool 'c': hash slot {slot} moved to \
                                   127.0.0.1:{to} (MOVED)"
        )),
        "{exec}"
    );
    assert_eq!(cli(to, &["GET", mk]), "before", "nothing applied on the new owner");
    assert_eq!(cli(to, &["EXISTS", "{txnmoved}.n"]), "0");
    assert!(f.wait_log(&moved_line, refreshes + 1, Duration::from_secs(10)), "no refresh; log:\n{}", f.log());
    let replies = pipeline(&mut c, &[&["MULTI"], &["SET", mk, "after"], &["EXEC"]]);
    assert_eq!(replies, ["+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"], "the next transaction went to the new owner");
    assert_eq!(cli(to, &["GET", mk]), "after");

    // A slot moved after MULTI, before the first queued command: that command's redirect is an error naming it,
    // and the node aborts the transaction at EXEC.
    let qk = "{queuedmoved}.k";
    let slot = key_slot(qk.as_bytes());
    let from = cluster.owner_of(slot);
    let to = *primaries.iter().find(|&&p| p != from).unwrap();
    assert_eq!(c.redis_str(&["MULTI"]), "+OK\r\n");
    cluster.move_slot(slot, from, to, &[], true);
    let queued = c.redis_str(&["SET", qk, "v"]);
    assert!(
        queued.starts_with(&format!("-ERR ferrule: pool 'c': SET was redirected (MOVED {slot} 127.0.0.1:{to})")),
        "{queued}"
    );
    assert_eq!(c.redis_str(&["EXEC"]), EXECABORT);
    assert_eq!(cli(to, &["EXISTS", qk]), "0");
    assert_eq!(c.redis_str(&["SET", qk, "plain"]), "+OK\r\n", "plain requests still follow the move");

    // The node under a blocked command and an open transaction dies: both clients get an error for what was in
    // flight there (never a reply from another node), and the transaction's EXEC cannot run elsewhere.
    let dying = primaries[0];
    let dk = format!("{}.dying", tags[0]);
    assert_eq!(cluster.owner_of(key_slot(dk.as_bytes())), dying);
    let mut waiting = Client::connect(port);
    waiting.send(&common::resp(&["BLPOP", &dk, "0"]));
    let mut txn = Client::connect(port);
    assert_eq!(pipeline(&mut txn, &[&["MULTI"], &["SET", &dk, "v"]]), ["+OK\r\n", "+QUEUED\r\n"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut cluster = cluster;
    cluster.kill(dying);
    let r = String::from_utf8_lossy(&waiting.redis_reply()).into_owned();
    assert!(r.starts_with(&format!("-ERR ferrule: backend c/127.0.0.1:{dying} (dedicated)")), "{r}");
    let r = txn.redis_str(&["EXEC"]);
    assert!(r.starts_with(&format!("-ERR ferrule: backend c/127.0.0.1:{dying} (dedicated)")), "{r}");
    drop(f);
}
