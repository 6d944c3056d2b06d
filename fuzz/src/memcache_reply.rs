//! Backend replies, framed as a memcache backend connection frames them: one resumable [`ReplyFramer`], reset
//! for the next request's command after each reply, fed the growing read buffer and not asked again while it
//! needs more than has arrived; each answer must be what the stateless [`reply_len`] says of the same bytes.
//!
//! Input: a [`Reads`] seed byte, a byte whose low three bits give how many command bytes follow (1 to 8), the
//! command bytes (indices into [`Command::ALL`], used in turn for successive replies), then the reply stream.

use ferrule::protocol::memcache::{reply_len, retrieval_items, Command, ReplyFramer};

use super::{assert_one_line, Reads};

pub fn check(data: &[u8]) {
    let [seed, count, rest @ ..] = data else {
        return;
    };
    let count = usize::from(count & 7) + 1;
    if rest.len() < count {
        return;
    }
    let (commands, stream) = rest.split_at(count);
    let mut commands = commands.iter().map(|&c| Command::ALL[usize::from(c) % Command::ALL.len()]).cycle();
    let mut reads = Reads::new(*seed);
    let mut framer = ReplyFramer::new(commands.next().expect("at least one command"));
    let (mut start, mut end) = (0, 0);
    while end < stream.len() {
        end = reads.next_end(end, stream.len());
        loop {
            let buf = &stream[start..end];
            let command = framer.command();
            let expected = reply_len(buf, command);
            if buf.len() < framer.needed() {
                assert_eq!(expected, Ok(None), "needed() = {} hid a reply at {start}", framer.needed());
                break;
            }
            let outcome = framer.parse(buf);
            assert_eq!(outcome, expected, "resumed and stateless framing differ at {start} ({command:?})");
            match outcome {
                Ok(Some(len)) => {
                    assert!(len > 0 && len <= buf.len(), "framed {len} of {} bytes", buf.len());
                    check_reply(&buf[..len], command);
                    start += len;
                    framer.reset(commands.next().expect("cycled"));
                }
                Ok(None) => {
                    assert!(framer.needed() > buf.len(), "needed() = {} asks for no more bytes", framer.needed());
                    break;
                }
                Err(message) => return assert_one_line(&message),
            }
        }
    }
}

/// One complete reply to `command`, exactly.
fn check_reply(reply: &[u8], command: Command) {
    let len = reply.len();
    assert_eq!(reply_len(reply, command), Ok(Some(len)), "a reply framed alone differs");
    assert_eq!(reply_len(&reply[..len - 1], command), Ok(None), "a proper prefix is not incomplete");
    let mut items = Vec::new();
    if retrieval_items(reply, &mut items) {
        // A bare END also ends a stats reply; VALUE items answer only retrievals.
        assert!(items.is_empty() || command.is_retrieval(), "{command:?} answered with VALUE items");
        let mut at = 0;
        for (key, item) in &items {
            assert_eq!(item.start, at, "items not back to back");
            assert!(item.start < key.start && key.end < item.end, "key {key:?} outside its item {item:?}");
            at = item.end;
        }
        assert!(reply[at..].starts_with(b"END"), "items not followed by END");
    } else {
        assert!(items.is_empty());
    }
}
