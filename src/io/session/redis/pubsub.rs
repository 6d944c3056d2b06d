//! The session side of pub/sub: subscriber connections of the client's own, one per server it subscribed on,
//! whose messages reach the client's one connection interleaved at message boundaries.
//!
//! Placement: a channel (and a shard channel) lives on the server the pool's hash and hash tag give it as a key,
//! so PUBLISH (routed as a key) and SUBSCRIBE of one channel meet there; a pattern is subscribed on every live
//! server, since a message that matches it may be published on any of them.
//!
//! Replies: the confirmations of (P|S)(UN)SUBSCRIBE, with their counts, are the proxy's own
//! (`protocol::redis::pubsub`), since the count is the client's total across servers; each command's
//! confirmations are released once every server it went to confirmed its part, so a message published after the
//! client saw "subscribe" is delivered. Messages go to the client as they arrive, behind any reply still awaited
//! (never inside one): for a channel the client is no longer subscribed to (unsubscribed, the server not yet
//! told) they are dropped.
//!
//! A subscriber connection that fails ends the client's connection after an error: the client's library then
//! reconnects and subscribes again, rather than silently missing that server's messages. So does a server that
//! does not confirm a (P|S)(UN)SUBSCRIBE within the pool's `timeout_ms` (the connection is out of step), and a
//! change of placement: when an ejection, a restore or a reload means a subscription would now be placed on a server
//! it is not subscribed on (a channel's server changed, a pattern's pool gained a live server, the pool's servers
//! changed), the client's connection is closed with a warning in the log, as a Redis Cluster client's subscription
//! connection is on a reshard; subscribing again places every subscription where publishers now publish.

use super::{Flow, Pinned, Scratch};
use crate::config::Target;
use crate::io::dedicated::{DedicatedSet, SubscriberSlot};
use crate::io::pool::PoolRt;
use crate::io::replies::ClientRef;
use crate::io::session::Session;
use crate::io::tls::{self, Stream};
use crate::io::uring::{self, Conn};
use crate::protocol::redis::pubsub::{self, Frame, PubSubCmd, SubKind, Subscriptions};
use crate::protocol::redis::{self, CommandInfo, CommandKind, Local, Proto, ReplyParser};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

/// (pool index, server index).
type ServerId = (usize, usize);

/// A session's subscriptions and subscriber connections (boxed in [`Pinned`] only once it subscribed).
pub(super) struct PubSub {
    st: Rc<RefCell<State>>,
}

struct State {
    subs: Subscriptions<Vec<ServerId>>,
    conns: Vec<Rc<SubConn>>,
    /// Commands whose confirmations are not all in: slot -> (servers still to confirm, the client's reply).
    waiting: HashMap<u64, (usize, Vec<u8>)>,
    client: ClientRef,
    /// The client's socket, whose reading is shut down when a subscriber connection fails (the session then ends).
    client_conn: Conn,
    proto: Proto,
    /// The pool the subscriptions live in (the listener's), as it was when the client first subscribed: its index,
    /// name and servers, to tell a reload that changed it.
    pool: (usize, String, Vec<String>),
    /// How long a server may take to confirm (the pool's `timeout_ms`; zero: no bound).
    confirm_timeout: std::time::Duration,
    /// The client's connection was ended (a failure, a placement change): nothing more is done for it.
    ended: bool,
}

thread_local! {
    /// This worker's subscribed clients, for [`placement_changed`] (pruned as clients go).
    static SUBSCRIBED: RefCell<Vec<Weak<RefCell<State>>>> = const { RefCell::new(Vec::new()) };
}

/// The worker's rings or pools changed (an ejection, a restore, a reload): every client with a subscription that
/// would now be placed on a server it is not subscribed on has its connection ended with a log line (see the
/// module doc), `why` saying what changed.
pub(crate) fn placement_changed(pools: &[PoolRt], why: &str) {
    let clients: Vec<Rc<RefCell<State>>> = SUBSCRIBED.with(|list| {
        let mut list = list.borrow_mut();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    });
    for st in clients {
        let Ok(mut state) = st.try_borrow_mut() else { continue };
        if state.ended {
            continue;
        }
        if let Some(what) = moved(&state, pools) {
            log::warn!("{why}: a subscribed client's {what}; closing its connection so that it subscribes again");
            let msg = format!("-ERR ferrule: {why}: {what}; subscribe again\r\n");
            end_client(&mut state, &msg);
        }
    }
}

