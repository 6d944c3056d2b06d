//! Pub/sub as the proxy serves it, free of I/O: one client's subscriptions (what redis counts in its replies),
//! the replies redis gives to (P|S)(UN)SUBSCRIBE and PING in subscribe mode, what a subscriber connection's
//! frames are, and the merges of PUBSUB CHANNELS / NUMSUB / NUMPAT over the servers of a pool.
//!
//! The counts in the confirmations are the client's own totals across every server, so the proxy computes them
//! here rather than passing on one server's count: redis counts channels and patterns together, shard channels
//! apart (`clientSubscriptionsCount` / `clientShardSubscriptionsCount`).

use super::encode::{write_bulk, write_integer, write_null, write_push_header, Proto};
use super::reply_len;
use super::CommandInfo;
use std::collections::BTreeMap;
use std::ops::Range;

/// The three namespaces of subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// SUBSCRIBE / UNSUBSCRIBE: channels, placed by the pool's hash like keys.
    Channel,
    /// PSUBSCRIBE / PUNSUBSCRIBE: patterns, on every server (a message may be published on any of them).
    Pattern,
    /// SSUBSCRIBE / SUNSUBSCRIBE: shard channels, placed like keys (SPUBLISH routes the same way).
    Shard,
}

impl SubKind {
    /// The word of a subscribe confirmation (and the command, uppercase, sent to the server).
    pub fn subscribe_word(self) -> &'static [u8] {
        match self {
            SubKind::Channel => b"subscribe",
            SubKind::Pattern => b"psubscribe",
            SubKind::Shard => b"ssubscribe",
        }
    }

    pub fn unsubscribe_word(self) -> &'static [u8] {
        match self {
            SubKind::Channel => b"unsubscribe",
            SubKind::Pattern => b"punsubscribe",
            SubKind::Shard => b"sunsubscribe",
        }
    }
}

/// The subscription commands, which the session carries out on subscriber connections of the client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubCmd {
    Subscribe(SubKind),
    Unsubscribe(SubKind),
}

/// One client's subscriptions, each with `P`, where it lives (the server of a channel, the servers of a pattern).
#[derive(Debug)]
pub struct Subscriptions<P> {
    channels: BTreeMap<Box<[u8]>, P>,
    patterns: BTreeMap<Box<[u8]>, P>,
    shard: BTreeMap<Box<[u8]>, P>,
}

impl<P> Default for Subscriptions<P> {
    fn default() -> Self {
        Subscriptions { channels: BTreeMap::new(), patterns: BTreeMap::new(), shard: BTreeMap::new() }
    }
}

impl<P> Subscriptions<P> {
    fn map(&self, kind: SubKind) -> &BTreeMap<Box<[u8]>, P> {
        match kind {
            SubKind::Channel => &self.channels,
            SubKind::Pattern => &self.patterns,
            SubKind::Shard => &self.shard,
        }
    }

    fn map_mut(&mut self, kind: SubKind) -> &mut BTreeMap<Box<[u8]>, P> {
        match kind {
            SubKind::Channel => &mut self.channels,
            SubKind::Pattern => &mut self.patterns,
            SubKind::Shard => &mut self.shard,
        }
    }

    pub fn contains(&self, kind: SubKind, name: &[u8]) -> bool {
        self.map(kind).contains_key(name)
    }

    /// The count a confirmation of `kind` carries: channels and patterns together, shard channels apart.
    pub fn count(&self, kind: SubKind) -> usize {
        match kind {
            SubKind::Channel | SubKind::Pattern => self.channels.len() + self.patterns.len(),
            SubKind::Shard => self.shard.len(),
        }
    }

