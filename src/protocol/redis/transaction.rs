//! MULTI/EXEC/DISCARD/WATCH/UNWATCH for a client session, free of I/O.
//!
//! ferrule does not run transactions yet: a transaction needs all its commands on one dedicated backend
//! connection, which the shared multiplexed connections cannot give. Until it does, `MULTI` is refused, and
//! the refusal must leave nothing applied: a client that pipelines `MULTI; INCR a; INCR b; EXEC` (every
//! client library's transaction) was told the transaction failed, so none of its commands may run. The
//! session therefore enters [`TxnState::Refused`], in which every command up to `EXEC` or `DISCARD` is
//! answered with an error and nothing is forwarded, exactly as redis itself treats a transaction in which a
//! queued command was rejected (`EXEC` then answers `-EXECABORT`).
//!
//! Every reply here is redis 7's own wording where redis has one (checked against redis-server 7.0):
//! `EXEC` without `MULTI` gets `-ERR EXEC without MULTI`, a nested `MULTI` gets `-ERR MULTI calls can not
//! be nested`, `WATCH` inside `MULTI` gets `-ERR WATCH inside MULTI is not allowed`, `EXEC` after a
//! rejected command gets `-EXECABORT Transaction discarded because of previous errors.`, `DISCARD` gets
//! `+OK`. Real transaction support (a later change) replaces [`TxnState::Refused`] with a state that
//! queues on a pinned connection; the session only asks [`gate`] what to do with each command.

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

/// Where a session stands with respect to MULTI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction: commands run as usual.
    #[default]
    Idle,
    /// The client sent MULTI, which was refused: every command up to EXEC or DISCARD is refused too.
    Refused,
}

/// What the session does with a command, as decided by [`gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Handle the command as usual (route it, answer it locally...).
    Run,
    /// The command was answered: the reply is in the caller's buffer.
    Answered,
}

/// The reply to MULTI while transactions are not supported. It names the consequence, since the client's
/// library usually surfaces only this first error.
pub const MULTI_REFUSED: &[u8] =
    b"ERR MULTI is not supported by ferrule (transactions): the commands up to EXEC or DISCARD are refused";
/// EXEC ending a refused transaction: redis's answer when a queued command was rejected.
pub const EXEC_ABORTED: &[u8] = b"EXECABORT Transaction discarded because of previous errors.";

/// Whether the session must ask [`gate`] about this command: cheap enough for every request.
#[inline]
pub fn needs_gate(state: TxnState, info: &CommandInfo) -> bool {
    state != TxnState::Idle || matches!(info.kind, CommandKind::Transaction(_))
}

/// Decides what happens to a command given the session's transaction state, updating the state. `argc`
/// counts the command name. When the answer is [`Gate::Answered`], the complete reply (`-...\r\n` or
/// `+OK\r\n`) has been appended to `reply`.
///
/// A command other than a transaction command in [`TxnState::Idle`] is always [`Gate::Run`]; the caller
/// then checks its arity as for any command.
pub fn gate(state: &mut TxnState, info: &CommandInfo, argc: usize, reply: &mut Vec<u8>) -> Gate {
    match (*state, info.kind) {
        (TxnState::Idle, CommandKind::Transaction(txn)) => {
            if !arity_ok(info, argc) {
                write_error(reply, arity_error(info).as_bytes());
                return Gate::Answered;
            }
            match txn {
                Txn::Multi => {
                    *state = TxnState::Refused;
                    write_error(reply, MULTI_REFUSED);
                }
                Txn::Exec => write_error(reply, b"ERR EXEC without MULTI"),
                Txn::Discard => write_error(reply, b"ERR DISCARD without MULTI"),
                Txn::Watch => write_error(reply, b"ERR WATCH is not supported by ferrule (transactions)"),
                // No key is ever watched (WATCH is refused), so there is nothing to forget.
                Txn::Unwatch => write_simple(reply, b"OK"),
            }
            Gate::Answered
        }
        (TxnState::Idle, _) => Gate::Run,
        (TxnState::Refused, kind) => refused(state, info, kind, argc, reply),
    }
}

