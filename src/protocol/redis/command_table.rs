//! The command table: every command of Redis 7.x (plus the 7.4/8.0 hash-field commands), sorted by name (the
//! order COMMAND lists them in; `commands::lookup` finds them through a hashed index built from this table at
//! compile time). Arity follows the newest redis (e.g. ZRANK is -3 since 7.2), so the proxy never refuses what a
//! current backend accepts; the backend still checks each command's own syntax.
//!
//! Cross-checked against the `COMMAND` output of redis-server 7.0 and the command JSON files of later
//! releases: every command redis knows is here, so only truly unknown names get "unknown command".

use super::blocking::Block;
use super::commands::{CommandInfo, CommandKind, KeySpec, Local, PoolCmd, Split, StoreOption, Txn};
use super::pubsub::{PubSubCmd, SubKind};

/// Forwarded to the server of the key at args[1].
const fn single(name: &'static str, arity: i32) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::Single, kind: CommandKind::Forward }
}

/// Forwarded to the first key's server; all keys args[first..=last] every `step` must live there.
const fn same(name: &'static str, arity: i32, first: usize, last: isize, step: usize) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::SameServer { first, last, step }, kind: CommandKind::Forward }
}

/// Forwarded to the first key's server; the key count is at args[numkeys_pos].
const fn numkeys(name: &'static str, arity: i32, numkeys_pos: usize, dest: Option<usize>) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::NumKeys { numkeys_pos, dest }, kind: CommandKind::Forward }
}

/// Forwarded to the server of args[1]; a destination given by an option must live there too.
const fn store_option(name: &'static str, arity: i32, kind: StoreOption) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::StoreOption(kind), kind: CommandKind::Forward }
}

/// Split per server.
const fn split(name: &'static str, arity: i32, how: Split, first: usize, step: usize) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::Multi { first, step }, kind: CommandKind::Split(how) }
}

/// Answered by the proxy.
const fn local(name: &'static str, arity: i32, what: Local) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::None, kind: CommandKind::Local(what) }
}

/// About the whole pool: fanned out to its servers, or SCAN's server by server.
const fn pool(name: &'static str, arity: i32, what: PoolCmd) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::None, kind: CommandKind::Pool(what) }
}

/// Refused, with the reason.
const fn unsupported(name: &'static str, arity: i32, reason: &'static str) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::None, kind: CommandKind::Unsupported(reason) }
}

/// Decided by the session's transaction state.
const fn txn(name: &'static str, arity: i32, what: Txn) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::None, kind: CommandKind::Transaction(what) }
}

/// Carried out on subscriber connections of the client's own (`io::session::redis::pubsub`).
const fn pubsub(name: &'static str, arity: i32, what: PubSubCmd) -> CommandInfo {
    CommandInfo { name, arity, keys: KeySpec::None, kind: CommandKind::PubSub(what) }
}

/// Sent on a connection of the client's own while it blocks; its keys must share a server.
const fn blocking(name: &'static str, arity: i32, keys: KeySpec, how: Block) -> CommandInfo {
    CommandInfo { name, arity, keys, kind: CommandKind::Blocking(how) }
}

/// Keys args[1..] up to the one before the timeout (BLPOP k1 k2 timeout).
const BEFORE_LAST: KeySpec = KeySpec::SameServer { first: 1, last: -2, step: 1 };

