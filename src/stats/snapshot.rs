//! What one worker reports when control asks for its figures: plain data, cloned out of the worker's live counters
//! (which never leave its core) and sent over the control channel.

use crate::histogram::Histogram;

/// Client-side counters of one listener (on one worker, or merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed, for whatever reason.
    pub closed: u64,
    /// Connections the client closed (end of stream): twemproxy's `client_eof`.
    pub eof: u64,
    /// Connections that failed with a read or write error: twemproxy's `client_err`.
    pub errors: u64,
    /// Connections closed because the client sent something that cannot be parsed.
    pub protocol_errors: u64,
    /// Requests naming a command the proxy does not know (answered with an error, connection kept).
    pub unknown_commands: u64,
    /// Requests parsed (every command, including those answered by the proxy itself).
    pub requests: u64,
    /// Sub-requests created by splitting multi-key requests across servers: twemproxy's `fragments`.
    pub fragments: u64,
    /// Requests refused because no server of the pool was available (all ejected).
    pub unroutable: u64,
    /// Times ferrule stopped reading a client because of backpressure: `client_max_inflight` requests awaiting
    /// replies or `client_max_unsent_bytes` of replies it had not read.
    pub backpressured: u64,
    /// Connections closed because more than `client_max_buffered_bytes` of replies were held for them.
    pub buffer_limit_closes: u64,
    /// Connections closed because the worker's clients together held more than `client_buffers_max_bytes` of
    /// replies, this one more than `client_max_unsent_bytes` of them.
    pub buffers_full_closes: u64,
    /// Clients refused (answered with an error and closed) because a client limit was reached:
    /// the listener's `client_connections` or `proxy.max_client_connections`.
    pub limit_refusals: u64,
    /// Connections closed because the client was idle for the listener's `client_idle_timeout_ms`.
    pub idle_timeouts: u64,
}

impl ClientCounters {
    /// Connections open now.
    pub fn current(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }

    /// Adds `other` field by field.
    pub fn add(&mut self, other: &ClientCounters) {
        self.accepted += other.accepted;
        self.closed += other.closed;
        self.eof += other.eof;
        self.errors += other.errors;
        self.protocol_errors += other.protocol_errors;
        self.unknown_commands += other.unknown_commands;
        self.requests += other.requests;
        self.fragments += other.fragments;
        self.unroutable += other.unroutable;
        self.backpressured += other.backpressured;
        self.buffer_limit_closes += other.buffer_limit_closes;
        self.buffers_full_closes += other.buffers_full_closes;
        self.limit_refusals += other.limit_refusals;
        self.idle_timeouts += other.idle_timeouts;
    }
}

/// One command on one listener.
#[derive(Clone, Debug, Default)]
pub struct CommandSnapshot {
    /// The command as the protocol spells it (redis: uppercase, as in the command table; memcache: the verb).
    pub name: &'static str,
    /// Requests of this command parsed.
    pub requests: u64,
    /// Requests answered with an error made by the proxy because the backend failed (down, timed out, reset).
    pub failed: u64,
    /// Sum of the recorded latencies, in microseconds (for Prometheus `_sum` and INFO `usec`).
    pub latency_sum_us: u64,
    /// Latency from parsing the request to its reply being complete, for requests sent to a backend; `None` when
    /// nothing was recorded (stats off, or only answered locally).
    pub latency: Option<Histogram>,
}

/// Per-server counters (twemproxy's names in the comments).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Requests queued to the server (`requests`).
    pub requests: u64,
    /// Bytes of those requests (`request_bytes`).
    pub request_bytes: u64,
    /// Replies received (`responses`).
    pub responses: u64,
    /// Bytes of those replies (`response_bytes`).
    pub response_bytes: u64,
    /// Connections the server closed (`server_eof`).
    pub eof: u64,
    /// Connections that failed: refused, reset, malformed reply, failed connect (`server_err`).
    pub errors: u64,
    /// Connections closed because a request timed out (`server_timedout`).
    pub timeouts: u64,
    /// Connections closed because the server broke the protocol: a malformed reply, a reply nobody asked for, or
    /// one that cannot answer the request it would be matched to (counted in `errors` too).
    pub protocol_faults: u64,
    /// Connections established.
    pub connects: u64,
    /// Requests answered with an error made by the proxy because this server failed (part of `forward_error`).
    pub failed_requests: u64,
    /// Sum of the recorded backend latencies in microseconds.
    pub latency_sum_us: u64,
    /// Dedicated connections (transactions, blocking commands) opened (`dedicated_opened`).
    pub dedicated_opened: u64,
    /// Subscriber connections (pub/sub) opened (`subscribers_opened`).
    pub subscribers_opened: u64,
    /// Transactions, blocking commands and subscriptions refused because `max_dedicated_connections` were in use
    /// (`dedicated_refused`).
    pub dedicated_refused: u64,
}

impl ServerCounters {
    /// Adds `other` field by field.
    pub fn add(&mut self, other: &ServerCounters) {
        self.requests += other.requests;
        self.request_bytes += other.request_bytes;
        self.responses += other.responses;
        self.response_bytes += other.response_bytes;
        self.eof += other.eof;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.protocol_faults += other.protocol_faults;
        self.connects += other.connects;
        self.failed_requests += other.failed_requests;
        self.latency_sum_us += other.latency_sum_us;
        self.dedicated_opened += other.dedicated_opened;
        self.subscribers_opened += other.subscribers_opened;
        self.dedicated_refused += other.dedicated_refused;
    }
}

