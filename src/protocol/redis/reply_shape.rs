//! Which replies can answer which request (pure, no I/O): the guard against a backend connection that is out of
//! step with its request queue.
//!
//! Replies are matched to requests by order alone, so one extra (or missing) reply from a faulty server or
//! middlebox would shift every later reply onto the wrong request. Each forwarded request therefore carries a
//! [`ReplyShape`]: the reply types a real server can answer it with, taken from the command (GET: a bulk string or
//! nil; INCR: an integer; a split MGET fragment: an array of exactly its key count). A framed reply whose top-level
//! type is not one of them cannot belong to the request, and the backend connection is closed.
//!
//! The check looks only at a framed reply's first byte (and an array's length header when the length is known),
//! so it costs nothing measurable. It is conservative: a command whose reply type varies with its arguments or
//! that cannot be classified with confidence (scripts, OBJECT, XINFO, the 7.4+ hash-field-expiry commands...)
//! accepts any reply. An error reply is always acceptable. It cannot catch an extra reply of the same type as the
//! one expected (an extra bulk string in a stream of GETs); see docs/architecture.md.

use super::command_table::COMMANDS;
use super::commands::{command_index, CommandInfo, COMMAND_COUNT};
use super::decimal::{parse_decimal_line, Decimal};
use std::fmt;

/// A set of top-level RESP2 reply types, as bits.
pub type Kinds = u8;

/// `+...`: a status reply such as `+OK`.
pub const SIMPLE: Kinds = 1;
/// `:n`.
pub const INTEGER: Kinds = 1 << 1;
/// `$n` with a body, and the nil `$-1`.
pub const BULK: Kinds = 1 << 2;
/// The nil bulk `$-1` alone (SET NX that did not set).
pub const NIL: Kinds = 1 << 3;
/// `*n`, and the nil array `*-1`.
pub const ARRAY: Kinds = 1 << 4;
/// Every reply: the check is off.
pub const ANY: Kinds = u8::MAX;

/// The command index that names the connection prelude (AUTH and SELECT sent by the proxy itself).
const PRELUDE: u16 = u16::MAX;
/// No array length is expected.
const NO_LEN: u32 = u32::MAX;

/// The replies one request can get: small and `Copy`, so it travels with the request's pending entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyShape {
    /// Index of the command in the command table (for error messages), or [`PRELUDE`].
    command: u16,
    kinds: Kinds,
    /// An array reply must have exactly this many elements (an MGET, whole or a fragment), unless [`NO_LEN`].
    array_len: u32,
}

