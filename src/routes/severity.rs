//! How bad a reply is, for the routes that combine several (`all_sync` returns the worst, `all_majority` breaks
//! ties towards it) and the ones that move on (`failover`, `miss_failover`).
//!
//! The order is mcrouter's resultSeverity (mcrouter/lib/McResUtil.h), higher is worse:
//!
//! | severity | memcache | redis |
//! |---|---|---|
//! | 1 | a hit (`VALUE`), `STORED`, `DELETED`, `TOUCHED`, `EXISTS`, `OK`, a number; meta `HD`, `VA`, `EX` | any value, `+OK`, an integer |
//! | 4 | a miss (`END` alone), `NOT_FOUND`, `NOT_STORED`; meta `EN`, `NF`, `NS` | nil (`$-1`, `*-1`) |
//! | 5 | ferrule could not get a reply: connect error, timeout, server unavailable | same |
//! | 7 | the server's `SERVER_ERROR` | the server's `-LOADING`, `-BUSY`, `-MASTERDOWN`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-READONLY` |
//! | 8 | a reply ferrule made for a local failure | same (`-ERR ferrule: ...`) |
//! | 9 | `CLIENT_ERROR` | any other error (`-ERR`, `-WRONGTYPE`, ...): the request itself is wrong |
//! | 10 | anything else (`ERROR`) | |
//!
//! So for redis an error reply is worse than nil, and nil worse than a value, as for memcache a miss is worse than
//! a hit. On a tie the reply already held is kept.

use crate::config::{FailureClass, Protocol};

/// One destination's answer as the combining routes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The server's reply bytes.
    Reply(&'a [u8]),
    /// No reply from the server: ferrule answers the request itself, for this reason.
    Failed(FailureClass),
}

pub const HIT: u8 = 1;
pub const MISS: u8 = 4;
pub const UNREACHABLE: u8 = 5;
pub const REMOTE_ERROR: u8 = 7;
pub const LOCAL_ERROR: u8 = 8;
pub const CLIENT_ERROR: u8 = 9;
pub const UNKNOWN: u8 = 10;

/// Redis error codes that mean "this server cannot serve now", mcrouter's remote errors: worth failing over on.
const REDIS_SERVER_ERRORS: &[&[u8]] =
    &[b"-LOADING", b"-BUSY", b"-MASTERDOWN", b"-TRYAGAIN", b"-CLUSTERDOWN", b"-READONLY"];

pub fn severity(protocol: Protocol, outcome: Outcome<'_>) -> u8 {
    let reply = match outcome {
        Outcome::Failed(FailureClass::ServerError) => return REMOTE_ERROR,
        Outcome::Failed(_) => return UNREACHABLE,
        Outcome::Reply(r) => r,
    };
    match protocol {
        Protocol::Memcache => {
            let first = reply.split(|&b| b == b' ' || b == b'\r').next().unwrap_or_default();
            match first {
                b"VALUE" | b"STORED" | b"DELETED" | b"TOUCHED" | b"EXISTS" | b"OK" => HIT,
                b"END" | b"NOT_FOUND" | b"NOT_STORED" => MISS,
                // Meta replies, as their text counterparts: HD is STORED/DELETED, VA a value, EX EXISTS; EN a
                // miss, NF NOT_FOUND, NS NOT_STORED.
                b"HD" | b"VA" | b"EX" | b"MN" | b"ME" => HIT,
                b"EN" | b"NF" | b"NS" => MISS,
                b"SERVER_ERROR" => REMOTE_ERROR,
                b"CLIENT_ERROR" => CLIENT_ERROR,
                n if !n.is_empty() && n.iter().all(u8::is_ascii_digit) => HIT,
                _ => UNKNOWN,
            }
        }
        Protocol::Redis => match reply.first() {
            Some(b'-') if reply.starts_with(b"-ERR ferrule:") => LOCAL_ERROR,
            Some(b'-') if REDIS_SERVER_ERRORS.iter().any(|code| has_code(reply, code)) => REMOTE_ERROR,
            Some(b'-') => CLIENT_ERROR,
            Some(b'$' | b'*') if reply.get(1..3) == Some(b"-1") => MISS,
            Some(b'_') => MISS,
            Some(_) => HIT,
            None => UNKNOWN,
        },
    }
}

fn has_code(reply: &[u8], code: &[u8]) -> bool {
    reply.starts_with(code) && matches!(reply.get(code.len()), Some(b' ' | b'\r'))
}

