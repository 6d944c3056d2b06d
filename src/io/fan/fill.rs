//! Executing `warmup` and `l1l2` (the rules are `crate::routes::fill`): a single-key read goes to the first child
//! (cold, l1); on a miss or failure to the second (warm, l2), whose hit answers the client and is copied into the
//! first child in the background. The copy is a background request as `all_async`'s are: it takes no client reply
//! slot, counts against the worker's bound on background requests ([`super::MAX_BACKGROUND`]) and is dropped (and
//! counted) over it or over the backend's queue bound.
//!
//! The children of one attempt: 0 the first read (the client's own bytes), 1 the second read (memcache:
//! `mg <key> v t f`, for l1l2 `get <key>` once an l2 server answered mg with `ERROR`; redis `GET <key>`), 2 redis'
//! `PTTL <key>` (queued right behind the GET on the same connection, so in the same pipeline), 3 the copy. The
//! remaining TTL learned with the value is what the copy carries (warmup) or caps the copy's at (l1l2).

use super::{answer, failure_reply, release_background, resolve, send, send_single, take_background};
use super::{Attempt, Dest, Env, Mode, Plan, Refused, ReplyTo, Request};
use crate::config::{AllMode, Protocol};
use crate::io::backend::{Framer, Waiter};
use crate::io::stats::RouteCounters;
use crate::protocol::memcache::Command;
use crate::protocol::redis::{self, ReplyShape};
use crate::routes::fill::{self as rules, Action, Answer, Expiry, Seen};
use crate::routes::severity::{self, Outcome};
use crate::routes::{l1l2, warmup, Op};
use std::rc::Rc;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Warmup { exptime: Option<u32> },
    L1l2 { ttl: u32, write_l2: bool },
}

impl Kind {
    pub fn action(self, op: Op, nkeys: usize) -> Action {
        match self {
            Kind::Warmup { .. } => warmup::action(op, nkeys),
            Kind::L1l2 { write_l2, .. } => l1l2::action(op, nkeys, write_l2),
        }
    }
}

/// A read in progress.
pub struct State {
    kind: Kind,
    key: Vec<u8>,
    now_unix: u64,
    /// The first child's reply, kept to answer with when the second fails.
    first: Option<(Vec<u8>, bool)>,
    first_missed: bool,
    /// Redis warmup: the GET reply, held until the PTTL behind it arrives.
    held: Option<(Vec<u8>, bool)>,
    /// Whether a PTTL was sent behind the second read's GET.
    pttl_sent: bool,
    /// memcache l1l2: the second read is a text `get` (l2 has no meta protocol).
    text_second: bool,
}

const FIRST: u32 = 0;
const SECOND: u32 = 1;
const PTTL: u32 = 2;
const COPY: u32 = 3;

pub(super) fn dispatch(env: &Env, plan: &Rc<Plan>, kind: Kind, req: Request, reply: ReplyTo) -> Result<(), Refused> {
    let action = match kind.action(req.op, req.keys.len()) {
        // A meta read is classified as a `get`, but the read-through speaks text to the client: an `mg` goes to the
        // first child alone and its own reply answers it.
        Action::ReadThrough if req.meta.is_some() => Action::Only(0),
        action => action,
    };
    match action {
        // A memcache multi-get: the session sends every key through on its own (see `super::signature`); should
        // several keys come anyway, they go to the first child alone.
        Action::Only(i) => {
            let dest = resolve(env, plan, plan.children[i], &req)?;
            send_single(dest, &req, reply);
            Ok(())
        }
        Action::Both => super::dispatch_all(env, plan, AllMode::Sync, req, reply),
        Action::ReadThrough => {
            let dests = plan.children.iter().map(|&t| resolve(env, plan, t, &req)).collect::<Result<Vec<_>, _>>()?;
            let state = State {
                kind,
                key: req.keys.first().map(|k| k.to_vec()).unwrap_or_default(),
                now_unix: env.ctx.now_unix,
                first: None,
                first_missed: false,
                held: None,
                pttl_sent: false,
                text_second: false,
            };
            let client = Some(reply.reserve());
            let now = req.now;
            let att = Attempt::new(
                plan,
                req.op.protocol(),
                req.op.class(),
                req.bytes,
                req.framer,
                req.meta,
                dests,
                client,
                now,
                Mode::Fill(Box::new(state)),
            );
            send(&att, FIRST as usize, now);
            Ok(())
        }
    }
}

