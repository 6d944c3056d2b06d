//! Unit tests of reply framing and retrieval reply decomposition, with replies as memcached
//! 1.6.18 writes them.

use super::*;

const ERROR_LINES: [&[u8]; 5] = [
    b"ERROR\r\n",
    b"CLIENT_ERROR bad command line format\r\n",
    b"SERVER_ERROR object too large for cache\r\n",
    b"SERVER_ERROR out of memory storing object\r\n",
    b"CLIENT_ERROR invalid exptime argument\r\n",
];

/// Replies each command may get (besides the error lines, which every command may get).
fn replies(command: Command) -> Vec<&'static [u8]> {
    match command {
        Command::Get | Command::Gat => vec![
            b"END\r\n",
            b"VALUE a 0 1\r\nx\r\nEND\r\n",
            b"VALUE a 5 3\r\nxyz\r\nVALUE bb 4294967295 0\r\n\r\nEND\r\n",
            // Data blocks are skipped by length, so they may look like anything.
            b"VALUE k 0 13\r\nEND\r\nVALUE \r\n\r\nEND\r\n",
            b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\n",
            b"VALUE a 0 1\nx\r\nEND\n",
        ],
        Command::Gets | Command::Gats => vec![
            b"END\r\n",
            b"VALUE a 0 1 42\r\nx\r\nEND\r\n",
            b"VALUE a 0 3 1\r\nxyz\r\nVALUE b 0 2 18446744073709551615\r\n\r\n\r\nEND\r\n",
        ],
        Command::Set | Command::Add | Command::Replace | Command::Append | Command::Prepend | Command::Cas => {
            vec![b"STORED\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n", b"NOT_FOUND\r\n"]
        }
        Command::Incr | Command::Decr => vec![b"0\r\n", b"15\r\n", b"18446744073709551615\r\n", b"NOT_FOUND\r\n"],
        Command::Delete => vec![b"DELETED\r\n", b"NOT_FOUND\r\n"],
        Command::Touch => vec![b"TOUCHED\r\n", b"NOT_FOUND\r\n"],
        Command::Version => vec![b"VERSION 1.6.18\r\n"],
        Command::Stats => vec![
            b"STAT pid 5324\r\nSTAT uptime 169\r\nSTAT version 1.6.18\r\nEND\r\n",
            b"STAT 1:chunk_size 96\r\nSTAT active_slabs 2\r\nEND\r\n",
            b"RESET\r\n",
            b"OK\r\n",
            b"END\r\n",
        ],
        Command::FlushAll | Command::Verbosity => vec![b"OK\r\n"],
        Command::MetaGet => vec![b"EN\r\n", b"HD\r\n", b"HD f0 O1 kfoo\r\n", b"VA 1 f5\r\nx\r\n", b"VA 0\r\n\r\n"],
        Command::MetaSet => vec![b"HD\r\n", b"NS\r\n", b"EX O1\r\n", b"NF kfoo\r\n"],
        Command::MetaDelete => vec![b"HD\r\n", b"NF\r\n", b"EX\r\n"],
        Command::MetaArithmetic => vec![b"HD\r\n", b"VA 2\r\n15\r\n", b"NF\r\n", b"NS\r\n", b"EX\r\n"],
        Command::MetaDebug => vec![b"ME foo exp=-1 la=0 cas=2 fetch=no cls=1 size=64\r\n", b"EN\r\n"],
        Command::MetaNoop => vec![b"MN\r\n"],
        Command::Quit => vec![],
    }
}

/// Replies that must be refused: they belong to another command or to no command.
fn wrong_replies(command: Command) -> Vec<&'static [u8]> {
    let mut wrong: Vec<&'static [u8]> = vec![b"\r\n", b"HELLO\r\n", b"errors\r\n"];
    match command {
        c if c.is_retrieval() => wrong.extend([
            &b"STORED\r\n"[..],
            b"VALUE a 0\r\nEND\r\n",
            b"VALUE a 0 x\r\nEND\r\n",
            b"VALUE a 0 1 2 3\r\nx\r\nEND\r\n",
            b"VALUE a 0 1 cas\r\nx\r\nEND\r\n",
            b"VALUE a 0 1\r\nxyz\r\nEND\r\n",
            b"VALUE a 0 1\r\nx\nEND\r\n",
            b"VALUE a 0 1\r\nx\r\nSTORED\r\n",
        ]),
        c if c.is_storage() => wrong.extend([&b"DELETED\r\n"[..], b"OK\r\n", b"END\r\n"]),
        Command::Incr | Command::Decr => wrong.extend([&b"-1\r\n"[..], b"STORED\r\n", b"1 \r\n"]),
        Command::Delete => wrong.extend([&b"TOUCHED\r\n"[..], b"STORED\r\n"]),
        Command::Touch => wrong.extend([&b"DELETED\r\n"[..]]),
        Command::Version => wrong.extend([&b"VERSION\r\n"[..], b"OK\r\n"]),
        Command::FlushAll | Command::Verbosity => wrong.extend([&b"END\r\n"[..], b"STORED\r\n"]),
        Command::Quit => wrong.extend([&b"OK\r\n"[..], b"ERROR\r\n"]),
        Command::MetaGet => wrong.extend([
            &b"NS\r\n"[..],
            b"NF\r\n",
            b"MN\r\n",
            b"END\r\n",
            b"ENX\r\n",
            b"VA x\r\n",
            b"VA\r\n",
            b"VA 1\r\nxyz\r\n",
            b"VALUE a 0 1\r\nx\r\nEND\r\n",
        ]),
        Command::MetaSet => wrong.extend([&b"EN\r\n"[..], b"VA 1\r\nx\r\n", b"STORED\r\n", b"MN\r\n"]),
        Command::MetaDelete => wrong.extend([&b"NS\r\n"[..], b"VA 1\r\nx\r\n", b"EN\r\n", b"DELETED\r\n"]),
        Command::MetaArithmetic => wrong.extend([&b"EN\r\n"[..], b"15\r\n", b"VA 1\r\n12\r\n"]),
        Command::MetaDebug => wrong.extend([&b"HD\r\n"[..], b"VA 1\r\nx\r\n"]),
        Command::MetaNoop => wrong.extend([&b"HD\r\n"[..], b"EN\r\n", b"MNX\r\n"]),
        _ => {}
    }
    wrong
}

