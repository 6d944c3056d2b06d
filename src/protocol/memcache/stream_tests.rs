//! Whole-stream tests: requests and replies cut into reads at every point, or at random, must
//! parse exactly as when they arrive in one piece; generated requests written by the encoders
//! must parse back to what was generated.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// What a proxy session sees, in a form that does not depend on buffer offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Request {
        command: Command,
        noreply: bool,
        keys: Vec<Vec<u8>>,
        exptime: Option<Vec<u8>>,
        line_len: usize,
        raw: Vec<u8>,
    },
    /// A local reply; `discarded` = consumed + skip.
    Error {
        reply: &'static str,
        discarded: usize,
    },
    TooLarge {
        discarded: usize,
    },
    Fatal {
        reply: &'static str,
    },
    Binary,
}

/// Feeds `chunks` to the parser the way a client session would: parse while whole requests
/// are buffered, wait for more on Incomplete, drop skipped bytes as they arrive. Checks the
/// parser's promises about lengths and ranges along the way.
fn session<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, max_value: usize) -> Vec<Event> {
    let mut buf = Vec::new();
    let mut keys = Vec::new();
    let mut skip = 0usize;
    let mut events = Vec::new();
    for chunk in chunks {
        let dropped = skip.min(chunk.len());
        skip -= dropped;
        buf.extend_from_slice(&chunk[dropped..]);
        while !buf.is_empty() {
            let (consumed, event) = match parse_request(&buf, &mut keys, max_value) {
                Parse::Incomplete => {
                    assert!(keys.is_empty());
                    break;
                }
                Parse::Request(r) => {
                    assert!(r.line_len > 0 && r.line_len <= r.len && r.len <= buf.len());
                    assert_eq!(r.len > r.line_len, r.command.is_storage());
                    for key in keys.iter().chain(r.exptime.iter()) {
                        assert!(key.end <= r.line_len && key.start < key.end);
                    }
                    let event = Event::Request {
                        command: r.command,
                        noreply: r.noreply,
                        keys: keys.iter().map(|k| buf[k.clone()].to_vec()).collect(),
                        exptime: r.exptime.clone().map(|e| buf[e].to_vec()),
                        line_len: r.line_len,
                        raw: buf[..r.len].to_vec(),
                    };
                    (r.len, event)
                }
                Parse::Error { reply, consumed, skip: more } => {
                    assert!(keys.is_empty());
                    skip = more;
                    let event = Event::Error { reply, discarded: consumed + more };
                    (consumed, event)
                }
                Parse::TooLarge { consumed, skip: more } => {
                    assert!(keys.is_empty());
                    skip = more;
                    (consumed, Event::TooLarge { discarded: consumed + more })
                }
                Parse::Fatal { reply } => {
                    events.push(Event::Fatal { reply });
                    return events;
                }
                Parse::Binary { .. } => {
                    events.push(Event::Binary);
                    return events;
                }
            };
            assert!(consumed > 0 && consumed <= buf.len());
            buf.drain(..consumed);
            events.push(event);
            if skip > 0 {
                assert!(buf.is_empty(), "skip promised while bytes remain buffered");
            }
        }
    }
    events
}

fn whole(stream: &[u8], max_value: usize) -> Vec<Event> {
    session([stream], max_value)
}

fn split_at(stream: &[u8], at: usize, max_value: usize) -> Vec<Event> {
    session([&stream[..at], &stream[at..]], max_value)
}

