//! What `warmup` and `l1l2` share: a read that misses the first child (cold, l1) is read from the second (warm,
//! l2), and a hit there is answered and written back into the first child in the background with `add` semantics
//! (memcache `add`, redis `SET ... NX`), so a value written into the first child meanwhile is never overwritten.
//!
//! The reply rules ([`after_first`], [`after_second`]), where other requests go ([`Action`]), the TTL the copy
//! gets ([`memcache_exptime`], [`redis_expiry`]) and the bytes of the requests and replies involved are here; the
//! I/O layer (`io::fan::fill`) sends them.

use super::{Op, OpClass};
use crate::config::Protocol;
use crate::protocol::memcache;
use std::ops::Range;

/// Where a request through a fill route goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A single-key read (memcache `get`, redis `GET`): the first child, then on a miss the second and the fill.
    ReadThrough,
    /// Child 0 or 1 alone.
    Only(usize),
    /// Both children, the worse reply answers (as `all_sync`).
    Both,
}

/// Whether the request is a single-key read the fill path serves: memcache `get`, redis `GET`.
pub fn reads_through(op: Op, nkeys: usize) -> bool {
    nkeys == 1
        && match op {
            Op::Memcache(c) => c == memcache::Command::Get,
            Op::Redis(info) => info.name == "GET",
        }
}

/// After the first child replied: answer (a hit) or read the second child (a miss or a failure).
pub fn after_first(hit: bool) -> bool {
    !hit
}

/// How the second child answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Hit,
    Miss,
    Failed,
}

/// Which reply answers the client once the second child replied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The first child's reply (its miss, or its failure).
    First,
    /// The second child's: a hit, or a miss (the key is absent there too).
    Second,
}

/// After the second child replied (`first_missed`: the first child missed rather than failed): which reply answers
/// and whether the value is copied into the first child. A hit answers, and is copied when the first child missed
/// (a failing first child would most likely fail the copy too); a miss answers as a miss; a failing second child
/// leaves the first child's reply to answer, so a warm cluster in trouble costs a cold one nothing.
pub fn after_second(first_missed: bool, second: Seen) -> (Answer, bool) {
    match second {
        Seen::Hit => (Answer::Second, first_missed),
        Seen::Miss => (Answer::Second, false),
        Seen::Failed => (Answer::First, false),
    }
}

/// The TTL a copy is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The source never expires (memcache TTL -1, redis PTTL -1), or the configured fallback is 0.
    Never,
    Seconds(u64),
    Millis(u64),
}

/// The copy's TTL from the source's remaining TTL in seconds (memcache `mg ... t`: -1 for none; `None`: unknown),
/// else the configured `fallback`. `None`: do not copy (the value is about to expire, or its TTL is unknown and no
/// fallback is configured: a copy must never outlive its source by being written immortal).
pub fn memcache_expiry(remaining: Option<i64>, fallback: Option<u32>) -> Option<Expiry> {
    match remaining {
        Some(-1) => Some(Expiry::Never),
        Some(t) if t > 0 => Some(Expiry::Seconds(t as u64)),
        Some(_) => None,
        None => fallback.map(|f| if f == 0 { Expiry::Never } else { Expiry::Seconds(u64::from(f)) }),
    }
}

/// The copy's TTL from redis PTTL (-1: no expiry, -2: the key is gone; `None`: unknown), else the fallback.
pub fn redis_expiry(pttl: Option<i64>, fallback: Option<u32>) -> Option<Expiry> {
    match pttl {
        Some(-1) => Some(Expiry::Never),
        Some(ms) if ms > 0 => Some(Expiry::Millis(ms as u64)),
        Some(_) => None,
        None => memcache_expiry(None, fallback),
    }
}

/// memcached reads an exptime over 30 days as a unix time: longer TTLs are written as `now + ttl`.
pub const MEMCACHE_RELATIVE_MAX: u64 = 60 * 60 * 24 * 30;

/// The exptime token of a memcache copy (0: never expires).
pub fn memcache_exptime(expiry: Expiry, now_unix: u64) -> u64 {
    let secs = match expiry {
        Expiry::Never => return 0,
        Expiry::Seconds(s) => s,
        Expiry::Millis(ms) => ms.div_ceil(1000),
    };
    if secs > MEMCACHE_RELATIVE_MAX {
        now_unix.saturating_add(secs)
    } else {
        secs
    }
}

/// A meta get's value reply `VA <len> <flags>*\r\n<data>\r\n`: (remaining TTL from `t`, client flags from `f`
/// (0 when absent), the data's range in `reply`).
pub fn parse_meta_value(reply: &[u8]) -> Option<(Option<i64>, u32, Range<usize>)> {
    let line_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&reply[..line_end]).ok()?;
    let mut words = line.split(' ');
    if words.next()? != "VA" {
        return None;
    }
    let len: usize = words.next()?.parse().ok()?;
    let (mut ttl, mut flags) = (None, 0u32);
    for w in words {
        match w.split_at_checked(1) {
            Some(("t", v)) => ttl = Some(v.parse().ok()?),
            Some(("f", v)) => flags = v.parse().ok()?,
            _ => {}
        }
    }
    let start = line_end + 2;
    (reply.get(start + len..start + len + 2)? == b"\r\n").then_some((ttl, flags, start..start + len))
}

