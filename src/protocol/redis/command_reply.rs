//! `COMMAND`, `COMMAND COUNT / INFO / DOCS / GETKEYS / LIST` answered from the proxy's command table, in redis 7's
//! reply format (RESP2 arrays, RESP3 sets and maps), so client libraries and tools that read key positions from the
//! server read the proxy's.
//!
//! Each COMMAND INFO entry has redis 7's ten fields: name, arity, flags, first key, last key, step, ACL categories,
//! tips, key specifications and subcommands. The table knows where keys are and whether a command only reads, so
//! flags are `readonly` or `write` (with `movablekeys` when keys are found by scanning arguments), ACL categories
//! `@read` / `@write` (`@connection` for what the proxy answers itself), key specifications are derived from the
//! table's key positions (see [`write_key_specs`]), and tips and subcommands are empty. `COMMAND GETKEYS` knows
//! every key.
//! COMMAND DOCS has no documentation to give: each known command gets an empty map.

use std::ops::Range;

use super::command_table::COMMANDS;
use super::commands::{arity_ok, key_indices, lookup, printable, CommandInfo, CommandKind, KeySpec};
use super::encode::{
    write_array_header, write_bulk, write_error, write_integer, write_map_header, write_null, write_set_header,
    write_simple, Proto,
};
use super::readonly::is_readonly;

/// Answers a COMMAND request (`args[0]` is COMMAND), appending the whole reply to `out`.
pub fn write_command_reply(out: &mut Vec<u8>, req: &[u8], args: &[Range<usize>], proto: Proto) {
    let arg = |i: usize| args.get(i).and_then(|r| req.get(r.clone())).unwrap_or_default();
    if args.len() < 2 {
        write_array_header(out, COMMANDS.len());
        for info in &COMMANDS {
            write_entry(out, info, proto);
        }
        return;
    }
    let sub = arg(1).to_ascii_uppercase();
    let wrong_args = |out: &mut Vec<u8>, name: &str| {
        write_error(out, format!("ERR wrong number of arguments for 'command|{name}' command").as_bytes())
    };
    match &sub[..] {
        b"COUNT" if args.len() == 2 => write_integer(out, COMMANDS.len() as i64),
        b"COUNT" => wrong_args(out, "count"),
        b"INFO" if args.len() == 2 => write_command_reply(out, req, &args[..1], proto),
        b"INFO" => {
            write_array_header(out, args.len() - 2);
            for i in 2..args.len() {
                match lookup(arg(i)) {
                    Some(info) => write_entry(out, info, proto),
                    None => write_null(out, proto),
                }
            }
        }
        b"DOCS" => {
            let known: Vec<&CommandInfo> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                (2..args.len()).filter_map(|i| lookup(arg(i))).collect()
            };
            write_map_header(out, known.len(), proto);
            for info in known {
                write_bulk(out, info.name.to_ascii_lowercase().as_bytes());
                write_map_header(out, 0, proto);
            }
        }
        b"LIST" if args.len() == 2 => {
            write_array_header(out, COMMANDS.len());
            for info in &COMMANDS {
                write_bulk(out, info.name.to_ascii_lowercase().as_bytes());
            }
        }
        b"LIST" => write_error(out, b"ERR ferrule: COMMAND LIST FILTERBY is not supported"),
        // redis 7 counts at least one argument after the command name (arity -4).
        b"GETKEYS" if args.len() >= 4 => write_getkeys(out, req, &args[2..]),
        b"GETKEYS" => wrong_args(out, "getkeys"),
        _ => write_error(
            out,
            format!("ERR unknown subcommand '{}'. Try COMMAND HELP.", printable(arg(1), 128)).as_bytes(),
        ),
    }
}

/// COMMAND GETKEYS: the keys of the command in `args` (its name first), as the proxy routes them.
fn write_getkeys(out: &mut Vec<u8>, req: &[u8], args: &[Range<usize>]) {
    let Some(info) = req.get(args[0].clone()).and_then(lookup) else {
        return write_error(out, b"ERR Invalid command specified");
    };
    if info.keys == KeySpec::None {
        return write_error(out, b"ERR The command has no key arguments");
    }
    if !arity_ok(info, args.len()) {
        return write_error(out, b"ERR Invalid number of arguments specified for command");
    }
    let mut keys = Vec::new();
    match key_indices(info, args, req, &mut keys) {
        Ok(()) => {}
        // EVAL with numkeys 0 has no key, which redis answers with an empty list.
        Err(_) if matches!(info.keys, KeySpec::NumKeys { .. }) => {}
        Err(e) => return write_error(out, e.as_bytes()),
    }
    write_array_header(out, keys.len());
    for k in keys {
        write_bulk(out, req.get(args[k].clone()).unwrap_or_default());
    }
}

