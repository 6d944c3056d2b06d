//! Framing client requests: multibulk (`*N\r\n$len\r\narg\r\n...`) and inline (`GET key\r\n`).

use std::ops::Range;

use super::decimal::{parse_decimal_line, Decimal};
use super::inline::split_inline;
use super::{printable_byte, ProtocolError, MAX_ARGS, MAX_BULK_LEN, MAX_INLINE_LEN};

/// Parses one request at the start of `buf`.
///
/// Fills `args` (cleared first) with the byte range of each argument within `buf` and returns
/// `Ok(Some(consumed))` once the whole request is present, `Ok(None)` when more bytes are needed and
/// `Err` when the stream is malformed (the connection must then be closed after the error reply).
/// Empty inline lines and `*0`/`*-1` headers are consumed with `args` left empty, as redis skips them.
///
/// Each call starts over but jumps over bulk bodies, so it costs O(arguments), never O(bytes): a 100MB
/// value arriving in 64KB reads is cheap. Use [`RequestParser`] to also resume mid-request, which keeps a
/// request with a million small arguments linear.
pub fn parse_request(buf: &[u8], args: &mut Vec<Range<usize>>) -> Result<Option<usize>, ProtocolError> {
    RequestParser::new().parse(buf, args)
}

/// A request parser that remembers how far it got, so a request arriving in many reads is parsed once.
///
/// Contract between calls that return `Ok(None)`: `buf` must start at the same request and only grow at
/// its end, and `args` must be left as the parser filled it. After `Ok(Some(_))` or `Err(_)` the parser
/// is ready for the next request. Breaking the contract yields wrong framing, never a panic.
#[derive(Debug, Clone, Default)]
pub struct RequestParser {
    state: State,
    needed: usize,
}

#[derive(Debug, Clone, Copy, Default)]
enum State {
    /// Nothing of the current request has been parsed.
    #[default]
    Start,
    /// In a multibulk request: `remaining` arguments still to read, the next one's header at `pos`.
    Multibulk { remaining: usize, pos: usize },
    /// In an inline request: the first `scanned` bytes hold no newline.
    Inline { scanned: usize },
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the request at the start of `buf`, continuing the previous attempt; see [`parse_request`].
    pub fn parse(&mut self, buf: &[u8], args: &mut Vec<Range<usize>>) -> Result<Option<usize>, ProtocolError> {
        let outcome = self.advance(buf, args);
        if !matches!(outcome, Ok(None)) {
            self.reset();
        }
        outcome
    }