/// A text get's reply with one item `VALUE <key> <flags> <len>[ <cas>]\r\n<data>\r\nEND\r\n`: (flags, data range).
pub fn parse_text_value(reply: &[u8]) -> Option<(u32, Range<usize>)> {
    let line_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&reply[..line_end]).ok()?;
    let mut words = line.split(' ');
    if words.next()? != "VALUE" {
        return None;
    }
    let _key = words.next()?;
    let flags = words.next()?.parse().ok()?;
    let len: usize = words.next()?.parse().ok()?;
    let start = line_end + 2;
    (reply.get(start + len..start + len + 2)? == b"\r\n").then_some((flags, start..start + len))
}

/// A RESP bulk string's data range (`$<len>\r\n<data>\r\n`); `None` for nil or anything else.
pub fn parse_bulk(reply: &[u8]) -> Option<Range<usize>> {
    let rest = reply.strip_prefix(b"$")?;
    let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..line_end]).ok()?.parse().ok()?;
    let start = 1 + line_end + 2;
    (reply.get(start + len..start + len + 2)? == b"\r\n").then_some(start..start + len)
}

/// The client's reply to `get <key>` for a value learned elsewhere.
pub fn memcache_value_reply(key: &[u8], flags: u32, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" {flags} {}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\nEND\r\n");
}

/// The meta get that learns value, remaining TTL and flags: `mg <key> v t f`.
pub fn memcache_meta_get(key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"mg ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" v t f\r\n");
}

