//! MULTI/EXEC/DISCARD/WATCH/UNWATCH for a client session, free of I/O: what each command does to the session's
//! transaction, and which server a transaction belongs to.
//!
//! A transaction runs on a backend connection of its client's own (`io::dedicated`), from WATCH or MULTI to EXEC
//! or DISCARD, so the shared multiplexed connections never carry a MULTI that would swallow other clients'
//! commands. It belongs to the server of its first key (the WATCHed keys, or the first queued command's):
//!
//! - MULTI is answered `+OK` at once. Until a command with keys says where the transaction runs, commands without
//!   keys (PING, ECHO) are answered `+QUEUED` and held by the session; the first keyed command takes a dedicated
//!   connection to its server and sends MULTI, the held commands and itself there. After WATCH the transaction
//!   already has its connection and MULTI goes straight to it.
//! - A queued command whose keys map to another server is refused with `-CROSSSLOT` and the transaction is marked
//!   aborted, as redis marks a transaction in which a queued command was rejected: EXEC then answers `-EXECABORT`
//!   and the server is sent DISCARD, so nothing of it is applied. Commands ferrule cannot queue (AUTH, SELECT,
//!   HELLO, INFO, CLIENT, COMMAND, the unsupported ones) and bad arities abort it the same way.
//! - EXEC, DISCARD and UNWATCH end it: the connection goes back to the idle set once they are sent (a connection
//!   after EXEC or DISCARD has no transaction and no WATCH left). A client that goes away mid-transaction has its
//!   connection closed, and redis discards the transaction.
//!
//! Replies use redis 7's own wording where redis has one (checked against redis-server 7.0): `-ERR EXEC without
//! MULTI`, `-ERR MULTI calls can not be nested`, `-ERR WATCH inside MULTI is not allowed`, `-EXECABORT Transaction
//! discarded because of previous errors.`.
//!
//! On a listener of a `redis_cluster` pool a transaction belongs to a hash slot rather than a server
//! ([`ServerId::Slot`]), as Redis Cluster itself serves a transaction only when all its keys share one slot: a
//! queued command of another slot gets redis' `-CROSSSLOT Keys in request don't hash to the same slot` and
//! aborts the transaction the same way.

use super::commands::{arity_error, arity_ok, CommandInfo, CommandKind, Local};
use super::encode::{write_error, write_simple};

/// The transaction commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

/// Where a transaction (or a WATCH, or a blocking command) runs, as the session names it; opaque here apart from
/// which CROSSSLOT wording a mismatch gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerId {
    /// A server of a sharded pool: (pool index, server index).
    Server(usize, usize),
    /// A hash slot of a `redis_cluster` pool: (pool index, slot). A slot, not a node: the node serving it is
    /// looked up in the map in force when the dedicated connection is taken, and a later map change (a reshard,
    /// a failover) must not make two slots of one node look like one place (Redis Cluster refuses a transaction
    /// across slots even on one node).
    Slot(usize, u16),
}

/// Where a session stands with respect to MULTI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction: commands run as usual.
    #[default]
    Idle,
    /// WATCH ran on a dedicated connection to `server`; no MULTI yet. Commands run as usual, those for `server` on
    /// that connection (a read after WATCH must not overtake it on another connection).
    Watching { server: ServerId },
    /// After MULTI. `server` is where the transaction runs once known; `aborted`: a command was refused, so EXEC
    /// answers `-EXECABORT`.
    Multi { server: Option<ServerId>, aborted: bool },
}

