//! Backend connections that are not shared: a small, bounded per-worker set per server, each held by one client at
//! a time for a transaction (WATCH/MULTI to EXEC/DISCARD) or a blocking command (for as long as it blocks).
//!
//! A dedicated connection is an ordinary [`Backend`] (same prelude: AUTH, SELECT, and HELLO 3 for RESP3 clients;
//! same framing, reply-shape checks and timeouts) built `one_shot`: it never reconnects, so a transaction cannot
//! silently continue on a fresh connection that has no MULTI. It is taken with [`DedicatedSet::lease`] and given
//! back with [`Lease::release`]: after a clean end (EXEC, DISCARD, UNWATCH, a blocking command answered) it goes to
//! the idle set for the next client; a lease dropped without that (the client vanished mid-transaction or
//! mid-block) closes the connection, so the server discards the transaction and forgets the block. Nothing here
//! touches the shared connections, which never wait for a dedicated one.

use super::backend::{Backend, BackendOptions};
use crate::protocol::redis::Proto;
use crate::stats::ServerCounters;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

/// One server's dedicated connections on one worker.
pub struct DedicatedSet {
    addr: SocketAddr,
    label: String,
    resp2: BackendOptions,
    resp3: BackendOptions,
    /// `max_dedicated_connections`: idle and leased together never exceed it.
    max: usize,
    idle: Vec<(Proto, Rc<Backend>)>,
    /// Leased now, for the worker's deadline tick.
    leased: Vec<Rc<Backend>>,
    /// Subscriber connections open now (`io::session::redis::pubsub`): they count against `max` too.
    subscribers: usize,
    /// For the stats: connections opened, and leases and subscriptions refused for want of a place.
    opened: u64,
    subscribers_opened: u64,
    refused: u64,
    /// The request figures of this set's connections that are gone, so that the server's counters only grow
    /// (the live ones' are read at each snapshot).
    retired: ServerCounters,
}

/// What a dedicated connection adds to its server's counters: its requests, replies, bytes, faults and failed
/// requests, as a shared connection's. Not its connects (`dedicated_opened` counts those) nor its latency: a
/// blocking command's reply waits for as long as it blocks, which says nothing of the server.
fn request_figures(backend: &Backend) -> ServerCounters {
    ServerCounters { connects: 0, latency_sum_us: 0, ..backend.stats_snapshot().0 }
}

pub type DedicatedRef = Rc<RefCell<DedicatedSet>>;

/// Why no dedicated connection could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub label: String,
    pub max: usize,
}

impl Exhausted {
    /// The error reply, without its `-`.
    pub fn message(&self) -> String {
        format!(
            "ERR ferrule: backend {} has no dedicated connection available (max_dedicated_connections = {})",
            self.label, self.max
        )
    }
}

impl DedicatedSet {
    /// `resp2` / `resp3`: the options of the shared connections of each version, made one-shot here.
    pub fn new(
        addr: SocketAddr,
        label: String,
        resp2: BackendOptions,
        resp3: BackendOptions,
        max: usize,
    ) -> DedicatedRef {
        let one_shot = |o: BackendOptions| BackendOptions { one_shot: true, ..o };
        Rc::new(RefCell::new(DedicatedSet {
            addr,
            label,
            resp2: one_shot(resp2),
            resp3: one_shot(resp3),
            max,
            idle: Vec::new(),
            leased: Vec::new(),
            subscribers: 0,
            opened: 0,
            subscribers_opened: 0,
            refused: 0,
            retired: ServerCounters::default(),
        }))
    }

    /// A connection of version `proto` for one client: an idle one if there is one (the most recently used, whose
    /// connection is the likeliest to be alive), else a new one while under `max`.
    pub fn lease(set: &DedicatedRef, proto: Proto) -> Result<Lease, Exhausted> {
        let mut me = set.borrow_mut();
        me.forget_dead_idle();
        let backend = match me.idle.iter().rposition(|(p, _)| *p == proto) {
            Some(i) => me.idle.remove(i).1,
            None => {
                if me.idle.len() + me.leased.len() + me.subscribers >= me.max {
                    // A connection idle in the other version gives its place up.
                    match me.idle.first() {
                        Some(_) => {
                            let (_, b) = me.idle.remove(0);
                            me.close_and_retire(
                                &b,
                                "closed to make room for a dedicated connection of the other protocol version",
                            );
                        }
                        None => {
                            me.refused += 1;
                            return Err(Exhausted { label: me.label.clone(), max: me.max });
                        }
                    }
                }
                let opts = if proto == Proto::Resp3 { me.resp3.clone() } else { me.resp2.clone() };
                let b = Backend::new(me.addr, format!("{} (dedicated)", me.label), opts);
                glommio::spawn_local(b.clone().run(false)).detach();
                me.opened += 1;
                b
            }
        };
        me.leased.push(backend.clone());
        Ok(Lease { set: set.clone(), backend: Some(backend), proto })
    }