/// The copy: `add <key> <flags> <exptime> <len>` (stored only where the key is absent).
pub fn memcache_add(key: &[u8], flags: u32, exptime: u64, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"add ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" {flags} {exptime} {}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A plain `get <key>` (l1l2's read of l2).
pub fn memcache_get(key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// `SET <key> <data> NX [PX ms]`: the copy, stored only where the key is absent.
pub fn redis_set_nx(key: &[u8], data: &[u8], expiry: Expiry, out: &mut Vec<u8>) {
    let ttl = match expiry {
        Expiry::Never => None,
        Expiry::Seconds(s) => Some(s.saturating_mul(1000)),
        Expiry::Millis(ms) => Some(ms),
    }
    .map(|ms| ms.to_string());
    let mut args: Vec<&[u8]> = vec![b"SET", key, data, b"NX"];
    if let Some(ms) = &ttl {
        args.extend_from_slice(&[b"PX", ms.as_bytes()]);
    }
    crate::protocol::redis::write_command_iter(out, args.len(), args.into_iter());
}

/// `GET <key>` and, when `pttl`, `PTTL <key>` after it (one write, so one pipeline).
pub fn redis_get(key: &[u8], out: &mut Vec<u8>) {
    crate::protocol::redis::write_command_iter(out, 2, [b"GET" as &[u8], key].into_iter());
}

pub fn redis_pttl(key: &[u8], out: &mut Vec<u8>) {
    crate::protocol::redis::write_command_iter(out, 2, [b"PTTL" as &[u8], key].into_iter());
}

/// Whether a copy's reply means it failed (stored and not-stored are both fine: `add` finding a value is the rule).
pub fn copy_failed(protocol: Protocol, reply: &[u8], failed: bool) -> bool {
    failed
        || match protocol {
            Protocol::Memcache => !(reply.starts_with(b"STORED\r\n") || reply.starts_with(b"NOT_STORED\r\n")),
            Protocol::Redis => !(reply.starts_with(b"+OK\r\n") || reply.starts_with(b"$-1\r\n") || reply == b"_\r\n"),
        }
}

/// Which requests go to both children: deletes always (a delete in one child only would be undone by the next
/// read filling it back from the other), and writes too when `writes_to_both`.
pub fn action(op: Op, nkeys: usize, writes_to_both: bool) -> Action {
    if reads_through(op, nkeys) {
        return Action::ReadThrough;
    }
    match op.class() {
        OpClass::Get => Action::Only(0),
        OpClass::Delete => Action::Both,
        OpClass::Update | OpClass::Arithmetic if writes_to_both => Action::Both,
        _ => Action::Only(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::redis;

    fn rd(name: &str) -> Op {
        Op::Redis(redis::lookup(name.as_bytes()).unwrap())
    }

    #[test]
    fn single_key_gets_read_through_other_requests_go_to_the_first_child_deletes_to_both() {
        use memcache::Command::*;
        assert_eq!(action(Op::Memcache(Get), 1, false), Action::ReadThrough);
        assert_eq!(action(Op::Memcache(Get), 2, false), Action::Only(0), "multi-key gets: the first child alone");
        assert_eq!(action(Op::Memcache(Gets), 1, false), Action::Only(0));
        assert_eq!(action(Op::Memcache(Set), 1, false), Action::Only(0));
        assert_eq!(action(Op::Memcache(Set), 1, true), Action::Both);
        assert_eq!(action(Op::Memcache(Delete), 1, false), Action::Both);
        assert_eq!(action(rd("GET"), 1, false), Action::ReadThrough);
        assert_eq!(action(rd("HGET"), 1, false), Action::Only(0));
        assert_eq!(action(rd("SET"), 1, false), Action::Only(0));
        assert_eq!(action(rd("DEL"), 1, false), Action::Both);
    }

    #[test]
    fn a_second_hit_answers_and_fills_only_after_a_first_miss() {
        assert!(after_first(false) && !after_first(true));
        assert_eq!(after_second(true, Seen::Hit), (Answer::Second, true));
        assert_eq!(after_second(false, Seen::Hit), (Answer::Second, false), "a failing first child gets no copy");
        assert_eq!(after_second(true, Seen::Miss), (Answer::Second, false));
        assert_eq!(after_second(false, Seen::Miss), (Answer::Second, false), "the second knows the key is absent");
        assert_eq!(after_second(true, Seen::Failed), (Answer::First, false), "the first child's miss answers");
        assert_eq!(after_second(false, Seen::Failed), (Answer::First, false));
    }

    #[test]
    fn the_copy_carries_the_remaining_ttl_and_is_never_immortal_by_accident() {
        assert_eq!(memcache_expiry(Some(-1), None), Some(Expiry::Never));
        assert_eq!(memcache_expiry(Some(90), Some(5)), Some(Expiry::Seconds(90)), "the learned TTL wins");
        assert_eq!(memcache_expiry(Some(0), Some(5)), None, "about to expire: no copy");
        assert_eq!(memcache_expiry(None, Some(3600)), Some(Expiry::Seconds(3600)));
        assert_eq!(memcache_expiry(None, Some(0)), Some(Expiry::Never), "exptime = 0 asks for no expiry");
        assert_eq!(memcache_expiry(None, None), None, "unknown TTL without a fallback: no copy");
        assert_eq!(redis_expiry(Some(1500), None), Some(Expiry::Millis(1500)));
        assert_eq!(redis_expiry(Some(-1), None), Some(Expiry::Never));
        assert_eq!(redis_expiry(Some(-2), Some(60)), None, "the key vanished");
        assert_eq!(redis_expiry(None, Some(60)), Some(Expiry::Seconds(60)));
        assert_eq!(memcache_exptime(Expiry::Seconds(60), 1_000_000), 60);
        assert_eq!(memcache_exptime(Expiry::Millis(1001), 0), 2, "rounded up");
        assert_eq!(memcache_exptime(Expiry::Never, 5), 0);
        let long = MEMCACHE_RELATIVE_MAX + 1;
        assert_eq!(memcache_exptime(Expiry::Seconds(long), 1_000_000), 1_000_000 + long, "beyond 30 days: absolute");
    }

    #[test]
    fn replies_are_parsed_and_requests_written() {
        let r = b"VA 3 t42 f7\r\nabc\r\n";
        let (ttl, flags, data) = parse_meta_value(r).unwrap();
        assert_eq!((ttl, flags, &r[data]), (Some(42), 7, &b"abc"[..]));
        assert_eq!(parse_meta_value(b"VA 1 t-1\r\nx\r\n").map(|v| (v.0, v.1)), Some((Some(-1), 0)));
        assert_eq!(parse_meta_value(b"EN\r\n"), None);
        assert_eq!(parse_meta_value(b"VA 5 t1\r\nab\r\n"), None, "short data");
        let t = b"VALUE k 3 2 99\r\nhi\r\nEND\r\n";
        let (flags, data) = parse_text_value(t).unwrap();
        assert_eq!((flags, &t[data]), (3, &b"hi"[..]));
        assert_eq!(parse_text_value(b"END\r\n"), None);
        let b = b"$3\r\nxyz\r\n";
        assert_eq!(&b[parse_bulk(b).unwrap()], b"xyz");
        assert_eq!(parse_bulk(b"$-1\r\n"), None);
        assert_eq!(parse_bulk(b"_\r\n"), None);
        let mut out = Vec::new();
        memcache_add(b"k", 7, 42, b"abc", &mut out);
        assert_eq!(out, b"add k 7 42 3\r\nabc\r\n");
        out.clear();
        memcache_value_reply(b"k", 7, b"abc", &mut out);
        assert_eq!(out, b"VALUE k 7 3\r\nabc\r\nEND\r\n");
        out.clear();
        redis_set_nx(b"k", b"v", Expiry::Millis(1500), &mut out);
        assert_eq!(out, b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n1500\r\n");
        out.clear();
        redis_set_nx(b"k", b"v", Expiry::Never, &mut out);
        assert_eq!(out, b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n");
        assert!(!copy_failed(Protocol::Memcache, b"NOT_STORED\r\n", false));
        assert!(copy_failed(Protocol::Memcache, b"SERVER_ERROR x\r\n", false));
        assert!(!copy_failed(Protocol::Redis, b"$-1\r\n", false), "NX found a value: not a failure");
    }
}