    /// Every subscription: while it is not 0, a RESP2 client is in subscribe mode.
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }

    /// Records a subscription at `place`; false (and nothing changed) when the client has it already.
    pub fn add(&mut self, kind: SubKind, name: &[u8], place: P) -> bool {
        let map = self.map_mut(kind);
        if map.contains_key(name) {
            return false;
        }
        map.insert(Box::from(name), place);
        true
    }

    /// Where a subscription lives, when the client has it.
    pub fn place(&self, kind: SubKind, name: &[u8]) -> Option<&P> {
        self.map(kind).get(name)
    }

    /// Where a subscription lives, to move it (a cluster node redirected its subscribe).
    pub fn place_mut(&mut self, kind: SubKind, name: &[u8]) -> Option<&mut P> {
        self.map_mut(kind).get_mut(name)
    }

    /// Forgets a subscription, giving where it lived.
    pub fn remove(&mut self, kind: SubKind, name: &[u8]) -> Option<P> {
        self.map_mut(kind).remove(name)
    }

    /// Every subscription with where it lives: channels, then patterns, then shard channels.
    pub fn iter(&self) -> impl Iterator<Item = (SubKind, &[u8], &P)> {
        [SubKind::Channel, SubKind::Pattern, SubKind::Shard]
            .into_iter()
            .flat_map(move |kind| self.map(kind).iter().map(move |(n, p)| (kind, &n[..], p)))
    }

    /// The names of `kind`, for an UNSUBSCRIBE without arguments (in name order).
    pub fn names(&self, kind: SubKind) -> Vec<Box<[u8]>> {
        self.map(kind).keys().cloned().collect()
    }
}

/// A (un)subscribe confirmation as redis writes it: `*3` (RESP2) or a `>3` push (RESP3) of the word, the name
/// (nil for an UNSUBSCRIBE without arguments from a client that had none) and the count.
pub fn write_confirmation(out: &mut Vec<u8>, proto: Proto, word: &[u8], name: Option<&[u8]>, count: usize) {
    write_push_header(out, 3, proto);
    write_bulk(out, word);
    match name {
        Some(name) => write_bulk(out, name),
        None => write_null(out, proto),
    }
    write_integer(out, count as i64);
}

/// PING of a RESP2 client in subscribe mode: `*2 $4 pong <arg or empty>`, as redis answers it (a RESP3 client
/// gets the ordinary `+PONG`).
pub fn write_subscribed_pong(out: &mut Vec<u8>, arg: Option<&[u8]>) {
    out.extend_from_slice(b"*2\r\n$4\r\npong\r\n");
    write_bulk(out, arg.unwrap_or_default());
}

/// Whether a RESP2 client in subscribe mode may run the command (redis' list: the (un)subscribe commands, PING,
/// QUIT, RESET).
pub fn allowed_while_subscribed(info: &CommandInfo) -> bool {
    matches!(
        info.name,
        "SUBSCRIBE"
            | "UNSUBSCRIBE"
            | "PSUBSCRIBE"
            | "PUNSUBSCRIBE"
            | "SSUBSCRIBE"
            | "SUNSUBSCRIBE"
            | "PING"
            | "QUIT"
            | "RESET"
    )
}