/// The failure class of an outcome, if it is one: ferrule's own failures, and server-side errors.
pub fn failure_class(protocol: Protocol, outcome: Outcome<'_>) -> Option<FailureClass> {
    match outcome {
        Outcome::Failed(class) => Some(class),
        reply => (severity(protocol, reply) == REMOTE_ERROR).then_some(FailureClass::ServerError),
    }
}

/// What kind of failure the reason of a proxy-made backend error describes (`io::backend`'s wording).
pub fn classify_reason(reason: &str) -> FailureClass {
    if reason.contains("timed out") {
        FailureClass::Timeout
    } else if reason.contains("unavailable") || reason.contains("no server available") {
        FailureClass::Unavailable
    } else {
        FailureClass::ConnectError
    }
}

/// Whether a reply to a read is a hit (`miss_failover` goes on while it is not).
pub fn is_hit(protocol: Protocol, outcome: Outcome<'_>) -> bool {
    severity(protocol, outcome) == HIT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(r: &[u8]) -> u8 {
        severity(Protocol::Memcache, Outcome::Reply(r))
    }
    fn rd(r: &[u8]) -> u8 {
        severity(Protocol::Redis, Outcome::Reply(r))
    }

    #[test]
    fn memcache_follows_mcrouter() {
        assert_eq!(mc(b"VALUE k 0 1\r\nx\r\nEND\r\n"), HIT);
        assert_eq!(mc(b"STORED\r\n"), HIT);
        assert_eq!(mc(b"42\r\n"), HIT);
        assert_eq!(mc(b"END\r\n"), MISS);
        assert_eq!(mc(b"NOT_STORED\r\n"), MISS);
        assert_eq!(mc(b"SERVER_ERROR out of memory\r\n"), REMOTE_ERROR);
        assert_eq!(mc(b"CLIENT_ERROR bad\r\n"), CLIENT_ERROR);
        assert_eq!(mc(b"ERROR\r\n"), UNKNOWN);
        assert_eq!(mc(b"VA 1 O5\r\nx\r\n"), HIT);
        assert_eq!(mc(b"HD\r\n"), HIT);
        assert_eq!(mc(b"EX O1\r\n"), HIT, "as EXISTS");
        assert_eq!(mc(b"EN\r\n"), MISS);
        assert_eq!(mc(b"NF O7 kq\r\n"), MISS);
        assert_eq!(mc(b"NS\r\n"), MISS);
        assert!(!is_hit(Protocol::Memcache, Outcome::Reply(b"EN O1\r\n")), "miss_failover goes on past EN");
        assert_eq!(severity(Protocol::Memcache, Outcome::Failed(FailureClass::Timeout)), UNREACHABLE);
        let order = [
            mc(b"STORED\r\n"),
            mc(b"NOT_STORED\r\n"),
            UNREACHABLE,
            mc(b"SERVER_ERROR x\r\n"),
            mc(b"CLIENT_ERROR x\r\n"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }

    #[test]
    fn redis_error_is_worse_than_nil_worse_than_a_value() {
        assert_eq!(rd(b"$1\r\nx\r\n"), HIT);
        assert_eq!(rd(b"+OK\r\n"), HIT);
        assert_eq!(rd(b":0\r\n"), HIT);
        assert_eq!(rd(b"$-1\r\n"), MISS);
        assert_eq!(rd(b"-LOADING Redis is loading\r\n"), REMOTE_ERROR);
        assert_eq!(rd(b"-ERR ferrule: backend p/a timed out after 5 ms\r\n"), LOCAL_ERROR);
        assert_eq!(rd(b"-WRONGTYPE Operation against a key\r\n"), CLIENT_ERROR);
        assert_eq!(rd(b"-LOADINGX\r\n"), CLIENT_ERROR, "codes match whole");
    }

    #[test]
    fn failures_and_reasons() {
        assert_eq!(
            failure_class(Protocol::Redis, Outcome::Reply(b"-BUSY script\r\n")),
            Some(FailureClass::ServerError)
        );
        assert_eq!(failure_class(Protocol::Redis, Outcome::Reply(b"$-1\r\n")), None, "a miss is not a failure");
        assert_eq!(failure_class(Protocol::Memcache, Outcome::Reply(b"CLIENT_ERROR x\r\n")), None);
        assert_eq!(classify_reason("timed out after 400 ms"), FailureClass::Timeout);
        assert_eq!(classify_reason("server unavailable: connection refused"), FailureClass::Unavailable);
        assert_eq!(classify_reason("connection refused"), FailureClass::ConnectError);
    }
}