/// A stream touching every command and every local error path.
fn mixed_stream() -> Vec<u8> {
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let mut s = Vec::new();
    for part in [
        "get a\r\n",
        "gets a bb ccc\r\n",
        "gat 10 a b\r\n",
        "gats -1 a\n",
        "set k 1 2 3\r\nabc\r\n",
        "add k 0 0 4 noreply\r\n\r\n\r\n\r\n",
        "replace k 0 0 0\r\n\r\n",
        "append k 0 0 1\r\nx\r\n",
        "prepend k 0 0 1\r\ny\r\n",
        "cas k 0 0 2 99 noreply\r\nhi\r\n",
        "incr k 1\r\n",
        "decr k 2 noreply\r\n",
        "delete k\r\n",
        "delete k 0 noreply\r\n",
        "touch k 10\r\n",
        "version\r\n",
        "stats slabs\r\n",
        "flush_all 0\r\n",
        "verbosity 1 noreply\r\n",
        "\r\n",
        "GET a\r\n",
        "mg a v\r\n",
        "get a\x01\r\n",
        "set k 0 0 -1\r\nx\r\n",
        "set k -1 0 1\r\nx\r\n",
        "set k 0 0 1\r\nxyz\r\n",
        "set k 0 0 20\r\n01234567890123456789\r\n",
        "set k 0 0 20 noreply\r\n01234567890123456789\r\n",
        "incr k x\r\n",
        "delete k 5\r\n",
        "touch k x noreply\r\n",
    ] {
        s.extend_from_slice(part.as_bytes());
    }
    s.extend_from_slice(format!("set {long_key} 0 0 2\r\nab\r\n").as_bytes());
    s.extend_from_slice(format!("get a {long_key}\r\n").as_bytes());
    s.extend_from_slice(b"quit\r\n");
    s
}

#[test]
fn mixed_stream_parses_the_same_at_every_split_point() {
    let stream = mixed_stream();
    let max_value = 16;
    let reference = whole(&stream, max_value);
    assert_eq!(reference.len(), 36);
    assert!(reference.iter().any(|e| matches!(e, Event::TooLarge { .. })));
    assert!(matches!(reference.last(), Some(Event::Request { command: Command::Quit, .. })));
    for at in 0..=stream.len() {
        assert_eq!(split_at(&stream, at, max_value), reference, "split at {at}");
    }
    assert_eq!(session(stream.chunks(1), max_value), reference, "byte by byte");
}

#[test]
fn fatal_streams_stop_at_the_same_event_at_every_split_point() {
    let mut binary = vec![0x80, 0x01, 0x00, 0x00];
    binary.resize(BINARY_HEADER_LEN + 3, 0);
    for tail in [&binary[..], &[b'x'; MAX_LINE_LEN + 5]] {
        let mut stream = b"get a\r\nset k 0 0 1\r\nx\r\n".to_vec();
        stream.extend_from_slice(tail);
        let reference = whole(&stream, 100);
        assert!(matches!(reference.last(), Some(Event::Fatal { .. } | Event::Binary)));
        for at in 0..=stream.len() {
            assert_eq!(split_at(&stream, at, 100), reference, "split at {at}");
        }
    }
}

/// Frames replies FIFO against `commands`, fed in `chunks`, as a backend connection would.
fn frame_replies<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, commands: &[Command]) -> Result<Vec<Vec<u8>>, String> {
    let mut buf = Vec::new();
    let mut framed = Vec::new();
    let mut pending = commands.iter();
    let mut current = pending.next();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(&command) = current {
            match reply_len(&buf, command)? {
                None => break,
                Some(len) => {
                    framed.push(buf.drain(..len).collect());
                    current = pending.next();
                }
            }
        }
    }
    Ok(framed)
}

