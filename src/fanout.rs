//! Reassembling the reply to a multi-key request that was split across servers (pure, no I/O).
//!
//! A split request becomes one sub-request ("fragment") per server. Each fragment's reply is stored as it arrives;
//! when the last one is in, [`Fanout::merge`] builds the single reply the client expects, in the client's key order.

use crate::protocol::{memcache, redis};
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeKind {
    /// Redis MGET: an array with one element per requested key, in request order.
    RedisMget,
    /// Redis MSET: `+OK` when every fragment said OK.
    RedisMset,
    /// Redis DEL / UNLINK / TOUCH / EXISTS: the sum of the fragments' integer replies.
    RedisSum,
    /// Memcached get/gets/gat/gats: VALUE items re-emitted in request order, then one END.
    McRetrieval,
    /// A command sent to every server of a pool (SCRIPT LOAD / FLUSH, FUNCTION LOAD / DELETE / FLUSH / LIST): the
    /// reply they all agree on; an error when they differ.
    RedisSame,
    /// SCRIPT EXISTS on every server: per position, 1 only when every server has the script.
    RedisAndArray,
    /// SCAN of one server of a pool (one fragment): its reply with the cursor rewritten for the client
    /// (see `redis::rewrite_scan_reply`); `next` is the next live server, `u32::MAX` for none.
    RedisScan { server: u32, next: u32, servers: u32 },
    /// PUBSUB CHANNELS / SHARDCHANNELS on every live server: the names, each once.
    RedisChannels,
    /// PUBSUB NUMSUB / SHARDNUMSUB on every live server: the counts summed per channel.
    RedisNumsub,
    /// PUBSUB NUMPAT on every live server: the largest count. Pattern subscriptions through the proxy are on
    /// every server, so a sum would count each of them once per server.
    RedisMax,
}

/// The bookkeeping of one split request.
#[derive(Debug)]
pub struct Fanout {
    pub kind: MergeKind,
    /// Redis: the client's RESP version, for the replies the merge makes itself (a nil is `_` in RESP3).
    pub proto: redis::Proto,
    /// For each requested key, in request order, the fragment it was sent in.
    pub key_frag: Vec<u32>,
    /// Memcached only: the requested keys, concatenated, to match VALUE items against.
    pub keys: Vec<u8>,
    pub key_ranges: Vec<Range<usize>>,
    /// Each fragment's reply as a range of the collecting buffer; `None` until it arrives.
    pub replies: Vec<Option<Range<usize>>>,
    pub outstanding: usize,
    /// Merge scratch, kept so that a recycled `Fanout` merges without allocating: every fragment's element (redis)
    /// or item (memcache) ranges back to back, where fragment f's start at `starts[f]`, and a cursor per fragment.
    elems: Vec<Range<usize>>,
    items: Vec<(Range<usize>, Range<usize>)>,
    starts: Vec<usize>,
    cursor: Vec<usize>,
    one_elems: Vec<Range<usize>>,
    one_items: Vec<(Range<usize>, Range<usize>)>,
}

impl Fanout {
    pub fn new(kind: MergeKind, fragments: usize) -> Fanout {
        let mut f = Fanout {
            kind,
            proto: redis::Proto::Resp2,
            key_frag: Vec::new(),
            keys: Vec::new(),
            key_ranges: Vec::new(),
            replies: Vec::new(),
            outstanding: 0,
            elems: Vec::new(),
            items: Vec::new(),
            starts: Vec::new(),
            cursor: Vec::new(),
            one_elems: Vec::new(),
            one_items: Vec::new(),
        };
        f.reset(kind, fragments);
        f
    }

    /// Prepares a used `Fanout` for another request, keeping its buffers (the reply queue recycles them).
    pub fn reset(&mut self, kind: MergeKind, fragments: usize) {
        self.kind = kind;
        self.proto = redis::Proto::Resp2;
        self.key_frag.clear();
        self.keys.clear();
        self.key_ranges.clear();
        self.replies.clear();
        self.replies.resize(fragments, None);
        self.outstanding = fragments;
    }

    /// Bytes its buffers hold, so that the reply queue recycles only fanouts of ordinary size: one request with
    /// a hundred thousand keys must not leave its bookkeeping allocated for the connection's life.
    pub fn retained_bytes(&self) -> usize {
        use std::mem::size_of;
        self.key_frag.capacity() * size_of::<u32>()
            + self.keys.capacity()
            + (self.key_ranges.capacity() + self.elems.capacity() + self.one_elems.capacity())
                * size_of::<Range<usize>>()
            + self.replies.capacity() * size_of::<Option<Range<usize>>>()
            + (self.items.capacity() + self.one_items.capacity()) * size_of::<(Range<usize>, Range<usize>)>()
            + (self.starts.capacity() + self.cursor.capacity()) * size_of::<usize>()
    }

