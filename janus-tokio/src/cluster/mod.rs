//! Cluster mode: Redis route tables and pub/sub, etcd discovery and registration (go-pantheon's
//! layouts, spec §4–§5). Both optional: without them the gateway runs on its embedded defaults.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod redis;
