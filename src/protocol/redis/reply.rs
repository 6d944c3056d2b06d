//! Framing backend replies: finding where one reply ends so it can be handed back unparsed.
//!
//! Nesting is tracked with a single counter of replies still to frame (an array of N replaces one pending
//! reply by N), so arbitrarily deep arrays need no stack and the resumable state is two integers.

use std::ops::Range;

use super::decimal::{parse_decimal_line, Decimal};
use super::{printable_byte, ProtocolError, MAX_BULK_LEN};

/// Length of the one complete reply at the start of `buf`: `Ok(Some(len))`, `Ok(None)` when incomplete,
/// `Err` when malformed. Understands RESP2 and every RESP3 type: null `_`, boolean `#`, double `,`, big
/// number `(`, blob error `!`, verbatim string `=`, map `%`, set `~`, push `>` and attribute `|`. An
/// attribute is framed together with the reply it annotates, as one unit; a push is a unit of its own (see
/// [`is_push_reply`]). Streamed RESP3 strings and aggregates (`$?`, `*?`, `;`, `.`) are refused: redis never
/// sends them, and supporting them would need a stack in the resumable state. Each call costs O(headers),
/// never O(bytes), since bulk bodies are jumped over; use [`ReplyParser`] to also resume inside a reply with
/// very many elements.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    ReplyParser::new().parse(buf)
}

/// A reply framer that remembers how far it got, so a huge reply arriving in many reads is framed once.
///
/// Contract between calls that return `Ok(None)`: `buf` must start at the same reply and only grow at its
/// end. After `Ok(Some(_))` or `Err(_)` the parser is ready for the next reply.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    /// Start of the next header to read.
    pos: usize,
    /// Replies still to frame, counting the elements of every open aggregate.
    pending: u64,
    /// For a simple line whose end has not arrived: how far it is known to hold no `\r`.
    line_scanned: usize,
    needed: usize,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new()
    }
}

/// What one header told us.
enum Header {
    /// This reply's header (and body, for bulks) ends at `end`; `children` replies follow as its elements.
    Framed { end: usize, children: u64 },
    /// Nothing more can be done until the buffer holds `needed` bytes.
    Wait { needed: usize },
}

impl ReplyParser {
    pub fn new() -> Self {
        ReplyParser { pos: 0, pending: 1, line_scanned: 0, needed: 0 }
    }