/// Per-server figures that describe the present moment rather than count events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerGauges {
    /// Open connections to the server (`server_connections`).
    pub connections: u64,
    /// Requests queued and not yet written (`in_queue`).
    pub in_queue: u64,
    /// Bytes queued and not yet written (`in_queue_bytes`).
    pub in_queue_bytes: u64,
    /// Requests written and awaiting their reply (`out_queue`).
    pub out_queue: u64,
    /// Bytes of requests written and awaiting their reply (`out_queue_bytes`).
    pub out_queue_bytes: u64,
    /// Dedicated connections held by a client now, for a transaction or a blocking command (`dedicated_in_use`).
    pub dedicated_in_use: u64,
    /// Dedicated connections open and idle, ready for the next client (`dedicated_idle`).
    pub dedicated_idle: u64,
    /// Subscriber connections open now (`subscriber_connections`).
    pub subscribers: u64,
}

impl ServerGauges {
    /// Adds `other` field by field.
    pub fn add(&mut self, other: &ServerGauges) {
        self.connections += other.connections;
        self.in_queue += other.in_queue;
        self.in_queue_bytes += other.in_queue_bytes;
        self.out_queue += other.out_queue;
        self.out_queue_bytes += other.out_queue_bytes;
        self.dedicated_in_use += other.dedicated_in_use;
        self.dedicated_idle += other.dedicated_idle;
        self.subscribers += other.subscribers;
    }

    /// Requests in flight: queued or awaiting their reply.
    pub fn in_flight(&self) -> u64 {
        self.in_queue + self.out_queue
    }
}

/// One listener on one worker.
#[derive(Clone, Debug, Default)]
pub struct ListenerSnapshot {
    pub name: String,
    /// "redis" or "memcache".
    pub protocol: &'static str,
    /// The pool the listener routes to (empty when it no longer exists after a reload).
    pub pool: String,
    pub clients: ClientCounters,
    pub commands: Vec<CommandSnapshot>,
}

/// One backend server of one pool on one worker (all of its connections together).
#[derive(Clone, Debug, Default)]
pub struct ServerSnapshot {
    pub pool: String,
    /// The server's name as twemproxy's stats show it: its configured name, else `host:port`.
    pub name: String,
    /// The server as configured (`host:port:weight [name]`): the key control's health uses.
    pub spec: String,
    pub counters: ServerCounters,
    pub gauges: ServerGauges,
    /// Latency from queueing a request on the server's connection to its reply; `None` when nothing was recorded.
    pub latency: Option<Histogram>,
}

/// One worker's counters of one `redis_cluster` pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    /// `-MOVED` replies followed.
    pub moved: u64,
    /// `-ASK` replies followed.
    pub ask: u64,
    /// `-TRYAGAIN` replies (a multi-key request during a slot's migration) retried after a short delay.
    pub tryagain: u64,
    /// Requests failed because they were redirected more often than allowed, or to a host not in the map.
    pub redirect_failures: u64,
    /// Requests answered `-CLUSTERDOWN` because no node serves their slot (or no replica, with read_from replica).
    pub unserved: u64,
    /// Topology refreshes asked of control (after redirects and failed nodes; control rate-limits them).
    pub refresh_requests: u64,
    /// Subscriber connections (pub/sub) opened to the cluster's nodes.
    pub subscribers_opened: u64,
    /// Shard channel subscriptions a node ended because it lost the channel's slot (its `sunsubscribe` passed on
    /// to the client, which subscribes again by the new map).
    pub slot_unsubscribes: u64,
    /// Subscriber connections open now (a gauge).
    pub subscribers: u64,
    /// The slot map version the worker routes by.
    pub version: u64,
}

impl ClusterCounters {
    pub fn add(&mut self, o: &ClusterCounters) {
        self.moved += o.moved;
        self.ask += o.ask;
        self.tryagain += o.tryagain;
        self.redirect_failures += o.redirect_failures;
        self.unserved += o.unserved;
        self.refresh_requests += o.refresh_requests;
        self.subscribers_opened += o.subscribers_opened;
        self.slot_unsubscribes += o.slot_unsubscribes;
        self.subscribers += o.subscribers;
        // Workers may be a broadcast apart: the oldest map still in use is what matters.
        self.version = if self.version == 0 { o.version } else { self.version.min(o.version) };
    }
}

/// Everything one worker reports.
#[derive(Clone, Debug, Default)]
pub struct WorkerSnapshot {
    pub worker: usize,
    /// `proxy.stats` as this worker applies it.
    pub stats_enabled: bool,
    pub listeners: Vec<ListenerSnapshot>,
    /// In pool order, then server order, as configured.
    pub servers: Vec<ServerSnapshot>,
    pub tls: crate::tls::TlsStats,
    /// Per `redis_cluster` pool: (pool, counters).
    pub clusters: Vec<(String, ClusterCounters)>,
    /// The routes executed by `io::fan`, by name.
    pub routes: Vec<super::RouteCounts>,
}