#[test]
fn reply_stream_frames_the_same_at_every_split_point() {
    let exchange: [(Command, &[u8]); 13] = [
        (Command::Get, b"VALUE a 0 1\r\nx\r\nEND\r\n"),
        (Command::Gets, b"VALUE a 0 5 3\r\nEND\r\n\r\nVALUE b 1 0 4\r\n\r\nEND\r\n"),
        (Command::Gat, b"END\r\n"),
        (Command::Set, b"STORED\r\n"),
        (Command::Cas, b"EXISTS\r\n"),
        (Command::Incr, b"16\r\n"),
        (Command::Decr, b"NOT_FOUND\r\n"),
        (Command::Delete, b"DELETED\r\n"),
        (Command::Touch, b"TOUCHED\r\n"),
        (Command::Version, b"VERSION 1.6.18\r\n"),
        (Command::Stats, b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n"),
        (Command::Get, b"SERVER_ERROR out of memory writing get response\r\n"),
        (Command::FlushAll, b"OK\r\n"),
    ];
    let commands: Vec<Command> = exchange.iter().map(|(c, _)| *c).collect();
    let expected: Vec<Vec<u8>> = exchange.iter().map(|(_, r)| r.to_vec()).collect();
    let stream = expected.concat();
    for at in 0..=stream.len() {
        let framed = frame_replies([&stream[..at], &stream[at..]], &commands);
        assert_eq!(framed.as_ref(), Ok(&expected), "split at {at}");
    }
    assert_eq!(frame_replies(stream.chunks(1), &commands), Ok(expected));
}

#[test]
fn encoders_round_trip_through_the_parser() {
    let mut out = Vec::new();
    write_retrieval(&mut out, Command::Get, None, [&b"a"[..], b"bb"].into_iter());
    assert_eq!(out, b"get a bb\r\n");
    out.clear();
    write_retrieval(&mut out, Command::Gat, Some(b"10"), [&b"a"[..]].into_iter());
    assert_eq!(out, b"gat 10 a\r\n");
    out.clear();
    write_retrieval(&mut out, Command::Gets, Some(b"10"), [&b"a"[..]].into_iter());
    assert_eq!(out, b"gets a\r\n", "exptime is for gat/gats only");
    out.clear();
    write_storage(&mut out, Command::Set, b"k", 7, 60, b"val", None, false);
    assert_eq!(out, b"set k 7 60 3\r\nval\r\n");
    out.clear();
    write_storage(&mut out, Command::Cas, b"k", 0, 0, b"", Some(42), true);
    assert_eq!(out, b"cas k 0 0 0 42 noreply\r\n\r\n");
    out.clear();
    write_storage(&mut out, Command::Add, b"k", u32::MAX, 0, b"\r\n", Some(42), false);
    assert_eq!(out, b"add k 4294967295 0 2\r\n\r\n\r\n", "cas is for cas only");
}

// ---- property tests ----

/// A request generated from its parts, with the event the parser must report for it.
#[derive(Debug, Clone)]
struct Generated {
    bytes: Vec<u8>,
    event: Event,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![0x21u8..0x7f, 0x80u8..=0xff];
    prop_oneof![
        9 => vec(byte.clone(), 1..12),
        1 => vec(byte, MAX_KEY_LEN..=MAX_KEY_LEN),
    ]
}

fn retrieval() -> impl Strategy<Value = Generated> {
    let command = prop_oneof![Just(Command::Get), Just(Command::Gets), Just(Command::Gat), Just(Command::Gats)];
    (command, any::<i32>(), vec(key(), 1..6)).prop_map(|(command, exptime, keys)| {
        let exptime = matches!(command, Command::Gat | Command::Gats).then(|| exptime.to_string().into_bytes());
        let mut bytes = Vec::new();
        write_retrieval(&mut bytes, command, exptime.as_deref(), keys.iter().map(Vec::as_slice));
        let event =
            Event::Request { command, noreply: false, line_len: bytes.len(), keys, exptime, raw: bytes.clone() };
        Generated { bytes, event }
    })
}

fn storage() -> impl Strategy<Value = Generated> {
    let command = prop_oneof![
        Just(Command::Set),
        Just(Command::Add),
        Just(Command::Replace),
        Just(Command::Append),
        Just(Command::Prepend),
        Just(Command::Cas)
    ];
    let value = prop_oneof![vec(any::<u8>(), 0..40), vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'E')], 0..8),];
    (command, key(), any::<u32>(), 0..=i32::MAX as u32, value, any::<u64>(), any::<bool>()).prop_map(
        |(command, key, flags, exptime, value, cas, noreply)| {
            let mut bytes = Vec::new();
            write_storage(&mut bytes, command, &key, flags, exptime, &value, Some(cas), noreply);
            let event = Event::Request {
                command,
                noreply,
                keys: vec![key],
                exptime: None,
                line_len: bytes.len() - value.len() - 2,
                raw: bytes.clone(),
            };
            Generated { bytes, event }
        },
    )
}