/// redis' (first key, last key, step) for COMMAND INFO: 0 0 0 when keys are found by scanning (numkeys).
fn key_range(keys: KeySpec) -> (i64, i64, i64) {
    match keys {
        KeySpec::None | KeySpec::NumKeys { dest: None, .. } | KeySpec::Streams => (0, 0, 0),
        KeySpec::Single | KeySpec::StoreOption(_) | KeySpec::NumKeys { dest: Some(_), .. } => (1, 1, 1),
        KeySpec::Multi { first, step } => (first as i64, -1, step as i64),
        KeySpec::SameServer { first, last, step } => (first as i64, last as i64, step as i64),
    }
}

fn write_entry(out: &mut Vec<u8>, info: &CommandInfo, proto: Proto) {
    write_array_header(out, 10);
    write_bulk(out, info.name.to_ascii_lowercase().as_bytes());
    write_integer(out, info.arity as i64);
    let keyed = info.keys != KeySpec::None;
    let movable = matches!(info.keys, KeySpec::NumKeys { .. } | KeySpec::StoreOption(_) | KeySpec::Streams);
    let read = is_readonly(info.name);
    let mut flags: Vec<&[u8]> = Vec::with_capacity(2);
    if read {
        flags.push(b"readonly");
    } else if keyed || !matches!(info.kind, CommandKind::Local(_)) {
        flags.push(b"write");
    }
    if movable {
        flags.push(b"movablekeys");
    }
    write_set_header(out, flags.len(), proto);
    for f in flags {
        write_simple(out, f);
    }
    let (first, last, step) = key_range(info.keys);
    write_integer(out, first);
    write_integer(out, last);
    write_integer(out, step);
    let category: &[u8] = match info.kind {
        CommandKind::Local(_) => b"@connection",
        _ if read => b"@read",
        _ => b"@write",
    };
    write_set_header(out, 1, proto);
    write_simple(out, category);
    // Tips, key specifications, subcommands: sets in RESP3, as redis 7.0 writes them.
    write_set_header(out, 0, proto);
    write_key_specs(out, info.keys, read, proto);
    write_set_header(out, 0, proto);
}

