//! `COMMAND`, `COMMAND COUNT / INFO / DOCS / GETKEYS / LIST` answered from the proxy's command table, in redis 7's
//! reply format (RESP2 arrays, RESP3 sets and maps), so client libraries and tools that read key positions from the
//! server read the proxy's.
//!
//! Each COMMAND INFO entry has redis 7's ten fields: name, arity, flags, first key, last key, step, ACL categories,
//! tips, key specifications and subcommands. The table knows where keys are and whether a command only reads, so
//! flags are `readonly` or `write` (with `movablekeys` when keys are found by scanning arguments), ACL categories
//! `@read` / `@write` (`@connection` for what the proxy answers itself), key specifications are redis 7's own
//! (see [`write_key_specs`]), and tips and subcommands are empty. `COMMAND GETKEYS` knows
//! every key.
//! COMMAND DOCS is not answered here when a server can be asked: the session forwards [`docs_request`] to one live
//! server of the pool and passes its reply through (the documentation is redis' own, in the client's protocol
//! version). Without one, each known command gets a map with only a `summary` saying why there is nothing more.

use std::ops::Range;

use super::command_table::COMMANDS;
use super::commands::{arity_ok, key_indices, lookup, printable, CommandInfo, CommandKind, KeySpec};
use super::encode::{
    write_array_header, write_bulk, write_command_iter, write_error, write_integer, write_map_header, write_null,
    write_set_header, write_simple, Proto,
};
use super::key_specs_redis7::KEY_SPECS;
use super::readonly::is_readonly;

/// The summary of every command in COMMAND DOCS when no server could be asked.
pub const DOCS_UNAVAILABLE: &[u8] = b"ferrule: no server of the pool reachable to ask for the documentation";

/// For `COMMAND DOCS [name ...]`: writes into `out` the request to forward to a server, asking for the names the
/// command table knows (all of them when none is given), so the reply lists what `COMMAND` lists. `false` when the
/// request is not COMMAND DOCS or names no known command (answered locally: an empty map, as redis answers).
pub fn docs_request(out: &mut Vec<u8>, req: &[u8], args: &[Range<usize>]) -> bool {
    let arg = |i: usize| args.get(i).and_then(|r| req.get(r.clone())).unwrap_or_default();
    if args.len() < 2 || !arg(1).eq_ignore_ascii_case(b"DOCS") {
        return false;
    }
    let names: Vec<&[u8]> = if args.len() == 2 {
        COMMANDS.iter().map(|c| c.name.as_bytes()).collect()
    } else {
        (2..args.len()).map(arg).filter(|name| lookup(name).is_some()).collect()
    };
    if names.is_empty() {
        return false;
    }
    let words = [&b"COMMAND"[..], b"DOCS"].into_iter().chain(names.iter().copied());
    write_command_iter(out, names.len() + 2, words);
    true
}

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
                write_map_header(out, 1, proto);
                write_bulk(out, b"summary");
                write_bulk(out, DOCS_UNAVAILABLE);
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
    write_key_specs(out, info.name, info.keys, read, proto);
    write_set_header(out, 0, proto);
}

/// Where a key specification starts looking for keys (redis 7's `begin_search`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Begin {
    Index(i64),
    Keyword(&'static [u8], i64),
    Unknown,
}

/// How it finds them from there (`find_keys`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Find {
    Range { lastkey: i64, keystep: i64, limit: i64 },
    Keynum { keynumidx: i64, firstkey: i64, keystep: i64 },
    Unknown,
}

/// One key specification as redis gives it (see `key_specs_redis7`).
#[derive(Debug, Clone, Copy)]
pub(super) struct RedisSpec {
    pub notes: Option<&'static str>,
    pub flags: &'static [&'static str],
    pub begin: Begin,
    pub find: Find,
}

/// redis' own key specifications for `name` (uppercase), when it has them at the top level.
fn redis_key_specs(name: &str) -> Option<&'static [RedisSpec]> {
    KEY_SPECS.binary_search_by(|(n, _)| n.cmp(&name)).ok().map(|i| KEY_SPECS[i].1)
}

/// The key specifications of COMMAND INFO: redis' own, flags and notes included, for every command redis
/// 7 knows with its specs at the top level (generated from a real server, `scripts/gen-key-specs.py`); for the others
/// (commands newer than that redis, and OBJECT / MEMORY / XINFO / XGROUP, whose specs redis gives per subcommand,
/// which the proxy does not list) derived from the table's key positions, with the coarse flags `RO access` for
/// commands that only read and `RW update` otherwise.
fn write_key_specs(out: &mut Vec<u8>, name: &str, keys: KeySpec, read: bool, proto: Proto) {
    if let Some(specs) = redis_key_specs(name) {
        write_set_header(out, specs.len(), proto);
        for spec in specs {
            write_key_spec(out, spec, proto);
        }
        return;
    }
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
    let flags: &[&str] = if read { &["RO", "access"] } else { &["RW", "update"] };
    for (begin, find) in specs {
        write_key_spec(out, &RedisSpec { notes: None, flags, begin, find }, proto);
    }
}