    /// Frames the reply at the start of `buf`, continuing the previous attempt; see [`reply_len`].
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let outcome = self.advance(buf);
        if !matches!(outcome, Ok(None)) {
            self.reset();
        }
        outcome
    }

    /// After `Ok(None)`: the buffer length below which another attempt cannot make progress (the end of
    /// the bulk body being received, or one byte more than was seen).
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Forgets a partly framed reply, e.g. when the backend connection is reset.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        while self.pending > 0 {
            match self.read_header(buf)? {
                Header::Wait { needed } => {
                    self.needed = needed;
                    return Ok(None);
                }
                Header::Framed { end, children } => {
                    self.pos = end;
                    self.line_scanned = 0;
                    self.pending = (self.pending - 1)
                        .checked_add(children)
                        .ok_or_else(|| ProtocolError::new("reply has too many elements"))?;
                }
            }
        }
        Ok(Some(self.pos))
    }

    fn read_header(&mut self, buf: &[u8]) -> Result<Header, ProtocolError> {
        let pos = self.pos;
        let Some(&kind) = buf.get(pos) else {
            return Ok(Header::Wait { needed: pos + 1 });
        };
        match kind {
            // Simple string, error, RESP3 double and big number: one line of text.
            b'+' | b'-' | b',' | b'(' => self.read_text_line(buf),
            b':' => match parse_decimal_line(buf, pos + 1) {
                Decimal::Value { end, .. } => Ok(leaf(end)),
                Decimal::Incomplete => Ok(wait_for_more(buf)),
                Decimal::Invalid => Err(ProtocolError::new("invalid integer reply")),
            },
            b'_' => fixed_line(buf, pos, b"_\r\n", "invalid RESP3 null"),
            b'#' => match buf.get(pos + 1) {
                Some(b't') => fixed_line(buf, pos, b"#t\r\n", "invalid RESP3 boolean"),
                _ => fixed_line(buf, pos, b"#f\r\n", "invalid RESP3 boolean"),
            },
            // Bulk string, RESP3 blob error and verbatim string: length, body, CRLF.
            b'$' | b'!' | b'=' => match parse_decimal_line(buf, pos + 1) {
                Decimal::Value { value: -1, end } if kind == b'$' => Ok(leaf(end)),
                Decimal::Value { value, end } => {
                    let len = usize::try_from(value)
                        .ok()
                        .filter(|&len| len <= MAX_BULK_LEN)
                        .ok_or_else(|| ProtocolError::new("invalid bulk length"))?;
                    let body_end = end + len;
                    match buf.get(body_end..body_end + 2) {
                        None => Ok(Header::Wait { needed: body_end + 2 }),
                        Some(b"\r\n") => Ok(leaf(body_end + 2)),
                        Some(_) => Err(ProtocolError::new("expected CRLF after bulk data")),
                    }
                }
                Decimal::Incomplete => Ok(wait_for_more(buf)),
                Decimal::Invalid if buf.get(pos + 1) == Some(&b'?') => Err(streamed()),
                Decimal::Invalid => Err(ProtocolError::new("invalid bulk length")),
            },
            // Array, RESP3 set, push, map (pairs) and attribute (pairs, then the reply it annotates).
            b'*' | b'~' | b'>' | b'%' | b'|' => match parse_decimal_line(buf, pos + 1) {
                Decimal::Value { value: -1, end } if kind == b'*' => Ok(leaf(end)),
                Decimal::Value { value, end } => {
                    let count = u64::try_from(value).map_err(|_| ProtocolError::new("invalid multibulk length"))?;
                    let children = match kind {
                        b'%' => count * 2,
                        b'|' => count * 2 + 1,
                        _ => count,
                    };
                    Ok(Header::Framed { end, children })
                }
                Decimal::Incomplete => Ok(wait_for_more(buf)),
                Decimal::Invalid if buf.get(pos + 1) == Some(&b'?') => Err(streamed()),
                Decimal::Invalid => Err(ProtocolError::new("invalid multibulk length")),
            },
            other => Err(ProtocolError::new(format!("invalid reply type byte '{}'", printable_byte(other)))),
        }
    }

    /// Frames `<type>text\r\n`, remembering how far it looked so a long line is scanned once.
    fn read_text_line(&mut self, buf: &[u8]) -> Result<Header, ProtocolError> {
        let from = self.line_scanned.max(self.pos + 1);
        let unseen = buf.get(from..).unwrap_or_default();
        let Some(offset) = unseen.iter().position(|&b| b == b'\r') else {
            self.line_scanned = buf.len().max(from);
            return Ok(wait_for_more(buf));
        };
        let cr = from + offset;
        match buf.get(cr + 1) {
            Some(b'\n') => Ok(leaf(cr + 2)),
            Some(_) => Err(ProtocolError::new("expected '\\n' after '\\r' in reply line")),
            None => {
                self.line_scanned = cr;
                Ok(Header::Wait { needed: cr + 2 })
            }
        }
    }
}

fn streamed() -> ProtocolError {
    ProtocolError::new("streamed RESP3 replies are not supported")
}

fn leaf(end: usize) -> Header {
    Header::Framed { end, children: 0 }
}

fn wait_for_more(buf: &[u8]) -> Header {
    Header::Wait { needed: buf.len() + 1 }
}

/// Frames a reply that must be exactly `expected` (e.g. `_\r\n`).
fn fixed_line(buf: &[u8], pos: usize, expected: &[u8], error: &str) -> Result<Header, ProtocolError> {
    let available = buf.get(pos..).unwrap_or_default();
    let compared = available.len().min(expected.len());
    if available[..compared] != expected[..compared] {
        return Err(ProtocolError::new(error));
    }
    if compared < expected.len() {
        return Ok(wait_for_more(buf));
    }
    Ok(leaf(pos + expected.len()))
}

/// Whether a reply is an error (`-ERR ...`, or a RESP3 blob error), e.g. to count backend errors.
pub fn is_error_reply(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-' | b'!'))
}

/// Whether a framed reply is a RESP3 push (`>`): out-of-band data (pub/sub messages, client-tracking
/// invalidations) that answers no request, so it must never complete a waiting request in FIFO order.
pub fn is_push_reply(reply: &[u8]) -> bool {
    reply.first() == Some(&b'>')
}