/// Where a key specification starts looking for keys (redis 7's `begin_search`).
enum Begin {
    Index(i64),
    Keyword(&'static [u8], i64),
    Unknown,
}

/// How it finds them from there (`find_keys`).
enum Find {
    Range { lastkey: i64, keystep: i64, limit: i64 },
    Keynum { keynumidx: i64, firstkey: i64, keystep: i64 },
    Unknown,
}

/// The key specifications of COMMAND INFO, derived from the table's key positions: each one redis 7 would give
/// for the same positions (a range from an index, a key count, the keyword STREAMS, `unknown` for SORT's STORE and
/// GEORADIUS' STORE, which only a walk of the options finds). The flags are `RO access` for commands that only
/// read and `RW update` otherwise: the table does not know redis' finer ones (`OW`, `RM`, `delete`, `insert`).
fn write_key_specs(out: &mut Vec<u8>, keys: KeySpec, read: bool, proto: Proto) {
    const ONE: Find = Find::Range { lastkey: 0, keystep: 1, limit: 0 };
    let specs: Vec<(Begin, Find)> = match keys {
        KeySpec::None => Vec::new(),
        KeySpec::Single => vec![(Begin::Index(1), ONE)],
        KeySpec::Multi { first, step } => {
            vec![(Begin::Index(first as i64), Find::Range { lastkey: -1, keystep: step as i64, limit: 0 })]
        }
        KeySpec::SameServer { first, last, step } if last < 0 => {
            vec![(Begin::Index(first as i64), Find::Range { lastkey: last as i64, keystep: step as i64, limit: 0 })]
        }
        // Keys at fixed positions (RENAME, LMOVE, SMOVE): one specification each, as redis gives them.
        KeySpec::SameServer { first, last, step } => {
            (first..=last as usize).step_by(step.max(1)).map(|i| (Begin::Index(i as i64), ONE)).collect()
        }
        KeySpec::NumKeys { numkeys_pos, dest } => {
            let mut specs: Vec<(Begin, Find)> = dest.map(|d| (Begin::Index(d as i64), ONE)).into_iter().collect();
            specs.push((Begin::Index(numkeys_pos as i64), Find::Keynum { keynumidx: 0, firstkey: 1, keystep: 1 }));
            specs
        }
        KeySpec::Streams => {
            vec![(Begin::Keyword(b"STREAMS", 1), Find::Range { lastkey: -1, keystep: 1, limit: 2 })]
        }
        KeySpec::StoreOption(_) => vec![(Begin::Index(1), ONE), (Begin::Unknown, Find::Unknown)],
    };
    write_set_header(out, specs.len(), proto);
    let flags: [&[u8]; 2] = if read { [b"RO", b"access"] } else { [b"RW", b"update"] };
    for (begin, find) in specs {
        write_map_header(out, 3, proto);
        write_bulk(out, b"flags");
        write_set_header(out, 2, proto);
        for f in flags {
            write_simple(out, f);
        }
        write_bulk(out, b"begin_search");
        write_map_header(out, 2, proto);
        write_bulk(out, b"type");
        match begin {
            Begin::Index(index) => {
                write_bulk(out, b"index");
                write_bulk(out, b"spec");
                write_map_header(out, 1, proto);
                write_bulk(out, b"index");
                write_integer(out, index);
            }
            Begin::Keyword(keyword, startfrom) => {
                write_bulk(out, b"keyword");
                write_bulk(out, b"spec");
                write_map_header(out, 2, proto);
                write_bulk(out, b"keyword");
                write_bulk(out, keyword);
                write_bulk(out, b"startfrom");
                write_integer(out, startfrom);
            }
            Begin::Unknown => {
                write_bulk(out, b"unknown");
                write_bulk(out, b"spec");
                write_map_header(out, 0, proto);
            }
        }
        write_bulk(out, b"find_keys");
        write_map_header(out, 2, proto);
        write_bulk(out, b"type");
        let fields: &[(&[u8], i64)] = match find {
            Find::Range { lastkey, keystep, limit } => {
                write_bulk(out, b"range");
                &[(b"lastkey", lastkey), (b"keystep", keystep), (b"limit", limit)]
            }
            Find::Keynum { keynumidx, firstkey, keystep } => {
                write_bulk(out, b"keynum");
                &[(b"keynumidx", keynumidx), (b"firstkey", firstkey), (b"keystep", keystep)]
            }
            Find::Unknown => {
                write_bulk(out, b"unknown");
                &[]
            }
        };
        write_bulk(out, b"spec");
        write_map_header(out, fields.len(), proto);
        for (name, value) in fields {
            write_bulk(out, name);
            write_integer(out, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(words: &[&str], proto: Proto) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut args = Vec::new();
        for w in words {
            args.push(buf.len()..buf.len() + w.len());
            buf.extend_from_slice(w.as_bytes());
        }
        let mut out = Vec::new();
        write_command_reply(&mut out, &buf, &args, proto);
        out
    }

    fn text(words: &[&str]) -> String {
        String::from_utf8(reply(words, Proto::Resp2)).unwrap()
    }

    #[test]
    fn count_matches_the_table_and_the_full_listing() {
        assert_eq!(text(&["COMMAND", "COUNT"]), format!(":{}\r\n", COMMANDS.len()));
        assert!(text(&["COMMAND"]).starts_with(&format!("*{}\r\n*10\r\n$3\r\nacl\r\n", COMMANDS.len())));
        assert_eq!(text(&["COMMAND", "COUNT", "x"]), "-ERR wrong number of arguments for 'command|count' command\r\n");
    }

    #[test]
    fn info_entries() {
        // redis 7.0: `*10 get 2 [readonly fast] 1 1 1 [@read @string @fast] [] [key specs] []`; the proxy has
        // no fast/string categories or key specs.
        // The key specification is byte for byte redis 7.0's.
        const GET_SPEC: &str = "*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n\
            $5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n\
            $4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n";
        assert_eq!(
            text(&["COMMAND", "INFO", "get"]),
            format!(
                "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*1\r\n+@read\r\n*0\r\n{GET_SPEC}*0\r\n"
            )
        );
        // RESP3: maps and sets where redis 7.0 has them.
        let mset = reply(&["COMMAND", "INFO", "mset", "nosuch"], Proto::Resp3);
        let mset = String::from_utf8(mset).unwrap();
        assert!(
            mset.starts_with(
                "*2\r\n*10\r\n$4\r\nmset\r\n:-3\r\n~1\r\n+write\r\n:1\r\n:-1\r\n:2\r\n~1\r\n+@write\r\n~0\r\n~1\r\n%3\r\n\
                 $5\r\nflags\r\n~2\r\n+RW\r\n+update\r\n$12\r\nbegin_search\r\n%2\r\n"
            ),
            "{mset}"
        );
        assert!(
            mset.ends_with("$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:2\r\n$5\r\nlimit\r\n:0\r\n~0\r\n_\r\n"),
            "{mset}"
        );
        // EVAL's key count, XREAD's STREAMS keyword and ZUNIONSTORE's destination, as redis 7.0 describes them.
        let eval = text(&["COMMAND", "INFO", "eval"]);
        assert!(eval.contains(
            "$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n\
             $9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n$9\r\nkeynumidx\r\n:0\r\n\
             $8\r\nfirstkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r\n*0\r\n"
        ));
        assert!(text(&["COMMAND", "INFO", "xread"]).contains(
            "$4\r\ntype\r\n$7\r\nkeyword\r\n$4\r\nspec\r\n*4\r\n$7\r\nkeyword\r\n$7\r\nSTREAMS\r\n$9\r\nstartfrom\r\n:1\r\n\
             $9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:-1\r\n\
             $7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:2\r\n"
        ));
        assert!(text(&["COMMAND", "INFO", "zunionstore"]).contains("*0\r\n*2\r\n*6\r\n$5\r\nflags\r\n"));
        assert!(text(&["COMMAND", "INFO", "sort"])
            .contains("$4\r\ntype\r\n$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$7\r\nunknown\r\n"));
        assert!(text(&["COMMAND", "INFO", "nosuch"]).ends_with("$-1\r\n"));
        assert!(
            text(&["COMMAND", "INFO", "eval"]).contains(":-3\r\n*2\r\n+write\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n")
        );
        assert!(text(&["COMMAND", "INFO", "ping"]).contains(":-1\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@connection\r\n"));
    }

    #[test]
    fn getkeys_as_redis_answers_it() {
        assert_eq!(text(&["COMMAND", "GETKEYS", "get", "a"]), "*1\r\n$1\r\na\r\n");
        assert_eq!(text(&["COMMAND", "GETKEYS", "mset", "a", "1", "b", "2"]), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        assert_eq!(text(&["COMMAND", "GETKEYS", "sort", "l", "store", "d"]), "*2\r\n$1\r\nl\r\n$1\r\nd\r\n");
        assert_eq!(text(&["COMMAND", "GETKEYS", "eval", "return 1", "0"]), "*0\r\n");
        assert_eq!(text(&["COMMAND", "GETKEYS", "ping", "x"]), "-ERR The command has no key arguments\r\n");
        assert_eq!(
            text(&["COMMAND", "GETKEYS", "get", "a", "b"]),
            "-ERR Invalid number of arguments specified for command\r\n"
        );
        assert_eq!(text(&["COMMAND", "GETKEYS", "nosuch", "a"]), "-ERR Invalid command specified\r\n");
        assert_eq!(
            text(&["COMMAND", "GETKEYS", "get"]),
            "-ERR wrong number of arguments for 'command|getkeys' command\r\n"
        );
        assert_eq!(
            text(&["COMMAND", "GETKEYS", "ping"]),
            "-ERR wrong number of arguments for 'command|getkeys' command\r\n"
        );
        assert_eq!(text(&["COMMAND", "FOO"]), "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n");
    }

    #[test]
    fn docs_and_list() {
        assert_eq!(text(&["COMMAND", "DOCS", "nosuch"]), "*0\r\n");
        assert_eq!(reply(&["COMMAND", "DOCS", "get"], Proto::Resp3), b"%1\r\n$3\r\nget\r\n%0\r\n");
        assert_eq!(text(&["COMMAND", "DOCS", "get"]), "*2\r\n$3\r\nget\r\n*0\r\n");
        assert!(text(&["COMMAND", "LIST"]).starts_with(&format!("*{}\r\n$3\r\nacl\r\n", COMMANDS.len())));
    }
}