#[test]
fn every_reply_is_framed_exactly_at_every_split_point() {
    for command in Command::ALL {
        let mut all = replies(command);
        if command != Command::Quit {
            all.extend(ERROR_LINES);
        }
        for reply in all {
            let what = format!("{command:?} {:?}", String::from_utf8_lossy(reply));
            for end in 0..reply.len() {
                assert_eq!(reply_len(&reply[..end], command), Ok(None), "{what} cut at {end}");
            }
            assert_eq!(reply_len(reply, command), Ok(Some(reply.len())), "{what}");
            let mut followed = reply.to_vec();
            followed.extend_from_slice(b"VALUE a 0 1\r\nx\r\nEND\r\nSTORED\r\n");
            assert_eq!(reply_len(&followed, command), Ok(Some(reply.len())), "{what}+");
        }
    }
}

#[test]
fn replies_that_do_not_fit_the_command_are_errors() {
    for command in Command::ALL {
        for reply in wrong_replies(command) {
            assert!(reply_len(reply, command).is_err(), "{command:?} accepted {:?}", String::from_utf8_lossy(reply));
        }
    }
    assert_eq!(reply_len(b"", Command::Quit), Ok(None));
}

#[test]
fn overlong_reply_lines_are_errors() {
    let line = vec![b'S'; MAX_REPLY_LINE_LEN];
    assert_eq!(reply_len(&line[..MAX_REPLY_LINE_LEN - 1], Command::Set), Ok(None));
    assert!(reply_len(&line, Command::Set).is_err());
    let mut get = b"VALUE a 0 1\r\nx\r\n".to_vec();
    get.extend_from_slice(&line);
    assert!(reply_len(&get, Command::Get).is_err());
}

#[test]
fn value_byte_counts_beyond_memory_are_incomplete_or_errors() {
    // A count that cannot be in memory: waiting for it would be the framer's choice, but it
    // must neither panic nor overflow.
    let reply = b"VALUE a 0 18446744073709551615\r\n";
    assert!(matches!(reply_len(reply, Command::Get), Err(_) | Ok(None)));
    let reply = b"VALUE a 0 18446744073709551616\r\n";
    assert!(reply_len(reply, Command::Get).is_err());
}

#[test]
fn retrieval_items_ranges() {
    let reply = b"VALUE a 0 1 7\r\nx\r\nVALUE bb 3 5 8\r\nEND\r\n\r\nEND\r\n";
    let mut items = vec![(0..0, 0..0)];
    assert!(retrieval_items(reply, &mut items));
    assert_eq!(items.len(), 2);
    assert_eq!(&reply[items[0].0.clone()], b"a");
    assert_eq!(&reply[items[0].1.clone()], b"VALUE a 0 1 7\r\nx\r\n");
    assert_eq!(&reply[items[1].0.clone()], b"bb");
    assert_eq!(&reply[items[1].1.clone()], b"VALUE bb 3 5 8\r\nEND\r\n\r\n");

    assert!(retrieval_items(b"END\r\n", &mut items));
    assert!(items.is_empty());
}

#[test]
fn retrieval_items_refuses_anything_but_a_whole_reply() {
    let mut items = Vec::new();
    for reply in [
        &b""[..],
        b"VALUE a 0 1\r\nx\r\n",
        b"VALUE a 0 1\r\nx\r\nEND\r\nEND\r\n",
        b"VALUE a 0 1\r\nx\r\nEND",
        b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n",
        b"SERVER_ERROR busy\r\n",
        b"STORED\r\n",
        b"VALUE a 0 2\r\nx\r\nEND\r\n",
    ] {
        assert!(!retrieval_items(reply, &mut items), "{:?}", String::from_utf8_lossy(reply));
        assert!(items.is_empty());
    }
}

#[test]
fn error_replies() {
    for reply in ERROR_LINES {
        assert!(is_error_reply(reply));
    }
    assert!(is_error_reply(b"ERROR"));
    assert!(is_error_reply(b"SERVER_ERROR\r\n"));
    for reply in
        [&b"ERRORS\r\n"[..], b"END\r\n", b"STORED\r\n", b"VALUE ERROR 0 1\r\nx\r\nEND\r\n", b"CLIENT_ERRORx\r\n", b""]
    {
        assert!(!is_error_reply(reply), "{:?}", String::from_utf8_lossy(reply));
    }
}
