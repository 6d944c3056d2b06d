//! What a read-only user may run, and redis 7's `-NOPERM` for what it may not.
//!
//! A read-only user is redis' `+@read +@connection`: the commands redis flags read-only (the table's read class,
//! [`is_readonly`]) and the connection commands the proxy answers itself (PING, ECHO, AUTH, HELLO, CLIENT,
//! COMMAND, SELECT, QUIT; INFO too, which only shows the proxy's own figures). Everything else, transactions and
//! unsupported commands included, is refused before it reaches a server.

use std::ops::Range;

use super::commands::{CommandInfo, CommandKind};
use super::readonly::is_readonly;

/// Commands whose ACL name includes the subcommand (`client|setname`, `xgroup|create`), as redis names them.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT", "PUBSUB",
    "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Whether a read-only user may run the command.
pub fn read_only_may_run(info: &CommandInfo) -> bool {
    matches!(info.kind, CommandKind::Local(_)) || is_readonly(info.name)
}

/// The error text (code first, no `-`) redis 7 gives a user without permission for the command:
/// `NOPERM this user has no permissions to run the 'set' command`.
pub fn noperm_error(info: &CommandInfo, req: &[u8], args: &[Range<usize>]) -> String {
    let mut name = info.name.to_ascii_lowercase();
    if CONTAINERS.contains(&info.name) {
        if let Some(sub) = args.get(1).and_then(|r| req.get(r.clone())) {
            name.push('|');
            name.push_str(&super::commands::printable(sub, 64).to_ascii_lowercase());
        }
    }
    format!("NOPERM this user has no permissions to run the '{name}' command")
}

#[cfg(test)]
mod tests {
    use super::super::commands::lookup;
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

    #[test]
    fn read_only_users_run_reads_and_connection_commands() {
        for name in ["GET", "MGET", "EXISTS", "HGETALL", "PING", "CLIENT", "HELLO", "AUTH", "COMMAND", "SCAN_NOT"] {
            if let Some(info) = lookup(name.as_bytes()) {
                assert!(read_only_may_run(info), "{name}");
            }
        }
        for name in ["SET", "DEL", "EVAL", "MULTI", "FLUSHALL", "XGROUP", "SORT"] {
            assert!(!read_only_may_run(lookup(name.as_bytes()).unwrap()), "{name}");
        }
        assert!(read_only_may_run(lookup(b"SORT_RO").unwrap()));
    }

    /// Wording checked against redis-server 7.0 with `ACL SETUSER ro on >pw ~* +@read`.
    #[test]
    fn noperm_wording() {
        let (buf, args) = request(&["SET", "a", "1"]);
        assert_eq!(
            noperm_error(lookup(b"SET").unwrap(), &buf, &args),
            "NOPERM this user has no permissions to run the 'set' command"
        );
        let (buf, args) = request(&["XGROUP", "CREATE", "s", "g", "$"]);
        assert_eq!(
            noperm_error(lookup(b"XGROUP").unwrap(), &buf, &args),
            "NOPERM this user has no permissions to run the 'xgroup|create' command"
        );
    }
}
