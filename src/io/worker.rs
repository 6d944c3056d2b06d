//! A worker executor: one pinned core with its own listeners, sessions, pools, rings and backend connections.

use super::backend::Backend;
use super::messages::{FromWorker, ToWorker};
use super::pool::PoolRt;
use super::session;
use super::stats::{WorkerSnapshot, WorkerStats};
use super::stream::Conn;
use crate::config::{Config, ListenAddr, ListenerConfig, Protocol};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::net::{TcpListener, UnixListener};
use glommio::Task;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::io::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a session sees of its listener; updated in place by a reload so open connections follow the new routes.
pub struct ListenerSlot {
    pub name: String,
    pub protocol: Protocol,
    pool: Cell<usize>,
    auth: RefCell<Option<String>>,
    closed: Cell<bool>,
}

impl ListenerSlot {
    pub fn pool(&self) -> usize {
        self.pool.get()
    }
    pub fn auth(&self) -> Option<String> {
        self.auth.borrow().clone()
    }
    /// The listener was removed by a reload: sessions finish their pipelines and close.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

struct ListenerRt {
    slot: Rc<ListenerSlot>,
    listen: ListenAddr,
    /// The accept loop; dropping it stops accepting and closes this core's socket.
    _accept: Task<()>,
}

pub struct Worker {
    pub id: usize,
    pub pools: RefCell<Vec<PoolRt>>,
    listeners: RefCell<HashMap<String, ListenerRt>>,
    config: RefCell<Arc<Config>>,
    next_client: Cell<u64>,
    pub stats: RefCell<WorkerStats>,
    started: Instant,
    stopping: Cell<bool>,
}

impl Worker {
    pub fn next_client_id(&self) -> u64 {
        let id = self.next_client.get();
        self.next_client.set(id + 1);
        id
    }

    pub fn max_inflight(&self) -> usize {
        self.config.borrow().proxy.client_max_inflight
    }

    pub fn max_value_bytes(&self, pool: usize) -> usize {
        self.pools.borrow().get(pool).map_or(1024 * 1024, |p| p.cfg.max_value_bytes)
    }

    /// Proxy-level INFO for redis clients (not a random backend's).
    pub fn info_text(&self) -> String {
        let st = self.stats.borrow();
        let mut s = String::new();
        s.push_str("# Server\r\n");
        s.push_str(&format!("ferrule_version:{}\r\n", env!("CARGO_PKG_VERSION")));
        s.push_str(&format!("uptime_in_seconds:{}\r\n", self.started.elapsed().as_secs()));
        s.push_str(&format!("worker:{}\r\n", self.id));
        s.push_str("# Clients\r\n");
        s.push_str(&format!("connected_clients:{}\r\n", st.clients_current));
        s.push_str("# Stats\r\n");
        s.push_str(&format!("total_connections_received:{}\r\n", st.clients_accepted));
        s.push_str(&format!("total_commands_processed:{}\r\n", st.requests));
        s
    }

    /// Proxy-level `stats` for memcache clients.
    pub fn memcache_stats_text(&self) -> String {
        let st = self.stats.borrow();
        format!(
            "STAT pid {}\r\nSTAT uptime {}\r\nSTAT version ferrule-{}\r\nSTAT curr_connections {}\r\nSTAT total_connections {}\r\nSTAT cmd_total {}\r\nEND\r\n",
            std::process::id(),
            self.started.elapsed().as_secs(),
            env!("CARGO_PKG_VERSION"),
            st.clients_current,
            st.clients_accepted,
            st.requests
        )
    }

    fn all_backends(&self) -> Vec<Rc<Backend>> {
        self.pools.borrow().iter().flat_map(|p| p.servers.iter().flat_map(|s| s.conns.iter().cloned())).collect()
    }

