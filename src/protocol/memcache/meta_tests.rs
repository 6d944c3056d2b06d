//! Unit and property tests of meta request parsing, quiet mode and reply framing.

use super::meta::{decode_key, hides, write_forwarded, write_null_reply, MAX_DECODED_KEY_LEN};
use super::*;
use proptest::prelude::*;

fn parse(buf: &[u8]) -> (Parse, Vec<std::ops::Range<usize>>) {
    let mut keys = Vec::new();
    let p = parse_request(buf, &mut keys, 1 << 20);
    (p, keys)
}

fn request(buf: &[u8]) -> (Request, Vec<u8>) {
    match parse(buf) {
        (Parse::Request(r), keys) => {
            let key = keys.first().map_or(Vec::new(), |k| buf[k.clone()].to_vec());
            (r, key)
        }
        (other, _) => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn forwarded(buf: &[u8]) -> Vec<u8> {
    let (r, _) = request(buf);
    let mut out = Vec::new();
    write_forwarded(&mut out, &buf[..r.len], r.meta.as_ref());
    out
}

#[test]
fn meta_requests_parse_with_their_key_and_the_operation_they_act_as() {
    for (line, command, op) in [
        (&b"mg foo v t\r\n"[..], Command::MetaGet, Command::Get),
        (b"mg foo\r\n", Command::MetaGet, Command::Get),
        (b"md foo q\r\n", Command::MetaDelete, Command::Delete),
        (b"ma foo\r\n", Command::MetaArithmetic, Command::Incr),
        (b"ma foo MD\r\n", Command::MetaArithmetic, Command::Decr),
        (b"ma foo M-\r\n", Command::MetaArithmetic, Command::Decr),
        (b"ma foo M+ v\r\n", Command::MetaArithmetic, Command::Incr),
        (b"ms foo 2\r\nhi\r\n", Command::MetaSet, Command::Set),
        (b"ms foo 2 MS\r\nhi\r\n", Command::MetaSet, Command::Set),
        (b"ms foo 2 ME\r\nhi\r\n", Command::MetaSet, Command::Add),
        (b"ms foo 2 MA\r\nhi\r\n", Command::MetaSet, Command::Append),
        (b"ms foo 2 MP\r\nhi\r\n", Command::MetaSet, Command::Prepend),
        (b"ms foo 2 MR\r\nhi\r\n", Command::MetaSet, Command::Replace),
        (b"ms foo 2 C5\r\nhi\r\n", Command::MetaSet, Command::Cas),
        (b"ms foo 2 MR C5\r\nhi\r\n", Command::MetaSet, Command::Cas),
        (b"me foo\r\n", Command::MetaDebug, Command::Get),
    ] {
        let (r, key) = request(line);
        assert_eq!((r.command, r.len, key.as_slice()), (command, line.len(), &b"foo"[..]), "{line:?}");
        assert_eq!(r.meta.unwrap().op, op, "{line:?}");
    }
    let (r, key) = request(b"mn\r\n");
    assert_eq!((r.command, r.meta, key.len()), (Command::MetaNoop, None, 0));
    assert_eq!(request(b"mn anything at all\r\n").0.command, Command::MetaNoop);
}

#[test]
fn q_is_stripped_before_forwarding_and_nothing_else_changes() {
    assert_eq!(forwarded(b"mg foo v q k O1\r\n"), b"mg foo v k O1\r\n");
    assert_eq!(forwarded(b"mg foo q\r\n"), b"mg foo\r\n");
    assert_eq!(forwarded(b"ms foo 2 q T0\r\nq \r\n"), b"ms foo 2 T0\r\nq \r\n");
    assert_eq!(forwarded(b"md Zm9v b q \r\n"), b"md Zm9v b \r\n", "the memcache package's trailing space");
    assert_eq!(forwarded(b"mg foo v O1\r\n"), b"mg foo v O1\r\n");
    // A repeated flag goes as sent, for memcached to refuse (errors are never quiet).
    for dup in [&b"mg foo q q\r\n"[..], b"mg foo q v v\r\n", b"md foo q O1 O2\r\n", b"ma foo q \xff \xfe\r\n"] {
        assert_eq!(forwarded(dup), dup);
        assert_eq!(request(dup).0.meta.unwrap().quiet, None);
    }
}

#[test]
fn keys_and_lengths_follow_memcached() {
    let long = format!("mg {} v\r\n", "k".repeat(251));
    assert_eq!(parse(long.as_bytes()).0, Parse::Error { reply: BAD_FORMAT_REPLY, consumed: long.len(), skip: 0 });
    let ok = format!("mg {} v\r\n", "k".repeat(250));
    assert_eq!(request(ok.as_bytes()).1.len(), 250);
    // memcached has no character rule for meta keys (a tab is part of the token).
    assert_eq!(request(b"mg a\tb v\r\n").1, b"a\tb");
    let too_many = format!("mg k{}\r\n", " v".repeat(18));
    assert_eq!(
        parse(too_many.as_bytes()).0,
        Parse::Error { reply: "CLIENT_ERROR options flags are too long\r\n", consumed: too_many.len(), skip: 0 }
    );
    assert!(matches!(parse(format!("mg k{}\r\n", " v".repeat(17)).as_bytes()).0, Parse::Request(_)));
}

#[test]
fn meta_set_values_are_framed_and_bounded() {
    let mut keys = Vec::new();
    assert_eq!(parse_request(b"ms k 5\r\nab", &mut keys, 100), Parse::Incomplete);
    assert_eq!(parse_request(b"ms k 101 q\r\nab", &mut keys, 100), Parse::TooLarge { consumed: 14, skip: 101 + 2 - 2 });
    assert_eq!(
        parse_request(b"ms k 2\r\nabc\r\n", &mut keys, 100),
        Parse::Error { reply: BAD_DATA_CHUNK_REPLY, consumed: 12, skip: 0 }
    );
    // The value may hold anything, newlines and commands included.
    let (r, _) = request(b"ms k 13\r\ndelete victim\r\nmn\r\n");
    assert_eq!(r.len, 24);
}

#[test]
fn base64_keys_decode_as_memcached_decodes_them() {
    let mut out = [0; MAX_DECODED_KEY_LEN];
    let decode = |t: &[u8], out: &mut [u8; MAX_DECODED_KEY_LEN]| decode_key(t, out).map(|n| out[..n].to_vec());
    assert_eq!(decode(b"Zm9v", &mut out), Some(b"foo".to_vec()));
    assert_eq!(decode(b"Zm8=", &mut out), Some(b"fo".to_vec()));
    assert_eq!(decode(b"Zg==", &mut out), Some(b"f".to_vec()));
    assert_eq!(decode(b"/+8A", &mut out), Some(vec![0xff, 0xef, 0x00]));
    for bad in [&b"Zm9"[..], b"Zm9v=", b"Z===", b"Zg==Zm9v", b"!!!!", b"====", b""] {
        assert_eq!(decode(bad, &mut out), None, "{bad:?}");
    }
    let longest = "A".repeat(248);
    assert_eq!(decode(longest.as_bytes(), &mut out).map(|k| k.len()), Some(186));
}

#[test]
fn quiet_mode_hides_what_memcached_hides() {
    assert!(hides(Command::MetaGet, b"EN\r\n"));
    assert!(!hides(Command::MetaGet, b"HD\r\n"));
    assert!(!hides(Command::MetaGet, b"VA 1\r\nx\r\n"));
    for c in [Command::MetaSet, Command::MetaDelete, Command::MetaArithmetic] {
        assert!(hides(c, b"HD\r\n"));
        assert!(hides(c, b"HD O1 kfoo\r\n"));
        for shown in [&b"NF\r\n"[..], b"NS\r\n", b"EX\r\n", b"CLIENT_ERROR bad command line format\r\n", b"HDX\r\n"] {
            assert!(!hides(c, shown), "{c:?} {shown:?}");
        }
    }
    assert!(hides(Command::MetaArithmetic, b"VA 2 O1\r\n10\r\n"));
    assert!(!hides(Command::MetaSet, b"VA 2\r\n10\r\n"));
    assert!(!hides(Command::Get, b"END\r\n"));
}

/// A meta request line with random flags, and a stream of random meta replies.
/// The replies memcached 1.6.18 gave these requests for a key it does not hold.
#[test]
fn null_replies_echo_opaque_and_key_as_memcached_does() {
    let null = |command: Command, quiet: bool, raw: &[u8]| {
        let mut out = Vec::new();
        write_null_reply(&mut out, command, quiet, raw);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(null(Command::MetaGet, false, b"mg nokey v O12 k\r\n"), "EN O12 knokey\r\n");
    assert_eq!(null(Command::MetaGet, false, b"mg bm9rZXk= b v k O3\r\n"), "EN kbm9rZXk= b O3\r\n");
    assert_eq!(null(Command::MetaSet, false, b"ms nokey 1 MR O5 k\r\nx\r\n"), "NS O5 knokey\r\n");
    assert_eq!(null(Command::MetaSet, false, b"ms bm9rZXk= 1 b MR k O8\r\nx\r\n"), "NS kbm9rZXk= b O8\r\n");
    assert_eq!(null(Command::MetaDelete, true, b"md nokey O6 k\r\n"), "NF O6 knokey\r\n", "NF is never quiet");
    assert_eq!(null(Command::MetaArithmetic, false, b"ma nokey O7 k\r\n"), "NF O7 knokey\r\n");
    assert_eq!(null(Command::MetaDebug, false, b"me nokey\r\n"), "EN\r\n");
    assert_eq!(null(Command::MetaGet, true, b"mg nokey v\r\n"), "", "a quiet miss is hidden");
    assert_eq!(null(Command::MetaGet, false, b"mg k\n"), "EN\r\n");
}

fn meta_reply() -> impl Strategy<Value = (Command, Vec<u8>)> {
    let flags = proptest::collection::vec("( f[0-9]{1,3}| O[0-9]{1,5}| k[a-z]{1,5}| t-1| s[0-9])", 0..4)
        .prop_map(|f| f.concat());
    let data = proptest::collection::vec(any::<u8>(), 0..20);
    prop_oneof![
        (flags.clone(), data.clone()).prop_map(|(f, d)| {
            let mut r = format!("VA {}{f}\r\n", d.len()).into_bytes();
            r.extend_from_slice(&d);
            r.extend_from_slice(b"\r\n");
            (Command::MetaGet, r)
        }),
        flags.clone().prop_map(|f| (Command::MetaGet, format!("HD{f}\r\n").into_bytes())),
        Just((Command::MetaGet, b"EN\r\n".to_vec())),
        proptest::sample::select(&["HD", "NS", "EX", "NF"][..]).prop_flat_map(move |c| flags
            .clone()
            .prop_map(move |f| (Command::MetaSet, format!("{c}{f}\r\n").into_bytes()))),
        data.prop_map(|d| {
            let mut r = format!("VA {}\r\n", d.len()).into_bytes();
            r.extend_from_slice(&d);
            r.extend_from_slice(b"\r\n");
            (Command::MetaArithmetic, r)
        }),
        Just((Command::MetaDelete, b"CLIENT_ERROR invalid or duplicate flag\r\n".to_vec())),
        Just((Command::MetaDebug, b"ME foo exp=-1 la=0 cas=2 fetch=no cls=1 size=64\r\n".to_vec())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A stream of meta replies, split into reads anywhere, frames into exactly its replies, with the framer
    /// resumed across reads as a backend connection resumes it.
    #[test]
    fn meta_replies_frame_in_any_chunking(
        exchange in proptest::collection::vec(meta_reply(), 1..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let stream: Vec<u8> = exchange.iter().flat_map(|(_, r)| r.clone()).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(stream.len());
        let mut framed = Vec::new();
        let mut start = 0;
        let mut framer = ReplyFramer::new(exchange[0].0);
        for cut in cuts {
            while framed.len() < exchange.len() {
                let buf = &stream[start..cut.max(start)];
                if buf.len() < framer.needed() {
                    break;
                }
                match framer.parse(buf) {
                    Ok(Some(len)) => {
                        framed.push(stream[start..start + len].to_vec());
                        start += len;
                        if let Some((next, _)) = exchange.get(framed.len()) {
                            framer.reset(*next);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(TestCaseError::fail(e)),
                }
            }
        }
        let want: Vec<Vec<u8>> = exchange.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(framed, want);
    }

    /// Meta requests cut anywhere parse the same once whole, and never panic on arbitrary flags.
    #[test]
    fn meta_requests_parse_the_same_whatever_arrives_first(
        verb in proptest::sample::select(&["mg", "md", "ma", "me", "mn"][..]),
        flags in proptest::collection::vec("[ -~]{1,4}", 0..6),
        cut in any::<usize>(),
    ) {
        let line = format!("{verb} key {}\r\n", flags.join(" ")).into_bytes();
        let whole = parse(&line).0;
        let cut = cut % line.len();
        prop_assert_eq!(parse(&line[..cut]).0, Parse::Incomplete);
        if let Parse::Request(r) = whole {
            prop_assert_eq!(r.len, line.len());
        }
    }
}