/// What the reply types of a command are, by name. Commands not listed accept any reply. Every name must be in the
/// command table (checked when the table below is built, at compile time).
///
/// Sources: the reply sections of the redis 7.x/8.0 command docs; where the reply type depends on options (SET
/// ... GET, LPOP with a count, ZADD INCR, SORT STORE) every possible type is listed.
const RULES: &[(&str, Kinds)] = &[
    ("APPEND", INTEGER),
    ("BITCOUNT", INTEGER),
    ("BITFIELD", ARRAY),
    ("BITFIELD_RO", ARRAY),
    ("BITOP", INTEGER),
    ("BITPOS", INTEGER),
    // A blocking pop that times out answers a nil array, BLMOVE/BRPOPLPUSH included (redis replies to every
    // timed-out list, zset or stream block with one).
    ("BLMOVE", BULK | ARRAY),
    ("BLMPOP", ARRAY),
    ("BLPOP", ARRAY),
    ("BRPOP", ARRAY),
    ("BRPOPLPUSH", BULK | ARRAY),
    ("BZMPOP", ARRAY),
    ("BZPOPMAX", ARRAY),
    ("BZPOPMIN", ARRAY),
    ("COPY", INTEGER),
    ("DECR", INTEGER),
    ("DECRBY", INTEGER),
    ("DEL", INTEGER),
    ("DUMP", BULK),
    ("EXISTS", INTEGER),
    ("EXPIRE", INTEGER),
    ("EXPIREAT", INTEGER),
    ("EXPIRETIME", INTEGER),
    ("GEOADD", INTEGER),
    ("GEODIST", BULK),
    ("GEOHASH", ARRAY),
    ("GEOPOS", ARRAY),
    ("GEORADIUS", ARRAY | INTEGER),
    ("GEORADIUSBYMEMBER", ARRAY | INTEGER),
    ("GEORADIUSBYMEMBER_RO", ARRAY),
    ("GEORADIUS_RO", ARRAY),
    ("GEOSEARCH", ARRAY),
    ("GEOSEARCHSTORE", INTEGER),
    ("GET", BULK),
    ("GETBIT", INTEGER),
    ("GETDEL", BULK),
    ("GETEX", BULK),
    ("GETRANGE", BULK),
    ("GETSET", BULK),
    ("HDEL", INTEGER),
    ("HEXISTS", INTEGER),
    ("HGET", BULK),
    ("HGETALL", ARRAY),
    ("HINCRBY", INTEGER),
    ("HINCRBYFLOAT", BULK),
    ("HKEYS", ARRAY),
    ("HLEN", INTEGER),
    ("HMGET", ARRAY),
    ("HMSET", SIMPLE),
    ("HRANDFIELD", BULK | ARRAY),
    ("HSCAN", ARRAY),
    ("HSET", INTEGER),
    ("HSETNX", INTEGER),
    ("HSTRLEN", INTEGER),
    ("HVALS", ARRAY),
    ("INCR", INTEGER),
    ("INCRBY", INTEGER),
    ("INCRBYFLOAT", BULK),
    ("LINDEX", BULK),
    ("LINSERT", INTEGER),
    ("LLEN", INTEGER),
    ("LMOVE", BULK),
    ("LMPOP", ARRAY),
    ("LPOP", BULK | ARRAY),
    ("LPOS", INTEGER | BULK | ARRAY),
    ("LPUSH", INTEGER),
    ("LPUSHX", INTEGER),
    ("LRANGE", ARRAY),
    ("LREM", INTEGER),
    ("LSET", SIMPLE),
    ("LTRIM", SIMPLE),
    ("MGET", ARRAY),
    ("MSET", SIMPLE),
    ("MSETNX", INTEGER),
    ("PERSIST", INTEGER),
    ("PEXPIRE", INTEGER),
    ("PEXPIREAT", INTEGER),
    ("PEXPIRETIME", INTEGER),
    ("PFADD", INTEGER),
    ("PFCOUNT", INTEGER),
    ("PFMERGE", SIMPLE),
    ("PSETEX", SIMPLE),
    ("PTTL", INTEGER),
    ("RENAME", SIMPLE),
    ("RENAMENX", INTEGER),
    ("RESTORE", SIMPLE),
    ("RPOP", BULK | ARRAY),
    ("RPOPLPUSH", BULK),
    ("RPUSH", INTEGER),
    ("RPUSHX", INTEGER),
    ("SADD", INTEGER),
    ("SCARD", INTEGER),
    ("SDIFF", ARRAY),
    ("SDIFFSTORE", INTEGER),
    // `SET k v GET` answers the old value (a bulk); without GET, +OK or, when NX/XX did not set, nil. The bulk is
    // added per request by `for_request`.
    ("SET", SIMPLE | NIL),
    ("SETBIT", INTEGER),
    ("SETEX", SIMPLE),
    ("SETNX", INTEGER),
    ("SETRANGE", INTEGER),
    ("SINTER", ARRAY),
    ("SINTERCARD", INTEGER),
    ("SINTERSTORE", INTEGER),
    ("SISMEMBER", INTEGER),
    ("SMEMBERS", ARRAY),
    ("SMISMEMBER", ARRAY),
    ("SMOVE", INTEGER),
    ("SORT", ARRAY | INTEGER),
    ("SORT_RO", ARRAY),
    ("SPOP", BULK | ARRAY),
    ("SRANDMEMBER", BULK | ARRAY),
    ("SREM", INTEGER),
    ("SSCAN", ARRAY),
    ("STRLEN", INTEGER),
    ("SUBSTR", BULK),
    ("SUNION", ARRAY),
    ("SUNIONSTORE", INTEGER),
    ("TOUCH", INTEGER),
    ("TTL", INTEGER),
    ("TYPE", SIMPLE),
    ("UNLINK", INTEGER),
    ("XACK", INTEGER),
    ("XADD", BULK),
    ("XAUTOCLAIM", ARRAY),
    ("XCLAIM", ARRAY),
    ("XDEL", INTEGER),
    ("XLEN", INTEGER),
    ("XPENDING", ARRAY),
    ("XRANGE", ARRAY),
    ("XREAD", ARRAY),
    ("XREADGROUP", ARRAY),
    ("XREVRANGE", ARRAY),
    ("XSETID", SIMPLE),
    ("XTRIM", INTEGER),
    ("ZADD", INTEGER | BULK),
    ("ZCARD", INTEGER),
    ("ZCOUNT", INTEGER),
    ("ZDIFF", ARRAY),
    ("ZDIFFSTORE", INTEGER),
    ("ZINCRBY", BULK),
    ("ZINTER", ARRAY),
    ("ZINTERCARD", INTEGER),
    ("ZINTERSTORE", INTEGER),
    ("ZLEXCOUNT", INTEGER),
    ("ZMPOP", ARRAY),
    ("ZMSCORE", ARRAY),
    ("ZPOPMAX", ARRAY),
    ("ZPOPMIN", ARRAY),
    ("ZRANDMEMBER", BULK | ARRAY),
    ("ZRANGE", ARRAY),
    ("ZRANGEBYLEX", ARRAY),
    ("ZRANGEBYSCORE", ARRAY),
    ("ZRANGESTORE", INTEGER),
    ("ZRANK", INTEGER | BULK | ARRAY),
    ("ZREM", INTEGER),
    ("ZREMRANGEBYLEX", INTEGER),
    ("ZREMRANGEBYRANK", INTEGER),
    ("ZREMRANGEBYSCORE", INTEGER),
    ("ZREVRANGE", ARRAY),
    ("ZREVRANGEBYLEX", ARRAY),
    ("ZREVRANGEBYSCORE", ARRAY),
    ("ZREVRANK", INTEGER | BULK | ARRAY),
    ("ZSCAN", ARRAY),
    ("ZSCORE", BULK),
    ("ZUNION", ARRAY),
    ("ZUNIONSTORE", INTEGER),
];