/// Answers the client (or the request's fragment of its reply), once.
fn reply_to_client(att: &Attempt, reply: &[u8], failed: bool) {
    answer(att, reply, failed)
}

/// Sends `bytes` to child `dest` of the attempt as its child `child` (no borrow of the attempt is held).
fn send_to(att: &Rc<Attempt>, dest: usize, child: u32, bytes: &[u8], framer: Framer) {
    match &att.dests[dest] {
        Dest::Backend(b) => {
            let waiter = Waiter::Fan { attempt: att.clone(), child };
            b.enqueue(|out| out.extend_from_slice(bytes), Some(waiter), framer, Instant::now());
        }
        Dest::Reply(canned) => {
            let canned = canned.clone();
            arrive(att, child as usize, &canned, false)
        }
        Dest::Failed(reason) => {
            let out = failure_reply(att.protocol, reason);
            arrive(att, child as usize, &out, true);
        }
    }
}

fn redis_shape(name: &str) -> Framer {
    Framer::Redis(redis::lookup(name.as_bytes()).map_or_else(ReplyShape::prelude, ReplyShape::of))
}

pub(super) fn arrive(att: &Rc<Attempt>, child: usize, reply: &[u8], failed: bool) {
    let counters = &att.plan.counters;
    let mut st = att.st.borrow_mut();
    let Mode::Fill(f) = &mut st.mode else { return };
    match child as u32 {
        FIRST => {
            let outcome = if failed {
                Outcome::Failed(severity::classify_reason(&String::from_utf8_lossy(reply)))
            } else {
                Outcome::Reply(reply)
            };
            if !rules::after_first(severity::is_hit(att.protocol, outcome)) {
                drop(st);
                return reply_to_client(att, reply, failed);
            }
            f.first_missed = !failed && severity::severity(att.protocol, outcome) == severity::MISS;
            f.first = Some((reply.to_vec(), failed));
            let mut bytes = Vec::new();
            let framer = match (att.protocol, f.kind) {
                (Protocol::Memcache, Kind::L1l2 { .. }) if att.plan.l2_text.get() => {
                    f.text_second = true;
                    rules::memcache_get(&f.key, &mut bytes);
                    Framer::Memcache(Command::Get)
                }
                (Protocol::Memcache, _) => {
                    rules::memcache_meta_get(&f.key, &mut bytes);
                    Framer::Memcache(Command::MetaGet)
                }
                (Protocol::Redis, _) => {
                    rules::redis_get(&f.key, &mut bytes);
                    redis_shape("GET")
                }
            };
            // Redis learns the TTL with a PTTL right behind the GET, on the same connection.
            let pttl = (att.protocol == Protocol::Redis && matches!(att.dests[1], Dest::Backend(_))).then(|| {
                let mut p = Vec::new();
                rules::redis_pttl(&f.key, &mut p);
                p
            });
            f.pttl_sent = pttl.is_some();
            drop(st);
            send_to(att, 1, SECOND, &bytes, framer);
            if let Some(p) = pttl {
                send_to(att, 1, PTTL, &p, redis_shape("PTTL"));
            }
        }
        SECOND if f.pttl_sent => f.held = Some((reply.to_vec(), failed)),
        // memcache l1l2 whose l2 has no meta protocol: read it again with a text get, and from now on (this
        // worker, until a reload) read l2 that way.
        SECOND
            if matches!(f.kind, Kind::L1l2 { .. })
                && att.protocol == Protocol::Memcache
                && !f.text_second
                && !failed
                && reply.starts_with(b"ERROR") =>
        {
            att.plan.l2_text.set(true);
            f.text_second = true;
            let mut bytes = Vec::new();
            rules::memcache_get(&f.key, &mut bytes);
            drop(st);
            send_to(att, 1, SECOND, &bytes, Framer::Memcache(Command::Get));
        }
        SECOND => {
            drop(st);
            second_done(att, reply, failed, None);
        }
        PTTL => {
            // FIFO on one connection puts the GET's reply first; should it ever not, the GET finishes alone.
            let Some((held, held_failed)) = f.held.take() else {
                f.pttl_sent = false;
                return;
            };
            let pttl = if failed { None } else { redis::parse_integer_reply(reply) };
            drop(st);
            second_done(att, &held, held_failed, pttl);
        }
        _ => {
            drop(st);
            release_background();
            if rules::copy_failed(att.protocol, reply, failed) {
                RouteCounters::bump(&counters.copies_failed);
            } else if reply.starts_with(b"STORED") || reply.starts_with(b"+OK") {
                RouteCounters::bump(&counters.fills);
            }
        }
    }
}

