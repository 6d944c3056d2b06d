//! `pool`: a pool named as a listener's route or as a child: the key is hashed onto one of the pool's live servers
//! with the pool's `hash`, `distribution` and `hash_tag` ([`crate::router::PoolRouter`]), exactly what a listener
//! naming the pool does. `"POOL/*"` in a children list names each server of the pool as a child of its own
//! ([`super::Leaf::Server`]): the request goes to that server whatever the key, for replicated pools.
//!
//! Nothing to decide here beyond [`super::Leaf`]; the I/O layer hashes with the pool's router.
