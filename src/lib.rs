//! ferrule: a thread-per-core io_uring proxy for Redis and Memcached.
//!
//! Layers (see docs/architecture.md):
//! - pure, I/O-free, unit-tested: [`cluster`], [`config`], [`handover`], [`hash`], [`protocol`], [`histogram`], [`router`], [`routes`], [`stats`]
//! - I/O on glommio: [`io`] (workers, client sessions, backend connections, control)

pub mod cluster;
pub mod config;
pub mod fanout;
pub mod handover;
pub mod hash;
pub mod histogram;
pub mod io;
pub mod protocol;
pub mod router;
pub mod routes;
pub mod stats;
pub mod tls;
