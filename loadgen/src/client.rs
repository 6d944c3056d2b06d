//! The client side of both protocols, built on ferrule's own codecs: encode the generator's
//! requests, frame the replies, and judge each reply (hit, miss, error, wrong value).

use std::ops::Range;

use ferrule::protocol::{memcache, redis};

use crate::cli::ProtocolName;
use crate::workload::{parse_key, OpKind, ValueMaker};

/// What one reply said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Keys found.
    pub hits: u64,
    /// Keys not found.
    pub misses: u64,
    /// The server answered with an error.
    pub error_reply: bool,
    /// The reply is not what the command returns.
    pub bad_reply: bool,
    /// Values that differ from what was written (only with verification on).
    pub wrong_values: u64,
}

/// Checks values read back against [`ValueMaker`]'s, for `--verify`.
pub struct Verifier<'a> {
    /// Makes the expected values.
    pub values: &'a ValueMaker,
    /// Key name prefix, to map memcache's returned key names back to indices.
    pub key_prefix: &'a [u8],
}

/// Encoder and reply judge for one connection; owns its reusable scratch buffers.
pub struct Codec {
    protocol: ProtocolName,
    redis_framer: redis::ReplyParser,
    elements: Vec<Range<usize>>,
    items: Vec<(Range<usize>, Range<usize>)>,
    scratch: Vec<u8>,
}