/// The first subscription of `state` that `pools` would place elsewhere now, described; `None` when all stay.
fn moved(state: &State, pools: &[PoolRt]) -> Option<String> {
    let (index, name, specs) = &state.pool;
    let Some(pool) =
        pools.get(*index).filter(|p| p.name == *name && p.servers.iter().map(|s| &s.spec).eq(specs.iter()))
    else {
        return Some(format!("pool '{name}' changed"));
    };
    let live = |i: usize| pool.servers.get(i).is_some_and(|s| !s.ejected);
    for (kind, sub, place) in state.subs.iter() {
        let now: Vec<usize> = match kind {
            SubKind::Pattern => (0..pool.servers.len()).filter(|&i| live(i)).collect(),
            SubKind::Channel | SubKind::Shard => pool.router.server_for(sub).into_iter().collect(),
        };
        if let Some(&i) = now.iter().find(|&&i| !place.contains(&(*index, i))) {
            let what = if kind == SubKind::Pattern { "pattern" } else { "channel" };
            return Some(format!(
                "{what} '{}' now belongs on server {} too",
                redis::printable(sub, 64),
                pool.servers[i].spec
            ));
        }
    }
    None
}

impl Drop for State {
    /// The client left (or let go of its last subscription): the connections close, and replies still waiting for
    /// confirmations are given as they are, so the client's queue drains and its session can end.
    fn drop(&mut self) {
        for c in &self.conns {
            c.close();
        }
        let mut waiting: Vec<(u64, Vec<u8>)> = self.waiting.drain().map(|(slot, (_, reply))| (slot, reply)).collect();
        waiting.sort_unstable_by_key(|(slot, _)| *slot);
        if let Ok(mut q) = self.client.try_borrow_mut() {
            for (slot, reply) in waiting {
                q.complete(slot, &reply);
            }
        }
    }
}

/// One subscriber connection: written to by the session, read by its own task.
struct SubConn {
    server: ServerId,
    label: String,
    stream: RefCell<Option<Stream>>,
    out: RefCell<Vec<u8>>,
    writing: Cell<bool>,
    closed: Cell<bool>,
    /// Confirmations expected, oldest first: (the client command's slot, how many of them).
    expect: RefCell<VecDeque<(u64, usize)>>,
    _slot: SubscriberSlot,
}

impl SubConn {
    fn close(&self) {
        self.closed.set(true);
        if let Some(s) = self.stream.borrow_mut().take() {
            s.shutdown();
        }
    }

    /// Queues a command; it is written now, or once connected.
    fn send(self: &Rc<Self>, args: &[&[u8]], slot: u64) {
        redis::write_command_iter(&mut self.out.borrow_mut(), args.len(), args.iter().copied());
        self.expect.borrow_mut().push_back((slot, args.len() - 1));
        self.kick();
    }

    /// Starts the writer when there is something to write and none runs.
    fn kick(self: &Rc<Self>) {
        if self.writing.get() || self.out.borrow().is_empty() {
            return;
        }
        let Some(stream) = self.stream.borrow().clone() else { return };
        self.writing.set(true);
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let batch = std::mem::take(&mut *me.out.borrow_mut());
                if batch.is_empty() || me.closed.get() {
                    break;
                }
                let (result, _) = stream.send_all(batch).await;
                if result.is_err() {
                    // The reader sees the connection fail too, and reports it.
                    break;
                }
            }
            me.writing.set(false);
        })
        .detach();
    }
}

