//! `CLIENT <subcommand>`: read and checked as redis 7.2 reads it, for the subcommands the proxy answers for the
//! client itself (the state they touch is the client's own session, not a backend connection, which many clients
//! share). Subcommands that would act on a shared backend connection or on other clients are refused.

use std::ops::Range;

use super::commands::printable;

/// A well-formed CLIENT request the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// SETNAME name (empty clears the name, as in redis).
    SetName(&'a [u8]),
    GetName,
    Id,
    /// CLIENT INFO: this client's line.
    Info,
    /// CLIENT LIST: only this client's line (the proxy's other clients are not the caller's business).
    List,
    /// SETINFO LIB-NAME|LIB-VER value.
    SetInfo(LibAttr, &'a [u8]),
    /// NO-EVICT / NO-TOUCH on|off: accepted, +OK (they concern the backend's own clients, which are shared).
    Ok,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibAttr {
    Name,
    Version,
}

/// Subcommand, redis' arity for it (counting CLIENT and the subcommand), and why it is refused (`None`: answered).
const SUBCOMMANDS: &[(&str, i32, Option<&str>)] = &[
    ("CACHING", 3, Some("client-side caching")),
    ("GETNAME", 2, None),
    ("GETREDIR", 2, Some("client-side caching")),
    ("ID", 2, None),
    ("INFO", 2, None),
    ("KILL", -3, Some("it acts on connections ferrule shares between clients")),
    ("LIST", -2, None),
    ("NO-EVICT", 3, None),
    ("NO-TOUCH", 3, None),
    ("PAUSE", -3, Some("it acts on connections ferrule shares between clients")),
    ("REPLY", 3, Some("replies are matched to requests in order on shared connections")),
    ("SETINFO", 4, None),
    ("SETNAME", 3, None),
    ("TRACKING", -3, Some("client-side caching")),
    ("TRACKINGINFO", 2, Some("client-side caching")),
    ("UNBLOCK", -3, Some("it acts on connections ferrule shares between clients")),
    ("UNPAUSE", 2, Some("it acts on connections ferrule shares between clients")),
];

/// Whether a name or library attribute is acceptable: redis refuses anything outside `!`..`~`.
pub fn valid_client_attr(value: &[u8]) -> bool {
    value.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// Reads a CLIENT request (`args[0]` is CLIENT; the caller checked there is a subcommand). `Err` is the reply's
/// error text, code first, without the `-`.
pub fn parse_client<'a>(req: &'a [u8], args: &[Range<usize>]) -> Result<ClientOp<'a>, String> {
    let arg = |i: usize| args.get(i).and_then(|r| req.get(r.clone())).unwrap_or_default();
    let sub = arg(1);
    let Some(&(name, arity, refused)) =
        SUBCOMMANDS.iter().find(|(name, _, _)| name.as_bytes().eq_ignore_ascii_case(sub))
    else {
        return Err(format!("ERR unknown subcommand '{}'. Try CLIENT HELP.", printable(sub, 128)));
    };
    let argc = args.len();
    let fits = if arity >= 0 { argc == arity as usize } else { argc >= arity.unsigned_abs() as usize };
    if !fits {
        return Err(format!("ERR wrong number of arguments for 'client|{}' command", name.to_ascii_lowercase()));
    }
    if let Some(why) = refused {
        return Err(format!("ERR CLIENT {name} is not supported by ferrule ({why})"));
    }
    let on_off = |value: &[u8]| {
        if value.eq_ignore_ascii_case(b"on") || value.eq_ignore_ascii_case(b"off") {
            Ok(ClientOp::Ok)
        } else {
            Err("ERR syntax error".to_string())
        }
    };
    match name {
        "SETNAME" => {
            let value = arg(2);
            if !valid_client_attr(value) {
                return Err("ERR Client names cannot contain spaces, newlines or special characters.".into());
            }
            Ok(ClientOp::SetName(value))
        }
        "GETNAME" => Ok(ClientOp::GetName),
        "ID" => Ok(ClientOp::Id),
        "INFO" => Ok(ClientOp::Info),
        "LIST" => Ok(ClientOp::List),
        "NO-EVICT" | "NO-TOUCH" => on_off(arg(2)),
        _ => {
            // SETINFO
            let (attr, value) = (arg(2), arg(3));
            let which = if attr.eq_ignore_ascii_case(b"lib-name") {
                LibAttr::Name
            } else if attr.eq_ignore_ascii_case(b"lib-ver") {
                LibAttr::Version
            } else {
                return Err(format!("ERR Unrecognized option '{}'", printable(attr, 128)));
            };
            if !valid_client_attr(value) {
                return Err(format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    printable(attr, 128)
                ));
            }
            Ok(ClientOp::SetInfo(which, value))
        }
    }
}

/// What a session keeps about its client beyond its id, boxed so a session without a name stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    /// Empty when unset (redis treats an empty name as none).
    pub name: Box<[u8]>,
    pub lib_name: Box<[u8]>,
    pub lib_ver: Box<[u8]>,
    /// The user it authenticated as; empty for `default`.
    pub user: Box<[u8]>,
}

/// What CLIENT INFO reports, besides [`ClientMeta`].
pub struct ClientFacts<'a> {
    pub id: u64,
    pub addr: &'a str,
    pub laddr: &'a str,
    pub resp: i64,
}

