//! Unit tests of [`parse_request`], one request at a time. Expectations follow what memcached
//! 1.6.18 answers to the same bytes, except where the module documents a deliberate difference.

use super::*;

const MAX_VALUE: usize = 1 << 20;

/// A parsed request plus the bytes of its keys and exptime.
struct Parsed<'a> {
    request: Request,
    keys: Vec<&'a [u8]>,
    exptime: Option<&'a [u8]>,
}

fn parse_with(buf: &[u8], max_value: usize) -> (Parse, Vec<std::ops::Range<usize>>) {
    // Stale entries must be cleared by the parser.
    let mut keys = vec![0..1, 5..9];
    let parse = parse_request(buf, &mut keys, max_value);
    (parse, keys)
}

fn request(buf: &[u8]) -> Parsed<'_> {
    match parse_with(buf, MAX_VALUE) {
        (Parse::Request(request), keys) => Parsed {
            keys: keys.into_iter().map(|r| &buf[r]).collect(),
            exptime: request.exptime.clone().map(|r| &buf[r]),
            request,
        },
        (other, _) => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn error(buf: &[u8]) -> (&'static str, usize, usize) {
    match parse_with(buf, MAX_VALUE) {
        (Parse::Error { reply, consumed, skip }, keys) => {
            assert!(keys.is_empty(), "keys left behind by an error");
            (reply, consumed, skip)
        }
        (other, _) => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn k251() -> String {
    "k".repeat(MAX_KEY_LEN + 1)
}

#[test]
fn retrieval_commands() {
    let p = request(b"get a\r\n");
    assert_eq!(p.request.command, Command::Get);
    assert_eq!(p.keys, [b"a"]);
    assert_eq!((p.request.len, p.request.line_len), (7, 7));
    assert!(!p.request.noreply);
    assert_eq!(p.exptime, None);

    let p = request(b"gets a bb ccc\r\n");
    assert_eq!(p.request.command, Command::Gets);
    assert_eq!(p.keys, [&b"a"[..], b"bb", b"ccc"]);

    let p = request(b"gat 10 a b\r\n");
    assert_eq!(p.request.command, Command::Gat);
    assert_eq!(p.exptime, Some(&b"10"[..]));
    assert_eq!(p.keys, [b"a", b"b"]);

    let p = request(b"gats -1 a\r\n");
    assert_eq!(p.request.command, Command::Gats);
    assert_eq!(p.exptime, Some(&b"-1"[..]));
    assert_eq!(p.keys, [b"a"]);
}

#[test]
fn spacing_and_bare_newlines() {
    let p = request(b"  get   a  b \r\n");
    assert_eq!(p.keys, [b"a", b"b"]);
    assert_eq!(p.request.len, 15);

    let p = request(b"get a\nget b\r\n");
    assert_eq!(p.keys, [b"a"]);
    assert_eq!(p.request.len, 6);

    let p = request(b"set k 0 0 1\nx\r\n");
    assert_eq!((p.request.line_len, p.request.len), (12, 15));
}

#[test]
fn storage_commands() {
    for command in [Command::Set, Command::Add, Command::Replace, Command::Append, Command::Prepend] {
        let buf = format!("{} key 1 2 3\r\nabc\r\nget x\r\n", command.name());
        let p = request(buf.as_bytes());
        assert_eq!(p.request.command, command);
        assert_eq!(p.keys, [b"key"]);
        let line_len = command.name().len() + 12;
        assert_eq!(p.request.line_len, line_len);
        assert_eq!(p.request.len, line_len + 5);
        assert!(!p.request.noreply);
    }
    let p = request(b"set k 0 0 5 noreply\r\nhello\r\n");
    assert!(p.request.noreply);
    assert_eq!(p.request.len, 28);

    // memcached ignores a last token that is not "noreply".
    assert!(!request(b"set k 0 0 1 foo\r\nx\r\n").request.noreply);

    // Values are framed by their length, so they may hold anything.
    let p = request(b"set k 0 0 4\r\n\r\n\r\n\r\n");
    assert_eq!(p.request.len, 19);
    assert_eq!(request(b"add k 0 0 0\r\n\r\n").request.len, 15);

    // Numbers at their limits, memcached's optional '+', negative exptimes.
    request(b"set k 4294967295 -1 +1\r\nx\r\n");
    request(b"set k 0 2147483647 1\r\nx\r\n");
    request(b"set k 0 -2147483648 1\r\nx\r\n");
}

#[test]
fn cas() {
    let p = request(b"cas k 0 0 1 99\r\nx\r\n");
    assert_eq!(p.request.command, Command::Cas);
    assert_eq!(p.keys, [b"k"]);
    assert!(!p.request.noreply);
    let p = request(b"cas k 0 0 1 18446744073709551615 noreply\r\nx\r\n");
    assert!(p.request.noreply);
}

#[test]
fn single_key_commands() {
    for (buf, command, noreply) in [
        (&b"incr k 1\r\n"[..], Command::Incr, false),
        (b"decr k 18446744073709551615 noreply\r\n", Command::Decr, true),
        (b"incr k 1 foo\r\n", Command::Incr, false),
        (b"delete k\r\n", Command::Delete, false),
        (b"delete k 0\r\n", Command::Delete, false),
        (b"delete k noreply\r\n", Command::Delete, true),
        (b"delete k 0 noreply\r\n", Command::Delete, true),
        (b"touch k 10\r\n", Command::Touch, false),
        (b"touch k -1 noreply\r\n", Command::Touch, true),
    ] {
        let p = request(buf);
        assert_eq!((p.request.command, p.request.noreply), (command, noreply));
        assert_eq!(p.keys, [b"k"]);
        assert_eq!((p.request.len, p.request.line_len), (buf.len(), buf.len()));
        assert_eq!(p.exptime, None);
    }
}

#[test]
fn keyless_commands() {
    for (buf, command, noreply) in [
        (&b"version\r\n"[..], Command::Version, false),
        (b"version foo\r\n", Command::Version, false),
        (b"quit\r\n", Command::Quit, false),
        (b"quit now\r\n", Command::Quit, false),
        (b"stats\r\n", Command::Stats, false),
        (b"stats slabs\r\n", Command::Stats, false),
        (b"stats a b c d e f g h i j\r\n", Command::Stats, false),
        (b"flush_all\r\n", Command::FlushAll, false),
        (b"flush_all 10\r\n", Command::FlushAll, false),
        (b"flush_all 0 0\r\n", Command::FlushAll, false),
        (b"flush_all noreply\r\n", Command::FlushAll, true),
        (b"flush_all 0 noreply\r\n", Command::FlushAll, true),
        (b"verbosity 1\r\n", Command::Verbosity, false),
        (b"verbosity 1 2\r\n", Command::Verbosity, false),
        (b"verbosity 1 noreply\r\n", Command::Verbosity, true),
    ] {
        let p = request(buf);
        assert_eq!((p.request.command, p.request.noreply), (command, noreply));
        assert!(p.keys.is_empty());
        assert_eq!((p.request.len, p.request.line_len), (buf.len(), buf.len()));
    }
}

#[test]
fn only_the_first_request_is_parsed() {
    let p = request(b"get a\r\nset b 0 0 1\r\nx\r\n");
    assert_eq!((p.request.len, p.keys.len()), (7, 1));
}

#[test]
fn unknown_and_malformed_lines_get_memcached_errors() {
    let k251 = k251();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\r\n".to_vec(), ERROR_REPLY),
        (b"   \r\n".to_vec(), ERROR_REPLY),
        (b"GET a\r\n".to_vec(), ERROR_REPLY),
        (b"foo bar\r\n".to_vec(), ERROR_REPLY),
        (b"get\ra\r\n".to_vec(), ERROR_REPLY),
        (b"mg\r\n".to_vec(), ERROR_REPLY),
        (b"md\r\n".to_vec(), ERROR_REPLY),
        (b"ma\r\n".to_vec(), ERROR_REPLY),
        (b"me\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"MG a v\r\n".to_vec(), ERROR_REPLY),
        (b"ms\r\n".to_vec(), ERROR_REPLY),
        (b"ms a\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"ms a x\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"ms a -1\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"ms a 2147483646\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"ms a 99999999999\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"MS a 1\r\n".to_vec(), ERROR_REPLY),
        (b"get\r\n".to_vec(), ERROR_REPLY),
        (b"gat\r\n".to_vec(), ERROR_REPLY),
        (b"gat 10\r\n".to_vec(), ERROR_REPLY),
        (b"gat a b\r\n".to_vec(), BAD_EXPTIME_REPLY),
        (b"gats 1.5 a\r\n".to_vec(), BAD_EXPTIME_REPLY),
        (format!("get {k251}\r\n").into_bytes(), BAD_KEY_REPLY),
        (format!("get a {k251} b\r\n").into_bytes(), BAD_KEY_REPLY),
        (b"get a\x01b\r\n".to_vec(), BAD_KEY_REPLY),
        (b"get a\tb\r\n".to_vec(), BAD_KEY_REPLY),
        (b"get a\x7f\r\n".to_vec(), BAD_KEY_REPLY),
        (b"get a\r\r\n".to_vec(), BAD_KEY_REPLY),
        (b"incr k\r\n".to_vec(), ERROR_REPLY),
        (b"incr k 1 noreply x\r\n".to_vec(), ERROR_REPLY),
        (b"incr k -1\r\n".to_vec(), BAD_DELTA_REPLY),
        (b"decr k 18446744073709551616\r\n".to_vec(), BAD_DELTA_REPLY),
        (format!("incr {k251} 1\r\n").into_bytes(), BAD_KEY_REPLY),
        (b"delete\r\n".to_vec(), ERROR_REPLY),
        (b"delete k 5\r\n".to_vec(), DELETE_USAGE_REPLY),
        (b"delete k 0 0\r\n".to_vec(), DELETE_USAGE_REPLY),
        (b"delete k 0 noreply x\r\n".to_vec(), ERROR_REPLY),
        (format!("delete {k251}\r\n").into_bytes(), BAD_KEY_REPLY),
        (b"touch k\r\n".to_vec(), ERROR_REPLY),
        (b"touch k abc\r\n".to_vec(), BAD_EXPTIME_REPLY),
        (b"touch k 1 noreply x\r\n".to_vec(), ERROR_REPLY),
        (b"touch k\x01 1\r\n".to_vec(), BAD_KEY_REPLY),
        (b"flush_all x\r\n".to_vec(), BAD_EXPTIME_REPLY),
        (b"flush_all 1 2 3\r\n".to_vec(), ERROR_REPLY),
        (b"verbosity\r\n".to_vec(), ERROR_REPLY),
        (b"verbosity x\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"verbosity 1 2 3\r\n".to_vec(), ERROR_REPLY),
    ];
    for (buf, expected) in cases {
        let what = String::from_utf8_lossy(&buf).into_owned();
        assert_eq!(error(&buf), (expected, buf.len(), 0), "{what:?}");
        // Followed by more requests, only the bad line is consumed.
        let mut longer = buf.clone();
        longer.extend_from_slice(b"get a\r\n");
        assert_eq!(error(&longer), (expected, buf.len(), 0), "{what:?} + more");
    }
}

#[test]
fn noreply_silences_local_errors_as_memcached_does() {
    let k251 = k251();
    let cases: Vec<Vec<u8>> = vec![
        b"incr k abc noreply\r\n".to_vec(),
        format!("incr {k251} 1 noreply\r\n").into_bytes(),
        b"delete k 5 noreply\r\n".to_vec(),
        b"touch k abc noreply\r\n".to_vec(),
        b"flush_all x noreply\r\n".to_vec(),
        b"verbosity noreply\r\n".to_vec(),
        b"set k 0 0 -1 noreply\r\n".to_vec(),
    ];
    for buf in cases {
        assert_eq!(error(&buf), ("", buf.len(), 0), "{:?}", String::from_utf8_lossy(&buf));
    }
}

#[test]
fn storage_lines_with_a_bad_byte_count_drop_only_the_line() {
    for buf in [
        &b"set k 0 0 -1\r\nx\r\n"[..],
        b"set k 0 0 abc\r\nx\r\n",
        b"set k 0 0 2147483648\r\nx\r\n",
        b"set k 0 0 4294967297\r\nx\r\n",
        b"set k 0 0 1x\r\nx\r\n",
    ] {
        let line_len = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(error(buf), (BAD_FORMAT_REPLY, line_len, 0));
    }
}

#[test]
fn storage_lines_with_a_wrong_argument_count_get_error() {
    // Too few arguments: no byte count to frame the data block by, so only the line goes.
    for buf in [&b"set k 0 0\r\nx\r\n"[..], b"cas k 0 0 1\r\nx\r\n"] {
        let line_len = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(error(buf), (ERROR_REPLY, line_len, 0));
    }
    // Too many: the byte count is still at its place, and the data block goes with the line.
    for buf in [
        &b"set k 0 0 1 noreply extra\r\nx\r\n"[..],
        b"cas k 0 0 1 2 noreply x\r\nx\r\n",
        b"set k 0 0 1 a b c d e f g\r\nx\r\n",
    ] {
        assert_eq!(error(buf), (ERROR_REPLY, buf.len(), 0));
    }
}

#[test]
fn storage_lines_with_a_readable_byte_count_drop_their_data_block() {
    let k251 = k251();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (format!("set {k251} 0 0 1\r\nx\r\n").into_bytes(), BAD_KEY_REPLY),
        (b"set a\x01 0 0 1\r\nx\r\n".to_vec(), BAD_KEY_REPLY),
        (format!("set {k251} 0 0 1 noreply\r\nx\r\n").into_bytes(), ""),
        (b"set k -1 0 1\r\nx\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"set k 4294967296 0 1\r\nx\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"set k 0x1 0 1\r\nx\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"set k 0 2147483648 1\r\nx\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"set k 0 abc 1\r\nx\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"cas k 0 0 1 -1\r\nx\r\n".to_vec(), BAD_FORMAT_REPLY),
        (b"cas k 0 0 1 abc noreply\r\nx\r\n".to_vec(), ""),
    ];
    for (buf, reply) in cases {
        let what = String::from_utf8_lossy(&buf).into_owned();
        assert_eq!(error(&buf), (reply, buf.len(), 0), "{what:?}");
        // The data block not here yet: what is here is consumed, the rest skipped later.
        let line_len = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(error(&buf[..line_len]), (reply, line_len, 3), "{what:?} line only");
        assert_eq!(error(&buf[..line_len + 2]), (reply, line_len + 2, 1), "{what:?}");
    }
}

#[test]
fn data_block_without_its_terminator_is_a_bad_data_chunk() {
    // memcached reads <bytes> + 2 bytes, finds no \r\n at their end, and goes on after them.
    assert_eq!(error(b"set k 0 0 1\r\nxyz\r\nget a\r\n"), (BAD_DATA_CHUNK_REPLY, 16, 0));
    assert_eq!(error(b"set k 0 0 1\r\nx\nget a\r\n"), (BAD_DATA_CHUNK_REPLY, 16, 0));
    assert_eq!(error(b"set k 0 0 1\r\nxy\r\n"), (BAD_DATA_CHUNK_REPLY, 16, 0));
    assert_eq!(error(b"set k 0 0 1 noreply\r\nxyz\r\n"), ("", 24, 0));
}

#[test]
fn too_large_values_are_discarded_as_they_arrive() {
    let max_value = 10;
    let line = b"set k 0 0 11\r\n";
    let mut full = line.to_vec();
    full.extend_from_slice(&[b'v'; 11]);
    full.extend_from_slice(b"\r\nget a\r\n");
    let total = line.len() + 13;
    for available in line.len()..=full.len() {
        let (parse, keys) = parse_with(&full[..available], max_value);
        let consumed = available.min(total);
        assert_eq!(parse, Parse::TooLarge { consumed, skip: total - consumed });
        assert!(keys.is_empty());
    }
    // At the limit it is an ordinary request.
    let mut ok = b"set k 0 0 10\r\n".to_vec();
    ok.extend_from_slice(&[b'v'; 10]);
    ok.extend_from_slice(b"\r\n");
    assert!(matches!(parse_with(&ok, max_value).0, Parse::Request(_)));
    // noreply: discarded silently.
    assert_eq!(
        parse_with(b"set k 0 0 11 noreply\r\n", max_value).0,
        Parse::Error { reply: "", consumed: 22, skip: 13 }
    );
    // The largest byte count memcached reads, against the default limit.
    assert_eq!(
        parse_with(b"set k 0 0 2147483647\r\n", MAX_VALUE).0,
        Parse::TooLarge { consumed: 22, skip: 2147483649 }
    );
}

#[test]
fn every_proper_prefix_of_a_request_is_incomplete() {
    let requests: [&[u8]; 8] = [
        b"get a bb\r\n",
        b"gat 10 a\r\n",
        b"set k 0 0 5 noreply\r\nhello\r\n",
        b"cas k 1 2 3 4\r\nabc\r\n",
        b"incr k 1\n",
        b"delete k 0 noreply\r\n",
        b"version\r\n",
        b"flush_all 0\r\n",
    ];
    for buf in requests {
        for end in 0..buf.len() {
            assert_eq!(
                parse_with(&buf[..end], MAX_VALUE),
                (Parse::Incomplete, vec![]),
                "{:?}",
                String::from_utf8_lossy(&buf[..end])
            );
        }
        assert!(matches!(parse_with(buf, MAX_VALUE).0, Parse::Request(_)));
    }
}

#[test]
fn binary_protocol_is_answered_in_kind() {
    let mut get = vec![0x80, 0x0c, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
    get.extend_from_slice(&[0; 8]);
    for end in [1, 4, 23] {
        assert_eq!(parse_with(&get[..end], MAX_VALUE).0, Parse::Incomplete, "the header is needed to answer");
    }
    let binary = Parse::Binary { opcode: 0x0c, opaque: [1, 2, 3, 4] };
    assert_eq!(parse_with(&get, MAX_VALUE).0, binary);
    get.push(b'k');
    assert_eq!(parse_with(&get, MAX_VALUE).0, binary);

    let mut out = b"x".to_vec();
    write_binary_refusal(&mut out, 0x0c, [1, 2, 3, 4]);
    let body = BINARY_PROTOCOL_MESSAGE.as_bytes();
    let mut header = vec![0x81, 0x0c, 0, 0, 0, 0, 0x00, 0x83, 0, 0, 0, body.len() as u8, 1, 2, 3, 4];
    header.extend_from_slice(&[0; 8]);
    assert_eq!(out[1..BINARY_HEADER_LEN + 1], header[..]);
    assert_eq!(&out[BINARY_HEADER_LEN + 1..], body);
}

#[test]
fn a_refused_meta_set_discards_its_data_block() {
    // The data block is never read as a command: `delete victim` here is ms's value.
    let long = format!("ms {} 13\r\ndelete victim\r\n", "k".repeat(251));
    assert_eq!(error(long.as_bytes()), (BAD_FORMAT_REPLY, long.len(), 0));
    let many = format!("ms k 13{}\r\ndelete victim\r\n", " O1 F1 T1 k c s q b I C1 MS N1 E1 R1 a d e f");
    assert_eq!(error(many.as_bytes()), ("CLIENT_ERROR options flags too long\r\n", many.len(), 0));
    assert_eq!(error(b"ms k 13\r\ndelete victim!!\r\n"), (BAD_DATA_CHUNK_REPLY, 24, 0));
    // Before the block has arrived: the rest is skipped as it comes.
    let long = format!("ms {} 13\r\ndel", "k".repeat(251));
    assert_eq!(error(long.as_bytes()), (BAD_FORMAT_REPLY, long.len(), 13 + 2 - 3));
}

#[test]
fn a_storage_line_with_too_many_arguments_discards_its_data_block() {
    // memcached answers ERROR, then reads the value as a command; here the value goes with the line.
    assert_eq!(error(b"set k 0 0 13 a b\r\ndelete victim\r\n"), (ERROR_REPLY, 33, 0));
    assert_eq!(error(b"set k 0 0 5 noreply x\r\nhello\r\n"), (ERROR_REPLY, 30, 0), "not noreply: ERROR");
    assert_eq!(error(b"cas k 0 0 1 9 noreply x y z\r\nx\r\n"), (ERROR_REPLY, 32, 0));
    assert_eq!(error(b"append k 0 0 100 a b\r\n"), (ERROR_REPLY, 22, 102));
    // Without a readable length only the line can go, as in memcached.
    assert_eq!(error(b"set k 0 0 x a b\r\n"), (ERROR_REPLY, 17, 0));
    assert_eq!(error(b"set k 0 0\r\nhello\r\n"), (ERROR_REPLY, 11, 0));
}

#[test]
fn noreply_is_the_last_token_wherever_it_stands() {
    // memcached's set_noreply_maybe: a bad argument in a noreply request is silent.
    for line in [
        &b"incr k noreply\r\n"[..],
        b"decr k noreply\r\n",
        b"touch k noreply\r\n",
        b"set k 0 0 noreply\r\n",
        b"verbosity noreply\r\n",
    ] {
        assert_eq!(error(line), ("", line.len(), 0), "{:?}", String::from_utf8_lossy(line));
    }
    // cas's unique in noreply position: silent, and the value goes too.
    assert_eq!(error(b"cas k 0 0 1 noreply\r\nx\r\n"), ("", 24, 0));
    // A token count memcached refuses is ERROR whatever the last token.
    assert_eq!(error(b"incr noreply\r\n"), (ERROR_REPLY, 14, 0));
    assert_eq!(error(b"set k 0 noreply\r\n"), (ERROR_REPLY, 17, 0));
    // `delete noreply` deletes the key "noreply" and is answered, as in memcached (noreply needs a key before it).
    let p = request(b"delete noreply\r\n");
    assert!(!p.request.noreply);
    assert_eq!(p.keys, [&b"noreply"[..]]);
    assert!(request(b"flush_all noreply\r\n").request.noreply);
}

#[test]
fn line_length_limits() {
    let fatal = Parse::Fatal { reply: LINE_TOO_LONG_REPLY };
    // Ordinary commands: a newline must come within MAX_LINE_LEN bytes.
    let junk = vec![b'x'; MAX_LINE_LEN];
    assert_eq!(parse_with(&junk[..MAX_LINE_LEN - 1], MAX_VALUE).0, Parse::Incomplete);
    assert_eq!(parse_with(&junk, MAX_VALUE).0, fatal);
    let mut longest = b"set ".to_vec();
    longest.resize(MAX_LINE_LEN - 2, b'k');
    longest.extend_from_slice(b"\r\n");
    assert_eq!(error(&longest), (ERROR_REPLY, MAX_LINE_LEN, 0));
    let mut too_long = longest[..MAX_LINE_LEN - 2].to_vec();
    too_long.extend_from_slice(b"k\r\n");
    assert_eq!(parse_with(&too_long, MAX_VALUE).0, fatal);
    let mut spaces = vec![b' '; MAX_LINE_LEN + 10];
    spaces.extend_from_slice(b"get a\r\n");
    assert_eq!(parse_with(&spaces, MAX_VALUE).0, fatal);

    // Multi-gets may run longer, up to MAX_RETRIEVAL_LINE_LEN.
    let mut get = b"get".to_vec();
    let mut expected_keys = 0;
    while get.len() < MAX_RETRIEVAL_LINE_LEN - 20 {
        get.extend_from_slice(format!(" key:{expected_keys}").as_bytes());
        expected_keys += 1;
    }
    assert_eq!(parse_with(&get, MAX_VALUE).0, Parse::Incomplete);
    let mut complete = get.clone();
    complete.extend_from_slice(b"\r\n");
    match parse_with(&complete, MAX_VALUE) {
        (Parse::Request(request), keys) => {
            assert_eq!(request.len, complete.len());
            assert_eq!(keys.len(), expected_keys);
        }
        (other, _) => panic!("{other:?}"),
    }
    get.resize(MAX_RETRIEVAL_LINE_LEN, b'k');
    assert_eq!(parse_with(&get, MAX_VALUE).0, fatal);
    let mut gat = b"gat 0 ".to_vec();
    gat.resize(MAX_LINE_LEN * 2, b'k');
    assert_eq!(parse_with(&gat, MAX_VALUE).0, Parse::Incomplete);
}