/// What the session asks before anything else while the client has subscriptions: a RESP2 client in subscribe
/// mode may only run the (un)subscribe commands, PING (answered `*2 pong ...`), QUIT and RESET, as in redis; a
/// RESP3 client runs everything, its messages arriving as pushes between replies. Neither can switch version with
/// HELLO while it has subscriptions or confirmations still to come (the connections speak the version it had).
pub(super) fn gate(s: &Session, p: &mut Pinned, info: &CommandInfo, req: &[u8], sc: &mut Scratch) -> Option<Flow> {
    let ps = p.pubsub.as_ref()?;
    let (total, waiting) = {
        let st = ps.st.borrow();
        (st.subs.total(), st.waiting.len())
    };
    if total == 0 && waiting == 0 {
        // Unsubscribed from everything and confirmed: the connections go.
        p.pubsub = None;
        return None;
    }
    sc.reply.clear();
    if s.proto == Proto::Resp2 && total > 0 {
        if info.kind == CommandKind::Local(Local::Ping) && sc.args.len() <= 2 {
            pubsub::write_subscribed_pong(&mut sc.reply, sc.args.get(1).map(|a| &req[a.clone()]));
        } else if !pubsub::allowed_while_subscribed(info) {
            pubsub::write_subscribed_refusal(&mut sc.reply, info);
        } else {
            return None;
        }
    } else if info.kind == CommandKind::Local(Local::Hello) {
        // The subscriber connections speak the version the client had.
        redis::write_error(
            &mut sc.reply,
            b"ERR ferrule: HELLO is not supported while subscribed (unsubscribe from everything first)",
        );
    } else {
        return None;
    }
    s.local(&sc.reply);
    Some(Flow::Continue)
}

/// (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE.
pub(super) fn command(s: &mut Session, p: &mut Pinned, info: &CommandInfo, cmd: PubSubCmd, req: &[u8], sc: &Scratch) {
    let Target::Pool(pool_index) = s.listener.target() else {
        let msg = format!("-ERR ferrule: {} needs a listener whose route is a pool\r\n", info.name);
        return s.local(msg.as_bytes());
    };
    // A cluster pool's subscriptions would follow the slot map through reshards and failovers: not built yet.
    if super::on_cluster_pool(s) {
        let msg = format!("-ERR ferrule: {} is not supported on a Redis Cluster pool yet\r\n", info.name);
        return s.local(msg.as_bytes());
    }
    let ps = p.pubsub.get_or_insert_with(|| {
        let (pool, confirm_timeout) = {
            let pools = s.worker.pools.borrow();
            let pool = pools.get(pool_index);
            let specs = pool.map(|p| p.servers.iter().map(|s| s.spec.clone()).collect()).unwrap_or_default();
            let name = pool.map(|p| p.name.clone()).unwrap_or_default();
            let timeout = pool.map(|p| std::time::Duration::from_millis(p.cfg.timeout_ms)).unwrap_or_default();
            ((pool_index, name, specs), timeout)
        };
        let st = Rc::new(RefCell::new(State {
            subs: Subscriptions::default(),
            conns: Vec::new(),
            waiting: HashMap::new(),
            client: s.q.clone(),
            client_conn: s.conn.conn().clone(),
            proto: s.proto,
            pool,
            confirm_timeout,
            ended: false,
        }));
        SUBSCRIBED.with(|list| {
            let mut list = list.borrow_mut();
            // Clients that left are pruned here too, now and then, so the list stays within twice the subscribed
            // clients (plus 64) between placement changes.
            if list.len() >= 64 && list.len().is_power_of_two() {
                list.retain(|w| w.strong_count() > 0);
            }
            list.push(Rc::downgrade(&st));
        });
        Box::new(PubSub { st })
    });
    ps.st.borrow_mut().proto = s.proto;
    let names: Vec<&[u8]> = sc.args[1..].iter().map(|a| &req[a.clone()]).collect();
    let result = match cmd {
        PubSubCmd::Subscribe(kind) => subscribe(s, &ps.st, pool_index, kind, &names),
        PubSubCmd::Unsubscribe(kind) => {
            unsubscribe(&ps.st, kind, &names);
            Ok(())
        }
    };
    if let Err(msg) = result {
        s.local(msg.as_bytes());
    }
    // A client with nothing left subscribed and nothing awaited gives its connections back.
    let idle = {
        let st = ps.st.borrow();
        st.subs.total() == 0 && st.waiting.is_empty()
    };
    if idle {
        p.pubsub = None;
    }
}

