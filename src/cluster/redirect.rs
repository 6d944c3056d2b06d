//! Redirect replies (`-MOVED slot host:port`, `-ASK slot host:port`) and what to do with them.
//!
//! The host may be an IP literal (IPv6 without brackets: the port is after the last colon), a host name, or empty
//! (`-MOVED 3999 :6380`), which the cluster spec defines as "the host of the node that sent the redirect". MOVED
//! means the slot has a new owner (resend there and refresh the map); ASK means "this one request, during a
//! migration" (send ASKING and the request to the named node, map unchanged). A request follows at most
//! [`DEFAULT_MAX_REDIRECTS`] redirects; the next one is answered with an error that says so, never passed to the
//! client as a redirect.

/// Redirects one request may follow before it fails: more than any migration needs (an ASK, then a MOVED once it
/// completes, then one more for a map that was stale), few enough that a loop between two confused nodes ends fast.
pub const DEFAULT_MAX_REDIRECTS: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    Moved,
    Ask,
}

/// A parsed redirect. `host` borrows from the reply and is empty for "same host as the sender".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect<'a> {
    pub kind: RedirectKind,
    pub slot: u16,
    pub host: &'a [u8],
    pub port: u16,
}

/// Whether `reply` could be a redirect (two byte compares: cheap enough for every cluster reply).
#[inline]
pub fn maybe_redirect(reply: &[u8]) -> bool {
    reply.len() > 5 && reply[0] == b'-' && (reply[1] == b'M' || reply[1] == b'A')
}

/// Parses `-MOVED <slot> <host>:<port>\r\n` or `-ASK ...`; `None` for any other reply (including malformed
/// redirects, which then reach the client as the error they are).
pub fn parse_redirect(reply: &[u8]) -> Option<Redirect<'_>> {
    let line = reply.strip_suffix(b"\r\n").unwrap_or(reply);
    let (kind, rest) = if let Some(rest) = line.strip_prefix(b"-MOVED ") {
        (RedirectKind::Moved, rest)
    } else if let Some(rest) = line.strip_prefix(b"-ASK ") {
        (RedirectKind::Ask, rest)
    } else {
        return None;
    };
    let space = rest.iter().position(|&b| b == b' ')?;
    let slot: u16 = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    if slot as usize >= super::slot::SLOTS {
        return None;
    }
    let endpoint = &rest[space + 1..];
    let colon = endpoint.iter().rposition(|&b| b == b':')?;
    let port: u16 = std::str::from_utf8(&endpoint[colon + 1..]).ok()?.parse().ok()?;
    let host = &endpoint[..colon];
    if host.contains(&b' ') || port == 0 {
        return None;
    }
    Some(Redirect { kind, slot, host, port })
}

/// What to do with a reply to a request that has followed `followed` redirects so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Not a redirect: it is the answer.
    Deliver,
    /// Send the request where the redirect says.
    Follow(Redirect<'a>),
    /// A redirect beyond the budget: answer [`too_many_redirects`].
    TooMany(Redirect<'a>),
}

/// Decides what a reply means for its request.
#[inline]
pub fn decide(reply: &[u8], followed: u8, max: u8) -> Decision<'_> {
    if !maybe_redirect(reply) {
        return Decision::Deliver;
    }
    match parse_redirect(reply) {
        None => Decision::Deliver,
        Some(r) if followed >= max => Decision::TooMany(r),
        Some(r) => Decision::Follow(r),
    }
}

/// Times a request answered `-TRYAGAIN` is sent again before the client gets the error. Redis answers TRYAGAIN to
/// a multi-key request whose slot is being migrated while only some of its keys have moved; the keys' move is one
/// MIGRATE each, so the window is short, and a retry later usually lands after it.
pub const TRYAGAIN_RETRIES: u8 = 5;

/// Whether `reply` is redis' `-TRYAGAIN` (a ferrule-made TRYAGAIN never passes through here: it is answered to the
/// client directly).
#[inline]
pub fn is_tryagain(reply: &[u8]) -> bool {
    reply.starts_with(b"-TRYAGAIN")
}

/// How long to wait before retry number `done + 1` of a request answered `-TRYAGAIN`, or `None` when the
/// retries are spent: 10 ms, doubling (10, 20, 40, 80, 160: about 300 ms in all, longer than migrating a slot's
/// keys usually takes, short enough that a client's pipeline is not held up for long).
pub fn tryagain_delay(done: u8) -> Option<std::time::Duration> {
    (done < TRYAGAIN_RETRIES).then(|| std::time::Duration::from_millis(10 << done))
}

/// The error a client gets when its request was redirected more often than allowed.
pub fn too_many_redirects(pool: &str, max: u8, last: &Redirect<'_>) -> String {
    let kind = match last.kind {
        RedirectKind::Moved => "MOVED",
        RedirectKind::Ask => "ASK",
    };
    format!(
        "-ERR ferrule: pool '{pool}': request redirected {max} times without an answer (last: {kind} {} {}:{}); \
         the cluster's slot map is changing or inconsistent\r\n",
        last.slot,
        String::from_utf8_lossy(last.host),
        last.port
    )
}

