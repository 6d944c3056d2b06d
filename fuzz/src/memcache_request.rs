//! Client requests, framed as a memcache client session frames them: [`parse_request`] on the whole read
//! buffer at every read, the answer kept once it is not `Incomplete`, the consumed bytes (and any data block
//! being skipped) dropped. The parser promises that its answer depends only on the request's own bytes, never
//! on the read boundaries; the check holds it to that.

use std::ops::Range;

use ferrule::protocol::memcache::{parse_request, Command, Parse, Request, MAX_KEY_LEN};

use super::{assert_one_line, Reads};

/// `max_value` settings to fuzz with, chosen by bits 3-4 of the seed byte.
const MAX_VALUES: [usize; 4] = [0, 3, 100, 1 << 20];

pub fn check(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let max_value = MAX_VALUES[usize::from(seed >> 3) & 3];
    let mut reads = Reads::new(seed);
    let mut keys = Vec::new();
    let (mut start, mut end) = (0, 0);
    while end < stream.len() {
        end = reads.next_end(end, stream.len());
        while start < end {
            let buf = &stream[start..end];
            let outcome = parse_request(buf, &mut keys, max_value);
            if outcome == Parse::Incomplete {
                assert!(keys.is_empty());
                break;
            }
            let extent = check_outcome(buf, &outcome, &keys, max_value);
            // The same answer, whatever else has arrived: with all of the stream, and with only the request.
            let rest = &stream[start..];
            let mut other_keys = Vec::new();
            for more in [rest, &rest[..extent.min(rest.len())]] {
                let other = parse_request(more, &mut other_keys, max_value);
                assert_eq!(decided(&other), decided(&outcome), "the answer depends on the read boundaries");
                assert_eq!(other_keys, keys);
            }
            if matches!(outcome, Parse::Fatal { .. }) {
                return;
            }
            start = start.saturating_add(extent);
            if start >= stream.len() {
                return;
            }
            end = end.max(start);
        }
    }
}

/// What the session does with an answer, independent of how much of a skipped data block has arrived.
#[derive(Debug, PartialEq, Eq)]
enum Decided {
    Request(Request),
    Error { reply: &'static str, extent: usize },
    TooLarge { extent: usize },
    Fatal { reply: &'static str },
    Binary { opcode: u8, opaque: [u8; 4] },
    Incomplete,
}

fn decided(outcome: &Parse) -> Decided {
    match outcome {
        Parse::Request(request) => Decided::Request(request.clone()),
        &Parse::Error { reply, consumed, skip } => Decided::Error { reply, extent: consumed + skip },
        &Parse::TooLarge { consumed, skip } => Decided::TooLarge { extent: consumed + skip },
        &Parse::Fatal { reply } => Decided::Fatal { reply },
        &Parse::Binary { opcode, opaque } => Decided::Binary { opcode, opaque },
        Parse::Incomplete => Decided::Incomplete,
    }
}

/// Checks one answer on `buf`; returns how many bytes of the stream it accounts for.
fn check_outcome(buf: &[u8], outcome: &Parse, keys: &[Range<usize>], max_value: usize) -> usize {
    match outcome {
        Parse::Request(request) => check_request(buf, request, keys, max_value),
        &Parse::Error { reply, consumed, skip } => {
            assert!(keys.is_empty());
            if !reply.is_empty() {
                check_reply_line(reply);
            }
            check_consumed(buf, consumed, skip)
        }
        &Parse::TooLarge { consumed, skip } => {
            assert!(keys.is_empty());
            check_consumed(buf, consumed, skip)
        }
        &Parse::Fatal { reply } => {
            check_reply_line(reply);
            buf.len()
        }
        // A binary-protocol header ends the stream: answered in binary, then the connection is closed.
        &Parse::Binary { opcode, opaque } => {
            assert!(keys.is_empty());
            assert!(buf.len() >= 24 && buf[0] == 0x80, "a binary answer to a text request");
            assert_eq!((opcode, &opaque[..]), (buf[1], &buf[12..16]), "opcode and opaque come from the header");
            buf.len()
        }
        Parse::Incomplete => unreachable!(),
    }
}

fn check_consumed(buf: &[u8], consumed: usize, skip: usize) -> usize {
    assert!(consumed > 0, "an answered request consumed nothing");
    assert!(consumed <= buf.len(), "consumed {consumed} of {} bytes", buf.len());
    assert!(skip == 0 || consumed == buf.len(), "skips bytes that have arrived");
    consumed + skip
}

fn check_reply_line(reply: &str) {
    let line = reply.strip_suffix("\r\n").expect("reply line ends in CRLF");
    assert_one_line(line);
}

/// A meta command: one key on its command line (none for mn), and a data block only for ms.
fn check_meta(buf: &[u8], command: Command, len: usize, line_len: usize, keys: &[Range<usize>]) -> usize {
    assert!(0 < line_len && line_len <= len && len <= buf.len(), "line {line_len}, request {len} of {}", buf.len());
    assert_eq!(buf[line_len - 1], b'\n', "the command line does not end in a newline");
    assert!(keys.len() <= 1, "{command:?} with keys {keys:?}");
    for key in keys {
        assert!(key.end < line_len && !key.is_empty() && key.len() <= MAX_KEY_LEN, "key {key:?} of {command:?}");
    }
    if command == Command::MetaSet {
        assert!(len >= line_len + 2, "ms without its data block");
        assert_eq!(&buf[len - 2..len], b"\r\n", "data block not followed by CRLF");
    } else {
        assert_eq!(len, line_len, "{command:?} has a data block");
    }
    len
}

fn check_request(buf: &[u8], request: &Request, keys: &[Range<usize>], max_value: usize) -> usize {
    let Request { command, len, noreply, ref exptime, line_len, ref meta } = *request;
    assert!(meta.is_none() || command.is_meta(), "{command:?}: meta flags on a text command");
    if command.is_meta() {
        return check_meta(buf, command, len, line_len, keys);
    }
    assert!(0 < line_len && line_len <= len && len <= buf.len(), "line {line_len}, request {len} of {}", buf.len());
    assert_eq!(buf[line_len - 1], b'\n', "the command line does not end in a newline");
    for key in keys {
        let bytes = &buf[key.clone()];
        assert!(key.end < line_len, "key {key:?} outside the command line");
        assert!(
            !bytes.is_empty() && bytes.len() <= MAX_KEY_LEN && bytes.iter().all(|&b| b > b' ' && b != 0x7f),
            "invalid key {:?} routed",
            bytes.escape_ascii().to_string()
        );
    }
    let key_count = match command {
        _ if command.is_retrieval() => keys.len().max(1),
        _ if command.is_storage() => 1,
        Command::Incr | Command::Decr | Command::Delete | Command::Touch => 1,
        _ => 0,
    };
    assert_eq!(keys.len(), key_count, "{command:?} with keys {keys:?}");
    assert_eq!(exptime.is_some(), matches!(command, Command::Gat | Command::Gats));
    if let Some(exptime) = exptime {
        assert!(exptime.end < line_len && !exptime.is_empty());
    }
    if command.is_storage() {
        assert!(len >= line_len + 2 && len - line_len - 2 <= max_value, "data block of {len} over {max_value}");
        assert_eq!(&buf[len - 2..len], b"\r\n", "data block not followed by CRLF");
    } else {
        assert_eq!(len, line_len, "{command:?} has a data block");
    }
    assert!(
        !noreply || !(command.is_retrieval() || matches!(command, Command::Version | Command::Quit | Command::Stats))
    );
    len
}