fn subscribe(
    s: &Session,
    st: &Rc<RefCell<State>>,
    pool_index: usize,
    kind: SubKind,
    names: &[&[u8]],
) -> Result<(), String> {
    // Where each new name goes, decided before anything changes: a refusal leaves the client as it was.
    let mut new: Vec<(&[u8], Vec<ServerId>)> = Vec::new();
    {
        let pools = s.worker.pools.borrow();
        let pool = pools.get(pool_index).ok_or_else(|| "-ERR ferrule: listener has no pool\r\n".to_string())?;
        let st = st.borrow();
        for &name in names {
            if st.subs.contains(kind, name) || new.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let place: Vec<ServerId> = match kind {
                SubKind::Pattern => {
                    (0..pool.servers.len()).filter(|&i| !pool.servers[i].ejected).map(|i| (pool_index, i)).collect()
                }
                SubKind::Channel | SubKind::Shard => {
                    pool.router.server_for(name).map(|i| vec![(pool_index, i)]).unwrap_or_default()
                }
            };
            if place.is_empty() {
                s.meters.borrow_mut().clients.unroutable += 1;
                return Err(format!("-ERR ferrule: pool '{}' has no server available (all ejected)\r\n", pool.name));
            }
            new.push((name, place));
        }
    }
    let mut servers: Vec<ServerId> = new.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    servers.sort_unstable();
    servers.dedup();
    for &server in &servers {
        connection(s, st, server)?;
    }
    let mut sent: Vec<(ServerId, Vec<&[u8]>)> = servers.iter().map(|&server| (server, Vec::new())).collect();
    for (name, place) in &new {
        for server in place {
            if let Some((_, list)) = sent.iter_mut().find(|(s, _)| s == server) {
                list.push(name);
            }
        }
    }
    let mut state = st.borrow_mut();
    let mut reply = Vec::new();
    for &name in names {
        if let Some(i) = new.iter().position(|(n, _)| *n == name) {
            let place = std::mem::take(&mut new[i].1);
            state.subs.add(kind, name, place);
        }
        let count = state.subs.count(kind);
        pubsub::write_confirmation(&mut reply, state.proto, kind.subscribe_word(), Some(name), count);
    }
    let word: &[u8] = match kind {
        SubKind::Channel => b"SUBSCRIBE",
        SubKind::Pattern => b"PSUBSCRIBE",
        SubKind::Shard => b"SSUBSCRIBE",
    };
    drop(state);
    release_after(st, sent, word, reply);
    Ok(())
}

fn unsubscribe(st: &Rc<RefCell<State>>, kind: SubKind, names: &[&[u8]]) {
    let mut state = st.borrow_mut();
    let all: Vec<Box<[u8]>>;
    let names: Vec<&[u8]> = if names.is_empty() {
        all = state.subs.names(kind);
        all.iter().map(|n| &n[..]).collect()
    } else {
        names.to_vec()
    };
    let mut reply = Vec::new();
    let mut per_server: Vec<(ServerId, Vec<&[u8]>)> = Vec::new();
    if names.is_empty() {
        let count = state.subs.count(kind);
        pubsub::write_confirmation(&mut reply, state.proto, kind.unsubscribe_word(), None, count);
    }
    for &name in &names {
        if let Some(place) = state.subs.remove(kind, name) {
            for server in place {
                match per_server.iter_mut().find(|(s, _)| *s == server) {
                    Some((_, list)) => list.push(name),
                    None => per_server.push((server, vec![name])),
                }
            }
        }
        let count = state.subs.count(kind);
        pubsub::write_confirmation(&mut reply, state.proto, kind.unsubscribe_word(), Some(name), count);
    }
    drop(state);
    let word: &[u8] = match kind {
        SubKind::Channel => b"UNSUBSCRIBE",
        SubKind::Pattern => b"PUNSUBSCRIBE",
        SubKind::Shard => b"SUNSUBSCRIBE",
    };
    release_after(st, per_server, word, reply);
}