    /// A place for one subscriber connection of version `proto` (which the caller opens and runs itself: it is
    /// no request/reply connection), counted against `max` like a leased one until the [`SubscriberSlot`] is
    /// dropped. An idle connection gives its place up when the set is full.
    pub fn subscriber(set: &DedicatedRef, proto: Proto) -> Result<SubscriberSlot, Exhausted> {
        let mut me = set.borrow_mut();
        me.forget_dead_idle();
        if me.idle.len() + me.leased.len() + me.subscribers >= me.max {
            if me.idle.is_empty() {
                me.refused += 1;
                return Err(Exhausted { label: me.label.clone(), max: me.max });
            }
            let (_, b) = me.idle.remove(0);
            me.close_and_retire(&b, "closed to make room for a subscriber connection");
        }
        me.subscribers += 1;
        me.subscribers_opened += 1;
        let opts = if proto == Proto::Resp3 { me.resp3.clone() } else { me.resp2.clone() };
        Ok(SubscriberSlot { set: set.clone(), addr: me.addr, label: me.label.clone(), opts })
    }

    /// Adds this set's figures to its server's snapshot: its own, and the request figures of its connections (live
    /// and gone) to the server's counters. They start again at 0 when a reload rebuilds the pool (and with it the
    /// set), as a restart does.
    pub fn add_figures(&self, snap: &mut crate::stats::ServerSnapshot) {
        snap.counters.add(&self.retired);
        for b in self.leased.iter().chain(self.idle.iter().map(|(_, b)| b)) {
            snap.counters.add(&request_figures(b));
        }
        snap.counters.dedicated_opened += self.opened;
        snap.counters.subscribers_opened += self.subscribers_opened;
        snap.counters.dedicated_refused += self.refused;
        snap.gauges.dedicated_in_use += self.leased.len() as u64;
        snap.gauges.dedicated_idle += self.idle.iter().filter(|(_, b)| !b.is_dead()).count() as u64;
        snap.gauges.subscribers += self.subscribers as u64;
    }

    /// The connections leased now (the worker checks their deadlines).
    /// Subscriber connections open now.
    pub fn subscribers(&self) -> usize {
        self.subscribers
    }

    pub fn leased(&self) -> &[Rc<Backend>] {
        &self.leased
    }

    fn give_back(&mut self, backend: Rc<Backend>, proto: Proto, clean: bool) {
        if let Some(i) = self.leased.iter().position(|b| Rc::ptr_eq(b, &backend)) {
            self.leased.swap_remove(i);
        }
        if clean && !backend.is_dead() {
            self.idle.push((proto, backend));
        } else if backend.is_dead() {
            self.retired.add(&request_figures(&backend));
        } else {
            self.close_and_retire(
                &backend,
                "closed: its client left it in an unknown state (mid-transaction or blocked)",
            );
        }
    }

    /// Idle connections that failed or were closed by the server leave the set, their figures kept.
    fn forget_dead_idle(&mut self) {
        let retired = &mut self.retired;
        self.idle.retain(|(_, b)| {
            if b.is_dead() {
                retired.add(&request_figures(b));
            }
            !b.is_dead()
        });
    }

    /// Closes a connection of the set and keeps its figures from before the close: the proxy closing it is no
    /// fault of the server, nor are the requests that fails (their client is gone).
    fn close_and_retire(&mut self, backend: &Backend, reason: &str) {
        self.retired.add(&request_figures(backend));
        backend.close(reason);
    }
}

impl Drop for DedicatedSet {
    /// The pool was rebuilt by a reload: idle connections close (leased ones close or return when released, to a
    /// set that is gone, and then close).
    fn drop(&mut self) {
        for (_, b) in self.idle.drain(..) {
            b.close("closed: its pool was reloaded");
        }
    }
}

/// One client's hold on a dedicated connection. Dropped without [`release`](Lease::release) it closes the
/// connection: whatever the client started there (a transaction, a WATCH, a blocked pop) must not reach the next
/// client.
pub struct Lease {
    set: DedicatedRef,
    backend: Option<Rc<Backend>>,
    proto: Proto,
}

impl Lease {
    pub fn backend(&self) -> &Rc<Backend> {
        self.backend.as_ref().expect("a lease holds its backend until released")
    }

    /// Gives the connection back after a clean end: what was sent on it last (EXEC, DISCARD, UNWATCH, or a blocking
    /// command whose reply is in) leaves it with no transaction, no WATCH and nothing blocking. Requests still in
    /// flight on it keep their places in its queue, ahead of the next client's.
    pub fn release(mut self) {
        if let Some(b) = self.backend.take() {
            self.set.borrow_mut().give_back(b, self.proto, true);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(b) = self.backend.take() {
            self.set.borrow_mut().give_back(b, self.proto, false);
        }
    }
}

/// One subscriber connection's place in a [`DedicatedSet`], with what it needs to connect: the server's address,
/// its label and the options (prelude, TLS, timeouts) of the client's protocol version.
pub struct SubscriberSlot {
    set: DedicatedRef,
    pub addr: SocketAddr,
    pub label: String,
    pub opts: BackendOptions,
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        let mut set = self.set.borrow_mut();
        set.subscribers = set.subscribers.saturating_sub(1);
    }
}
