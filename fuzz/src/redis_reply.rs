//! Backend replies (RESP2 and RESP3), framed as a backend connection frames them: one resumable
//! [`ReplyParser`] fed the growing read buffer, not asked again while it needs more than has arrived; each
//! answer must be what the one-shot [`reply_len`] says of the same bytes.

use ferrule::protocol::redis::{array_elements, parse_integer_reply, reply_len, ProtocolError, ReplyParser};

use super::{assert_one_line, Reads};

pub fn check(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut reads = Reads::new(seed);
    let mut parser = ReplyParser::new();
    let (mut start, mut end) = (0, 0);
    while end < stream.len() {
        end = reads.next_end(end, stream.len());
        loop {
            let buf = &stream[start..end];
            let expected = reply_len(buf);
            if buf.len() < parser.needed() {
                assert_eq!(expected, Ok(None), "needed() = {} hid a reply at {start}", parser.needed());
                break;
            }
            let outcome = parser.parse(buf);
            assert_eq!(outcome, expected, "resumed and one-shot framing differ at {start}");
            match outcome {
                Ok(Some(len)) => {
                    assert!(len > 0 && len <= buf.len(), "framed {len} of {} bytes", buf.len());
                    check_reply(&buf[..len]);
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

/// One complete reply, exactly.
fn check_reply(reply: &[u8]) {
    let len = reply.len();
    assert_eq!(reply_len(reply), Ok(Some(len)), "a reply framed alone differs");
    assert_eq!(reply_len(&reply[..len - 1]), Ok(None), "a proper prefix is not incomplete");
    assert_eq!(parse_integer_reply(reply).is_some(), reply[0] == b':', "integer reply not read as one");

    // A split MGET is reassembled from array_elements: for every complete non-null array it must give the
    // elements, back to back from the end of the header to the end of the reply.
    let mut elements = Vec::new();
    let is_array = reply[0] == b'*' && !reply.starts_with(b"*-");
    assert_eq!(array_elements(reply, &mut elements), is_array, "array_elements misjudged a complete reply");
    if is_array {
        let header_end = reply.windows(2).position(|w| w == b"\r\n").expect("array header line") + 2;
        let mut at = header_end;
        for element in &elements {
            assert_eq!(element.start, at, "elements not back to back");
            assert!(element.end > element.start);
            assert_eq!(reply_len(&reply[element.clone()]), Ok(Some(element.len())));
            at = element.end;
        }
        assert_eq!(at, len, "array elements do not cover the reply");
    } else {
        assert!(elements.is_empty());
    }
}
