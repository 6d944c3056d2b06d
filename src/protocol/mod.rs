//! Wire protocols: parsers and encoders, free of I/O.
pub mod memcache;
pub mod redis;