/// Sends `word names...` to each server and gives the client `reply` once every one of them confirmed its part
/// (at once when none was asked: a second SUBSCRIBE of a channel, an UNSUBSCRIBE of one never subscribed).
fn release_after(st: &Rc<RefCell<State>>, sent: Vec<(ServerId, Vec<&[u8]>)>, word: &[u8], reply: Vec<u8>) {
    let mut state = st.borrow_mut();
    let sent: Vec<_> = sent.into_iter().filter(|(_, names)| !names.is_empty()).collect();
    if sent.is_empty() {
        state.client.borrow_mut().push_local(&reply);
        return;
    }
    let slot = state.client.borrow_mut().reserve();
    let mut asked = 0;
    for (server, names) in sent {
        let Some(conn) = state.conns.iter().find(|c| c.server == server && !c.closed.get()).cloned() else { continue };
        let mut args = Vec::with_capacity(names.len() + 1);
        args.push(word);
        args.extend(names);
        conn.send(&args, slot);
        asked += 1;
    }
    if asked == 0 {
        state.client.borrow_mut().complete(slot, &reply);
        return;
    }
    state.waiting.insert(slot, (asked, reply));
    let timeout = state.confirm_timeout;
    if timeout.is_zero() {
        return;
    }
    // A server that never confirms would leave the client waiting forever: after timeout_ms, the connections
    // still owing this command's confirmations fail (and with them the client's connection).
    let st = Rc::downgrade(st);
    let word = String::from_utf8_lossy(word).into_owned();
    glommio::spawn_local(async move {
        glommio::timer::sleep(timeout).await;
        let Some(strong) = st.upgrade() else { return };
        let late: Vec<Rc<SubConn>> = {
            let state = strong.borrow();
            if !state.waiting.contains_key(&slot) {
                return;
            }
            state.conns.iter().filter(|c| c.expect.borrow().iter().any(|(s, _)| *s == slot)).cloned().collect()
        };
        drop(strong);
        let why = format!("did not confirm {word} within timeout_ms ({} ms)", timeout.as_millis());
        for conn in late {
            fail(&st, &conn, &why);
        }
    })
    .detach();
}

/// The client's subscriber connection to `server`, opened when it has none.
fn connection(s: &Session, st: &Rc<RefCell<State>>, server: ServerId) -> Result<(), String> {
    if st.borrow().conns.iter().any(|c| c.server == server && !c.closed.get()) {
        return Ok(());
    }
    st.borrow_mut().conns.retain(|c| !c.closed.get());
    let set = {
        let pools = s.worker.pools.borrow();
        pools
            .get(server.0)
            .and_then(|pool| pool.servers.get(server.1))
            .map(|srv| srv.dedicated.clone())
            .ok_or_else(|| "-ERR ferrule: listener has no pool\r\n".to_string())?
    };
    let slot = DedicatedSet::subscriber(&set, s.proto).map_err(|e| format!("-{}\r\n", e.message()))?;
    let conn = Rc::new(SubConn {
        server,
        label: slot.label.clone(),
        stream: RefCell::new(None),
        out: RefCell::new(Vec::new()),
        writing: Cell::new(false),
        closed: Cell::new(false),
        expect: RefCell::new(VecDeque::new()),
        _slot: slot,
    });
    st.borrow_mut().conns.push(conn.clone());
    glommio::spawn_local(run(conn, Rc::downgrade(st))).detach();
    Ok(())
}

