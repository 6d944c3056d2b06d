//! Redis RESP2/RESP3 codec and command table, free of I/O.
//!
//! - [`parse_request`] / [`RequestParser`]: frame one client request (multibulk or inline) at the start of a
//!   read buffer, giving each argument as a byte range of that buffer, so values are never copied.
//! - [`reply_len`] / [`ReplyParser`]: frame one backend reply (RESP2 and every RESP3 type), so the proxy can
//!   hand raw reply bytes back to the waiting request in FIFO order.
//! - `write_*`: encoders appending to a reused `Vec<u8>`, without allocating anything else. Those taking a
//!   [`Proto`] write the form a client of that RESP version expects (`_` or `$-1`, a map or a flat array).
//! - [`lookup`], [`arity_ok`], [`key_indices`]: what the proxy may do with a command and where its keys are.
//! - [`ReplyShape`]: which reply types can answer a request, so a backend connection out of step is caught.
//!
//! Framing never scans inside bulk bodies: a parser reads the length header and jumps over the body, so a
//! large value arriving in many small reads costs O(headers) per attempt. The resumable [`RequestParser`]
//! and [`ReplyParser`] go further and continue where the previous attempt stopped, which keeps requests
//! and replies with a huge number of small elements linear too.

mod acl;
pub mod blocking;
mod client;
mod command_reply;
mod command_table;
mod commands;
mod decimal;
mod encode;
mod hello;
mod inline;
mod key_specs_redis7;
pub mod pubsub;
mod readonly;
mod reply;
mod reply_shape;
mod request;
mod scan;
pub mod transaction;

pub use acl::{noperm_error, read_only_may_run};
pub use client::{parse_client, valid_client_attr, write_client_line, ClientFacts, ClientMeta, ClientOp, LibAttr};
pub use command_reply::{docs_request, write_command_reply};
pub use commands::{
    arity_error, arity_ok, command_index, key_indices, lookup, printable, CommandInfo, CommandKind, KeySpec, Local,
    PoolCmd, Split, StoreOption, COMMAND_COUNT,
};
pub use encode::{
    write_array_header, write_boolean, write_bulk, write_command, write_command_iter, write_double, write_error,
    write_hello, write_integer, write_map_header, write_null, write_null_aggregate, write_null_array, write_null_bulk,
    write_push_header, write_set_header, write_simple, write_unknown_command, write_verbatim, HelloFields, Proto,
};
pub use hello::{is_resp3_hello_reply, parse_hello, strict_integer, Hello};
pub use readonly::is_readonly;
pub use reply::{array_elements, is_error_reply, is_push_reply, parse_integer_reply, reply_len, ReplyParser};
pub use reply_shape::{Mismatch, ReplyShape, ReplyType};
pub use request::{parse_request, RequestParser};
pub use scan::{next_scan_cursor, rewrite_scan_reply, split_scan_cursor};

use std::fmt;

/// A malformed byte stream. The text is what follows "Protocol error: " in the `-ERR` reply sent before
/// closing the connection, worded like redis-server's own messages where redis has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl ProtocolError {
    fn new(message: impl Into<String>) -> Self {
        ProtocolError(message.into())
    }
}

/// Largest bulk argument accepted, as redis' default `proto-max-bulk-len`.
pub const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Most arguments in one multibulk request. Redis allows more, but a proxy request this wide is abuse.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline request line, newline included, as redis' `PROTO_INLINE_MAX_SIZE`.
pub const MAX_INLINE_LEN: usize = 64 * 1024;

/// Renders a byte for an error message: itself when printable, `\xNN` otherwise, so the message is valid
/// UTF-8 and can never carry CR or LF into an error reply.
fn printable_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() || byte == b' ' {
        char::from(byte).to_string()
    } else {
        format!("\\x{byte:02x}")
    }
}