/// The reply kinds of every command, by command table index: built at compile time, so finding a request's shape
/// is one array index.
static KINDS_BY_COMMAND: [Kinds; COMMAND_COUNT] = build_table();

const fn build_table() -> [Kinds; COMMAND_COUNT] {
    let mut table = [ANY; COMMAND_COUNT];
    let mut rule = 0;
    while rule < RULES.len() {
        let (name, kinds) = RULES[rule];
        let mut index = 0;
        while index < COMMAND_COUNT && !same_name(COMMANDS[index].name, name) {
            index += 1;
        }
        assert!(index < COMMAND_COUNT, "a reply-shape rule names a command missing from the command table");
        table[index] = kinds;
        rule += 1;
    }
    table
}

const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The top-level type of a framed reply, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyType {
    Simple,
    Error,
    Integer,
    Bulk,
    NilBulk,
    /// An array with its element count.
    Array(i64),
    NilArray,
    /// A RESP3 type, by its type byte.
    Resp3(u8),
    /// Not a RESP type byte (the framer refuses these first; kept so the check is total).
    Unknown(u8),
}

impl fmt::Display for ReplyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyType::Simple => f.write_str("simple string"),
            ReplyType::Error => f.write_str("error"),
            ReplyType::Integer => f.write_str("integer"),
            ReplyType::Bulk => f.write_str("bulk string"),
            ReplyType::NilBulk => f.write_str("nil"),
            ReplyType::Array(n) => write!(f, "array of {n}"),
            ReplyType::NilArray => f.write_str("nil array"),
            ReplyType::Resp3(b) => write!(f, "RESP3 type '{}'", char::from(*b)),
            ReplyType::Unknown(b) => write!(f, "type byte 0x{b:02x}"),
        }
    }
}