    /// Builds pools from `cfg`, reusing the connections of servers that stay; retires the rest.
    fn install_pools(&self, cfg: &Config) {
        let mut old: HashMap<(String, String), Vec<Rc<Backend>>> = HashMap::new();
        let mut old_pools = std::mem::take(&mut *self.pools.borrow_mut());
        for p in old_pools.drain(..) {
            for s in p.servers {
                old.insert((p.name.clone(), reuse_key(&p.cfg, &s.spec)), s.conns);
            }
        }
        let mut reuse =
            |pc: &crate::config::PoolConfig, spec: &str| old.remove(&(pc.name.clone(), reuse_key(pc, spec)));
        let pools: Vec<PoolRt> = cfg.pools.iter().map(|pc| PoolRt::build(pc, &cfg.proxy, &mut reuse)).collect();
        for conns in old.into_values() {
            for c in conns {
                c.retire();
            }
        }
        *self.pools.borrow_mut() = pools;
    }

    /// Starts accepting on listeners new in `cfg`, updates kept ones, and stops removed ones.
    fn install_listeners(self: &Rc<Self>, cfg: &Config) -> Result<(), String> {
        let mut listeners = self.listeners.borrow_mut();
        let mut keep: HashMap<String, ListenerRt> = HashMap::new();
        for lc in &cfg.listeners {
            match listeners.remove(&lc.name) {
                Some(rt) if rt.listen == lc.listen && rt.slot.protocol == lc.protocol => {
                    rt.slot.pool.set(lc.pool);
                    *rt.slot.auth.borrow_mut() = lc.auth.clone();
                    keep.insert(lc.name.clone(), rt);
                }
                old => {
                    if let Some(old) = old {
                        old.slot.closed.set(true);
                    }
                    if let Some(rt) = self.bind(lc)? {
                        keep.insert(lc.name.clone(), rt);
                    }
                }
            }
        }
        for (name, rt) in listeners.drain() {
            log::info!("worker {}: listener {} stops accepting", self.id, name);
            rt.slot.closed.set(true);
        }
        *listeners = keep;
        Ok(())
    }

    fn bind(self: &Rc<Self>, lc: &ListenerConfig) -> Result<Option<ListenerRt>, String> {
        let slot = Rc::new(ListenerSlot {
            name: lc.name.clone(),
            protocol: lc.protocol,
            pool: Cell::new(lc.pool),
            auth: RefCell::new(lc.auth.clone()),
            closed: Cell::new(false),
        });
        let task = match &lc.listen {
            ListenAddr::Tcp(addr) => {
                let listener = bind_tcp(*addr, lc.backlog)
                    .map_err(|e| format!("listener {}: cannot listen on {}: {}", lc.name, addr, e))?;
                log::info!("worker {}: listener {} ({}) accepting on {}", self.id, lc.name, lc.protocol.name(), addr);
                glommio::spawn_local(accept_tcp(self.clone(), slot.clone(), listener))
            }
            ListenAddr::Unix(path) => {
                // A unix socket path can be bound once: the first worker serves it.
                if self.id != 0 {
                    return Ok(None);
                }
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path)
                    .map_err(|e| format!("listener {}: cannot listen on {}: {}", lc.name, path.display(), e))?;
                log::info!(
                    "worker {}: listener {} ({}) accepting on {}",
                    self.id,
                    lc.name,
                    lc.protocol.name(),
                    path.display()
                );
                glommio::spawn_local(accept_unix(self.clone(), slot.clone(), listener))
            }
        };
        Ok(Some(ListenerRt { slot, listen: lc.listen.clone(), _accept: task }))
    }

    fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot { stats: self.stats.borrow().clone() }
    }
}

/// Connections are reused across a reload when the server and everything that shapes the connection are unchanged.
fn reuse_key(pc: &crate::config::PoolConfig, spec: &str) -> String {
    format!(
        "{}|{}|{:?}|{}|{}|{}|{}",
        spec,
        pc.timeout_ms,
        pc.redis_auth,
        pc.redis_db,
        pc.server_connections,
        pc.connect_timeout_ms,
        pc.protocol.name()
    )
}

fn bind_tcp(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog as i32)?;
    // SAFETY: we own the descriptor and hand it to glommio, which closes it on drop.
    Ok(unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) })
}

