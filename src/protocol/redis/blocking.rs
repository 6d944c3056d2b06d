//! Blocking commands (BLPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, ...), free of I/O: how long each request may block.
//!
//! A blocking command runs on a backend connection of its client's own (`io::dedicated`) for as long as it
//! blocks, so it never holds up the shared connections. Its request timeout is its own block time plus the pool's
//! `timeout_ms`; a block time of 0 blocks for ever, and so does its request (no timeout). The block time is read
//! as redis reads it, with redis's errors for a bad one, so a request the server would refuse is refused here
//! before a dedicated connection is taken for it.

use super::commands::CommandInfo;
use std::ops::Range;
use std::time::Duration;

/// Where a blocking command carries its block time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Seconds (a float) in the last argument: BLPOP, BRPOP, BZPOPMIN, BZPOPMAX.
    LastArg,
    /// Seconds (a float) at this argument: BLMOVE (5), BRPOPLPUSH (3), BLMPOP and BZMPOP (1).
    At(usize),
    /// XREAD / XREADGROUP: milliseconds (an integer) after the `BLOCK` option; without it the command does not
    /// block and is forwarded like any other.
    BlockOption,
}

/// How long one request blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTime {
    /// It does not block (XREAD without BLOCK): an ordinary request.
    No,
    /// Until data arrives, however long.
    Forever,
    /// At most this long.
    For(Duration),
}

impl BlockTime {
    /// The request's timeout: the block time plus `timeout`, or none when it blocks for ever.
    pub fn request_timeout(self, timeout: Duration) -> Option<Duration> {
        match self {
            BlockTime::No => Some(timeout),
            BlockTime::Forever => None,
            BlockTime::For(d) => Some(d.saturating_add(timeout)),
        }
    }
}

/// The block time of a request of a blocking command (`args` are ranges of `req`, args[0] the name). Errors are
/// redis's own texts, ready for `-` + text + CRLF.
pub fn block_time(how: Block, info: &CommandInfo, args: &[Range<usize>], req: &[u8]) -> Result<BlockTime, String> {
    let arg = |i: usize| args.get(i).and_then(|r| req.get(r.clone()));
    match how {
        Block::LastArg => seconds(arg(args.len().wrapping_sub(1)).unwrap_or_default()),
        Block::At(i) => seconds(arg(i).ok_or_else(|| super::arity_error(info))?),
        Block::BlockOption => {
            let mut i = 1;
            while let Some(word) = arg(i) {
                if word.eq_ignore_ascii_case(b"STREAMS") {
                    break;
                }
                if word.eq_ignore_ascii_case(b"BLOCK") {
                    return milliseconds(arg(i + 1).ok_or_else(|| "ERR syntax error".to_string())?);
                }
                i += option_width(word);
            }
            Ok(BlockTime::No)
        }
    }
}

/// How many arguments an XREAD/XREADGROUP option takes with its values, so a value is never read as an option.
pub(crate) fn option_width(word: &[u8]) -> usize {
    if word.eq_ignore_ascii_case(b"GROUP") {
        3
    } else if word.eq_ignore_ascii_case(b"COUNT") || word.eq_ignore_ascii_case(b"BLOCK") {
        2
    } else {
        1
    }
}

/// A timeout in seconds, as BLPOP reads it: a float, not negative; 0 blocks for ever.
fn seconds(text: &[u8]) -> Result<BlockTime, String> {
    let value = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .ok_or_else(|| "ERR timeout is not a float or out of range".to_string())?;
    if value < 0.0 {
        return Err("ERR timeout is negative".to_string());
    }
    if value == 0.0 {
        return Ok(BlockTime::Forever);
    }
    Duration::try_from_secs_f64(value).map(BlockTime::For).map_err(|_| "ERR timeout is out of range".to_string())
}