impl Codec {
    /// A codec for `protocol`.
    pub fn new(protocol: ProtocolName) -> Self {
        Self {
            protocol,
            redis_framer: redis::ReplyParser::new(),
            elements: Vec::new(),
            items: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Appends a read of `keys` (ranges of `names`): GET/MGET for redis, get for memcache.
    pub fn encode_read(&self, op: OpKind, names: &[u8], keys: &[Range<usize>], out: &mut Vec<u8>) {
        let key_bytes = keys.iter().map(|range| names.get(range.clone()).unwrap_or_default());
        match self.protocol {
            ProtocolName::Redis => {
                let command: &[u8] = if op == OpKind::Mget { b"MGET" } else { b"GET" };
                redis::write_command_iter(out, keys.len() + 1, std::iter::once(command).chain(key_bytes));
            }
            ProtocolName::Memcache => {
                memcache::write_retrieval(out, memcache::Command::Get, None, key_bytes);
            }
            ProtocolName::MemcacheMeta if op == OpKind::Mget => {
                // As meta clients fetch several keys: quiet gets (only hits answer, each naming its key), then mn.
                for key in key_bytes {
                    out.extend_from_slice(b"mg ");
                    out.extend_from_slice(key);
                    out.extend_from_slice(b" k v q\r\n");
                }
                out.extend_from_slice(b"mn\r\n");
            }
            ProtocolName::MemcacheMeta => {
                for key in key_bytes.take(1) {
                    out.extend_from_slice(b"mg ");
                    out.extend_from_slice(key);
                    out.extend_from_slice(b" v\r\n");
                }
            }
        }
    }

    /// Appends a write of `value` under `key`.
    pub fn encode_set(&self, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        match self.protocol {
            ProtocolName::Redis => redis::write_command(out, &[b"SET", key, value]),
            ProtocolName::Memcache => {
                memcache::write_storage(out, memcache::Command::Set, key, 0, 0, value, None, false)
            }
            ProtocolName::MemcacheMeta => {
                out.extend_from_slice(b"ms ");
                out.extend_from_slice(key);
                out.push(b' ');
                ferrule::protocol::push_decimal(out, value.len() as u64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Length of the complete reply to `op` at the start of `buf`, `None` if more bytes are
    /// needed, or why the bytes cannot be a reply (the connection is then out of step).
    ///
    /// For redis the framer remembers its progress, so `buf` must keep starting at the same
    /// reply between calls that return `None`; [`Codec::reset`] forgets it.
    pub fn frame(&mut self, op: OpKind, buf: &[u8]) -> Result<Option<usize>, String> {
        match self.protocol {
            ProtocolName::Redis => self.redis_framer.parse(buf).map_err(|err| err.0),
            ProtocolName::Memcache => {
                let command = match op {
                    OpKind::Get | OpKind::Mget => memcache::Command::Get,
                    OpKind::Set => memcache::Command::Set,
                };
                memcache::reply_len(buf, command)
            }
            ProtocolName::MemcacheMeta => match op {
                OpKind::Get => memcache::reply_len(buf, memcache::Command::MetaGet),
                OpKind::Set => memcache::reply_len(buf, memcache::Command::MetaSet),
                OpKind::Mget => {
                    // The hits' replies (or error lines), then MN.
                    let mut at = 0;
                    loop {
                        let rest = buf.get(at..).unwrap_or_default();
                        if rest.starts_with(b"MN\r\n") {
                            return Ok(Some(at + 4));
                        }
                        if rest.len() < 4 && b"MN\r\n".starts_with(rest) {
                            return Ok(None);
                        }
                        match memcache::reply_len(rest, memcache::Command::MetaGet)? {
                            Some(n) => at += n,
                            None => return Ok(None),
                        }
                    }
                }
            },
        }
    }

    /// Forgets any partly framed reply (after the connection was lost).
    pub fn reset(&mut self) {
        self.redis_framer.reset();
    }

    /// Judges the complete reply `reply` to `op` on `keys` (the key indices requested, in
    /// order; only needed when `verifier` is given).
    pub fn judge(
        &mut self,
        op: OpKind,
        reply: &[u8],
        requested: usize,
        keys: &[u64],
        verifier: Option<&Verifier<'_>>,
    ) -> Verdict {
        let error_reply = match self.protocol {
            ProtocolName::Redis => redis::is_error_reply(reply),
            ProtocolName::Memcache => memcache::is_error_reply(reply),
            ProtocolName::MemcacheMeta => meta_replies(reply).any(memcache::is_error_reply),
        };
        if error_reply {
            return Verdict { error_reply: true, ..Verdict::default() };
        }
        match (self.protocol, op) {
            (ProtocolName::Redis, OpKind::Set) => simple(reply == b"+OK\r\n"),
            (ProtocolName::Memcache, OpKind::Set) => simple(reply == b"STORED\r\n"),
            (ProtocolName::Redis, OpKind::Get) => {
                let mut verdict = Verdict::default();
                self.judge_redis_bulk(reply, keys.first().copied(), verifier, &mut verdict);
                verdict
            }
            (ProtocolName::Redis, OpKind::Mget) => self.judge_redis_array(reply, keys, verifier),
            (ProtocolName::Memcache, _) => self.judge_memcache_items(reply, requested, keys, verifier),
            (ProtocolName::MemcacheMeta, OpKind::Set) => simple(reply == b"HD\r\n"),
            (ProtocolName::MemcacheMeta, OpKind::Get) => self.judge_meta_gets(reply, 1, keys, verifier, false),
            (ProtocolName::MemcacheMeta, OpKind::Mget) => self.judge_meta_gets(reply, requested, keys, verifier, true),
        }
    }

    fn judge_redis_array(&mut self, reply: &[u8], keys: &[u64], verifier: Option<&Verifier<'_>>) -> Verdict {
        let mut verdict = Verdict::default();
        let mut elements = std::mem::take(&mut self.elements);
        if redis::array_elements(reply, &mut elements) {
            for (index, range) in elements.iter().enumerate() {
                let element = reply.get(range.clone()).unwrap_or_default();
                self.judge_redis_bulk(element, keys.get(index).copied(), verifier, &mut verdict);
            }
        } else {
            verdict.bad_reply = true;
        }
        self.elements = elements;
        verdict
    }

    /// One bulk string: `$-1\r\n` is a miss, `$<n>\r\n<n bytes>\r\n` a hit.
    fn judge_redis_bulk(
        &mut self,
        reply: &[u8],
        key: Option<u64>,
        verifier: Option<&Verifier<'_>>,
        verdict: &mut Verdict,
    ) {
        if reply == b"$-1\r\n" || reply == b"_\r\n" {
            verdict.misses += 1;
            return;
        }
        let Some(value) = bulk_payload(reply) else {
            verdict.bad_reply = true;
            return;
        };
        verdict.hits += 1;
        if let (Some(verifier), Some(key)) = (verifier, key) {
            if !verifier.values.matches(key, value, &mut self.scratch) {
                verdict.wrong_values += 1;
            }
        }
    }

    fn judge_memcache_items(
        &mut self,
        reply: &[u8],
        requested: usize,
        keys: &[u64],
        verifier: Option<&Verifier<'_>>,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let mut items = std::mem::take(&mut self.items);
        if memcache::retrieval_items(reply, &mut items) && items.len() <= requested {
            verdict.hits = items.len() as u64;
            verdict.misses = (requested - items.len()) as u64;
            if let Some(verifier) = verifier {
                // Found items come back in request order, a subsequence of the keys asked for.
                let mut remaining = keys.iter();
                for (key_range, item_range) in &items {
                    let name = reply.get(key_range.clone()).unwrap_or_default();
                    let item = reply.get(item_range.clone()).unwrap_or_default();
                    let index = parse_key(verifier.key_prefix, name);
                    let asked = index.is_some_and(|index| remaining.any(|&k| k == index));
                    let value_ok = match (index, item_data(item)) {
                        (Some(index), Some(data)) if asked => verifier.values.matches(index, data, &mut self.scratch),
                        _ => false,
                    };
                    if !value_ok {
                        verdict.wrong_values += 1;
                    }
                }
            }
        } else {
            verdict.bad_reply = true;
        }
        self.items = items;
        verdict
    }
}

impl Codec {
    /// mg replies: `VA <n> [k<key>]` items (with `named`, the hits of a quiet multi-get ended by `MN`, in request
    /// order), or one `EN` for a single miss.
    fn judge_meta_gets(
        &mut self,
        reply: &[u8],
        requested: usize,
        keys: &[u64],
        verifier: Option<&Verifier<'_>>,
        named: bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let mut remaining = keys.iter();
        let mut found = 0usize;
        for r in meta_replies(reply) {
            if r == b"MN\r\n" && named {
                continue;
            }
            if r == b"EN\r\n" && !named {
                verdict.misses += 1;
                continue;
            }
            let Some((header, data)) = meta_value(r) else {
                verdict.bad_reply = true;
                return verdict;
            };
            found += 1;
            let Some(verifier) = verifier else { continue };
            let index = match named {
                true => header
                    .split(|&b| b == b' ')
                    .find_map(|t| t.strip_prefix(b"k"))
                    .and_then(|name| parse_key(verifier.key_prefix, name))
                    .filter(|index| remaining.any(|k| k == index)),
                false => keys.first().copied(),
            };
            if !index.is_some_and(|index| verifier.values.matches(index, data, &mut self.scratch)) {
                verdict.wrong_values += 1;
            }
        }
        if found > requested || (!named && found + verdict.misses as usize != 1) {
            verdict.bad_reply = true;
        }
        verdict.hits = found as u64;
        if named {
            verdict.misses = (requested.saturating_sub(found)) as u64;
        }
        verdict
    }
}

/// The meta replies one after another in `reply` (a multi-get's are several; framed already, so well formed).
fn meta_replies(reply: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = reply;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = match memcache::reply_len(rest, memcache::Command::MetaGet) {
            Ok(Some(n)) => n,
            // MN, or anything else: the rest as one reply.
            _ => rest.len(),
        };
        let (one, more) = rest.split_at(n);
        rest = more;
        Some(one)
    })
}

/// The header line (without `\r\n`) and the data of a `VA <n> <flags>*` reply.
fn meta_value(reply: &[u8]) -> Option<(&[u8], &[u8])> {
    let header_end = reply.windows(2).position(|pair| pair == b"\r\n")?;
    let header = reply.get(..header_end)?.strip_prefix(b"VA ")?;
    Some((header, reply.get(header_end + 2..reply.len().checked_sub(2)?)?))
}

fn simple(expected: bool) -> Verdict {
    Verdict { bad_reply: !expected, ..Verdict::default() }
}

/// The payload of a complete bulk string reply, `None` for anything else.
fn bulk_payload(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let header_end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    let len: usize = std::str::from_utf8(rest.get(..header_end)?).ok()?.parse().ok()?;
    let body = rest.get(header_end + 2..)?;
    let payload = body.get(..len)?;
    (body.get(len..)? == b"\r\n").then_some(payload)
}

/// The data block of one memcache item (`VALUE <key> <flags> <bytes>\r\n<data>\r\n`).
fn item_data(item: &[u8]) -> Option<&[u8]> {
    let header_end = item.windows(2).position(|pair| pair == b"\r\n")?;
    item.get(header_end + 2..item.len().checked_sub(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{write_key, ValueSize};

    fn verifier(values: &ValueMaker) -> Verifier<'_> {
        Verifier { values, key_prefix: b"key:" }
    }

    fn names(keys: &[u64]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for &key in keys {
            let start = buf.len();
            write_key(b"key:", key, &mut buf);
            ranges.push(start..buf.len());
        }
        (buf, ranges)
    }

    #[test]
    fn encodes_reads_and_writes_for_both_protocols() {
        let (buf, ranges) = names(&[1, 22]);
        let redis = Codec::new(ProtocolName::Redis);
        let mut out = Vec::new();
        redis.encode_read(OpKind::Mget, &buf, &ranges, &mut out);
        assert_eq!(out, b"*3\r\n$4\r\nMGET\r\n$5\r\nkey:1\r\n$6\r\nkey:22\r\n");
        out.clear();
        redis.encode_read(OpKind::Get, &buf, &ranges[..1], &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n");
        out.clear();
        redis.encode_set(b"k", b"vv", &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n");

        let memcache = Codec::new(ProtocolName::Memcache);
        out.clear();
        memcache.encode_read(OpKind::Mget, &buf, &ranges, &mut out);
        assert_eq!(out, b"get key:1 key:22\r\n");
        out.clear();
        memcache.encode_set(b"k", b"vv", &mut out);
        assert_eq!(out, b"set k 0 0 2\r\nvv\r\n");
    }

    #[test]
    fn judges_redis_replies() {
        let values = ValueMaker::new(ValueSize::fixed(8));
        let mut value = Vec::new();
        values.write_value(5, &mut value);
        let mut codec = Codec::new(ProtocolName::Redis);
        let v = verifier(&values);
        let mut hit = format!("${}\r\n", value.len()).into_bytes();
        hit.extend_from_slice(&value);
        hit.extend_from_slice(b"\r\n");
        assert_eq!(codec.frame(OpKind::Get, &hit), Ok(Some(hit.len())));
        let verdict = codec.judge(OpKind::Get, &hit, 1, &[5], Some(&v));
        assert_eq!((verdict.hits, verdict.wrong_values), (1, 0));
        let verdict = codec.judge(OpKind::Get, &hit, 1, &[6], Some(&v));
        assert_eq!(verdict.wrong_values, 1);
        let verdict = codec.judge(OpKind::Get, b"$-1\r\n", 1, &[5], Some(&v));
        assert_eq!(verdict.misses, 1);
        assert!(codec.judge(OpKind::Get, b"-ERR no\r\n", 1, &[], None).error_reply);
        assert!(codec.judge(OpKind::Get, b":1\r\n", 1, &[], None).bad_reply);
        assert!(codec.judge(OpKind::Get, b"$9\r\nab\r\n", 1, &[], None).bad_reply);
        assert_eq!(codec.judge(OpKind::Set, b"+OK\r\n", 1, &[], None), Verdict::default());
        assert!(codec.judge(OpKind::Set, b"+QUEUED\r\n", 1, &[], None).bad_reply);

        let mut array = b"*2\r\n".to_vec();
        array.extend_from_slice(&hit);
        array.extend_from_slice(b"$-1\r\n");
        let verdict = codec.judge(OpKind::Mget, &array, 2, &[5, 9], Some(&v));
        assert_eq!((verdict.hits, verdict.misses, verdict.wrong_values), (1, 1, 0));
        assert!(codec.judge(OpKind::Mget, b"*-1\r\n", 2, &[], None).bad_reply);
    }

    #[test]
    fn judges_memcache_replies() {
        let values = ValueMaker::new(ValueSize::fixed(6));
        let mut value = Vec::new();
        values.write_value(22, &mut value);
        let mut codec = Codec::new(ProtocolName::Memcache);
        let v = verifier(&values);
        let mut reply = format!("VALUE key:22 0 {}\r\n", value.len()).into_bytes();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(codec.frame(OpKind::Mget, &reply), Ok(Some(reply.len())));
        assert_eq!(codec.frame(OpKind::Mget, &reply[..reply.len() - 1]), Ok(None));
        let verdict = codec.judge(OpKind::Mget, &reply, 3, &[1, 22, 40], Some(&v));
        assert_eq!((verdict.hits, verdict.misses, verdict.wrong_values), (1, 2, 0));
        // An item for a key that was not asked for is a wrong value.
        let verdict = codec.judge(OpKind::Mget, &reply, 2, &[1, 40], Some(&v));
        assert_eq!(verdict.wrong_values, 1);
        let verdict = codec.judge(OpKind::Get, b"END\r\n", 1, &[1], Some(&v));
        assert_eq!((verdict.hits, verdict.misses), (0, 1));
        assert!(codec.judge(OpKind::Get, b"SERVER_ERROR oom\r\n", 1, &[], None).error_reply);
        assert!(codec.judge(OpKind::Set, b"NOT_STORED\r\n", 1, &[], None).bad_reply);
        assert_eq!(codec.judge(OpKind::Set, b"STORED\r\n", 1, &[], None), Verdict::default());
        assert!(codec.frame(OpKind::Set, b"VALUE x 0 1\r\n").is_err());
    }

    #[test]
    fn meta_mode_encodes_mg_and_ms_and_judges_their_replies() {
        let (buf, ranges) = names(&[1, 22]);
        let meta = Codec::new(ProtocolName::MemcacheMeta);
        let mut out = Vec::new();
        meta.encode_read(OpKind::Get, &buf, &ranges[..1], &mut out);
        assert_eq!(out, b"mg key:1 v\r\n");
        out.clear();
        meta.encode_read(OpKind::Mget, &buf, &ranges, &mut out);
        assert_eq!(out, b"mg key:1 k v q\r\nmg key:22 k v q\r\nmn\r\n");
        out.clear();
        meta.encode_set(b"k", b"vv", &mut out);
        assert_eq!(out, b"ms k 2\r\nvv\r\n");

        let values = ValueMaker::new(ValueSize::fixed(6));
        let mut value = Vec::new();
        values.write_value(22, &mut value);
        let v = verifier(&values);
        let mut codec = Codec::new(ProtocolName::MemcacheMeta);
        let mut hit = format!("VA {}\r\n", value.len()).into_bytes();
        hit.extend_from_slice(&value);
        hit.extend_from_slice(b"\r\n");
        assert_eq!(codec.frame(OpKind::Get, &hit), Ok(Some(hit.len())));
        assert_eq!(codec.frame(OpKind::Get, &hit[..hit.len() - 1]), Ok(None));
        let verdict = codec.judge(OpKind::Get, &hit, 1, &[22], Some(&v));
        assert_eq!((verdict.hits, verdict.misses, verdict.wrong_values), (1, 0, 0));
        assert_eq!(codec.judge(OpKind::Get, &hit, 1, &[1], Some(&v)).wrong_values, 1);
        let verdict = codec.judge(OpKind::Get, b"EN\r\n", 1, &[1], Some(&v));
        assert_eq!((verdict.hits, verdict.misses, verdict.bad_reply), (0, 1, false));
        assert_eq!(codec.judge(OpKind::Set, b"HD\r\n", 1, &[], None), Verdict::default());
        assert!(codec.judge(OpKind::Set, b"NS\r\n", 1, &[], None).bad_reply);
        assert!(codec.judge(OpKind::Get, b"SERVER_ERROR backend down\r\n", 1, &[], None).error_reply);

        // A multi-get: the hits, named by k, then MN.
        let mut many = format!("VA {} kkey:22\r\n", value.len()).into_bytes();
        many.extend_from_slice(&value);
        many.extend_from_slice(b"\r\nMN\r\n");
        assert_eq!(codec.frame(OpKind::Mget, &many), Ok(Some(many.len())));
        for cut in 0..many.len() {
            assert_eq!(codec.frame(OpKind::Mget, &many[..cut]), Ok(None), "cut at {cut}");
        }
        let verdict = codec.judge(OpKind::Mget, &many, 3, &[1, 22, 40], Some(&v));
        assert_eq!((verdict.hits, verdict.misses, verdict.wrong_values), (1, 2, 0));
        assert_eq!(codec.judge(OpKind::Mget, &many, 2, &[1, 40], Some(&v)).wrong_values, 1, "not asked for");
        assert_eq!(codec.judge(OpKind::Mget, b"MN\r\n", 2, &[1, 40], Some(&v)).misses, 2);
        assert!(codec.judge(OpKind::Mget, b"SERVER_ERROR x\r\nMN\r\n", 2, &[], None).error_reply);
        assert!(codec.frame(OpKind::Mget, b"HX\r\n").is_err());
    }

    #[test]
    fn payload_helpers_reject_truncation() {
        assert_eq!(bulk_payload(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(bulk_payload(b"$3\r\nabc"), None);
        assert_eq!(bulk_payload(b"$x\r\nabc\r\n"), None);
        assert_eq!(item_data(b"VALUE k 0 2\r\nab\r\n"), Some(&b"ab"[..]));
        assert_eq!(item_data(b"VALUE"), None);
    }
}