async fn accept_tcp(worker: Rc<Worker>, slot: Rc<ListenerSlot>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(session::serve(worker.clone(), slot.clone(), Conn::tcp(stream))).detach();
            }
            Err(e) => {
                log::warn!("worker {}: accept on {} failed: {}", worker.id, slot.name, e);
                // Out of descriptors and the like: pause instead of spinning.
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_unix(worker: Rc<Worker>, slot: Rc<ListenerSlot>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(session::serve(worker.clone(), slot.clone(), Conn::unix(stream))).detach();
            }
            Err(e) => {
                log::warn!("worker {}: accept on {} failed: {}", worker.id, slot.name, e);
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Timer work: request deadlines and forwarding health observations to control.
async fn tick(worker: Rc<Worker>, tx: Rc<ConnectedSender<FromWorker>>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let now = Instant::now();
        let pools = worker.pools.borrow();
        let mut events = Vec::new();
        for p in pools.iter() {
            for s in &p.servers {
                for c in &s.conns {
                    c.check_deadline(now);
                    for h in c.take_health_events() {
                        let failed = match h {
                            super::backend::Health::Failed(r) => Some(r),
                            super::backend::Health::Recovered => None,
                        };
                        events.push(FromWorker::Health {
                            worker: worker.id,
                            pool: p.name.clone(),
                            server: s.spec.clone(),
                            failed,
                        });
                    }
                }
            }
        }
        drop(pools);
        for e in events {
            let _ = tx.try_send(e);
        }
        if worker.stopping.get() {
            return;
        }
    }
}

/// Runs one worker until control tells it to stop.
pub async fn run(
    id: usize,
    cfg: Arc<Config>,
    rx: SharedReceiver<ToWorker>,
    tx: SharedSender<FromWorker>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let rx = rx.connect().await;
    let tx = Rc::new(tx.connect().await);
    let worker = Rc::new(Worker {
        id,
        pools: RefCell::new(Vec::new()),
        listeners: RefCell::new(HashMap::new()),
        config: RefCell::new(cfg.clone()),
        next_client: Cell::new((id as u64) << 48),
        stats: RefCell::new(WorkerStats::default()),
        started: Instant::now(),
        stopping: Cell::new(false),
    });
    worker.install_pools(&cfg);
    if let Err(e) = worker.install_listeners(&cfg) {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    let ticker = glommio::spawn_local(tick(worker.clone(), tx.clone()));
    while let Some(msg) = rx.recv().await {
        match msg {
            ToWorker::Reload(cfg) => {
                *worker.config.borrow_mut() = cfg.clone();
                worker.install_pools(&cfg);
                if let Err(e) = worker.install_listeners(&cfg) {
                    log::error!("worker {}: reload: {}", id, e);
                }
            }
            ToWorker::Eject { pool, server } => set_ejected(&worker, &pool, &server, true),
            ToWorker::Restore { pool, server } => set_ejected(&worker, &pool, &server, false),
            ToWorker::Snapshot { id: sid } => {
                let _ = tx.send(FromWorker::Snapshot { worker: id, id: sid, stats: Box::new(worker.snapshot()) }).await;
            }
            ToWorker::Shutdown { grace_ms } => {
                shutdown(&worker, Duration::from_millis(grace_ms)).await;
                break;
            }
        }
    }
    worker.stopping.set(true);
    drop(ticker);
    let _ = tx.send(FromWorker::Stopped { worker: id }).await;
}

fn set_ejected(worker: &Worker, pool: &str, server: &str, ejected: bool) {
    let mut pools = worker.pools.borrow_mut();
    if let Some(p) = pools.iter_mut().find(|p| p.name == pool) {
        if let Some(i) = p.servers.iter().position(|s| s.spec == server) {
            p.set_ejected(i, ejected);
        }
    }
}

/// Stops accepting everywhere, then waits (bounded) until no client has requests in flight.
async fn shutdown(worker: &Rc<Worker>, grace: Duration) {
    worker.stopping.set(true);
    for (_, rt) in worker.listeners.borrow_mut().drain() {
        rt.slot.closed.set(true);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let busy: usize = worker.all_backends().iter().map(|b| b.inflight()).sum();
        if busy == 0 {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}