    /// After `Ok(None)`: the buffer length below which another attempt cannot make progress. While a bulk
    /// body is arriving this is the end of that body, so the caller can size its read buffer and skip
    /// calls; otherwise it is one more byte than was seen.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Forgets a partly parsed request, e.g. when the connection is reset.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn advance(&mut self, buf: &[u8], args: &mut Vec<Range<usize>>) -> Result<Option<usize>, ProtocolError> {
        loop {
            match self.state {
                State::Start => {
                    args.clear();
                    match buf.first() {
                        None => return Ok(self.wait(1)),
                        Some(b'*') => match parse_decimal_line(buf, 1) {
                            Decimal::Incomplete => return Ok(self.wait(buf.len() + 1)),
                            Decimal::Invalid => return Err(invalid_multibulk_length()),
                            Decimal::Value { value, end } if value <= 0 => return Ok(Some(end)),
                            Decimal::Value { value, end } => {
                                let remaining = usize::try_from(value)
                                    .ok()
                                    .filter(|&count| count <= MAX_ARGS)
                                    .ok_or_else(invalid_multibulk_length)?;
                                self.state = State::Multibulk { remaining, pos: end };
                            }
                        },
                        Some(_) => self.state = State::Inline { scanned: 0 },
                    }
                }
                State::Multibulk { remaining, pos } => return self.advance_multibulk(buf, args, remaining, pos),
                State::Inline { scanned } => return self.advance_inline(buf, args, scanned),
            }
        }
    }

    fn advance_multibulk(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        mut remaining: usize,
        mut pos: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        while remaining > 0 {
            self.state = State::Multibulk { remaining, pos };
            match buf.get(pos) {
                None => return Ok(self.wait(pos + 1)),
                Some(b'$') => {}
                Some(&other) => {
                    return Err(ProtocolError::new(format!("expected '$', got '{}'", printable_byte(other))))
                }
            }
            let (len, body_start) = match parse_decimal_line(buf, pos + 1) {
                Decimal::Incomplete => return Ok(self.wait(buf.len() + 1)),
                Decimal::Invalid => return Err(invalid_bulk_length()),
                Decimal::Value { value, end } => {
                    let len = usize::try_from(value)
                        .ok()
                        .filter(|&len| len <= MAX_BULK_LEN)
                        .ok_or_else(invalid_bulk_length)?;
                    (len, end)
                }
            };
            // Jump over the body without looking at it; only its terminator is checked.
            let body_end = body_start + len;
            match buf.get(body_end..body_end + 2) {
                None => return Ok(self.wait(body_end + 2)),
                Some(b"\r\n") => {}
                Some(_) => return Err(missing_bulk_terminator()),
            }
            args.push(body_start..body_end);
            pos = body_end + 2;
            remaining -= 1;
        }
        Ok(Some(pos))
    }

    fn advance_inline(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        scanned: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        let window = &buf[..buf.len().min(MAX_INLINE_LEN)];
        let unseen = window.get(scanned..).unwrap_or_default();
        match unseen.iter().position(|&b| b == b'\n' || b == 0) {
            Some(offset) => {
                let newline = scanned + offset;
                if window.get(newline) == Some(&0) {
                    // redis looks for the newline with strchr, so it never sees past a NUL and would
                    // wait forever: refuse the line instead of guessing how a backend reads it.
                    return Err(ProtocolError::new("invalid NUL byte in inline request"));
                }
                let line = &buf[..newline];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                split_inline(line, args)?;
                Ok(Some(newline + 1))
            }
            None if buf.len() >= MAX_INLINE_LEN => Err(ProtocolError::new("too big inline request")),
            None => {
                self.state = State::Inline { scanned: window.len() };
                Ok(self.wait(buf.len() + 1))
            }
        }
    }

    fn wait(&mut self, needed: usize) -> Option<usize> {
        self.needed = needed;
        None
    }
}

fn invalid_multibulk_length() -> ProtocolError {
    ProtocolError::new("invalid multibulk length")
}

fn invalid_bulk_length() -> ProtocolError {
    ProtocolError::new("invalid bulk length")
}

fn missing_bulk_terminator() -> ProtocolError {
    ProtocolError::new("expected CRLF after bulk data")
}

#[cfg(test)]
mod tests {
    use super::super::encode::write_command;
    use super::*;
    use proptest::prelude::*;

    /// A parsed request: bytes consumed and the arguments as owned byte strings.
    type Parsed = (usize, Vec<Vec<u8>>);

    fn parse_args(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
        let mut args = Vec::new();
        Ok(parse_request(buf, &mut args)?.map(|len| (len, args.iter().map(|r| buf[r.clone()].to_vec()).collect())))
    }

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn error_of(buf: &[u8]) -> String {
        match parse_args(buf) {
            Err(ProtocolError(message)) => message,
            other => panic!("{:?} parsed as {other:?}", buf.escape_ascii().to_string()),
        }
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let slices: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let mut out = Vec::new();
        write_command(&mut out, &slices);
        out
    }