/// What the session does with a command, as decided by [`gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Handle the command as usual (route it, answer it locally...).
    Run,
    /// The command was answered: the reply is in the caller's buffer.
    Answered,
    /// WATCH: route its keys (one server) and ask [`place`].
    Watch,
    /// A command with keys inside MULTI: route its keys (one server), ask [`place`], and send it on the
    /// transaction's connection (its reply is `+QUEUED` or an error).
    Queue,
    /// A command without keys inside MULTI (PING, ECHO): send it on the transaction's connection, or hold it and
    /// answer `+QUEUED` while the transaction has no server yet.
    QueueKeyless,
    /// Send this command on the transaction's connection; its reply answers the client. `release`: the
    /// transaction and its WATCHes end with it, so the connection is released after it.
    Send { release: bool },
    /// EXEC of a transaction that has no server yet (only commands without keys, or none): run them anywhere.
    ExecKeyless,
    /// The transaction ended here and the reply is written: the connection, if any, is reset (DISCARD) and
    /// released.
    EndLocally,
}

/// Where a command's keys put it relative to the transaction, as decided by [`place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The transaction has no server yet: this one becomes it (the session takes a dedicated connection to it
    /// and then calls [`bind`]).
    Bind,
    /// The transaction's server: send the command on its connection.
    Same,
    /// Another server: refused, the error is in the caller's buffer (and a transaction is aborted).
    CrossSlot,
}

/// EXEC ending an aborted transaction: redis's answer when a queued command was rejected.
pub const EXEC_ABORTED: &[u8] = b"EXECABORT Transaction discarded because of previous errors.";
/// A queued command whose keys are on another server than the transaction's.
pub const CROSSSLOT_IN_TXN: &[u8] = b"CROSSSLOT Keys in request don't hash to the same server as the transaction";
/// A queued command whose keys are in another hash slot than the transaction's (a `redis_cluster` pool): redis'
/// own words.
pub const CROSSSLOT_IN_CLUSTER_TXN: &[u8] = b"CROSSSLOT Keys in request don't hash to the same slot";

/// Whether the session must ask [`gate`] about this command: cheap enough for every request.
#[inline]
pub fn needs_gate(state: TxnState, info: &CommandInfo) -> bool {
    state != TxnState::Idle || matches!(info.kind, CommandKind::Transaction(_))
}

/// Decides what happens to a command given the session's transaction state, updating the state. `argc` counts
/// the command name. When the answer is [`Gate::Answered`] or [`Gate::EndLocally`], the complete reply has been
/// appended to `reply`.
pub fn gate(state: &mut TxnState, info: &CommandInfo, argc: usize, reply: &mut Vec<u8>) -> Gate {
    match *state {
        TxnState::Idle | TxnState::Watching { .. } => outside_multi(state, info, argc, reply),
        TxnState::Multi { .. } => inside_multi(state, info, argc, reply),
    }
}

/// Idle or watching: only the transaction commands (and HELLO while watching) are decided here.
fn outside_multi(state: &mut TxnState, info: &CommandInfo, argc: usize, reply: &mut Vec<u8>) -> Gate {
    let watching = match *state {
        TxnState::Watching { server } => Some(server),
        _ => None,
    };
    let CommandKind::Transaction(txn) = info.kind else {
        if watching.is_some() && info.kind == CommandKind::Local(Local::Hello) {
            // The WATCHing connection speaks the version the client had: it cannot switch under it.
            write_error(reply, b"ERR ferrule: HELLO is not supported while keys are WATCHed (UNWATCH first)");
            return Gate::Answered;
        }
        return Gate::Run;
    };
    if !arity_ok(info, argc) {
        write_error(reply, arity_error(info).as_bytes());
        return Gate::Answered;
    }
    match txn {
        Txn::Multi => {
            *state = TxnState::Multi { server: watching, aborted: false };
            if watching.is_some() {
                Gate::Send { release: false }
            } else {
                write_simple(reply, b"OK");
                Gate::Answered
            }
        }
        Txn::Exec => {
            write_error(reply, b"ERR EXEC without MULTI");
            Gate::Answered
        }
        Txn::Discard => {
            write_error(reply, b"ERR DISCARD without MULTI");
            Gate::Answered
        }
        Txn::Watch => Gate::Watch,
        Txn::Unwatch if watching.is_some() => {
            *state = TxnState::Idle;
            Gate::Send { release: true }
        }
        // Nothing is watched: nothing to forget.
        Txn::Unwatch => {
            write_simple(reply, b"OK");
            Gate::Answered
        }
    }
}