/// In a refused transaction: every command gets an error, except QUIT (which redis does not queue either:
/// it answers +OK and closes) and the commands that end the transaction.
fn refused(state: &mut TxnState, info: &CommandInfo, kind: CommandKind, argc: usize, reply: &mut Vec<u8>) -> Gate {
    match kind {
        // The session answers +OK and closes the connection, which ends the transaction.
        CommandKind::Local(Local::Quit) => return Gate::Run,
        CommandKind::Transaction(Txn::Exec) => {
            *state = TxnState::Idle;
            if arity_ok(info, argc) {
                write_error(reply, EXEC_ABORTED);
            } else {
                // redis: "-EXECABORT Transaction discarded because of: wrong number of arguments ..."
                let why = arity_error(info);
                let why = why.strip_prefix("ERR ").unwrap_or(&why);
                reply.extend_from_slice(b"-EXECABORT Transaction discarded because of: ");
                reply.extend_from_slice(why.as_bytes());
                reply.extend_from_slice(b"\r\n");
            }
        }
        _ if !arity_ok(info, argc) => write_error(reply, arity_error(info).as_bytes()),
        CommandKind::Transaction(Txn::Discard) => {
            *state = TxnState::Idle;
            write_simple(reply, b"OK");
        }
        CommandKind::Transaction(Txn::Multi) => write_error(reply, b"ERR MULTI calls can not be nested"),
        CommandKind::Transaction(Txn::Watch) => write_error(reply, b"ERR WATCH inside MULTI is not allowed"),
        _ => {
            reply.extend_from_slice(b"-ERR ");
            reply.extend_from_slice(info.name.as_bytes());
            reply.extend_from_slice(b" not run: it follows a MULTI that ferrule refused; EXEC or DISCARD ends it\r\n");
        }
    }
    Gate::Answered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::redis::lookup;

    /// Runs a session's commands (each a list of words) through the gate, as the session does: a command the gate
    /// lets through is marked `RUN`. Returns each reply and the final state.
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
                match gate(&mut state, info, words.len(), &mut reply) {
                    Gate::Run => {
                        assert!(reply.is_empty());
                        "RUN".to_string()
                    }
                    Gate::Answered => String::from_utf8(reply).unwrap(),
                }
            })
            .collect();
        (replies, state)
    }

    const MULTI: &str =
        "-ERR MULTI is not supported by ferrule (transactions): the commands up to EXEC or DISCARD are refused\r\n";
    const ABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";

    #[test]
    fn outside_a_transaction_only_transaction_commands_are_answered() {
        let (replies, state) = session(&[&["GET", "k"], &["EXEC"], &["DISCARD"], &["UNWATCH"], &["WATCH", "k"]]);
        assert_eq!(
            replies,
            [
                "RUN",
                "-ERR EXEC without MULTI\r\n",
                "-ERR DISCARD without MULTI\r\n",
                "+OK\r\n",
                "-ERR WATCH is not supported by ferrule (transactions)\r\n"
            ]
        );
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
    fn a_refused_multi_refuses_everything_up_to_exec() {
        // redis-py's pipeline(transaction=True) with two INCRs.
        let (replies, state) =
            session(&[&["MULTI"], &["INCR", "acct"], &["INCR", "acct"], &["EXEC"], &["GET", "acct"]]);
        let refused = "-ERR INCR not run: it follows a MULTI that ferrule refused; EXEC or DISCARD ends it\r\n";
        assert_eq!(replies, [MULTI, refused, refused, ABORT, "RUN"]);
        assert_eq!(state, TxnState::Idle);
    }

    #[test]
    fn discard_ends_a_refused_transaction() {
        let (replies, state) = session(&[&["MULTI"], &["SET", "k", "v"], &["DISCARD"], &["SET", "k", "v"], &["EXEC"]]);
        assert_eq!(replies[2], "+OK\r\n");
        assert_eq!(replies[3], "RUN");
        assert_eq!(replies[4], "-ERR EXEC without MULTI\r\n");
        assert_eq!(state, TxnState::Idle);
    }

    #[test]
    fn inside_a_refused_transaction_commands_get_redis_errors() {
        let (replies, state) = session(&[
            &["MULTI"],
            &["MULTI"],
            &["WATCH", "k"],
            &["UNWATCH"],
            &["PING"],
            &["GET"],
            &["DISCARD", "x"],
            &["AUTH", "pw"],
            &["SUBSCRIBE", "ch"],
        ]);
        assert_eq!(
            replies,
            [
                MULTI,
                "-ERR MULTI calls can not be nested\r\n",
                "-ERR WATCH inside MULTI is not allowed\r\n",
                "-ERR UNWATCH not run: it follows a MULTI that ferrule refused; EXEC or DISCARD ends it\r\n",
                "-ERR PING not run: it follows a MULTI that ferrule refused; EXEC or DISCARD ends it\r\n",
                "-ERR wrong number of arguments for 'get' command\r\n",
                "-ERR wrong number of arguments for 'discard' command\r\n",
                "-ERR AUTH not run: it follows a MULTI that ferrule refused; EXEC or DISCARD ends it\r\n",
                "-ERR SUBSCRIBE not run: it follows a MULTI that ferrule refused; EXEC or DISCARD ends it\r\n",
            ]
        );
        assert_eq!(state, TxnState::Refused, "none of these ends the transaction");
    }

    #[test]
    fn exec_with_bad_arity_still_ends_the_transaction() {
        let (replies, state) = session(&[&["MULTI"], &["EXEC", "x"], &["EXEC"]]);
        assert_eq!(
            replies[1..],
            [
                "-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n",
                "-ERR EXEC without MULTI\r\n"
            ]
        );
        assert_eq!(state, TxnState::Idle);
    }

    #[test]
    fn quit_runs_inside_a_refused_transaction() {
        let (replies, state) = session(&[&["MULTI"], &["QUIT"]]);
        assert_eq!(replies[1], "RUN");
        assert_eq!(state, TxnState::Refused);
    }

    #[test]
    fn every_refusal_is_one_error_line() {
        let mut state = TxnState::Refused;
        for info in super::super::command_table::COMMANDS.iter() {
            if matches!(info.kind, CommandKind::Local(Local::Quit)) {
                continue;
            }
            let mut reply = Vec::new();
            let argc = info.arity.unsigned_abs() as usize;
            assert_eq!(gate(&mut state, info, argc, &mut reply), Gate::Answered, "{}", info.name);
            assert!(reply.starts_with(b"-") || reply == b"+OK\r\n", "{}", info.name);
            assert!(reply.ends_with(b"\r\n") && reply.iter().filter(|&&b| b == b'\n').count() == 1, "{}", info.name);
            state = TxnState::Refused;
        }
    }
}
