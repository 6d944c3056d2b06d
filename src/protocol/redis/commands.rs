//! What the proxy may do with each Redis command, and where its keys are.

use std::ops::Range;

use super::command_table::COMMANDS;
use super::decimal::{parse_decimal_line, Decimal};
pub use super::transaction::Txn;

/// Where a command's keys are, counting the command name as argument 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// No key (e.g. PING): answered locally or unsupported.
    None,
    /// One key, at args[1].
    Single,
    /// Keys from args[first] to the end, every `step` args, each of which may live on a different server:
    /// the command is split per server (MGET/DEL/UNLINK/TOUCH/EXISTS: first 1 step 1; MSET: first 1 step 2).
    Multi { first: usize, step: usize },
    /// Keys at args[first..=last] every `step`, where a negative `last` counts from the end (-1 is the last
    /// argument, -2 the one before). They must all live on one server; the request goes to the first key's
    /// server, whose reply reports a missing key if they do not (SINTER, SMOVE, RENAME, BITOP, MSETNX...).
    /// Also used for one key that is not at args[1] (OBJECT/XINFO/XGROUP/MEMORY: key at args[2]).
    SameServer { first: usize, last: isize, step: usize },
    /// args[numkeys_pos] holds the number of keys, which follow it; `dest` is an extra fixed key position
    /// placed before them in [`key_indices`]'s output (ZUNIONSTORE dest numkeys k1..kn). They must all live
    /// on one server, as for [`KeySpec::SameServer`]. A command with no key at all (EVAL with numkeys 0)
    /// cannot be routed: [`key_indices`] answers an error.
    NumKeys { numkeys_pos: usize, dest: Option<usize> },
    /// XREAD / XREADGROUP: the keys are the first half of the arguments after `STREAMS` (the IDs are the other
    /// half). They must all live on one server.
    Streams,
    /// One key at args[1], and a destination key given by an option (SORT ... STORE dst, GEORADIUS ... STORE dst /
    /// STOREDIST dst). Both must live on one server, as for [`KeySpec::SameServer`]: the destination is written
    /// on the server the request goes to, which must be the one later reads of it go to.
    StoreOption(StoreOption),
}

/// The commands whose destination key is an option's argument, found as redis' own `getkeys` functions find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOption {
    /// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA] [STORE destination]:
    /// options are walked with their argument counts, so a pattern spelled `store` is not taken for the option.
    Sort,
    /// GEORADIUS / GEORADIUSBYMEMBER: the argument after the last STORE or STOREDIST from args[5] on (redis'
    /// `georadiusGetKeys`).
    GeoRadius,
}

/// How a multi-key command is split per server and its replies merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// MGET: one MGET per server, the values reassembled in key order.
    Mget,
    /// MSET: one MSET per server with each key's value; +OK once all succeed.
    Mset,
    /// DEL, UNLINK, TOUCH, EXISTS: the integer replies are summed.
    SumIntegers,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// +PONG, or the argument as a bulk string.
    Ping,
    Echo,
    /// +OK, then close once earlier replies are written.
    Quit,
    /// Checked against the listener's password.
    Auth,
    /// Only the configured database can be selected.
    Select,
    /// COMMAND, COMMAND COUNT / INFO / DOCS / GETKEYS / LIST, answered from the command table.
    Command,
    /// HELLO 2 or 3, answered as redis 7 answers it.
    Hello,
    /// Proxy-level INFO.
    Info,
    /// The whole CLIENT command: SETNAME / GETNAME / ID / INFO / SETINFO... answered for the client's own session;
    /// subcommands acting on connections (REPLY, KILL, PAUSE, TRACKING...) are refused (see `client`).
    ClientSetname,
}

/// Commands about the whole pool rather than a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolCmd {
    /// SCAN cursor [MATCH p] [COUNT n] [TYPE t]: one server at a time, the cursor carrying the server index.
    Scan,
    /// DBSIZE: summed over the servers.
    Dbsize,
    /// SCRIPT LOAD / EXISTS / FLUSH: on every server, so EVALSHA works wherever its keys land.
    Script,
    /// FUNCTION LOAD / DELETE / FLUSH / LIST: on every server, so FCALL works wherever its keys land.
    Function,
    /// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB: asked of every live server, merged.
    Pubsub,
}

