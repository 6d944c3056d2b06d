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
//! version quit stats flush_all verbosity, and the meta commands mg ms md ma mn me ([`meta`]).
//! The binary protocol is not supported: it gets the binary protocol's own error response
//! ([`write_binary_refusal`]) and the connection ends.

mod command;
mod encode;
mod lex;
pub mod meta;
mod reply;
mod reply_framer;
mod request;

#[cfg(test)]
mod meta_tests;
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
pub use request::write_binary_refusal;
pub use request::{
    parse_request, Parse, Request, BAD_DATA_CHUNK_REPLY, BAD_DELTA_REPLY, BAD_EXPTIME_REPLY, BAD_FORMAT_REPLY,
    BAD_KEY_REPLY, BINARY_HEADER_LEN, BINARY_PROTOCOL_MESSAGE, DELETE_USAGE_REPLY, ERROR_REPLY, LINE_TOO_LONG_REPLY,
    MAX_LINE_LEN, MAX_RETRIEVAL_LINE_LEN, TOO_LARGE_REPLY,
};

/// The memcached version ferrule answers to `version` (and in `stats`) before its own:
/// `VERSION 1.6.0-ferrule-0.1.0`. Clients parse the version as numbers (libmemcached reads
/// major.minor.micro with strtol, and memcping or php-memcached's getVersion() fail on
/// `ferrule-0.1.0`); 1.6.0 is the text protocol ferrule follows (memcached 1.6's replies and
/// error strings), and the suffix still names the proxy.
pub const MEMCACHED_COMPAT_VERSION: &str = "1.6.0";
/// The whole `version` reply.
pub const VERSION_REPLY: &str = concat!("VERSION 1.6.0-ferrule-", env!("CARGO_PKG_VERSION"), "\r\n");

/// The longest key memcached stores.
pub const MAX_KEY_LEN: usize = 250;
