//! The meta protocol (mg, ms, md, ma, mn, me): request parsing, reply framing and quiet mode, as memcached 1.6
//! implements them (doc/protocol.txt, proto_text.c).
//!
//! A proxy checks only what it needs to keep replies matched to requests and to route: the key token, the
//! `ms` data block, the `b` flag (the key is routed by its decoded bytes and forwarded as the client sent it),
//! duplicate flags and the `q` flag. Everything else (flag values, opaque length, modes) is left to the server,
//! whose error line comes back like any reply; so a malformed flag is answered exactly as memcached answers it.
//!
//! Quiet mode: memcached hides mg's `EN`, the `HD` of ms and md, and ma's success (`HD`, or `VA` with `v`)
//! when the request carries `q`. ferrule
//! never sends `q` upstream: it strips the token, so every request gets a reply to match, and drops the hidden
//! ones on the client side ([`hides`]). A request with a repeated flag is forwarded untouched: memcached
//! refuses it (`CLIENT_ERROR duplicate flag`, or `invalid or duplicate flag` for md and ma), and errors are
//! never hidden.

use std::ops::Range;

use super::lex::{parse_unsigned, Line, Tokens};
use super::reply::{excerpt, is_error_line, reply_line};
use super::request::{data_block_end, discard_through, line_error, Parse, Request, MAX_DATA_LEN};
use super::request::{BAD_DATA_CHUNK_REPLY, BAD_FORMAT_REPLY, ERROR_REPLY};
use super::{Command, MAX_KEY_LEN};

/// What a meta request carries besides its command and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The `q` token (an absolute range into the request), stripped before forwarding; the reply memcached
    /// would have hidden is then dropped by ferrule. None without `q`, or when a flag repeats.
    pub quiet: Option<Range<usize>>,
    /// The `b` flag: the key token is base64 and requests are routed by its decoded bytes ([`decode_key`]).
    pub base64: bool,
    /// The text command the request acts as, for routing (operation routes, route classes): mg and me `get`,
    /// ms `set`/`add`/`append`/`prepend`/`replace` by its `M` mode (`cas` with a `C` compare value in set or
    /// replace mode, as memcached runs it), md `delete`, ma `incr`/`decr` by its `M` mode.
    pub op: Command,
}

/// The longest a decoded `b` key can be: a key token is at most [`MAX_KEY_LEN`] bytes of base64.
pub const MAX_DECODED_KEY_LEN: usize = MAX_KEY_LEN / 4 * 3 + 3;

/// mg and mn take 18 flags at most, ms 16 (memcached's MFLAG_MAX_OPT_LENGTH of 20 tokens, counting the command,
/// key, datalen and an end marker). Checked here on what the client sent: the server sees one token fewer when
/// `q` is stripped.
const MAX_FLAGS: usize = 17;
const MAX_SET_FLAGS: usize = 16;

/// The reply to `mn`, which ferrule answers itself, in order.
pub const NOOP_REPLY: &str = "MN\r\n";

/// Parses the meta request `command` whose line is `line`; `tokens` are past the command name.
pub(super) fn parse(
    command: Command,
    buf: &[u8],
    line: Line,
    mut tokens: Tokens<'_>,
    keys: &mut Vec<Range<usize>>,
    max_value: usize,
) -> Parse {
    let key = tokens.next();
    if command == Command::MetaNoop {
        // memcached ignores anything after mn.
        return request(command, line.next, line.next, None);
    }
    let Some(key) = key else {
        return line_error(if command == Command::MetaDebug { BAD_FORMAT_REPLY } else { ERROR_REPLY }, line.next);
    };
    if command == Command::MetaSet {
        return parse_set(buf, line, key, tokens, keys, max_value);
    }
    if key.len() > MAX_KEY_LEN {
        return line_error(BAD_FORMAT_REPLY, line.next);
    }
    if command == Command::MetaDebug {
        // `me <key> [b]`: only a `b` right after the key means base64 (memcached looks nowhere else).
        let base64 = tokens.next().is_some_and(|t| buf.get(t) == Some(&b"b"[..]));
        keys.push(key);
        return request(command, line.next, line.next, Some(Meta { quiet: None, base64, op: Command::Get }));
    }
    let flags = match Flags::scan(buf, tokens, MAX_FLAGS) {
        Ok(flags) => flags,
        Err(()) => {
            let reply = match command {
                Command::MetaGet => "CLIENT_ERROR options flags are too long\r\n",
                _ => "CLIENT_ERROR options flags too long\r\n",
            };
            return line_error(reply, line.next);
        }
    };
    let op = match command {
        Command::MetaGet => Command::Get,
        Command::MetaDelete => Command::Delete,
        _ => match flags.mode {
            Some(b'D' | b'-') => Command::Decr,
            _ => Command::Incr,
        },
    };
    keys.push(key);
    request(command, line.next, line.next, Some(flags.meta(op)))
}