/// What the proxy does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Sent as is to the server of its (first) key.
    Forward,
    /// Split per server by key.
    Split(Split),
    /// Answered by the proxy.
    Local(Local),
    /// Refused with an error; the text says why, as a plural noun phrase ("blocking commands", "pub/sub").
    Unsupported(&'static str),
    /// Sent to every server of the pool (or, for SCAN, to the server its cursor names) and the replies merged.
    Pool(PoolCmd),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH: decided by the session's transaction state
    /// ([`super::transaction::gate`]). WATCH has keys (they choose the transaction's server).
    Transaction(Txn),
    /// Sent on a backend connection of the client's own for as long as it blocks ([`super::blocking`]); all its keys
    /// must live on one server.
    Blocking(super::blocking::Block),
    /// (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE: carried out on subscriber connections of the client's own
    /// ([`super::pubsub`]). PUBLISH and SPUBLISH are [`CommandKind::Forward`], routed by their channel as a key.
    PubSub(super::pubsub::PubSubCmd),
}

/// One Redis command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Uppercase.
    pub name: &'static str,
    /// Redis convention, counting the command name: n means exactly n arguments, -n at least n.
    pub arity: i32,
    pub keys: KeySpec,
    pub kind: CommandKind,
}

/// Longest command name; longer input is unknown without further work.
const MAX_NAME_LEN: usize = 32;

/// Slots of the name index: a power of two, at least twice the table so that probe runs stay short.
const INDEX_SLOTS: usize = 1024;
const EMPTY_SLOT: u16 = u16::MAX;