/// Sorted by name (byte order), checked by a test.
pub(crate) static COMMANDS: [CommandInfo; 255] = [
    unsupported("ACL", -2, "server administration"),
    single("APPEND", 3),
    unsupported("ASKING", 1, "cluster commands"),
    local("AUTH", -2, Local::Auth),
    unsupported("BGREWRITEAOF", 1, "server administration"),
    unsupported("BGSAVE", -1, "server administration"),
    single("BITCOUNT", -2),
    single("BITFIELD", -2),
    single("BITFIELD_RO", -2),
    same("BITOP", -4, 2, -1, 1),
    single("BITPOS", -3),
    blocking("BLMOVE", 6, KeySpec::SameServer { first: 1, last: 2, step: 1 }, Block::At(5)),
    blocking("BLMPOP", -5, KeySpec::NumKeys { numkeys_pos: 2, dest: None }, Block::At(1)),
    blocking("BLPOP", -3, BEFORE_LAST, Block::LastArg),
    blocking("BRPOP", -3, BEFORE_LAST, Block::LastArg),
    blocking("BRPOPLPUSH", 4, KeySpec::SameServer { first: 1, last: 2, step: 1 }, Block::At(3)),
    blocking("BZMPOP", -5, KeySpec::NumKeys { numkeys_pos: 2, dest: None }, Block::At(1)),
    blocking("BZPOPMAX", -3, BEFORE_LAST, Block::LastArg),
    blocking("BZPOPMIN", -3, BEFORE_LAST, Block::LastArg),
    local("CLIENT", -2, Local::ClientSetname),
    unsupported("CLUSTER", -2, "cluster commands"),
    local("COMMAND", -1, Local::Command),
    unsupported("CONFIG", -2, "server administration"),
    same("COPY", -3, 1, 2, 1),
    pool("DBSIZE", 1, PoolCmd::Dbsize),
    unsupported("DEBUG", -2, "server administration"),
    single("DECR", 2),
    single("DECRBY", 3),
    split("DEL", -2, Split::SumIntegers, 1, 1),
    txn("DISCARD", 1, Txn::Discard),
    single("DUMP", 2),
    local("ECHO", 2, Local::Echo),
    numkeys("EVAL", -3, 2, None),
    numkeys("EVALSHA", -3, 2, None),
    numkeys("EVALSHA_RO", -3, 2, None),
    numkeys("EVAL_RO", -3, 2, None),
    txn("EXEC", 1, Txn::Exec),
    split("EXISTS", -2, Split::SumIntegers, 1, 1),
    single("EXPIRE", -3),
    single("EXPIREAT", -3),
    single("EXPIRETIME", 2),
    unsupported("FAILOVER", -1, "replication"),
    numkeys("FCALL", -3, 2, None),
    numkeys("FCALL_RO", -3, 2, None),
    unsupported("FLUSHALL", -1, "keyspace-wide commands"),
    unsupported("FLUSHDB", -1, "keyspace-wide commands"),
    pool("FUNCTION", -2, PoolCmd::Function),
    single("GEOADD", -5),
    single("GEODIST", -4),
    single("GEOHASH", -2),
    single("GEOPOS", -2),
    store_option("GEORADIUS", -6, StoreOption::GeoRadius),
    store_option("GEORADIUSBYMEMBER", -5, StoreOption::GeoRadius),
    single("GEORADIUSBYMEMBER_RO", -5),
    single("GEORADIUS_RO", -6),
    single("GEOSEARCH", -7),
    same("GEOSEARCHSTORE", -8, 1, 2, 1),
    single("GET", 2),
    single("GETBIT", 3),
    single("GETDEL", 2),
    single("GETEX", -2),
    single("GETRANGE", 4),
    single("GETSET", 3),
    single("HDEL", -3),
    local("HELLO", -1, Local::Hello),
    single("HEXISTS", 3),
    single("HEXPIRE", -6),
    single("HEXPIREAT", -6),
    single("HEXPIRETIME", -5),
    single("HGET", 3),
    single("HGETALL", 2),
    single("HGETDEL", -5),
    single("HGETEX", -5),
    single("HINCRBY", 4),
    single("HINCRBYFLOAT", 4),
    single("HKEYS", 2),
    single("HLEN", 2),
    single("HMGET", -3),
    single("HMSET", -4),
    single("HPERSIST", -5),
    single("HPEXPIRE", -6),
    single("HPEXPIREAT", -6),
    single("HPEXPIRETIME", -5),
    single("HPTTL", -5),
    single("HRANDFIELD", -2),
    single("HSCAN", -3),
    single("HSET", -4),
    single("HSETEX", -6),
    single("HSETNX", 4),
    single("HSTRLEN", 3),
    single("HTTL", -5),
    single("HVALS", 2),
    single("INCR", 2),
    single("INCRBY", 3),
    single("INCRBYFLOAT", 3),
    local("INFO", -1, Local::Info),
    unsupported("KEYS", 2, "keyspace scans"),
    unsupported("LASTSAVE", 1, "server administration"),
    unsupported("LATENCY", -2, "server administration"),
    same("LCS", -3, 1, 2, 1),
    single("LINDEX", 3),
    single("LINSERT", 5),
    single("LLEN", 2),
    same("LMOVE", 5, 1, 2, 1),
    numkeys("LMPOP", -4, 1, None),
    unsupported("LOLWUT", -1, "server administration"),
    single("LPOP", -2),
    single("LPOS", -3),
    single("LPUSH", -3),
    single("LPUSHX", -3),
    single("LRANGE", 4),
    single("LREM", 4),
    single("LSET", 4),
    single("LTRIM", 4),
    same("MEMORY", -2, 2, 2, 1),
    split("MGET", -2, Split::Mget, 1, 1),
    unsupported("MIGRATE", -6, "key migration"),
    unsupported("MODULE", -2, "server administration"),
    unsupported("MONITOR", 1, "server administration"),
    unsupported("MOVE", 3, "multiple databases"),
    split("MSET", -3, Split::Mset, 1, 2),
    same("MSETNX", -3, 1, -2, 2),
    txn("MULTI", 1, Txn::Multi),
    same("OBJECT", -2, 2, 2, 1),
    single("PERSIST", 2),
    single("PEXPIRE", -3),
    single("PEXPIREAT", -3),
    single("PEXPIRETIME", 2),
    single("PFADD", -2),
    same("PFCOUNT", -2, 1, -1, 1),
    unsupported("PFDEBUG", 3, "server administration"),
    same("PFMERGE", -2, 1, -1, 1),
    unsupported("PFSELFTEST", 1, "server administration"),
    local("PING", -1, Local::Ping),
    single("PSETEX", 4),
    pubsub("PSUBSCRIBE", -2, PubSubCmd::Subscribe(SubKind::Pattern)),
    unsupported("PSYNC", -3, "replication"),
    single("PTTL", 2),
    single("PUBLISH", 3),
    pool("PUBSUB", -2, PoolCmd::Pubsub),
    pubsub("PUNSUBSCRIBE", -1, PubSubCmd::Unsubscribe(SubKind::Pattern)),
    local("QUIT", -1, Local::Quit),
    unsupported("RANDOMKEY", 1, "keyspace scans"),
    unsupported("READONLY", 1, "cluster commands"),
    unsupported("READWRITE", 1, "cluster commands"),
    same("RENAME", 3, 1, 2, 1),
    same("RENAMENX", 3, 1, 2, 1),
    unsupported("REPLCONF", -1, "replication"),
    unsupported("REPLICAOF", 3, "replication"),
    unsupported("RESET", 1, "connection reset"),
    single("RESTORE", -4),
    unsupported("RESTORE-ASKING", -4, "cluster commands"),
    unsupported("ROLE", 1, "replication"),
    single("RPOP", -2),
    same("RPOPLPUSH", 3, 1, 2, 1),
    single("RPUSH", -3),
    single("RPUSHX", -3),
    single("SADD", -3),
    unsupported("SAVE", 1, "server administration"),
    pool("SCAN", -2, PoolCmd::Scan),
    single("SCARD", 2),
    pool("SCRIPT", -2, PoolCmd::Script),
    same("SDIFF", -2, 1, -1, 1),
    same("SDIFFSTORE", -3, 1, -1, 1),
    local("SELECT", 2, Local::Select),
    unsupported("SENTINEL", -2, "server administration"),
    single("SET", -3),
    single("SETBIT", 4),
    single("SETEX", 4),
    single("SETNX", 3),
    single("SETRANGE", 4),
    unsupported("SFLUSH", -3, "keyspace-wide commands"),
    unsupported("SHUTDOWN", -1, "server administration"),
    same("SINTER", -2, 1, -1, 1),
    numkeys("SINTERCARD", -3, 1, None),
    same("SINTERSTORE", -3, 1, -1, 1),
    single("SISMEMBER", 3),
    unsupported("SLAVEOF", 3, "replication"),
    unsupported("SLOWLOG", -2, "server administration"),
    single("SMEMBERS", 2),
    single("SMISMEMBER", -3),
    same("SMOVE", 4, 1, 2, 1),
    store_option("SORT", -2, StoreOption::Sort),
    single("SORT_RO", -2),
    single("SPOP", -2),
    single("SPUBLISH", 3),
    single("SRANDMEMBER", -2),
    single("SREM", -3),
    single("SSCAN", -3),
    pubsub("SSUBSCRIBE", -2, PubSubCmd::Subscribe(SubKind::Shard)),
    single("STRLEN", 2),
    pubsub("SUBSCRIBE", -2, PubSubCmd::Subscribe(SubKind::Channel)),
    single("SUBSTR", 4),
    same("SUNION", -2, 1, -1, 1),
    same("SUNIONSTORE", -3, 1, -1, 1),
    pubsub("SUNSUBSCRIBE", -1, PubSubCmd::Unsubscribe(SubKind::Shard)),
    unsupported("SWAPDB", 3, "multiple databases"),
    unsupported("SYNC", 1, "replication"),
    unsupported("TIME", 1, "server administration"),
    split("TOUCH", -2, Split::SumIntegers, 1, 1),
    single("TTL", 2),
    single("TYPE", 2),
    split("UNLINK", -2, Split::SumIntegers, 1, 1),
    pubsub("UNSUBSCRIBE", -1, PubSubCmd::Unsubscribe(SubKind::Channel)),
    txn("UNWATCH", 1, Txn::Unwatch),
    unsupported("WAIT", 3, "replication"),
    unsupported("WAITAOF", 4, "replication"),
    CommandInfo {
        name: "WATCH",
        arity: -2,
        keys: KeySpec::SameServer { first: 1, last: -1, step: 1 },
        kind: CommandKind::Transaction(Txn::Watch),
    },
    single("XACK", -4),
    single("XADD", -5),
    single("XAUTOCLAIM", -6),
    single("XCLAIM", -6),
    single("XDEL", -3),
    same("XGROUP", -2, 2, 2, 1),
    same("XINFO", -2, 2, 2, 1),
    single("XLEN", 2),
    single("XPENDING", -3),
    single("XRANGE", -4),
    blocking("XREAD", -4, KeySpec::Streams, Block::BlockOption),
    blocking("XREADGROUP", -7, KeySpec::Streams, Block::BlockOption),
    single("XREVRANGE", -4),
    single("XSETID", -3),
    single("XTRIM", -4),
    single("ZADD", -4),
    single("ZCARD", 2),
    single("ZCOUNT", 4),
    numkeys("ZDIFF", -3, 1, None),
    numkeys("ZDIFFSTORE", -4, 2, Some(1)),
    single("ZINCRBY", 4),
    numkeys("ZINTER", -3, 1, None),
    numkeys("ZINTERCARD", -3, 1, None),
    numkeys("ZINTERSTORE", -4, 2, Some(1)),
    single("ZLEXCOUNT", 4),
    numkeys("ZMPOP", -4, 1, None),
    single("ZMSCORE", -3),
    single("ZPOPMAX", -2),
    single("ZPOPMIN", -2),
    single("ZRANDMEMBER", -2),
    single("ZRANGE", -4),
    single("ZRANGEBYLEX", -4),
    single("ZRANGEBYSCORE", -4),
    same("ZRANGESTORE", -5, 1, 2, 1),
    single("ZRANK", -3),
    single("ZREM", -3),
    single("ZREMRANGEBYLEX", 4),
    single("ZREMRANGEBYRANK", 4),
    single("ZREMRANGEBYSCORE", 4),
    single("ZREVRANGE", -4),
    single("ZREVRANGEBYLEX", -4),
    single("ZREVRANGEBYSCORE", -4),
    single("ZREVRANK", -3),
    single("ZSCAN", -3),
    single("ZSCORE", 3),
    numkeys("ZUNION", -3, 1, None),
    numkeys("ZUNIONSTORE", -4, 2, Some(1)),
];
