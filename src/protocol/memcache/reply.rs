//! Reply framing: find where one backend reply ends, so replies can be matched FIFO to the
//! requests that were sent, and pick retrieval replies apart into their VALUE items.
//!
//! The framer is strict about which replies fit which command: a reply that does not fit means
//! the backend connection is out of step with its request queue, and the caller must close it
//! rather than hand a reply to the wrong request.

use std::ops::Range;

use super::lex::{find_line, parse_unsigned, Line};
use super::{meta, Command};

/// Longest reply line accepted (VALUE lines carry at most a 250-byte key and three numbers;
/// STAT lines are short).
pub const MAX_REPLY_LINE_LEN: usize = 8192;

/// The length of the complete reply to `command` at the start of `buf`; `Ok(None)` if it is
/// not complete yet; `Err` with a description if the bytes are not a reply to that command.
///
/// Retrieval replies are zero or more `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n` items
/// then `END\r\n`; data blocks are jumped over by their byte count, never scanned. Storage:
/// STORED, NOT_STORED, EXISTS or NOT_FOUND. incr/decr: a number or NOT_FOUND. delete: DELETED
/// or NOT_FOUND. touch: TOUCHED or NOT_FOUND. version: `VERSION <x>`. stats: STAT (ITEM,
/// PREFIX) lines until END, or one RESET/OK line. flush_all, verbosity: OK. Any command may
/// instead get one ERROR, CLIENT_ERROR or SERVER_ERROR line; in a retrieval reply such a line
/// may also follow some items, and ends the reply. quit has no reply, so any byte is an error.
///
/// Each call starts over; [`ReplyFramer`](super::ReplyFramer) resumes where the last attempt
/// stopped, for replies with very many items that arrive over many reads.
pub fn reply_len(buf: &[u8], command: Command) -> Result<Option<usize>, String> {
    if command == Command::Quit && !buf.is_empty() {
        return Err("a reply to quit, which has none".to_string());
    }
    if command.is_retrieval() {
        return retrieval_len(buf);
    }
    if command.is_meta() {
        return meta::frame(buf, command).map(|f| match f {
            meta::Frame::Done(len) => Some(len),
            meta::Frame::Need(_) => None,
        });
    }
    let Some(line) = reply_line(buf, 0)? else {
        return Ok(None);
    };
    let text = line.text(buf);
    if is_error_line(text) {
        return Ok(Some(line.next));
    }
    let fits = match command {
        Command::Stats => return stats_len(buf, line),
        Command::Set | Command::Add | Command::Replace | Command::Append | Command::Prepend | Command::Cas => {
            matches!(text, b"STORED" | b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND")
        }
        Command::Incr | Command::Decr => text == b"NOT_FOUND" || parse_unsigned(text).is_some(),
        Command::Delete => matches!(text, b"DELETED" | b"NOT_FOUND"),
        Command::Touch => matches!(text, b"TOUCHED" | b"NOT_FOUND"),
        Command::Version => text.starts_with(b"VERSION "),
        Command::FlushAll | Command::Verbosity => text == b"OK",
        _ => false,
    };
    if fits {
        Ok(Some(line.next))
    } else {
        Err(format!("unexpected reply to {}: {:?}", command.name(), excerpt(text)))
    }
}

/// For a complete retrieval reply ending in `END\r\n`: each VALUE item as (key range, item
/// range including its data block and `\r\n`), in reply order. Returns false (with `out`
/// cleared) if `reply` is anything else, including an error reply or trailing bytes.
pub fn retrieval_items(reply: &[u8], out: &mut Vec<(Range<usize>, Range<usize>)>) -> bool {
    out.clear();
    let mut at = 0;
    loop {
        match retrieval_step(reply, at) {
            Ok(Step::Item { key, end }) => {
                out.push((key, at..end));
                at = end;
            }
            Ok(Step::End { end }) if end == reply.len() => return true,
            _ => {
                out.clear();
                return false;
            }
        }
    }
}

/// Whether `reply` starts with an ERROR, CLIENT_ERROR or SERVER_ERROR line.
pub fn is_error_reply(reply: &[u8]) -> bool {
    [&b"ERROR"[..], b"CLIENT_ERROR", b"SERVER_ERROR"]
        .iter()
        .any(|prefix| reply.starts_with(prefix) && matches!(reply.get(prefix.len()), Some(b' ' | b'\r' | b'\n') | None))
}

/// An error line's text (without its line ending).
pub(super) fn is_error_line(text: &[u8]) -> bool {
    is_error_reply(text)
}

pub(super) fn reply_line(buf: &[u8], start: usize) -> Result<Option<Line>, String> {
    match find_line(buf, start, MAX_REPLY_LINE_LEN) {
        Some(line) => Ok(Some(line)),
        None if buf.len().saturating_sub(start) < MAX_REPLY_LINE_LEN => Ok(None),
        None => Err(format!("reply line longer than {MAX_REPLY_LINE_LEN} bytes")),
    }
}

/// One step through a retrieval reply.
pub(super) enum Step {
    /// A VALUE item whose key is at `key`; the item (line, data, `\r\n`) ends at `end`.
    Item { key: Range<usize>, end: usize },
    /// END, ending the reply at `end`.
    End { end: usize },
    /// An error line, ending the reply at `end`.
    Failed { end: usize },
    /// Incomplete: nothing changes until the buffer holds `needed` bytes.
    Wait { needed: usize },
}

/// Reads the item or terminator starting at `at`.
pub(super) fn retrieval_step(buf: &[u8], at: usize) -> Result<Step, String> {
    let Some(line) = reply_line(buf, at)? else {
        return Ok(Step::Wait { needed: buf.len() + 1 });
    };
    let text = line.text(buf);
    if text == b"END" {
        return Ok(Step::End { end: line.next });
    }
    if is_error_line(text) {
        return Ok(Step::Failed { end: line.next });
    }
    let Some((key, bytes)) = value_header(buf, line) else {
        return Err(format!("unexpected line in a retrieval reply: {:?}", excerpt(text)));
    };
    let data_end = usize::try_from(bytes)
        .ok()
        .and_then(|bytes| line.next.checked_add(bytes))
        .filter(|&end| end < usize::MAX - 2)
        .ok_or_else(|| format!("VALUE byte count {bytes} is out of range"))?;
    match buf.get(data_end..data_end + 2) {
        None => Ok(Step::Wait { needed: data_end + 2 }),
        Some(b"\r\n") => Ok(Step::Item { key, end: data_end + 2 }),
        Some(_) => Err(format!("VALUE data block of {bytes} bytes is not followed by \\r\\n")),
    }
}

/// `VALUE <key> <flags> <bytes> [<cas>]`: the key's range and the byte count.
fn value_header(buf: &[u8], line: Line) -> Option<(Range<usize>, u64)> {
    let mut tokens = line.tokens(buf);
    let mut next = || buf.get(tokens.next()?);
    if next()? != b"VALUE" {
        return None;
    }
    let key = tokens.next()?;
    let mut next_number = || parse_unsigned(buf.get(tokens.next()?)?);
    next_number()?; // flags
    let bytes = next_number()?;
    if tokens.next().is_some_and(|cas| buf.get(cas).and_then(parse_unsigned).is_none()) {
        return None;
    }
    tokens.next().is_none().then_some((key, bytes))
}

fn retrieval_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        match retrieval_step(buf, at)? {
            Step::Wait { .. } => return Ok(None),
            Step::Item { end, .. } => at = end,
            Step::End { end } | Step::Failed { end } => return Ok(Some(end)),
        }
    }
}