    #[test]
    fn parses_a_multibulk_request() {
        let buf = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\nnext";
        let (len, args) = parse_args(buf).unwrap().unwrap();
        assert_eq!(len, buf.len() - 4);
        assert_eq!(args, vec![b"SET".to_vec(), b"key".to_vec(), b"va\r\nl".to_vec()]);
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let buf = encode(&words(&["MSET", "a", "", "bb", "x\r\ny"]));
        for cut in 0..buf.len() {
            assert_eq!(parse_args(&buf[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(parse_args(&buf).unwrap().unwrap().0, buf.len());
    }

    #[test]
    fn resumes_byte_by_byte() {
        let buf = encode(&words(&["SET", "key", "value"]));
        let mut parser = RequestParser::new();
        let mut args = Vec::new();
        for cut in 0..buf.len() {
            assert_eq!(parser.parse(&buf[..cut], &mut args).unwrap(), None);
            assert!(parser.needed() > cut);
        }
        assert_eq!(parser.parse(&buf, &mut args).unwrap(), Some(buf.len()));
        assert_eq!(args, vec![8..11, 17..20, 26..31]);
    }

    #[test]
    fn jumps_over_a_large_body_arriving_in_chunks() {
        let value = vec![b'v'; 3 * 1024 * 1024 + 7];
        let buf = encode(&[b"SET".to_vec(), b"k".to_vec(), value]);
        let mut parser = RequestParser::new();
        let mut args = Vec::new();
        let mut end = 0;
        let mut attempts = 0;
        loop {
            end = (end + 64 * 1024).min(buf.len());
            if end < parser.needed() {
                continue; // the caller can skip attempts until the body is complete
            }
            attempts += 1;
            if let Some(len) = parser.parse(&buf[..end], &mut args).unwrap() {
                assert_eq!(len, buf.len());
                break;
            }
        }
        assert_eq!(attempts, 2, "one attempt to learn the body length, one when it is complete");
        assert_eq!(args.len(), 3);
        assert_eq!(args[2].len(), 3 * 1024 * 1024 + 7);
    }

    #[test]
    fn skips_empty_multibulk_like_redis() {
        assert_eq!(parse_args(b"*0\r\nPING").unwrap(), Some((4, vec![])));
        assert_eq!(parse_args(b"*-1\r\n").unwrap(), Some((5, vec![])));
        assert_eq!(parse_args(b"*-5\r\n").unwrap(), Some((5, vec![])));
    }

    #[test]
    fn empty_bulk_argument() {
        let (_, args) = parse_args(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n").unwrap().unwrap();
        assert_eq!(args, words(&["GET", ""]));
    }

    #[test]
    fn malformed_multibulk_gives_redis_messages() {
        assert_eq!(error_of(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*+1\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*01\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"* 1\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*-0\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*1048577\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*99999999999999999999999"), "invalid multibulk length");
        assert_eq!(error_of(b"*1\r\nx\r\n"), "expected '$', got 'x'");
        assert_eq!(error_of(b"*1\r\n\r\n"), "expected '$', got '\\x0d'");
        assert_eq!(error_of(b"*1\r\n$-1\r\n"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$abc\r\n"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$+4\r\n"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$4 \r\n"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$\r\n"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$536870913\r\n"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$99999999999999999999"), "invalid bulk length");
        assert_eq!(error_of(b"*1\r\n$4\r\nPINGxx"), "expected CRLF after bulk data");
        assert_eq!(error_of(b"*1\r\n$4\r\nPING\r\r"), "expected CRLF after bulk data");
        assert_eq!(error_of(b"*1\n$4\nPING\n"), "invalid multibulk length");
    }

    #[test]
    fn maximum_bulk_length_is_accepted_and_waits_for_the_body() {
        let mut args = Vec::new();
        let mut parser = RequestParser::new();
        let header = b"*1\r\n$536870912\r\n";
        assert_eq!(parser.parse(header, &mut args).unwrap(), None);
        assert_eq!(parser.needed(), header.len() + MAX_BULK_LEN + 2);
    }

    #[test]
    fn inline_requests() {
        assert_eq!(parse_args(b"PING\r\n").unwrap(), Some((6, words(&["PING"]))));
        assert_eq!(parse_args(b"PING\nPING\n").unwrap(), Some((5, words(&["PING"]))));
        assert_eq!(parse_args(b"  SET\tkey  value \r\n").unwrap(), Some((19, words(&["SET", "key", "value"]))));
        assert_eq!(parse_args(b"\r\n").unwrap(), Some((2, vec![])));
        assert_eq!(parse_args(b"\n").unwrap(), Some((1, vec![])));
        assert_eq!(parse_args(b"   \r\n").unwrap(), Some((5, vec![])));
        assert_eq!(parse_args(b"GET key").unwrap(), None);
        assert_eq!(parse_args(b"GET key\r").unwrap(), None);
        assert_eq!(parse_args(b"SET \"a b\" 'c d'\r\n").unwrap(), Some((17, words(&["SET", "a b", "c d"]))));
    }

    #[test]
    fn inline_errors() {
        assert_eq!(error_of(b"GET \"key\r\n"), "unbalanced quotes in request");
        assert_eq!(error_of(b"GET a\0b\r\n"), "invalid NUL byte in inline request");
        assert_eq!(error_of(b"GET a\0"), "invalid NUL byte in inline request");
        let long = vec![b'x'; MAX_INLINE_LEN];
        assert_eq!(error_of(&long), "too big inline request");
        let mut just_fits = vec![b'x'; MAX_INLINE_LEN - 1];
        just_fits.push(b'\n');
        assert_eq!(parse_args(&just_fits).unwrap().unwrap().0, MAX_INLINE_LEN);
    }

    #[test]
    fn inline_resumes_without_rescanning() {
        let mut parser = RequestParser::new();
        let mut args = Vec::new();
        let line = b"SET key value\r\n";
        for cut in 0..line.len() {
            assert_eq!(parser.parse(&line[..cut], &mut args).unwrap(), None);
        }
        assert_eq!(parser.parse(line, &mut args).unwrap(), Some(line.len()));
        assert_eq!(args, vec![0..3, 4..7, 8..13]);
    }

    /// Splits a byte stream of requests exactly as a client session would: every complete request,
    /// whatever the read boundaries.
    fn parse_stream(chunks: &[&[u8]]) -> Vec<Vec<Vec<u8>>> {
        let mut parser = RequestParser::new();
        let mut buffer = Vec::new();
        let mut args = Vec::new();
        let mut requests = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some(len) = parser.parse(&buffer, &mut args).unwrap() {
                // the stateless function must agree with the resumable parser
                let mut fresh = Vec::new();
                assert_eq!(parse_request(&buffer, &mut fresh).unwrap(), Some(len));
                assert_eq!(fresh, args);
                if !args.is_empty() {
                    requests.push(args.iter().map(|r| buffer[r.clone()].to_vec()).collect());
                }
                buffer.drain(..len);
            }
        }
        assert!(buffer.is_empty(), "left over: {:?}", buffer.escape_ascii().to_string());
        requests
    }

    #[test]
    fn accepts_what_redis_cli_sends() {
        // Captured between redis-cli 7.0 and redis-server, including `--pipe` (inline + empty lines).
        let stream = include_bytes!("testdata/redis_cli.bin");
        let requests = parse_stream(&[stream]);
        assert_eq!(requests[0], words(&["set", "key with space", "v\\x00al"]));
        assert_eq!(requests[1], words(&["get", ""]));
        assert!(requests.contains(&words(&["SET", "x", "1"])));
        assert_eq!(requests.last().unwrap(), &words(&["incr", "cnt"]));
    }

    #[test]
    fn accepts_what_redis_benchmark_sends() {
        // Captured from redis-benchmark 7.0 -P 2: PING_INLINE, multibulk commands and a 10-key MSET.
        let stream = include_bytes!("testdata/redis_benchmark.bin");
        let requests = parse_stream(&[stream]);
        assert!(requests.contains(&words(&["PING"])));
        assert!(requests.iter().any(|r| r[0] == b"MSET" && r.len() == 21));
        let chunked: Vec<&[u8]> = stream.chunks(7).collect();
        assert_eq!(parse_stream(&chunked), requests);
    }

    proptest! {
        #[test]
        fn random_requests_in_random_chunks_parse_back(
            requests in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8),
                1..6,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut stream = Vec::new();
            for request in &requests {
                stream.extend_from_slice(&encode(request));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            prop_assert_eq!(parse_stream(&chunks), requests);
        }

        #[test]
        fn corrupted_requests_resume_exactly_like_a_fresh_parse(
            request in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..5),
            corrupt_at in any::<prop::sample::Index>(),
            corrupt_with in any::<u8>(),
            chunk_len in 1usize..9,
        ) {
            let mut bytes = encode(&request);
            let at = corrupt_at.index(bytes.len());
            bytes[at] = corrupt_with;
            let mut fresh_args = Vec::new();
            let fresh = parse_request(&bytes, &mut fresh_args);
            let mut parser = RequestParser::new();
            let mut args = Vec::new();
            let mut resumed = Ok(None);
            for end in (chunk_len..bytes.len()).step_by(chunk_len).chain([bytes.len()]) {
                resumed = parser.parse(&bytes[..end], &mut args);
                if !matches!(resumed, Ok(None)) {
                    break;
                }
            }
            match (&fresh, &resumed) {
                (Ok(Some(a)), Ok(Some(b))) => {
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(&fresh_args, &args);
                }
                (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "fresh {:?} but resumed {:?}", fresh, resumed),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut args = Vec::new();
            if let Ok(Some(len)) = parse_request(&bytes, &mut args) {
                prop_assert!(len <= bytes.len());
                prop_assert!(args.iter().all(|r| r.end <= len));
            }
        }
    }
}