/// The error redis 7 gives a RESP2 client in subscribe mode for any other command.
pub fn write_subscribed_refusal(out: &mut Vec<u8>, info: &CommandInfo) {
    out.extend_from_slice(b"-ERR Can't execute '");
    out.extend(info.name.bytes().map(|b| b.to_ascii_lowercase()));
    out.extend_from_slice(
        b"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    );
}

/// What a frame from a subscriber connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message for the client: `message` (a channel), `pmessage` (a pattern), `smessage` (a shard channel),
    /// with the subscription it came through.
    Message(SubKind, &'a [u8]),
    /// A server's confirmation of one (un)subscription: its namespace, whether it is a subscribe, and the name
    /// (nil only for an unsubscribe without arguments of a client that had none). In a cluster, a `sunsubscribe`
    /// that answers no request is the node telling the client it lost the shard channel's slot.
    Confirmation { kind: SubKind, subscribe: bool, name: Option<&'a [u8]> },
    /// Anything else (an error, a reply nobody asked for).
    Other,
}

/// Reads a frame of a subscriber connection (RESP2 array or RESP3 push): its first element names it.
pub fn classify(frame: &[u8]) -> Frame<'_> {
    let mut elems = Vec::new();
    if !aggregate_elements(frame, b"*>", &mut elems) || elems.len() < 3 {
        return Frame::Other;
    }
    let Some(word) = bulk(&frame[elems[0].clone()]) else { return Frame::Other };
    let second = &frame[elems[1].clone()];
    let name = bulk(second);
    let confirmation = |kind, subscribe| {
        // Only an unsubscribe may name nothing (nil: `$-1` in RESP2, `_` in RESP3).
        let nil = matches!(second, b"$-1\r\n" | b"_\r\n");
        match name {
            Some(_) => Frame::Confirmation { kind, subscribe, name },
            None if nil && !subscribe => Frame::Confirmation { kind, subscribe, name: None },
            None => Frame::Other,
        }
    };
    let kind = match &word.to_ascii_lowercase()[..] {
        b"message" => SubKind::Channel,
        b"pmessage" if elems.len() == 4 => SubKind::Pattern,
        b"smessage" => SubKind::Shard,
        b"subscribe" => return confirmation(SubKind::Channel, true),
        b"unsubscribe" => return confirmation(SubKind::Channel, false),
        b"psubscribe" => return confirmation(SubKind::Pattern, true),
        b"punsubscribe" => return confirmation(SubKind::Pattern, false),
        b"ssubscribe" => return confirmation(SubKind::Shard, true),
        b"sunsubscribe" => return confirmation(SubKind::Shard, false),
        _ => return Frame::Other,
    };
    match name {
        Some(name) => Frame::Message(kind, name),
        None => Frame::Other,
    }
}

/// The body of a bulk string (RESP3 verbatim strings and simple strings too).
fn bulk(elem: &[u8]) -> Option<&[u8]> {
    match elem.first()? {
        b'$' | b'=' => {
            let nl = elem.iter().position(|&b| b == b'\n')?;
            elem.get(nl + 1..elem.len().checked_sub(2)?)
        }
        b'+' => elem.get(1..elem.len().checked_sub(2)?),
        _ => None,
    }
}

/// The element ranges of an aggregate whose type byte is one of `types` (a map's keys and values one after the
/// other); false when `reply` is not one.
fn aggregate_elements(reply: &[u8], types: &[u8], out: &mut Vec<Range<usize>>) -> bool {
    out.clear();
    let Some(&t) = reply.first().filter(|t| types.contains(t)) else { return false };
    let Some(nl) = reply.iter().position(|&b| b == b'\n') else { return false };
    let Some(count) = std::str::from_utf8(&reply[1..nl.saturating_sub(1)]).ok().and_then(|c| c.parse::<usize>().ok())
    else {
        return false;
    };
    let count = if t == b'%' { count.saturating_mul(2) } else { count };
    let mut pos = nl + 1;
    for _ in 0..count {
        match reply_len(reply.get(pos..).unwrap_or_default()) {
            Ok(Some(len)) => {
                out.push(pos..pos + len);
                pos += len;
            }
            _ => {
                out.clear();
                return false;
            }
        }
    }
    true
}

/// PUBSUB CHANNELS / SHARDCHANNELS from every server: one array of the names, each once (a channel lives on one
/// server, but one ejected and back may still hold subscribers of its own).
pub fn merge_channels<'a>(replies: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> bool {
    let mut names: Vec<&[u8]> = Vec::new();
    let mut elems = Vec::new();
    for reply in replies {
        if !aggregate_elements(reply, b"*~", &mut elems) {
            return false;
        }
        for e in &elems {
            let elem = &reply[e.clone()];
            if bulk(elem).is_none() {
                return false;
            }
            if !names.contains(&elem) {
                names.push(elem);
            }
        }
    }
    super::write_array_header(out, names.len());
    for n in names {
        out.extend_from_slice(n);
    }
    true
}