impl ReplyType {
    /// Classifies the framed reply `reply` by its first bytes.
    pub fn of(reply: &[u8]) -> ReplyType {
        let Some(&first) = reply.first() else { return ReplyType::Unknown(0) };
        match first {
            b'+' => ReplyType::Simple,
            b'-' | b'!' => ReplyType::Error,
            b':' => ReplyType::Integer,
            b'$' if reply.starts_with(b"$-1\r") => ReplyType::NilBulk,
            b'$' => ReplyType::Bulk,
            b'*' => match parse_decimal_line(reply, 1) {
                Decimal::Value { value: -1, .. } => ReplyType::NilArray,
                Decimal::Value { value, .. } => ReplyType::Array(value),
                _ => ReplyType::Unknown(first),
            },
            b'_' | b',' | b'#' | b'(' | b'=' | b'%' | b'~' | b'>' | b'|' => ReplyType::Resp3(first),
            other => ReplyType::Unknown(other),
        }
    }

    /// Whether a request that accepts `kinds` accepts this reply. With `resp3` (a connection that negotiated RESP3,
    /// which no backend connection does today) each RESP3 type stands in for the RESP2 types it replaces: null for
    /// nil, double/verbatim for bulk, boolean/big number for integer, map/set for array; attributes and pushes are
    /// out-of-band and always accepted.
    fn fits(self, kinds: Kinds, resp3: bool) -> bool {
        let has = |k: Kinds| kinds & k != 0;
        match self {
            ReplyType::Error => true,
            ReplyType::Simple => has(SIMPLE),
            ReplyType::Integer => has(INTEGER),
            ReplyType::Bulk => has(BULK),
            ReplyType::NilBulk => has(BULK | NIL),
            ReplyType::Array(_) | ReplyType::NilArray => has(ARRAY),
            ReplyType::Resp3(b) if resp3 => match b {
                b'_' => has(BULK | NIL | ARRAY),
                b',' | b'=' => has(BULK),
                b'#' | b'(' => has(INTEGER | BULK),
                b'%' | b'~' => has(ARRAY),
                _ => true,
            },
            ReplyType::Resp3(_) | ReplyType::Unknown(_) => false,
        }
    }
}

/// A reply that cannot answer its request: which command it was for, and what came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub command: &'static str,
    pub got: ReplyType,
    /// The array length expected, when the request fixed one.
    pub expected_len: Option<u32>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot answer {} ({}", self.command, self.got)?;
        if let Some(n) = self.expected_len {
            write!(f, ", expected an array of {n}")?;
        }
        f.write_str(")")
    }
}

impl ReplyShape {
    /// The replies any request of command `info` can get.
    pub fn of(info: &CommandInfo) -> ReplyShape {
        let index = command_index(info);
        let kinds = KINDS_BY_COMMAND.get(index).copied().unwrap_or(ANY);
        ReplyShape { command: u16::try_from(index).unwrap_or(PRELUDE - 1), kinds, array_len: NO_LEN }
    }

    /// The replies this request can get, knowing its arguments (`args` are ranges of `req`, args[0] the command
    /// name). Refines [`of`](Self::of) where the arguments change the reply type: `SET ... GET` also answers a bulk,
    /// and MGET answers an array of exactly one element per key.
    pub fn for_request(info: &CommandInfo, args: &[std::ops::Range<usize>], req: &[u8]) -> ReplyShape {
        let mut shape = ReplyShape::of(info);
        match info.name {
            "SET" => {
                // Options start after key and value; the only one spelled GET is the GET option (an EX/PX argument
                // is a number), so finding it there cannot mistake a value for it.
                let get =
                    args.iter().skip(3).any(|a| req.get(a.clone()).is_some_and(|w| w.eq_ignore_ascii_case(b"GET")));
                if get {
                    shape.kinds |= BULK;
                }
            }
            "MGET" => shape = shape.with_array_len(args.len().saturating_sub(1)),
            _ => {}
        }
        shape
    }

    /// The same shape, where an array reply must have exactly `n` elements (a split MGET's fragment of `n` keys).
    pub fn with_array_len(self, n: usize) -> ReplyShape {
        ReplyShape { array_len: u32::try_from(n).unwrap_or(NO_LEN), ..self }
    }

    /// The replies to the connection prelude (AUTH, SELECT): a status reply (the caller also wants it to be `+OK`).
    pub const fn prelude() -> ReplyShape {
        ReplyShape { command: PRELUDE, kinds: SIMPLE, array_len: NO_LEN }
    }

