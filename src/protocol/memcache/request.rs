//! Request parsing: recognise one complete client request at the start of a read buffer.
//!
//! The parser's first duty is to keep the proxy's reply stream in step with the client's request
//! stream. Whatever it hands on as a [`Parse::Request`] must be a request memcached answers with
//! exactly one reply (or none, for `noreply`), so anything memcached would misread (a bad
//! number in a storage line would make it read the data block as a command) is answered here
//! instead. Every decision depends only on the bytes of the request itself, never on how they
//! were split into reads.

use std::ops::Range;

use super::lex::{find_line, is_valid_key, parse_exptime, parse_unsigned, Line, Tokens};
use super::meta::{self, Meta};
use super::Command;

/// Longest command line accepted (bytes, including `\r\n`), as in memcached: a longer line
/// without a newline means a broken or hostile client.
pub const MAX_LINE_LEN: usize = 2048;
/// Longest get/gets/gat/gats line accepted. memcached lets multi-get lines grow without bound;
/// a proxy needs some bound, and this one admits about 4,000 maximal keys or far more short ones.
pub const MAX_RETRIEVAL_LINE_LEN: usize = 1 << 20;
/// The largest `<bytes>` memcached reads (it keeps the length in an `i32`).
pub(super) const MAX_DATA_LEN: u64 = i32::MAX as u64;
/// First byte of every binary-protocol request.
const BINARY_MAGIC: u8 = 0x80;
/// The most arguments (after the command name) any non-retrieval command takes:
/// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]`.
const MAX_ARGS: usize = 6;

/// memcached's answer to an unknown command or a wrong number of arguments.
pub const ERROR_REPLY: &str = "ERROR\r\n";
/// A number in the command line that memcached would refuse.
pub const BAD_FORMAT_REPLY: &str = "CLIENT_ERROR bad command line format\r\n";
/// A key over [`super::MAX_KEY_LEN`] bytes or with a control character (mcrouter's wording).
pub const BAD_KEY_REPLY: &str = "CLIENT_ERROR bad key\r\n";
/// A data block not followed by `\r\n` where its byte count says it ends.
pub const BAD_DATA_CHUNK_REPLY: &str = "CLIENT_ERROR bad data chunk\r\n";
/// A gat/gats/touch/flush_all time that is not a number.
pub const BAD_EXPTIME_REPLY: &str = "CLIENT_ERROR invalid exptime argument\r\n";
/// An incr/decr delta that is not an unsigned 64-bit number.
pub const BAD_DELTA_REPLY: &str = "CLIENT_ERROR invalid numeric delta argument\r\n";
/// memcached's answer to `delete <key> <anything but 0>`.
pub const DELETE_USAGE_REPLY: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
/// The reply owed for [`Parse::TooLarge`].
pub const TOO_LARGE_REPLY: &str = "SERVER_ERROR object too large for cache\r\n";
/// Sent before closing on a command line longer than the limits above.
pub const LINE_TOO_LONG_REPLY: &str = "CLIENT_ERROR line too long\r\n";
/// The message of the binary-protocol error response sent before closing (see [`write_binary_refusal`]).
pub const BINARY_PROTOCOL_MESSAGE: &str = "ferrule speaks the memcached text protocol only";
/// Length of a binary-protocol request or response header.
pub const BINARY_HEADER_LEN: usize = 24;
/// The binary protocol's "Not supported" status.
const BINARY_STATUS_NOT_SUPPORTED: u16 = 0x0083;
/// First byte of every binary-protocol response.
const BINARY_RESPONSE_MAGIC: u8 = 0x81;

/// A parsed request; ranges index into the buffer passed to [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// Total bytes of the request including any data block and its trailing `\r\n`.
    pub len: usize,
    /// The client asked for no reply (storage, incr/decr, delete, touch, flush_all, verbosity).
    pub noreply: bool,
    /// gat/gats: the exptime token, needed to re-encode a split gat request.
    pub exptime: Option<Range<usize>>,
    /// Length of the command line including its line ending; the data block follows it.
    pub line_len: usize,
    /// A meta command's flags as the proxy needs them (None for text commands).
    pub meta: Option<Meta>,
}