/// PUBSUB NUMSUB / SHARDNUMSUB from every server: name, count pairs (a flat array in RESP2, a map in RESP3, in
/// the order asked), the counts summed position by position.
pub fn merge_numsub<'a>(mut replies: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> bool {
    let Some(first) = replies.next() else { return false };
    let mut elems = Vec::new();
    if !aggregate_elements(first, b"*%", &mut elems) || elems.len() % 2 != 0 {
        return false;
    }
    let names: Vec<Range<usize>> = elems.iter().step_by(2).cloned().collect();
    let mut sums: Vec<i64> = Vec::with_capacity(names.len());
    for pair in elems.chunks(2) {
        match super::parse_integer_reply(&first[pair[1].clone()]) {
            Some(n) => sums.push(n),
            None => return false,
        }
    }
    for reply in replies {
        if reply.first() != first.first()
            || !aggregate_elements(reply, b"*%", &mut elems)
            || elems.len() != names.len() * 2
        {
            return false;
        }
        for (i, pair) in elems.chunks(2).enumerate() {
            if reply[pair[0].clone()] != first[names[i].clone()] {
                return false;
            }
            match super::parse_integer_reply(&reply[pair[1].clone()]) {
                Some(n) => sums[i] = sums[i].saturating_add(n),
                None => return false,
            }
        }
    }
    let header_end = first.iter().position(|&b| b == b'\n').map_or(0, |nl| nl + 1);
    out.extend_from_slice(&first[..header_end]);
    for (name, sum) in names.iter().zip(sums) {
        out.extend_from_slice(&first[name.clone()]);
        write_integer(out, sum);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_channels_and_patterns_together_and_shards_apart() {
        let mut subs: Subscriptions<usize> = Subscriptions::default();
        assert!(subs.add(SubKind::Channel, b"a", 0));
        assert!(!subs.add(SubKind::Channel, b"a", 1), "a second SUBSCRIBE of one channel changes nothing");
        assert!(subs.add(SubKind::Pattern, b"a*", 0));
        assert!(subs.add(SubKind::Shard, b"s", 1));
        assert_eq!(subs.count(SubKind::Channel), 2);
        assert_eq!(subs.count(SubKind::Pattern), 2);
        assert_eq!(subs.count(SubKind::Shard), 1);
        assert_eq!(subs.total(), 3);
        assert_eq!(subs.remove(SubKind::Channel, b"a"), Some(0));
        assert_eq!(subs.remove(SubKind::Channel, b"a"), None);
        assert_eq!(subs.count(SubKind::Channel), 1);
        assert_eq!(subs.names(SubKind::Pattern), vec![Box::from(&b"a*"[..])]);
    }

    #[test]
    fn confirmations_as_redis_writes_them() {
        let mut out = Vec::new();
        write_confirmation(&mut out, Proto::Resp2, b"subscribe", Some(b"ch"), 2);
        assert_eq!(out, b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:2\r\n");
        out.clear();
        write_confirmation(&mut out, Proto::Resp3, b"unsubscribe", None, 0);
        assert_eq!(out, b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        out.clear();
        write_confirmation(&mut out, Proto::Resp2, b"punsubscribe", None, 0);
        assert_eq!(out, b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n");
        out.clear();
        write_subscribed_pong(&mut out, None);
        assert_eq!(out, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        out.clear();
        write_subscribed_pong(&mut out, Some(b"hi"));
        assert_eq!(out, b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn the_resp2_refusal_names_the_command_in_lowercase() {
        let mut out = Vec::new();
        write_subscribed_refusal(&mut out, super::super::lookup(b"get").unwrap());
        assert_eq!(
            out,
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
        );
        assert!(allowed_while_subscribed(super::super::lookup(b"ping").unwrap()));
        assert!(allowed_while_subscribed(super::super::lookup(b"punsubscribe").unwrap()));
        assert!(!allowed_while_subscribed(super::super::lookup(b"publish").unwrap()));
    }

    #[test]
    fn classifies_subscriber_frames() {
        assert_eq!(
            classify(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Frame::Message(SubKind::Channel, b"ch")
        );
        assert_eq!(
            classify(b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Frame::Message(SubKind::Pattern, b"c*")
        );
        assert_eq!(classify(b">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$0\r\n\r\n"), Frame::Message(SubKind::Shard, b"s"));
        assert_eq!(
            classify(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
            Frame::Confirmation { kind: SubKind::Channel, subscribe: true, name: Some(b"ch") }
        );
        assert_eq!(
            classify(b">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n"),
            Frame::Confirmation { kind: SubKind::Channel, subscribe: false, name: Some(b"ch") }
        );
        // What redis 7 sends a shard channel's subscribers when its node loses the slot.
        assert_eq!(
            classify(b"*3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"),
            Frame::Confirmation { kind: SubKind::Shard, subscribe: false, name: Some(b"s") }
        );
        assert_eq!(
            classify(b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"),
            Frame::Confirmation { kind: SubKind::Pattern, subscribe: false, name: None }
        );
        assert_eq!(classify(b"*3\r\n$10\r\npsubscribe\r\n$-1\r\n:0\r\n"), Frame::Other);
        assert_eq!(classify(b"-ERR no\r\n"), Frame::Other);
        assert_eq!(classify(b"+PONG\r\n"), Frame::Other);
        assert_eq!(classify(b"*3\r\n$4\r\nnope\r\n$2\r\nch\r\n:1\r\n"), Frame::Other);
        assert_eq!(classify(b"*3\r\n:1\r\n$2\r\nch\r\n:1\r\n"), Frame::Other);
    }

    #[test]
    fn merges_channels_once_each() {
        let mut out = Vec::new();
        let a: &[u8] = b"*2\r\n$1\r\na\r\n$1\r\nb\r\n";
        let b: &[u8] = b"*2\r\n$1\r\nc\r\n$1\r\na\r\n";
        assert!(merge_channels([a, b].into_iter(), &mut out));
        assert_eq!(out, b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        out.clear();
        assert!(merge_channels([&b"*0\r\n"[..], b"*0\r\n"].into_iter(), &mut out));
        assert_eq!(out, b"*0\r\n");
        assert!(!merge_channels([&b":1\r\n"[..]].into_iter(), &mut out));
    }

    #[test]
    fn sums_numsub_per_channel_in_either_version() {
        let mut out = Vec::new();
        let a: &[u8] = b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:0\r\n";
        let b: &[u8] = b"*4\r\n$1\r\na\r\n:2\r\n$1\r\nb\r\n:3\r\n";
        assert!(merge_numsub([a, b].into_iter(), &mut out));
        assert_eq!(out, b"*4\r\n$1\r\na\r\n:3\r\n$1\r\nb\r\n:3\r\n");
        out.clear();
        let a: &[u8] = b"%1\r\n$1\r\na\r\n:1\r\n";
        let b: &[u8] = b"%1\r\n$1\r\na\r\n:4\r\n";
        assert!(merge_numsub([a, b].into_iter(), &mut out));
        assert_eq!(out, b"%1\r\n$1\r\na\r\n:5\r\n");
        out.clear();
        assert!(merge_numsub([&b"*0\r\n"[..], b"*0\r\n"].into_iter(), &mut out));
        assert_eq!(out, b"*0\r\n");
        // Servers that disagree on the names asked cannot be summed.
        let c: &[u8] = b"*2\r\n$1\r\nz\r\n:1\r\n";
        assert!(!merge_numsub([&b"*2\r\n$1\r\na\r\n:1\r\n"[..], c].into_iter(), &mut out));
    }
}