/// `ms <key> <datalen> <flag>*\r\n<data>\r\n`. Where the length cannot be read memcached answers `CLIENT_ERROR
/// bad command line format` and drops only the line, as here; every other refusal here discards the data block
/// with the line, so it is never read as commands (memcached reads it as a command after a key over 250 bytes
/// or too many flags, which would put a second reply in the stream).
fn parse_set(
    buf: &[u8],
    line: Line,
    key: Range<usize>,
    mut tokens: Tokens<'_>,
    keys: &mut Vec<Range<usize>>,
    max_value: usize,
) -> Parse {
    let length = tokens.next().and_then(|t| buf.get(t)).unwrap_or_default();
    let Some((bytes, total)) = data_block_end(line, length).filter(|&(bytes, _)| bytes as u64 <= MAX_DATA_LEN - 2)
    else {
        return line_error(BAD_FORMAT_REPLY, line.next);
    };
    if key.len() > MAX_KEY_LEN {
        return discard_through(buf, total, BAD_FORMAT_REPLY);
    }
    let Ok(flags) = Flags::scan(buf, tokens, MAX_SET_FLAGS) else {
        return discard_through(buf, total, "CLIENT_ERROR options flags too long\r\n");
    };
    if bytes > max_value {
        // memcached's answer too, whatever the flags (errors are never quiet).
        let available = total.min(buf.len());
        return Parse::TooLarge { consumed: available, skip: total - available };
    }
    let Some(terminator) = buf.get(total - 2..total) else {
        return Parse::Incomplete;
    };
    if terminator != b"\r\n" {
        return discard_through(buf, total, BAD_DATA_CHUNK_REPLY);
    }
    let op = match flags.mode {
        Some(b'E') => Command::Add,
        Some(b'A') => Command::Append,
        Some(b'P') => Command::Prepend,
        Some(b'R') if flags.cas => Command::Cas,
        Some(b'R') => Command::Replace,
        _ if flags.cas => Command::Cas,
        _ => Command::Set,
    };
    keys.push(key);
    request(Command::MetaSet, total, line.next, Some(flags.meta(op)))
}

fn request(command: Command, len: usize, line_len: usize, meta: Option<Meta>) -> Parse {
    Parse::Request(Request { command, len, noreply: false, exptime: None, line_len, meta })
}

/// What the flags of a request say that a proxy needs.
struct Flags {
    quiet: Option<Range<usize>>,
    duplicate: bool,
    base64: bool,
    /// The second byte of an `M` token.
    mode: Option<u8>,
    /// A `C` (compare cas) flag.
    cas: bool,
}

impl Flags {
    /// Reads the flag tokens; Err when there are more than `max` of them.
    fn scan(buf: &[u8], tokens: Tokens<'_>, max: usize) -> Result<Flags, ()> {
        let mut flags = Flags { quiet: None, duplicate: false, base64: false, mode: None, cas: false };
        // memcached's rule: a flag is its token's first byte; a byte seen before, or one over 126, is a duplicate.
        let mut seen = 0u128;
        for (n, token) in tokens.enumerate() {
            if n >= max {
                return Err(());
            }
            let text = buf.get(token.clone()).unwrap_or_default();
            let first = text.first().copied().unwrap_or_default();
            if first >= 127 || seen & (1 << first) != 0 {
                flags.duplicate = true;
                continue;
            }
            seen |= 1 << first;
            match first {
                b'q' => flags.quiet = Some(token),
                b'b' => flags.base64 = true,
                b'M' => flags.mode = text.get(1).copied().filter(|_| text.len() == 2),
                b'C' => flags.cas = true,
                _ => {}
            }
        }
        Ok(flags)
    }

    fn meta(self, op: Command) -> Meta {
        Meta { quiet: if self.duplicate { None } else { self.quiet }, base64: self.base64, op }
    }
}

/// Writes the request `raw` (whose meta part is `meta`) as it goes to the server: unchanged, or without its `q`
/// token (ranges are relative to `raw`).
pub fn write_forwarded(out: &mut Vec<u8>, raw: &[u8], meta: Option<&Meta>) {
    match meta.and_then(|m| m.quiet.clone()) {
        // The token always follows a space (it comes after the key): drop both.
        Some(q) if q.start > 0 && q.end <= raw.len() => {
            out.extend_from_slice(&raw[..q.start - 1]);
            out.extend_from_slice(&raw[q.end..]);
        }
        _ => out.extend_from_slice(raw),
    }
}

/// Decodes the base64 key `token` (standard alphabet, padded, as memcached decodes it) into `out`, returning its
/// length; None when it is not valid base64 or decodes to nothing (memcached refuses it then, and the request is
/// routed by the token as sent, to be refused by the server).
pub fn decode_key(token: &[u8], out: &mut [u8; MAX_DECODED_KEY_LEN]) -> Option<usize> {
    if token.is_empty() || !token.len().is_multiple_of(4) || token.len() > MAX_KEY_LEN + 2 {
        return None;
    }
    let mut len = 0;
    let chunks = token.len() / 4;
    for (i, chunk) in token.chunks_exact(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | u32::from(sextet(c)?);
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        for &b in &bytes[..3 - pad] {
            *out.get_mut(len)? = b;
            len += 1;
        }
    }
    (len > 0).then_some(len)
}

