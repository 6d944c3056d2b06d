//! Resumable reply framing: a multi-get reply with thousands of VALUE items, or a long stats
//! dump, arriving over many reads is walked once, not again from its first line on every read.
//!
//! The framer frames exactly as [`reply_len`] does (same lengths, same errors); it only
//! remembers where the last complete item or line ended.

use super::reply::{reply_line, retrieval_step, stats_line_ends_reply, Step};
use super::{meta, reply_len, Command};

/// A reply framer that remembers how far it got.
///
/// Contract between calls that return `Ok(None)`: `buf` must start at the same reply and only
/// grow at its end. After `Ok(Some(_))` or `Err(_)` the framer is ready for another reply to
/// the same command; [`ReplyFramer::reset`] readies it for another command.
#[derive(Debug, Clone)]
pub struct ReplyFramer {
    command: Command,
    phase: Phase,
    /// Where the next item or line starts: everything before it has been framed.
    at: usize,
    needed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing framed yet.
    Start,
    /// In a retrieval reply, at an item or the line that ends the reply.
    Items,
    /// In a stats reply, past its first STAT (ITEM, PREFIX) line.
    StatLines,
}

impl ReplyFramer {
    pub fn new(command: Command) -> Self {
        ReplyFramer { command, phase: Phase::Start, at: 0, needed: 0 }
    }

    /// Forgets any partly framed reply and frames the next one as a reply to `command`.
    pub fn reset(&mut self, command: Command) {
        *self = Self::new(command);
    }

    /// The command whose reply is being framed.
    pub fn command(&self) -> Command {
        self.command
    }