/// The outcome of [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole request is at the start of the buffer. Its keys' byte ranges were written to
    /// `keys`: one key for storage, incr/decr, delete and touch; one or more for retrievals;
    /// none for version, quit, stats, flush_all and verbosity (their arguments can be read from
    /// the command line, `buf[..line_len]`).
    Request(Request),
    /// More bytes are needed.
    Incomplete,
    /// A request answered locally with `reply`; the stream continues after `consumed` bytes
    /// plus `skip` more that have not arrived yet (the rest of a data block being discarded),
    /// which the caller drops as they arrive.
    ///
    /// A storage line whose `<bytes>` is readable has its data block discarded with it, so
    /// the value is never read as commands, even when the line has too many arguments; so has
    /// an `ms` (meta set, not supported) whose datalen is readable. (memcached does this only
    /// for oversized values; for other bad lines it reads the data as a command and sends a
    /// second reply, which would desynchronise any client that counts replies, and can run a
    /// value such as `delete victim`.) When the length itself is unreadable, or a storage line
    /// has too few arguments, only the line is dropped, as memcached does: nothing says where
    /// a data block would end.
    ///
    /// `reply` is empty when the request carried `noreply` (its last token, once the argument
    /// count is right, as memcached decides): memcached sends nothing then, not even errors,
    /// and a client using noreply does not read a reply.
    Error { reply: &'static str, consumed: usize, skip: usize },
    /// A storage command whose value exceeds `max_value`: reply [`TOO_LARGE_REPLY`] and discard
    /// the command line, data block and `\r\n`: `consumed` bytes now plus `skip` more as they
    /// arrive. A `noreply` request gets [`Parse::Error`] with an empty reply instead.
    TooLarge { consumed: usize, skip: usize },
    /// The stream cannot be followed any further (a line over the length limits): send `reply`,
    /// then close the connection.
    Fatal { reply: &'static str },
    /// A binary-protocol request header (first byte 0x80): answer it with
    /// [`write_binary_refusal`], which a binary client can read, then close the connection.
    Binary { opcode: u8, opaque: [u8; 4] },
}

/// Parses the request at the start of `buf`.
///
/// `keys` is cleared, then receives the keys of a [`Parse::Request`]. `max_value` is the
/// largest data block accepted for storage commands. Never panics, whatever the input.
pub fn parse_request(buf: &[u8], keys: &mut Vec<Range<usize>>, max_value: usize) -> Parse {
    keys.clear();
    match buf.first() {
        None => return Parse::Incomplete,
        Some(&BINARY_MAGIC) => return binary_request(buf),
        Some(_) => {}
    }
    let line = match command_line(buf) {
        LineScan::Found(line) => line,
        LineScan::Incomplete => return Parse::Incomplete,
        LineScan::TooLong => return Parse::Fatal { reply: LINE_TOO_LONG_REPLY },
    };
    let mut tokens = line.tokens(buf);
    let name = tokens.next().and_then(|name| buf.get(name)).unwrap_or_default();
    let Some(command) = Command::from_name(name) else {
        return line_error(ERROR_REPLY, line.next);
    };
    if command.is_meta() {
        return meta::parse(command, buf, line, tokens, keys, max_value);
    }
    if command.is_retrieval() {
        return parse_retrieval(command, buf, line, tokens, keys);
    }
    if command == Command::Stats {
        // Any sub-command: the proxy decides what to do with it.
        return simple_request(command, line.next, false);
    }
    let args = Args::collect(buf, tokens);
    if command.is_storage() {
        return parse_storage(command, buf, line, &args, keys, max_value);
    }
    match command {
        Command::Incr | Command::Decr => parse_arithmetic(command, line, &args, keys),
        Command::Delete => parse_delete(line, &args, keys),
        Command::Touch => parse_touch(line, &args, keys),
        Command::FlushAll => parse_flush_all(line, &args),
        Command::Verbosity => parse_verbosity(line, &args),
        // version and quit ignore arguments, as memcached does.
        _ => simple_request(command, line.next, false),
    }
}

enum LineScan {
    Found(Line),
    Incomplete,
    TooLong,
}

/// Finds the command line, enforcing the length limits. Whether a line is too long is decided
/// from its first [`MAX_LINE_LEN`] bytes alone, so the answer does not depend on how much of
/// the line has arrived.
fn command_line(buf: &[u8]) -> LineScan {
    if let Some(line) = find_line(buf, 0, MAX_LINE_LEN) {
        return LineScan::Found(line);
    }
    let Some(head) = buf.get(..MAX_LINE_LEN) else {
        return LineScan::Incomplete;
    };
    if !starts_with_retrieval(head) {
        return LineScan::TooLong;
    }
    match find_line(buf, 0, MAX_RETRIEVAL_LINE_LEN) {
        Some(line) => LineScan::Found(line),
        None if buf.len() < MAX_RETRIEVAL_LINE_LEN => LineScan::Incomplete,
        None => LineScan::TooLong,
    }
}

/// Whether `head` (the first bytes of a line with no newline in them) begins with a whole
/// get/gets/gat/gats token, the only commands allowed lines longer than [`MAX_LINE_LEN`].
fn starts_with_retrieval(head: &[u8]) -> bool {
    Tokens::new(head, 0..head.len())
        .next()
        .filter(|name| name.end < head.len())
        .and_then(|name| Command::from_name(head.get(name).unwrap_or_default()))
        .is_some_and(Command::is_retrieval)
}

/// The arguments after the command name of a non-retrieval command, held without allocating.
struct Args<'a> {
    buf: &'a [u8],
    spans: [(usize, usize); MAX_ARGS],
    /// How many arguments the line has; only the first [`MAX_ARGS`] are kept (no command takes more, so a
    /// longer line is an error, but a storage line's `<bytes>` is still readable from it).
    len: usize,
}

