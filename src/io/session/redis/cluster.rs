//! Requests of a listener whose pool is a `redis_cluster` pool: keys route by hash slot through the slot map in
//! force (`io::cluster`), and each request (or fragment) carries its bytes so that a redirect can be followed.
//!
//! - one key, or keys that share a slot: the request goes unchanged to the slot's node (by `read_from` for reads);
//! - keys of several slots: MGET/MSET/DEL/UNLINK/TOUCH/EXISTS split per slot (redis refuses keys of two slots in
//!   one command even on one node) and merge as on a sharded pool; any other command gets redis' own
//!   `-CROSSSLOT Keys in request don't hash to the same slot`;
//! - a slot no shard serves, or a map not known yet: `-CLUSTERDOWN` with what is missing.

use super::pinned::Pinned;
use super::{write_as_sent, Flow, Scratch};
use crate::cluster::{key_slot, one_slot, NoNode, SlotMap, CROSSSLOT};
use crate::io::backend::Backend;
use crate::io::cluster::{ClusterRt, Follow, Redirectable};
use crate::io::session::Session;
use crate::io::stats::Meter;
use crate::protocol::redis::transaction::ServerId;
use crate::protocol::redis::{self, CommandInfo, ReplyShape, Split};
use crate::router::group_by_server;
use std::rc::Rc;
use std::time::Instant;

#[allow(clippy::too_many_arguments)]
pub(super) fn route(
    s: &mut Session,
    cl: &Rc<ClusterRt>,
    pool_index: usize,
    pinned: Option<&Pinned>,
    info: &'static CommandInfo,
    split: Option<Split>,
    req: &[u8],
    sc: &mut Scratch,
    now: Instant,
    blocked_on: &mut Option<Rc<Backend>>,
) -> Option<Flow> {
    // A new map while this client has requests in flight under the old one: they may still be redirected (and
    // resent) to where the new map sends this request directly, so it waits for them, or it could overtake a
    // write it follows.
    let version = cl.version.get();
    if version != sc.cluster_version {
        if s.q.borrow().inflight() > 0 {
            return Some(Flow::Retry);
        }
        sc.cluster_version = version;
    }
    let map = cl.map();
    sc.servers.clear();
    sc.servers.extend(sc.keys.iter().map(|&k| key_slot(&req[sc.args[k].clone()]) as usize));
    let read = redis::read_only_may_run(info);
    if one_slot(&sc.servers) {
        let slot = sc.servers[0] as u16;
        // While a slot's keys are WATCHed, requests for it go on the WATCHing connection, behind the WATCH.
        let backend = match pinned.and_then(|p| p.watching_at(ServerId::Slot(pool_index, slot))) {
            Some(b) => b.clone(),
            None => node(s, cl, &map, slot, read)?,
        };
        let mut bytes = Vec::with_capacity(req.len());
        write_as_sent(&mut bytes, req, &sc.args);
        let seq = s.q.borrow_mut().reserve();
        let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, false));
        let shape = ReplyShape::for_request(info, &sc.args, req);
        request(s, cl, &backend, (seq, None), meter, bytes, shape, Follow::Shared).send(&backend, now);
        if backend.over_queue_bound() {
            *blocked_on = Some(backend);
        }
        return None;
    }
    let Some(kind) = split else {
        s.local(CROSSSLOT);
        return None;
    };
    // One fragment per slot; every fragment's node is found before anything is sent, so a request for a slot
    // nobody serves fails whole.
    group_by_server(&sc.servers, &mut sc.groups, &mut sc.key_frag);
    let mut backends = Vec::with_capacity(sc.groups.len());
    for &slot in &sc.groups {
        let b = match pinned.and_then(|p| p.watching_at(ServerId::Slot(pool_index, slot as u16))) {
            Some(b) => b.clone(),
            None => node(s, cl, &map, slot as u16, read)?,
        };
        backends.push(b);
    }
    let seq = super::reserve_split(s, kind, sc, sc.groups.len(), sc.groups.len() as u32);
    let per_key = if kind == Split::Mset { 2 } else { 1 };
    let name = &req[sc.args[0].clone()];
    let shape = ReplyShape::of(info);
    for (frag, backend) in backends.into_iter().enumerate() {
        let n_keys = sc.key_frag.iter().filter(|&&f| f as usize == frag).count();
        let mut bytes = Vec::new();
        let args = sc
            .keys
            .iter()
            .zip(&sc.key_frag)
            .filter(|(_, &f)| f as usize == frag)
            .flat_map(|(&k, _)| (k..k + per_key).map(|i| &req[sc.args[i].clone()]));
        redis::write_command_iter(&mut bytes, 1 + n_keys * per_key, std::iter::once(name).chain(args));
        let meter = sc.command.map(|c| Meter::new(&s.meters, c, now, true));
        // A fragment of a split MGET answers an array of exactly its own keys.
        let shape = if kind == Split::Mget { shape.with_array_len(n_keys) } else { shape };
        let frag = Some(frag as u32);
        request(s, cl, &backend, (seq, frag), meter, bytes, shape, Follow::Shared).send(&backend, now);
        if backend.over_queue_bound() {
            *blocked_on = Some(backend);
        }
    }
    None
}

/// A cluster request for `backend`, answering the client's reply slot `seq` (fragment `frag` of a split), not
/// yet redirected. Shared by the plain path, the split path and the transactions' and blocking commands' path.
#[allow(clippy::too_many_arguments)]
pub(super) fn request(
    s: &Session,
    cl: &Rc<ClusterRt>,
    backend: &Backend,
    (seq, frag): (u64, Option<u32>),
    meter: Option<Meter>,
    bytes: Vec<u8>,
    shape: ReplyShape,
    follow: Follow,
) -> Box<Redirectable> {
    Box::new(Redirectable {
        client: s.q.clone(),
        seq,
        frag,
        meter,
        bytes,
        shape,
        client_id: s.id,
        proto: s.proto,
        sent_to: backend.addr,
        followed: 0,
        asked: false,
        retried: 0,
        rt: cl.clone(),
        follow,
    })
}

/// The connection for `slot`, or `None` after answering the client why there is none.
fn node(s: &Session, cl: &ClusterRt, map: &SlotMap, slot: u16, read: bool) -> Option<Rc<Backend>> {
    let found = map.node_for(slot, read, cl.read_from, s.id).ok().and_then(|i| cl.backend_at(i, s.id, s.proto));
    if found.is_none() {
        cl.counters.borrow_mut().unserved += 1;
        s.meters.borrow_mut().clients.unroutable += 1;
        let unreachable = cl.unreachable();
        let why = match map.node_for(slot, read, cl.read_from, s.id) {
            _ if cl.version.get() == 0 && !unreachable.is_empty() => {
                format!("the cluster's slot map is not known yet: {unreachable}")
            }
            _ if cl.version.get() == 0 => {
                "the cluster's slot map is not known yet (no seed node answered so far)".into()
            }
            Err(NoNode::NoReplica) => "its shard has no healthy replica (read_from = \"replica\")".into(),
            _ => "no node of the cluster serves it".to_string(),
        };
        let msg = format!("-CLUSTERDOWN ferrule: pool '{}': hash slot {slot}: {why}\r\n", cl.pool);
        s.local(msg.as_bytes());
    }
    found
}
