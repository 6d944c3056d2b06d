//! Client requests (multibulk and inline), framed as a client session frames them: one resumable
//! [`RequestParser`] fed the growing read buffer, not asked again while it needs more than has arrived.

use std::ops::Range;

use ferrule::protocol::redis::{parse_request, ProtocolError, RequestParser};

use super::{assert_one_line, Reads};

pub fn check(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut reads = Reads::new(seed);
    let mut parser = RequestParser::new();
    let (mut args, mut fresh) = (Vec::new(), Vec::new());
    let (mut start, mut end) = (0, 0);
    while end < stream.len() {
        end = reads.next_end(end, stream.len());
        loop {
            let buf = &stream[start..end];
            let expected = parse_request(buf, &mut fresh);
            if buf.len() < parser.needed() {
                assert_eq!(expected, Ok(None), "needed() = {} hid a request at {start}", parser.needed());
                break;
            }
            let outcome = parser.parse(buf, &mut args);
            assert_eq!(outcome, expected, "resumed and one-shot parses differ at {start}");
            match outcome {
                Ok(Some(len)) => {
                    assert_eq!(args, fresh, "resumed and one-shot arguments differ at {start}");
                    check_request(buf, len, &args);
                    start += len;
                }
                Ok(None) => {
                    assert!(parser.needed() > buf.len(), "needed() = {} asks for no more bytes", parser.needed());
                    break;
                }
                Err(ProtocolError(message)) => return assert_one_line(&message),
            }
        }
    }
}

/// A complete request of `len` bytes at the start of `buf`, with arguments `args`.
fn check_request(buf: &[u8], len: usize, args: &[Range<usize>]) {
    assert!(len > 0, "a complete request consumed nothing");
    assert!(len <= buf.len(), "consumed {len} of {} bytes", buf.len());
    let mut previous_end = 0;
    for arg in args {
        assert!(previous_end <= arg.start && arg.start <= arg.end && arg.end <= len, "argument {arg:?} of {len}");
        previous_end = arg.end;
    }
    // The request is framed by its own bytes: alone it parses the same, and cut short it is incomplete.
    let mut alone = Vec::new();
    assert_eq!(parse_request(&buf[..len], &mut alone), Ok(Some(len)));
    assert_eq!(alone, args);
    assert_eq!(parse_request(&buf[..len - 1], &mut alone), Ok(None), "a proper prefix is not incomplete");
}