impl<'a> Args<'a> {
    fn collect(buf: &'a [u8], tokens: Tokens<'a>) -> Self {
        let mut args = Args { buf, spans: [(0, 0); MAX_ARGS], len: 0 };
        for token in tokens {
            if let Some(span) = args.spans.get_mut(args.len) {
                *span = (token.start, token.end);
            }
            args.len += 1;
        }
        args
    }

    fn range(&self, i: usize) -> Range<usize> {
        match self.spans.get(i) {
            Some(&(start, end)) if i < self.len => start..end,
            _ => 0..0,
        }
    }

    fn get(&self, i: usize) -> &'a [u8] {
        self.buf.get(self.range(i)).unwrap_or_default()
    }

    /// memcached's rule (`set_noreply_maybe`): once the argument count is right for the command, a request
    /// is noreply when its last token is exactly `noreply`, wherever that token stands. So
    /// `incr k noreply` is a silent bad delta, not an error line. (A request ferrule forwards never has
    /// `noreply` in a numeric position, so this matches what the server does with it.)
    fn noreply(&self) -> bool {
        self.len > 0 && self.get(self.len - 1) == b"noreply"
    }
}

fn parse_retrieval(
    command: Command,
    buf: &[u8],
    line: Line,
    mut tokens: Tokens<'_>,
    keys: &mut Vec<Range<usize>>,
) -> Parse {
    let exptime = if matches!(command, Command::Gat | Command::Gats) {
        let Some(token) = tokens.next() else {
            return line_error(ERROR_REPLY, line.next);
        };
        if parse_exptime(buf.get(token.clone()).unwrap_or_default()).is_none() {
            return line_error(BAD_EXPTIME_REPLY, line.next);
        }
        Some(token)
    } else {
        None
    };
    for key in tokens {
        if !is_valid_key(buf.get(key.clone()).unwrap_or_default()) {
            keys.clear();
            return line_error(BAD_KEY_REPLY, line.next);
        }
        keys.push(key);
    }
    if keys.is_empty() {
        // memcached answers a key-less gat with END, but a request without a key cannot be
        // routed, and no client sends one.
        return line_error(ERROR_REPLY, line.next);
    }
    Parse::Request(Request { command, len: line.next, noreply: false, exptime, line_len: line.next, meta: None })
}