/// One key specification: a map of its notes (when it has some), flags, `begin_search` and `find_keys`.
fn write_key_spec(out: &mut Vec<u8>, spec: &RedisSpec, proto: Proto) {
    write_map_header(out, if spec.notes.is_some() { 4 } else { 3 }, proto);
    if let Some(notes) = spec.notes {
        write_bulk(out, b"notes");
        write_bulk(out, notes.as_bytes());
    }
    write_bulk(out, b"flags");
    write_set_header(out, spec.flags.len(), proto);
    for f in spec.flags {
        write_simple(out, f.as_bytes());
    }
    write_bulk(out, b"begin_search");
    write_map_header(out, 2, proto);
    write_bulk(out, b"type");
    match spec.begin {
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
    let fields: &[(&[u8], i64)] = match spec.find {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(words: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut buf = Vec::new();
        let mut args = Vec::new();
        for w in words {
            args.push(buf.len()..buf.len() + w.len());
            buf.extend_from_slice(w.as_bytes());
        }
        (buf, args)
    }

    fn text_of(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn reply(words: &[&str], proto: Proto) -> Vec<u8> {
        let (buf, args) = request(words);
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
                 $5\r\nflags\r\n~2\r\n+OW\r\n+update\r\n$12\r\nbegin_search\r\n%2\r\n"
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
        // redis' notes and finer flags (SET may read with GET; SORT's STORE overwrites).
        assert!(text(&["COMMAND", "INFO", "set"]).contains(
            "*8\r\n$5\r\nnotes\r\n$48\r\nRW and ACCESS due to the optional `GET` argument\r\n$5\r\nflags\r\n\
             *4\r\n+RW\r\n+access\r\n+update\r\n+variable_flags\r\n"
        ));
        assert!(text(&["COMMAND", "INFO", "sort"]).contains("*3\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n"));
        assert!(text(&["COMMAND", "INFO", "sort"]).contains("$5\r\nflags\r\n*2\r\n+OW\r\n+update\r\n"));
        // OBJECT: redis gives its key specs per subcommand, which the proxy does not list: derived from the table.
        assert!(text(&["COMMAND", "INFO", "object"]).contains(
            "*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n\
             $5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n"
        ));
        assert!(
            text(&["COMMAND", "INFO", "eval"]).contains(":-3\r\n*2\r\n+write\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n")
        );
        assert!(text(&["COMMAND", "INFO", "ping"]).contains(":-1\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@connection\r\n"));
    }

    #[test]
    fn redis_key_specs_are_sorted_and_name_table_commands() {
        assert!(KEY_SPECS.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, _) in KEY_SPECS {
            assert!(lookup(name.as_bytes()).is_some_and(|info| info.name == *name), "{name}");
        }
        assert!(redis_key_specs("GET").is_some() && redis_key_specs("OBJECT").is_none());
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
        let summary = format!("$7\r\nsummary\r\n${}\r\n{}\r\n", DOCS_UNAVAILABLE.len(), text_of(DOCS_UNAVAILABLE));
        assert_eq!(
            text_of(&reply(&["COMMAND", "DOCS", "get"], Proto::Resp3)),
            format!("%1\r\n$3\r\nget\r\n%1\r\n{summary}")
        );
        assert_eq!(text(&["COMMAND", "DOCS", "get"]), format!("*2\r\n$3\r\nget\r\n*2\r\n{summary}"));
        // What the session forwards instead, when a server can be asked.
        let forwarded = |words: &[&str]| {
            let (buf, args) = request(words);
            let mut out = Vec::new();
            docs_request(&mut out, &buf, &args).then(|| text_of(&out))
        };
        assert_eq!(
            forwarded(&["COMMAND", "docs", "GET", "nosuch", "mset"]).unwrap(),
            "*4\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n$3\r\nGET\r\n$4\r\nmset\r\n"
        );
        assert!(forwarded(&["COMMAND", "DOCS"])
            .unwrap()
            .starts_with(&format!("*{}\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n$3\r\nACL\r\n", COMMANDS.len() + 2)));
        assert_eq!(forwarded(&["COMMAND", "DOCS", "nosuch"]), None);
        assert_eq!(forwarded(&["COMMAND", "INFO", "get"]), None);
        assert!(text(&["COMMAND", "LIST"]).starts_with(&format!("*{}\r\n$3\r\nacl\r\n", COMMANDS.len())));
    }
}