/// The value of an integer reply: `":123\r\n"` gives `Some(123)`; anything else `None`. Used to sum the
/// per-server replies of a split DEL/UNLINK/TOUCH/EXISTS.
pub fn parse_integer_reply(reply: &[u8]) -> Option<i64> {
    if reply.first() != Some(&b':') {
        return None;
    }
    match parse_decimal_line(reply, 1) {
        Decimal::Value { value, .. } => Some(value),
        _ => None,
    }
}

/// Fills `out` (cleared first) with the byte range, within `reply`, of each element of the complete array
/// reply `reply` (`*N\r\n<elem>...`). Returns false, with `out` empty, for anything else, including a null
/// array, a RESP3 aggregate or an incomplete or malformed array. Used to reassemble a split MGET.
pub fn array_elements(reply: &[u8], out: &mut Vec<Range<usize>>) -> bool {
    out.clear();
    if reply.first() != Some(&b'*') {
        return false;
    }
    let (count, mut pos) = match parse_decimal_line(reply, 1) {
        Decimal::Value { value, end } if value >= 0 => (value, end),
        _ => return false,
    };
    for _ in 0..count {
        let element = reply.get(pos..).unwrap_or_default();
        match reply_len(element) {
            Ok(Some(len)) => {
                out.push(pos..pos + len);
                pos += len;
            }
            _ => {
                out.clear();
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One sample of every reply type, nested ones included.
    const SAMPLES: &[&[u8]] = &[
        b"+OK\r\n",
        b"+\r\n",
        b"-ERR unknown command 'x'\r\n",
        b":0\r\n",
        b":-42\r\n",
        b"$5\r\nhello\r\n",
        b"$0\r\n\r\n",
        b"$4\r\na\r\nb\r\n",
        b"$-1\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n",
        b"*2\r\n*2\r\n+a\r\n*1\r\n*0\r\n*-1\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        b"_\r\n",
        b"#t\r\n",
        b"#f\r\n",
        b",3.14\r\n",
        b",inf\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n*1\r\n:2\r\n",
        b"~2\r\n+a\r\n+b\r\n",
        b">3\r\n+message\r\n+chan\r\n$2\r\nhi\r\n",
        b"|1\r\n+ttl\r\n:3600\r\n*2\r\n:1\r\n:2\r\n",
        // What redis 7.0 sends in RESP3 for `DEBUG PROTOCOL <type>` (the push is its own unit there).
        b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$39\r\nSome real reply following the attribute\r\n",
        b"(1234567999999999999999999999999999999\r\n",
        b"=29\r\ntxt:This is a verbatim\nstring\r\n",
        b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n",
        b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n",
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
        // Attributes inside aggregates, on attributes, and empty ones; every RESP3 aggregate nested.
        b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n",
        b"|1\r\n+a\r\n|0\r\n_\r\n#t\r\n",
        b"|0\r\n$-1\r\n",
        b"%1\r\n~1\r\n,-1.5e-3\r\n>1\r\n%0\r\n",
        b"~0\r\n",
        b">0\r\n",
        b"%0\r\n",
        b"!0\r\n\r\n",
        b",-inf\r\n",
        b",nan\r\n",
        b"(-1\r\n",
    ];

    #[test]
    fn frames_every_reply_type_at_every_split_point() {
        for sample in SAMPLES {
            let shown = sample.escape_ascii().to_string();
            let mut with_next = sample.to_vec();
            with_next.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(reply_len(&with_next).unwrap(), Some(sample.len()), "{shown}");
            let mut parser = ReplyParser::new();
            for cut in 0..sample.len() {
                assert_eq!(reply_len(&sample[..cut]).unwrap(), None, "{shown} cut at {cut}");
                assert_eq!(parser.parse(&sample[..cut]).unwrap(), None, "{shown} cut at {cut}");
                assert!(parser.needed() > cut);
            }
            assert_eq!(parser.parse(sample).unwrap(), Some(sample.len()), "{shown}");
        }
    }

    #[test]
    fn rejects_malformed_replies() {
        for (bad, message) in [
            (&b"?\r\n"[..], "invalid reply type byte '?'"),
            (b"\r\n", "invalid reply type byte '\\x0d'"),
            (b":x\r\n", "invalid integer reply"),
            (b":1\r\r", "invalid integer reply"),
            (b"$-2\r\n", "invalid bulk length"),
            (b"!-1\r\n", "invalid bulk length"),
            (b"$x\r\n", "invalid bulk length"),
            (b"$?\r\n", "streamed RESP3 replies are not supported"),
            (b"$?x", "streamed RESP3 replies are not supported"),
            (b"=?\r\n", "streamed RESP3 replies are not supported"),
            (b";4\r\nabcd\r\n", "invalid reply type byte ';'"),
            (b".\r\n", "invalid reply type byte '.'"),
            (b"%?\r\n", "streamed RESP3 replies are not supported"),
            (b"~?\r\n", "streamed RESP3 replies are not supported"),
            (b"%-1\r\n", "invalid multibulk length"),
            (b"|-1\r\n", "invalid multibulk length"),
            (b">-1\r\n", "invalid multibulk length"),
            (b"=-1\r\n", "invalid bulk length"),
            (b"_\r\r", "invalid RESP3 null"),
            (b"#T\r\n", "invalid RESP3 boolean"),
            (b"$536870913\r\n", "invalid bulk length"),
            (b"$3\r\nabcd\r\n", "expected CRLF after bulk data"),
            (b"*-2\r\n", "invalid multibulk length"),
            (b"~-1\r\n", "invalid multibulk length"),
            (b"*?\r\n", "streamed RESP3 replies are not supported"),
            (b"*2\r\n:1\r\n?", "invalid reply type byte '?'"),
            (b"+OK\rX", "expected '\\n' after '\\r' in reply line"),
            (b"_x", "invalid RESP3 null"),
            (b"#x\r\n", "invalid RESP3 boolean"),
            (b"#t\n", "invalid RESP3 boolean"),
        ] {
            let err = reply_len(bad).unwrap_err();
            assert_eq!(err.0, message, "{:?}", bad.escape_ascii().to_string());
        }
    }

    #[test]
    fn resumes_a_wide_array_without_starting_over() {
        let count = 10_000;
        let mut reply = format!("*{count}\r\n").into_bytes();
        for i in 0..count {
            reply.extend_from_slice(format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes());
        }
        let mut parser = ReplyParser::new();
        let mut end = 0;
        let framed = loop {
            end = (end + 1000).min(reply.len());
            if let Some(len) = parser.parse(&reply[..end]).unwrap() {
                break len;
            }
        };
        assert_eq!(framed, reply.len());
    }

    #[test]
    fn needed_points_past_a_large_bulk_body() {
        let mut parser = ReplyParser::new();
        assert_eq!(parser.parse(b"*2\r\n$1000000\r\nab").unwrap(), None);
        assert_eq!(parser.needed(), 14 + 1_000_000 + 2);
    }

    #[test]
    fn long_simple_line_is_scanned_once() {
        let mut parser = ReplyParser::new();
        let mut line = b"-ERR ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 5000));
        assert_eq!(parser.parse(&line).unwrap(), None);
        line.push(b'\r');
        assert_eq!(parser.parse(&line).unwrap(), None);
        assert_eq!(parser.needed(), line.len() + 1);
        line.push(b'\n');
        assert_eq!(parser.parse(&line).unwrap(), Some(line.len()));
    }

    #[test]
    fn error_and_integer_replies() {
        assert!(is_push_reply(b">1\r\n+x\r\n"));
        assert!(!is_push_reply(b"*1\r\n+x\r\n"));
        assert!(!is_push_reply(b""));
        assert!(is_error_reply(b"-ERR x\r\n"));
        assert!(is_error_reply(b"!3\r\nERR\r\n"));
        assert!(!is_error_reply(b"+OK\r\n"));
        assert!(!is_error_reply(b""));
        assert_eq!(parse_integer_reply(b":123\r\n"), Some(123));
        assert_eq!(parse_integer_reply(b":-5\r\n"), Some(-5));
        assert_eq!(parse_integer_reply(b":12"), None);
        assert_eq!(parse_integer_reply(b"+12\r\n"), None);
        assert_eq!(parse_integer_reply(b"-ERR\r\n"), None);
    }

    /// A random reply tree, encoded.
    fn arbitrary_reply() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            "[a-zA-Z ]{0,12}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
            "[a-zA-Z ]{0,12}".prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
            any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(|body| {
                let mut out = format!("${}\r\n", body.len()).into_bytes();
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n");
                out
            }),
            Just(b"$-1\r\n".to_vec()),
            Just(b"*-1\r\n".to_vec()),
        ];
        leaf.prop_recursive(4, 48, 6, |element| {
            prop::collection::vec(element, 0..6).prop_map(|elements| {
                let mut out = format!("*{}\r\n", elements.len()).into_bytes();
                elements.iter().for_each(|e| out.extend_from_slice(e));
                out
            })
        })
    }

    /// A bulk-like RESP3 value: `<kind><len>\r\n<body>\r\n`.
    fn length_prefixed(kind: char, body: &[u8]) -> Vec<u8> {
        let mut out = format!("{kind}{}\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// A random RESP3 reply tree (RESP2 types included), encoded: every leaf type, and arrays, sets,
    /// pushes, maps and attributes (an attribute map followed by the value it annotates) nested in any order.
    fn arbitrary_resp3_reply() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            arbitrary_reply(),
            Just(b"_\r\n".to_vec()),
            any::<bool>().prop_map(|b| if b { b"#t\r\n".to_vec() } else { b"#f\r\n".to_vec() }),
            any::<f64>().prop_map(|d| format!(",{d:e}\r\n").into_bytes()),
            "-?[0-9]{1,60}".prop_map(|n| format!("({n}\r\n").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(|body| length_prefixed('!', &body)),
            (prop_oneof![Just("txt"), Just("mkd")], prop::collection::vec(any::<u8>(), 0..24)).prop_map(
                |(format, text)| {
                    let mut body = format!("{format}:").into_bytes();
                    body.extend_from_slice(&text);
                    length_prefixed('=', &body)
                }
            ),
        ];
        leaf.prop_recursive(4, 64, 6, |element| {
            let elements = prop::collection::vec(element.clone(), 0..6);
            let pairs = prop::collection::vec((element.clone(), element.clone()), 0..4);
            prop_oneof![
                (prop_oneof![Just('*'), Just('~'), Just('>')], elements).prop_map(|(kind, elements)| {
                    let mut out = format!("{kind}{}\r\n", elements.len()).into_bytes();
                    elements.iter().for_each(|e| out.extend_from_slice(e));
                    out
                }),
                (prop_oneof![Just('%'), Just('|')], pairs, element).prop_map(|(kind, pairs, annotated)| {
                    let mut out = format!("{kind}{}\r\n", pairs.len()).into_bytes();
                    for (key, value) in &pairs {
                        out.extend_from_slice(key);
                        out.extend_from_slice(value);
                    }
                    if kind == '|' {
                        out.extend_from_slice(&annotated);
                    }
                    out
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_replies_in_random_chunks_frame_back(
            replies in prop::collection::vec(arbitrary_reply(), 1..5),
            chunk_len in 1usize..40,
        ) {
            let stream = replies.concat();
            let mut parser = ReplyParser::new();
            let mut buffer = Vec::new();
            let mut framed = Vec::new();
            for chunk in stream.chunks(chunk_len) {
                buffer.extend_from_slice(chunk);
                while let Some(len) = parser.parse(&buffer).unwrap() {
                    prop_assert_eq!(reply_len(&buffer).unwrap(), Some(len));
                    framed.push(buffer.drain(..len).collect::<Vec<u8>>());
                }
            }
            prop_assert!(buffer.is_empty());
            prop_assert_eq!(framed, replies);
        }

        #[test]
        fn random_resp3_replies_frame_to_their_exact_length(
            replies in prop::collection::vec(arbitrary_resp3_reply(), 1..5),
            chunk_len in 1usize..40,
        ) {
            for reply in &replies {
                prop_assert_eq!(reply_len(reply).unwrap(), Some(reply.len()));
                prop_assert_eq!(reply_len(&reply[..reply.len() - 1]).unwrap(), None);
            }
            let stream = replies.concat();
            let mut parser = ReplyParser::new();
            let mut buffer = Vec::new();
            let mut framed = Vec::new();
            for chunk in stream.chunks(chunk_len) {
                buffer.extend_from_slice(chunk);
                while let Some(len) = parser.parse(&buffer).unwrap() {
                    prop_assert_eq!(reply_len(&buffer).unwrap(), Some(len));
                    framed.push(buffer.drain(..len).collect::<Vec<u8>>());
                }
            }
            prop_assert!(buffer.is_empty());
            prop_assert_eq!(framed, replies);
        }

        #[test]
        fn resumed_resp3_framing_agrees_with_reply_len_in_any_chunking(
            pieces in prop::collection::vec(prop_oneof![3 => arbitrary_resp3_reply(), 1 => reply_or_noise()], 1..12),
            points in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let stream = pieces.concat();
            let mut cuts: Vec<usize> = points.iter().map(|p| p % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(stream.len());
            check_resumed_framing(&stream, &cuts)?;
        }

        #[test]
        fn resumed_framing_agrees_with_reply_len_in_any_chunking(
            pieces in prop::collection::vec(reply_or_noise(), 1..12),
            points in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let stream = pieces.concat();
            let mut cuts: Vec<usize> = points.iter().map(|p| p % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(stream.len());
            check_resumed_framing(&stream, &cuts)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some(len)) = reply_len(&bytes) {
                prop_assert!(len <= bytes.len());
            }
            let mut out = Vec::new();
            if array_elements(&bytes, &mut out) {
                prop_assert!(out.iter().all(|r| r.end <= bytes.len()));
            }
            let _ = parse_integer_reply(&bytes);
        }
    }

    /// A valid reply, or bytes that brush against the framer's rules.
    fn reply_or_noise() -> impl Strategy<Value = Vec<u8>> {
        const NOISE: [&[u8]; 21] = [
            b"*", b"$", b"+", b":", b"%", b"|", b"2", b"-1", b"3\r\n", b"\r", b"\r\n", b"x", b"#t\r\n", b"_", b"~",
            b">", b"=", b"!", b",", b"(", b"?",
        ];
        prop_oneof![
            3 => arbitrary_reply(),
            2 => proptest::sample::select(&NOISE[..]).prop_map(<[u8]>::to_vec),
            1 => prop::collection::vec(any::<u8>(), 0..4),
        ]
    }

    /// Frames `stream`, delivered in reads ending at `cuts`, the way a backend connection does: one
    /// parser resumed across reads and not asked while it needs more than has arrived. Each answer must
    /// be what [`reply_len`] says of the whole buffered reply, and `needed` must never hide a reply.
    fn check_resumed_framing(stream: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
        let mut parser = ReplyParser::new();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.max(start);
            loop {
                let buf = &stream[start..cut];
                let expected = reply_len(buf).map_err(|e| e.0);
                if buf.len() < parser.needed() {
                    prop_assert_eq!(expected, Ok(None), "needed {} hid a reply", parser.needed());
                    break;
                }
                let framed = parser.parse(buf).map_err(|e| e.0);
                prop_assert_eq!(&framed, &expected, "reply at {}", start);
                match framed {
                    Ok(Some(len)) => start += len,
                    Ok(None) => {
                        prop_assert!(parser.needed() > buf.len());
                        break;
                    }
                    Err(_) => return Ok(()),
                }
            }
        }
        Ok(())
    }

    #[test]
    fn resumed_framing_agrees_with_reply_len_at_every_split_point() {
        let mut stream: Vec<u8> = SAMPLES.concat();
        stream.extend_from_slice(b"*2\r\n$3\r\nabc\r\n:1\r?");
        for at in 0..=stream.len() {
            check_resumed_framing(&stream, &[at, stream.len()]).unwrap_or_else(|e| panic!("split at {at}: {e}"));
        }
        let every_byte: Vec<usize> = (0..=stream.len()).collect();
        check_resumed_framing(&stream, &every_byte).unwrap();
    }

    #[test]
    fn splits_an_array_into_elements() {
        let reply = b"*4\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n:1\r\n:2\r\n-ERR x\r\n";
        let mut out = vec![Range { start: 0, end: 1 }]; // stale content is cleared
        assert!(array_elements(reply, &mut out));
        let elements: Vec<&[u8]> = out.iter().map(|r| &reply[r.clone()]).collect();
        assert_eq!(elements, [&b"$3\r\nfoo\r\n"[..], b"$-1\r\n", b"*2\r\n:1\r\n:2\r\n", b"-ERR x\r\n"]);
        assert!(array_elements(b"*0\r\n", &mut out) && out.is_empty());
        for not_array in [&b"*-1\r\n"[..], b"$3\r\nfoo\r\n", b"*2\r\n:1\r\n", b"~1\r\n:1\r\n", b""] {
            assert!(!array_elements(not_array, &mut out));
            assert!(out.is_empty());
        }
    }
}