/// The connection's task: connects, sends the prelude (AUTH, SELECT, HELLO 3) and what was queued meanwhile, then
/// frames what the server sends.
async fn run(conn: Rc<SubConn>, st: Weak<RefCell<State>>) {
    let opts = conn._slot.opts.clone();
    let addr = conn._slot.addr;
    let connected = match uring::connect(addr, opts.connect_timeout).await {
        Err(e) => Err(format!("connect failed: {e}")),
        Ok(c) => {
            if opts.keepalive {
                c.set_keepalive();
            }
            match &opts.tls {
                None => Ok(Stream::Plain(c)),
                Some(connector) => tls::connect(c, connector, opts.connect_timeout).await,
            }
        }
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err(why) => return fail(&st, &conn, &why),
    };
    if conn.closed.get() {
        stream.shutdown();
        return;
    }
    {
        let mut out = conn.out.borrow_mut();
        let mut first = opts.prelude.clone();
        first.extend_from_slice(&out);
        *out = first;
    }
    *conn.stream.borrow_mut() = Some(stream.clone());
    conn.kick();
    let mut prelude = opts.prelude_replies;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut start = 0;
    let mut parser = ReplyParser::new();
    loop {
        match stream.read_append(&mut buf).await {
            Ok(0) => return fail(&st, &conn, "closed the connection"),
            Err(e) => return fail(&st, &conn, &format!("read failed: {e}")),
            Ok(_) => {}
        }
        loop {
            if buf.len() - start < parser.needed() {
                break;
            }
            let len = match parser.parse(&buf[start..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return fail(&st, &conn, &format!("sent a malformed reply: {}", e.0)),
            };
            parser = ReplyParser::new();
            let frame = &buf[start..start + len];
            start += len;
            if prelude > 0 {
                prelude -= 1;
                if redis::is_error_reply(frame) {
                    let msg = String::from_utf8_lossy(frame).trim_end().to_string();
                    return fail(&st, &conn, &format!("rejected the connection setup: {msg}"));
                }
                continue;
            }
            if let Err(why) = arrive(&st, &conn, frame) {
                return fail(&st, &conn, &why);
            }
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
            if buf.capacity() > 64 * 1024 {
                buf = Vec::with_capacity(16 * 1024);
            }
        } else if start > 64 * 1024 {
            buf.drain(..start);
            start = 0;
        }
    }
}

/// One frame from a subscriber connection: a message for the client, or a confirmation the client's reply waits
/// for. Anything else means the connection is out of step.
fn arrive(st: &Weak<RefCell<State>>, conn: &SubConn, frame: &[u8]) -> Result<(), String> {
    let Some(st) = st.upgrade() else { return Ok(()) };
    let mut state = st.borrow_mut();
    match pubsub::classify(frame) {
        Frame::Message(kind, name) => {
            if state.subs.contains(kind, name) {
                state.client.borrow_mut().push_local(frame);
            }
            Ok(())
        }
        Frame::Confirmation => {
            let mut expect = conn.expect.borrow_mut();
            let Some(head) = expect.front_mut() else {
                return Err("sent a subscription confirmation nobody asked for".into());
            };
            head.1 -= 1;
            if head.1 > 0 {
                return Ok(());
            }
            let slot = head.0;
            expect.pop_front();
            let done = match state.waiting.get_mut(&slot) {
                Some((left, _)) => {
                    *left -= 1;
                    *left == 0
                }
                None => false,
            };
            if done {
                if let Some((_, reply)) = state.waiting.remove(&slot) {
                    state.client.borrow_mut().complete(slot, &reply);
                }
            }
            Ok(())
        }
        Frame::Other => {
            let what = redis::printable(frame, 80);
            Err(format!("sent {what} on a subscriber connection"))
        }
    }
}

/// A subscriber connection failed: the client gets an error and its connection ends (it reconnects and subscribes
/// again), since it would otherwise miss that server's messages without knowing.
fn fail(st: &Weak<RefCell<State>>, conn: &SubConn, why: &str) {
    if conn.closed.get() {
        return;
    }
    conn.close();
    let Some(st) = st.upgrade() else { return };
    let mut state = st.borrow_mut();
    if state.ended {
        return;
    }
    log::warn!("backend {} (subscriber): {why}; closing its client's connection", conn.label);
    let msg = format!("-ERR ferrule: subscriber connection to backend {} failed: {why}\r\n", conn.label);
    end_client(&mut state, &msg);
}

/// Ends the client's connection after `msg`: its subscriber connections close, replies that wait for
/// confirmations get `msg` instead (they will never come), so the client's queue drains and its connection ends.
fn end_client(state: &mut State, msg: &str) {
    state.ended = true;
    for c in &state.conns {
        c.close();
    }
    let mut waiting: Vec<u64> = state.waiting.drain().map(|(slot, _)| slot).collect();
    waiting.sort_unstable();
    let mut q = state.client.borrow_mut();
    if waiting.is_empty() {
        q.push_local(msg.as_bytes());
    }
    for slot in waiting {
        q.complete(slot, msg.as_bytes());
    }
    q.close_after_flush = true;
    q.wake_all();
    drop(q);
    state.client_conn.shutdown_read();
}