/// `stats` replies with STAT lines (ITEM lines for `stats cachedump`, PREFIX lines for
/// `stats detail dump`) until END; `stats reset` with RESET and `stats detail on|off` with OK.
fn stats_len(buf: &[u8], first: Line) -> Result<Option<usize>, String> {
    if matches!(first.text(buf), b"RESET" | b"OK" | b"END") {
        return Ok(Some(first.next));
    }
    let mut line = first;
    loop {
        if stats_line_ends_reply(line.text(buf))? {
            return Ok(Some(line.next));
        }
        let Some(next) = reply_line(buf, line.next)? else {
            return Ok(None);
        };
        line = next;
    }
}

/// For a line of a multi-line stats reply: true for the END that ends it, false for a STAT,
/// ITEM or PREFIX line, an error for anything else.
pub(super) fn stats_line_ends_reply(text: &[u8]) -> Result<bool, String> {
    if text == b"END" {
        return Ok(true);
    }
    if ![&b"STAT "[..], b"ITEM ", b"PREFIX "].iter().any(|prefix| text.starts_with(prefix)) {
        return Err(format!("unexpected line in a stats reply: {:?}", excerpt(text)));
    }
    Ok(false)
}

/// The start of an unexpected line, for error messages.
pub(super) fn excerpt(text: &[u8]) -> String {
    String::from_utf8_lossy(text.get(..64).unwrap_or(text)).into_owned()
}
