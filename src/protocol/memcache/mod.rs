//! The memcached ASCII (text) protocol, as a proxy needs it: parse client requests out of a
//! read buffer, frame backend replies, take retrieval replies apart to reassemble split
//! multi-gets, and encode the requests the proxy itself sends.
//!
//! Everything here is pure: no I/O and no allocation on the request path beyond the caller's
//! reused buffers. Behaviour follows memcached 1.6 where a client could notice (command names
//! are lowercase only, error strings are memcached's, `noreply` silences even errors), and is
//! stricter where being lenient would let a request reach a server that then reads it
//! differently from the proxy.
//!
//! Commands: get gets gat gats set add replace append prepend cas incr decr delete touch
//! version quit stats flush_all verbosity. Meta commands (mg, ms, md, ma, mn, me) and the
//! binary protocol are not supported: the former get `ERROR` like any unknown command, the
//! latter ends the connection.

mod command;
mod encode;
mod lex;
mod reply;
mod reply_framer;
mod request;

#[cfg(test)]
mod reply_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod stream_tests;

pub use command::Command;
pub use encode::{write_retrieval, write_storage};
pub use reply::{is_error_reply, reply_len, retrieval_items, MAX_REPLY_LINE_LEN};
pub use reply_framer::ReplyFramer;
pub use request::{
    parse_request, Parse, Request, BAD_DATA_CHUNK_REPLY, BAD_DELTA_REPLY, BAD_EXPTIME_REPLY, BAD_FORMAT_REPLY,
    BAD_KEY_REPLY, BINARY_PROTOCOL_REPLY, DELETE_USAGE_REPLY, ERROR_REPLY, LINE_TOO_LONG_REPLY, MAX_LINE_LEN,
    MAX_RETRIEVAL_LINE_LEN, TOO_LARGE_REPLY,
};

/// The longest key memcached stores.
pub const MAX_KEY_LEN: usize = 250;