fn other() -> impl Strategy<Value = Generated> {
    let keyed = (
        prop_oneof![
            Just("incr {k} 5"),
            Just("decr {k} 18446744073709551615"),
            Just("delete {k}"),
            Just("delete {k} 0"),
            Just("touch {k} -1"),
        ],
        key(),
        any::<bool>(),
    )
        .prop_map(|(template, key, noreply)| {
            let (before, after) = template.split_once("{k}").unwrap_or((template, ""));
            let mut bytes = before.as_bytes().to_vec();
            bytes.extend_from_slice(&key);
            bytes.extend_from_slice(after.as_bytes());
            if noreply {
                bytes.extend_from_slice(b" noreply");
            }
            bytes.extend_from_slice(b"\r\n");
            let command = Command::from_name(before.trim().as_bytes()).unwrap_or(Command::Quit);
            (bytes, command, noreply, vec![key])
        });
    let keyless = (
        prop_oneof![
            Just(("version", Command::Version, false)),
            Just(("stats", Command::Stats, false)),
            Just(("stats items", Command::Stats, false)),
            Just(("flush_all", Command::FlushAll, true)),
            Just(("flush_all 30", Command::FlushAll, true)),
            Just(("verbosity 1", Command::Verbosity, true)),
        ],
        any::<bool>(),
    )
        .prop_map(|((line, command, takes_noreply), noreply)| {
            let noreply = noreply && takes_noreply;
            let mut bytes = line.as_bytes().to_vec();
            if noreply {
                bytes.extend_from_slice(b" noreply");
            }
            bytes.extend_from_slice(b"\r\n");
            (bytes, command, noreply, vec![])
        });
    prop_oneof![keyed, keyless].prop_map(|(bytes, command, noreply, keys)| Generated {
        event: Event::Request { command, noreply, keys, exptime: None, line_len: bytes.len(), raw: bytes.clone() },
        bytes,
    })
}

fn request_stream() -> impl Strategy<Value = Vec<Generated>> {
    vec(prop_oneof![retrieval(), storage(), other()], 1..12)
}

/// Cut points for a stream: sorted offsets, possibly repeated (empty reads).
fn cuts(len: usize, points: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn chunked<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([stream.len()].iter()) {
        chunks.push(&stream[start..cut]);
        start = cut;
    }
    chunks
}