fn sextet(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

/// Whether memcached would have hidden `reply` to a quiet (`q`) request of `command`: mg's `EN`; the `HD` of ms
/// and md; ma's success, `HD` or (with `v`) `VA` (memcached skips the whole response of a quiet ma that
/// worked). Everything else (mg hits, NF, NS, EX, errors) is always returned.
pub fn hides(command: Command, reply: &[u8]) -> bool {
    let is = |code: &[u8]| reply.starts_with(code) && matches!(reply.get(2), Some(b' ' | b'\r' | b'\n'));
    match command {
        Command::MetaGet => is(b"EN"),
        Command::MetaSet | Command::MetaDelete => is(b"HD"),
        Command::MetaArithmetic => is(b"HD") || is(b"VA"),
        _ => false,
    }
}

/// Writes the reply a cache holding nothing gives the meta request `raw` of `command` (the `null` route, and the
/// default reply of `all_async`): mg and me a miss `EN`, ms `NS`, md and ma `NF`, each with the request's `O` and
/// `k` flags echoed in request order as memcached echoes them (`k` gives the key as sent, followed by `b` for a
/// base64 key; me echoes nothing). Nothing for a quiet mg, whose miss is hidden.
pub fn write_null_reply(out: &mut Vec<u8>, command: Command, quiet: bool, raw: &[u8]) {
    let code: &[u8] = match command {
        Command::MetaGet if quiet => return,
        Command::MetaGet | Command::MetaDebug => b"EN",
        Command::MetaSet => b"NS",
        _ => b"NF",
    };
    out.extend_from_slice(code);
    if command != Command::MetaDebug {
        echo_flags(out, command, raw);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the `O` and `k` flags of the meta request `raw` as memcached's replies carry them.
fn echo_flags(out: &mut Vec<u8>, command: Command, raw: &[u8]) {
    let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let text_end = if line_end > 0 && raw.get(line_end - 1) == Some(&b'\r') { line_end - 1 } else { line_end };
    let mut tokens = Tokens::new(raw, 0..text_end);
    let _command = tokens.next();
    let Some(key) = tokens.next() else { return };
    if command == Command::MetaSet {
        let _datalen = tokens.next();
    }
    let flags: Vec<Range<usize>> = tokens.collect();
    let base64 = flags.iter().any(|t| raw.get(t.start) == Some(&b'b'));
    for t in flags {
        match raw.get(t.start) {
            Some(b'O') => {
                out.push(b' ');
                out.extend_from_slice(&raw[t]);
            }
            Some(b'k') => {
                out.extend_from_slice(b" k");
                out.extend_from_slice(&raw[key.clone()]);
                if base64 {
                    out.extend_from_slice(b" b");
                }
            }
            _ => {}
        }
    }
}

/// How far the reply to a meta `command` at the start of `buf` has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// The whole reply is `len` bytes.
    Done(usize),
    /// Not complete: nothing can change until the buffer holds `needed` bytes.
    Need(usize),
}

/// Frames the reply to the meta `command` at the start of `buf`: one line whose code the command can get (mg:
/// HD, VA, EN; ms: HD, NS, EX, NF; md: HD, NF, EX; ma: HD, VA, NF, NS, EX; me: ME, EN; mn: MN) or an error line;
/// a `VA <size> <flags>*` line is followed by its data block and `\r\n`, jumped over by the size.
pub(super) fn frame(buf: &[u8], command: Command) -> Result<Frame, String> {
    let Some(line) = reply_line(buf, 0)? else {
        return Ok(Frame::Need(buf.len() + 1));
    };
    let text = line.text(buf);
    if is_error_line(text) {
        return Ok(Frame::Done(line.next));
    }
    let has = |code: &[u8]| text.starts_with(code) && matches!(text.get(2), None | Some(b' '));
    let value = matches!(command, Command::MetaGet | Command::MetaArithmetic) && has(b"VA");
    let fits = value
        || match command {
            Command::MetaGet => has(b"HD") || has(b"EN"),
            Command::MetaSet => has(b"HD") || has(b"NS") || has(b"EX") || has(b"NF"),
            Command::MetaDelete => has(b"HD") || has(b"NF") || has(b"EX"),
            Command::MetaArithmetic => has(b"HD") || has(b"NF") || has(b"NS") || has(b"EX"),
            Command::MetaDebug => has(b"ME") || has(b"EN"),
            Command::MetaNoop => has(b"MN"),
            _ => false,
        };
    if !fits {
        return Err(format!("unexpected reply to {}: {:?}", command.name(), excerpt(text)));
    }
    if !value {
        return Ok(Frame::Done(line.next));
    }
    let size = Tokens::new(buf, line.start + 2..line.text_end)
        .next()
        .and_then(|t| parse_unsigned(buf.get(t).unwrap_or_default()))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("a VA reply to {} without a size", command.name()))?;
    let end = line.next.checked_add(size).and_then(|n| n.checked_add(2)).ok_or("a VA size out of range")?;
    match buf.get(end - 2..end) {
        None => Ok(Frame::Need(end)),
        Some(b"\r\n") => Ok(Frame::Done(end)),
        Some(_) => Err(format!("a VA data block to {} not ended by \\r\\n", command.name())),
    }
}
