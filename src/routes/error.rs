//! `error`: mcrouter's ErrorRoute. Every request gets the same error reply, `message` (default "ferrule: error
//! route"): redis `-ERR <message>`, memcache `SERVER_ERROR <message>`. For retired prefixes and for tests.

use crate::config::Protocol;

pub fn write(protocol: Protocol, message: &str, out: &mut Vec<u8>) {
    match protocol {
        Protocol::Redis => out.extend_from_slice(b"-ERR "),
        Protocol::Memcache => out.extend_from_slice(b"SERVER_ERROR "),
    }
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols() {
        let mut out = Vec::new();
        write(Protocol::Redis, "gone", &mut out);
        write(Protocol::Memcache, "gone", &mut out);
        assert_eq!(out, b"-ERR gone\r\nSERVER_ERROR gone\r\n");
    }
}