    /// The same command where only a status fits: a command queued inside MULTI answers `+QUEUED`, and MULTI,
    /// WATCH, UNWATCH and DISCARD `+OK`.
    pub const fn status(self) -> ReplyShape {
        ReplyShape { kinds: SIMPLE, array_len: NO_LEN, ..self }
    }

    /// The same command where only an array fits: EXEC answers one (a nil one when a WATCHed key changed).
    pub const fn array(self) -> ReplyShape {
        ReplyShape { kinds: ARRAY, array_len: NO_LEN, ..self }
    }

    /// A request whose reply is not checked.
    pub const fn any() -> ReplyShape {
        ReplyShape { command: PRELUDE - 1, kinds: ANY, array_len: NO_LEN }
    }

    /// The command's name, for messages.
    pub fn command_name(&self) -> &'static str {
        if self.command == PRELUDE {
            return "AUTH/SELECT";
        }
        COMMANDS.get(usize::from(self.command)).map_or("the request", |c| c.name)
    }

    /// Whether the complete framed reply `reply` can answer a request of this shape. `resp3` says whether the
    /// connection speaks RESP3 (it negotiated HELLO 3 for a RESP3 client).
    pub fn check(&self, reply: &[u8], resp3: bool) -> Result<(), Mismatch> {
        if self.kinds == ANY {
            return Ok(());
        }
        let got = ReplyType::of(reply);
        let len_ok = match got {
            ReplyType::Array(n) => self.array_len == NO_LEN || u32::try_from(n).is_ok_and(|n| n == self.array_len),
            ReplyType::NilArray => self.array_len == NO_LEN,
            _ => true,
        };
        if got.fits(self.kinds, resp3) && len_ok {
            return Ok(());
        }
        let expected_len = (self.array_len != NO_LEN && self.kinds & ARRAY != 0).then_some(self.array_len);
        Err(Mismatch { command: self.command_name(), got, expected_len })
    }
}

#[cfg(test)]
mod tests {
    use super::super::lookup;
    use super::*;

    fn shape(name: &str) -> ReplyShape {
        ReplyShape::of(lookup(name.as_bytes()).unwrap())
    }

    fn accepts(name: &str, reply: &[u8]) -> bool {
        shape(name).check(reply, false).is_ok()
    }

    /// Builds a request and its argument ranges from words.
    fn request(words: &[&str]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut buf = Vec::new();
        let mut args = Vec::new();
        for word in words {
            args.push(buf.len()..buf.len() + word.len());
            buf.extend_from_slice(word.as_bytes());
        }
        (buf, args)
    }

    fn request_shape(words: &[&str]) -> ReplyShape {
        let (buf, args) = request(words);
        ReplyShape::for_request(lookup(words[0].as_bytes()).unwrap(), &args, &buf)
    }

    #[test]
    fn every_rule_names_a_forwarded_command_once() {
        for (i, (name, _)) in RULES.iter().enumerate() {
            let info = lookup(name.as_bytes()).unwrap_or_else(|| panic!("{name} is not in the command table"));
            assert!(
                matches!(
                    info.kind,
                    super::super::CommandKind::Forward
                        | super::super::CommandKind::Split(_)
                        | super::super::CommandKind::Blocking(_)
                ),
                "{name} is never forwarded"
            );
            assert!(RULES[..i].iter().all(|(n, _)| n != name), "{name} twice");
            assert_eq!(ReplyShape::of(info).kinds, RULES[i].1, "{name}");
        }
    }