/// Fragments of request lines, to build streams that are mostly nonsense but brush against
/// every rule of the parser.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    const WORDS: [&[u8]; 36] = [
        b"get",
        b"gets",
        b"gat",
        b"gats",
        b"set",
        b"add",
        b"cas",
        b"incr",
        b"decr",
        b"delete",
        b"touch",
        b"version",
        b"quit",
        b"stats",
        b"flush_all",
        b"verbosity",
        b"noreply",
        b"0",
        b"1",
        b"5",
        b"-1",
        b"4294967296",
        b"2147483648",
        b"abc",
        b"k",
        b" ",
        b" ",
        b" ",
        b"\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"\x01",
        b"\x80",
        b"END",
        b"xyz",
    ];
    prop_oneof![
        6 => proptest::sample::select(&WORDS[..]).prop_map(<[u8]>::to_vec),
        1 => vec(any::<u8>(), 0..6),
        1 => Just(vec![b'k'; MAX_KEY_LEN + 1]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_requests_parse_back_identically_in_any_chunking(
        requests in request_stream(),
        points in vec(any::<usize>(), 0..8),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(|g| g.bytes.clone()).collect();
        let expected: Vec<Event> = requests.into_iter().map(|g| g.event).collect();
        let chunks = chunked(&stream, &cuts(stream.len(), &points));
        prop_assert_eq!(session(chunks, 1 << 20), expected);
    }

    #[test]
    fn any_bytes_parse_the_same_in_any_chunking_without_panicking(
        fragments in vec(fragment(), 0..40),
        points in vec(any::<usize>(), 0..8),
        max_value in 0usize..8,
    ) {
        let stream = fragments.concat();
        let chunks = chunked(&stream, &cuts(stream.len(), &points));
        prop_assert_eq!(session(chunks, max_value), whole(&stream, max_value));
    }

    #[test]
    fn replies_frame_the_same_in_any_chunking(
        exchange in vec(reply_for_a_command(), 1..10),
        points in vec(any::<usize>(), 0..8),
    ) {
        let commands: Vec<Command> = exchange.iter().map(|(c, _)| *c).collect();
        let expected: Vec<Vec<u8>> = exchange.into_iter().map(|(_, r)| r).collect();
        let stream = expected.concat();
        let chunks = chunked(&stream, &cuts(stream.len(), &points));
        prop_assert_eq!(frame_replies(chunks, &commands), Ok(expected));
    }

    #[test]
    fn retrieval_items_recover_generated_values(
        items in vec((key(), any::<u32>(), vec(any::<u8>(), 0..30), any::<Option<u64>>()), 0..6),
    ) {
        let mut reply = Vec::new();
        for (key, flags, data, cas) in &items {
            reply.extend_from_slice(b"VALUE ");
            reply.extend_from_slice(key);
            reply.extend_from_slice(format!(" {flags} {}", data.len()).as_bytes());
            if let Some(cas) = cas {
                reply.extend_from_slice(format!(" {cas}").as_bytes());
            }
            reply.extend_from_slice(b"\r\n");
            reply.extend_from_slice(data);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"END\r\n");
        prop_assert_eq!(reply_len(&reply, Command::Gets), Ok(Some(reply.len())));
        let mut found = Vec::new();
        prop_assert!(retrieval_items(&reply, &mut found));
        prop_assert_eq!(found.len(), items.len());
        let mut at = 0;
        for ((key, item), (expected_key, _, data, _)) in found.iter().zip(&items) {
            prop_assert_eq!(&reply[key.clone()], &expected_key[..]);
            prop_assert_eq!(item.start, at);
            prop_assert!(reply[item.clone()].ends_with(&[&data[..], b"\r\n"].concat()));
            at = item.end;
        }
        prop_assert_eq!(&reply[at..], b"END\r\n");
    }
}

/// A command and one well-formed reply to it.
fn reply_for_a_command() -> impl Strategy<Value = (Command, Vec<u8>)> {
    let value = (key(), any::<u32>(), vec(any::<u8>(), 0..20)).prop_map(|(key, flags, data)| {
        let mut item = b"VALUE ".to_vec();
        item.extend_from_slice(&key);
        item.extend_from_slice(format!(" {flags} {}\r\n", data.len()).as_bytes());
        item.extend_from_slice(&data);
        item.extend_from_slice(b"\r\n");
        item
    });
    let get = vec(value, 0..4).prop_map(|items| {
        let mut reply = items.concat();
        reply.extend_from_slice(b"END\r\n");
        (Command::Get, reply)
    });
    let line = |command: Command, lines: &'static [&'static str]| {
        proptest::sample::select(lines).prop_map(move |l| (command, l.as_bytes().to_vec()))
    };
    prop_oneof![
        get,
        line(Command::Set, &["STORED\r\n", "NOT_STORED\r\n", "EXISTS\r\n", "NOT_FOUND\r\n"]),
        line(Command::Incr, &["0\r\n", "123\r\n", "NOT_FOUND\r\n"]),
        line(Command::Delete, &["DELETED\r\n", "NOT_FOUND\r\n"]),
        line(Command::Touch, &["TOUCHED\r\n", "NOT_FOUND\r\n"]),
        line(Command::Version, &["VERSION 1.6.18\r\n"]),
        line(Command::Stats, &["STAT a 1\r\nSTAT b 2\r\nEND\r\n", "RESET\r\n"]),
        line(Command::Verbosity, &["OK\r\n"]),
        line(Command::Gat, &["ERROR\r\n", "CLIENT_ERROR bad command line format\r\n"]),
        line(Command::Cas, &["SERVER_ERROR out of memory storing object\r\n"]),
    ]
}