/// `<command> <key> <flags> <exptime> <bytes> [<cas unique>] [noreply]\r\n<data>\r\n`
fn parse_storage(
    command: Command,
    buf: &[u8],
    line: Line,
    args: &Args<'_>,
    keys: &mut Vec<Range<usize>>,
    max_value: usize,
) -> Parse {
    let required = if command == Command::Cas { 5 } else { 4 };
    let data_block = data_block_end(line, args.get(3));
    if args.len > required + 1 {
        // memcached answers ERROR and then reads the value as commands; the value is dropped here instead,
        // when its length can be read.
        return match data_block {
            Some((_, total)) => discard_through(buf, total, ERROR_REPLY),
            None => line_error(ERROR_REPLY, line.next),
        };
    }
    if args.len < required {
        return line_error(ERROR_REPLY, line.next);
    }
    let noreply = args.noreply();
    let quiet = |reply| if noreply { "" } else { reply };
    let Some((bytes, total)) = data_block else {
        return line_error(quiet(BAD_FORMAT_REPLY), line.next);
    };
    let available = total.min(buf.len());
    let discard = |reply| discard_through(buf, total, reply);
    if !is_valid_key(args.get(0)) {
        return discard(quiet(BAD_KEY_REPLY));
    }
    let flags_ok = parse_unsigned(args.get(1)).is_some_and(|f| u32::try_from(f).is_ok());
    let exptime_ok = parse_exptime(args.get(2)).is_some();
    let cas_ok = command != Command::Cas || parse_unsigned(args.get(4)).is_some();
    if !(flags_ok && exptime_ok && cas_ok) {
        return discard(quiet(BAD_FORMAT_REPLY));
    }
    if bytes > max_value {
        return if noreply { discard("") } else { Parse::TooLarge { consumed: available, skip: total - available } };
    }
    let Some(terminator) = buf.get(total - 2..total) else {
        return Parse::Incomplete;
    };
    if terminator != b"\r\n" {
        return discard(quiet(BAD_DATA_CHUNK_REPLY));
    }
    keys.push(args.range(0));
    Parse::Request(Request { command, len: total, noreply, exptime: None, line_len: line.next, meta: None })
}

/// `incr|decr <key> <delta> [noreply]`
fn parse_arithmetic(command: Command, line: Line, args: &Args<'_>, keys: &mut Vec<Range<usize>>) -> Parse {
    parse_key_and_number(command, line, args, keys, |a| parse_unsigned(a).is_some(), BAD_DELTA_REPLY)
}

/// `delete <key> [0] [noreply]`: the legacy hold time is accepted only as `0`.
fn parse_delete(line: Line, args: &Args<'_>, keys: &mut Vec<Range<usize>>) -> Parse {
    let noreply = args.len >= 2 && args.get(args.len - 1) == b"noreply";
    let well_formed = match args.len {
        1 => true,
        2 => args.get(1) == b"0" || noreply,
        3 => args.get(1) == b"0" && noreply,
        _ => return line_error(ERROR_REPLY, line.next),
    };
    let quiet = |reply| if noreply { "" } else { reply };
    if !well_formed {
        return line_error(quiet(DELETE_USAGE_REPLY), line.next);
    }
    if !is_valid_key(args.get(0)) {
        return line_error(quiet(BAD_KEY_REPLY), line.next);
    }
    keyed_request(Command::Delete, line, noreply, args, keys)
}

/// `touch <key> <exptime> [noreply]`
fn parse_touch(line: Line, args: &Args<'_>, keys: &mut Vec<Range<usize>>) -> Parse {
    parse_key_and_number(Command::Touch, line, args, keys, |a| parse_exptime(a).is_some(), BAD_EXPTIME_REPLY)
}