/// Appends the CLIENT INFO line (with its trailing `\n`, as redis ends it), in redis 7.2's field order. Fields about
/// the server's own buffers and flags, which a proxy client has no equivalent for, are given redis' idle values.
pub fn write_client_line(out: &mut Vec<u8>, meta: Option<&ClientMeta>, facts: &ClientFacts<'_>) {
    let empty = ClientMeta::default();
    let meta = meta.unwrap_or(&empty);
    let user: &[u8] = if meta.user.is_empty() { b"default" } else { &meta.user };
    out.extend_from_slice(format!("id={} addr={} laddr={} fd=-1 name=", facts.id, facts.addr, facts.laddr).as_bytes());
    out.extend_from_slice(&meta.name);
    out.extend_from_slice(
        b" age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 \
          rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=",
    );
    out.extend_from_slice(user);
    out.extend_from_slice(format!(" redir=-1 resp={} lib-name=", facts.resp).as_bytes());
    out.extend_from_slice(&meta.lib_name);
    out.extend_from_slice(b" lib-ver=");
    out.extend_from_slice(&meta.lib_ver);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<ClientOp<'static>, String> {
        let mut buf = Vec::new();
        let mut args = Vec::new();
        for w in words {
            args.push(buf.len()..buf.len() + w.len());
            buf.extend_from_slice(w.as_bytes());
        }
        let buf: &'static [u8] = Box::leak(buf.into_boxed_slice());
        parse_client(buf, &args)
    }

    #[test]
    fn answered_subcommands() {
        assert_eq!(parse(&["CLIENT", "setname", "app"]), Ok(ClientOp::SetName(b"app")));
        assert_eq!(parse(&["CLIENT", "SETNAME", ""]), Ok(ClientOp::SetName(b"")));
        assert_eq!(parse(&["client", "getname"]), Ok(ClientOp::GetName));
        assert_eq!(parse(&["CLIENT", "ID"]), Ok(ClientOp::Id));
        assert_eq!(parse(&["CLIENT", "INFO"]), Ok(ClientOp::Info));
        assert_eq!(parse(&["CLIENT", "LIST", "TYPE", "normal"]), Ok(ClientOp::List));
        assert_eq!(parse(&["CLIENT", "NO-EVICT", "on"]), Ok(ClientOp::Ok));
        assert_eq!(parse(&["CLIENT", "no-touch", "OFF"]), Ok(ClientOp::Ok));
        assert_eq!(
            parse(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
            Ok(ClientOp::SetInfo(LibAttr::Name, b"redis-py"))
        );
        assert_eq!(parse(&["CLIENT", "SETINFO", "lib-ver", "5.0"]), Ok(ClientOp::SetInfo(LibAttr::Version, b"5.0")));
    }

    /// Wording checked against redis-server 7.0 (7.2 for SETINFO and NO-TOUCH, which 7.0 lacks).
    #[test]
    fn errors_as_redis_words_them() {
        assert_eq!(parse(&["CLIENT", "FOO"]).unwrap_err(), "ERR unknown subcommand 'FOO'. Try CLIENT HELP.");
        assert_eq!(
            parse(&["CLIENT", "SETNAME", "a", "b"]).unwrap_err(),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            parse(&["CLIENT", "getname", "x"]).unwrap_err(),
            "ERR wrong number of arguments for 'client|getname' command"
        );
        assert_eq!(
            parse(&["CLIENT", "SETNAME", "a b"]).unwrap_err(),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(parse(&["CLIENT", "NO-EVICT", "x"]).unwrap_err(), "ERR syntax error");
        assert_eq!(parse(&["CLIENT", "SETINFO", "foo", "1"]).unwrap_err(), "ERR Unrecognized option 'foo'");
        assert_eq!(
            parse(&["CLIENT", "SETINFO", "lib-name", "a\nb"]).unwrap_err(),
            "ERR lib-name cannot contain spaces, newlines or special characters."
        );
    }

    #[test]
    fn connection_wide_subcommands_are_refused_not_acknowledged() {
        for words in [
            &["CLIENT", "REPLY", "OFF"][..],
            &["CLIENT", "TRACKING", "on"],
            &["CLIENT", "KILL", "ID", "1"],
            &["CLIENT", "PAUSE", "100"],
            &["CLIENT", "UNPAUSE"],
        ] {
            let err = parse(words).unwrap_err();
            assert!(err.starts_with(&format!("ERR CLIENT {} is not supported by ferrule (", words[1])), "{err}");
        }
        // Arity is checked first, as redis does.
        assert_eq!(
            parse(&["CLIENT", "REPLY"]).unwrap_err(),
            "ERR wrong number of arguments for 'client|reply' command"
        );
    }

    #[test]
    fn client_line() {
        let meta = ClientMeta { name: Box::from(&b"app"[..]), user: Box::from(&b"ro"[..]), ..Default::default() };
        let mut out = Vec::new();
        write_client_line(
            &mut out,
            Some(&meta),
            &ClientFacts { id: 7, addr: "127.0.0.1:5", laddr: "127.0.0.1:6", resp: 3 },
        );
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("id=7 addr=127.0.0.1:5 laddr=127.0.0.1:6 fd=-1 name=app age=0 "), "{line}");
        assert!(line.ends_with(" user=ro redir=-1 resp=3 lib-name= lib-ver=\n"), "{line}");
    }
}