/// The error a client gets for a redirect on a transaction's connection, which ferrule does not follow there
/// (`io::cluster::Follow::Never`). EXEC's says EXECABORT, which client libraries raise as an aborted transaction.
pub fn in_transaction(pool: &str, command: &str, redirect: &Redirect<'_>) -> String {
    let kind = match redirect.kind {
        RedirectKind::Moved => "MOVED",
        RedirectKind::Ask => "ASK",
    };
    let to = format!("{}:{}", String::from_utf8_lossy(redirect.host), redirect.port);
    let slot = redirect.slot;
    if command.eq_ignore_ascii_case("EXEC") {
        format!(
            "-EXECABORT Transaction discarded: ferrule: pool '{pool}': hash slot {slot} moved to {to} ({kind}) during \
             the transaction; nothing was applied, and the slot map is being refreshed\r\n"
        )
    } else {
        format!(
            "-ERR ferrule: pool '{pool}': {command} was redirected ({kind} {slot} {to}) inside a transaction, which \
             ferrule does not follow; the transaction is aborted (EXEC answers EXECABORT) and the slot map is being \
             refreshed\r\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_moved_and_ask() {
        let r = parse_redirect(b"-MOVED 3999 127.0.0.1:6381\r\n").unwrap();
        assert_eq!(r, Redirect { kind: RedirectKind::Moved, slot: 3999, host: b"127.0.0.1", port: 6381 });
        let r = parse_redirect(b"-ASK 0 :6380\r\n").unwrap();
        assert_eq!(r, Redirect { kind: RedirectKind::Ask, slot: 0, host: b"", port: 6380 });
        let r = parse_redirect(b"-MOVED 16383 redis-7.cache.internal:7000\r\n").unwrap();
        assert_eq!(r.host, b"redis-7.cache.internal");
        let r = parse_redirect(b"-MOVED 12 ::1:7001\r\n").unwrap();
        assert_eq!((r.host, r.port), (&b"::1"[..], 7001));
    }

    #[test]
    fn other_errors_are_not_redirects() {
        for reply in [
            &b"-MOVED\r\n"[..],
            b"-MOVED 16384 h:1\r\n",
            b"-MOVED x h:1\r\n",
            b"-MOVED 1 h\r\n",
            b"-MOVED 1 h:0\r\n",
            b"-MOVED 1 h:99999\r\n",
            b"-ASKING\r\n",
            b"-MASTERDOWN Link with MASTER is down\r\n",
            b"-ERR MOVED 1 h:1\r\n",
            b"$5\r\nMOVED\r\n",
            b"+OK\r\n",
        ] {
            assert_eq!(parse_redirect(reply), None, "{:?}", String::from_utf8_lossy(reply));
            assert_eq!(decide(reply, 0, 5), Decision::Deliver);
        }
    }

    #[test]
    fn tryagain_is_retried_a_bounded_number_of_times_with_growing_delays() {
        assert!(is_tryagain(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"));
        assert!(!is_tryagain(b"-ERR TRYAGAIN\r\n") && !is_tryagain(b"+TRYAGAIN\r\n"));
        let delays: Vec<u64> = (0..=TRYAGAIN_RETRIES).map_while(tryagain_delay).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160]);
        assert_eq!(tryagain_delay(TRYAGAIN_RETRIES), None);
        // A TRYAGAIN is not a redirect: the redirect decision delivers it.
        assert_eq!(decide(b"-TRYAGAIN Multiple keys\r\n", 0, 5), Decision::Deliver);
    }

    #[test]
    fn redirects_are_bounded() {
        let reply = b"-ASK 7 10.0.0.1:7000\r\n";
        assert!(matches!(decide(reply, 0, 5), Decision::Follow(r) if r.kind == RedirectKind::Ask));
        assert!(matches!(decide(reply, 4, 5), Decision::Follow(_)));
        let Decision::TooMany(r) = decide(reply, 5, 5) else { panic!("not bounded") };
        assert_eq!(
            too_many_redirects("c", 5, &r),
            "-ERR ferrule: pool 'c': request redirected 5 times without an answer (last: ASK 7 10.0.0.1:7000); \
             the cluster's slot map is changing or inconsistent\r\n"
        );
    }

    #[test]
    fn a_redirect_inside_a_transaction_becomes_an_error_that_names_it() {
        let r = parse_redirect(b"-MOVED 866 127.0.0.1:7002\r\n").unwrap();
        assert_eq!(
            in_transaction("c", "EXEC", &r),
            "-EXECABORT Transaction discarded: ferrule: pool 'c': hash slot 866 moved to 127.0.0.1:7002 (MOVED) \
             during the transaction; nothing was applied, and the slot map is being refreshed\r\n"
        );
        let r = parse_redirect(b"-ASK 866 :7002\r\n").unwrap();
        assert_eq!(
            in_transaction("c", "SET", &r),
            "-ERR ferrule: pool 'c': SET was redirected (ASK 866 :7002) inside a transaction, which ferrule does not \
             follow; the transaction is aborted (EXEC answers EXECABORT) and the slot map is being refreshed\r\n"
        );
    }
}