/// A timeout in milliseconds, as XREAD's BLOCK reads it: an integer, not negative; 0 blocks for ever.
fn milliseconds(text: &[u8]) -> Result<BlockTime, String> {
    let value = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| "ERR timeout is not an integer or out of range".to_string())?;
    match value {
        v if v < 0 => Err("ERR timeout is negative".to_string()),
        0 => Ok(BlockTime::Forever),
        v => Ok(BlockTime::For(Duration::from_millis(v as u64))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{lookup, CommandKind};
    use super::*;

    fn time(words: &[&str]) -> Result<BlockTime, String> {
        let mut req = Vec::new();
        let mut args = Vec::new();
        for w in words {
            args.push(req.len()..req.len() + w.len());
            req.extend_from_slice(w.as_bytes());
        }
        let info = lookup(words[0].as_bytes()).unwrap();
        let CommandKind::Blocking(how) = info.kind else { panic!("{} is not blocking", words[0]) };
        block_time(how, info, &args, &req)
    }

    #[test]
    fn block_times_are_read_where_each_command_has_them() {
        let ms = |n| Ok(BlockTime::For(Duration::from_millis(n)));
        assert_eq!(time(&["BLPOP", "a", "b", "1.5"]), ms(1500));
        assert_eq!(time(&["BRPOP", "a", "0"]), Ok(BlockTime::Forever));
        assert_eq!(time(&["BZPOPMIN", "z", "2"]), ms(2000));
        assert_eq!(time(&["BLMOVE", "a", "b", "LEFT", "RIGHT", "0.25"]), ms(250));
        assert_eq!(time(&["BRPOPLPUSH", "a", "b", "3"]), ms(3000));
        assert_eq!(time(&["BLMPOP", "0.1", "2", "a", "b", "LEFT"]), ms(100));
        assert_eq!(time(&["BZMPOP", "0", "1", "z", "MIN", "COUNT", "2"]), Ok(BlockTime::Forever));
        assert_eq!(time(&["XREAD", "COUNT", "2", "BLOCK", "700", "STREAMS", "s", "$"]), ms(700));
        assert_eq!(time(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]), Ok(BlockTime::Forever));
        assert_eq!(time(&["XREAD", "STREAMS", "s", "0"]), Ok(BlockTime::No));
        // A value that reads like an option is a value: COUNT's BLOCK, a group named BLOCK, a key named BLOCK.
        assert_eq!(time(&["XREAD", "COUNT", "BLOCK", "STREAMS", "BLOCK", "0"]), Ok(BlockTime::No));
        assert_eq!(time(&["XREADGROUP", "GROUP", "BLOCK", "c", "STREAMS", "s", ">"]), Ok(BlockTime::No));
        assert_eq!(time(&["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "NOACK", "STREAMS", "s", ">"]), ms(10));
    }

    #[test]
    fn bad_block_times_get_redis_errors() {
        let float = Err("ERR timeout is not a float or out of range".to_string());
        assert_eq!(time(&["BLPOP", "a", "x"]), float);
        assert_eq!(time(&["BLPOP", "a", "inf"]), float);
        assert_eq!(time(&["BLPOP", "a", "nan"]), float);
        assert_eq!(time(&["BLPOP", "a", "-1"]), Err("ERR timeout is negative".to_string()));
        assert_eq!(time(&["BLPOP", "a", "1e300"]), Err("ERR timeout is out of range".to_string()));
        assert_eq!(
            time(&["XREAD", "BLOCK", "x", "STREAMS", "s", "$"]),
            Err("ERR timeout is not an integer or out of range".to_string())
        );
        assert_eq!(time(&["XREAD", "BLOCK", "-5", "STREAMS", "s", "$"]), Err("ERR timeout is negative".to_string()));
        assert_eq!(time(&["XREAD", "BLOCK"]), Err("ERR syntax error".to_string()));
    }

    #[test]
    fn the_request_timeout_adds_timeout_ms_to_the_block_time() {
        let t = Duration::from_millis(400);
        assert_eq!(BlockTime::For(Duration::from_secs(2)).request_timeout(t), Some(Duration::from_millis(2400)));
        assert_eq!(BlockTime::Forever.request_timeout(t), None);
        assert_eq!(BlockTime::No.request_timeout(t), Some(t));
    }
}