/// After MULTI: commands are queued on the transaction's server, or refused and the transaction aborted.
fn inside_multi(state: &mut TxnState, info: &CommandInfo, argc: usize, reply: &mut Vec<u8>) -> Gate {
    let TxnState::Multi { server, aborted } = *state else { return Gate::Run };
    match info.kind {
        // redis does not queue QUIT: it answers +OK and closes, which ends the transaction.
        CommandKind::Local(Local::Quit) => return Gate::Run,
        CommandKind::Transaction(Txn::Exec) => {
            *state = TxnState::Idle;
            if !arity_ok(info, argc) {
                // redis: "-EXECABORT Transaction discarded because of: wrong number of arguments ..."
                let why = arity_error(info);
                let why = why.strip_prefix("ERR ").unwrap_or(&why);
                reply.extend_from_slice(b"-EXECABORT Transaction discarded because of: ");
                reply.extend_from_slice(why.as_bytes());
                reply.extend_from_slice(b"\r\n");
                return Gate::EndLocally;
            }
            if aborted {
                write_error(reply, EXEC_ABORTED);
                return Gate::EndLocally;
            }
            return if server.is_some() { Gate::Send { release: true } } else { Gate::ExecKeyless };
        }
        _ => {}
    }
    if !arity_ok(info, argc) {
        write_error(reply, arity_error(info).as_bytes());
        abort(state);
        return Gate::Answered;
    }
    match info.kind {
        CommandKind::Transaction(Txn::Discard) => {
            *state = TxnState::Idle;
            if server.is_some() {
                Gate::Send { release: true }
            } else {
                write_simple(reply, b"OK");
                Gate::EndLocally
            }
        }
        // Neither is queued nor aborts the transaction, as in redis.
        CommandKind::Transaction(Txn::Multi) => {
            write_error(reply, b"ERR MULTI calls can not be nested");
            Gate::Answered
        }
        CommandKind::Transaction(Txn::Watch) => {
            write_error(reply, b"ERR WATCH inside MULTI is not allowed");
            Gate::Answered
        }
        // Decided above.
        CommandKind::Transaction(Txn::Exec) => Gate::Run,
        CommandKind::Forward | CommandKind::Split(_) | CommandKind::Blocking(_) => Gate::Queue,
        CommandKind::Local(Local::Ping | Local::Echo) | CommandKind::Transaction(Txn::Unwatch) => Gate::QueueKeyless,
        CommandKind::Unsupported(why) => {
            reply.extend_from_slice(b"-ERR ");
            reply.extend_from_slice(info.name.as_bytes());
            reply.extend_from_slice(b" is not supported by ferrule (");
            reply.extend_from_slice(why.as_bytes());
            reply.extend_from_slice(b"); the transaction is aborted\r\n");
            abort(state);
            Gate::Answered
        }
        // Answered by the proxy, or sent to every server of the pool (SCAN, DBSIZE, SCRIPT...): neither can run
        // inside one server's transaction.
        CommandKind::Local(_) | CommandKind::Pool(_) | CommandKind::PubSub(_) => {
            reply.extend_from_slice(b"-ERR ferrule: ");
            reply.extend_from_slice(info.name.as_bytes());
            reply.extend_from_slice(b" cannot be queued in a transaction; the transaction is aborted\r\n");
            abort(state);
            Gate::Answered
        }
    }
}

/// Where a command (WATCH, or one queued in MULTI) whose keys all map to `server` stands. On
/// [`Placement::CrossSlot`] the error is appended to `reply` and a transaction in MULTI is aborted.
pub fn place(state: &mut TxnState, server: ServerId, reply: &mut Vec<u8>) -> Placement {
    let bound = match *state {
        TxnState::Watching { server } => Some(server),
        TxnState::Multi { server, .. } => server,
        TxnState::Idle => None,
    };
    match bound {
        None => Placement::Bind,
        Some(s) if s == server => Placement::Same,
        Some(_) => {
            let words = if matches!(server, ServerId::Slot(..)) { CROSSSLOT_IN_CLUSTER_TXN } else { CROSSSLOT_IN_TXN };
            write_error(reply, words);
            abort(state);
            Placement::CrossSlot
        }
    }
}