/// A hash of a name with ASCII letters folded to one case, so that `get`, `GET` and `gEt` land on one slot
/// (FNV-1a over the bytes with bit 5 set; folding some punctuation together too only makes a rare collision,
/// which the comparison after it sorts out). `const` so that the index is built at compile time.
const fn folded_hash(name: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < name.len() {
        h = (h ^ (name[i] | 0x20) as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    // The high bits of an FNV product are the better mixed.
    (h ^ (h >> 16)) as usize & (INDEX_SLOTS - 1)
}

/// Open addressing with linear probing: each slot holds a position in `COMMANDS` or [`EMPTY_SLOT`].
const fn build_index() -> [u16; INDEX_SLOTS] {
    assert!(COMMANDS.len() < EMPTY_SLOT as usize && COMMANDS.len() * 2 <= INDEX_SLOTS);
    let mut index = [EMPTY_SLOT; INDEX_SLOTS];
    let mut i = 0;
    while i < COMMANDS.len() {
        let mut slot = folded_hash(COMMANDS[i].name.as_bytes());
        while index[slot] != EMPTY_SLOT {
            slot = (slot + 1) & (INDEX_SLOTS - 1);
        }
        index[slot] = i as u16;
        i += 1;
    }
    index
}

/// The command table's name index, built by the compiler: no work at start and none per request beyond one hash
/// and (nearly always) one comparison.
static INDEX: [u16; INDEX_SLOTS] = build_index();

/// Finds a command by name, case-insensitively and without allocating. `None` for an unknown command, which
/// the proxy answers like redis (see [`super::write_unknown_command`]).
#[inline]
pub fn lookup(name: &[u8]) -> Option<&'static CommandInfo> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut slot = folded_hash(name);
    loop {
        let info = COMMANDS.get(usize::from(*INDEX.get(slot)?))?;
        if info.name.as_bytes().eq_ignore_ascii_case(name) {
            return Some(info);
        }
        slot = (slot + 1) & (INDEX_SLOTS - 1);
    }
}

/// How many commands the table knows: [`command_index`] is below this.
pub const COMMAND_COUNT: usize = COMMANDS.len();

/// The position of a command in the table, a small dense integer for per-command counters (no string hashing on
/// the request path). `info` must come from [`lookup`]; anything else maps to `COMMAND_COUNT`.
pub fn command_index(info: &CommandInfo) -> usize {
    let base = COMMANDS.as_ptr() as usize;
    let at = info as *const CommandInfo as usize;
    let size = std::mem::size_of::<CommandInfo>().max(1);
    match at.checked_sub(base) {
        Some(offset) if offset % size == 0 && offset / size < COMMAND_COUNT => offset / size,
        _ => COMMAND_COUNT,
    }
}

/// Whether `argc` arguments (command name included) satisfy the command's arity.
pub fn arity_ok(info: &CommandInfo, argc: usize) -> bool {
    let required = info.arity.unsigned_abs() as usize;
    if info.arity >= 0 {
        argc == required
    } else {
        argc >= required
    }
}

/// The error text redis gives for a bad arity, ready for `-` + text + CRLF:
/// `ERR wrong number of arguments for 'get' command`.
pub fn arity_error(info: &CommandInfo) -> String {
    format!("ERR wrong number of arguments for '{}' command", info.name.to_ascii_lowercase())
}

/// Appends to `keys` the index in `args` of each key of the request, in routing order (the first one
/// chooses the server for a non-split command). `args` are ranges of `buf`, args[0] being the command name.
///
/// Errors are full error texts ready for `-` + text + CRLF, e.g. `ERR value is not an integer or out of
/// range` for a bad numkeys, or a wrong-arguments error when the key positions do not fit (MSET with a key
/// but no value). A command kind without keys ([`KeySpec::None`]) appends nothing and succeeds; a keyed
/// kind that ends up with no key (EVAL numkeys 0, OBJECT HELP) is an error, since it cannot be routed.
pub fn key_indices(info: &CommandInfo, args: &[Range<usize>], buf: &[u8], keys: &mut Vec<usize>) -> Result<(), String> {
    let argc = args.len();
    match info.keys {
        KeySpec::None => Ok(()),
        KeySpec::Single => {
            if argc < 2 {
                return Err(arity_error(info));
            }
            keys.push(1);
            Ok(())
        }
        KeySpec::Multi { first, step } => {
            let step = step.max(1);
            if argc <= first || !(argc - first).is_multiple_of(step) {
                return Err(arity_error(info));
            }
            keys.extend((first..argc).step_by(step));
            Ok(())
        }
        KeySpec::SameServer { first, last, step } => {
            let step = step.max(1);
            let last = if last < 0 { argc.checked_sub(last.unsigned_abs()) } else { Some(last.unsigned_abs()) };
            match last {
                Some(last) if first < argc && first <= last && last < argc => {
                    if !(last - first).is_multiple_of(step) {
                        return Err(arity_error(info));
                    }
                    keys.extend((first..=last).step_by(step));
                    Ok(())
                }
                _ if first >= argc && arity_ok(info, argc) => Err(no_key_error(info)),
                _ => Err(arity_error(info)),
            }
        }
        KeySpec::NumKeys { numkeys_pos, dest } => {
            let numkeys = args
                .get(numkeys_pos)
                .ok_or_else(|| arity_error(info))
                .and_then(|range| parse_numkeys(buf.get(range.clone()).unwrap_or_default()))?;
            let available = argc - numkeys_pos - 1;
            if numkeys > available {
                return Err("ERR Number of keys can't be greater than number of args".to_string());
            }
            if numkeys == 0 && dest.is_none() {
                return Err(no_key_error(info));
            }
            if let Some(dest) = dest {
                if dest >= argc {
                    return Err(arity_error(info));
                }
                keys.push(dest);
            }
            keys.extend(numkeys_pos + 1..=numkeys_pos + numkeys);
            Ok(())
        }
        KeySpec::StoreOption(kind) => {
            if argc < 2 {
                return Err(arity_error(info));
            }
            keys.push(1);
            let arg = |i: usize| buf.get(args[i].clone()).unwrap_or_default();
            let dest = match kind {
                StoreOption::Sort => {
                    let mut i = 2;
                    let mut dest = None;
                    while i < argc {
                        let option = arg(i);
                        let skip = if option.eq_ignore_ascii_case(b"LIMIT") {
                            2
                        } else if option.eq_ignore_ascii_case(b"BY") || option.eq_ignore_ascii_case(b"GET") {
                            1
                        } else if option.eq_ignore_ascii_case(b"STORE") {
                            if i + 1 < argc {
                                dest = Some(i + 1);
                            }
                            1
                        } else {
                            0
                        };
                        i += 1 + skip;
                    }
                    dest
                }
                StoreOption::GeoRadius => {
                    let mut i = 5;
                    let mut dest = None;
                    while i < argc {
                        let option = arg(i);
                        if (option.eq_ignore_ascii_case(b"STORE") || option.eq_ignore_ascii_case(b"STOREDIST"))
                            && i + 1 < argc
                        {
                            dest = Some(i + 1);
                            i += 1;
                        }
                        i += 1;
                    }
                    dest
                }
            };
            keys.extend(dest);
            Ok(())
        }
        KeySpec::Streams => {
            let mut i = 1;
            while i < argc {
                let word = buf.get(args[i].clone()).unwrap_or_default();
                if word.eq_ignore_ascii_case(b"STREAMS") {
                    let rest = argc - i - 1;
                    if rest == 0 || !rest.is_multiple_of(2) {
                        return Err(format!(
                            "ERR Unbalanced '{}' list of streams: for each stream key an ID or '$' must be specified.",
                            info.name.to_ascii_lowercase()
                        ));
                    }
                    keys.extend(i + 1..=i + rest / 2);
                    return Ok(());
                }
                i += super::blocking::option_width(word);
            }
            Err("ERR syntax error".to_string())
        }
    }
}

/// Reads a numkeys argument as redis does (a canonical integer), refusing negatives like EVAL.
fn parse_numkeys(text: &[u8]) -> Result<usize, String> {
    // Reuse the RESP number reader by framing the argument as a line.
    let mut line = [0u8; 24];
    let value = line
        .get_mut(..text.len() + 2)
        .and_then(|slot| {
            let (digits, end) = slot.split_at_mut(text.len());
            digits.copy_from_slice(text);
            end.copy_from_slice(b"\r\n");
            match parse_decimal_line(slot, 0) {
                Decimal::Value { value, .. } => Some(value),
                _ => None,
            }
        })
        .ok_or_else(|| "ERR value is not an integer or out of range".to_string())?;
    usize::try_from(value).map_err(|_| "ERR Number of keys can't be negative".to_string())
}

/// At most `max` bytes of `b` for an error message, non-printable bytes and quotes replaced by `?`.
pub fn printable(b: &[u8], max: usize) -> String {
    b.iter().take(max).map(|&c| if (0x20..0x7f).contains(&c) && c != b'\'' { c as char } else { '?' }).collect()
}

fn no_key_error(info: &CommandInfo) -> String {
    format!("ERR '{}' without a key cannot be routed by the proxy", info.name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_uppercase_and_unique() {
        for (i, info) in COMMANDS.iter().enumerate() {
            assert_eq!(command_index(info), i);
        }
        let outside = CommandInfo { ..COMMANDS[0] };
        assert_eq!(command_index(&outside), COMMAND_COUNT);
        for pair in COMMANDS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} then {}", pair[0].name, pair[1].name);
        }
        for info in COMMANDS {
            assert!(info.name.len() <= MAX_NAME_LEN);
            assert_eq!(info.name, info.name.to_ascii_uppercase());
        }
    }

    #[test]
    fn table_entries_are_consistent() {
        for info in COMMANDS {
            let keyless = info.keys == KeySpec::None;
            match info.kind {
                CommandKind::Transaction(Txn::Watch) => assert!(!keyless),
                CommandKind::Local(_)
                | CommandKind::Unsupported(_)
                | CommandKind::Transaction(_)
                | CommandKind::Pool(_)
                | CommandKind::PubSub(_) => {
                    assert!(keyless, "{}", info.name)
                }
                CommandKind::Blocking(_) => {
                    assert!(!keyless && !matches!(info.keys, KeySpec::Multi { .. }), "{}", info.name)
                }
                CommandKind::Forward => {
                    assert!(!keyless && !matches!(info.keys, KeySpec::Multi { .. }), "{}", info.name)
                }
                CommandKind::Split(_) => {
                    assert!(matches!(info.keys, KeySpec::Multi { .. }), "{}", info.name)
                }
            }
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        for name in [&b"get"[..], b"GET", b"gEt"] {
            assert_eq!(lookup(name).unwrap().name, "GET");
        }
        assert_eq!(lookup(b"restore-asking").unwrap().name, "RESTORE-ASKING");
        assert_eq!(lookup(b"georadiusbymember_ro").unwrap().name, "GEORADIUSBYMEMBER_RO");
        assert!(lookup(b"").is_none());
        assert!(lookup(b"GETT").is_none());
        assert!(lookup(b"GE").is_none());
        assert!(lookup(&[b'A'; 100]).is_none());
        assert!(lookup(b"G\xffT").is_none());
    }

    /// `name` with the letters whose bit in `mask` is set in lower case (bit i for byte i, cycling).
    fn with_case(name: &str, mask: u64) -> Vec<u8> {
        name.bytes()
            .enumerate()
            .map(|(i, b)| if mask >> (i % 64) & 1 == 1 { b.to_ascii_lowercase() } else { b })
            .collect()
    }

    #[test]
    fn every_command_is_found_in_any_case() {
        for info in &COMMANDS {
            for name in [
                info.name.as_bytes().to_vec(),
                info.name.to_ascii_lowercase().into_bytes(),
                with_case(info.name, 0x5555_5555_5555_5555),
                with_case(info.name, 0xaaaa_aaaa_aaaa_aaaa),
            ] {
                let found = lookup(&name).unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(&name)));
                assert!(std::ptr::eq(found, info), "{} found {}", info.name, found.name);
            }
        }
    }

    #[test]
    fn index_probe_runs_stay_short() {
        // Not a timing: how far each command sits from the slot its hash names, which bounds the comparisons.
        let longest = (0..INDEX_SLOTS)
            .filter(|&slot| INDEX[slot] != EMPTY_SLOT)
            .map(|slot| {
                (slot + INDEX_SLOTS - folded_hash(COMMANDS[usize::from(INDEX[slot])].name.as_bytes())) % INDEX_SLOTS
            })
            .max();
        assert!(longest.is_some_and(|d| d <= 4), "longest probe run {longest:?}");
        assert_eq!(INDEX.iter().filter(|&&i| i != EMPTY_SLOT).count(), COMMAND_COUNT);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn a_table_name_in_any_case_is_found(i in 0..COMMAND_COUNT, mask in proptest::prelude::any::<u64>()) {
            let info = &COMMANDS[i];
            let found = lookup(&with_case(info.name, mask));
            proptest::prop_assert!(found.is_some_and(|f| std::ptr::eq(f, info)), "{}", info.name);
        }

        #[test]
        fn other_names_are_unknown(name in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let in_table = COMMANDS.iter().any(|c| c.name.as_bytes().eq_ignore_ascii_case(&name));
            proptest::prop_assert_eq!(lookup(&name).is_some(), in_table);
        }

        #[test]
        fn near_misses_of_table_names_are_unknown(i in 0..COMMAND_COUNT, at in 0usize..32, byte in proptest::prelude::any::<u8>()) {
            // One byte of a real name changed, dropped or added: what a typo or a hash collision looks like.
            let name = COMMANDS[i].name.as_bytes();
            let at = at % (name.len() + 1);
            let mut changed = name.to_vec();
            match byte % 3 {
                0 if at < name.len() => changed[at] = byte,
                1 if at < name.len() => { changed.remove(at); }
                _ => changed.insert(at, byte),
            }
            let in_table = COMMANDS.iter().any(|c| c.name.as_bytes().eq_ignore_ascii_case(&changed));
            proptest::prop_assert_eq!(lookup(&changed).is_some(), in_table, "{:?}", String::from_utf8_lossy(&changed));
        }
    }

    #[test]
    fn classification_of_representative_commands() {
        let kind = |name: &str| lookup(name.as_bytes()).unwrap().kind;
        let keys = |name: &str| lookup(name.as_bytes()).unwrap().keys;
        assert_eq!(kind("SET"), CommandKind::Forward);
        assert_eq!(keys("SET"), KeySpec::Single);
        assert_eq!(kind("MGET"), CommandKind::Split(Split::Mget));
        assert_eq!(kind("MSET"), CommandKind::Split(Split::Mset));
        assert_eq!(keys("MSET"), KeySpec::Multi { first: 1, step: 2 });
        for name in ["DEL", "UNLINK", "TOUCH", "EXISTS"] {
            assert_eq!(kind(name), CommandKind::Split(Split::SumIntegers), "{name}");
        }
        assert_eq!(kind("BLPOP"), CommandKind::Blocking(super::super::blocking::Block::LastArg));
        assert_eq!(kind("XREAD"), CommandKind::Blocking(super::super::blocking::Block::BlockOption));
        assert_eq!(
            kind("SUBSCRIBE"),
            CommandKind::PubSub(super::super::pubsub::PubSubCmd::Subscribe(super::super::pubsub::SubKind::Channel))
        );
        assert_eq!(kind("PUBLISH"), CommandKind::Forward);
        assert_eq!(kind("MULTI"), CommandKind::Transaction(Txn::Multi));
        assert_eq!(kind("exec"), CommandKind::Transaction(Txn::Exec));
        assert_eq!(kind("DISCARD"), CommandKind::Transaction(Txn::Discard));
        assert_eq!(kind("WATCH"), CommandKind::Transaction(Txn::Watch));
        assert_eq!(kind("UNWATCH"), CommandKind::Transaction(Txn::Unwatch));
        assert_eq!(kind("KEYS"), CommandKind::Unsupported("keyspace scans"));
        assert_eq!(kind("SCAN"), CommandKind::Pool(PoolCmd::Scan));
        assert_eq!(kind("DBSIZE"), CommandKind::Pool(PoolCmd::Dbsize));
        assert_eq!(kind("SCRIPT"), CommandKind::Pool(PoolCmd::Script));
        assert_eq!(kind("FUNCTION"), CommandKind::Pool(PoolCmd::Function));
        assert_eq!(kind("PING"), CommandKind::Local(Local::Ping));
        assert_eq!(kind("client"), CommandKind::Local(Local::ClientSetname));
        assert_eq!(keys("MSETNX"), KeySpec::SameServer { first: 1, last: -2, step: 2 });
        assert_eq!(keys("BITOP"), KeySpec::SameServer { first: 2, last: -1, step: 1 });
        assert_eq!(keys("EVAL"), KeySpec::NumKeys { numkeys_pos: 2, dest: None });
        assert_eq!(keys("ZUNIONSTORE"), KeySpec::NumKeys { numkeys_pos: 2, dest: Some(1) });
        assert_eq!(keys("ZUNION"), KeySpec::NumKeys { numkeys_pos: 1, dest: None });
        // arity follows the newest redis: ZRANK took an optional WITHSCORE in 7.2
        assert_eq!(lookup(b"ZRANK").unwrap().arity, -3);
    }

    #[test]
    fn arity_checks() {
        let get = lookup(b"GET").unwrap();
        assert!(!arity_ok(get, 1));
        assert!(arity_ok(get, 2));
        assert!(!arity_ok(get, 3));
        let set = lookup(b"SET").unwrap();
        assert!(!arity_ok(set, 2));
        assert!(arity_ok(set, 3));
        assert!(arity_ok(set, 7));
        let ping = lookup(b"PING").unwrap();
        assert!(arity_ok(ping, 1) && arity_ok(ping, 2));
        assert_eq!(arity_error(get), "ERR wrong number of arguments for 'get' command");
    }

    /// Builds a request buffer and argument ranges from words.
    fn request(words: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut buf = Vec::new();
        let mut args = Vec::new();
        for word in words {
            args.push(buf.len()..buf.len() + word.len());
            buf.extend_from_slice(word.as_bytes());
        }
        (buf, args)
    }

    fn keys_of(words: &[&str]) -> Result<Vec<usize>, String> {
        let (buf, args) = request(words);
        let info = lookup(words[0].as_bytes()).unwrap();
        let mut keys = vec![99];
        key_indices(info, &args, &buf, &mut keys)?;
        assert_eq!(keys.remove(0), 99, "appends");
        Ok(keys)
    }

    #[test]
    fn keys_of_each_spec() {
        assert_eq!(keys_of(&["PING"]).unwrap(), Vec::<usize>::new());
        assert_eq!(keys_of(&["GET", "k"]).unwrap(), [1]);
        assert_eq!(keys_of(&["MGET", "a", "b", "c"]).unwrap(), [1, 2, 3]);
        assert_eq!(keys_of(&["MSET", "a", "1", "b", "2"]).unwrap(), [1, 3]);
        assert_eq!(keys_of(&["SINTER", "a", "b", "c"]).unwrap(), [1, 2, 3]);
        assert_eq!(keys_of(&["SMOVE", "a", "b", "m"]).unwrap(), [1, 2]);
        assert_eq!(keys_of(&["RENAME", "a", "b"]).unwrap(), [1, 2]);
        assert_eq!(keys_of(&["MSETNX", "a", "1", "b", "2"]).unwrap(), [1, 3]);
        assert_eq!(keys_of(&["BITOP", "AND", "d", "a", "b"]).unwrap(), [2, 3, 4]);
        assert_eq!(keys_of(&["OBJECT", "ENCODING", "k"]).unwrap(), [2]);
        assert_eq!(keys_of(&["XINFO", "STREAM", "s", "FULL"]).unwrap(), [2]);
        assert_eq!(keys_of(&["EVAL", "return 1", "2", "a", "b", "arg"]).unwrap(), [3, 4]);
        assert_eq!(keys_of(&["FCALL", "f", "1", "a"]).unwrap(), [3]);
        assert_eq!(keys_of(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"]).unwrap(), [1, 3, 4]);
        assert_eq!(keys_of(&["ZUNION", "2", "a", "b", "WITHSCORES"]).unwrap(), [2, 3]);
        assert_eq!(keys_of(&["LMPOP", "1", "l", "LEFT"]).unwrap(), [2]);
        assert_eq!(keys_of(&["SINTERCARD", "2", "a", "b", "LIMIT", "5"]).unwrap(), [2, 3]);
    }

    #[test]
    fn destinations_given_by_options_are_keys() {
        assert_eq!(keys_of(&["SORT", "l"]).unwrap(), [1]);
        assert_eq!(keys_of(&["SORT", "l", "ALPHA", "store", "d"]).unwrap(), [1, 4]);
        assert_eq!(
            keys_of(&["SORT", "l", "BY", "store", "LIMIT", "0", "1", "GET", "#", "STORE", "d"]).unwrap(),
            [1, 10]
        );
        // A pattern spelled like the option is the option's argument, not the option.
        assert_eq!(keys_of(&["SORT", "l", "GET", "STORE"]).unwrap(), [1]);
        assert_eq!(keys_of(&["SORT", "l", "STORE"]).unwrap(), [1]);
        assert_eq!(keys_of(&["SORT_RO", "l", "STORE", "d"]).unwrap(), [1]);
        assert_eq!(keys_of(&["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"]).unwrap(), [1, 7]);
        assert_eq!(keys_of(&["GEORADIUS", "g", "0", "0", "1", "km", "STOREDIST", "d"]).unwrap(), [1, 7]);
        assert_eq!(keys_of(&["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "a", "STOREDIST", "b"]).unwrap(), [1, 9]);
        assert_eq!(keys_of(&["GEORADIUSBYMEMBER", "g", "m", "1", "km", "STORE", "d"]).unwrap(), [1, 6]);
        assert_eq!(keys_of(&["GEORADIUS", "g", "0", "0", "1", "km", "WITHDIST"]).unwrap(), [1]);
        assert_eq!(keys_of(&["GEORADIUS_RO", "g", "0", "0", "1", "km", "STORE", "d"]).unwrap(), [1]);
        assert_eq!(keys_of(&["GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km"]).unwrap(), [1, 2]);
    }

    #[test]
    fn bad_key_positions_are_errors() {
        let wrong_args = "ERR wrong number of arguments for 'mset' command";
        assert_eq!(keys_of(&["MSET", "a", "1", "b"]).unwrap_err(), wrong_args);
        assert_eq!(keys_of(&["MSET"]).unwrap_err(), wrong_args);
        assert_eq!(
            keys_of(&["MSETNX", "a", "1", "b"]).unwrap_err(),
            "ERR wrong number of arguments for 'msetnx' command"
        );
        assert_eq!(keys_of(&["EVAL", "s", "x"]).unwrap_err(), "ERR value is not an integer or out of range");
        assert_eq!(keys_of(&["EVAL", "s", "+1", "k"]).unwrap_err(), "ERR value is not an integer or out of range");
        assert_eq!(
            keys_of(&["EVAL", "s", "99999999999999999999999", "k"]).unwrap_err(),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(keys_of(&["EVAL", "s", "-1"]).unwrap_err(), "ERR Number of keys can't be negative");
        assert_eq!(
            keys_of(&["EVAL", "s", "3", "a", "b"]).unwrap_err(),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(keys_of(&["EVAL", "s", "0"]).unwrap_err(), "ERR 'eval' without a key cannot be routed by the proxy");
        assert_eq!(
            keys_of(&["OBJECT", "HELP"]).unwrap_err(),
            "ERR 'object' without a key cannot be routed by the proxy"
        );
        // ZUNIONSTORE with numkeys 0 still has its destination key; redis itself answers the error.
        assert_eq!(keys_of(&["ZUNIONSTORE", "d", "0"]).unwrap(), [1]);
        assert_eq!(keys_of(&["EVAL"]).unwrap_err(), "ERR wrong number of arguments for 'eval' command");
        assert_eq!(keys_of(&["GET"]).unwrap_err(), "ERR wrong number of arguments for 'get' command");
        assert_eq!(keys_of(&["RENAME", "a"]).unwrap_err(), "ERR wrong number of arguments for 'rename' command");
    }
}