    #[test]
    fn errors_answer_anything() {
        for name in ["GET", "SET", "INCR", "MGET", "LRANGE", "EVAL"] {
            assert!(accepts(name, b"-ERR wrong\r\n"), "{name}");
            assert!(accepts(name, b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"), "{name}");
            assert!(accepts(name, b"-MOVED 3999 127.0.0.1:6381\r\n"), "{name}");
            assert!(shape(name).with_array_len(3).check(b"-LOADING\r\n", false).is_ok(), "{name}");
        }
        assert!(ReplyShape::prelude().check(b"-NOAUTH\r\n", false).is_ok());
    }

    /// What redis 7 answers to each class of command: every one must be accepted.
    #[test]
    fn real_redis_replies_are_accepted() {
        let cases: &[(&[&str], &[&[u8]])] = &[
            (&["GET", "k"], &[b"$1\r\nv\r\n", b"$0\r\n\r\n", b"$-1\r\n"]),
            (&["SET", "k", "v"], &[b"+OK\r\n"]),
            (&["SET", "k", "v", "NX"], &[b"+OK\r\n", b"$-1\r\n"]),
            (&["SET", "k", "v", "XX", "EX", "10"], &[b"+OK\r\n", b"$-1\r\n"]),
            (&["SET", "k", "v", "get"], &[b"+OK\r\n", b"$-1\r\n", b"$3\r\nold\r\n"]),
            (&["SET", "k", "v", "NX", "GET", "PX", "5"], &[b"$-1\r\n", b"$1\r\no\r\n"]),
            (&["INCR", "k"], &[b":1\r\n", b":-9223372036854775808\r\n"]),
            (&["INCRBYFLOAT", "k", "1.5"], &[b"$3\r\n1.5\r\n"]),
            (&["DEL", "a", "b"], &[b":2\r\n"]),
            (&["EXPIRE", "k", "10"], &[b":0\r\n"]),
            (&["TTL", "k"], &[b":-2\r\n"]),
            (&["TYPE", "k"], &[b"+string\r\n", b"+none\r\n"]),
            (&["MGET", "a", "b"], &[b"*2\r\n$1\r\n1\r\n$-1\r\n"]),
            (&["MSET", "a", "1"], &[b"+OK\r\n"]),
            (&["HSET", "h", "f", "v"], &[b":1\r\n"]),
            (&["HGET", "h", "f"], &[b"$1\r\nv\r\n", b"$-1\r\n"]),
            (&["HGETALL", "h"], &[b"*0\r\n", b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"]),
            (&["HMSET", "h", "f", "v"], &[b"+OK\r\n"]),
            (&["LPUSH", "l", "a"], &[b":1\r\n"]),
            (&["LPOP", "l"], &[b"$1\r\na\r\n", b"$-1\r\n"]),
            (&["LPOP", "l", "2"], &[b"*1\r\n$1\r\na\r\n", b"*-1\r\n"]),
            (&["LRANGE", "l", "0", "-1"], &[b"*0\r\n"]),
            (&["LPOS", "l", "a"], &[b":0\r\n", b"$-1\r\n"]),
            (&["LPOS", "l", "a", "COUNT", "0"], &[b"*0\r\n"]),
            (&["LMPOP", "1", "l", "LEFT"], &[b"*-1\r\n", b"*2\r\n$1\r\nl\r\n*1\r\n$1\r\na\r\n"]),
            (&["LSET", "l", "0", "x"], &[b"+OK\r\n"]),
            (&["SADD", "s", "a"], &[b":1\r\n"]),
            (&["SMEMBERS", "s"], &[b"*1\r\n$1\r\na\r\n"]),
            (&["SPOP", "s"], &[b"$1\r\na\r\n", b"$-1\r\n"]),
            (&["SPOP", "s", "3"], &[b"*0\r\n"]),
            (&["ZADD", "z", "1", "a"], &[b":1\r\n"]),
            (&["ZADD", "z", "INCR", "1", "a"], &[b"$1\r\n2\r\n", b"$-1\r\n"]),
            (&["ZSCORE", "z", "a"], &[b"$1\r\n2\r\n", b"$-1\r\n"]),
            (&["ZRANK", "z", "a"], &[b":0\r\n", b"$-1\r\n"]),
            (&["ZRANK", "z", "a", "WITHSCORE"], &[b"*2\r\n:0\r\n$1\r\n2\r\n", b"*-1\r\n"]),
            (&["ZRANGE", "z", "0", "-1", "WITHSCORES"], &[b"*2\r\n$1\r\na\r\n$1\r\n2\r\n"]),
            (&["SORT", "l"], &[b"*0\r\n"]),
            (&["SORT", "l", "STORE", "d"], &[b":0\r\n"]),
            (&["XADD", "x", "*", "f", "v"], &[b"$15\r\n1700000000000-0\r\n"]),
            (&["XADD", "x", "NOMKSTREAM", "*", "f", "v"], &[b"$-1\r\n"]),
            (&["XRANGE", "x", "-", "+"], &[b"*0\r\n"]),
            (&["PFADD", "p", "a"], &[b":1\r\n"]),
            (&["PFMERGE", "p", "q"], &[b"+OK\r\n"]),
            (&["RENAME", "a", "b"], &[b"+OK\r\n"]),
            (&["GEODIST", "g", "a", "b"], &[b"$-1\r\n", b"$6\r\n1.2345\r\n"]),
            (&["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"], &[b":0\r\n"]),
            (&["DUMP", "k"], &[b"$-1\r\n"]),
            (&["RESTORE", "k", "0", "x"], &[b"+OK\r\n"]),
            // Commands whose reply varies are not checked at all.
            (
                &["EVAL", "return 1", "1", "k"],
                &[b":1\r\n", b"+OK\r\n", b"$-1\r\n", b"*-1\r\n", b"*3\r\n:1\r\n:2\r\n:3\r\n"],
            ),
            (&["OBJECT", "ENCODING", "k"], &[b"$6\r\nembstr\r\n", b":5\r\n", b"$-1\r\n"]),
            (&["XINFO", "STREAM", "x"], &[b"*2\r\n$6\r\nlength\r\n:0\r\n"]),
            (&["HEXPIRE", "h", "10", "FIELDS", "1", "f"], &[b"*1\r\n:-2\r\n", b":-2\r\n"]),
            (&["MEMORY", "USAGE", "k"], &[b":56\r\n", b"$-1\r\n"]),
            (&["LCS", "a", "b"], &[b"$0\r\n\r\n", b":0\r\n", b"*4\r\n"]),
        ];
        for (words, replies) in cases {
            let shape = request_shape(words);
            for reply in *replies {
                assert_eq!(
                    shape.check(reply, false),
                    Ok(()),
                    "{words:?} answered {:?}",
                    String::from_utf8_lossy(reply)
                );
            }
        }
    }

    #[test]
    fn replies_that_cannot_answer_are_refused() {
        let cases: &[(&[&str], &[&[u8]])] = &[
            (&["GET", "k"], &[b":1\r\n", b"+OK\r\n", b"*1\r\n$1\r\nv\r\n", b"*-1\r\n", b"%1\r\n+a\r\n+b\r\n"]),
            // Without the GET option a SET never answers a value.
            (&["SET", "k", "v"], &[b"$3\r\nzzz\r\n", b":1\r\n", b"*0\r\n", b"*-1\r\n"]),
            (&["SET", "k", "GET", "EX", "5"], &[b"$3\r\nzzz\r\n"]),
            (&["SET", "k", "v", "get"], &[b":1\r\n", b"*0\r\n"]),
            (&["INCR", "k"], &[b"$1\r\n1\r\n", b"+OK\r\n", b"$-1\r\n", b"*0\r\n"]),
            (&["DEL", "k"], &[b"+OK\r\n", b"$1\r\n1\r\n"]),
            (&["MSET", "a", "1"], &[b":1\r\n", b"$2\r\nOK\r\n"]),
            (&["LRANGE", "l", "0", "1"], &[b":1\r\n", b"+OK\r\n", b"$1\r\na\r\n"]),
            (&["TYPE", "k"], &[b"$6\r\nstring\r\n"]),
            (&["MGET", "a", "b", "c"], &[b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"*-1\r\n", b"*4\r\n", b"$1\r\na\r\n"]),
        ];
        for (words, replies) in cases {
            let shape = request_shape(words);
            for reply in *replies {
                assert!(shape.check(reply, false).is_err(), "{words:?} answered {:?}", String::from_utf8_lossy(reply));
            }
        }
    }

    #[test]
    fn fragments_need_their_exact_array_length() {
        let mget = shape("MGET").with_array_len(2);
        assert!(mget.check(b"*2\r\n$1\r\na\r\n$-1\r\n", false).is_ok());
        let short = mget.check(b"*1\r\n$1\r\na\r\n", false).unwrap_err();
        assert_eq!(short.to_string(), "cannot answer MGET (array of 1, expected an array of 2)");
        assert!(mget.check(b"*-1\r\n", false).is_err());
        assert!(mget.check(b"-ERR x\r\n", false).is_ok());
        // DEL/EXISTS/UNLINK/TOUCH fragments are summed: integers only. MSET fragments: a status.
        for name in ["DEL", "EXISTS", "UNLINK", "TOUCH"] {
            assert!(
                accepts(name, b":3\r\n") && !accepts(name, b"+OK\r\n") && !accepts(name, b"*1\r\n:1\r\n"),
                "{name}"
            );
        }
        assert!(accepts("MSET", b"+OK\r\n") && !accepts("MSET", b":1\r\n"));
    }

    #[test]
    fn mismatches_name_the_command_and_what_came() {
        let e = shape("GET").check(b":1\r\n", false).unwrap_err();
        assert_eq!(e.to_string(), "cannot answer GET (integer)");
        assert_eq!(
            shape("SET").check(b"$3\r\nzzz\r\n", false).unwrap_err().to_string(),
            "cannot answer SET (bulk string)"
        );
        assert_eq!(shape("INCR").check(b"$-1\r\n", false).unwrap_err().to_string(), "cannot answer INCR (nil)");
        assert_eq!(shape("INCR").check(b"*-1\r\n", false).unwrap_err().to_string(), "cannot answer INCR (nil array)");
        assert_eq!(
            ReplyShape::prelude().check(b":1\r\n", false).unwrap_err().to_string(),
            "cannot answer AUTH/SELECT (integer)"
        );
        assert_eq!(shape("GET").check(b"~0\r\n", false).unwrap_err().to_string(), "cannot answer GET (RESP3 type '~')");
    }

    #[test]
    fn unclassified_commands_accept_anything() {
        for name in ["EVAL", "EVALSHA", "FCALL", "OBJECT", "XINFO", "XGROUP", "MEMORY", "LCS", "HGETEX", "HTTL"] {
            for reply in [&b":1\r\n"[..], b"+OK\r\n", b"$-1\r\n", b"*0\r\n", b"%0\r\n", b"_\r\n", b">2\r\n"] {
                assert!(accepts(name, reply), "{name}");
            }
        }
        assert!(ReplyShape::any().check(b"#t\r\n", false).is_ok());
    }

    #[test]
    fn resp3_types_stand_in_for_their_resp2_types_only_on_a_resp3_connection() {
        let cases: &[(&str, &[u8])] = &[
            ("GET", b"_\r\n"),
            ("ZSCORE", b",1.5\r\n"),
            ("GET", b"=7\r\ntxt:abc\r\n"),
            ("SISMEMBER", b"#t\r\n"),
            ("HGETALL", b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"),
            ("SMEMBERS", b"~1\r\n$1\r\na\r\n"),
            ("GET", b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"),
            ("INCR", b"|1\r\n+a\r\n+b\r\n:1\r\n"),
        ];
        for (name, reply) in cases {
            assert!(shape(name).check(reply, true).is_ok(), "{name} on RESP3: {:?}", String::from_utf8_lossy(reply));
            assert!(shape(name).check(reply, false).is_err(), "{name} on RESP2: {:?}", String::from_utf8_lossy(reply));
        }
        assert!(shape("GET").check(b"%0\r\n", true).is_err(), "a map still cannot answer GET");
        assert!(shape("INCR").check(b"~0\r\n", true).is_err());
        assert!(shape("GET").check(b"!3\r\nERR\r\n", false).is_ok(), "a blob error is an error");
    }

    #[test]
    fn the_prelude_and_unchecked_shapes() {
        assert!(ReplyShape::prelude().check(b"+OK\r\n", false).is_ok());
        assert!(ReplyShape::prelude().check(b"$2\r\nOK\r\n", false).is_err());
        assert_eq!(ReplyShape::any().command_name(), "the request");
        assert_eq!(shape("GET").command_name(), "GET");
    }

    #[test]
    fn shapes_are_small() {
        assert!(std::mem::size_of::<ReplyShape>() <= 8);
    }
}
