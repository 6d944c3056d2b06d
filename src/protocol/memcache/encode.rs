//! Request encoders: the sub-requests of a multi-get split across servers, and the load
//! generator's traffic. They append to a caller-owned buffer and never allocate beyond growing it.

use super::lex::push_decimal;
use super::Command;

/// Appends `<command> [<exptime>] <key>...\r\n`, e.g. `get k1 k2\r\n` or `gat 10 k1 k2\r\n`.
///
/// `command` must be a retrieval command. `exptime` is written for gat/gats only (they need
/// it) and ignored for get/gets, so a caller re-encoding any split retrieval can pass
/// [`super::Request::exptime`]'s bytes through unchanged.
pub fn write_retrieval<'a>(
    out: &mut Vec<u8>,
    command: Command,
    exptime: Option<&[u8]>,
    keys: impl Iterator<Item = &'a [u8]>,
) {
    debug_assert!(command.is_retrieval(), "{command:?} is not a retrieval");
    out.extend_from_slice(command.name().as_bytes());
    if let (Command::Gat | Command::Gats, Some(exptime)) = (command, exptime) {
        out.push(b' ');
        out.extend_from_slice(exptime);
    }
    for key in keys {
        out.push(b' ');
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `<command> <key> <flags> <exptime> <bytes> [<cas>] [noreply]\r\n<value>\r\n`.
///
/// `command` must be a storage command. The cas unique is written for `cas` only (`cas` being
/// None there writes 0, which never matches); it is ignored for the others. `exptime` should
/// stay within `i32::MAX`, the range memcached (and [`super::parse_request`]) accepts.
#[allow(clippy::too_many_arguments)] // the protocol's own fields, in wire order
pub fn write_storage(
    out: &mut Vec<u8>,
    command: Command,
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    cas: Option<u64>,
    noreply: bool,
) {
    debug_assert!(command.is_storage(), "{command:?} is not a storage command");
    out.reserve(command.name().len() + key.len() + value.len() + 64);
    out.extend_from_slice(command.name().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    for number in [u64::from(flags), u64::from(exptime), value.len() as u64] {
        out.push(b' ');
        push_decimal(out, number);
    }
    if command == Command::Cas {
        out.push(b' ');
        push_decimal(out, cas.unwrap_or(0));
    }
    if noreply {
        out.extend_from_slice(b" noreply");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