/// `<command> <key> <number> [noreply]`, the shape incr, decr and touch share; `number_ok` checks the number and
/// `bad_number` is the reply when it fails.
fn parse_key_and_number(
    command: Command,
    line: Line,
    args: &Args<'_>,
    keys: &mut Vec<Range<usize>>,
    number_ok: impl Fn(&[u8]) -> bool,
    bad_number: &'static str,
) -> Parse {
    if !(2..=3).contains(&args.len) {
        return line_error(ERROR_REPLY, line.next);
    }
    let noreply = args.noreply();
    let quiet = |reply| if noreply { "" } else { reply };
    if !is_valid_key(args.get(0)) {
        return line_error(quiet(BAD_KEY_REPLY), line.next);
    }
    if !number_ok(args.get(1)) {
        return line_error(quiet(bad_number), line.next);
    }
    keyed_request(command, line, noreply, args, keys)
}

/// `flush_all [delay] [noreply]`
fn parse_flush_all(line: Line, args: &Args<'_>) -> Parse {
    if args.len > 2 {
        return line_error(ERROR_REPLY, line.next);
    }
    let noreply = args.noreply();
    let has_delay = args.len > usize::from(noreply);
    if has_delay && parse_exptime(args.get(0)).is_none() {
        let reply = if noreply { "" } else { BAD_EXPTIME_REPLY };
        return line_error(reply, line.next);
    }
    simple_request(Command::FlushAll, line.next, noreply)
}

/// `verbosity <level> [noreply]`
fn parse_verbosity(line: Line, args: &Args<'_>) -> Parse {
    if !(1..=2).contains(&args.len) {
        return line_error(ERROR_REPLY, line.next);
    }
    let noreply = args.noreply();
    if parse_unsigned(args.get(0)).is_none() {
        let reply = if noreply { "" } else { BAD_FORMAT_REPLY };
        return line_error(reply, line.next);
    }
    simple_request(Command::Verbosity, line.next, noreply)
}

/// The length of the data block announced by `bytes` after `line`, and where the block (with its `\r\n`)
/// ends; None when `bytes` is not a length memcached reads.
pub(super) fn data_block_end(line: Line, bytes: &[u8]) -> Option<(usize, usize)> {
    let bytes = usize::try_from(parse_unsigned(bytes).filter(|&n| n <= MAX_DATA_LEN)?).ok()?;
    Some((bytes, line.next.checked_add(bytes)?.checked_add(2)?))
}

/// Answers `reply` and discards everything up to `total`: what is in `buf` now, the rest as it arrives.
pub(super) fn discard_through(buf: &[u8], total: usize, reply: &'static str) -> Parse {
    let available = total.min(buf.len());
    Parse::Error { reply, consumed: available, skip: total - available }
}

/// A binary-protocol request: its header is needed to answer in kind (clients match responses by opaque).
fn binary_request(buf: &[u8]) -> Parse {
    let Some(header) = buf.get(..BINARY_HEADER_LEN) else {
        return Parse::Incomplete;
    };
    Parse::Binary { opcode: header[1], opaque: [header[12], header[13], header[14], header[15]] }
}

/// Appends the binary protocol's error response to a request of `opcode` and `opaque`: status 0x0083
/// (not supported) with [`BINARY_PROTOCOL_MESSAGE`] as its body, so a binary client (memjs, a libmemcached
/// in binary mode) fails with that message instead of waiting for a reply it can read.
pub fn write_binary_refusal(out: &mut Vec<u8>, opcode: u8, opaque: [u8; 4]) {
    let body = BINARY_PROTOCOL_MESSAGE.as_bytes();
    out.push(BINARY_RESPONSE_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&[0, 0]); // key length
    out.push(0); // extras length
    out.push(0); // data type
    out.extend_from_slice(&BINARY_STATUS_NOT_SUPPORTED.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&opaque);
    out.extend_from_slice(&[0; 8]); // cas
    out.extend_from_slice(body);
}

fn keyed_request(command: Command, line: Line, noreply: bool, args: &Args<'_>, keys: &mut Vec<Range<usize>>) -> Parse {
    keys.push(args.range(0));
    simple_request(command, line.next, noreply)
}

fn simple_request(command: Command, line_len: usize, noreply: bool) -> Parse {
    Parse::Request(Request { command, len: line_len, noreply, exptime: None, line_len, meta: None })
}

pub(super) fn line_error(reply: &'static str, line_len: usize) -> Parse {
    Parse::Error { reply, consumed: line_len, skip: 0 }
}