/// The session took a dedicated connection to `server` for WATCH (idle) or for the first queued command.
pub fn bind(state: &mut TxnState, server: ServerId) {
    match state {
        TxnState::Idle => *state = TxnState::Watching { server },
        TxnState::Multi { server: s, .. } => *s = Some(server),
        TxnState::Watching { .. } => {}
    }
}

/// A queued command was refused (by [`place`], or by the session: no dedicated connection, no server for its
/// key...): EXEC will answer `-EXECABORT`. Outside MULTI nothing changes.
pub fn abort(state: &mut TxnState) {
    if let TxnState::Multi { aborted, .. } = state {
        *aborted = true;
    }
}

/// The server the transaction (or WATCH) holds a dedicated connection to, if any.
pub fn bound_server(state: TxnState) -> Option<ServerId> {
    match state {
        TxnState::Watching { server } | TxnState::Multi { server: Some(server), .. } => Some(server),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::redis::lookup;

    /// Runs a session's commands (each a list of words) through the gate as the session does, where a key's server
    /// is its first letter (`a1` and `a2` share server `a`) and a dedicated connection is always available. Returns
    /// what happened to each command (`RUN`, `SEND`, `SEND+RELEASE`, `QUEUE`, `HOLD`, `BIND`, `EXEC-KEYLESS`, or the
    /// reply, with `END ` before a reply that ended the transaction) and the final state.
    fn session(commands: &[&[&str]]) -> (Vec<String>, TxnState) {
        let mut state = TxnState::default();
        let replies = commands
            .iter()
            .map(|words| {
                let info = lookup(words[0].as_bytes()).unwrap();
                if !needs_gate(state, info) {
                    return "RUN".to_string();
                }
                let mut reply = Vec::new();
                let text = |r: &[u8]| String::from_utf8(r.to_vec()).unwrap();
                let server = || ServerId::Server(0, words.get(1).map_or(0, |k| k.as_bytes()[0] as usize));
                match gate(&mut state, info, words.len(), &mut reply) {
                    Gate::Run => "RUN".to_string(),
                    Gate::Answered => text(&reply),
                    Gate::EndLocally => format!("END {}", text(&reply)),
                    Gate::Send { release: false } => "SEND".to_string(),
                    Gate::Send { release: true } => "SEND+RELEASE".to_string(),
                    Gate::ExecKeyless => "EXEC-KEYLESS".to_string(),
                    Gate::QueueKeyless => {
                        if bound_server(state).is_some() {
                            "QUEUE".to_string()
                        } else {
                            "HOLD".to_string()
                        }
                    }
                    Gate::Watch | Gate::Queue => match place(&mut state, server(), &mut reply) {
                        Placement::Bind => {
                            bind(&mut state, server());
                            "BIND".to_string()
                        }
                        Placement::Same => "QUEUE".to_string(),
                        Placement::CrossSlot => text(&reply),
                    },
                }
            })
            .collect();
        (replies, state)
    }

    const ABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";
    const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same server as the transaction\r\n";

    #[test]
    fn outside_a_transaction_only_transaction_commands_are_answered() {
        let (replies, state) = session(&[&["GET", "k"], &["EXEC"], &["DISCARD"], &["UNWATCH"]]);
        assert_eq!(replies, ["RUN", "-ERR EXEC without MULTI\r\n", "-ERR DISCARD without MULTI\r\n", "+OK\r\n"]);
        assert_eq!(state, TxnState::Idle);
        let (replies, _) = session(&[&["EXEC", "x"], &["WATCH"], &["MULTI", "x"], &["GET", "k"]]);
        assert_eq!(
            replies,
            [
                "-ERR wrong number of arguments for 'exec' command\r\n",
                "-ERR wrong number of arguments for 'watch' command\r\n",
                "-ERR wrong number of arguments for 'multi' command\r\n",
                "RUN"
            ],
            "a MULTI with bad arity does not start a transaction"
        );
    }

    #[test]
    fn a_transaction_belongs_to_the_server_of_its_first_key() {
        // redis-py's pipeline(transaction=True): MULTI is answered at once, the first key binds the server.
        let (replies, state) =
            session(&[&["MULTI"], &["PING"], &["INCR", "a1"], &["INCR", "a2"], &["PING"], &["EXEC"], &["GET", "b"]]);
        assert_eq!(replies, ["+OK\r\n", "HOLD", "BIND", "QUEUE", "QUEUE", "SEND+RELEASE", "RUN"]);
        assert_eq!(state, TxnState::Idle);
    }

    #[test]
    fn a_queued_command_for_another_server_aborts_the_transaction() {
        let (replies, state) =
            session(&[&["MULTI"], &["SET", "a1", "v"], &["SET", "b1", "v"], &["SET", "a2", "v"], &["EXEC"]]);
        assert_eq!(replies, ["+OK\r\n", "BIND", CROSSSLOT, "QUEUE", &format!("END {ABORT}")]);
        assert_eq!(state, TxnState::Idle);
    }

    #[test]
    fn watch_binds_the_server_and_multi_goes_to_it() {
        let (replies, state) = session(&[
            &["WATCH", "a1"],
            &["WATCH", "a2"],
            &["WATCH", "b1"],
            &["GET", "a1"],
            &["MULTI"],
            &["SET", "a1", "v"],
            &["EXEC"],
        ]);
        assert_eq!(replies, ["BIND", "QUEUE", CROSSSLOT, "RUN", "SEND", "QUEUE", "SEND+RELEASE"]);
        assert_eq!(state, TxnState::Idle);
        // A WATCH on another server outside MULTI is refused, and aborts nothing.
        let (_, state) = session(&[&["WATCH", "a1"], &["WATCH", "b1"]]);
        assert_eq!(state, TxnState::Watching { server: ServerId::Server(0, b'a' as usize) });
        let (replies, state) = session(&[&["WATCH", "a1"], &["UNWATCH"], &["UNWATCH"], &["HELLO", "3"]]);
        assert_eq!(replies, ["BIND", "SEND+RELEASE", "+OK\r\n", "RUN"]);
        assert_eq!(state, TxnState::Idle);
        let (replies, _) = session(&[&["WATCH", "a1"], &["HELLO", "3"], &["EXEC"], &["DISCARD"]]);
        assert_eq!(
            replies[1..],
            [
                "-ERR ferrule: HELLO is not supported while keys are WATCHed (UNWATCH first)\r\n",
                "-ERR EXEC without MULTI\r\n",
                "-ERR DISCARD without MULTI\r\n"
            ]
        );
    }

    #[test]
    fn discard_and_transactions_without_keys() {
        let (replies, state) = session(&[&["MULTI"], &["SET", "a", "v"], &["DISCARD"], &["SET", "a", "v"]]);
        assert_eq!(replies, ["+OK\r\n", "BIND", "SEND+RELEASE", "RUN"]);
        assert_eq!(state, TxnState::Idle);
        let (replies, _) = session(&[&["MULTI"], &["PING"], &["DISCARD"]]);
        assert_eq!(replies, ["+OK\r\n", "HOLD", "END +OK\r\n"]);
        let (replies, _) = session(&[&["MULTI"], &["PING"], &["ECHO", "x"], &["EXEC"]]);
        assert_eq!(replies, ["+OK\r\n", "HOLD", "HOLD", "EXEC-KEYLESS"]);
    }

    #[test]
    fn inside_multi_refused_commands_abort_and_others_get_redis_errors() {
        let (replies, state) = session(&[
            &["MULTI"],
            &["MULTI"],
            &["WATCH", "k"],
            &["UNWATCH"],
            &["GET"],
            &["AUTH", "pw"],
            &["SUBSCRIBE", "ch"],
            &["BLPOP", "a", "0"],
            &["QUIT"],
        ]);
        assert_eq!(
            replies,
            [
                "+OK\r\n",
                "-ERR MULTI calls can not be nested\r\n",
                "-ERR WATCH inside MULTI is not allowed\r\n",
                "HOLD",
                "-ERR wrong number of arguments for 'get' command\r\n",
                "-ERR ferrule: AUTH cannot be queued in a transaction; the transaction is aborted\r\n",
                "-ERR ferrule: SUBSCRIBE cannot be queued in a transaction; the transaction is aborted\r\n",
                "BIND",
                "RUN",
            ]
        );
        assert_eq!(state, TxnState::Multi { server: Some(ServerId::Server(0, b'a' as usize)), aborted: true });
        // Nested MULTI and WATCH do not abort.
        let (replies, _) = session(&[&["MULTI"], &["MULTI"], &["WATCH", "a"], &["SET", "a", "v"], &["EXEC"]]);
        assert_eq!(replies[3..], ["BIND", "SEND+RELEASE"]);
    }

    #[test]
    fn on_a_cluster_pool_a_transaction_belongs_to_a_slot_and_another_slot_gets_redis_crossslot() {
        let mut state = TxnState::default();
        let mut reply = Vec::new();
        let multi = lookup(b"MULTI").unwrap();
        assert_eq!(gate(&mut state, multi, 1, &mut reply), Gate::Answered);
        assert_eq!(place(&mut state, ServerId::Slot(0, 7), &mut reply), Placement::Bind);
        bind(&mut state, ServerId::Slot(0, 7));
        assert_eq!(place(&mut state, ServerId::Slot(0, 7), &mut reply), Placement::Same);
        reply.clear();
        assert_eq!(place(&mut state, ServerId::Slot(0, 8), &mut reply), Placement::CrossSlot);
        assert_eq!(reply, b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
        assert_eq!(state, TxnState::Multi { server: Some(ServerId::Slot(0, 7)), aborted: true });
        reply.clear();
        let exec = lookup(b"EXEC").unwrap();
        assert_eq!(gate(&mut state, exec, 1, &mut reply), Gate::EndLocally);
        assert_eq!(reply, ABORT.as_bytes());
    }

    #[test]
    fn exec_with_bad_arity_still_ends_the_transaction() {
        let (replies, state) = session(&[&["MULTI"], &["SET", "a", "v"], &["EXEC", "x"], &["EXEC"]]);
        assert_eq!(
            replies[2..],
            [
                "END -EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n",
                "-ERR EXEC without MULTI\r\n"
            ]
        );
        assert_eq!(state, TxnState::Idle);
    }

    #[test]
    fn every_refusal_is_one_error_line() {
        for info in super::super::command_table::COMMANDS.iter() {
            if matches!(info.kind, CommandKind::Local(Local::Quit)) {
                continue;
            }
            let argc = info.arity.unsigned_abs() as usize;
            for start in [
                TxnState::Multi { server: Some(ServerId::Server(0, 0)), aborted: false },
                TxnState::Multi { server: Some(ServerId::Slot(0, 0)), aborted: true },
            ] {
                let mut state = start;
                let mut reply = Vec::new();
                match gate(&mut state, info, argc, &mut reply) {
                    Gate::Answered | Gate::EndLocally => {
                        assert!(reply.starts_with(b"-") || reply == b"+OK\r\n", "{}", info.name);
                        let lines = reply.iter().filter(|&&b| b == b'\n').count();
                        assert!(reply.ends_with(b"\r\n") && lines == 1, "{}", info.name);
                    }
                    _ => assert!(reply.is_empty(), "{}", info.name),
                }
            }
        }
    }
}
