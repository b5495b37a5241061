//! Real Redis topologies for integration tests, built from `redis-server` processes on free
//! ports: a Redis Cluster of three masters, and a primary/replica set watched by three
//! sentinels. Every process is killed on drop.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::redis_server::RedisServer;

/// How long a topology may take to settle (slots agreed, sentinels and replica discovered).
const SETTLE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port()
}

fn conn(addr: &str) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Redis Cluster of three masters (no replicas), slots split evenly. Losing a master leaves
/// the other masters' slots served (`cluster-require-full-coverage no`).
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Each node's cluster bus port (not port + 10000: the data ports are ephemeral).
    buses: Vec<u16>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let buses: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes: Vec<RedisServer> = buses
            .iter()
            .map(|bus| {
                let bus = bus.to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (node, (from, to)) in nodes.iter().zip(ranges) {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(from)
                .arg(to)
                .query(&mut conn(&node.addr()))
                .unwrap();
        }
        let mut first = conn(&nodes[0].addr());
        for (node, bus) in nodes.iter().zip(&buses).skip(1) {
            // The bus port must be named when it is not port + 10000.
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port())
                .arg(bus)
                .query(&mut first)
                .unwrap();
        }
        for node in &nodes {
            wait_until(&format!("cluster state ok on {}", node.addr()), || {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn(&node.addr()))
                    .unwrap();
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            });
        }
        RedisCluster { nodes, buses }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// The node serving `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn(&self.nodes[0].addr()))
            .unwrap();
        match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        }
    }

    /// A plain connection to one node (for checks and raw commands).
    pub fn node(&self, i: usize) -> redis::Connection {
        conn(&self.nodes[i].addr())
    }
}

/// A `redis-server --sentinel` process.
#[derive(Debug)]
pub struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(primary_port: u16) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        // The sentinel rewrites this file as it learns the topology.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor janus 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds janus 1000\n\
                 sentinel failover-timeout janus 5000\n\
                 sentinel parallel-syncs janus 1\n",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let sentinel = Sentinel {
            port,
            child,
            _dir: dir,
        };
        wait_until("sentinel answers", || {
            redis::Client::open(format!("redis://{}/", sentinel.addr()))
                .unwrap()
                .get_connection_with_timeout(Duration::from_millis(200))
                .is_ok()
        });
        sentinel
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `SENTINEL master janus` as field → value.
    fn master(&self) -> std::collections::HashMap<String, String> {
        let flat: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg("janus")
            .query(&mut conn(&self.addr()))
            .unwrap_or_default();
        flat.chunks(2)
            .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
            .collect()
    }

    /// The primary's port as this sentinel sees it.
    pub fn primary_port(&self) -> Option<u16> {
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("janus")
            .query(&mut conn(&self.addr()))
            .ok()?;
        addr?.1.parse().ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary, one replica and three sentinels (quorum 2) monitoring them as `janus`.
#[derive(Debug)]
pub struct SentinelSet {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<Sentinel>,
}

/// The master name the sentinels use.
pub const MASTER_NAME: &str = "janus";

impl SentinelSet {
    /// Starts everything and waits until each sentinel knows the replica and the other two
    /// sentinels, so a failover can happen.
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        wait_until("replica in sync", || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn(&replica.addr()))
                .unwrap();
            info.contains("master_link_status:up")
        });
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port())).collect();
        for s in &sentinels {
            wait_until("sentinel sees the replica and its peers", || {
                let m = s.master();
                m.get("num-slaves").map(String::as_str) == Some("1")
                    && m.get("num-other-sentinels").map(String::as_str) == Some("2")
            });
        }
        SentinelSet {
            primary,
            replica,
            sentinels,
        }
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Sentinel::addr).collect()
    }

    /// Kills the primary (SIGKILL) and waits until every sentinel names the replica as the new
    /// primary and the replica acts as one. Returns how long the failover took.
    pub fn kill_primary_and_wait_failover(&mut self) -> Duration {
        let started = Instant::now();
        self.primary.stop();
        let replica_port = self.replica.port();
        for s in &self.sentinels {
            wait_until("sentinels promote the replica", || {
                s.primary_port() == Some(replica_port)
            });
        }
        wait_until("the replica acts as primary", || {
            let role: Vec<redis::Value> = redis::cmd("ROLE")
                .query(&mut conn(&self.replica.addr()))
                .unwrap();
            matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
        });
        started.elapsed()
    }
}
