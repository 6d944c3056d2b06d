//! SCAN over every server of a pool, with one cursor the client carries: the cursor names the server and that
//! server's own cursor, so the proxy keeps no state between calls.
//!
//! Cursor layout: `client = backend * n + server`, where `n` is the pool's server count and `server` the index of
//! the server being scanned (so cursor 0 is server 0's start). When a server's scan ends (it returns 0), the next
//! cursor is the next live server's start, `0 * n + next`; after the last server it is 0, which ends the
//! iteration. Each server keeps SCAN's guarantees for its own keys, and every server is scanned from start to end
//! once, so a full iteration returns every key present on a live server all along. Cursors are decimal u128, so a
//! server cursor of up to 64 bits never overflows; a client cursor only means something to the pool it came from
//! (with the same server count).

/// The server and backend cursor a client cursor stands for. `Err` is redis' own error text for a bad cursor.
pub fn split_scan_cursor(arg: &[u8], servers: usize) -> Result<(usize, u64), &'static str> {
    const INVALID: &str = "ERR invalid cursor";
    if arg.is_empty() || arg.len() > 39 || !arg.iter().all(u8::is_ascii_digit) {
        return Err(INVALID);
    }
    let cursor: u128 = std::str::from_utf8(arg).ok().and_then(|t| t.parse().ok()).ok_or(INVALID)?;
    let n = servers.max(1) as u128;
    let backend = u64::try_from(cursor / n).map_err(|_| INVALID)?;
    Ok(((cursor % n) as usize, backend))
}

/// The client cursor that follows a server's reply: `backend` is the cursor server `server` returned, `next` the
/// next live server after it (`None` when it is the last).
pub fn next_scan_cursor(backend: u64, server: usize, next: Option<usize>, servers: usize) -> u128 {
    let n = servers.max(1) as u128;
    match (backend, next) {
        (0, Some(next)) => next as u128,
        (0, None) => 0,
        (backend, _) => backend as u128 * n + server as u128,
    }
}

/// Rewrites a backend's SCAN reply (`*2 $cursor [keys]`) for the client, with the cursor from
/// [`next_scan_cursor`]. `false` when the reply is not a SCAN reply (nothing is appended then).
pub fn rewrite_scan_reply(reply: &[u8], server: usize, next: Option<usize>, servers: usize, out: &mut Vec<u8>) -> bool {
    let Some(rest) = reply.strip_prefix(b"*2\r\n$") else { return false };
    let Some(eol) = rest.iter().position(|&b| b == b'\r') else { return false };
    let Some(len) = std::str::from_utf8(&rest[..eol]).ok().and_then(|t| t.parse::<usize>().ok()) else {
        return false;
    };
    let body = eol + 2;
    let (Some(cursor), Some(b"\r\n")) = (rest.get(body..body + len), rest.get(body + len..body + len + 2)) else {
        return false;
    };
    let Some(backend) = std::str::from_utf8(cursor).ok().and_then(|t| t.parse::<u64>().ok()) else {
        return false;
    };
    let keys = &rest[body + len + 2..];
    if !keys.starts_with(b"*") && !keys.starts_with(b"~") {
        return false;
    }
    let text = next_scan_cursor(backend, server, next, servers).to_string();
    out.extend_from_slice(b"*2\r\n");
    super::encode::write_bulk(out, text.as_bytes());
    out.extend_from_slice(keys);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(split_scan_cursor(b"0", 3), Ok((0, 0)));
        assert_eq!(split_scan_cursor(b"2", 3), Ok((2, 0)));
        assert_eq!(split_scan_cursor(b"17", 3), Ok((2, 5)));
        for (backend, server) in [(5u64, 2usize), (u64::MAX, 1), (1, 0)] {
            let c = next_scan_cursor(backend, server, Some(2), 3).to_string();
            assert_eq!(split_scan_cursor(c.as_bytes(), 3), Ok((server, backend)));
        }
        assert_eq!(next_scan_cursor(0, 0, Some(2), 3), 2, "a finished server moves on to the next live one");
        assert_eq!(next_scan_cursor(0, 2, None, 3), 0, "the last one ends the iteration");
        for bad in [&b""[..], b"-1", b"x", b"1.5", b"99999999999999999999999999999999999999999"] {
            assert_eq!(split_scan_cursor(bad, 3), Err("ERR invalid cursor"), "{bad:?}");
        }
    }

    #[test]
    fn replies_get_the_client_cursor() {
        let mut out = Vec::new();
        assert!(rewrite_scan_reply(b"*2\r\n$2\r\n12\r\n*1\r\n$1\r\na\r\n", 1, Some(2), 3, &mut out));
        assert_eq!(out, b"*2\r\n$2\r\n37\r\n*1\r\n$1\r\na\r\n");
        out.clear();
        assert!(rewrite_scan_reply(b"*2\r\n$1\r\n0\r\n*0\r\n", 1, Some(2), 3, &mut out));
        assert_eq!(out, b"*2\r\n$1\r\n2\r\n*0\r\n");
        out.clear();
        assert!(!rewrite_scan_reply(b"-ERR x\r\n", 1, None, 3, &mut out));
        assert!(!rewrite_scan_reply(b"*2\r\n$1\r\nx\r\n*0\r\n", 1, None, 3, &mut out));
        assert!(!rewrite_scan_reply(b"*2\r\n$5\r\n0\r\n*0\r\n", 1, None, 3, &mut out));
        assert!(out.is_empty());
    }
}