    /// Records fragment `frag`'s reply, stored at `range` of the collecting buffer. Returns true when all are in.
    pub fn arrived(&mut self, frag: usize, range: Range<usize>) -> bool {
        if let Some(slot) = self.replies.get_mut(frag) {
            if slot.is_none() {
                *slot = Some(range);
                self.outstanding -= 1;
            }
        }
        self.outstanding == 0
    }

    /// Whether `reply` can be fragment `frag`'s reply, checked as it arrives so that the backend connection that
    /// sent an impossible one is closed (and the request failed as a whole) before anything is merged. An error
    /// always fits: it stands for the whole command. Otherwise a split MGET fragment must be an array of exactly its
    /// key count, MSET `+OK`, DEL/EXISTS/UNLINK/TOUCH an integer, and a memcached get only VALUE items for keys it
    /// asked for, in the order it asked. `Err` names what the reply could not answer.
    pub fn fits(&mut self, frag: usize, reply: &[u8]) -> Result<(), &'static str> {
        let fits = match self.kind {
            MergeKind::McRetrieval => memcache::is_error_reply(reply) || self.items_fit(frag, reply),
            _ if redis::is_error_reply(reply) => true,
            MergeKind::RedisMset => reply == b"+OK\r\n",
            MergeKind::RedisSame => true,
            MergeKind::RedisAndArray => {
                let mut scratch = std::mem::take(&mut self.one_elems);
                let fits = redis::array_elements(reply, &mut scratch)
                    && scratch.iter().all(|r| redis::parse_integer_reply(&reply[r.clone()]).is_some());
                self.one_elems = scratch;
                fits
            }
            MergeKind::RedisScan { .. } => {
                let mut scratch = std::mem::take(&mut self.one_elems);
                let fits = redis::array_elements(reply, &mut scratch) && scratch.len() == 2;
                self.one_elems = scratch;
                fits
            }
            MergeKind::RedisSum | MergeKind::RedisMax => redis::parse_integer_reply(reply).is_some(),
            MergeKind::RedisChannels => matches!(reply.first(), Some(b'*' | b'~')),
            MergeKind::RedisNumsub => matches!(reply.first(), Some(b'*' | b'%')),
            MergeKind::RedisMget => {
                let keys = self.key_frag.iter().filter(|&&f| f as usize == frag).count();
                let mut scratch = std::mem::take(&mut self.one_elems);
                let fits = redis::array_elements(reply, &mut scratch) && scratch.len() == keys;
                self.one_elems = scratch;
                fits
            }
        };
        if fits {
            return Ok(());
        }
        Err(match self.kind {
            MergeKind::RedisMget => "a split MGET",
            MergeKind::RedisMset => "a split MSET",
            MergeKind::RedisSum => "a split DEL/EXISTS/UNLINK/TOUCH",
            MergeKind::McRetrieval => "a split get",
            MergeKind::RedisSame => "a command sent to every server",
            MergeKind::RedisAndArray => "SCRIPT EXISTS",
            MergeKind::RedisScan { .. } => "SCAN",
            MergeKind::RedisChannels => "PUBSUB CHANNELS",
            MergeKind::RedisNumsub => "PUBSUB NUMSUB",
            MergeKind::RedisMax => "PUBSUB NUMPAT",
        })
    }

    /// A memcached retrieval fragment: its VALUE items must be for keys of this fragment, in request order (a
    /// server omits misses but never reorders or invents keys).
    fn items_fit(&mut self, frag: usize, reply: &[u8]) -> bool {
        let mut scratch = std::mem::take(&mut self.one_items);
        let mut fits = memcache::retrieval_items(reply, &mut scratch);
        if fits {
            let mut items = scratch.iter();
            let mut next = items.next();
            for (i, &f) in self.key_frag.iter().enumerate() {
                if let Some((k, _)) = next {
                    if f as usize == frag && reply[k.clone()] == self.keys[self.key_ranges[i].clone()] {
                        next = items.next();
                    }
                }
            }
            fits = next.is_none();
        }
        self.one_items = scratch;
        fits
    }

    fn reply<'a>(&self, data: &'a [u8], frag: usize) -> &'a [u8] {
        match self.replies.get(frag).cloned().flatten() {
            Some(r) => &data[r],
            None => &[],
        }
    }

    /// The first fragment reply that is an error, which then stands for the whole command (as twemproxy does).
    fn first_error<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        (0..self.replies.len()).map(|f| self.reply(data, f)).find(|r| match self.kind {
            MergeKind::McRetrieval => memcache::is_error_reply(r),
            _ => redis::is_error_reply(r),
        })
    }

    /// Builds the client's reply from the fragments' replies in `data` and appends it to `out`.
    pub fn merge(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if let Some(err) = self.first_error(data) {
            out.extend_from_slice(err);
            return;
        }
        match self.kind {
            MergeKind::RedisMset => {
                // Only an all-OK split MSET is OK: anything else means a reply did not belong to its fragment.
                if (0..self.replies.len()).all(|f| self.reply(data, f) == b"+OK\r\n") {
                    redis::write_simple(out, b"OK")
                } else {
                    redis::write_error(out, b"ERR ferrule: unexpected reply to a split MSET")
                }
            }
            MergeKind::RedisSum => {
                let mut sum: i64 = 0;
                for f in 0..self.replies.len() {
                    match redis::parse_integer_reply(self.reply(data, f)) {
                        Some(n) => sum = sum.saturating_add(n),
                        None => return redis::write_error(out, b"ERR ferrule: unexpected reply to a split command"),
                    }
                }
                redis::write_integer(out, sum);
            }
            MergeKind::RedisMget => self.merge_mget(data, out),
            MergeKind::McRetrieval => self.merge_retrieval(data, out),
            MergeKind::RedisSame => {
                let first = self.reply(data, 0);
                if (1..self.replies.len()).all(|f| self.reply(data, f) == first) {
                    out.extend_from_slice(first);
                } else {
                    redis::write_error(out, b"ERR ferrule: the servers of the pool answered differently");
                }
            }
            MergeKind::RedisAndArray => self.merge_and(data, out),
            MergeKind::RedisChannels => {
                if !redis::pubsub::merge_channels((0..self.replies.len()).map(|f| self.reply(data, f)), out) {
                    redis::write_error(out, b"ERR ferrule: unexpected reply to PUBSUB");
                }
            }
            MergeKind::RedisNumsub => {
                if !redis::pubsub::merge_numsub((0..self.replies.len()).map(|f| self.reply(data, f)), out) {
                    redis::write_error(out, b"ERR ferrule: unexpected reply to PUBSUB");
                }
            }
            MergeKind::RedisMax => {
                let max = (0..self.replies.len())
                    .map(|f| redis::parse_integer_reply(self.reply(data, f)))
                    .try_fold(0i64, |max, n| n.map(|n| max.max(n)));
                match max {
                    Some(n) => redis::write_integer(out, n),
                    None => redis::write_error(out, b"ERR ferrule: unexpected reply to PUBSUB NUMPAT"),
                }
            }
            MergeKind::RedisScan { server, next, servers } => {
                let next = (next != u32::MAX).then_some(next as usize);
                if !redis::rewrite_scan_reply(self.reply(data, 0), server as usize, next, servers as usize, out) {
                    redis::write_error(out, b"ERR ferrule: unexpected reply to SCAN");
                }
            }
        }
    }

    /// SCRIPT EXISTS: every server's array of 0/1, ANDed position by position.
    fn merge_and(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut and: Vec<bool> = Vec::new();
        let mut scratch = std::mem::take(&mut self.one_elems);
        for f in 0..self.replies.len() {
            let reply = self.reply(data, f);
            if !redis::array_elements(reply, &mut scratch) || (f > 0 && scratch.len() != and.len()) {
                self.one_elems = scratch;
                return redis::write_error(out, b"ERR ferrule: unexpected reply to SCRIPT EXISTS");
            }
            if f == 0 {
                and.resize(scratch.len(), true);
            }
            for (slot, r) in and.iter_mut().zip(&scratch) {
                *slot &= redis::parse_integer_reply(&reply[r.clone()]) == Some(1);
            }
        }
        self.one_elems = scratch;
        redis::write_array_header(out, and.len());
        for exists in and {
            redis::write_integer(out, exists as i64);
        }
    }

    fn merge_mget(&mut self, data: &[u8], out: &mut Vec<u8>) {
        // Element ranges of every fragment, then one cursor per fragment walking them in key order.
        let n = self.replies.len();
        self.elems.clear();
        self.starts.clear();
        let mut one = std::mem::take(&mut self.starts);
        let mut ranges = std::mem::take(&mut self.elems);
        let mut scratch = std::mem::take(&mut self.one_elems);
        for f in 0..n {
            one.push(ranges.len());
            if !redis::array_elements(self.reply(data, f), &mut scratch) {
                self.starts = one;
                self.elems = ranges;
                self.one_elems = scratch;
                return redis::write_error(out, b"ERR ferrule: unexpected reply to a split MGET");
            }
            ranges.extend_from_slice(&scratch);
        }
        self.one_elems = scratch;
        one.push(ranges.len());
        self.cursor.clear();
        self.cursor.resize(n, 0);
        for &f in &self.key_frag {
            self.cursor[f as usize] += 1;
        }
        // Each fragment's array must hold exactly one element per key it asked for; otherwise nothing is merged.
        if (0..n).any(|f| self.cursor[f] != one[f + 1] - one[f]) {
            self.starts = one;
            self.elems = ranges;
            return redis::write_error(out, b"ERR ferrule: unexpected reply to a split MGET");
        }
        self.cursor.clear();
        self.cursor.resize(n, 0);
        redis::write_array_header(out, self.key_frag.len());
        for &f in &self.key_frag {
            let f = f as usize;
            let reply = self.reply(data, f);
            let at = one[f] + self.cursor[f];
            match ranges.get(at).filter(|_| at < one[f + 1]) {
                Some(r) => out.extend_from_slice(&reply[r.clone()]),
                None => redis::write_null(out, self.proto),
            }
            self.cursor[f] += 1;
        }
        self.starts = one;
        self.elems = ranges;
    }

    fn merge_retrieval(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let n = self.replies.len();
        let mark = out.len();
        let mut items = std::mem::take(&mut self.items);
        let mut starts = std::mem::take(&mut self.starts);
        items.clear();
        starts.clear();
        let mut scratch = std::mem::take(&mut self.one_items);
        for f in 0..n {
            starts.push(items.len());
            if !memcache::retrieval_items(self.reply(data, f), &mut scratch) {
                out.extend_from_slice(b"SERVER_ERROR unexpected reply to a split get\r\n");
                self.items = items;
                self.starts = starts;
                self.one_items = scratch;
                return;
            }
            items.extend_from_slice(&scratch);
        }
        self.one_items = scratch;
        starts.push(items.len());
        // A server answers its keys in the order asked and omits misses, so a cursor per fragment that advances
        // only on a key match re-emits hits in request order.
        self.cursor.clear();
        self.cursor.resize(n, 0);
        for (i, &f) in self.key_frag.iter().enumerate() {
            let f = f as usize;
            let reply = self.reply(data, f);
            let key = &self.keys[self.key_ranges[i].clone()];
            let at = starts[f] + self.cursor[f];
            if let Some((k, item)) = items.get(at).filter(|_| at < starts[f + 1]) {
                if &reply[k.clone()] == key {
                    out.extend_from_slice(&reply[item.clone()]);
                    self.cursor[f] += 1;
                }
            }
        }
        // Every item must have been re-emitted: one that matched none of its fragment's keys in order did not
        // belong to that request, and then nothing partial is sent.
        if (0..n).any(|f| self.cursor[f] != starts[f + 1] - starts[f]) {
            out.truncate(mark);
            out.extend_from_slice(b"SERVER_ERROR unexpected reply to a split get\r\n");
        } else {
            out.extend_from_slice(b"END\r\n");
        }
        self.items = items;
        self.starts = starts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &mut Fanout, replies: &[&[u8]]) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, r) in replies.iter().enumerate() {
            let start = data.len();
            data.extend_from_slice(r);
            f.arrived(i, start..data.len());
        }
        let mut out = Vec::new();
        f.merge(&data, &mut out);
        out
    }

    #[test]
    fn whole_pool_merges() {
        let mut f = Fanout::new(MergeKind::RedisSame, 3);
        let sha = b"$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n";
        assert_eq!(collect(&mut f, &[sha, sha, sha]), sha);
        let mut f = Fanout::new(MergeKind::RedisSame, 2);
        assert_eq!(collect(&mut f, &[b"+OK\r\n", b"+OK\r\n"]), b"+OK\r\n");
        let mut f = Fanout::new(MergeKind::RedisSame, 2);
        assert_eq!(collect(&mut f, &[b"+OK\r\n", b"-ERR busy\r\n"]), b"-ERR busy\r\n", "an error wins");
        let mut f = Fanout::new(MergeKind::RedisSame, 2);
        assert!(collect(&mut f, &[b"$1\r\na\r\n", b"$1\r\nb\r\n"]).starts_with(b"-ERR ferrule: the servers"));

        let mut f = Fanout::new(MergeKind::RedisAndArray, 3);
        assert_eq!(f.fits(0, b"*2\r\n:1\r\n:0\r\n"), Ok(()));
        assert!(f.fits(0, b"*1\r\n$1\r\na\r\n").is_err());
        let out =
            collect(&mut f, &[b"*3\r\n:1\r\n:1\r\n:0\r\n", b"*3\r\n:1\r\n:0\r\n:0\r\n", b"*3\r\n:1\r\n:1\r\n:1\r\n"]);
        assert_eq!(out, b"*3\r\n:1\r\n:0\r\n:0\r\n");
        let mut f = Fanout::new(MergeKind::RedisAndArray, 2);
        assert!(collect(&mut f, &[b"*1\r\n:1\r\n", b"*2\r\n:1\r\n:1\r\n"]).starts_with(b"-ERR ferrule"));

        let mut f = Fanout::new(MergeKind::RedisScan { server: 1, next: 2, servers: 3 }, 1);
        assert!(f.fits(0, b"*1\r\n:1\r\n").is_err());
        assert_eq!(collect(&mut f, &[b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"]), b"*2\r\n$1\r\n2\r\n*1\r\n$1\r\nk\r\n");
        let mut f = Fanout::new(MergeKind::RedisScan { server: 2, next: u32::MAX, servers: 3 }, 1);
        assert_eq!(collect(&mut f, &[b"*2\r\n$1\r\n0\r\n*0\r\n"]), b"*2\r\n$1\r\n0\r\n*0\r\n");
    }

    #[test]
    fn mget_reassembles_in_key_order() {
        let mut f = Fanout::new(MergeKind::RedisMget, 2);
        f.key_frag = vec![1, 0, 1];
        let out = collect(&mut f, &[b"*1\r\n$1\r\nb\r\n", b"*2\r\n$1\r\na\r\n$-1\r\n"]);
        assert_eq!(out, b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }

    #[test]
    fn sum_adds_integers_and_errors_win() {
        let mut f = Fanout::new(MergeKind::RedisSum, 2);
        assert_eq!(collect(&mut f, &[b":2\r\n", b":3\r\n"]), b":5\r\n");
        let mut f = Fanout::new(MergeKind::RedisSum, 2);
        assert_eq!(collect(&mut f, &[b":2\r\n", b"-ERR down\r\n"]), b"-ERR down\r\n");
    }

    #[test]
    fn a_recycled_fanout_merges_like_a_new_one() {
        let mut f = Fanout::new(MergeKind::RedisMget, 2);
        f.key_frag = vec![1, 0, 1];
        let first = collect(&mut f, &[b"*1\r\n$1\r\nb\r\n", b"*2\r\n$1\r\na\r\n$-1\r\n"]);
        f.reset(MergeKind::RedisMget, 3);
        f.key_frag.extend_from_slice(&[2, 0, 1]);
        let second = collect(&mut f, &[b"*1\r\n$1\r\ny\r\n", b"*1\r\n$1\r\nz\r\n", b"*1\r\n$1\r\nx\r\n"]);
        assert_eq!(first, b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
        assert_eq!(second, b"*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n");
        f.reset(MergeKind::RedisSum, 2);
        assert_eq!(collect(&mut f, &[b":1\r\n", b":2\r\n"]), b":3\r\n");
    }

    #[test]
    fn fragment_replies_that_cannot_belong_are_refused_on_arrival() {
        let mut f = Fanout::new(MergeKind::RedisMget, 2);
        f.key_frag = vec![1, 0, 1];
        assert_eq!(f.fits(0, b"*1\r\n$1\r\nb\r\n"), Ok(()));
        assert_eq!(f.fits(1, b"*2\r\n$1\r\na\r\n$-1\r\n"), Ok(()));
        assert_eq!(f.fits(1, b"-ERR down\r\n"), Ok(()));
        for bad in [&b"*1\r\n$1\r\na\r\n"[..], b"*3\r\n:1\r\n:2\r\n:3\r\n", b":1\r\n", b"*-1\r\n", b"+OK\r\n"] {
            assert_eq!(f.fits(1, bad), Err("a split MGET"), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut f = Fanout::new(MergeKind::RedisMset, 2);
        assert_eq!(f.fits(0, b"+OK\r\n"), Ok(()));
        assert_eq!(f.fits(0, b"+QUEUED\r\n"), Err("a split MSET"));
        assert_eq!(f.fits(0, b":1\r\n"), Err("a split MSET"));
        let mut f = Fanout::new(MergeKind::RedisSum, 2);
        assert_eq!(f.fits(0, b":0\r\n"), Ok(()));
        assert_eq!(f.fits(0, b"$1\r\n1\r\n"), Err("a split DEL/EXISTS/UNLINK/TOUCH"));
    }

    fn retrieval_fanout() -> Fanout {
        let mut f = Fanout::new(MergeKind::McRetrieval, 2);
        f.key_frag = vec![1, 0, 1, 0];
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            let s = f.keys.len();
            f.keys.extend_from_slice(k);
            f.key_ranges.push(s..f.keys.len());
        }
        f
    }

    #[test]
    fn retrieval_fragments_carry_only_their_own_keys_in_order() {
        let mut f = retrieval_fanout();
        assert_eq!(f.fits(0, b"VALUE b 0 1\r\n2\r\nEND\r\n"), Ok(()));
        assert_eq!(f.fits(0, b"VALUE d 0 1\r\n2\r\nEND\r\n"), Ok(()));
        assert_eq!(f.fits(0, b"END\r\n"), Ok(()));
        assert_eq!(f.fits(1, b"VALUE a 0 1\r\n1\r\nVALUE c 0 1\r\n3\r\nEND\r\n"), Ok(()));
        assert_eq!(f.fits(1, b"SERVER_ERROR out of memory\r\n"), Ok(()));
        for bad in [
            &b"VALUE a 0 1\r\n1\r\nEND\r\n"[..],                // another fragment's key
            b"VALUE d 0 1\r\n2\r\nVALUE b 0 1\r\n2\r\nEND\r\n", // out of order
            b"VALUE zz 0 1\r\n2\r\nEND\r\n",                    // never asked for
            b"STORED\r\n",
        ] {
            assert_eq!(f.fits(0, bad), Err("a split get"), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_inconsistent_fragment_fails_the_whole_request_and_merges_nothing() {
        let mut f = Fanout::new(MergeKind::RedisMget, 2);
        f.key_frag = vec![1, 0, 1];
        // fragment 1 asked for two keys and got one element back
        let out = collect(&mut f, &[b"*1\r\n$1\r\nb\r\n", b"*1\r\n$1\r\na\r\n"]);
        assert_eq!(out, b"-ERR ferrule: unexpected reply to a split MGET\r\n");
        let mut f = Fanout::new(MergeKind::RedisMset, 2);
        assert_eq!(
            collect(&mut f, &[b"+OK\r\n", b"+QUEUED\r\n"]),
            b"-ERR ferrule: unexpected reply to a split MSET\r\n"
        );
        let mut f = retrieval_fanout();
        let out =
            collect(&mut f, &[b"VALUE b 0 1\r\n2\r\nEND\r\n", b"VALUE zz 0 1\r\n1\r\nVALUE c 0 1\r\n3\r\nEND\r\n"]);
        assert_eq!(out, b"SERVER_ERROR unexpected reply to a split get\r\n");
    }

    #[test]
    fn mset_ok() {
        let mut f = Fanout::new(MergeKind::RedisMset, 2);
        assert_eq!(collect(&mut f, &[b"+OK\r\n", b"+OK\r\n"]), b"+OK\r\n");
    }

    #[test]
    fn retrieval_in_request_order_with_misses() {
        let mut f = Fanout::new(MergeKind::McRetrieval, 2);
        f.key_frag = vec![1, 0, 1, 0];
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            let s = f.keys.len();
            f.keys.extend_from_slice(k);
            f.key_ranges.push(s..f.keys.len());
        }
        // fragment 0 asked for b, d (d missing); fragment 1 asked for a, c
        let out =
            collect(&mut f, &[b"VALUE b 0 1\r\n2\r\nEND\r\n", b"VALUE a 0 1\r\n1\r\nVALUE c 0 1\r\n3\r\nEND\r\n"]);
        assert_eq!(out, b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nVALUE c 0 1\r\n3\r\nEND\r\n");
    }
}