/// The second child's reply (redis warmup: with the PTTL learned behind it).
fn second_done(att: &Rc<Attempt>, reply: &[u8], failed: bool, pttl: Option<i64>) {
    let (kind, key, now_unix, first_missed, first, text_second) = {
        let mut st = att.st.borrow_mut();
        let Mode::Fill(f) = &mut st.mode else { return };
        (f.kind, std::mem::take(&mut f.key), f.now_unix, f.first_missed, f.first.take(), f.text_second)
    };
    // What the second child said, the client's reply for it, and the copy to write.
    let mut client_reply = Vec::new();
    let mut copy: Option<(Vec<u8>, Framer)> = None;
    let seen = if failed {
        Seen::Failed
    } else {
        match (att.protocol, kind) {
            // l1l2 over an l2 without meta: its TTL cannot be learned.
            (Protocol::Memcache, Kind::L1l2 { ttl, .. }) if text_second => match rules::parse_text_value(reply) {
                Some((flags, data)) => {
                    client_reply.extend_from_slice(reply);
                    let mut out = Vec::new();
                    let exptime = rules::memcache_exptime(Expiry::Seconds(u64::from(ttl)), now_unix);
                    rules::memcache_add(&key, flags, exptime, &reply[data], &mut out);
                    copy = Some((out, Framer::Memcache(Command::Add)));
                    Seen::Hit
                }
                None if reply.starts_with(b"END\r\n") => {
                    client_reply.extend_from_slice(reply);
                    Seen::Miss
                }
                None => Seen::Failed,
            },
            (Protocol::Memcache, _) => match rules::parse_meta_value(reply) {
                Some((ttl, flags, data)) => {
                    rules::memcache_value_reply(&key, flags, &reply[data.clone()], &mut client_reply);
                    let expiry = match kind {
                        Kind::Warmup { exptime } => rules::memcache_expiry(ttl, exptime),
                        Kind::L1l2 { ttl: l1_ttl, .. } => l1l2::l1_expiry(l1_ttl, l1l2::memcache_remaining_ms(ttl)),
                    };
                    copy = expiry.map(|e| {
                        let mut out = Vec::new();
                        let exptime = rules::memcache_exptime(e, now_unix);
                        rules::memcache_add(&key, flags, exptime, &reply[data], &mut out);
                        (out, Framer::Memcache(Command::Add))
                    });
                    Seen::Hit
                }
                None if reply.starts_with(b"EN\r\n") => {
                    client_reply.extend_from_slice(b"END\r\n");
                    Seen::Miss
                }
                // No meta protocol on the warm server (ERROR), or its SERVER_ERROR.
                None => Seen::Failed,
            },
            (Protocol::Redis, _) => {
                client_reply.extend_from_slice(reply);
                match rules::parse_bulk(reply) {
                    Some(data) => {
                        let expiry = match kind {
                            Kind::Warmup { exptime } => rules::redis_expiry(pttl, exptime),
                            Kind::L1l2 { ttl, .. } => l1l2::l1_expiry(ttl, pttl),
                        };
                        copy = expiry.map(|e| {
                            let mut out = Vec::new();
                            rules::redis_set_nx(&key, &reply[data], e, &mut out);
                            (out, redis_shape("SET"))
                        });
                        Seen::Hit
                    }
                    None if severity::severity(Protocol::Redis, Outcome::Reply(reply)) == severity::MISS => Seen::Miss,
                    None => Seen::Failed,
                }
            }
        }
    };
    let (which, fill) = rules::after_second(first_missed, seen);
    match which {
        Answer::Second => reply_to_client(att, &client_reply, false),
        Answer::First => {
            let (bytes, failed) = first.unwrap_or_default();
            reply_to_client(att, &bytes, failed)
        }
    }
    let Some((bytes, framer)) = copy.filter(|_| fill) else { return };
    let counters = &att.plan.counters;
    let ok = match &att.dests[0] {
        Dest::Backend(b) => take_background(b),
        _ => false,
    };
    if !ok {
        RouteCounters::bump(&counters.copies_dropped);
        return;
    }
    RouteCounters::bump(&counters.copies_sent);
    send_to(att, 0, COPY, &bytes, framer);
}