    /// Frames the reply at the start of `buf`, continuing the previous attempt; see [`reply_len`].
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        let outcome = self.advance(buf);
        if !matches!(outcome, Ok(None)) {
            self.reset(self.command);
        }
        outcome
    }

    /// After `Ok(None)`: the buffer length below which another attempt cannot make progress (the
    /// end of the data block being received, or one byte more than was seen).
    pub fn needed(&self) -> usize {
        self.needed
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        loop {
            match self.phase {
                Phase::Start if self.command.is_retrieval() => self.phase = Phase::Items,
                // One line, perhaps a data block jumped over by its size: re-reading the line is cheap.
                Phase::Start if self.command.is_meta() => {
                    return match meta::frame(buf, self.command)? {
                        meta::Frame::Done(len) => Ok(Some(len)),
                        meta::Frame::Need(needed) => Ok(self.wait(needed)),
                    }
                }
                Phase::Start => return self.first_line(buf),
                Phase::Items => match retrieval_step(buf, self.at)? {
                    Step::Item { end, .. } => self.at = end,
                    Step::End { end } | Step::Failed { end } => return Ok(Some(end)),
                    Step::Wait { needed } => return Ok(self.wait(needed)),
                },
                Phase::StatLines => {
                    let Some(line) = reply_line(buf, self.at)? else {
                        return Ok(self.wait(buf.len() + 1));
                    };
                    if stats_line_ends_reply(line.text(buf))? {
                        return Ok(Some(line.next));
                    }
                    self.at = line.next;
                }
            }
        }
    }

    /// Every reply but a retrieval one is decided by its first line, except a stats reply that
    /// starts with a STAT line: [`reply_len`] judges the first line alone, and says it is
    /// incomplete exactly when more lines must follow.
    fn first_line(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        let Ok(Some(line)) = reply_line(buf, 0) else {
            // No whole line yet, or an overlong one: reply_len tells which, and whether it is an
            // error already (a reply to quit is one from its first byte).
            return Ok(reply_len(buf, self.command)?.or_else(|| self.wait(buf.len() + 1)));
        };
        let first = buf.get(..line.next).unwrap_or(buf);
        if let Some(len) = reply_len(first, self.command)? {
            return Ok(Some(len));
        }
        self.phase = Phase::StatLines;
        self.at = line.next;
        self.advance(buf)
    }

    fn wait(&mut self, needed: usize) -> Option<usize> {
        self.needed = needed;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_REPLY_LINE_LEN;
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Frames `stream` as FIFO replies to `commands`, delivered in reads ending at `cuts`, the
    /// way a backend connection does: one framer, reset per reply, not asked while it needs more
    /// than has arrived. At every step the framer must agree with [`reply_len`] on the whole
    /// buffered reply, and `needed` must never hide a reply that `reply_len` would frame.
    fn check_agreement(stream: &[u8], commands: &[Command], cuts: &[usize]) -> Result<(), TestCaseError> {
        let mut commands = commands.iter().copied();
        let Some(first) = commands.next() else {
            return Ok(());
        };
        let mut framer = ReplyFramer::new(first);
        let mut start = 0;
        for &cut in cuts.iter().chain([stream.len()].iter()) {
            let cut = cut.max(start);
            loop {
                let buf = &stream[start..cut];
                let expected = reply_len(buf, framer.command());
                if buf.len() < framer.needed() {
                    prop_assert_eq!(expected, Ok(None), "needed {} hid a reply", framer.needed());
                    break;
                }
                let framed = framer.parse(buf);
                prop_assert_eq!(&framed, &expected, "reply at {} to {:?}", start, framer.command());
                match framed {
                    Ok(Some(len)) => {
                        start += len;
                        match commands.next() {
                            Some(next) => framer.reset(next),
                            None => return Ok(()),
                        }
                    }
                    Ok(None) => {
                        prop_assert!(framer.needed() > buf.len());
                        break;
                    }
                    Err(_) => return Ok(()),
                }
            }
        }
        Ok(())
    }

    fn check_every_split(stream: &[u8], commands: &[Command]) {
        for at in 0..=stream.len() {
            check_agreement(stream, commands, &[at]).unwrap_or_else(|e| panic!("split at {at}: {e}"));
        }
        let every_byte: Vec<usize> = (0..stream.len()).collect();
        check_agreement(stream, commands, &every_byte).unwrap_or_else(|e| panic!("byte by byte: {e}"));
    }

    #[test]
    fn frames_a_mixed_exchange_like_reply_len_at_every_split_point() {
        let exchange: [(Command, &[u8]); 14] = [
            (Command::Get, b"VALUE a 0 1\r\nx\r\nVALUE bb 3 4\r\nEND\r\n\r\nEND\r\n"),
            (Command::Gets, b"VALUE a 0 5 3\r\nEND\r\n\r\nVALUE b 1 0 4\r\n\r\nEND\r\n"),
            (Command::Gat, b"END\r\n"),
            (Command::Get, b"VALUE a 0 1\nx\r\nSERVER_ERROR out of memory writing get response\r\n"),
            (Command::Set, b"STORED\r\n"),
            (Command::Incr, b"16\r\n"),
            (Command::Delete, b"DELETED\r\n"),
            (Command::Version, b"VERSION 1.6.18\r\n"),
            (Command::Stats, b"STAT pid 1\r\nITEM a [1 b; 0 s]\r\nPREFIX x get 1\r\nEND\r\n"),
            (Command::Stats, b"RESET\r\n"),
            (Command::Stats, b"CLIENT_ERROR bad command line format\r\n"),
            (Command::Stats, b"END\r\n"),
            (Command::Touch, b"ERROR\r\n"),
            (Command::FlushAll, b"OK\r\n"),
        ];
        let commands: Vec<Command> = exchange.iter().map(|(c, _)| *c).collect();
        let stream: Vec<u8> = exchange.iter().flat_map(|(_, r)| r.to_vec()).collect();
        check_every_split(&stream, &commands);
    }

    #[test]
    fn reports_the_same_errors_as_reply_len_at_every_split_point() {
        for (command, bad) in [
            (Command::Get, &b"VALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nxyz\r\nEND\r\n"[..]),
            (Command::Get, b"VALUE a 0 1\r\nx\r\nSTORED\r\n"),
            (Command::Gets, b"VALUE a 0 1 cas\r\nx\r\nEND\r\n"),
            (Command::Get, b"VALUE a 0 99999999999999999999\r\n"),
            (Command::Stats, b"STAT a 1\r\nSTAT b 2\r\nERROR\r\n"),
            (Command::Stats, b"HELLO\r\n"),
            (Command::Set, b"DELETED\r\n"),
            (Command::Quit, b"OK\r\n"),
        ] {
            assert!(reply_len(bad, command).is_err());
            check_every_split(bad, &[command]);
        }
    }

    #[test]
    fn overlong_lines_are_refused_mid_reply_as_by_reply_len() {
        for command in [Command::Get, Command::Stats, Command::Set] {
            let mut reply = match command {
                Command::Get => b"VALUE a 0 1\r\nx\r\n".to_vec(),
                Command::Stats => b"STAT a 1\r\n".to_vec(),
                _ => Vec::new(),
            };
            reply.resize(reply.len() + MAX_REPLY_LINE_LEN + 1, b'S');
            let cuts: Vec<usize> = (0..reply.len()).step_by(1000).collect();
            check_agreement(&reply, &[command], &cuts).unwrap();
            let mut framer = ReplyFramer::new(command);
            let mut outcome = Ok(None);
            for &cut in &cuts {
                outcome = framer.parse(&reply[..cut]);
            }
            assert_eq!(outcome, Ok(None));
            assert!(framer.parse(&reply).unwrap_err().contains("longer than"));
        }
    }

    #[test]
    fn a_reply_to_quit_is_an_error_before_it_is_an_overlong_line() {
        let long = vec![b'S'; MAX_REPLY_LINE_LEN + 1];
        let expected = reply_len(&long, Command::Quit);
        assert_eq!(expected, Err("a reply to quit, which has none".to_string()));
        assert_eq!(ReplyFramer::new(Command::Quit).parse(&long), expected);
    }

    #[test]
    fn resumes_a_wide_multi_get_without_starting_over() {
        let count = 5000;
        let mut reply = Vec::new();
        for i in 0..count {
            reply.extend_from_slice(format!("VALUE key:{i} 0 {}\r\n{i}\r\n", i.to_string().len()).as_bytes());
        }
        reply.extend_from_slice(b"END\r\n");
        let mut framer = ReplyFramer::new(Command::Get);
        let mut end = 0;
        let framed = loop {
            end = (end + 1000).min(reply.len());
            if let Some(len) = framer.parse(&reply[..end]).unwrap() {
                break len;
            }
            // Only the item cut by the read is looked at again.
            assert!(framer.at + 100 > end, "resumes at {} with {end} buffered", framer.at);
        };
        assert_eq!(framed, reply.len());
        assert_eq!(framer.at, 0, "ready for the next reply");
    }

    #[test]
    fn needed_points_past_a_large_data_block() {
        let mut framer = ReplyFramer::new(Command::Gets);
        let head = b"VALUE a 0 1\r\nx\r\nVALUE big 0 1000000 7\r\n";
        assert_eq!(framer.parse(&[&head[..], b"ab"].concat()), Ok(None));
        assert_eq!(framer.needed(), head.len() + 1_000_000 + 2);
        let mut framer = ReplyFramer::new(Command::Set);
        assert_eq!(framer.parse(b"STO"), Ok(None));
        assert_eq!(framer.needed(), 4);
    }

    #[test]
    fn framer_is_reusable_after_a_reply_or_an_error() {
        let mut framer = ReplyFramer::new(Command::Stats);
        assert_eq!(framer.parse(b"STAT a 1\r\n"), Ok(None));
        assert_eq!(framer.parse(b"STAT a 1\r\nEND\r\n"), Ok(Some(15)));
        assert_eq!(framer.parse(b"OK\r\n"), Ok(Some(4)));
        assert!(framer.parse(b"STAT a 1\r\nBAD\r\n").is_err());
        assert_eq!(framer.parse(b"END\r\n"), Ok(Some(5)));
        framer.reset(Command::Delete);
        assert_eq!(framer.command(), Command::Delete);
        assert_eq!(framer.parse(b"DELETED\r\n"), Ok(Some(9)));
    }

    /// A command and one well-formed reply to it.
    fn reply_for_a_command() -> impl Strategy<Value = (Command, Vec<u8>)> {
        let key = vec(0x21u8..0x7f, 1..8);
        let item =
            (key, any::<u16>(), vec(any::<u8>(), 0..12), any::<Option<u64>>()).prop_map(|(key, flags, data, cas)| {
                let mut item = b"VALUE ".to_vec();
                item.extend_from_slice(&key);
                item.extend_from_slice(format!(" {flags} {}", data.len()).as_bytes());
                if let Some(cas) = cas {
                    item.extend_from_slice(format!(" {cas}").as_bytes());
                }
                item.extend_from_slice(b"\r\n");
                item.extend_from_slice(&data);
                item.extend_from_slice(b"\r\n");
                (item, cas.is_some())
            });
        const ENDS: [&str; 3] = ["END\r\n", "END\n", "SERVER_ERROR out of memory writing get response\r\n"];
        let retrieval = (vec(item, 0..6), proptest::sample::select(&ENDS[..])).prop_map(|(items, end)| {
            let command = if items.iter().any(|(_, cas)| *cas) { Command::Gets } else { Command::Get };
            let mut reply: Vec<u8> = items.into_iter().flat_map(|(item, _)| item).collect();
            reply.extend_from_slice(end.as_bytes());
            (command, reply)
        });
        let stats = vec("(STAT|ITEM|PREFIX) [a-z]{1,6} [0-9]{1,4}", 0..6).prop_map(|lines| {
            let mut reply: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            reply.extend_from_slice(b"END\r\n");
            (Command::Stats, reply)
        });
        let line = |command: Command, lines: &'static [&'static str]| {
            proptest::sample::select(lines).prop_map(move |l| (command, l.as_bytes().to_vec()))
        };
        prop_oneof![
            4 => retrieval,
            2 => stats,
            1 => line(Command::Stats, &["RESET\r\n", "OK\r\n", "ERROR\r\n"]),
            1 => line(Command::Set, &["STORED\r\n", "NOT_STORED\r\n", "EXISTS\r\n", "NOT_FOUND\r\n"]),
            1 => line(Command::Incr, &["0\r\n", "123\r\n", "NOT_FOUND\r\n"]),
            1 => line(Command::Touch, &["TOUCHED\r\n", "CLIENT_ERROR bad command line format\r\n"]),
            1 => line(Command::Version, &["VERSION 1.6.18\r\n"]),
        ]
    }

    /// Pieces of reply lines, for streams that are mostly nonsense but brush against every rule.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        const WORDS: [&[u8]; 22] = [
            b"VALUE",
            b"END",
            b"STAT",
            b"ITEM",
            b"ERROR",
            b"SERVER_ERROR",
            b"STORED",
            b"OK",
            b"RESET",
            b"VERSION",
            b"a",
            b"0",
            b"1",
            b"3",
            b"99999999999999999999",
            b" ",
            b" ",
            b"\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"\r\n\r\n",
        ];
        prop_oneof![
            8 => proptest::sample::select(&WORDS[..]).prop_map(<[u8]>::to_vec),
            1 => vec(any::<u8>(), 0..6),
            1 => Just(vec![b'S'; MAX_REPLY_LINE_LEN / 2]),
        ]
    }

    fn any_command() -> impl Strategy<Value = Command> {
        proptest::sample::select(&Command::ALL[..])
    }

    /// Sorted cut points within a stream of `len` bytes (repeats are empty reads).
    fn cuts(len: usize, points: &[usize]) -> Vec<usize> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (len + 1)).collect();
        cuts.sort_unstable();
        cuts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn valid_replies_frame_as_reply_len_frames_them_in_any_chunking(
            exchange in vec(reply_for_a_command(), 1..8),
            points in vec(any::<usize>(), 0..12),
        ) {
            let commands: Vec<Command> = exchange.iter().map(|(c, _)| *c).collect();
            let stream: Vec<u8> = exchange.into_iter().flat_map(|(_, r)| r).collect();
            check_agreement(&stream, &commands, &cuts(stream.len(), &points))?;
        }

        #[test]
        fn arbitrary_streams_frame_as_reply_len_frames_them_in_any_chunking(
            fragments in vec(fragment(), 0..40),
            commands in vec(any_command(), 1..6),
            points in vec(any::<usize>(), 0..12),
        ) {
            let stream = fragments.concat();
            check_agreement(&stream, &commands, &cuts(stream.len(), &points))?;
        }
    }
}
