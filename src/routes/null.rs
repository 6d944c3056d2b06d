//! `null`: mcrouter's NullRoute. Nothing is sent; the request gets the default reply, the one a cache that holds
//! nothing and stores nothing would give:
//! - memcache: retrievals `END` (a miss), storage commands `NOT_STORED`, delete/incr/decr/touch `NOT_FOUND`;
//! - redis: a nil bulk for single-key commands, `:0` for DEL/UNLINK/EXISTS/TOUCH, an array of nils (one per key)
//!   for MGET, and `+OK` for MSET (which has no "not stored" reply). A nil is `_` for a RESP3 client, `$-1` for
//!   RESP2, as redis would send it.

use super::Op;
use crate::protocol::memcache::Command;
use crate::protocol::redis::{self, CommandKind, Proto, Split};

pub fn write(op: Op, nkeys: usize, proto: Proto, out: &mut Vec<u8>) {
    match op {
        Op::Memcache(c) if c.is_retrieval() => out.extend_from_slice(b"END\r\n"),
        Op::Memcache(c) if c.is_storage() => out.extend_from_slice(b"NOT_STORED\r\n"),
        Op::Memcache(Command::Delete | Command::Incr | Command::Decr | Command::Touch) => {
            out.extend_from_slice(b"NOT_FOUND\r\n")
        }
        Op::Memcache(_) => out.extend_from_slice(b"ERROR\r\n"),
        Op::Redis(info) => match info.kind {
            CommandKind::Split(Split::Mget) => {
                redis::write_array_header(out, nkeys);
                for _ in 0..nkeys {
                    redis::write_null(out, proto);
                }
            }
            CommandKind::Split(Split::SumIntegers) => redis::write_integer(out, 0),
            CommandKind::Split(Split::Mset) => out.extend_from_slice(b"+OK\r\n"),
            _ => redis::write_null(out, proto),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(op: Op, nkeys: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write(op, nkeys, Proto::Resp2, &mut out);
        out
    }

    #[test]
    fn memcache_defaults() {
        assert_eq!(reply(Op::Memcache(Command::Get), 3), b"END\r\n");
        assert_eq!(reply(Op::Memcache(Command::Set), 1), b"NOT_STORED\r\n");
        assert_eq!(reply(Op::Memcache(Command::Delete), 1), b"NOT_FOUND\r\n");
        assert_eq!(reply(Op::Memcache(Command::Incr), 1), b"NOT_FOUND\r\n");
    }

    #[test]
    fn redis_defaults() {
        let op = |n: &str| Op::Redis(redis::lookup(n.as_bytes()).expect(n));
        assert_eq!(reply(op("GET"), 1), b"$-1\r\n");
        assert_eq!(reply(op("MGET"), 2), b"*2\r\n$-1\r\n$-1\r\n");
        assert_eq!(reply(op("DEL"), 2), b":0\r\n");
        assert_eq!(reply(op("MSET"), 2), b"+OK\r\n");
    }

    #[test]
    fn resp3_clients_get_resp3_nils() {
        let op = |n: &str| Op::Redis(redis::lookup(n.as_bytes()).expect(n));
        let resp3 = |o: Op, n: usize| {
            let mut out = Vec::new();
            write(o, n, Proto::Resp3, &mut out);
            out
        };
        assert_eq!(resp3(op("GET"), 1), b"_\r\n");
        assert_eq!(resp3(op("MGET"), 2), b"*2\r\n_\r\n_\r\n");
        assert_eq!(resp3(op("DEL"), 2), b":0\r\n");
    }
}
